"""Reading every byte of a dataset back and checking it against shapes and stored checksums."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from flowkit.errors import StoreError
from flowkit.store.codec import jpeg_size
from flowkit.store.format import (
    CHECKSUM_ATTR,
    COMPLETE_ATTR,
    ENCODING_ATTR,
    ENCODING_JPEG,
    ENCODING_RAW,
    FLOW,
    FLOW_BACKWARD,
    RGB,
    as_text,
    video_group,
)
from flowkit.store.reader import FlowStore, VideoRecord


@dataclass
class VerifyReport:
    videos: int = 0
    pairs: int = 0
    frames: int = 0
    problems: list[str] = field(default_factory=list)

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
    for i in range(dataset.shape[0]):
        row = dataset[i]
        for data in [row] if dataset.ndim == 1 else list(row):
            data = data.tobytes()
            crc = zlib.crc32(data, crc)
            found = jpeg_size(data)
            if found != size:
                return [f"{video.id}: {name}[{i}] is not a {size[1]}x{size[0]} JPEG file ({found})"]
    return _check_crc(video, name, dataset, crc)


def _check_crc(video: VideoRecord, name: str, dataset: h5py.Dataset, crc: int) -> list[str]:
    if CHECKSUM_ATTR not in dataset.attrs or crc != int(dataset.attrs[CHECKSUM_ATTR]):
        return [f"{video.id}: {name} checksum mismatch (damaged data)"]
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
    for name in (FLOW, FLOW_BACKWARD):
        if name not in video.group:
            continue
        dataset = video.group[name]
        if as_text(dataset.attrs.get(ENCODING_ATTR, ENCODING_RAW)) == ENCODING_JPEG:
            problems += _check_jpeg_files(video, name, dataset, (entry.pairs, 2))
        else:
            problems += _check_raw_flow(video, name, dataset)
    if RGB in video.group:
        problems += _check_jpeg_files(video, RGB, video.group[RGB], (entry.frames,))
    return problems


def verify_store(path: str | Path, progress: Callable[[str], None] | None = None) -> VerifyReport:
    """Read and check every video of the dataset at `path`; problems are listed, never raised."""
    report = VerifyReport()
    try:
        store = FlowStore(path)
    except StoreError as exc:
        report.problems.append(str(exc))
        return report
    with store, h5py.File(store.path, "r") as index:
        for video_id in store.ids:
            if progress is not None:
                progress(video_id)
            try:
                video = store.video(video_id)
                problems = verify_video(video)
                if video_group(video_id) not in index:  # follows the index's external link
                    problems.append(f"{video_id}: the index's link does not resolve")
            except (StoreError, OSError, KeyError, ValueError) as exc:
                problems = [f"{video_id}: unreadable ({exc})"]
            report.problems.extend(problems)
            report.videos += 1
            entry = store.entries[video_id]
            report.pairs += entry.pairs
            report.frames += entry.frames
    return report
