"""The index file the user names (`out.h5`): external links to every live video, plus two tables.

The index is derived data: it is rebuilt from the shards and rewritten atomically (temporary file,
then rename), so readers always see either the old or the new index, never a half-written one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from flowkit import __version__
from flowkit.errors import StoreError
from flowkit.store.failures import FailureRecord
from flowkit.store.format import (
    FAILURES_TABLE,
    FORMAT_NAME,
    FORMAT_VERSION,
    INDEX_TABLE,
    as_text,
    video_group,
)
from flowkit.store.layout import TMP_SUFFIX, DatasetLayout, publish
from flowkit.store.shards import READ_ERRORS, VideoVersion, error_reason

_STR = h5py.string_dtype()
INDEX_DTYPE = np.dtype([
    ("id", _STR), ("shard", _STR), ("frames", np.int64), ("pairs", np.int64),
    ("height", np.int32), ("width", np.int32), ("fps", np.float64),
])
FAILURES_DTYPE = np.dtype([("id", _STR), ("source", _STR), ("error", _STR), ("time", _STR)])


@dataclass(frozen=True)
class IndexEntry:
    """One row of the index table: where a video lives and its size."""

    id: str
    shard: str
    frames: int
    pairs: int
    height: int
    width: int
    fps: float


@dataclass
class IndexContents:
    settings: dict[str, Any]
    entries: dict[str, IndexEntry]
    failures: list[FailureRecord]
    attrs: dict[str, Any]


def is_flowkit_index(path: Path) -> bool:
    """True if `path` is an HDF5 file written by flowkit as an index."""
    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as handle:
            return handle.attrs.get("format") == FORMAT_NAME
    except READ_ERRORS:
        return False


def check_index_path(layout: DatasetLayout) -> bool:
    """An existing output must be a flowkit index; anything else is refused, never overwritten.

    Returns True for an index that cannot be read beside the shard folder of a dataset (its
    `settings.json`): the index is derived data, which a writer rebuilds from the shards.
    """
    if not layout.index.exists() or is_flowkit_index(layout.index):
        return False
    if layout.settings_file.is_file():
        return True
    raise StoreError(f"{layout.index} exists and is not a flowkit file; refusing to overwrite it")


def write_index(
    layout: DatasetLayout,
    versions: list[VideoVersion],
    failures: list[FailureRecord],
    settings: dict[str, Any],
) -> None:
    """Atomically replace the index with links to `versions` (the live copy of each video)."""
    tmp = layout.index.with_name(f"{layout.index.name}.{os.getpid()}{TMP_SUFFIX}")
    versions = sorted(versions, key=lambda v: v.id)
    with h5py.File(tmp, "w") as handle:
        handle.attrs["format"] = FORMAT_NAME
        handle.attrs["format_version"] = FORMAT_VERSION
        handle.attrs["flowkit_version"] = __version__
        handle.attrs["settings"] = json.dumps(settings, sort_keys=True)
        handle.attrs["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        handle.attrs["shards"] = len({v.file for v in versions})
        rows = np.array(
            [(v.id, layout.relative(v.file), v.frames, v.pairs, v.height, v.width, v.fps)
             for v in versions],
            dtype=INDEX_DTYPE,
        )
        handle.create_dataset(INDEX_TABLE, data=rows, maxshape=(None,))
        fail_rows = np.array(
            [(f.id, f.source, f.error, f.time) for f in failures], dtype=FAILURES_DTYPE
        )
        handle.create_dataset(FAILURES_TABLE, data=fail_rows, maxshape=(None,))
        for version in versions:
            name = video_group(version.id)
            handle[name] = h5py.ExternalLink(layout.relative(version.file), "/" + name)
    publish(tmp, layout.index)


def read_index(path: str | Path) -> IndexContents:
    """The index's settings, entries and failures; a clear error for anything that is not one."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path} does not exist")
    if not is_flowkit_index(path):
        if DatasetLayout(path).settings_file.is_file():
            raise StoreError(f"{path} is damaged (the index of a dataset); the next `flowkit extract` "
                             "into it rebuilds it from the shards")
        raise StoreError(f"{path} is not a flowkit file")
    try:
        return _read_index(path)
    except READ_ERRORS as exc:
        raise StoreError(f"cannot read {path} ({error_reason(exc)}); the next `flowkit extract` into "
                         "it rebuilds it from the shards") from None


def _read_index(path: Path) -> IndexContents:
    with h5py.File(path, "r") as handle:
        version = int(handle.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise StoreError(
                f"{path} has format version {version}; this flowkit reads up to {FORMAT_VERSION}"
            )
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in handle.attrs.items()}
        entries = {}
        for row in handle[INDEX_TABLE][()]:
            entry = IndexEntry(
                id=as_text(row["id"]), shard=as_text(row["shard"]), frames=int(row["frames"]),
                pairs=int(row["pairs"]), height=int(row["height"]), width=int(row["width"]),
                fps=float(row["fps"]),
            )
            entries[entry.id] = entry
        failures = [
            FailureRecord(as_text(r["id"]), as_text(r["source"]), as_text(r["error"]), as_text(r["time"]))
            for r in handle[FAILURES_TABLE][()]
        ]
    return IndexContents(json.loads(attrs.get("settings", "{}")), entries, failures, attrs)
