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
    """A smooth, richly textured, seamlessly tiling BGR image: noise at several scales plus blobs.

    It tiles (its right edge continues into its left, bottom into top), so a frame that shows it
    with wrap-around borders shows an infinite plane: every pixel moves with the true motion.
    """
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    image = np.zeros((height, width, 3), np.float64)
    for channel in range(3):
        spectrum = rng.normal(size=(height, width)) + 1j * rng.normal(size=(height, width))
        spectrum *= np.exp(-((radius / 0.12) ** 2)) / np.maximum(radius, 1.0 / max(height, width))
        image[..., channel] = np.fft.ifft2(spectrum).real
    image = (image - image.mean()) / (image.std() + 1e-9)
    for _ in range(max(4, height * width // 4000)):
        centre = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        blob = rng.uniform(3, max(4, min(height, width) / 6))
        colour = rng.uniform(-2, 2, size=3)
        ys, xs = np.mgrid[0:height, 0:width]
        dx = (xs - centre[0] + width / 2) % width - width / 2  # distances on the torus
        dy = (ys - centre[1] + height / 2) % height - height / 2
        inside = 1 / (1 + np.exp((np.sqrt(dx**2 + dy**2) - blob) * 2.0))  # soft edge
        image = image * (1 - inside[..., None]) + colour * inside[..., None]
    lo, hi = np.percentile(image, 0.5), np.percentile(image, 99.5)
    return np.clip((image - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)


def render_frames(
    motion: Motion, frames: int, width: int, height: int, seed: int = 0
) -> Iterator[np.ndarray]:
    """BGR frames of a tiling texture moved by `motion` once per frame (seen as an infinite plane)."""
    texture = random_texture(height, width, seed)
    step = motion.matrix(width, height)
    translation_only = np.allclose(step[:2, :2], np.eye(2))
    total = np.eye(3)
    for _ in range(frames):
        yield cv2.warpAffine(texture, total[:2], (width, height), flags=cv2.INTER_CUBIC,
                             borderMode=cv2.BORDER_WRAP)
        total = step @ total
        if translation_only:  # the plane repeats every W x H pixels: keep coordinates small
            total[0, 2] %= width
            total[1, 2] %= height


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
