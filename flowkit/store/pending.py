"""A shard file being written: under a temporary name until it is whole, then published at once.

Staged videos and packed shards are both written this way; `publish` (fsync, atomic rename,
fsync of the folder) is what makes a killed process leave only a temporary file behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from flowkit.store.format import FORMAT_VERSION, SHARD_FORMAT_NAME
from flowkit.store.layout import TMP_SUFFIX, publish


class PendingShard:
    """An HDF5 shard file open for writing at `tmp_path`, to appear at `final_path` on `publish`."""

    def __init__(self, final_path: Path) -> None:
        self.final_path = Path(final_path)
        self.tmp_path = self.final_path.with_name(f"{self.final_path.name}.{os.getpid()}{TMP_SUFFIX}")
        self.file = h5py.File(self.tmp_path, "w")
        self.file.attrs["format"] = SHARD_FORMAT_NAME
        self.file.attrs["format_version"] = FORMAT_VERSION

    def publish(self) -> int:
        """Close and publish; returns the file's size, measured before anyone else can see it."""
        self.file.close()
        size = self.tmp_path.stat().st_size
        publish(self.tmp_path, self.final_path)
        return size

    def discard(self) -> None:
        """Close and delete the half-written file."""
        try:
            self.file.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)
