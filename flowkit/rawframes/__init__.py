"""Interchange with the rawframes folders of mmaction2, TSN and denseflow."""
