"""Extraction on this machine: joblib worker processes, each running one engine on whole videos."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from joblib import Parallel, delayed

from flowkit.extraction.progress import ProgressReceiver
from flowkit.extraction.settings import ExtractSettings
from flowkit.extraction.worker import VideoOutcome, extract_video
from flowkit.video import VideoFile


def available_cores() -> int:
    """The cores this process may run on (its affinity), as a worker count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@dataclass
class LocalRunner:
    """Extracts videos in `jobs` processes of `threads` threads each (default: cores / jobs), into
    the staging folder; a peer of the Dask runner: both yield one outcome per video."""

    staging_dir: Path
    settings: ExtractSettings
    jobs: int
    threads: int | None = None

    def outcomes(self, todo: list[VideoFile], on_pairs: Callable[[int], None]) -> Iterator[VideoOutcome]:
        """Every video's outcome as it finishes; `on_pairs` hears pair counts while they run."""
        workers = max(1, min(self.jobs, len(todo)))
        threads = self.threads or max(1, available_cores() // workers)
        settings = self.settings.compiling_for(todo)
        if workers == 1:
            for video in todo:
                yield extract_video(video, self.staging_dir, settings, threads, on_pairs)
            return
        receiver = ProgressReceiver(on_pairs)
        try:
            tasks = (
                delayed(extract_video)(v, self.staging_dir, settings, threads, receiver.sender,
                                       os.getpid())
                for v in todo
            )
            yield from Parallel(n_jobs=workers, return_as="generator_unordered")(tasks)
        finally:
            receiver.close()
