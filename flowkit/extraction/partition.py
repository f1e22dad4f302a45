"""Splitting a video collection into parts that stay put: make targets and Dask tasks.

A video's part is decided by a hash of its id, not by its position in a listing, so adding or
removing videos changes only the parts they belong to: make rebuilds those and no other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flowkit.errors import FlowkitError
from flowkit.store.layout import write_text_atomic
from flowkit.video import VideoFile


def part_of(video_id: str, parts: int) -> int:
    """The part (0 .. parts - 1) a video belongs to, stable across runs and machines."""
    return int(hashlib.sha1(video_id.encode()).hexdigest()[:8], 16) % parts


def split_videos(videos: list[VideoFile], parts: int) -> list[list[VideoFile]]:
    """`videos` in `parts` lists by `part_of`, each sorted by path."""
    if parts < 1:
        raise FlowkitError(f"--parts must be at least 1, got {parts}")
    lists: list[list[VideoFile]] = [[] for _ in range(parts)]
    for video in videos:
        lists[part_of(video.id, parts)].append(video)
    return [sorted(part, key=lambda v: v.relpath) for part in lists]


def write_part_lists(videos: list[VideoFile], parts: int, folder: Path) -> list[Path]:
    """`folder/list-NNN.txt` for each part that has videos (paths relative to the input folder),
    rewritten only when their content changes, so that their modification times tell make what to
    redo. An empty part has no list, so make has no target for it."""
    split = split_videos(videos, parts)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, part in enumerate(split):
        if not part:
            continue
        path = folder / f"list-{index:03d}.txt"
        text = "".join(f"{video.relpath}\n" for video in part)
        if not path.exists() or path.read_text() != text:
            write_text_atomic(path, text)
        paths.append(path)
    for stale in folder.glob("list-*.txt"):
        if stale not in paths:
            stale.unlink()
    return paths
