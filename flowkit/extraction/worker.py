"""One video's extraction, as a worker process runs it: decode, compute flow, quantize, stage.

A thread decodes ahead, the calling thread computes flow (in batches for the torch engine), a
thread quantizes, compresses and writes the staged file. Every error becomes a failed outcome,
never a raise: one odd video must not stop a batch of thousands.

With `settings.warp`, each pair's camera motion is estimated (flowkit.flow.camera_motion: SIFT
features of every frame, once), the second frame warped onto the first, and their flow computed
by the same engine with the same parameters: TSN's warped flow. A pair without a trustworthy
homography keeps its plain flow as warped flow and is counted (`homography_fallbacks`).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flowkit.errors import FlowkitError, VideoError
from flowkit.extraction.background import OrderedWriter, prefetch
from flowkit.extraction.settings import ExtractSettings
from flowkit.flow.camera_motion import CameraMotion, Features, warp_onto_first
from flowkit.flow.engines import FlowEngine
from flowkit.flow.quantize import quantize_flow
from flowkit.store.format import VideoAttrs, canonical_settings
from flowkit.store.staging import StagedVideoWriter
from flowkit.video import VideoFile, VideoReader


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


_ENGINES: dict[tuple, FlowEngine] = {}


def engine_for(settings: ExtractSettings) -> FlowEngine:
    """One engine per worker process and settings, reused across its videos."""
    key = (settings.algorithm, settings.params, settings.backend, settings.device, settings.preset,
           settings.batch_size, settings.compile)
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
    engine = engine_for(settings)
    engine.set_threads(threads)
    reader = VideoReader(video.path, settings.size, settings.fps)
    writer: StagedVideoWriter | None = None
    background = OrderedWriter(depth=8)
    window: deque[np.ndarray] = deque(maxlen=settings.step + 1)
    batch: list[tuple[np.ndarray, np.ndarray]] = []  # pairs waiting for one engine call
    motion = CameraMotion() if settings.warp else None
    features: deque[Features] = deque(maxlen=settings.step + 1)  # of the frames in `window`
    batch_features: list[tuple[Features, Features]] = []
    pairs = 0
    fallbacks = 0  # warped pairs without a homography
    unreported = 0
    last_report = time.monotonic()

    def compute(batch: list[tuple[np.ndarray, np.ndarray]]) -> None:
        nonlocal fallbacks
        firsts, seconds = [a for a, _ in batch], [b for _, b in batch]
        forwards = engine.calc_batch(firsts, seconds)
        backwards = engine.calc_batch(seconds, firsts) if settings.backward else [None] * len(batch)
        warped: list[np.ndarray | None] = [None] * len(batch)
        if motion is not None:
            warped, failed = _warped_flows(engine, motion, batch, batch_features, forwards)
            fallbacks += failed
        for forward, backward, warp in zip(forwards, backwards, warped, strict=True):
            background.submit(_write_flow, writer, forward, settings.bound)
            if backward is not None:
                background.submit(_write_flow, writer, backward, settings.bound, True)
            if warp is not None:
                background.submit(_write_flow, writer, warp, settings.bound, False, True)
        batch.clear()
        batch_features.clear()

    try:
        for frame in prefetch(reader, size=8):
            if parent_pid is not None and os.getppid() != parent_pid:
                raise _ParentGone
            if writer is None:
                writer = StagedVideoWriter(
                    staging_dir, video.id, reader.height, reader.width,
                    backward=settings.backward, warped=settings.warp,
                    rgb_quality=settings.rgb_quality if settings.rgb else None,
                    flow_format=settings.flow_format, flow_quality=settings.flow_quality,
                    compression=settings.compression,
                )
            if settings.rgb:
                background.submit(writer.append_rgb, frame)
            window.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
            if motion is not None:
                features.append(motion.features(window[-1]))
            if len(window) <= settings.step:
                continue
            batch.append((window[0], window[-1]))
            if motion is not None:
                batch_features.append((features[0], features[-1]))
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
        writer.commit(_video_attrs(video, reader, settings, engine, stat, pairs, elapsed), fallbacks)
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


def _warped_flows(engine: FlowEngine, motion: CameraMotion, batch: list[tuple[np.ndarray, np.ndarray]],
                  features: list[tuple[Features, Features]], forwards: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Each pair's flow against its second frame warped onto the first (one engine call for the
    batch), and how many pairs had no homography: their warped flow is the plain flow."""
    estimates = [motion.estimate(a, b, first.shape[:2]) for (first, _), (a, b) in zip(batch, features, strict=True)]
    found = [i for i, estimate in enumerate(estimates) if estimate.found]
    flows = engine.calc_batch([batch[i][0] for i in found],
                              [warp_onto_first(*batch[i], estimates[i].homography) for i in found]) if found else []
    warped = list(forwards)
    for i, flow in zip(found, flows, strict=True):
        warped[i] = flow
    return warped, len(batch) - len(found)


def _write_flow(writer: StagedVideoWriter, flow: np.ndarray, bound: float, backward: bool = False,
                warped: bool = False) -> None:
    """Quantize (H, W, 2) float flow to (2, H, W) codes and store them (in the writer thread)."""
    writer.append_flow(np.moveaxis(quantize_flow(flow, bound), -1, 0), backward, warped)


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
