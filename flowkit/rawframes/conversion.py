"""Converting between a flowkit dataset and mmaction2/TSN "rawframes" folders, both ways.

A rawframes folder holds one video as numbered JPEG files, numbering from 1 with five digits:

    img_00001.jpg ...       the RGB frames
    flow_x_00001.jpg ...    horizontal flow codes as grayscale JPEGs (as denseflow writes them)
    flow_y_00001.jpg ...    vertical flow codes

`flow_x_0000k` is the motion from `img_0000k` to the next frame: flowkit's `flow[k - 1]`. The codes
are flowkit's own uint8 quantization (see flowkit.flow.quantize), so the bound must be known to
turn them back into pixels. mmaction2 finds the folders through annotation lists of
`path total_frames label` lines.
"""

from __future__ import annotations

import json
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flowkit.errors import FlowkitError, StoreError, VideoError
from flowkit.flow.quantize import DEFAULT_BOUND
from flowkit.store.codec import JPEG_MAGIC, encode_jpeg
from flowkit.store.dataset import DEFAULT_SHARD_BYTES, DatasetWriter, WriteReport
from flowkit.store.failures import FailureRecord
from flowkit.store.format import (
    ENCODING_JPEG,
    FORMAT_VERSION,
    UNKNOWN_QUALITY,
    IdChecker,
    VideoAttrs,
    canonical_settings,
)
from flowkit.store.layout import write_text_atomic
from flowkit.store.reader import FlowStore, VideoRecord
from flowkit.store.shards import VideoVersion
from flowkit.store.staging import StagedVideoWriter

RGB_KIND, FLOW_X_KIND, FLOW_Y_KIND = "img", "flow_x", "flow_y"
RGB_LIST = "rawframes_rgb.txt"
FLOW_LIST = "rawframes_flow.txt"
NO_LABEL = -1  # the label of every video when ids have no class folder
IMPORTED_FROM = "rawframes"
_FRAME_FILE = re.compile(r"(img|flow_x|flow_y)_(\d{5,})\.jpg")


def frame_file_name(kind: str, number: int) -> str:
    """`img_00001.jpg` for ("img", 1): mmaction2's default templates, 1-based."""
    return f"{kind}_{number:05d}.jpg"


def class_names(video_ids: list[str]) -> list[str]:
    """Sorted first path components when every id has a parent folder, else [] (no labels)."""
    if not video_ids or any("/" not in video_id for video_id in video_ids):
        return []
    return sorted({video_id.split("/", 1)[0] for video_id in video_ids})


def _label(video_id: str, classes: list[str]) -> int:
    return classes.index(video_id.split("/", 1)[0]) if classes else NO_LABEL


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if isinstance(exc, FlowkitError) else f"{type(exc).__name__}: {text}"


def _frame_files(folder: Path, names: list[str]) -> dict[str, dict[int, Path]]:
    """The rawframe files among `names`, by kind and number; a number seen twice raises."""
    files: dict[str, dict[int, Path]] = {RGB_KIND: {}, FLOW_X_KIND: {}, FLOW_Y_KIND: {}}
    for name in names:
        match = _FRAME_FILE.fullmatch(name)
        if match is None:
            continue
        kind, number = match.group(1), int(match.group(2))
        if number in files[kind]:
            raise VideoError(f"{files[kind][number].name} and {name} both number {kind} frame {number}")
        files[kind][number] = folder / name
    return files


# ---- export -------------------------------------------------------------------------------------


