"""Shards: files of many complete videos, written once under a temporary name and never modified.

`ShardWriter` packs staged one-video files into a new shard; `list_versions` reads which complete
videos a shard (or staged file) holds, from the attributes every video group carries.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from flowkit.errors import StoreError
from flowkit.store.format import (
    COMPLETE_ATTR,
    SHARD_FORMAT_NAME,
    VIDEOS_GROUP,
    video_group,
)
from flowkit.store.pending import PendingShard


@dataclass(frozen=True)
class VideoVersion:
    """One complete copy of a video in one file; the newest copy of each id is the live one."""

    id: str
    file: Path
    frames: int
    pairs: int
    height: int
    width: int
    fps: float
    source: str
    source_size: int
    source_mtime_ns: int
    settings: str
    extracted_at_ns: int
    staged: bool = False
    attrs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    damaged: bool = False  # `flowkit verify` marked this copy damaged (flowkit.store.damage)

    def is_current(self, settings: str, source_size: int, source_mtime_ns: int) -> bool:
        """Whether this copy was made with `settings` from the source file as it is now, and is
        not marked damaged: a video that is not current is redone from its source."""
        return (
            not self.damaged
            and self.settings == settings
            and self.source_size == source_size
            and self.source_mtime_ns == source_mtime_ns
        )

    def newer_than(self, other: VideoVersion) -> bool:
        """Later extraction wins; between equal copies (packed and its staged original) the shard."""
        return (self.extracted_at_ns, not self.staged) > (other.extracted_at_ns, not other.staged)


SourceSignature = tuple[int, int]  # (size in bytes, mtime in ns): a change means redo


def source_signature(path: Path) -> SourceSignature | None:
    """The signature of the source file at `path` now; None when it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def is_current(version: VideoVersion | None, settings: str, source: SourceSignature | None) -> bool:
    """Whether the stored copy `version` (None: no copy) was made with `settings` from the source
    as it is now: the one answer to "may this video be skipped" for extraction, Dask tasks and
    imports alike."""
    return version is not None and source is not None and version.is_current(settings, *source)


def read_video_attrs(group: h5py.Group) -> dict[str, Any]:
    """A video group's attributes as plain Python values."""
    out = {}
    for key, value in group.attrs.items():
        out[key] = value.item() if hasattr(value, "item") else value
    return out


# What h5py raises on a damaged file, depending on which structure the damage hit.
READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError)


class UnreadableShard(StoreError):
    """A shard or staged file that cannot be read as one; `reason` is the cause in a few words,
    `damaged` False when the system refused access (a lock, permissions) rather than the content."""

    def __init__(self, path: Path, reason: str, damaged: bool = True) -> None:
        super().__init__(f"cannot read shard {path}: {reason}")
        self.path = path
        self.reason = reason
        self.damaged = damaged


def error_reason(exc: BaseException) -> str:
    """The first line of an h5py error, or its type when it has no message."""
    text = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def list_versions(path: Path, staged: bool = False) -> list[VideoVersion]:
    """The complete videos in a shard or staged file; raises StoreError if it cannot be read
    (whatever part of it is damaged: superblock, tree, object headers, attributes)."""
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("format") != SHARD_FORMAT_NAME or VIDEOS_GROUP not in handle:
                raise UnreadableShard(path, "not a flowkit shard")
            versions: list[VideoVersion] = []

            def visit(name: str, obj: h5py.HLObject) -> None:
                if isinstance(obj, h5py.Group) and obj.attrs.get(COMPLETE_ATTR, False):
                    versions.append(_version(path, read_video_attrs(obj), staged))

            handle[VIDEOS_GROUP].visititems(visit)
    except READ_ERRORS as exc:
        refused = isinstance(exc, OSError) and exc.errno is not None  # h5py sets it for system errors
        raise UnreadableShard(path, error_reason(exc), damaged=not refused) from None
    return versions


def _version(path: Path, attrs: dict[str, Any], staged: bool) -> VideoVersion:
    return VideoVersion(
        id=attrs["id"], file=path, frames=int(attrs["frames"]),
        pairs=int(attrs["pairs"]), height=int(attrs["height"]),
        width=int(attrs["width"]), fps=float(attrs["fps"]),
        source=attrs["source"], source_size=int(attrs["source_size"]),
        source_mtime_ns=int(attrs["source_mtime_ns"]), settings=attrs["settings"],
        extracted_at_ns=int(attrs["extracted_at_ns"]), staged=staged, attrs=attrs,
    )


def new_shard_name() -> str:
    """Unique, time-ordered: several writers (processes, machines) may create shards at once."""
    return f"part-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.h5"


class ShardWriter:
    """Copies complete videos from other files into one new shard, published by `commit()`."""

    def __init__(self, shard_dir: Path) -> None:
        self._pending = PendingShard(Path(shard_dir) / new_shard_name())
        self.final_path = self._pending.final_path
        self.ids: list[str] = []

    def add(self, version: VideoVersion) -> None:
        """Copy one video group (datasets, compressed chunks and attributes) into the shard."""
        name = video_group(version.id)
        parent, _, leaf = name.rpartition("/")
        with h5py.File(version.file, "r") as source:
            source.copy(source[name], self._pending.file.require_group(parent), name=leaf)
        self.ids.append(version.id)

    def commit(self) -> Path:
        self._pending.publish()
        return self.final_path

    def abort(self) -> None:
        self._pending.discard()
