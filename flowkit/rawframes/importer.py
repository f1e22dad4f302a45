"""Importing rawframes folders (TSN, denseflow, mmaction2, twostreamfusion) into a flowkit dataset.

RGB and flow JPEGs are stored byte for byte; the flow codes are taken to be quantized with the
bound given (the files do not say). Which layout each video was read in (flowkit.rawframes.names)
is kept on the video as `rawframes_layout`.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flowkit.errors import FlowkitError, VideoError
from flowkit.extraction.pipeline import run_pipeline
from flowkit.extraction.worker import VideoOutcome
from flowkit.flow.quantize import DEFAULT_BOUND
from flowkit.params import check_positive
from flowkit.rawframes.names import (
    FLOW_X,
    FLOW_Y,
    PARTNER,
    RGB,
    RawframeFolder,
    Stream,
    describe_layout,
    find_rawframe_folders,
)
from flowkit.store.codec import JPEG_MAGIC
from flowkit.store.dataset import DEFAULT_SHARD_BYTES, DatasetWriter, WriteReport
from flowkit.store.format import (
    ENCODING_JPEG,
    FORMAT_VERSION,
    UNKNOWN_QUALITY,
    VideoAttrs,
    canonical_settings,
)
from flowkit.store.shards import SourceSignature
from flowkit.store.staging import StagedVideoWriter

IMPORTED_FROM = "rawframes"


@dataclass
class ImportedVideoAttrs(VideoAttrs):
    """A video's attributes plus the rawframes layout it was read in (`flowkit info` shows it)."""

    rawframes_layout: str = ""  # stored under flowkit.store.summary.LAYOUT_ATTR


@dataclass
class ImportReport(WriteReport):
    """What an import did."""

    folders: int = 0
    imported: int = 0
    frames: int = 0
    dropped_extra_flow: list[str] = field(default_factory=list)  # ids with one flow per frame


def import_settings(bound: float, algorithm: str) -> dict[str, Any]:
    """The settings of an import, stored like extraction's and compared on re-runs."""
    return {
        "algorithm": algorithm,
        "bound": float(bound),
        "imported_from": IMPORTED_FROM,
        "format_version": FORMAT_VERSION,
        # The other keys extraction's settings always hold, so whatever reads them (flowkit
        # info) reads these too: the frames are kept as found, at an unknown rate.
        "params": {},
        "size": "keep",
        "fps": None,
        "step": 1,
        "backward": False,
        "rgb": True,
        "rgb_quality": None,
    }


