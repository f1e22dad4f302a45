"""Where a dataset's files live on disk, and the atomic-file and locking primitives they rely on.

A dataset named `out.h5` is:

    out.h5                      index: external links to every video + tables (rewritten atomically)
    out.h5.shards/part-*.h5     shards: many complete videos each, never modified once written
    out.h5.shards/staging/*.h5  one-video files of a run in progress, packed into shards as it goes
    out.h5.shards/failures/     one JSON record per video that failed
    out.h5.shards/damaged/      one JSON mark per video `flowkit verify` found damaged
    out.h5.shards/unreadable/   shards that could not be read, moved aside (their videos redone)
    out.h5.shards/settings.json the extraction settings of the dataset
    out.h5.shards/.lock         held while one process writes the dataset
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowkit.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl; locking is then skipped
    fcntl = None

TMP_SUFFIX = ".tmp"


def safe_name(key: str) -> str:
    """A flat file name for an id or path: readable stem plus a hash, so distinct keys never collide."""
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", key.rsplit("/", 1)[-1])[:48]
    return f"{stem}-{digest}"


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """Durably move a finished temporary file into place: fsync, atomic rename, fsync the folder."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small text file whole or not at all."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")
    tmp.write_text(text)
    publish(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))


TASKS_FOLDER = "tasks"  # Dask tasks stage their videos in tasks/<task>/ (flowkit.extraction.cluster)


class DatasetLayout:
    """The paths of one dataset, derived from the index file the user names."""

    def __init__(self, index_path: str | Path) -> None:
        self.index = Path(index_path)
        self.shard_dir = self.index.with_name(self.index.name + ".shards")
        self.staging_dir = self.shard_dir / "staging"
        self.tasks_dir = self.shard_dir / TASKS_FOLDER
        self.failure_dir = self.shard_dir / "failures"
        self.damage_dir = self.shard_dir / "damaged"
        self.unreadable_dir = self.shard_dir / "unreadable"
        self.settings_file = self.shard_dir / "settings.json"
        self.lock_file = self.shard_dir / ".lock"

    def shard_paths(self) -> list[Path]:
        """Packed shards, oldest first (names start with a timestamp)."""
        if not self.shard_dir.is_dir():
            return []
        return sorted(p for p in self.shard_dir.glob("part-*.h5"))

    def staged_paths(self) -> list[Path]:
        if not self.staging_dir.is_dir():
            return []
        return sorted(self.staging_dir.glob("*.h5"))

    def relative(self, path: Path) -> str:
        """A path relative to the index file's folder, as the index's external links store it."""
        return Path(os.path.relpath(path, self.index.parent)).as_posix()

    def check_writable_location(self) -> None:
        """The output's folder must exist and be writable; say so in one line otherwise."""
        parent = self.index.parent
        if not parent.exists():
            raise StoreError(f"output folder {parent} does not exist")
        if not parent.is_dir():
            raise StoreError(f"output folder {parent} is not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreError(f"output folder {parent} is not writable")
        if self.index.is_dir():
            raise StoreError(f"output {self.index} is a folder; name a file such as out.h5")
        if self.shard_dir.exists() and not os.access(self.shard_dir, os.W_OK | os.X_OK):
            raise StoreError(f"shard folder {self.shard_dir} is not writable")

    def create_dirs(self) -> None:
        for folder in (self.shard_dir, self.staging_dir, self.failure_dir):
            folder.mkdir(exist_ok=True)

    def remove_temporaries(self) -> int:
        """Delete half-written files a killed process left; only the lock holder may call this."""
        removed = 0
        for folder in (self.shard_dir, self.staging_dir, self.failure_dir, self.damage_dir,
                       self.index.parent):
            if not folder.is_dir():
                continue
            pattern = f"{self.index.name}.*{TMP_SUFFIX}" if folder == self.index.parent else f"*{TMP_SUFFIX}"
            for tmp in folder.glob(pattern):
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed

    def adopt_abandoned_tasks(self) -> int:
        """Move the finished videos that Dask tasks of a killed run left in `tasks/` into staging,
        where they are published as a killed run's own staged videos are; delete the rest of the
        task folders. Only the lock holder may call this (no task of its own is running yet)."""
        moved = 0
        if not self.tasks_dir.is_dir():
            return moved
        for folder in self.tasks_dir.iterdir():
            for path in folder.glob("*.h5"):
                self.staging_dir.mkdir(exist_ok=True)
                os.replace(path, self.staging_dir / path.name)
                moved += 1
            for tmp in folder.glob(f"*{TMP_SUFFIX}"):
                tmp.unlink(missing_ok=True)  # half-written; a task still running loses only it
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            self.tasks_dir.rmdir()
        return moved

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the dataset's write lock; a second writer gets a one-line error, not a race."""
        self.shard_dir.mkdir(exist_ok=True)
        with open(self.lock_file, "a+") as handle:
            if fcntl is not None:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise StoreError(
                        f"{self.index} is being written by {holder}; wait for it to finish"
                    ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"flowkit pid {os.getpid()}")
            handle.flush()
            yield
