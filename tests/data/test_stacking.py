import numpy as np

from flowkit.data.stacking import (
    bidirectional_stack,
    subtract_mean_flow,
    to_channels,
    trajectory_stack,
)


def _rotation(height: int, width: int, degrees: float) -> np.ndarray:
    """A rotation about the centre: linear in the coordinates, so bilinear sampling is exact."""
    angle = np.radians(degrees)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    x, y = xs - cx, ys - cy
    u = np.cos(angle) * x - np.sin(angle) * y - x
    v = np.sin(angle) * x + np.cos(angle) * y - y
    return np.stack([u, v], axis=-1).astype(np.float32)


def test_channels_interleave_u_and_v_per_flow():
    stack = np.zeros((3, 2, 2, 2), np.float32)
    for k in range(3):
        stack[k, ..., 0] = 10 * k + 1  # u of flow k
        stack[k, ..., 1] = 10 * k + 2  # v of flow k
    channels = to_channels(stack)
    assert channels.shape == (6, 2, 2)
    assert channels[:, 0, 0].tolist() == [1, 2, 11, 12, 21, 22]


def test_mean_subtraction_removes_each_fields_mean():
    rng = np.random.default_rng(0)
    stack = rng.normal(size=(4, 6, 8, 2)).astype(np.float32) + np.array([3.0, -2.0], np.float32)
    out = subtract_mean_flow(stack)
    assert np.allclose(out.mean(axis=(1, 2)), 0, atol=1e-6)
    assert np.allclose(out[1], stack[1] - stack[1].mean(axis=(0, 1)), atol=1e-5)


def test_trajectory_stack_follows_known_trajectories():
    # Every frame rotates by 3 degrees: the point starting at p is at R^k p after k frames, and
    # the flow sampled there is R^(k+1) p - R^k p. Flow stacking would give R p - p every time.
    height, width, length = 41, 51, 5
    field = _rotation(height, width, 3.0)
    flows = np.stack([field] * length)
    stack = trajectory_stack(flows)
    angle = np.radians(3.0)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    cx, cy = (width - 1) / 2, (height - 1) / 2
    for y, x in [(20, 25), (10, 30), (28, 15)]:
        p = np.array([x - cx, y - cy])
        for k in range(length):
            expected = np.linalg.matrix_power(rotate, k + 1) @ p - np.linalg.matrix_power(rotate, k) @ p
            assert np.allclose(stack[k, y, x], expected, atol=1e-3), (y, x, k)
    # The first flow is sampled at the pixel itself; later ones differ from plain stacking.
    assert np.allclose(stack[0], flows[0])
    assert not np.allclose(stack[3, 10, 30], flows[3, 10, 30], atol=1e-2)


def test_bidirectional_puts_forward_then_backward():
    forward = np.full((2, 1, 1, 2), 1.0, np.float32)
    backward = np.full((2, 1, 1, 2), -1.0, np.float32)
    assert to_channels(bidirectional_stack(forward, backward))[:, 0, 0].tolist() == [1, 1, 1, 1, -1, -1, -1, -1]
