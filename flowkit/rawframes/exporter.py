"""Exporting a flowkit dataset as mmaction2/TSN rawframes folders and their annotation lists.

Files are named as TSN and mmaction2 read them by default, numbered from 1 with five digits
(flowkit.rawframes.names): `img_0000k.jpg` is flowkit's frame k - 1 and `flow_x_0000k.jpg` its
`flow[k - 1]`. The lists hold `path total_frames label` lines with 0-based labels, as mmaction2
expects them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flowkit.errors import FlowkitError, StoreError
from flowkit.rawframes.importer import one_line
from flowkit.rawframes.names import FLOW_X, FLOW_Y, RGB, TSN_NAMES, classify, frame_file_name
from flowkit.store.codec import encode_jpeg
from flowkit.store.failures import FailureRecord
from flowkit.store.format import ENCODING_JPEG
from flowkit.store.layout import write_text_atomic
from flowkit.store.reader import FlowStore, VideoRecord

RGB_LIST = "rawframes_rgb.txt"
FLOW_LIST = "rawframes_flow.txt"
NO_LABEL = -1  # the label of a video its label source does not label

if TYPE_CHECKING:
    from flowkit.data.annotations import LabelList, LabelSource


@dataclass
class ExportReport:
    """What an export wrote; `classes[label]` is the class name of a label (empty: no labels)."""

    out_dir: Path
    videos: int = 0
    exported: int = 0
    frames: int = 0
    pairs: int = 0
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)
    unlabelled: int = 0  # exported videos listed with label -1
    unlabelled_reason: str = ""  # why, when no label source applied at all
    failed: list[FailureRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def export_labels(ids: list[str], source: LabelSource | None) -> tuple[LabelList, str]:
    """The labels of a dataset's `ids` from `source`, and why there are none ('' if there are).

    Without a label file, ids outside class folders leave the whole dataset unlabelled (the
    reason says so) rather than failing the export.
    """
    # Imported here: flowkit.data brings in torch, which importing rawframes never needs.
    from flowkit.data.annotations import AnnotationError, LabelList, from_folders

    if source is None or (source.path is None and source.test_list is None):
        try:
            return from_folders(ids), ""
        except AnnotationError as exc:
            return LabelList([]), str(exc)
    train, test = source.load(ids)
    return LabelList(train.classes, train.rows + test.rows), ""


def export_rawframes(
    dataset: str | Path,
    out_dir: str | Path,
    jpeg_quality: int = 95,
    ids: list[str] | None = None,
    labels: LabelSource | None = None,
    absolute: bool = False,
    warped: bool = False,
) -> ExportReport:
    """Write every video of `dataset` (or those in `ids`) as a rawframes folder `out_dir/<id>/`.

    RGB frames are the stored JPEG bytes, unchanged, and so is flow stored as JPEG (the default);
    flow stored raw becomes grayscale JPEGs of its codes at `jpeg_quality`, so it comes back
    within a small JPEG error. Backward flow is not exported (mmaction2 has no place for it).
    With `warped`, the warped flow (`extract --warp`) is written in place of the flow, under the
    same names, as dense_flow's `extract_warp_gpu` writes it: export it to a folder of its own.
    Videos extracted with a step other than 1 are written as they are: their flow_x_0000k then
    spans img_0000k to img_0000(k + step).

    `out_dir/rawframes_rgb.txt` and `rawframes_flow.txt` list `<id> <count> <label>`, the path
    absolute (`out_dir` resolved) when `absolute`, for loaders that open paths from the working
    directory (tsn-pytorch). Labels are those `labels` gives the whole dataset (0-based), so
    exports of subsets agree; -1 for a video it does not label. Videos without RGB are left out
    of the RGB list. Re-exporting into the same folder replaces a video's frame files (stale
    higher-numbered ones are deleted) and both lists; other files are left alone.
    """
    if not 0 <= jpeg_quality <= 100:
        raise FlowkitError(f"--jpeg-quality must be 0..100, got {jpeg_quality}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    list_root = out_dir.resolve() if absolute else out_dir
    if absolute and any(c.isspace() for c in str(list_root)):
        raise FlowkitError(f"{list_root} holds whitespace, which mmaction2's file lists cannot")
    with FlowStore(dataset) as store:
        if warped and not (store.settings or {}).get("warp"):
            raise FlowkitError(f"{dataset} has no warped flow: extract it with --warp")
        wanted = list(dict.fromkeys(ids)) if ids else store.ids
        unknown = [video_id for video_id in wanted if video_id not in store]
        if unknown:
            raise FlowkitError(f"{dataset} has no video {unknown[0]!r}" + (
                f" (and {len(unknown) - 1} more unknown ids)" if len(unknown) > 1 else ""))
        labelled, reason = export_labels(store.ids, labels)
        label_of = {row.video: row.label for row in labelled.rows}
        _prepare_out_dir(out_dir)
        report = ExportReport(out_dir, videos=len(wanted), classes=labelled.classes, unlabelled_reason=reason)
        rgb_lines, flow_lines = [], []
        for video_id in wanted:
            try:
                if any(c.isspace() for c in video_id):
                    raise FlowkitError("the id holds whitespace, which mmaction2's file lists cannot")
                frames, pairs = _export_video(store.video(video_id), out_dir / video_id, jpeg_quality, warped)
            except (FlowkitError, OSError, KeyError, ValueError) as exc:
                report.failed.append(FailureRecord.now(video_id, video_id, one_line(exc)))
                continue
            label = label_of.get(video_id, NO_LABEL)
            path = f"{list_root}/{video_id}" if absolute else video_id
            if frames:
                rgb_lines.append(f"{path} {frames} {label}\n")
            if pairs:
                flow_lines.append(f"{path} {pairs} {label}\n")
            report.exported += 1
            report.unlabelled += label == NO_LABEL
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


def _export_video(video: VideoRecord, folder: Path, jpeg_quality: int, warped: bool = False) -> tuple[int, int]:
    """Write one video's files; returns (RGB frames, flow pairs) written."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = video.entry.frames if video.has_rgb else 0
    pairs = video.flow.shape[0]
    for i in range(frames):
        (folder / frame_file_name(RGB, i + 1)).write_bytes(video.rgb_jpeg(i))
    stored_jpeg = video.flow_encoding == ENCODING_JPEG
    for i in range(pairs):
        if stored_jpeg:  # denseflow's own layout: the stored files, byte for byte
            files = video.flow_jpeg(i, warped=warped)
        else:
            codes = video.flow_codes(i, warped=warped)
            files = tuple(encode_jpeg(plane, jpeg_quality).tobytes() for plane in codes)
        for kind, data in zip((FLOW_X, FLOW_Y), files, strict=True):
            (folder / frame_file_name(kind, i + 1)).write_bytes(data)
    kept = {RGB: frames, FLOW_X: pairs, FLOW_Y: pairs}
    for name in os.listdir(folder):
        classified = classify(name)
        if classified is None:
            continue
        kind, naming, number = classified
        if naming == TSN_NAMES[kind] and number > kept[kind]:  # left by an export of a longer video
            (folder / name).unlink()
    return frames, pairs
