"""The Middlebury `.flo` format, read and written by every flow benchmark and tool.

Layout (little-endian): float32 magic 202021.25, int32 width, int32 height, then H*W (u, v)
float32 pairs in row order. Values above 1e9 mark unknown pixels in ground truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowkit.errors import FlowkitError

FLO_MAGIC = 202021.25
UNKNOWN_FLOW_THRESHOLD = 1e9


def read_flo(path: str | Path) -> np.ndarray:
    """A `.flo` file as float32 (H, W, 2)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FlowkitError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != np.float32(FLO_MAGIC):
        raise FlowkitError(f"{path} is not a .flo file (bad magic number)")
    width, height = (int(x) for x in np.frombuffer(data[4:12], "<i4"))
    expected = 12 + width * height * 8
    if width <= 0 or height <= 0 or len(data) != expected:
        raise FlowkitError(f"{path} is damaged: {width}x{height} needs {expected} bytes, has {len(data)}")
    return np.frombuffer(data[12:], "<f4").reshape(height, width, 2).astype(np.float32)


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Write float (H, W, 2) flow as a `.flo` file."""
    flow = np.asarray(flow, dtype="<f4")
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise FlowkitError(f"flow must be (H, W, 2), got {flow.shape}")
    height, width = flow.shape[:2]
    with open(path, "wb") as handle:
        handle.write(np.array([FLO_MAGIC], "<f4").tobytes())
        handle.write(np.array([width, height], "<i4").tobytes())
        handle.write(np.ascontiguousarray(flow).tobytes())
