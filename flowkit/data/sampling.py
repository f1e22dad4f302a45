"""Which frames a sample reads: one home for each sampling rule.

Every function returns start positions (or index arrays) into a sequence of `length` positions
(frames for RGB, flow pairs for flow). A snippet or clip of `clip_len` positions starting at `s`
covers `s .. s + clip_len - 1`; a sequence shorter than the clip is handled by `clip_indices`,
which loops (I3D) or clamps to the last position (TSN), as stated by each caller.
"""

from __future__ import annotations

import numpy as np

from flowkit.errors import FlowkitError


def _starts_available(length: int, clip_len: int) -> int:
    """How many clip starts fit; at least 1 (a short video still yields a clip, from 0)."""
    return max(length - clip_len + 1, 1)


def tsn_segments(length: int, segments: int, clip_len: int = 1, rng: np.random.Generator | None = None) -> np.ndarray:
    """TSN: split the possible starts into `segments` equal parts and take one start in each.

    Training (`rng` given): a random start within each part; testing (`rng` None): the centre of
    each part. A video with fewer starts than segments repeats starts (parts then overlap), so
    it still yields `segments` snippets.
    """
    n = _starts_available(length, clip_len)
    edges = np.arange(segments + 1) * n / segments
    if rng is None:
        return np.floor((edges[:-1] + edges[1:]) / 2).astype(np.int64)
    lows = np.floor(edges[:-1]).astype(np.int64)
    highs = np.maximum(np.floor(edges[1:]).astype(np.int64), lows + 1)  # non-empty parts
    return rng.integers(lows, highs)


def evenly_spaced(length: int, count: int, clip_len: int = 1) -> np.ndarray:
    """The test protocol of two-stream and TSN: `count` starts (25 in the papers), evenly spaced
    from the first possible start to the last."""
    n = _starts_available(length, clip_len)
    if count == 1:
        return np.array([(n - 1) // 2], np.int64)
    return np.round(np.linspace(0, n - 1, count)).astype(np.int64)


def random_clip(length: int, clip_len: int, stride: int, rng: np.random.Generator) -> int:
    """A dense clip for 3D networks during training: a random start such that the clip's
    `clip_len` frames, `stride` apart, fit; 0 when the video is shorter (the clip then loops)."""
    span = (clip_len - 1) * stride + 1
    return int(rng.integers(0, max(length - span, 0) + 1))


def all_clips(length: int, clip_len: int, stride: int = 1) -> np.ndarray:
    """The 3D networks' test protocol: every non-overlapping clip (at least one)."""
    span = (clip_len - 1) * stride + 1
    return np.arange(0, max(length - span, 0) + 1, span, dtype=np.int64)


def clip_indices(start: int, clip_len: int, length: int, stride: int = 1, loop: bool = True) -> np.ndarray:
    """The positions of a clip: `start + i * stride`, looping past the end (I3D) or clamped to the
    last position (TSN's short videos)."""
    if length <= 0:
        raise FlowkitError("a sequence with no positions has no clips")
    indices = start + np.arange(clip_len, dtype=np.int64) * stride
    return indices % length if loop else np.minimum(indices, length - 1)
