"""Interchange with the rawframes folders of mmaction2, TSN, denseflow and twostreamfusion.

`names` holds the layouts (file naming, numbering base, detection), `exporter` writes folders
and annotation lists, `importer` reads any detected layout into a dataset.
"""

from flowkit.rawframes.exporter import (
    FLOW_LIST,
    NO_LABEL,
    RGB_LIST,
    ExportReport,
    export_rawframes,
)
from flowkit.rawframes.importer import ImportReport, import_rawframes, import_settings
from flowkit.rawframes.names import RawframeFolder, find_rawframe_folders, frame_file_name
from flowkit.store.summary import LAYOUT_ATTR

__all__ = [
    "FLOW_LIST",
    "LAYOUT_ATTR",
    "NO_LABEL",
    "RGB_LIST",
    "ExportReport",
    "ImportReport",
    "RawframeFolder",
    "export_rawframes",
    "find_rawframe_folders",
    "frame_file_name",
    "import_rawframes",
    "import_settings",
]
