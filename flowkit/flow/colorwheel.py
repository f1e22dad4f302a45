"""Flow as colour, with the Middlebury colour wheel (Baker et al., IJCV 2011).

Hue gives the direction of motion and saturation its magnitude, relative to the largest
displacement shown (or a fixed `max_magnitude`, so that frames of a video are comparable).
"""

from __future__ import annotations

import numpy as np

# Hue transitions red-yellow-green-cyan-blue-magenta-red, with the segment lengths of the
# Middlebury code, chosen so that the perceived colour changes evenly around the wheel.
_SEGMENTS = ((15, (1, 0, 0), (1, 1, 0)), (6, (1, 1, 0), (0, 1, 0)), (4, (0, 1, 0), (0, 1, 1)),
             (11, (0, 1, 1), (0, 0, 1)), (13, (0, 0, 1), (1, 0, 1)), (6, (1, 0, 1), (1, 0, 0)))


def _wheel() -> np.ndarray:
    rows = []
    for length, start, end in _SEGMENTS:
        t = np.arange(length)[:, None] / length
        rows.append((1 - t) * np.array(start) + t * np.array(end))
    return np.concatenate(rows).astype(np.float64)


COLOR_WHEEL = _wheel()


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """(H, W, 2) flow to an (H, W, 3) uint8 RGB picture; zero motion is white."""
    u = np.nan_to_num(flow[..., 0].astype(np.float64))
    v = np.nan_to_num(flow[..., 1].astype(np.float64))
    magnitude = np.sqrt(u**2 + v**2)
    scale = max_magnitude if max_magnitude else max(float(magnitude.max()), 1e-9)
    radius = magnitude / scale
    ncols = len(COLOR_WHEEL)
    position = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (ncols - 1)
    k0 = np.floor(position).astype(int) % ncols
    k1 = (k0 + 1) % ncols
    frac = (position - np.floor(position))[..., None]
    color = (1 - frac) * COLOR_WHEEL[k0] + frac * COLOR_WHEEL[k1]
    inside = (radius <= 1)[..., None]
    color = np.where(inside, 1 - radius[..., None] * (1 - color), color * 0.75)
    return np.clip(np.floor(255 * color), 0, 255).astype(np.uint8)
