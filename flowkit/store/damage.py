"""Damage marks: `flowkit verify` records each damaged video so that the next run redoes it.

A mark names one copy of a video (its id, its shard, its extraction time), not the id alone: a
copy made after the mark is a new one and is not damaged, so a redo needs no clean-up to count,
and a mark written while a writer replaces the video can only be stale, never wrong. The writer
deletes marks whose copy is no longer the published one when it publishes an index.
One small JSON file per video (`damaged/<name>-<hash>.json`), written atomically: `verify` and a
writer never rewrite each other's files.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from flowkit.store.layout import DatasetLayout, safe_name, write_json_atomic


@dataclass(frozen=True)
class DamageMark:
    """One damaged copy: `shard` as the index names it (relative to the index's folder);
    `extracted_at_ns` 0 when its attributes could not be read (then any copy in that shard)."""

    id: str
    shard: str
    extracted_at_ns: int
    problem: str
    time: str = ""


def _mark_path(layout: DatasetLayout, video_id: str) -> Path:
    return layout.damage_dir / f"{safe_name(video_id)}.json"


def mark_damaged(layout: DatasetLayout, marks: list[DamageMark]) -> None:
    """Record `marks`; raises OSError when the dataset's folder cannot be written."""
    if not marks:
        return
    layout.damage_dir.mkdir(parents=False, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for mark in marks:
        data = asdict(mark)
        data["time"] = data["time"] or stamp
        write_json_atomic(_mark_path(layout, mark.id), data)


def read_marks(layout: DatasetLayout) -> dict[str, DamageMark]:
    """Every recorded mark by video id; unreadable mark files are skipped."""
    marks: dict[str, DamageMark] = {}
    if layout.damage_dir.is_dir():
        for path in layout.damage_dir.glob("*.json"):
            try:
                mark = DamageMark(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            marks[mark.id] = mark
    return marks


def clear_mark(layout: DatasetLayout, video_id: str) -> None:
    _mark_path(layout, video_id).unlink(missing_ok=True)


def marks_copy(mark: DamageMark, shard: str, extracted_at_ns: int) -> bool:
    """Whether `mark` is about the copy in `shard` (relative path) made at `extracted_at_ns`."""
    return mark.shard == shard and mark.extracted_at_ns in (0, extracted_at_ns)
