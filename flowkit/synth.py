"""Synthetic videos: textured scenes with known motion, and a small action dataset.

`render_frames` gives tests real video files whose true optical flow is known exactly: frame t
shows the texture moved by the motion applied t times, so the flow from any frame to the next is
`M x - x` at every pixel x, where M is the per-frame affine motion.

`make_action_dataset` writes a dataset in which appearance and motion each carry part of the
label, to show why two streams: 8 classes = 2 object colours x 4 directions of motion. The two
colours have the same brightness (they differ only in hue), so flow, computed on grey frames,
cannot tell them apart; a single frame shows the colour but not the motion. A spatial stream
alone can reach 1/4, a temporal stream 1/2, and only their fusion all of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.video import write_video


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


DEMO_MOTIONS = {
    "pan_right": (Motion(dx=2.0), ".mp4"),
    "tilt_down": (Motion(dy=1.5), ".avi"),
    "rotate": (Motion(rotate=1.5), ".mkv"),
    "zoom_in": (Motion(zoom=1.02), ".mp4"),
}


PAN_OBJECT_VELOCITY = (-1.5, 1.0)  # px per frame in the picture: the object crossing pan_right
PAN_OBJECT_RADIUS = 0.15  # of the frame's height


def render_pan_with_object(frames: int, width: int, height: int, seed: int = 0,
                           pan: Motion = DEMO_MOTIONS["pan_right"][0]) -> tuple[list[np.ndarray], np.ndarray]:
    """A camera pan (`render_frames`: the whole tiling background translates by `pan`) with a
    textured disc moving independently across it at `PAN_OBJECT_VELOCITY` (wrapping around the
    frame); returns the BGR frames and the disc's centre (x, y) in each. Its radius is
    `PAN_OBJECT_RADIUS` x height; relative to the background it moves by the velocity less the pan."""
    radius = PAN_OBJECT_RADIUS * height
    side = int(2 * radius + 4)
    disc = random_texture(side, side, seed + 1000)
    ys, xs = np.mgrid[0:side, 0:side]
    alpha = np.clip(radius - np.hypot(xs - (side - 1) / 2, ys - (side - 1) / 2) + 0.5, 0, 1).astype(np.float32)
    start = np.array([0.7 * width, 0.3 * height])
    centres = (start + np.outer(np.arange(frames), PAN_OBJECT_VELOCITY)) % (width, height)
    out = []
    for background, (cx, cy) in zip(render_frames(pan, frames, width, height, seed), centres, strict=True):
        frame = background.astype(np.float32)
        for ox in (-width, 0, width):
            for oy in (-height, 0, height):
                shift = np.array([[1.0, 0.0, cx + ox - (side - 1) / 2], [0.0, 1.0, cy + oy - (side - 1) / 2]])
                layer = cv2.warpAffine(disc, shift, (width, height), flags=cv2.INTER_LINEAR).astype(np.float32)
                weight = cv2.warpAffine(alpha, shift, (width, height), flags=cv2.INTER_LINEAR)[..., None]
                frame = weight * layer + (1 - weight) * frame
        out.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
    return out, centres


def make_camera_videos(folder: str | Path, frames: int = 24, width: int = 160, height: int = 120) -> list[Path]:
    """A few small videos, one per kind of camera motion, in three containers; the pan
    (`pan_right`) also has an object moving across it (`render_pan_with_object`), for warped flow."""
    folder = Path(folder)
    paths = []
    for seed, (name, (motion, ext)) in enumerate(DEMO_MOTIONS.items()):
        if name == "pan_right":
            clip = iter(render_pan_with_object(frames, width, height, seed)[0])
        else:
            clip = render_frames(motion, frames, width, height, seed)
        paths.append(write_video(folder / f"{name}{ext}", clip))
    return paths


# ---- the action dataset ---------------------------------------------------------------------------

# A colour offset with zero luma (BGR; OpenCV's grey is 0.114 B + 0.587 G + 0.299 R): added to
# a grey texture it tints it without changing the grey frame that flow is computed on.
_CHROMA = np.array([0.0, -0.299 * 50 / 0.587, 50.0])
APPEARANCES = {"warm": 1.0, "cool": -1.0}
DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "down": (0.0, 1.0), "up": (0.0, -1.0)}
ACTION_CLASSES = [f"{a}_{d}" for a in APPEARANCES for d in DIRECTIONS]


def render_action(appearance: str, direction: str, rng: np.random.Generator, frames: int = 16,
                  size: int = 64, scene_seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """One clip of a tinted, textured disc crossing a static, tiling background (wrapping around
    the frame); returns the BGR frames and the disc's centre (x, y) in each.

    Every clip of one `scene_seed` shares the background and the disc's grey texture (shifted
    at random): nothing but the disc's hue and its motion tells clips apart, so a network cannot
    learn its way round the two cues by recognising scenes.
    """
    background = random_texture(size, size, scene_seed)
    grey = cv2.cvtColor(background, cv2.COLOR_BGR2GRAY)[..., None].astype(np.float64)
    background = np.clip(0.85 * grey + 0.15 * background, 0, 255).astype(np.uint8)  # muted colours
    background = np.roll(background, tuple(rng.integers(0, size, size=2)), axis=(0, 1))
    radius = 0.17 * size
    side = int(2 * radius + 4)
    texture = random_texture(side, side, scene_seed + 1)
    luma = cv2.cvtColor(texture, cv2.COLOR_BGR2GRAY).astype(np.float64)
    luma = 70 + luma * (110 / 255)  # room for the tint: no channel clips, so grey stays equal
    tinted = np.clip(luma[..., None] + APPEARANCES[appearance] * _CHROMA, 0, 255)
    ys, xs = np.mgrid[0:side, 0:side]
    alpha = np.clip(radius - np.hypot(xs - (side - 1) / 2, ys - (side - 1) / 2) + 0.5, 0, 1)
    speed = rng.uniform(0.025, 0.04) * size
    dx, dy = DIRECTIONS[direction]
    # The background tiles, so the disc wraps around the frame: where it is says nothing about
    # where it goes, and a single frame shows its colour only.
    start = rng.uniform(0, size, size=2)
    centres = (start + np.outer(np.arange(frames), [dx * speed, dy * speed])) % size
    out = []
    for cx, cy in centres:
        frame = background.astype(np.float64)
        for ox in (-size, 0, size):
            for oy in (-size, 0, size):
                shift = np.array([[1.0, 0.0, cx + ox - (side - 1) / 2], [0.0, 1.0, cy + oy - (side - 1) / 2]])
                layer = cv2.warpAffine(tinted, shift, (size, size), flags=cv2.INTER_LINEAR)
                weight = cv2.warpAffine(alpha, shift, (size, size), flags=cv2.INTER_LINEAR)[..., None]
                frame = weight * layer + (1 - weight) * frame
        out.append(np.clip(frame, 0, 255).astype(np.uint8))
    return out, centres


def make_action_dataset(folder: str | Path, videos_per_class: int = 24, frames: int = 16,
                        size: int = 64, test_per_class: int = 8, seed: int = 0) -> list[Path]:
    """`<folder>/<class>/<class>_NN.avi` for the 8 classes, plus UCF101-style split files in
    `<folder>/splits` (classInd.txt, trainlist01.txt, testlist01.txt): the last
    `test_per_class` videos of each class are the test split."""
    folder = Path(folder)
    splits = folder / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    paths, train, test = [], [], []
    for label, name in enumerate(ACTION_CLASSES):
        appearance, direction = name.split("_")
        for k in range(videos_per_class):
            rng = np.random.default_rng((seed, label, k))
            clip, _ = render_action(appearance, direction, rng, frames, size, scene_seed=seed)
            rel = f"{name}/{name}_{k:02d}.avi"
            paths.append(write_video(folder / rel, iter(clip)))
            if k < videos_per_class - test_per_class:
                train.append(f"{rel} {label + 1}\n")
            else:
                test.append(f"{rel}\n")
    (splits / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(ACTION_CLASSES)))
    (splits / "trainlist01.txt").write_text("".join(train))
    (splits / "testlist01.txt").write_text("".join(test))
    return paths


SYNTH_KINDS = ("actions", "camera")


def write_synthetic(folder: str | Path, kind: str = "actions", videos_per_class: int = 24,
                    test_per_class: int = 8, frames: int = 16, size: int = 64,
                    seed: int = 0) -> list[Path]:
    """`flowkit synth`: the action dataset or the camera-motion clips, after checking the
    options as a user gives them (one-line errors before anything is written)."""
    if kind not in SYNTH_KINDS:
        raise FlowkitError(f"--kind must be one of {', '.join(SYNTH_KINDS)}, not {kind!r}")
    if not 2 <= frames <= 10_000 or not 16 <= size <= 4096:
        raise FlowkitError("need 2 <= --frames <= 10000 and 16 <= --size <= 4096")
    if not 1 <= test_per_class < videos_per_class:
        raise FlowkitError("need 1 <= --test-per-class < --videos-per-class")
    if kind == "camera":
        return make_camera_videos(folder, frames, size * 5 // 4, size)
    return make_action_dataset(folder, videos_per_class, frames, size, test_per_class, seed)
