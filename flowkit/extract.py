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
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from flowkit.background import OrderedWriter, prefetch
from flowkit.errors import FlowkitError, VideoError
from flowkit.flow.engines import FlowEngine, create_engine
from flowkit.flow.quantize import DEFAULT_BOUND, quantize_flow
from flowkit.progress import ProgressReceiver
from flowkit.store.dataset import DEFAULT_SHARD_BYTES, DatasetWriter
from flowkit.store.failures import FailureRecord, clear_failure, read_failures, record_failure
from flowkit.store.format import FORMAT_VERSION, VideoAttrs, check_video_id
from flowkit.store.layout import DatasetLayout
from flowkit.store.shards import VideoVersion
from flowkit.store.staging import DEFAULT_COMPRESSION, StagedVideoWriter
from flowkit.video import FrameSize, VideoFile, VideoReader, find_videos


@dataclass(frozen=True)
class ExtractSettings:
    """Everything that decides the stored values; a change to any of them means redoing a video."""

    algorithm: str = "tvl1"
    params: tuple[tuple[str, Any], ...] = ()
    bound: float = DEFAULT_BOUND
    size: FrameSize = field(default_factory=FrameSize)
    fps: float | None = None
    step: int = 1
    backward: bool = False
    rgb: bool = True
    rgb_quality: int = 95
    compression: int = DEFAULT_COMPRESSION  # storage only: not part of the fingerprint

    def validate(self) -> None:
        if self.bound <= 0:
            raise FlowkitError(f"--bound must be positive, got {self.bound}")
        if self.step < 1:
            raise FlowkitError(f"--step must be at least 1, got {self.step}")
        if self.fps is not None and self.fps <= 0:
            raise FlowkitError(f"--fps must be positive, got {self.fps}")
        if not 0 <= self.rgb_quality <= 100:
            raise FlowkitError(f"--rgb-quality must be 0..100, got {self.rgb_quality}")
        if not 0 <= self.compression <= 9:
            raise FlowkitError(f"--compression must be 0..9, got {self.compression}")
        self.size.validate()

    def engine(self) -> FlowEngine:
        return create_engine(self.algorithm, dict(self.params))

    def fingerprint(self) -> dict[str, Any]:
        """The settings as stored in the dataset and compared on resume (engine params resolved)."""
        return {
            "algorithm": self.algorithm,
            "params": self.engine().params,
            "bound": float(self.bound),
            "size": self.size.describe(),
            "fps": self.fps,
            "step": self.step,
            "backward": self.backward,
            "rgb": self.rgb,
            "rgb_quality": self.rgb_quality if self.rgb else None,
            "format_version": FORMAT_VERSION,
        }


def canonical(fingerprint: dict[str, Any]) -> str:
    return json.dumps(fingerprint, sort_keys=True)


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


# ---- the worker side ------------------------------------------------------------------------

_ENGINES: dict[str, FlowEngine] = {}


def _engine_for(settings: ExtractSettings) -> FlowEngine:
    """One engine per worker process and settings, reused across its videos."""
    key = f"{settings.algorithm}:{sorted(settings.params)}"
    if key not in _ENGINES:
        _ENGINES[key] = settings.engine()
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
    pairs = 0
    unreported = 0
    last_report = time.monotonic()
    try:
        for frame in prefetch(reader, size=8):
            if parent_pid is not None and os.getppid() != parent_pid:
                raise _ParentGone
            if writer is None:
                writer = StagedVideoWriter(
                    staging_dir, video.id, reader.height, reader.width,
                    backward=settings.backward,
                    rgb_quality=settings.rgb_quality if settings.rgb else None,
                    compression=settings.compression,
                )
            if settings.rgb:
                background.submit(_write_rgb, writer, frame, settings.rgb_quality)
            window.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
            if len(window) <= settings.step:
                continue
            forward = engine.calc(window[0], window[-1])
            background.submit(_write_flow, writer.append_flow, forward, settings.bound)
            if settings.backward:
                backward = engine.calc(window[-1], window[0])
                background.submit(_write_flow, writer.append_backward_flow, backward, settings.bound)
            pairs += 1
            unreported += 1
            if progress is not None and time.monotonic() - last_report > 0.5:
                progress(unreported)
                unreported, last_report = 0, time.monotonic()
        background.close()
        if reader.frames <= settings.step:
            found = "no" if reader.frames == 0 else f"only {reader.frames}"
            raise VideoError(
                f"{found} decodable frame{'s' if reader.frames != 1 else ''}; "
                f"flow at step {settings.step} needs at least {settings.step + 1}"
            )
        assert writer is not None
        elapsed = time.perf_counter() - start
        path = writer.commit(_video_attrs(video, reader, settings, stat, pairs, elapsed))
        writer = None
        if progress is not None and unreported:
            progress(unreported)
        return VideoOutcome(video.id, video.relpath, True, reader.frames, pairs, elapsed,
                            path.stat().st_size)
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


def _write_rgb(writer: StagedVideoWriter, frame: np.ndarray, quality: int) -> None:
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise VideoError("JPEG encoding failed")
    writer.append_rgb(encoded)


def _write_flow(append: Callable[[np.ndarray], None], flow: np.ndarray, bound: float) -> None:
    append(np.moveaxis(quantize_flow(flow, bound), -1, 0))


