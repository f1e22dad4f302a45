"""Homographies between real rendered frames, their fallbacks, and the warp onto the first frame."""

import cv2
import numpy as np
import pytest

from flowkit.flow.camera_motion import IDENTITY, CameraMotion, plausible, warp_onto_first
from flowkit.synth import Motion, render_frames

W, H = 128, 96


def _pair(motion: Motion, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    a, b = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in render_frames(motion, 2, W, H, seed))
    return a, b


def _corner_error(found: np.ndarray, truth: np.ndarray) -> float:
    corners = np.array([[[0, 0], [W - 1, 0], [0, H - 1], [W - 1, H - 1]]], np.float64)
    return float(np.abs(cv2.perspectiveTransform(corners, found) - cv2.perspectiveTransform(corners, truth)).max())


@pytest.mark.parametrize("motion", [Motion(dx=2.5, dy=-1.0), Motion(zoom=1.03), Motion(rotate=2.0)],
                         ids=["pan", "zoom", "rotate"])
def test_the_homography_is_the_camera_motion(motion):
    first, second = _pair(motion)
    motion_model = CameraMotion()
    estimate = motion_model.estimate(motion_model.features(first), motion_model.features(second), (H, W))
    assert estimate.found and estimate.inliers >= motion_model.min_inliers
    # Corners move with the true motion to a fraction of a pixel (zoom and rotation are about
    # the centre, so the frame's wrap-around borders play no part in the middle).
    assert _corner_error(estimate.homography, motion.matrix(W, H)) < 0.5


def test_frames_without_features_fall_back_to_the_identity():
    flat = np.full((H, W), 128, np.uint8)
    motion_model = CameraMotion()
    estimate = motion_model.estimate(motion_model.features(flat), motion_model.features(flat), (H, W))
    assert not estimate.found and estimate.matches == 0
    assert np.array_equal(estimate.homography, IDENTITY)


def test_unrelated_frames_find_no_homography():
    a = cv2.cvtColor(next(render_frames(Motion(), 1, W, H, seed=1)), cv2.COLOR_BGR2GRAY)
    b = cv2.cvtColor(next(render_frames(Motion(), 1, W, H, seed=2)), cv2.COLOR_BGR2GRAY)
    motion_model = CameraMotion()
    assert not motion_model.estimate(motion_model.features(a), motion_model.features(b), (H, W)).found


def test_degenerate_homographies_are_refused():
    assert plausible(Motion(dx=3).matrix(W, H), (H, W))
    assert not plausible(np.diag([-1.0, 1.0, 1.0]), (H, W))  # a mirror
    assert not plausible(np.diag([0.2, 0.2, 1.0]), (H, W))  # collapses the frame
    assert not plausible(Motion(dx=W / 2).matrix(W, H), (H, W))  # half a frame in one step
    assert not plausible(np.full((3, 3), np.nan), (H, W))


def test_the_warped_second_frame_lines_up_with_the_first_and_borders_come_from_it():
    motion = Motion(dx=4.0, dy=2.0)
    first, second = _pair(motion)
    warped = warp_onto_first(first, second, motion.matrix(W, H))
    inner = (slice(8, -8), slice(8, -8))
    before = np.abs(second.astype(int) - first)[inner].mean()
    after = np.abs(warped.astype(int) - first)[inner].mean()
    assert after < 0.2 * before and after < 4
    # Pixel x reads the second frame at x + (4, 2): the right and bottom margins have no source
    # inside it and are the first frame's own pixels (zero flow there, not a black border).
    assert np.array_equal(warped[:, -8:], first[:, -8:]) and np.array_equal(warped[-6:], first[-6:])
    assert not np.array_equal(second[:, -8:], first[:, -8:])
