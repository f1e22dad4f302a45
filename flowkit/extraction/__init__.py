"""Extraction: videos to flow and frames in a dataset, on one machine or a Dask cluster.

`extract(input_dir, output, ExtractSettings(...))` is what `flowkit extract` runs.
"""

from flowkit.extraction.pipeline import ExtractReport, extract
from flowkit.extraction.settings import ExtractSettings

__all__ = ["ExtractReport", "ExtractSettings", "extract"]
