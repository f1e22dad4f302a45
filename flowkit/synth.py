"""Synthetic videos with known motion: textured scenes moved by an affine motion per frame.

They give tests and the demo real video files whose true optical flow is known exactly: frame t
shows the texture moved by the motion applied t times, so the flow from any frame to the next is
`M x - x` at every pixel x, where M is the per-frame affine motion.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flowkit.errors import FlowkitError

# (fourcc, container) pairs that OpenCV's bundled FFmpeg writes on every platform.
CODECS = {
    ".avi": "MJPG",
    ".mp4": "mp4v",
    ".mkv": "FFV1",
}


@dataclass(frozen=True)
class Motion:
    """An affine motion per frame about the frame centre: translate, rotate (degrees), zoom."""

    dx: float = 0.0
    dy: float = 0.0
    rotate: float = 0.0
    zoom: float = 1.0

    def matrix(self, width: int, height: int) -> np.ndarray:
        """The 3x3 matrix taking a point in one frame to its position in the next."""
        centre = ((width - 1) / 2.0, (height - 1) / 2.0)
        affine = cv2.getRotationMatrix2D(centre, -self.rotate, self.zoom)
        affine[:, 2] += (self.dx, self.dy)
        return np.vstack([affine, [0.0, 0.0, 1.0]])

    def flow(self, width: int, height: int) -> np.ndarray:
        """The true flow between consecutive frames, float32 (H, W, 2)."""
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        m = self.matrix(width, height)
        u = m[0, 0] * xs + m[0, 1] * ys + m[0, 2] - xs
        v = m[1, 0] * xs + m[1, 1] * ys + m[1, 2] - ys
        return np.stack([u, v], axis=-1).astype(np.float32)


def random_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, richly textured BGR image (noise at several scales plus soft blobs)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    for scale, weight in ((4, 0.35), (12, 0.35), (32, 0.3)):
        small = rng.random((max(2, height // scale), max(2, width // scale), 3)).astype(np.float32)
        image += weight * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(max(4, height * width // 4000)):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(3, max(4, min(height, width) // 6)))
        colour = tuple(float(c) for c in rng.random(3))
        cv2.circle(image, centre, radius, colour, -1, lineType=cv2.LINE_AA)
    image = cv2.GaussianBlur(image, (0, 0), 0.8)
    lo, hi = image.min(), image.max()
    return np.clip((image - lo) / (hi - lo + 1e-6) * 255, 0, 255).astype(np.uint8)


def render_frames(
    motion: Motion, frames: int, width: int, height: int, seed: int = 0
) -> Iterator[np.ndarray]:
    """BGR frames of a texture moved by `motion` once per frame (reflected at the borders)."""
    texture = random_texture(height, width, seed)
    step = motion.matrix(width, height)
    total = np.eye(3)
    for _ in range(frames):
        yield cv2.warpAffine(texture, total[:2], (width, height), flags=cv2.INTER_CUBIC,
                             borderMode=cv2.BORDER_REFLECT_101)
        total = step @ total


def write_video(path: str | Path, frames: Iterator[np.ndarray], fps: float = 25.0) -> Path:
    """Write BGR frames with a codec chosen by the file's extension (.avi, .mp4 or .mkv)."""
    path = Path(path)
    codec = CODECS.get(path.suffix.lower())
    if codec is None:
        raise FlowkitError(f"cannot write {path.suffix} videos; use one of {', '.join(CODECS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
                if not writer.isOpened():
                    raise FlowkitError(f"OpenCV cannot write {path} with codec {codec}")
            writer.write(frame)
    finally:
        if writer is not None:
            writer.release()
    return path


DEMO_MOTIONS = {
    "pan_right": (Motion(dx=2.0), ".mp4"),
    "tilt_down": (Motion(dy=1.5), ".avi"),
    "rotate": (Motion(rotate=1.5), ".mkv"),
    "zoom_in": (Motion(zoom=1.02), ".mp4"),
}


def make_demo_videos(folder: str | Path, frames: int = 24, width: int = 160, height: int = 120) -> list[Path]:
    """A few small videos, one per kind of camera motion, in three containers."""
    folder = Path(folder)
    paths = []
    for seed, (name, (motion, ext)) in enumerate(DEMO_MOTIONS.items()):
        paths.append(write_video(folder / f"{name}{ext}", render_frames(motion, frames, width, height, seed)))
    return paths
