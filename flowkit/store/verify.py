"""Reading every byte of a dataset back and checking it against shapes and stored checksums.

Beyond the checksums of the stored bytes, `verify` reads each shard's tree the way a writer does,
parses every attribute and reads every dataset end to end, so damage to HDF5's own structures
is found wherever HDF5 notices it (docs/FORMAT.md says what remains out of reach). Each damaged
video is marked (flowkit.store.damage): the next `flowkit extract` redoes it from its source.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from flowkit.errors import StoreError
from flowkit.store.codec import jpeg_size
from flowkit.store.damage import DamageMark, mark_damaged
from flowkit.store.format import (
    CHECKSUM_ATTR,
    COMPLETE_ATTR,
    ENCODING_ATTR,
    ENCODING_JPEG,
    ENCODING_RAW,
    FLOW_DATASETS,
    RGB,
    as_text,
    video_group,
)
from flowkit.store.layout import DatasetLayout
from flowkit.store.reader import FlowStore, VideoRecord
from flowkit.store.shards import (
    READ_ERRORS,
    UnreadableShard,
    VideoVersion,
    error_reason,
    list_versions,
)


@dataclass
class VerifyReport:
    """What `verify_store` found: `problems` one line each, `damaged` the videos they concern;
    `marked` how many of those were recorded for the next run to redo (`mark_error` if none could be)."""

    videos: int = 0
    pairs: int = 0
    frames: int = 0
    problems: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    marked: int = 0
    mark_error: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_raw_flow(video: VideoRecord, name: str, dataset: h5py.Dataset) -> list[str]:
    entry = video.entry
    expected = (entry.pairs, 2, entry.height, entry.width)
    if dataset.shape != expected or dataset.dtype != np.uint8:
        return [f"{video.id}: {name} is {dataset.dtype}{dataset.shape}, expected uint8{expected}"]
    crc = 0
    for i in range(dataset.shape[0]):
        crc = zlib.crc32(np.ascontiguousarray(dataset[i]).tobytes(), crc)
    return _check_crc(video, name, dataset, crc)


def _check_jpeg_files(video: VideoRecord, name: str, dataset: h5py.Dataset,
                      shape: tuple[int, ...]) -> list[str]:
    """Count, checksum and picture size of a dataset of JPEG files (RGB frames or flow codes)."""
    if dataset.shape != shape:
        return [f"{video.id}: {name} holds {dataset.shape} JPEG files, expected {shape}"]
    crc = 0
    size = (video.entry.height, video.entry.width)
    for i, row in _blocks(dataset):
        for data in [row] if dataset.ndim == 1 else list(row):
            data = data.tobytes()
            crc = zlib.crc32(data, crc)
            found = jpeg_size(data)
            if found != size:
                return [f"{video.id}: {name}[{i}] is not a {size[1]}x{size[0]} JPEG file ({found})"]
    return _check_crc(video, name, dataset, crc)


def _blocks(dataset: h5py.Dataset, rows: int = 256) -> Iterator[tuple[int, np.ndarray]]:
    """(index, row) of every row, read in blocks of `rows` as a reader of whole clips does (and
    in bounded memory)."""
    for start in range(0, dataset.shape[0], rows):
        for offset, row in enumerate(dataset[start : start + rows]):
            yield start + offset, row


def _check_crc(video: VideoRecord, name: str, dataset: h5py.Dataset, crc: int) -> list[str]:
    if CHECKSUM_ATTR not in dataset.attrs or crc != int(dataset.attrs[CHECKSUM_ATTR]):
        return [f"{video.id}: {name} checksum mismatch (damaged data)"]
    return []


def _read_everything(video: VideoRecord) -> None:
    """Parse every attribute of the video group and of everything in it, and read end to end every
    dataset the content checks do not read; raises what h5py raises on damage."""
    checked = {*FLOW_DATASETS, RGB}
    objects: list[tuple[str, h5py.HLObject]] = [("", video.group)]
    video.group.visititems(lambda name, obj: objects.append((name, obj)))
    for name, obj in objects:
        for key in obj.attrs:
            obj.attrs[key]
        if isinstance(obj, h5py.Dataset) and name not in checked:
            obj[()]


def _check_against_index(video: VideoRecord, listed: VideoVersion | None) -> list[str]:
    """The copy the writer sees is the one the index links, with the sizes the index gives."""
    if listed is None:
        return [f"{video.id}: its shard lists no complete copy of it (damaged attributes)"]
    entry = video.entry
    found = (listed.frames, listed.pairs, listed.height, listed.width, listed.fps)
    expected = (entry.frames, entry.pairs, entry.height, entry.width, entry.fps)
    if found != expected:
        return [f"{video.id}: attributes say frames, pairs, height, width, fps {found}; "
                f"the index says {expected}"]
    return []


def verify_video(video: VideoRecord) -> list[str]:
    """Every problem found in one video (an empty list when it is intact)."""
    problems: list[str] = []
    if not video.attrs.get(COMPLETE_ATTR, False):
        return [f"{video.id}: not marked complete"]
    entry = video.entry
    # 0 pairs: a video stored without flow (an imported RGB-only rawframes folder)
    if entry.pairs not in (max(entry.frames - video.step, 0), 0):
        problems.append(f"{video.id}: {entry.pairs} flow pairs for {entry.frames} frames at step {video.step}")
    for name in FLOW_DATASETS:
        if name not in video.group:
            continue
        dataset = video.group[name]
        if as_text(dataset.attrs.get(ENCODING_ATTR, ENCODING_RAW)) == ENCODING_JPEG:
            problems += _check_jpeg_files(video, name, dataset, (entry.pairs, 2))
        else:
            problems += _check_raw_flow(video, name, dataset)
    if RGB in video.group:
        problems += _check_jpeg_files(video, RGB, video.group[RGB], (entry.frames,))
    _read_everything(video)
    return problems


class _ShardListings:
    """Each shard's complete videos as a writer reads them (its whole tree), read once."""

    def __init__(self) -> None:
        self._listed: dict[Path, dict[str, VideoVersion] | str] = {}

    def get(self, path: Path) -> dict[str, VideoVersion] | str | None:
        """The shard's videos by id, why it cannot be read, or None if it is missing."""
        if not path.exists():
            return None
        if path not in self._listed:
            try:
                self._listed[path] = {v.id: v for v in list_versions(path)}
            except UnreadableShard as exc:
                self._listed[path] = exc.reason
        return self._listed[path]


