"""Spatial transforms applied identically to every frame (or flow field) of a sample.

Arrays are (N, H, W, C): N frames or flow fields, C = 3 for RGB, 2 for flow (u, v). A training
transform first draws its random parameters (`draw`), then applies them to any number of arrays
(`apply`), so a two-stream sample's RGB and flow get the same crop and flip. Flipping flow
mirrors the field and negates u; trajectory stacks are flow fields and flip the same way.
Flow values are not rescaled when a crop is resized, as TSN and mmaction2 do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from flowkit.errors import FlowkitError

TSN_SCALES = (1.0, 0.875, 0.75, 0.66)


@dataclass(frozen=True)
class Crop:
    """A crop box and whether to mirror it; the output is resized to `size` (height, width)."""

    top: int
    left: int
    height: int
    width: int
    size: tuple[int, int]
    flip: bool = False


def apply_crop(frames: np.ndarray, crop: Crop, is_flow: bool,
               convert: Callable[[np.ndarray], np.ndarray] | None = None,
               contiguous: bool = True) -> np.ndarray:
    """Crop, resize and (maybe) mirror every frame of (N, H, W, C); flow's u is negated on a flip.

    `convert` is applied to the cropped region before resizing (dtype changes are cheapest on
    the crop; it returns a new array); flow must then be signed, zero meaning no motion.
    `contiguous=False` may return a mirrored view, for a caller that copies it anyway (the
    network's layout is a transposed copy): one copy fewer.
    """
    out_h, out_w = crop.size
    region = frames[:, crop.top : crop.top + crop.height, crop.left : crop.left + crop.width]
    owned = convert is not None  # a new array, which may be changed in place
    if convert is not None:
        region = convert(region)
    if (crop.height, crop.width) != (out_h, out_w):
        resized = np.empty((len(region), out_h, out_w, region.shape[-1]), region.dtype)
        for source, target in zip(region, resized, strict=True):  # each frame resized into its place
            cv2.resize(source, (out_w, out_h), dst=target, interpolation=cv2.INTER_LINEAR)
        region, owned = resized, True
    if crop.flip:
        if is_flow:
            region = region if owned else region.copy()
            region[..., 0] *= -1  # negating u and mirroring commute
        region = region[:, :, ::-1]
    return np.ascontiguousarray(region) if contiguous else region


class MultiScaleCrop:
    """TSN's training augmentation: a crop whose sides are each one of `scales` x the short side
    (the two within `max_distort` steps of each other), at one of five fixed positions (four
    corners and centre), resized to `size`, mirrored with probability `flip`."""

    def __init__(self, size: int = 224, scales: tuple[float, ...] = TSN_SCALES,
                 max_distort: int = 1, flip: float = 0.5) -> None:
        self.size, self.scales, self.max_distort, self.flip = size, scales, max_distort, flip

    def draw(self, rng: np.random.Generator, height: int, width: int) -> Crop:
        base = min(height, width)
        sides = [int(base * s) for s in self.scales]
        sides = [self.size if abs(s - self.size) < 3 else s for s in sides]
        pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides)
                 if abs(i - j) <= self.max_distort]
        crop_h, crop_w = pairs[rng.integers(len(pairs))]
        dy, dx = (height - crop_h) // 4, (width - crop_w) // 4
        positions = [(0, 0), (0, 4 * dx), (4 * dy, 0), (4 * dy, 4 * dx), (2 * dy, 2 * dx)]
        top, left = positions[rng.integers(len(positions))]
        return Crop(top, left, crop_h, crop_w, (self.size, self.size), bool(rng.random() < self.flip))


class RandomCrop:
    """A `size` x `size` crop at a random position (3D networks' training crop), maybe mirrored."""

    def __init__(self, size: int = 224, flip: float = 0.5) -> None:
        self.size, self.flip = size, flip

    def draw(self, rng: np.random.Generator, height: int, width: int) -> Crop:
        size = min(self.size, height, width)
        top = int(rng.integers(0, height - size + 1))
        left = int(rng.integers(0, width - size + 1))
        return Crop(top, left, size, size, (self.size, self.size), bool(rng.random() < self.flip))


def center_crop(height: int, width: int, size: int = 224) -> list[Crop]:
    """The single test view: the centre `size` x `size` square."""
    size_h, size_w = min(size, height), min(size, width)
    return [Crop((height - size_h) // 2, (width - size_w) // 2, size_h, size_w, (size, size))]


def ten_crops(height: int, width: int, size: int = 224) -> list[Crop]:
    """The ten test views: four corners and the centre, and each mirrored."""
    size_h, size_w = min(size, height), min(size, width)
    offsets = [(0, 0), (0, width - size_w), (height - size_h, 0), (height - size_h, width - size_w),
               ((height - size_h) // 2, (width - size_w) // 2)]
    crops = [Crop(top, left, size_h, size_w, (size, size)) for top, left in offsets]
    return crops + [Crop(c.top, c.left, c.height, c.width, c.size, flip=True) for c in crops]


def eval_views(height: int, width: int, size: int = 224, crops: int = 1, flip: bool = True) -> list[Crop]:
    """`crops` = 1 (centre) or 10 (ten crops). Without `flip` (for labels that mirroring would
    change, such as left and right) the ten crops are the five unmirrored ones."""
    if crops == 1:
        return center_crop(height, width, size)
    if crops == 10:
        views = ten_crops(height, width, size)
        return views if flip else views[:5]
    raise FlowkitError(f"test crops must be 1 or 10, not {crops}")
