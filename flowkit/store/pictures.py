"""Pictures of stored flow: each RGB frame beside its flow in the Middlebury colour wheel."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.flow.colorwheel import flow_to_color
from flowkit.params import check_positive
from flowkit.store.reader import VideoRecord
from flowkit.video import write_video


def flow_panel(video: VideoRecord, index: int, max_magnitude: float | None = None) -> np.ndarray:
    """BGR picture of pair `index`: the first frame (if stored) beside the colour-coded flow."""
    color = flow_to_color(video.flow_pixels(index), max_magnitude)[..., ::-1]
    if not video.has_rgb:
        return np.ascontiguousarray(color)
    return np.hstack([video.rgb_frame(index), color])


def write_flow_picture(video: VideoRecord, output: str | Path, index: int | None = None,
                       max_magnitude: float | None = None) -> Path:
    """A PNG/JPEG of one pair, or a video (.mp4, .avi, .mkv) of every pair, by `output`'s extension."""
    check_positive("--max-flow", max_magnitude)
    output = Path(output)
    pairs = video.flow.shape[0]
    if pairs == 0:
        raise FlowkitError(f"video {video.id} has no flow pairs")
    suffix = output.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        index = pairs // 2 if index is None else index
        if not -pairs <= index < pairs:
            raise FlowkitError(f"--pair {index}: video {video.id} has pairs 0..{pairs - 1} (or -{pairs}..-1 from the end)")
        if not cv2.imwrite(str(output), flow_panel(video, index % pairs, max_magnitude)):
            raise FlowkitError(f"cannot write {output}")
        return output
    if suffix in (".mp4", ".avi", ".mkv"):
        # One scale for the whole clip, so colours compare across frames.
        scale = max_magnitude or max(
            float(np.linalg.norm(video.flow_pixels(i), axis=-1).max()) for i in range(pairs)
        )
        panels = (flow_panel(video, i, scale) for i in range(pairs))
        return write_video(output, panels, float(video.attrs.get("fps") or 25.0))
    raise FlowkitError(f"cannot write {suffix or 'extension-less'} files; use .png, .jpg, .mp4, .avi or .mkv")