@dataclass
class ExportReport:
    """What an export wrote; `classes[label]` is the class folder of a label (empty: no labels)."""

    out_dir: Path
    videos: int = 0
    exported: int = 0
    frames: int = 0
    pairs: int = 0
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)
    failed: list[FailureRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def export_rawframes(
    dataset: str | Path,
    out_dir: str | Path,
    jpeg_quality: int = 95,
    ids: list[str] | None = None,
) -> ExportReport:
    """Write every video of `dataset` (or those in `ids`) as a rawframes folder `out_dir/<id>/`.

    RGB frames are the stored JPEG bytes, unchanged, and so is flow stored as JPEG (the default);
    flow stored raw becomes grayscale JPEGs of its codes at `jpeg_quality`, so it comes back
    within a small JPEG error. Backward flow is not exported
    (mmaction2 has no place for it). Videos extracted with a step other than 1 are written as
    they are: their flow_x_0000k then spans img_0000k to img_0000(k + step).

    `out_dir/rawframes_rgb.txt` and `rawframes_flow.txt` list `<id> <count> <label>`. Labels are
    indices into the sorted class folders (first id component) of the whole dataset, so exports
    of subsets (splits) agree; they are -1 when some id has no folder. Videos without RGB are
    left out of the RGB list. Re-exporting into the same folder replaces a video's frame files
    (stale higher-numbered ones are deleted) and both lists; other files are left alone.
    """
    if not 0 <= jpeg_quality <= 100:
        raise FlowkitError(f"--jpeg-quality must be 0..100, got {jpeg_quality}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    with FlowStore(dataset) as store:
        wanted = list(dict.fromkeys(ids)) if ids else store.ids
        unknown = [video_id for video_id in wanted if video_id not in store]
        if unknown:
            raise FlowkitError(f"{dataset} has no video {unknown[0]!r}" + (
                f" (and {len(unknown) - 1} more unknown ids)" if len(unknown) > 1 else ""))
        _prepare_out_dir(out_dir)
        report = ExportReport(out_dir, videos=len(wanted), classes=class_names(store.ids))
        rgb_lines, flow_lines = [], []
        for video_id in wanted:
            try:
                if any(c.isspace() for c in video_id):
                    raise FlowkitError("the id holds whitespace, which mmaction2's file lists cannot")
                frames, pairs = _export_video(store.video(video_id), out_dir / video_id, jpeg_quality)
            except (FlowkitError, OSError, KeyError, ValueError) as exc:
                report.failed.append(FailureRecord.now(video_id, video_id, _one_line(exc)))
                continue
            label = _label(video_id, report.classes)
            if frames:
                rgb_lines.append(f"{video_id} {frames} {label}\n")
            flow_lines.append(f"{video_id} {pairs} {label}\n")
            report.exported += 1
            report.frames += frames
            report.pairs += pairs
    write_text_atomic(out_dir / RGB_LIST, "".join(rgb_lines))
    write_text_atomic(out_dir / FLOW_LIST, "".join(flow_lines))
    report.seconds = time.perf_counter() - start
    return report


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FlowkitError(f"output {out_dir} exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create output folder {out_dir}: {exc.strerror}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise StoreError(f"output folder {out_dir} is not writable")


def _export_video(video: VideoRecord, folder: Path, jpeg_quality: int) -> tuple[int, int]:
    """Write one video's files; returns (RGB frames, flow pairs) written."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = video.entry.frames if video.has_rgb else 0
    pairs = video.flow.shape[0]
    for i in range(frames):
        (folder / frame_file_name(RGB_KIND, i + 1)).write_bytes(video.rgb_jpeg(i))
    stored_jpeg = video.flow_encoding == ENCODING_JPEG
    for i in range(pairs):
        if stored_jpeg:  # denseflow's own layout: the stored files, byte for byte
            files = video.flow_jpeg(i)
        else:
            codes = video.flow_codes(i)
            files = tuple(encode_jpeg(plane, jpeg_quality).tobytes() for plane in codes)
        for kind, data in zip((FLOW_X_KIND, FLOW_Y_KIND), files, strict=True):
            (folder / frame_file_name(kind, i + 1)).write_bytes(data)
    existing = _frame_files(folder, sorted(os.listdir(folder)))
    kept = {RGB_KIND: frames, FLOW_X_KIND: pairs, FLOW_Y_KIND: pairs}
    for kind, numbered in existing.items():
        for number, path in numbered.items():
            if number > kept[kind]:  # left by an earlier export of a longer video
                path.unlink()
    return frames, pairs


# ---- import -------------------------------------------------------------------------------------


@dataclass
class ImportReport(WriteReport):
    """What an import did."""

    folders: int = 0
    imported: int = 0
    frames: int = 0
    dropped_extra_flow: list[str] = field(default_factory=list)  # ids with one flow per frame


@dataclass(frozen=True)
class RawframeFolder:
    """One folder of rawframe files: its id (path relative to the input folder) and files."""

    id: str
    path: Path
    source: str
    files: dict[str, dict[int, Path]]
    problem: str = ""  # set when the folder's file names alone rule it out

    def stat(self) -> tuple[int, int]:
        """(total bytes, newest mtime in ns) of its rawframe files: a change means redo."""
        stats = [p.stat() for numbered in self.files.values() for p in numbered.values()]
        return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


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


def find_rawframe_folders(in_dir: Path) -> list[RawframeFolder]:
    """Every folder under `in_dir` (itself included, hidden ones skipped) holding rawframe files.

    Any `img_`, `flow_x_` or `flow_y_` file with a number of five or more digits makes a folder
    a rawframe folder, so one missing its first frame is reported rather than silently skipped.
    """
    if not in_dir.exists():
        raise FlowkitError(f"input folder {in_dir} does not exist")
    if not in_dir.is_dir():
        raise FlowkitError(f"input {in_dir} is not a folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(in_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        if not any(_FRAME_FILE.fullmatch(name) for name in filenames):
            continue
        source = folder.relative_to(in_dir).as_posix()
        # The input folder itself is one video: name it after the folder.
        video_id = in_dir.resolve().name if source == "." else source
        try:
            files, problem = _frame_files(folder, sorted(filenames)), ""
        except VideoError as exc:
            files, problem = {}, str(exc)
        found.append(RawframeFolder(video_id, folder, source, files, problem))
    return sorted(found, key=lambda f: f.id)


@dataclass(frozen=True)
class _Counts:
    frames: int
    pairs: int
    dropped_extra_flow: bool


def _first_gap(numbers: dict[int, Path]) -> int | None:
    """The first number missing from 1..len(numbers), or None when they are exactly that."""
    expected = 1
    for number in sorted(numbers):
        if number != expected:
            return expected
        expected += 1
    return None


def _counts(folder: RawframeFolder) -> _Counts:
    """Frames and pairs to import, from file names alone; a folder that cannot be one raises."""
    if folder.problem:
        raise VideoError(folder.problem)
    images, flow_x = folder.files[RGB_KIND], folder.files[FLOW_X_KIND]
    for kind in (FLOW_X_KIND, FLOW_Y_KIND):
        other = FLOW_Y_KIND if kind == FLOW_X_KIND else FLOW_X_KIND
        lonely = sorted(set(folder.files[kind]) - set(folder.files[other]))
        if lonely:
            raise VideoError(
                f"{frame_file_name(other, lonely[0])} is missing for {frame_file_name(kind, lonely[0])}"
            )
    for kind, numbered in ((RGB_KIND, images), (FLOW_X_KIND, flow_x)):
        gap = _first_gap(numbered)
        if gap is not None:
            raise VideoError(f"{frame_file_name(kind, gap)} is missing (numbering has a gap)")
    frames, pairs = len(images), len(flow_x)
    if frames == 0:
        return _Counts(pairs + 1, pairs, False)
    if pairs == 0:
        raise VideoError(f"{frames} img files and no flow_x/flow_y files")
    if pairs == frames - 1:
        return _Counts(frames, pairs, False)
    if pairs == frames:  # some extractors write a flow for the last frame too
        return _Counts(frames, pairs - 1, True)
    raise VideoError(
        f"{frames} img files but {pairs} flow_x files; expected {frames - 1} (or {frames})"
    )


def _read_image(path: Path, flags: int) -> tuple[bytes, np.ndarray]:
    data = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise VideoError(f"{path.name} is not a decodable image")
    return data, image


def _read_jpeg(path: Path, flags: int, size: tuple[int, int]) -> bytes:
    """The bytes of a JPEG file that decodes to an image of `size` (height, width)."""
    data, image = _read_image(path, flags)
    if not data.startswith(JPEG_MAGIC):
        raise VideoError(f"{path.name} is not a JPEG file")
    if image.shape[:2] != size:
        raise VideoError(
            f"{path.name} is {image.shape[1]}x{image.shape[0]}, the first image {size[1]}x{size[0]}"
        )
    return data


def _first_image_size(folder: RawframeFolder) -> tuple[int, int]:
    if folder.files[RGB_KIND]:
        first = folder.files[RGB_KIND][1]
        return _read_image(first, cv2.IMREAD_COLOR)[1].shape[:2]
    return _read_image(folder.files[FLOW_X_KIND][1], cv2.IMREAD_GRAYSCALE)[1].shape[:2]


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
    has_rgb = bool(folder.files[RGB_KIND])
    writer = StagedVideoWriter(
        staging_dir, folder.id, height, width,
        rgb_quality=UNKNOWN_QUALITY if has_rgb else None,
        flow_format=ENCODING_JPEG, flow_quality=UNKNOWN_QUALITY,
    )
    try:
        for number in range(1, counts.frames + 1):
            if has_rgb:
                path = folder.files[RGB_KIND][number]
                writer.append_rgb_jpeg(_read_jpeg(path, cv2.IMREAD_COLOR, (height, width)))
            if number <= counts.pairs:
                u_file, v_file = (
                    _read_jpeg(folder.files[kind][number], cv2.IMREAD_GRAYSCALE, (height, width))
                    for kind in (FLOW_X_KIND, FLOW_Y_KIND)
                )
                writer.append_flow_jpeg(u_file, v_file)
        attrs = VideoAttrs(
            id=folder.id, source=folder.source, source_size=source_size,
            source_mtime_ns=source_mtime_ns, frames=counts.frames, pairs=counts.pairs,
            height=height, width=width, fps=0.0, step=1, bound=float(settings["bound"]),
            algorithm=settings["algorithm"], params=json.dumps(settings["params"]),
            settings=canonical_settings(settings), source_fps=0.0,
            source_frames=len(folder.files[RGB_KIND]), header_frames=0,
            source_width=width, source_height=height,
            elapsed_s=round(time.perf_counter() - start, 3),
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
    """Import every rawframe folder under `in_dir` into the dataset `output`.

    The id of a video is its folder relative to `in_dir` (the folder's own name when `in_dir`
    is one). RGB JPEGs are stored byte for byte; flow JPEGs are decoded to uint8 codes taken to
    be quantized with `bound` (the files do not say). Imported videos have `fps` 0 (unknown),
    step 1, `source_frames` = img files found, and their RGB `quality` attribute is -1 (kept as
    found). A folder with one flow per frame loses its last flow (listed in
    `dropped_extra_flow`); a folder with flow only gets pairs + 1 frames and no RGB. A folder that
    is not a valid video is recorded as a failure and the others are still imported. Re-running
    skips folders already imported whose files are unchanged (total size and newest mtime).

    Raises FlowkitError for the run as a whole: missing input, no rawframe folders, unwritable or
    foreign output, or an output with other settings unless `force`.
    """
    if not bound > 0:
        raise FlowkitError(f"--bound must be positive, got {bound}")
    if not algorithm:
        raise FlowkitError("the algorithm name must not be empty")
    in_dir = Path(in_dir)
    folders = find_rawframe_folders(in_dir)
    if not folders:
        raise FlowkitError(
            f"no rawframe folders (img_00001.jpg, flow_x_00001.jpg ...) found in {in_dir}"
        )
    settings = import_settings(bound, algorithm)
    report = ImportReport(folders=len(folders))
    start = time.perf_counter()
    with DatasetWriter(output, shard_bytes) as dataset:
        dataset.adopt_settings(settings, force)
        try:
            _import_all(dataset, folders, settings, force, report)
        finally:
            report.problems, report.failures = dataset.finish()
    report.seconds = time.perf_counter() - start
    return report


def _import_all(
    dataset: DatasetWriter, folders: list[RawframeFolder], settings: dict[str, Any],
    force: bool, report: ImportReport,
) -> None:
    settings_json = canonical_settings(settings)
    live: dict[str, VideoVersion] = dataset.live_versions()
    ids = IdChecker({f.id for f in folders} | set(live))
    for folder in folders:
        try:
            problem = ids.problem(folder.id, folder.source)
            if problem is not None:
                raise VideoError(problem)
            current = live.get(folder.id)
            unchanged = (
                not force and current is not None and not folder.problem
                and current.is_current(settings_json, *folder.stat())
            )
            if unchanged:
                report.skipped += 1
                continue
            counts, size = _import_folder(folder, dataset.layout.staging_dir, settings)
        except Exception as exc:  # one odd folder must not stop a batch of thousands
            detail = "" if isinstance(exc, FlowkitError) else traceback.format_exc()
            failure = FailureRecord.now(folder.id, folder.source, _one_line(exc), detail)
            dataset.failed(failure)
            report.failed.append(failure)
            continue
        dataset.succeeded(folder.source)
        report.imported += 1
        report.frames += counts.frames
        report.pairs += counts.pairs
        if counts.dropped_extra_flow:
            report.dropped_extra_flow.append(folder.id)
        dataset.staged(size)
