"""The flow quantization convention, in one place: the TSN / denseflow / I3D / mmaction2 mapping.

A displacement f (pixels) is clipped to [-bound, bound] and mapped linearly onto 0..255:

    q = round((clip(f, -bound, bound) + bound) * 255 / (2 * bound))
    f ~ q * 2 * bound / 255 - bound

`round` is round-half-to-even (numpy's `rint`, OpenCV's `cvRound`). With the default bound of 20
one step is 40/255 = 0.157 px, so the rounding error is at most 0.078 px inside the bound.
Zero motion maps to 127.5, i.e. stores as 128 (or 127 at exact ties).
"""

from __future__ import annotations

import numpy as np

from flowkit.errors import FlowkitError

DEFAULT_BOUND = 20.0
ZERO_MOTION_CODE = 127.5  # the code of zero motion: halfway between 0 and 255


def quantize_flow(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Float displacements (any shape) to uint8 codes of the same shape."""
    if bound <= 0:
        raise FlowkitError(f"bound must be positive, got {bound}")
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize_flow(codes: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """uint8 codes back to float32 displacements in pixels."""
    if bound <= 0:
        raise FlowkitError(f"bound must be positive, got {bound}")
    return codes.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)


def quantization_step(bound: float = DEFAULT_BOUND) -> float:
    """The displacement one code step stands for (the largest rounding error is half of it)."""
    return 2.0 * bound / 255.0


def centre_codes(codes: np.ndarray) -> np.ndarray:
    """uint8 codes as float32 steps from zero motion (so that negating one negates the motion);
    times `quantization_step(bound)` they are displacements in pixels."""
    return np.subtract(codes, np.float32(ZERO_MOTION_CODE), dtype=np.float32)  # one pass
