"""Flow error measures over the pixels whose ground truth is known."""

from __future__ import annotations

import numpy as np

from flowkit.flow.flo import UNKNOWN_FLOW_THRESHOLD


def known_mask(flow_gt: np.ndarray) -> np.ndarray:
    """Pixels with known ground truth (Middlebury marks unknown ones with values above 1e9)."""
    return np.all(np.isfinite(flow_gt) & (np.abs(flow_gt) < UNKNOWN_FLOW_THRESHOLD), axis=-1)


def endpoint_error(flow: np.ndarray, flow_gt: np.ndarray) -> float:
    """Average endpoint error: mean over known pixels of the Euclidean distance, in pixels."""
    mask = known_mask(flow_gt)
    diff = flow[mask] - flow_gt[mask]
    return float(np.sqrt((diff**2).sum(axis=-1)).mean())


def angular_error(flow: np.ndarray, flow_gt: np.ndarray) -> float:
    """Average angular error in degrees between (u, v, 1) vectors (Barron et al. 1994)."""
    mask = known_mask(flow_gt)
    u, v = flow[mask, 0].astype(np.float64), flow[mask, 1].astype(np.float64)
    ug, vg = flow_gt[mask, 0].astype(np.float64), flow_gt[mask, 1].astype(np.float64)
    cos = (1 + u * ug + v * vg) / np.sqrt((1 + u**2 + v**2) * (1 + ug**2 + vg**2))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).mean())
