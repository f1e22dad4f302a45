"""The extraction pipeline: sources in, a sharded HDF5 dataset out, resumable and crash-safe.

One loop serves every way of producing videos: a runner (joblib processes on this machine, a
Dask cluster, or the rawframes importer) yields one outcome per source, and the pipeline records
each (failures kept, staged videos packed into shards, the index republished as it goes).
Re-running the same command skips every video whose stored copy was made with the same settings
from the same source (size and mtime); nothing is reported done that the output does not hold.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from tqdm import tqdm

from flowkit.errors import FlowkitError
from flowkit.extraction.local import LocalRunner, available_cores
from flowkit.extraction.settings import ExtractSettings
from flowkit.extraction.worker import VideoOutcome, engine_for
from flowkit.params import check_count
from flowkit.store.dataset import DEFAULT_SHARD_BYTES, DatasetWriter, WriteReport
from flowkit.store.failures import FailureRecord
from flowkit.store.format import IdChecker, canonical_settings
from flowkit.store.index import read_index
from flowkit.store.shards import SourceSignature, VideoVersion, is_current, source_signature
from flowkit.video import VideoFile, find_videos

__all__ = ["ExtractReport", "ExtractSettings", "PipelineCounts", "Runner", "available_cores",
           "extract", "plan", "run_pipeline"]

REINDEX_EVERY_S = 60.0


class Source(Protocol):
    """What the pipeline needs of a source: an id and a path relative to the input."""

    id: str
    relpath: str


S = TypeVar("S", bound=Source)


class Runner(Protocol[S]):
    """Produces the videos of `todo`, yielding one outcome per source as each ends."""

    def outcomes(self, todo: list[S], on_pairs: Callable[[int], None]) -> Iterator[VideoOutcome]: ...


def file_signature(source: Source) -> SourceSignature | None:
    """A video file's signature: its size and mtime."""
    assert isinstance(source, VideoFile)
    return source_signature(source.path)


def plan(
    sources: list[S], live: dict[str, VideoVersion], settings_json: str, force: bool,
    signature: Callable[[S], SourceSignature | None] = file_signature,
) -> tuple[list[S], int, list[FailureRecord]]:
    """Split `sources` into those to produce, a count of those already done, and invalid ones."""
    todo: list[S] = []
    invalid: list[FailureRecord] = []
    skipped = 0
    ids = IdChecker({s.id for s in sources} | set(live))
    for source in sources:
        problem = ids.problem(source.id, source.relpath)
        if problem is not None:
            invalid.append(FailureRecord.now(source.id or source.relpath, source.relpath, problem))
            continue
        if not force and is_current(live.get(source.id), settings_json, signature(source)):
            skipped += 1
            continue
        todo.append(source)
    return todo, skipped, invalid


@dataclass
class PipelineCounts:
    """What a pipeline run produced, beyond a WriteReport's skips and failures."""

    done: int = 0
    frames: int = 0
    done_ids: list[str] = field(default_factory=list)


def run_pipeline(
    dataset: DatasetWriter, sources: list[S], runner: Runner[S], settings_json: str, force: bool,
    report: WriteReport, *, progress: bool = True,
    signature: Callable[[S], SourceSignature | None] = file_signature,
) -> PipelineCounts:
    """Produce every source of `sources` not already current in `dataset` with `runner`, recording
    each outcome; fills `report` (skipped, pairs, failed, problems, failures, interrupted)."""
    counts = PipelineCounts()
    todo, report.skipped, invalid = plan(sources, dataset.live_versions(), settings_json, force,
                                         signature)
    for failure in invalid:
        dataset.failed(failure)
        report.failed.append(failure)
    bars = _ProgressBars(len(todo), progress)
    try:
        _record_outcomes(dataset, runner.outcomes(todo, bars.pairs.update), bars, report, counts)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bars.close()
        report.problems, report.failures = dataset.finish()
    _check_published(dataset, report, counts)
    return counts


class _ProgressBars:
    """A video bar and a pair bar, shown only on a terminal (a log gets the summary, which lists
    every failure)."""

    def __init__(self, videos: int, progress: bool) -> None:
        disable = None if progress else True  # None: on a terminal only
        self.total = videos
        self.videos = tqdm(total=videos, unit="video", desc="videos", disable=disable,
                           dynamic_ncols=True, position=0)
        self.pairs = tqdm(total=None, unit="pair", desc="pairs ", disable=disable,
                          dynamic_ncols=True, position=1)

    def close(self) -> None:
        self.pairs.close()
        self.videos.close()