def verify_store(path: str | Path, progress: Callable[[str], None] | None = None,
                 mark: bool = True) -> VerifyReport:
    """Read and check every video of the dataset at `path`; problems are listed, never raised.

    With `mark`, each damaged video is recorded in the dataset, so that the next extraction (or
    rawframes import) into it redoes that video from its source; a redo clears the mark.
    """
    report = VerifyReport()
    try:
        store = FlowStore(path)
    except (StoreError, *READ_ERRORS) as exc:
        report.problems.append(str(exc) if isinstance(exc, StoreError) else
                               f"cannot read {path}: {error_reason(exc)}")
        return report
    shards = _ShardListings()
    marks: list[DamageMark] = []
    with store, h5py.File(store.path, "r") as index:
        for video_id in store.ids:
            if progress is not None:
                progress(video_id)
            entry = store.entries[video_id]
            problems, listed = _verify_one(store, index, shards, video_id)
            if problems:
                report.problems.extend(problems)
                report.damaged.append(video_id)
                made = listed.extracted_at_ns if listed is not None else 0
                marks.append(DamageMark(video_id, entry.shard, made, problems[0]))
            report.videos += 1
            report.pairs += entry.pairs
            report.frames += entry.frames
    if mark and marks:
        try:
            mark_damaged(DatasetLayout(store.path), marks)
            report.marked = len(marks)
        except OSError as exc:
            report.mark_error = f"cannot record the damaged videos in {store.path}: {exc}"
    return report


def _verify_one(store: FlowStore, index: h5py.File, shards: _ShardListings,
                video_id: str) -> tuple[list[str], VideoVersion | None]:
    """One video's problems, and its copy as the shard lists it (None if it does not)."""
    entry = store.entries[video_id]
    listing = shards.get(store.shard_path(entry.shard))
    if listing is None:
        return [f"{video_id}: its shard {entry.shard} is missing"], None
    if isinstance(listing, str):
        return [f"{video_id}: unreadable (shard {entry.shard}: {listing})"], None
    listed = listing.get(video_id)
    try:
        video = store.video(video_id)
        problems = verify_video(video) + _check_against_index(video, listed)
        if video_group(video_id) not in index:  # follows the index's external link
            problems.append(f"{video_id}: the index's link does not resolve")
    except StoreError as exc:
        problems = [f"{video_id}: unreadable ({exc})"]
    except READ_ERRORS as exc:
        problems = [f"{video_id}: unreadable ({error_reason(exc)})"]
    return problems, listed
