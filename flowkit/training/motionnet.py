"""`flowkit fit-motionnet`: MotionNet fitted on the RGB frames of a flowkit dataset, no flow read.

Snippets of consecutive stored frames are drawn at random (a video, then a start), cropped to the
size all of them share, and handed to `flowkit.flow.motionnet_fit.fit_and_save`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.flow.motionnet_fit import fit_and_save
from flowkit.params import check_count
from flowkit.store.reader import FlowStore


def read_snippets(data: str | Path, frames: int, count: int, gray: bool = False,
                  seed: int = 0) -> np.ndarray:
    """`count` snippets of `frames` consecutive RGB frames from the dataset `data`: uint8
    (count, frames, H, W, C), BGR (C = 3) or gray (C = 1), centre-cropped to a common size."""
    check_count("--frames", frames)
    check_count("--snippets", count)
    rng = np.random.default_rng(seed)
    snippets = []
    with FlowStore(data) as store:
        records = [store.video(i) for i in store.ids]
        usable = [r for r in records if r.has_rgb and r.entry.frames >= frames]
        if not usable:
            raise FlowkitError(f"{data} has no video with {frames} or more stored RGB frames "
                               "(extract with --rgb)")
        for _ in range(count):
            record = usable[int(rng.integers(len(usable)))]
            start = int(rng.integers(record.entry.frames - frames + 1))
            stack = [record.rgb_frame(start + k) for k in range(frames)]
            if gray:
                stack = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[..., None] for f in stack]
            snippets.append(np.stack(stack))
    height = min(s.shape[1] for s in snippets)
    width = min(s.shape[2] for s in snippets)
    return np.stack([_centre(s, height, width) for s in snippets])


def _centre(snippet: np.ndarray, height: int, width: int) -> np.ndarray:
    top = (snippet.shape[1] - height) // 2
    left = (snippet.shape[2] - width) // 2
    return snippet[:, top: top + height, left: left + width]


def fit_motionnet_on_dataset(data: str | Path, output: str | Path, steps: int, frames: int = 2,
                             gray: bool = True, snippets: int = 64, seed: int = 0,
                             **options: Any) -> dict[str, Any]:
    """Fit MotionNet on snippets of `data` and write its weights to `output`; the fit's report."""
    check_count("--steps", steps)
    if frames < 2:
        raise FlowkitError(f"--frames must be 2 or more (flow between consecutive frames), got {frames}")
    output = Path(output)
    if not output.parent.is_dir():
        raise FlowkitError(f"{output.parent} is not a folder")
    stack = read_snippets(data, frames, snippets, gray, seed)
    report = fit_and_save(stack, output, steps, seed=seed, **options)
    return {**report, "snippets": int(stack.shape[0]), "size": f"{stack.shape[3]}x{stack.shape[2]}"}
