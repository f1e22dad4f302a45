import numpy as np

from flowkit.flow.colorwheel import COLOR_WHEEL, flow_to_color


def test_zero_motion_is_white_and_directions_get_distinct_hues():
    flow = np.zeros((3, 3, 2), np.float32)
    assert (flow_to_color(flow) == 255).all()
    directions = np.array([[[1, 0], [0, 1], [-1, 0], [0, -1]]], np.float32)
    colors = flow_to_color(directions).reshape(-1, 3).astype(int)
    assert len({tuple(c) for c in colors}) == 4
    # Middlebury convention: motion to the right is red, to the left cyan-blue.
    right, left = colors[0], colors[2]
    assert right[0] > right[2] and left[2] > left[0]


def test_saturation_grows_with_magnitude_and_clips_beyond_the_scale():
    flow = np.array([[[0.5, 0], [1.0, 0], [2.0, 0]]], np.float32)
    colors = flow_to_color(flow, max_magnitude=1.0)[0].astype(int)
    assert colors[0].min() > colors[1].min()  # half magnitude: paler
    assert (colors[2] <= colors[1]).all() and colors[2].sum() < colors[1].sum()  # beyond: darkened


def test_wheel_has_the_middlebury_55_colours():
    assert COLOR_WHEEL.shape == (55, 3)
