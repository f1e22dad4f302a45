"""The extraction pipeline: videos to quantized flow and JPEG frames in a sharded HDF5 dataset.

One worker process per job runs one flow engine and extracts whole videos: a thread decodes ahead,
the main thread computes flow, a thread quantizes, compresses and writes. Each finished video is
published as a staged file; the main process records failures, packs staged videos into shards
and republishes the index as it goes. Re-running the same command skips every video whose stored
copy was made with the same settings from the same source file (size and mtime).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from flowkit.errors import FlowkitError, VideoError
from flowkit.extraction.background import OrderedWriter, prefetch
from flowkit.extraction.progress import ProgressReceiver
from flowkit.flow.engines import (
    FlowEngine,
    create_engine,
    engine_class,
    resolve_backend,
    resolve_params,
)
from flowkit.flow.quantize import DEFAULT_BOUND, quantize_flow
from flowkit.store.dataset import DEFAULT_SHARD_BYTES, DatasetWriter, WriteReport
from flowkit.store.failures import FailureRecord
from flowkit.store.format import (
    ENCODING_JPEG,
    FLOW_ENCODINGS,
    FORMAT_VERSION,
    IdChecker,
    VideoAttrs,
    canonical_settings,
)
from flowkit.store.shards import VideoVersion
from flowkit.store.staging import DEFAULT_COMPRESSION, DEFAULT_QUALITY, StagedVideoWriter
from flowkit.video import FrameSize, VideoFile, VideoReader, find_videos


@dataclass(frozen=True)
class ExtractSettings:
    """Everything that decides the stored values; a change to any of them means redoing a video."""

    algorithm: str = "tvl1"
    params: tuple[tuple[str, Any], ...] = ()
    engine: str = "auto"  # opencv, torch, or auto: the fastest (see flow.engines.resolve_backend)
    device: str = "auto"  # torch engine only; not fingerprinted: devices agree to float rounding
    batch_size: int | None = None  # pairs per torch engine call; results do not depend on it
    preset: str = "default"
    bound: float = DEFAULT_BOUND
    size: FrameSize = field(default_factory=FrameSize)
    fps: float | None = None
    step: int = 1
    backward: bool = False
    rgb: bool = True
    rgb_quality: int = DEFAULT_QUALITY
    flow_format: str = ENCODING_JPEG
    flow_quality: int = DEFAULT_QUALITY
    compression: int = DEFAULT_COMPRESSION  # raw flow's deflate level: lossless, not fingerprinted

    def validate(self) -> None:
        if self.bound <= 0:
            raise FlowkitError(f"--bound must be positive, got {self.bound}")
        if self.step < 1:
            raise FlowkitError(f"--step must be at least 1, got {self.step}")
        if self.fps is not None and self.fps <= 0:
            raise FlowkitError(f"--fps must be positive, got {self.fps}")
        if not 0 <= self.rgb_quality <= 100:
            raise FlowkitError(f"--rgb-quality must be 0..100, got {self.rgb_quality}")
        if not 0 <= self.flow_quality <= 100:
            raise FlowkitError(f"--flow-quality must be 0..100, got {self.flow_quality}")
        if self.flow_format not in FLOW_ENCODINGS:
            raise FlowkitError(
                f"--flow-format must be one of {', '.join(FLOW_ENCODINGS)}, not {self.flow_format!r}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise FlowkitError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 <= self.compression <= 9:
            raise FlowkitError(f"--compression must be 0..9, got {self.compression}")
        self.size.validate()

    @property
    def backend(self) -> str:
        return resolve_backend(self.algorithm, self.engine)

    def make_engine(self) -> FlowEngine:
        if self.backend == "torch":
            return engine_class(self.algorithm, "torch")(
                resolve_params(self.algorithm, dict(self.params), self.preset), device=self.device,
                batch_size=self.batch_size)
        return create_engine(self.algorithm, dict(self.params), self.backend, self.device, self.preset)

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        """The settings as stored in the dataset and compared on resume (engine params resolved)."""
        return {
            "algorithm": self.algorithm,
            "engine": self.backend,
            "params": resolve_params(self.algorithm, dict(self.params), self.preset),
            "bound": float(self.bound),
            "size": self.size.describe(),
            "fps": self.fps,
            "step": self.step,
            "backward": self.backward,
            "rgb": self.rgb,
            "rgb_quality": self.rgb_quality if self.rgb else None,
            "flow_format": self.flow_format,
            "flow_quality": self.flow_quality if self.flow_format == ENCODING_JPEG else None,
            "format_version": FORMAT_VERSION,
        }


@dataclass
class VideoOutcome:
    """What one worker reports back about one video."""

    id: str
    source: str
    ok: bool
    frames: int = 0
    pairs: int = 0
    seconds: float = 0.0
    bytes: int = 0
    error: str = ""
    detail: str = ""
    staged: bool = True  # False when the video is already packed into a shard (a Dask task's)


# ---- the worker side ------------------------------------------------------------------------

_ENGINES: dict[tuple, FlowEngine] = {}


def _engine_for(settings: ExtractSettings) -> FlowEngine:
    """One engine per worker process and settings, reused across its videos."""
    key = (settings.algorithm, settings.params, settings.backend, settings.device, settings.preset,
           settings.batch_size)
    if key not in _ENGINES:
        _ENGINES[key] = settings.make_engine()
    return _ENGINES[key]


class _ParentGone(Exception):
    pass


def extract_video(
    video: VideoFile,
    staging_dir: Path,
    settings: ExtractSettings,
    threads: int = 1,
    progress: Callable[[int], None] | None = None,
    parent_pid: int | None = None,
) -> VideoOutcome:
    """Extract one video into a staged file; every error becomes a failed outcome, never a raise."""
    start = time.perf_counter()
    try:
        stat = video.path.stat()
    except OSError:
        stat = None
    engine = _engine_for(settings)
    engine.set_threads(threads)
    reader = VideoReader(video.path, settings.size, settings.fps)
    writer: StagedVideoWriter | None = None
    background = OrderedWriter(depth=8)
    window: deque[np.ndarray] = deque(maxlen=settings.step + 1)
    batch: list[tuple[np.ndarray, np.ndarray]] = []  # pairs waiting for one engine call
    pairs = 0
    unreported = 0
    last_report = time.monotonic()

    def compute(batch: list[tuple[np.ndarray, np.ndarray]]) -> None:
        firsts, seconds = [a for a, _ in batch], [b for _, b in batch]
        forwards = engine.calc_batch(firsts, seconds)
        backwards = engine.calc_batch(seconds, firsts) if settings.backward else [None] * len(batch)
        for forward, backward in zip(forwards, backwards, strict=True):
            background.submit(_write_flow, writer, forward, settings.bound, False)
            if backward is not None:
                background.submit(_write_flow, writer, backward, settings.bound, True)
        batch.clear()

    try:
        for frame in prefetch(reader, size=8):
            if parent_pid is not None and os.getppid() != parent_pid:
                raise _ParentGone
            if writer is None:
                writer = StagedVideoWriter(
                    staging_dir, video.id, reader.height, reader.width,
                    backward=settings.backward,
                    rgb_quality=settings.rgb_quality if settings.rgb else None,
                    flow_format=settings.flow_format, flow_quality=settings.flow_quality,
                    compression=settings.compression,
                )
            if settings.rgb:
                background.submit(writer.append_rgb, frame)
            window.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
            if len(window) <= settings.step:
                continue
            batch.append((window[0], window[-1]))
            if len(batch) < engine.batch_size_for(reader.height, reader.width):
                continue
            pairs += len(batch)
            unreported += len(batch)
            compute(batch)
            if progress is not None and time.monotonic() - last_report > 0.5:
                progress(unreported)
                unreported, last_report = 0, time.monotonic()
        if batch:
            pairs += len(batch)
            unreported += len(batch)
            compute(batch)
        background.close()
        if reader.frames <= settings.step:
            found = "no" if reader.frames == 0 else f"only {reader.frames}"
            raise VideoError(
                f"{found} decodable frame{'s' if reader.frames != 1 else ''}; "
                f"flow at step {settings.step} needs at least {settings.step + 1}"
            )
        assert writer is not None
        elapsed = time.perf_counter() - start
        writer.commit(_video_attrs(video, reader, settings, engine, stat, pairs, elapsed))
        size, writer = writer.size, None
        if progress is not None and unreported:
            progress(unreported)
        return VideoOutcome(video.id, video.relpath, True, reader.frames, pairs, elapsed, size)
    except (FlowkitError, _ParentGone) as exc:
        return VideoOutcome(video.id, video.relpath, False, error=str(exc) or "main process died")
    except Exception as exc:  # one odd video must not stop a batch of thousands
        detail = traceback.format_exc()
        return VideoOutcome(video.id, video.relpath, False,
                            error=f"{type(exc).__name__}: {exc}".splitlines()[0], detail=detail)
    finally:
        background.cancel()
        if writer is not None:
            writer.abort()


def _write_flow(writer: StagedVideoWriter, flow: np.ndarray, bound: float, backward: bool) -> None:
    """Quantize (H, W, 2) float flow to (2, H, W) codes and store them (in the writer thread)."""
    writer.append_flow(np.moveaxis(quantize_flow(flow, bound), -1, 0), backward)


def _video_attrs(
    video: VideoFile, reader: VideoReader, settings: ExtractSettings, engine: FlowEngine,
    stat: os.stat_result | None, pairs: int, elapsed: float,
) -> VideoAttrs:
    fingerprint = settings.fingerprint
    return VideoAttrs(
        id=video.id, source=video.relpath,
        source_size=stat.st_size if stat else -1,
        source_mtime_ns=stat.st_mtime_ns if stat else -1,
        frames=reader.frames, pairs=pairs, height=reader.height, width=reader.width,
        fps=settings.fps or reader.source_fps, step=settings.step, bound=float(settings.bound),
        algorithm=settings.algorithm, params=json.dumps(fingerprint["params"], sort_keys=True),
        settings=canonical_settings(fingerprint), source_fps=reader.source_fps,
        source_frames=reader.decoded, header_frames=reader.header_frames,
        source_width=reader.source_width, source_height=reader.source_height,
        elapsed_s=round(elapsed, 3), engine=engine.backend, device=engine.device,
    )


# ---- the main side ----------------------------------------------------------------------------


@dataclass
class ExtractReport(WriteReport):
    """What an extraction run did."""

    videos: int = 0
    extracted: int = 0


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def plan(
    videos: list[VideoFile], live: dict[str, VideoVersion], settings_json: str, force: bool
) -> tuple[list[VideoFile], int, list[FailureRecord]]:
    """Split `videos` into those to extract, a count of those already done, and invalid ones."""
    todo: list[VideoFile] = []
    invalid: list[FailureRecord] = []
    skipped = 0
    ids = IdChecker({v.id for v in videos} | set(live))
    for video in videos:
        problem = ids.problem(video.id, video.relpath)
        if problem is not None:
            invalid.append(FailureRecord.now(video.id or video.relpath, video.relpath, problem))
            continue
        current = live.get(video.id)
        if not force and current is not None:
            try:
                stat = video.path.stat()
            except OSError:
                stat = None
            if stat is not None and current.is_current(settings_json, stat.st_size, stat.st_mtime_ns):
                skipped += 1
                continue
        todo.append(video)
    return todo, skipped, invalid


def _run_workers(
    todo: list[VideoFile], staging_dir: Path, settings: ExtractSettings, jobs: int, threads: int | None,
) -> Callable[[Callable[[int], None]], Iterable[VideoOutcome]]:
    """The outcomes of `todo` extracted by `jobs` processes, given a callback for pair counts."""
    return lambda on_pairs: _worker_outcomes(todo, staging_dir, settings, jobs, threads, on_pairs)


def _worker_outcomes(
    todo: list[VideoFile], staging_dir: Path, settings: ExtractSettings, jobs: int, threads: int | None,
    on_pairs: Callable[[int], None],
) -> Iterable[VideoOutcome]:
    workers = max(1, min(jobs, len(todo)))
    threads = threads or max(1, available_cores() // workers)
    if workers == 1:
        for video in todo:
            yield extract_video(video, staging_dir, settings, threads, on_pairs)
        return
    receiver = ProgressReceiver(on_pairs)
    try:
        tasks = (
            delayed(extract_video)(v, staging_dir, settings, threads, receiver.sender, os.getpid())
            for v in todo
        )
        yield from Parallel(n_jobs=workers, return_as="generator_unordered")(tasks)
    finally:
        receiver.close()


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

    Raises FlowkitError for problems with the run as a whole (missing input folder, unwritable or
    foreign output, changed settings without `force`); a bad video is recorded and reported.
    """
    settings = settings or ExtractSettings()
    settings.validate()
    videos = find_videos(Path(input_dir), Path(list_file) if list_file else None)
    if not videos:
        raise FlowkitError(f"no videos found in {input_dir}")
    jobs = jobs or available_cores()
    if jobs < 1:
        raise FlowkitError(f"--jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise FlowkitError(f"--threads must be at least 1, got {threads}")
    if task_size < 1:
        raise FlowkitError(f"--task-size must be at least 1, got {task_size}")
    report = ExtractReport(videos=len(videos))
    start = time.perf_counter()
    with ExitStack() as stack:
        client = None
        if scheduler:
            from flowkit.extraction.cluster import dask_client, run_tasks

            # A malformed or unreachable scheduler fails here, before the output is touched.
            client = stack.enter_context(dask_client(scheduler))
        dataset = stack.enter_context(DatasetWriter(output, shard_bytes))
        settings = _keep_stored_engine(settings, dataset.stored_settings())
        fingerprint = settings.fingerprint
        _engine_for(settings)  # a bad device or parameter fails here, once, before any work
        dataset.adopt_settings(fingerprint, force)
        todo, report.skipped, invalid = plan(
            videos, dataset.live_versions(), canonical_settings(fingerprint), force
        )
        for failure in invalid:
            dataset.failed(failure)
            report.failed.append(failure)
        try:
            if client is not None:
                outcomes = run_tasks(client, todo, dataset.layout.shard_dir, settings, task_size)
                _extract_all(dataset, todo, outcomes, progress, report)
            else:
                _extract_all(dataset, todo, _run_workers(todo, dataset.layout.staging_dir, settings, jobs, threads),
                             progress, report)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            report.problems, report.failures = dataset.finish()
    report.seconds = time.perf_counter() - start
    return report


def _keep_stored_engine(settings: ExtractSettings, stored: dict[str, Any] | None) -> ExtractSettings:
    """`--engine auto` resumes with the engine the dataset was made with, not a different one."""
    if settings.engine == "auto" and stored and stored.get("algorithm") == settings.algorithm:
        engine = stored.get("engine")
        if engine in ("opencv", "torch"):
            return replace(settings, engine=engine)
    return settings


REINDEX_EVERY_S = 60.0


def _extract_all(
    dataset: DatasetWriter, todo: list[VideoFile],
    outcomes: Iterable[VideoOutcome] | Callable[[Callable[[int], None]], Iterable[VideoOutcome]],
    progress: bool, report: ExtractReport,
) -> None:
    """Record every outcome as it comes; `outcomes` may want the pair bar's update callback."""
    # disable=None: bars only on a terminal; a log gets the summary, which lists every failure.
    disable = None if progress else True
    video_bar = tqdm(total=len(todo), unit="video", desc="videos", disable=disable,
                     dynamic_ncols=True, position=0)
    pair_bar = tqdm(total=None, unit="pair", desc="pairs ", disable=disable,
                    dynamic_ncols=True, position=1)
    published, reindex_s = time.monotonic(), 0.0
    try:
        if callable(outcomes):
            outcomes = outcomes(pair_bar.update)
        for outcome in outcomes:
            if outcome.ok:
                dataset.succeeded(outcome.source)
                report.extracted += 1
                report.pairs += outcome.pairs
                if not outcome.staged:
                    pair_bar.update(outcome.pairs)
                # The pair count so far, extrapolated over the videos still to do, for an ETA.
                pair_bar.total = int(report.pairs / report.extracted * len(todo))
            else:
                failure = FailureRecord.now(outcome.id, outcome.source, outcome.error, outcome.detail)
                dataset.failed(failure)
                report.failed.append(failure)
                if not video_bar.disable:  # live, above the bars; the summary lists it again
                    tqdm.write(f"failed: {outcome.source}: {outcome.error}", file=sys.stderr)
            video_bar.update(1)
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
    finally:
        pair_bar.close()
        video_bar.close()
