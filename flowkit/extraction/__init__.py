"""Extraction: videos to flow and frames in a dataset, on one machine or a Dask cluster."""
