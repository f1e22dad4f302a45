"""Which frames a sample reads: one home for each sampling rule.

Every function returns start positions (or index arrays) into a sequence of `length` positions
(frames for RGB, flow pairs for flow). A snippet or clip of `clip_len` positions starting at `s`
covers `s .. s + clip_len - 1`; a sequence shorter than the clip is handled by `clip_indices`,
which loops (I3D) or clamps to the last position (TSN), as stated by each caller.

What a 3D network's clip is (`ClipSampling`: T positions at stride tau) is also said here, not in
the models: X3D's per size, SlowFast's Fast clip and the Slow pathway's subset of it, and
`REFERENCE_CLIPS`, the clip each such network's reference trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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


# ---- the clips each 3D network's reference reads ---------------------------------------------------


@dataclass(frozen=True)
class ClipSampling:
    """A 3D network's clip: `frames` positions, `stride` apart (T x tau in the papers' notation)."""

    frames: int
    stride: int = 1

    @property
    def span(self) -> int:
        """How many positions the clip covers, first to last."""
        return (self.frames - 1) * self.stride + 1


# X3D (Feichtenhofer, CVPR 2020), T x tau per size: facebookresearch/SlowFast
# configs/Kinetics/X3D_{XS,S,M,L}.yaml (DATA.NUM_FRAMES, DATA.SAMPLING_RATE: 4x12, 13x6, 16x5,
# 16x5), as pytorchvideo's hub page gives them too (pytorch/hub facebookresearch_pytorchvideo_x3d.md,
# "frame length x sample rate"), on Kinetics at its own 30 fps.
X3D_CLIPS = {"xs": ClipSampling(4, 12), "s": ClipSampling(13, 6), "m": ClipSampling(16, 5),
             "l": ClipSampling(16, 5)}

SLOWFAST_ALPHA = 4  # Fast frames per Slow frame: SLOWFAST.ALPHA of SLOWFAST_8x8_R50.yaml


def slowfast_clip(slow_frames: int = 8, slow_stride: int = 8, alpha: int = SLOWFAST_ALPHA) -> ClipSampling:
    """SlowFast's one read: the Fast pathway's clip of alpha * T frames at stride tau / alpha
    (R50 8x8: 32 frames at stride 2, DATA.NUM_FRAMES and DATA.SAMPLING_RATE of
    facebookresearch/SlowFast configs/Kinetics/SLOWFAST_8x8_R50.yaml); the Slow pathway's T
    frames are a subset of it (`slow_pathway`)."""
    if slow_stride % alpha:
        raise FlowkitError(f"the Slow stride ({slow_stride}) must be a multiple of alpha ({alpha})")
    return ClipSampling(slow_frames * alpha, slow_stride // alpha)


def slow_pathway(fast_frames: int, alpha: int = SLOWFAST_ALPHA) -> np.ndarray:
    """The positions in a Fast clip of `fast_frames` that the Slow pathway reads: fast_frames //
    alpha of them spread from the first to the last, `linspace(0, T - 1, T // alpha)` truncated,
    computed as the reference code does (`pack_pathway_output` in facebookresearch/
    SlowFast slowfast/datasets/utils.py, `PackPathway` in pytorchvideo_trainer). At T = 32:
    0, 4, 8, 13, 17, 22, 26, 31, which is the code's rule; the paper's (every alpha-th frame, a
    stride of exactly tau) differs by up to alpha - 1 Fast positions, and the checkpoints follow the code.

    The data layer reads the Fast clip only; `flowkit.models.slowfast.slow_frames` takes these
    positions from it inside the network (models import no data module), and
    tests/data/test_sampling.py checks the two agree.
    """
    if fast_frames < alpha or fast_frames % alpha:
        raise FlowkitError(f"SlowFast reads a Fast clip of a multiple of {alpha} frames, not {fast_frames}")
    return torch.linspace(0, fast_frames - 1, fast_frames // alpha).long().numpy()


# The clips of the networks whose reference reads frames at a stride; every other clip network
# reads the frames its registry entry names (`ModelInfo.frames`), consecutive.
REFERENCE_CLIPS: dict[str, ClipSampling] = {
    **{f"x3d_{size}": clip for size, clip in X3D_CLIPS.items()},
    "slowfast_r50": slowfast_clip(),
    # Quo Vadis Table 1: ConvNet+LSTM reads 25 frames over 5 s, 5 fps of the 25 fps videos.
    "convnet_lstm": ClipSampling(25, 5),
}


# ---- clip features (`flowkit features`) ------------------------------------------------------------


def feature_clips(length: int, clip_len: int, step: int) -> np.ndarray:
    """video_features' stack and step: clips of `clip_len` consecutive positions starting every
    `step` positions, only those that fit whole (none for a sequence shorter than a clip)."""
    if clip_len < 1 or step < 1:
        raise FlowkitError(f"a feature clip needs clip >= 1 and step >= 1, not {clip_len} and {step}")
    return np.arange(0, max(length - clip_len + 1, 0), step, dtype=np.int64)
