"""Flow for one pair of image files, written as a `.flo` file or a colour-wheel picture."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.flow.colorwheel import flow_to_color
from flowkit.flow.engines import FlowEngine
from flowkit.flow.flo import write_flo


def read_gray(path: Path) -> np.ndarray:
    """An image file as grayscale uint8, with a one-line error for anything else."""
    if not Path(path).is_file():
        raise FlowkitError(f"{path} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FlowkitError(f"{path} is not an image OpenCV can read")
    return image


def flow_between_files(engine: FlowEngine, first: Path, second: Path) -> tuple[np.ndarray, float]:
    """Flow from image `first` to image `second`, and the seconds the engine took."""
    prev, nxt = read_gray(first), read_gray(second)
    if prev.shape != nxt.shape:
        raise FlowkitError(f"{first} is {prev.shape[1]}x{prev.shape[0]}, {second} {nxt.shape[1]}x{nxt.shape[0]}")
    start = time.perf_counter()
    flow = engine.calc(prev, nxt)
    return flow, time.perf_counter() - start


def write_flow_file(path: Path, flow: np.ndarray) -> None:
    """`.flo` (Middlebury, float) or an image extension (the flow in the colour wheel)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".flo":
        write_flo(path, flow)
    elif suffix in (".png", ".jpg", ".jpeg"):
        if not cv2.imwrite(str(path), flow_to_color(flow)[..., ::-1]):
            raise FlowkitError(f"cannot write {path}")
    else:
        raise FlowkitError(f"cannot write {suffix or 'extension-less'} files; use .flo, .png or .jpg")
