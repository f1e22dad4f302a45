"""TV-L1's parameters and their defaults, in one place for both engines (OpenCV's and torch's).

The defaults are OpenCV-contrib's `DualTVL1OpticalFlow::create()` (optflow/src/tvl1flow.cpp).
`variant` picks whose steps the torch engine takes: `optflow` (that CPU implementation) or
`cudaoptflow` (OpenCV-contrib's CUDA one, `cuda::OpticalFlowDual_TVL1`, which denseflow and
TSN's dense_flow run; `flowkit.flow.tvl1_torch` lists how the two differ).
No torch here: the command line lists them without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowkit.errors import FlowkitError
from flowkit.flow.engine_base import Param


@dataclass(frozen=True)
class TVL1Params:
    """OpenCV's DualTVL1OpticalFlow parameters, with its defaults."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median_filtering: int = 5
    variant: str = "optflow"


VARIANTS = ("optflow", "cudaoptflow")


_TVL1 = TVL1Params()  # the defaults' one home
TVL1_PARAMS = (
    Param("tau", _TVL1.tau, float, "time step of the numerical scheme"),
    Param("lambda", _TVL1.lambda_, float, "weight of the data term (smaller: smoother flow)"),
    Param("theta", _TVL1.theta, float, "tightness of the coupling between the two variables"),
    Param("nscales", _TVL1.nscales, int, "number of pyramid scales"),
    Param("warps", _TVL1.warps, int, "warpings per scale"),
    Param("epsilon", _TVL1.epsilon, float, "stopping threshold on the update"),
    Param("inner_iterations", _TVL1.inner_iterations, int, "inner iterations per warp"),
    Param("outer_iterations", _TVL1.outer_iterations, int, "outer iterations per warp"),
    Param("scale_step", _TVL1.scale_step, float, "pyramid downscaling factor"),
    Param("gamma", 0.0, float, "weight of the illumination-change term (OpenCV's engine only)"),
    Param("median_filtering", _TVL1.median_filtering, int,
          "median filter size before each outer iteration (1: off)"),
    Param("variant", _TVL1.variant, str,
          "whose steps (torch engine): optflow (OpenCV's CPU TV-L1) or cudaoptflow (its CUDA one)",
          recorded_at_default=False),
)

# Parameter sets for TV-L1, either backend; explicit parameters override them. OpenCV's 5 scales
# at 0.8 reach down to 0.41x the frame size and miss motions beyond a few pixels there; both
# other presets go deeper (12 scales: 0.086x). Measured in BENCHMARKS.md: `accurate` matches
# the default's error on Middlebury, recovers large motions, and converges in fewer iterations;
# `fast` does about a quarter of the default's iterations for ~5% more error on Middlebury.
# `denseflow`: OpenCV's CUDA TV-L1 as denseflow and TSN's dense_flow run it, with
# `cuda::OpticalFlowDual_TVL1::create()`'s defaults (cudaoptflow.hpp: 300 iterations, no median;
# the other values equal the CPU defaults), and its steps (`variant`; torch engine only).
TVL1_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {"nscales": 10, "warps": 3, "outer_iterations": 2, "epsilon": 0.02},
    "accurate": {"nscales": 12},
    "denseflow": {"variant": "cudaoptflow", "outer_iterations": 1, "inner_iterations": 300,
                  "median_filtering": 1},
}


def check_tvl1_params(p: dict[str, Any]) -> None:
    """The ranges both TV-L1 engines need, one line each (OpenCV's would assert or loop)."""
    if p["median_filtering"] not in (0, 1, 3, 5):
        raise FlowkitError("median_filtering must be 1 (off), 3 or 5, as in OpenCV")
    if p["variant"] not in VARIANTS:
        raise FlowkitError(f"variant must be one of {', '.join(VARIANTS)}, not {p['variant']!r}")
    if p["nscales"] < 1 or p["warps"] < 1 or not 0 < p["scale_step"] < 1:
        raise FlowkitError("nscales and warps must be at least 1, scale_step within (0, 1)")
    if p["inner_iterations"] < 1 or p["outer_iterations"] < 1:
        raise FlowkitError("inner_iterations and outer_iterations must be at least 1")
