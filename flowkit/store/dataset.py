"""The writing side of a dataset: the lock, what is already done, packing staged videos into shards.

Crash safety comes from three rules. Files are only ever created under a temporary name and
renamed into place when complete (staged videos, shards, the index). Shards are never modified.
A copy of a video is deleted only after the index that supersedes it has been published. So a
process killed at any instruction leaves every published file intact and the previous index valid.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from flowkit.errors import FlowkitError, StoreError
from flowkit.store.damage import clear_mark, marks_copy, read_marks
from flowkit.store.failures import FailureRecord, clear_failure, read_failures, record_failure
from flowkit.store.format import canonical_settings
from flowkit.store.index import check_index_path, read_index, write_index
from flowkit.store.layout import DatasetLayout, write_json_atomic
from flowkit.store.shards import (
    READ_ERRORS,
    ShardWriter,
    UnreadableShard,
    VideoVersion,
    list_versions,
)

DEFAULT_SHARD_BYTES = 1 << 30


@dataclass
class WriteReport:
    """What a run writing into a dataset did; `failed` lists this run's failures, `failures` all
    the dataset has recorded, `problems` what is wrong with the dataset itself."""

    skipped: int = 0
    pairs: int = 0
    seconds: float = 0.0
    failed: list[FailureRecord] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


class DatasetWriter:
    """A dataset opened for writing by one process: use as a context manager to hold the lock."""

    def __init__(self, index_path: str | Path, shard_bytes: int = DEFAULT_SHARD_BYTES) -> None:
        self.layout = DatasetLayout(index_path)
        self.shard_bytes = shard_bytes
        self._shard_versions: dict[Path, list[VideoVersion]] = {}
        self._staged_bytes = 0
        self.problems: list[str] = []
        self._lock = None

    def __enter__(self) -> DatasetWriter:
        self.layout.check_writable_location()
        damaged_index = check_index_path(self.layout)
        self._lock = self.layout.lock()
        self._lock.__enter__()
        if damaged_index:
            self._set_index_aside()
        self.layout.create_dirs()
        self.layout.remove_temporaries()
        self.layout.adopt_abandoned_tasks()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.__exit__(*exc)
            self._lock = None

    # settings --------------------------------------------------------------------------------

    def stored_settings(self) -> dict[str, Any] | None:
        """The settings the dataset was last extracted with, or None for a new dataset."""
        try:
            return json.loads(self.layout.settings_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {self.layout.settings_file}: {exc}") from None

    def store_settings(self, settings: dict[str, Any]) -> None:
        write_json_atomic(self.layout.settings_file, settings)

    def adopt_settings(self, settings: dict[str, Any], force: bool = False) -> None:
        """Start a run with `settings`: refuse other settings than stored unless `force`.

        Also publishes the finished videos a killed run left staged, so they are visible first.
        """
        previous = self.stored_settings()
        same = previous is None or canonical_settings(previous) == canonical_settings(settings)
        if not same and not force:
            changed = sorted(k for k in previous.keys() | settings.keys()
                             if previous.get(k) != settings.get(k))
            raise FlowkitError(
                f"{self.layout.index} was made with other settings ({', '.join(changed)} "
                "differ); use --force to redo every video with the new ones, or another output file"
            )
        self.store_settings(settings)
        if self.layout.staged_paths():
            self.pack()

    # recording results -------------------------------------------------------------------------

    def staged(self, nbytes: int) -> None:
        """A video of `nbytes` was published to staging: pack a shard once enough bytes wait.

        Takes the size, not the path: with several workers, a pack triggered by one video's
        result may already have packed (and deleted) the staged file of the next result.
        """
        self._staged_bytes += nbytes
        if self._staged_bytes >= self.shard_bytes:
            self.pack()

    def failed(self, failure: FailureRecord) -> None:
        record_failure(self.layout, failure)

    def succeeded(self, source: str) -> None:
        clear_failure(self.layout, source)

    def finish(self) -> tuple[list[str], list[FailureRecord]]:
        """End a run: pack what is staged, publish the index; returns (problems, all failures)."""
        self.pack()
        return list(self.problems), read_failures(self.layout)

    # what is there -----------------------------------------------------------------------------

    def _versions_in(self, path: Path, staged: bool) -> list[VideoVersion]:
        if not staged and path in self._shard_versions:  # shards never change: read them once
            return self._shard_versions[path]
        try:
            versions = list_versions(path, staged=staged)
        except UnreadableShard as exc:
            self._set_aside(path, staged, exc)
            return []
        if not staged:
            self._shard_versions[path] = versions
        return versions

    def _set_aside(self, path: Path, staged: bool, error: UnreadableShard) -> None:
        """Treat an unreadable shard (or staged file) like a missing one: its videos are redone,
        one problem line says so. A damaged file is moved into `unreadable/` for the user to
        inspect, so that the next run is clean; one the system refused to open (a lock held by
        another program, permissions) is left in place: once readable, its copies are simply
        older ones."""
        what = "staged video" if staged else "shard"
        count = "its video" if staged else self._indexed_count(path)
        target = self.layout.unreadable_dir / path.name
        kept = "left in place"
        if error.damaged:
            try:
                self.layout.unreadable_dir.mkdir(exist_ok=True)
                os.replace(path, target)
                kept = f"moved to {self.layout.relative(target)}"
            except OSError as exc:
                kept = f"left in place: {exc}"
        problem = (f"{what} {self.layout.relative(path)} is unreadable ({error.reason}); "
                   f"{count} will be redone ({kept})")
        if problem not in self.problems:
            self.problems.append(problem)

    def _set_index_aside(self) -> None:
        """Move an unreadable index into `unreadable/`; this run publishes a new one."""
        self.layout.unreadable_dir.mkdir(exist_ok=True)
        target = self.layout.unreadable_dir / f"{self.layout.index.name}.{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(self.layout.index, target)
        self.problems.append(f"index {self.layout.index.name} was unreadable: rebuilt from the shards "
                             f"(the old one moved to {self.layout.relative(target)})")

    def _indexed_count(self, shard: Path) -> str:
        """\"its N videos\" by the published index, the only record left of what it held."""
        try:
            entries = read_index(self.layout.index).entries.values()
        except (StoreError, *READ_ERRORS):
            return "its videos"
        name = self.layout.relative(shard)
        count = sum(entry.shard == name for entry in entries)
        return f"its {count} video{'s' if count != 1 else ''}"

    def live_versions(self, include_staged: bool = True) -> dict[str, VideoVersion]:
        """The newest complete copy of each video, over all shards (and staged files).

        A copy that `flowkit verify` marked damaged is live (it is not deleted while nothing
        replaces it) but carries `damaged`, so it is not current: the next run redoes it.
        """
        live: dict[str, VideoVersion] = {}
        sources = [(p, False) for p in self.layout.shard_paths()]
        if include_staged:
            sources += [(p, True) for p in self.layout.staged_paths()]
        for path, staged in sources:
            for version in self._versions_in(path, staged):
                current = live.get(version.id)
                if current is None or version.newer_than(current):
                    live[version.id] = version
        for video_id, mark in read_marks(self.layout).items():
            version = live.get(video_id)
            if version is not None and marks_copy(mark, self.layout.relative(version.file),
                                                  version.extracted_at_ns):
                live[video_id] = replace(version, damaged=True)
        return live

    # publishing ------------------------------------------------------------------------------

    def pack(self) -> list[Path]:
        """Copy every live staged video into new shards of about `shard_bytes`, then reindex."""
        live = self.live_versions()
        staged = sorted((v for v in live.values() if v.staged), key=lambda v: v.id)
        shards: list[Path] = []
        writer: ShardWriter | None = None
        size = 0
        try:
            for version in staged:
                if writer is None:
                    writer, size = ShardWriter(self.layout.shard_dir), 0
                writer.add(version)
                size += version.file.stat().st_size
                if size >= self.shard_bytes:
                    shards.append(writer.commit())
                    writer = None
            if writer is not None:
                shards.append(writer.commit())
                writer = None
        finally:
            if writer is not None:
                writer.abort()
        self._staged_bytes = 0
        self.reindex()
        return shards

    def reindex(self) -> dict[str, VideoVersion]:
        """Publish a new index of the newest packed copy of each video, then delete dead copies.

        Staged videos are not linked: they become visible when packed. A packed copy that a newer
        staged one will replace stays linked until then.
        """
        published = self.live_versions(include_staged=False)
        settings = self.stored_settings() or {}
        write_index(self.layout, list(published.values()), read_failures(self.layout), settings)
        self._collect_garbage(published)
        self._clear_stale_marks(published)
        return published

    def _clear_stale_marks(self, published: dict[str, VideoVersion]) -> None:
        """Forget the damage marks of copies no longer published: redone, or gone."""
        for video_id in read_marks(self.layout):
            version = published.get(video_id)
            if version is None or not version.damaged:
                clear_mark(self.layout, video_id)

    def _collect_garbage(self, published: dict[str, VideoVersion]) -> None:
        # List the staged files before working out which are live: a worker may publish one in
        # between, and a file listed after the live set was read would look dead and be deleted.
        staged_paths = self.layout.staged_paths()
        live_staged = {v.file for v in self.live_versions().values() if v.staged}
        for path in staged_paths:
            if path not in live_staged and self._versions_in(path, staged=True):
                path.unlink(missing_ok=True)
        linked = {v.file for v in published.values()}
        for path in self.layout.shard_paths():
            # Only shards that were read and hold nothing linked: an unreadable shard is kept for
            # the user to inspect, never deleted.
            if path not in linked and path in self._shard_versions:
                os.unlink(path)
                del self._shard_versions[path]