def _record_outcomes(
    dataset: DatasetWriter, outcomes: Iterator[VideoOutcome], bars: _ProgressBars,
    report: WriteReport, counts: PipelineCounts,
) -> None:
    """Record every outcome as it comes."""
    published, reindex_s = time.monotonic(), 0.0
    for outcome in outcomes:
        if outcome.ok:
            dataset.succeeded(outcome.source)
            counts.done += 1
            counts.frames += outcome.frames
            counts.done_ids.append(outcome.id)
            report.pairs += outcome.pairs
            # The pair count so far, extrapolated over the videos still to do, for an ETA.
            bars.pairs.total = int(report.pairs / counts.done * bars.total)
        else:
            failure = FailureRecord.now(outcome.id, outcome.source, outcome.error, outcome.detail)
            dataset.failed(failure)
            report.failed.append(failure)
            if not bars.videos.disable:  # live, above the bars; the summary lists it again
                tqdm.write(f"failed: {outcome.source}: {outcome.error}", file=sys.stderr)
        bars.videos.update(1)
        if outcome.staged:
            if outcome.ok:
                dataset.staged(outcome.bytes)
        elif time.monotonic() - published > max(REINDEX_EVERY_S, 10 * reindex_s):
            # Tasks publish shards of their own: show them in the index now and then. By time,
            # and at most a tenth of it: an index of N videos costs O(N) to write (about 1 ms
            # a video), so a fixed count of videos would cost O(N^2) at Kinetics' size.
            start = time.monotonic()
            dataset.reindex()
            published = time.monotonic()
            reindex_s = published - start


def _check_published(dataset: DatasetWriter, report: WriteReport, counts: PipelineCounts) -> None:
    """Every video reported done must be in the published index; any that is not becomes a
    failure, so a summary never counts work its output does not hold."""
    if not counts.done_ids:
        return
    held = read_index(dataset.layout.index).entries
    lost = [video_id for video_id in counts.done_ids if video_id not in held]
    for video_id in lost:
        failure = FailureRecord.now(video_id, video_id, "finished, but not in the published output")
        dataset.failed(failure)
        report.failed.append(failure)
    counts.done -= len(lost)


@dataclass
class ExtractReport(WriteReport):
    """What an extraction run did."""

    videos: int = 0
    extracted: int = 0


def extract(
    input_dir: str | Path,
    output: str | Path,
    settings: ExtractSettings | None = None,
    *,
    list_file: str | Path | None = None,
    jobs: int | None = None,
    threads: int | None = None,
    force: bool = False,
    progress: bool = True,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    scheduler: str | None = None,
    task_size: int = 16,
) -> ExtractReport:
    """Extract every video under `input_dir` (or in `list_file`) into the dataset `output`.

    With `scheduler` (`tcp://host:port`, or `local:N` for N local worker processes), videos go
    to a Dask cluster in tasks of `task_size`, each packed into its own shard.

    Raises FlowkitError for problems with the run as a whole (bad options, missing input folder,
    unwritable or foreign output, changed settings without `force`); a bad video is recorded.
    """
    settings = settings or ExtractSettings()
    settings.validate()
    check_count("--jobs", jobs)
    check_count("--threads", threads)
    check_count("--task-size", task_size)
    if shard_bytes < 1:
        raise FlowkitError(f"shard_bytes must be at least 1, got {shard_bytes}")
    videos = find_videos(Path(input_dir), Path(list_file) if list_file else None)
    if not videos:
        raise FlowkitError(f"no videos found in {input_dir}")
    report = ExtractReport(videos=len(videos))
    start = time.perf_counter()
    with ExitStack() as stack:
        client = None
        if scheduler:
            from flowkit.extraction.cluster import dask_client

            # A malformed or unreachable scheduler fails here, before the output is touched.
            client = stack.enter_context(dask_client(scheduler, quiet=not progress))
        dataset = stack.enter_context(DatasetWriter(output, shard_bytes))
        settings = settings.keeping_stored_engine(dataset.stored_settings()).choosing_engine(videos)
        fingerprint = settings.fingerprint
        engine_for(settings)  # a bad device or parameter fails here, once, before any work
        dataset.adopt_settings(fingerprint, force)
        if client is not None:
            from flowkit.extraction.cluster import DaskRunner

            runner: Runner[VideoFile] = DaskRunner(client, dataset.layout.shard_dir, settings, task_size)
        else:
            runner = LocalRunner(dataset.layout.staging_dir, settings, jobs or available_cores(), threads)
        counts = run_pipeline(dataset, videos, runner, canonical_settings(fingerprint), force, report,
                              progress=progress)
        report.extracted = counts.done
    report.seconds = time.perf_counter() - start
    return report
