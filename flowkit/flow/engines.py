"""Flow engines: one interface over OpenCV's TV-L1, DIS and Farneback, with every parameter settable.

An engine takes two grayscale uint8 frames and returns the dense displacement field from the first
to the second, float32 of shape (H, W, 2) holding (u, v) in pixels. `create_engine(name, params)`
builds one; each engine lists its parameters (name, default, meaning) in `PARAMS`, so the CLI, the
stored attributes and the docs all come from the same table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from flowkit.errors import FlowkitError


@dataclass(frozen=True)
class Param:
    """One engine parameter: its name, default value, type and what it does."""

    name: str
    default: Any
    type: type
    help: str

    def parse(self, text: str) -> Any:
        """A command-line string to this parameter's type, with a one-line error if it does not fit."""
        try:
            if self.type is bool:
                lowered = text.strip().lower()
                if lowered not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                return lowered in ("1", "true", "yes")
            return self.type(text)
        except ValueError:
            raise FlowkitError(
                f"parameter {self.name}={text!r}: expected {self.type.__name__}"
            ) from None


class FlowEngine(ABC):
    """Dense optical flow between two grayscale uint8 frames of equal size."""

    algorithm: ClassVar[str]
    PARAMS: ClassVar[tuple[Param, ...]]

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        known = {p.name: p for p in self.PARAMS}
        unknown = sorted(set(params or {}) - set(known))
        if unknown:
            raise FlowkitError(
                f"{self.algorithm} has no parameter {', '.join(unknown)} "
                f"(it has: {', '.join(known)})"
            )
        merged = {p.name: p.default for p in self.PARAMS}
        for name, value in (params or {}).items():
            param = known[name]
            merged[name] = param.parse(value) if isinstance(value, str) else param.type(value)
        self.params: dict[str, Any] = merged

    @abstractmethod
    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow from `prev` to `nxt`: float32 (H, W, 2), u (x, right) then v (y, down), in pixels."""

    @staticmethod
    def set_threads(threads: int) -> None:
        """Threads this process's engine may use; workers share the cores between them."""
        cv2.setNumThreads(max(1, int(threads)))


class TVL1Engine(FlowEngine):
    """OpenCV-contrib's DualTVL1OpticalFlow (Zach et al. 2007, Wedel et al. 2009), its defaults."""

    algorithm = "tvl1"
    PARAMS = (
        Param("tau", 0.25, float, "time step of the numerical scheme"),
        Param("lambda", 0.15, float, "weight of the data term (smaller: smoother flow)"),
        Param("theta", 0.3, float, "tightness of the coupling between the two variables"),
        Param("nscales", 5, int, "number of pyramid scales"),
        Param("warps", 5, int, "warpings per scale"),
        Param("epsilon", 0.01, float, "stopping threshold on the update"),
        Param("inner_iterations", 30, int, "inner iterations per warp"),
        Param("outer_iterations", 10, int, "outer iterations per warp"),
        Param("scale_step", 0.8, float, "pyramid downscaling factor"),
        Param("gamma", 0.0, float, "weight of the illumination-change term"),
        Param("median_filtering", 5, int, "median filter size between warps (1: off)"),
    )

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        p = self.params
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        tvl1.setTau(p["tau"])
        tvl1.setLambda(p["lambda"])
        tvl1.setTheta(p["theta"])
        tvl1.setScalesNumber(p["nscales"])
        tvl1.setWarpingsNumber(p["warps"])
        tvl1.setEpsilon(p["epsilon"])
        tvl1.setInnerIterations(p["inner_iterations"])
        tvl1.setOuterIterations(p["outer_iterations"])
        tvl1.setScaleStep(p["scale_step"])
        tvl1.setGamma(p["gamma"])
        tvl1.setMedianFiltering(p["median_filtering"])
        self._tvl1 = tvl1

    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self._tvl1.calc(prev, nxt, None)


