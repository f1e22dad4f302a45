"""TV-L1's parameters and their defaults, in one place for both engines (OpenCV's and torch's).

The defaults are OpenCV-contrib's `DualTVL1OpticalFlow::create()` (optflow/src/tvl1flow.cpp).
`variant` picks whose steps the torch engine takes: `optflow` (that CPU implementation) or
`cudaoptflow` (OpenCV-contrib's CUDA one, `cuda::OpticalFlowDual_TVL1`, which denseflow and
TSN's dense_flow run; `flowkit.flow.tvl1_torch` lists how the two differ).
No torch here: the command line lists them without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass


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
