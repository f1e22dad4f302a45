import numpy as np
import pytest

from flowkit.data.sampling import (
    REFERENCE_CLIPS,
    SLOWFAST_ALPHA,
    X3D_CLIPS,
    all_clips,
    clip_indices,
    evenly_spaced,
    random_clip,
    slow_pathway,
    slowfast_clip,
    tsn_segments,
)
from flowkit.errors import FlowkitError


def test_tsn_test_takes_the_centre_of_each_segment():
    # 30 frames, snippets of 1: segments [0,10) [10,20) [20,30) -> centres 5, 15, 25.
    assert tsn_segments(30, 3).tolist() == [5, 15, 25]
    # Snippets of 5 flows from 34 pairs: 30 starts, the same centres.
    assert tsn_segments(34, 3, clip_len=5).tolist() == [5, 15, 25]


def test_tsn_training_draws_one_start_inside_each_segment():
    rng = np.random.default_rng(0)
    draws = np.stack([tsn_segments(30, 3, rng=rng) for _ in range(2000)])
    for k in range(3):
        assert draws[:, k].min() == 10 * k and draws[:, k].max() == 10 * k + 9
    assert abs(draws[:, 1].mean() - 14.5) < 0.3  # uniform within the segment


def test_short_videos_still_give_k_snippets():
    assert tsn_segments(2, 3).tolist() == [0, 1, 1]
    rng = np.random.default_rng(1)
    assert tsn_segments(2, 3, rng=rng).tolist() in ([0, 0, 1], [0, 1, 1])
    assert tsn_segments(3, 3, clip_len=10).tolist() == [0, 0, 0]  # shorter than the clip


def test_evenly_spaced_test_snippets():
    starts = evenly_spaced(101, 25)
    assert starts[0] == 0 and starts[-1] == 100 and len(starts) == 25
    assert set(np.diff(starts).tolist()) <= {4, 5}
    assert evenly_spaced(50, 25, clip_len=10)[-1] == 40 and evenly_spaced(50, 25, clip_len=10)[0] == 0
    assert evenly_spaced(5, 1).tolist() == [2]


def test_dense_clips_for_3d_networks():
    rng = np.random.default_rng(0)
    starts = {random_clip(100, 16, 2, rng) for _ in range(500)}
    assert min(starts) == 0 and max(starts) == 100 - 31
    assert random_clip(10, 64, 1, rng) == 0  # too short: from the start, looping
    assert all_clips(100, 16, 2).tolist() == [0, 31, 62]
    assert all_clips(10, 64).tolist() == [0]


def test_clip_indices_loop_or_clamp():
    assert clip_indices(3, 4, 10, stride=2).tolist() == [3, 5, 7, 9]
    assert clip_indices(0, 7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]  # I3D loops short videos
    assert clip_indices(1, 4, 3, loop=False).tolist() == [1, 2, 2, 2]  # TSN repeats the last
    with pytest.raises(FlowkitError):
        clip_indices(0, 2, 0)


# ---- the clips of the 3D networks' references ------------------------------------------------------


def test_x3d_reads_t_frames_at_stride_tau_per_size():
    # facebookresearch/SlowFast configs/Kinetics/X3D_*.yaml: NUM_FRAMES x SAMPLING_RATE.
    assert {k: (c.frames, c.stride) for k, c in X3D_CLIPS.items()} == {
        "xs": (4, 12), "s": (13, 6), "m": (16, 5), "l": (16, 5)}
    assert X3D_CLIPS["m"].span == 76  # 16 frames 5 apart: 2.5 s at 30 fps


def test_slowfast_8x8_reads_one_fast_clip_and_the_slow_pathway_takes_8_of_it():
    fast = slowfast_clip()
    assert (fast.frames, fast.stride) == (32, 2)  # alpha T = 32 at tau / alpha = 2
    slow = slow_pathway(fast.frames)
    assert slow.tolist() == [0, 4, 8, 13, 17, 22, 26, 31]  # the reference's linspace, not 0, 4 .. 28
    frames = clip_indices(10, fast.frames, 1000, fast.stride)[slow]
    assert frames[0] == 10 and frames[-1] == 10 + 62 and len(frames) == 8  # 8 frames over 63
    assert slowfast_clip(4, 16).frames == 16 and slowfast_clip(4, 16).stride == 4  # 4x16
    with pytest.raises(FlowkitError, match="multiple of 4 frames, not 30"):
        slow_pathway(30)
    with pytest.raises(FlowkitError, match="must be a multiple of alpha"):
        slowfast_clip(8, 6)


def test_the_slowfast_network_takes_the_slow_frames_the_data_layer_names():
    """The one rule in two places (models import no data module): they agree on every clip."""
    import torch

    from flowkit.models.slowfast import ALPHA, slow_frames

    assert ALPHA == SLOWFAST_ALPHA
    for t in range(4, 1025, 4):
        clip = torch.arange(t, dtype=torch.float32).view(1, 1, t, 1, 1)
        taken = slow_frames(clip).flatten().long().numpy()
        assert np.array_equal(taken, slow_pathway(t)), t


def test_reference_clips_name_registered_networks_and_their_declared_frames():
    from flowkit.models import model_info

    for name, clip in REFERENCE_CLIPS.items():
        assert model_info(name).frames == clip.frames, name
    assert REFERENCE_CLIPS["x3d_m"] == X3D_CLIPS["m"] and REFERENCE_CLIPS["slowfast_r50"] == slowfast_clip()


@pytest.mark.parametrize(("arch", "frames", "stride", "size"), [
    ("x3d_xs", 4, 12, 160), ("x3d_m", 16, 5, 224), ("x3d_l", 16, 5, 312), ("slowfast_r50", 32, 2, 224),
    ("c3d", 16, 1, 112), ("i3d", 64, 1, 224), ("t3d", 32, 1, 224), ("convnet_lstm", 25, 5, 224),
    ("tsn", 0, 0, 224),
])
def test_each_network_trains_on_its_own_clip_unless_the_settings_say(arch, frames, stride, size):
    from flowkit.training.config import load_config

    config = load_config(None, {"arch": arch})
    assert (config.clip_length, config.clip_stride, config.crop_size) == (frames, stride, size)
    if frames:
        given = load_config(None, {"arch": arch, "clip_stride": "3"})
        assert (given.clip_length, given.clip_stride) == (frames, 3)
