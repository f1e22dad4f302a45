"""Failure records: one small JSON file per source file that failed, until it succeeds.

Records are keyed by source path, not id: two sources can claim one id, and only one fails.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from flowkit.store.layout import DatasetLayout, safe_name, write_json_atomic


@dataclass(frozen=True)
class FailureRecord:
    """Why one video failed: `error` is the one-line message, `detail` anything longer."""

    id: str
    source: str
    error: str
    time: str = ""
    detail: str = ""
    time_ns: int = 0  # orders a failure against copies of the same video (0: older than any)

    @classmethod
    def now(cls, video_id: str, source: str, error: str, detail: str = "") -> FailureRecord:
        now = time.time_ns()
        return cls(video_id, source, error, time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now / 1e9)),
                   detail, now)


def record_failure(layout: DatasetLayout, failure: FailureRecord) -> None:
    write_json_atomic(layout.failure_dir / f"{safe_name(failure.source)}.json", asdict(failure))


def clear_failure(layout: DatasetLayout, source: str) -> None:
    """Forget the failure of `source` (relative path), which has now succeeded."""
    (layout.failure_dir / f"{safe_name(source)}.json").unlink(missing_ok=True)


def read_failures(layout: DatasetLayout) -> list[FailureRecord]:
    """Every recorded failure, sorted by id; unreadable records are skipped."""
    records = []
    if layout.failure_dir.is_dir():
        for path in layout.failure_dir.glob("*.json"):
            try:
                records.append(FailureRecord(**json.loads(Path(path).read_text())))
            except (OSError, ValueError, TypeError):
                continue
    return sorted(records, key=lambda r: r.id)
