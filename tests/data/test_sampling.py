import numpy as np
import pytest

from flowkit.data.sampling import all_clips, clip_indices, evenly_spaced, random_clip, tsn_segments
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