def one_line(exc: BaseException) -> str:
    """An exception as the one line a failure record holds."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if isinstance(exc, FlowkitError) else f"{type(exc).__name__}: {text}"


@dataclass(frozen=True)
class _Counts:
    frames: int
    pairs: int
    dropped_extra_flow: bool


def _check_flow_pair(flow_x: Stream | None, flow_y: Stream | None) -> None:
    """Both flow streams or neither, in partner namings, with the same numbers."""
    if flow_x is None and flow_y is None:
        return
    if flow_x is None or flow_y is None:
        present = flow_x or flow_y
        first = min(present.files)
        raise VideoError(f"{PARTNER[present.naming].shown(first)} is missing for {present.naming.shown(first)}")
    if PARTNER[flow_x.naming] != flow_y.naming:
        raise VideoError(f"{flow_x.shown_first()} and {flow_y.shown_first()} are not one flow naming")
    for stream, other in ((flow_x, flow_y), (flow_y, flow_x)):
        lonely = sorted(set(stream.files) - set(other.files))
        if lonely:
            raise VideoError(f"{other.naming.shown(lonely[0])} is missing for {stream.naming.shown(lonely[0])}")


def _counts(folder: RawframeFolder) -> _Counts:
    """Frames and pairs to import, from file names alone; a folder that cannot be one raises."""
    if folder.problem:
        raise VideoError(folder.problem)
    rgb, flow_x = folder.streams.get(RGB), folder.streams.get(FLOW_X)
    _check_flow_pair(flow_x, folder.streams.get(FLOW_Y))
    for stream in (rgb, flow_x):
        if stream is not None:
            stream.check_numbering()
    frames = len(rgb.files) if rgb else 0
    pairs = len(flow_x.files) if flow_x else 0
    if frames == 0:
        return _Counts(pairs + 1, pairs, False)
    if pairs == 0:  # RGB only: stored without flow
        return _Counts(frames, 0, False)
    if pairs == frames - 1:
        return _Counts(frames, pairs, False)
    if pairs == frames:  # some extractors write a flow for the last frame too
        return _Counts(frames, pairs - 1, True)
    raise VideoError(
        f"{frames} img files but {pairs} flow_x files; expected {frames - 1} (or {frames})"
    )


def _read_image(file: tuple[str, Path], flags: int) -> tuple[bytes, np.ndarray]:
    shown, path = file
    data = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise VideoError(f"{shown} is not a decodable image")
    return data, image


def _read_jpeg(file: tuple[str, Path], flags: int, size: tuple[int, int]) -> bytes:
    """The bytes of a JPEG file that decodes to an image of `size` (height, width)."""
    data, image = _read_image(file, flags)
    if not data.startswith(JPEG_MAGIC):
        raise VideoError(f"{file[0]} is not a JPEG file")
    if image.shape[:2] != size:
        raise VideoError(
            f"{file[0]} is {image.shape[1]}x{image.shape[0]}, the first image {size[1]}x{size[0]}"
        )
    return data


def _first_image_size(folder: RawframeFolder) -> tuple[int, int]:
    if RGB in folder.streams:
        return _read_image(folder.streams[RGB].in_order()[0], cv2.IMREAD_COLOR)[1].shape[:2]
    return _read_image(folder.streams[FLOW_X].in_order()[0], cv2.IMREAD_GRAYSCALE)[1].shape[:2]


def _import_folder(
    folder: RawframeFolder,
    staging_dir: Path,
    settings: dict[str, Any],
) -> tuple[_Counts, int]:
    """Stage one rawframe folder as a flowkit video; raises VideoError when it cannot be one."""
    start = time.perf_counter()
    counts = _counts(folder)
    source_size, source_mtime_ns = folder.stat()
    height, width = _first_image_size(folder)
    rgb = folder.streams[RGB].in_order() if RGB in folder.streams else []
    flow = [folder.streams[kind].in_order() for kind in (FLOW_X, FLOW_Y) if kind in folder.streams]
    writer = StagedVideoWriter(
        staging_dir, folder.id, height, width,
        rgb_quality=UNKNOWN_QUALITY if rgb else None,
        flow_format=ENCODING_JPEG, flow_quality=UNKNOWN_QUALITY,
    )
    try:
        for index in range(counts.frames):
            if rgb:
                writer.append_rgb_jpeg(_read_jpeg(rgb[index], cv2.IMREAD_COLOR, (height, width)))
            if index < counts.pairs:
                u_file, v_file = (
                    _read_jpeg(files[index], cv2.IMREAD_GRAYSCALE, (height, width)) for files in flow
                )
                writer.append_flow_jpeg(u_file, v_file)
        attrs = ImportedVideoAttrs(
            id=folder.id, source=folder.source, source_size=source_size,
            source_mtime_ns=source_mtime_ns, frames=counts.frames, pairs=counts.pairs,
            height=height, width=width, fps=0.0, step=1, bound=float(settings["bound"]),
            algorithm=settings["algorithm"], params=json.dumps(settings["params"]),
            settings=canonical_settings(settings), source_fps=0.0,
            source_frames=len(rgb), header_frames=0,
            source_width=width, source_height=height,
            elapsed_s=round(time.perf_counter() - start, 3),
            rawframes_layout=describe_layout(folder.streams),
        )
        writer.commit(attrs)
    except BaseException:
        writer.abort()
        raise
    return counts, writer.size


def import_rawframes(
    in_dir: str | Path,
    output: str | Path,
    bound: float = DEFAULT_BOUND,
    algorithm: str = "imported",
    force: bool = False,
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> ImportReport:
    """Import every rawframes video under `in_dir` into the dataset `output`.

    Each video's layout is detected from its file names (flowkit.rawframes.names: TSN/flowkit,
    denseflow from 0, mmaction2's x_/y_, twostreamfusion's u/ and v/ trees) and kept as its
    `rawframes_layout` attribute. The id of a video is its folder relative to `in_dir` (the
    folder's own name when `in_dir` is one). RGB and flow JPEGs are stored byte for byte; the
    flow codes are taken to be quantized with `bound` (the files do not say). Imported videos
    have `fps` 0 (unknown), step 1, `source_frames` = RGB files found, and their RGB `quality`
    attribute is -1 (kept as found). A folder with one flow per frame loses its last flow
    (listed in `dropped_extra_flow`); one with flow only gets pairs + 1 frames and no RGB; one
    with RGB only gets no flow (0 pairs). A folder that is not a valid video is recorded as a
    failure and the others are still imported. Re-running skips folders already imported whose
    files are unchanged (total size and newest mtime).

    Raises FlowkitError for the run as a whole: missing input, no rawframe folders, unwritable or
    foreign output, or an output with other settings unless `force`.
    """
    check_positive("--bound", bound)
    if not algorithm:
        raise FlowkitError("the algorithm name must not be empty")
    in_dir = Path(in_dir)
    folders = find_rawframe_folders(in_dir)
    if not folders:
        raise FlowkitError(
            f"no rawframe folders (img_00001.jpg, flow_x_00000.jpg, x_00001.jpg, "
            f"u/<video>/frame000001.jpg ...) found in {in_dir}"
        )
    settings = import_settings(bound, algorithm)
    report = ImportReport(folders=len(folders))
    start = time.perf_counter()
    with DatasetWriter(output, shard_bytes) as dataset:
        dataset.adopt_settings(settings, force)
        runner = RawframesRunner(dataset.layout.staging_dir, settings)
        counts = run_pipeline(dataset, folders, runner, canonical_settings(settings), force, report,
                              progress=False, signature=folder_signature)
        report.imported, report.frames = counts.done, counts.frames
        report.dropped_extra_flow = runner.dropped_extra_flow
    report.seconds = time.perf_counter() - start
    return report


@dataclass
class RawframesRunner:
    """Stages each rawframes folder as a flowkit video, in this process: the runner the extraction
    pipeline takes for an import, in place of the flow engines' workers."""

    staging_dir: Path
    settings: dict[str, Any]
    dropped_extra_flow: list[str] = field(default_factory=list)

    def outcomes(self, todo: list[RawframeFolder], on_pairs: Callable[[int], None]) -> Iterator[VideoOutcome]:
        """One outcome per folder; a folder that cannot be a video fails alone."""
        for folder in todo:
            start = time.perf_counter()
            try:
                counts, size = _import_folder(folder, self.staging_dir, self.settings)
            except Exception as exc:  # one odd folder must not stop a batch of thousands
                detail = "" if isinstance(exc, FlowkitError) else traceback.format_exc()
                yield VideoOutcome(folder.id, folder.source, False, error=one_line(exc), detail=detail)
                continue
            if counts.dropped_extra_flow:
                self.dropped_extra_flow.append(folder.id)
            on_pairs(counts.pairs)
            yield VideoOutcome(folder.id, folder.source, True, counts.frames, counts.pairs,
                               time.perf_counter() - start, size)


def folder_signature(folder: RawframeFolder) -> SourceSignature | None:
    """A folder's signature (its files' total size and newest mtime); None when its file names
    alone rule it out, so that it is tried (and fails) again."""
    return None if folder.problem else folder.stat()
