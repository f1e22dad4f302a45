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
