"""What the numbers fed to a network mean: one home for each normalisation.

RGB: `imagenet` (0..1, then ImageNet mean/std per channel, RGB order: the 2D backbones'
pretraining) or `unit` ([-1, 1], I3D's). Flow: `pixels` (displacements as dequantized) or `unit`
(divided by the bound, so [-1, 1], I3D's).
"""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
RGB_VALUES = ("imagenet", "unit")
FLOW_VALUES = ("pixels", "unit")


def rgb_values(frames: np.ndarray, mode: str = "imagenet") -> np.ndarray:
    """uint8 RGB (..., 3) to float32 network input."""
    x = frames.astype(np.float32)
    if mode == "imagenet":
        return (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    if mode == "unit":
        return x / 127.5 - 1.0
    raise ValueError(f"RGB values must be one of {RGB_VALUES}, not {mode!r}")


def flow_values(flow: np.ndarray, bound: float, mode: str = "pixels") -> np.ndarray:
    """Displacements in pixels to network input: as they are, or divided by the bound."""
    if mode == "pixels":
        return flow.astype(np.float32, copy=False)
    if mode == "unit":
        return (flow / np.float32(bound)).astype(np.float32, copy=False)
    raise ValueError(f"flow values must be one of {FLOW_VALUES}, not {mode!r}")
