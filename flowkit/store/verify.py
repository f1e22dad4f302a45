"""Reading every byte of a dataset back and checking it against shapes and stored checksums."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from flowkit.errors import StoreError
from flowkit.store.format import CHECKSUM_ATTR, COMPLETE_ATTR, FLOW, FLOW_BACKWARD, RGB
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


def _check_flow(video: VideoRecord, name: str, dataset: h5py.Dataset, problems: list[str]) -> int:
    entry = video.entry
    expected = (entry.pairs, 2, entry.height, entry.width)
    if dataset.shape != expected or dataset.dtype != np.uint8:
        problems.append(f"{video.id}: {name} is {dataset.dtype}{dataset.shape}, expected uint8{expected}")
        return 0
    crc = 0
    for i in range(dataset.shape[0]):
        crc = zlib.crc32(np.ascontiguousarray(dataset[i]).tobytes(), crc)
    if CHECKSUM_ATTR not in dataset.attrs or crc != int(dataset.attrs[CHECKSUM_ATTR]):
        problems.append(f"{video.id}: {name} checksum mismatch (damaged data)")
    return dataset.shape[0]


def _check_rgb(video: VideoRecord, dataset: h5py.Dataset, problems: list[str]) -> int:
    if dataset.shape != (video.entry.frames,):
        problems.append(f"{video.id}: rgb has {dataset.shape[0]} frames, expected {video.entry.frames}")
        return 0
    crc = 0
    for i in range(dataset.shape[0]):
        crc = zlib.crc32(dataset[i].tobytes(), crc)
    if CHECKSUM_ATTR not in dataset.attrs or crc != int(dataset.attrs[CHECKSUM_ATTR]):
        problems.append(f"{video.id}: rgb checksum mismatch (damaged data)")
    return dataset.shape[0]


def verify_video(video: VideoRecord) -> list[str]:
    """Every problem found in one video (an empty list when it is intact)."""
    problems: list[str] = []
    if not video.attrs.get(COMPLETE_ATTR, False):
        return [f"{video.id}: not marked complete"]
    entry = video.entry
    if entry.pairs != max(entry.frames - video.step, 0):
        problems.append(f"{video.id}: {entry.pairs} flow pairs for {entry.frames} frames at step {video.step}")
    for name in (FLOW, FLOW_BACKWARD):
        if name in video.group:
            _check_flow(video, name, video.group[name], problems)
    if RGB in video.group:
        _check_rgb(video, video.group[RGB], problems)
    return problems


def verify_store(path: str | Path, progress: Callable[[str], None] | None = None) -> VerifyReport:
    """Read and check every video of the dataset at `path`; problems are listed, never raised."""
    report = VerifyReport()
    try:
        store = FlowStore(path)
    except StoreError as exc:
        report.problems.append(str(exc))
        return report
    with store:
        for video_id in store.ids:
            if progress is not None:
                progress(video_id)
            try:
                video = store.video(video_id)
                problems = verify_video(video)
            except (StoreError, OSError, KeyError, ValueError) as exc:
                problems = [f"{video_id}: unreadable ({exc})"]
            report.problems.extend(problems)
            report.videos += 1
            entry = store.entries[video_id]
            report.pairs += entry.pairs
            report.frames += entry.frames
    return report