_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class DISEngine(FlowEngine):
    """OpenCV's DIS flow (Kroeger et al. 2016): tens of times faster than TV-L1, less accurate."""

    algorithm = "dis"
    PARAMS = (
        Param("preset", "medium", str, "ultrafast, fast or medium; the other parameters refine it"),
        Param("finest_scale", -1, int, "finest pyramid level (-1: the preset's)"),
        Param("patch_size", -1, int, "patch size (-1: the preset's)"),
        Param("patch_stride", -1, int, "patch stride (-1: the preset's)"),
        Param("gradient_descent_iterations", -1, int, "per-patch iterations (-1: the preset's)"),
        Param("variational_refinement_iterations", -1, int, "refinement iterations (-1: the preset's)"),
        Param("variational_refinement_alpha", 20.0, float, "smoothness weight of the refinement"),
        Param("variational_refinement_delta", 5.0, float, "colour-constancy weight of the refinement"),
        Param("variational_refinement_gamma", 10.0, float, "gradient-constancy weight of the refinement"),
        Param("use_mean_normalization", True, bool, "normalise patch means (robust to illumination)"),
        Param("use_spatial_propagation", True, bool, "propagate good patch matches to neighbours"),
    )

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        p = self.params
        if p["preset"] not in _DIS_PRESETS:
            raise FlowkitError(f"dis preset {p['preset']!r} is not one of {', '.join(_DIS_PRESETS)}")
        dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[p["preset"]])
        for name, setter in (
            ("finest_scale", dis.setFinestScale),
            ("patch_size", dis.setPatchSize),
            ("patch_stride", dis.setPatchStride),
            ("gradient_descent_iterations", dis.setGradientDescentIterations),
            ("variational_refinement_iterations", dis.setVariationalRefinementIterations),
        ):
            if p[name] >= 0:
                setter(p[name])
        dis.setVariationalRefinementAlpha(p["variational_refinement_alpha"])
        dis.setVariationalRefinementDelta(p["variational_refinement_delta"])
        dis.setVariationalRefinementGamma(p["variational_refinement_gamma"])
        dis.setUseMeanNormalization(p["use_mean_normalization"])
        dis.setUseSpatialPropagation(p["use_spatial_propagation"])
        # Record what the preset resolved to, so stored attributes are complete.
        p["finest_scale"] = dis.getFinestScale()
        p["patch_size"] = dis.getPatchSize()
        p["patch_stride"] = dis.getPatchStride()
        p["gradient_descent_iterations"] = dis.getGradientDescentIterations()
        p["variational_refinement_iterations"] = dis.getVariationalRefinementIterations()
        self._dis = dis

    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self._dis.calc(prev, nxt, None)


class FarnebackEngine(FlowEngine):
    """OpenCV's Farneback polynomial-expansion flow (2003), with OpenCV's usual settings."""

    algorithm = "farneback"
    PARAMS = (
        Param("pyr_scale", 0.5, float, "pyramid downscaling factor"),
        Param("levels", 3, int, "pyramid levels"),
        Param("winsize", 15, int, "averaging window size"),
        Param("iterations", 3, int, "iterations per level"),
        Param("poly_n", 5, int, "pixel neighbourhood of the polynomial expansion"),
        Param("poly_sigma", 1.2, float, "Gaussian sigma of the polynomial expansion"),
        Param("gaussian_window", False, bool, "Gaussian instead of box averaging window"),
    )

    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        p = self.params
        flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if p["gaussian_window"] else 0
        return cv2.calcOpticalFlowFarneback(
            prev, nxt, None, p["pyr_scale"], p["levels"], p["winsize"],
            p["iterations"], p["poly_n"], p["poly_sigma"], flags,
        )


ENGINES: dict[str, type[FlowEngine]] = {
    engine.algorithm: engine for engine in (TVL1Engine, DISEngine, FarnebackEngine)
}


def engine_class(algorithm: str) -> type[FlowEngine]:
    """The engine class for an algorithm name, with a one-line error for an unknown one."""
    try:
        return ENGINES[algorithm]
    except KeyError:
        raise FlowkitError(
            f"unknown flow algorithm {algorithm!r} (choose from {', '.join(ENGINES)})"
        ) from None


def create_engine(algorithm: str, params: Mapping[str, Any] | None = None) -> FlowEngine:
    """Build the engine for `algorithm` with `params` (strings are parsed) over its defaults."""
    return engine_class(algorithm)(params)


def parse_params(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`['tau=0.25', 'warps=3']` to a dict of strings; each engine parses its own values."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise FlowkitError(f"parameter {pair!r} is not NAME=VALUE")
        params[name.strip()] = value.strip()
    return params
