"""Building a network's motion input from consecutive flows (Simonyan & Zisserman 2014, sec. 3).

Flows arrive as float32 (L, H, W, 2) displacements in pixels, flow k being the motion from frame
t + k to t + k + 1. The functions keep that layout (so spatial transforms treat every field
alike); `to_channels` turns it into the 2L channels a 2D network takes: u0, v0, u1, v1, ...
"""

from __future__ import annotations

import cv2
import numpy as np


def to_channels(stack: np.ndarray) -> np.ndarray:
    """(L, H, W, 2) to (2L, H, W), u and v interleaved: the paper's order."""
    length, height, width, _ = stack.shape
    return np.ascontiguousarray(stack.transpose(0, 3, 1, 2).reshape(2 * length, height, width))


def subtract_mean_flow(stack: np.ndarray) -> np.ndarray:
    """Remove each displacement field's mean, per component: the paper's camera-motion compensation."""
    return stack - stack.mean(axis=(1, 2), keepdims=True)


def bidirectional_stack(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """L/2 forward flows from frame t on, then L/2 backward flows ending at frame t.

    `forward[k]` is frame t+k to t+k+1; `backward[k]` is frame t-L/2+k+1 to t-L/2+k (as
    `flow_backward` stores it: pair i goes from frame i+1 to frame i).
    """
    return np.concatenate([forward, backward], axis=0)


def trajectory_stack(flows: np.ndarray) -> np.ndarray:
    """Trajectory stacking (eq. 2): the flows sampled along the trajectories starting at each pixel.

    Point p_0 is the pixel itself and p_{k+1} = p_k + d_k(p_k), where d_k(p) is flow k sampled at
    p with bilinear interpolation (borders replicated for points that leave the frame). Returns
    d_k(p_k) for k < L, in the same (L, H, W, 2) layout as the flows.
    """
    length, height, width, _ = flows.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    px, py = xs.copy(), ys.copy()
    out = np.empty_like(flows, dtype=np.float32)
    for k in range(length):
        sampled = cv2.remap(np.ascontiguousarray(flows[k], dtype=np.float32), px, py,
                            cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[k] = sampled
        px += sampled[..., 0]
        py += sampled[..., 1]
    return out
