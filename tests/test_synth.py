"""The synthetic action dataset: each cue where it is meant to be, and nowhere else."""

import cv2
import numpy as np

from flowkit.synth import ACTION_CLASSES, render_action


def test_colours_differ_in_hue_only_and_the_disc_moves_its_way():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    warm, centres = render_action("warm", "left", rng_a, frames=6, size=48)
    cool, _ = render_action("cool", "left", rng_b, frames=6, size=48)
    # Same scene, same motion: grey frames (what flow sees) agree; colour frames do not.
    grey = [np.abs(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(int) - cv2.cvtColor(b, cv2.COLOR_BGR2GRAY))
            for a, b in zip(warm, cool, strict=True)]
    assert max(g.max() for g in grey) <= 1
    assert np.abs(warm[0].astype(int) - cool[0]).max() > 40
    steps = np.diff(centres, axis=0)
    steps = (steps + 24) % 48 - 24  # the disc wraps around the frame
    assert np.all(steps[:, 0] < -1) and np.allclose(steps[:, 1], 0)
    assert len(ACTION_CLASSES) == 8


def test_the_pan_has_an_object_moving_its_own_way():
    from flowkit.synth import (
        DEMO_MOTIONS,
        PAN_OBJECT_RADIUS,
        PAN_OBJECT_VELOCITY,
        render_frames,
        render_pan_with_object,
    )

    frames, centres = render_pan_with_object(4, 80, 64, seed=0)
    background = list(render_frames(DEMO_MOTIONS["pan_right"][0], 4, 80, 64, seed=0))
    assert np.allclose(np.diff(centres, axis=0), PAN_OBJECT_VELOCITY)
    ys, xs = np.mgrid[0:64, 0:80]
    for frame, plain, (cx, cy) in zip(frames, background, centres, strict=True):
        changed = np.abs(frame.astype(int) - plain).max(axis=-1) > 2
        distance = np.hypot(xs - cx, ys - cy)
        assert changed[distance < 0.5 * PAN_OBJECT_RADIUS * 64].mean() > 0.9  # the disc is there
        assert not changed[distance > PAN_OBJECT_RADIUS * 64 + 2].any()  # and only there