def _video_attrs(
    video: VideoFile, reader: VideoReader, settings: ExtractSettings,
    stat: os.stat_result | None, pairs: int, elapsed: float,
) -> VideoAttrs:
    fingerprint = settings.fingerprint()
    return VideoAttrs(
        id=video.id, source=video.relpath,
        source_size=stat.st_size if stat else -1,
        source_mtime_ns=stat.st_mtime_ns if stat else -1,
        frames=reader.frames, pairs=pairs, height=reader.height, width=reader.width,
        fps=settings.fps or reader.source_fps, step=settings.step, bound=float(settings.bound),
        algorithm=settings.algorithm, params=json.dumps(fingerprint["params"], sort_keys=True),
        settings=canonical(fingerprint), source_fps=reader.source_fps,
        source_frames=reader.decoded, header_frames=reader.header_frames,
        source_width=reader.source_width, source_height=reader.source_height,
        elapsed_s=round(elapsed, 3),
    )


# ---- the main side ----------------------------------------------------------------------------


@dataclass
class ExtractReport:
    """What a run did; `failed` lists this run's failures, `failures` all recorded ones."""

    videos: int = 0
    skipped: int = 0
    extracted: int = 0
    pairs: int = 0
    seconds: float = 0.0
    failed: list[FailureRecord] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


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
    seen: dict[str, str] = {}
    ids = {v.id for v in videos} | set(live)
    for video in videos:
        problem = check_video_id(video.id)
        if problem is None and video.id in seen:
            problem = f"same id as {seen[video.id]} (ids are paths without extension)"
        if problem is None:
            parents = video.id.split("/")[:-1]
            clash = next(("/".join(parents[: i + 1]) for i in range(len(parents))
                          if "/".join(parents[: i + 1]) in ids), None)
            if clash is not None:
                problem = f"id clashes with video {clash!r}, whose id is a folder of this one"
        if problem is not None:
            invalid.append(FailureRecord.now(video.id or video.relpath, video.relpath, problem))
            continue
        seen[video.id] = video.relpath
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
    todo: list[VideoFile], staging_dir: Path, settings: ExtractSettings, jobs: int,
    on_pairs: Callable[[int], None],
) -> Iterable[VideoOutcome]:
    workers = max(1, min(jobs, len(todo)))
    threads = max(1, available_cores() // workers)
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
    force: bool = False,
    progress: bool = True,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    log: Callable[[str], None] | None = None,
) -> ExtractReport:
    """Extract every video under `input_dir` (or in `list_file`) into the dataset `output`.

    Raises FlowkitError for problems with the run as a whole (missing input folder, unwritable or
    foreign output, changed settings without `force`); a bad video is recorded and reported.
    """
    settings = settings or ExtractSettings()
    settings.validate()
    fingerprint = settings.fingerprint()
    settings_json = canonical(fingerprint)
    videos = find_videos(Path(input_dir), Path(list_file) if list_file else None)
    if not videos:
        raise FlowkitError(f"no videos found in {input_dir}")
    jobs = jobs or available_cores()
    if jobs < 1:
        raise FlowkitError(f"--jobs must be at least 1, got {jobs}")
    report = ExtractReport(videos=len(videos))
    start = time.perf_counter()
    with DatasetWriter(output) as dataset:
        previous = dataset.stored_settings()
        if previous is not None and canonical(previous) != settings_json and not force:
            changed = sorted(k for k in fingerprint if previous.get(k) != fingerprint[k])
            raise FlowkitError(
                f"{output} was extracted with other settings ({', '.join(changed)} differ); "
                "use --force to redo every video with the new ones, or another output file"
            )
        dataset.store_settings(fingerprint)
        if dataset.layout.staged_paths():  # finished videos a killed run left unpacked
            dataset.pack(shard_bytes)
        todo, report.skipped, invalid = plan(videos, dataset.live_versions(), settings_json, force)
        for failure in invalid:
            record_failure(dataset.layout, failure)
            report.failed.append(failure)
        try:
            _extract_all(dataset, todo, settings, jobs, progress, shard_bytes, report, log)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            dataset.pack(shard_bytes)
            report.problems = list(dataset.problems)
            report.failures = read_failures(dataset.layout)
    report.seconds = time.perf_counter() - start
    return report


def _extract_all(
    dataset: DatasetWriter, todo: list[VideoFile], settings: ExtractSettings, jobs: int,
    progress: bool, shard_bytes: int, report: ExtractReport, log: Callable[[str], None] | None,
) -> None:
    layout: DatasetLayout = dataset.layout
    video_bar = tqdm(total=len(todo), unit="video", desc="videos", disable=not progress,
                     dynamic_ncols=True, position=0)
    pair_bar = tqdm(total=None, unit="pair", desc="pairs ", disable=not progress,
                    dynamic_ncols=True, position=1)
    staged_bytes = dataset.staged_bytes()
    try:
        for done, outcome in enumerate(
            _run_workers(todo, layout.staging_dir, settings, jobs, pair_bar.update), 1
        ):
            if outcome.ok:
                clear_failure(layout, outcome.source)
                report.extracted += 1
                report.pairs += outcome.pairs
                staged_bytes += outcome.bytes
                # The pair count so far, extrapolated over the videos still to do, for an ETA.
                pair_bar.total = int(report.pairs / report.extracted * len(todo))
            else:
                failure = FailureRecord.now(outcome.id, outcome.source, outcome.error, outcome.detail)
                record_failure(layout, failure)
                report.failed.append(failure)
                message = f"failed: {outcome.source}: {outcome.error}"
                if progress:
                    tqdm.write(message)
                elif log is not None:
                    log(message)
            video_bar.update(1)
            if log is not None and not progress and outcome.ok:
                log(f"[{done}/{len(todo)}] {outcome.id}: {outcome.pairs} pairs in {outcome.seconds:.1f} s")
            if staged_bytes >= shard_bytes:
                dataset.pack(shard_bytes)
                staged_bytes = 0
    finally:
        pair_bar.close()
        video_bar.close()
