"""Flow engines: one interface over TV-L1 (OpenCV's, and flowkit's own in PyTorch), DIS, Farneback,
and MotionNet (a network fitted without ground truth, flowkit.flow.motionnet).

An engine takes two grayscale uint8 frames and returns the dense displacement field from the first
to the second, float32 of shape (H, W, 2) holding (u, v) in pixels; `calc_batch` takes many pairs.
`create_engine(algorithm, params, backend=..., device=...)` builds one. Each algorithm lists its
parameters (name, default, meaning) in one table shared by its backends, so the CLI, the stored
attributes and the docs all come from the same place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import cv2
import numpy as np

from flowkit.devices import runs_on_cpu
from flowkit.errors import FlowkitError
from flowkit.flow.engine_base import FlowEngine, Param, has_cxx_compiler
from flowkit.flow.torch_engines import MotionNetEngine, TorchTVL1Engine
from flowkit.flow.tvl1_params import TVL1_PARAMS, TVL1_PRESETS, check_tvl1_params
from flowkit.params import parse_assignments

__all__ = ["ALGORITHMS", "ENGINES", "TVL1_PARAMS", "TVL1_PRESETS", "FlowEngine", "MotionNetEngine", "Param",
           "TorchTVL1Engine", "create_engine", "has_cxx_compiler"]


class SolverPerSize:
    """An OpenCV flow object, built anew whenever the frame size changes.

    OpenCV's TV-L1 and DIS objects keep buffers from the size they last ran at, and a call at
    another size then gives other flow than a fresh object would (measured: up to 0.20 px for
    TV-L1 after a 32x40 pair, 0.34 px for DIS after a 32x32 one; tests/flow/test_engines.py).
    Built per size, a video's flow never depends on the videos its worker did before it.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build, self._shape, self._solver = build, None, None

    def __call__(self, shape: tuple[int, ...]) -> Any:
        if shape != self._shape:
            self._solver, self._shape = self._build(), shape
        return self._solver


class TVL1Engine(FlowEngine):
    """OpenCV-contrib's DualTVL1OpticalFlow (Zach et al. 2007, Wedel et al. 2009), its defaults."""

    algorithm = "tvl1"
    PARAMS = TVL1_PARAMS

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        p = self.params
        check_tvl1_params(p)
        if p["variant"] != "optflow":
            raise FlowkitError(f"variant={p['variant']} (preset denseflow) is the torch engine's: OpenCV's CUDA "
                               "module is not in opencv-python; use --engine torch")
        self._solver = SolverPerSize(lambda: self._build(p))

    @staticmethod
    def _build(p: dict[str, Any]) -> cv2.optflow.DualTVL1OpticalFlow:
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
        return tvl1

    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self._solver(prev.shape).calc(prev, nxt, None)


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
        self._solver = SolverPerSize(lambda: self._build(self.params))

    @classmethod
    def resolve(cls, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """As the base, with the values the preset left at -1 read back from OpenCV."""
        p = super().resolve(params)
        dis = cls._build(p)
        p["finest_scale"] = dis.getFinestScale()
        p["patch_size"] = dis.getPatchSize()
        p["patch_stride"] = dis.getPatchStride()
        p["gradient_descent_iterations"] = dis.getGradientDescentIterations()
        p["variational_refinement_iterations"] = dis.getVariationalRefinementIterations()
        return p

    @staticmethod
    def _build(p: dict[str, Any]) -> cv2.DISOpticalFlow:
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
        return dis

    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self._solver(prev.shape).calc(prev, nxt, None)


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


ENGINES: dict[tuple[str, str], type[FlowEngine]] = {
    (engine.algorithm, engine.backend): engine
    for engine in (TVL1Engine, TorchTVL1Engine, DISEngine, FarnebackEngine, MotionNetEngine)
}
ALGORITHMS = tuple(dict.fromkeys(algorithm for algorithm, _ in ENGINES))
BACKENDS = ("auto", "opencv", "torch")


def resolve_backend(algorithm: str, backend: str = "auto") -> str:
    """The engine `auto` stands for is the fastest: flowkit's torch TV-L1 (faster than OpenCV's
    on CPU, far faster on GPU) for tvl1, OpenCV for the algorithms only it implements."""
    if algorithm not in ALGORITHMS:
        raise FlowkitError(f"unknown flow algorithm {algorithm!r} (choose from {', '.join(ALGORITHMS)})")
    if backend not in BACKENDS:
        raise FlowkitError(f"unknown engine {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "auto":
        return "torch" if (algorithm, "torch") in ENGINES else "opencv"
    if (algorithm, backend) not in ENGINES:
        have = ", ".join(b for a, b in ENGINES if a == algorithm)
        raise FlowkitError(f"{algorithm} has no {backend} engine (it has: {have})")
    return backend


def auto_backend(algorithm: str, device: str = "auto", repays_compiling: bool = False,
                 preset: str = "default", params: Mapping[str, Any] | None = None) -> str:
    """What `--engine auto` runs for a job: the torch engine on a GPU, or on a CPU when the job
    repays compiling it; otherwise OpenCV's, which needs no start-up and is as fast as the torch
    engine uncompiled (BENCHMARKS.md, "Start-up"). Algorithms with one engine keep it, and
    settings only the torch engine has (preset denseflow's `variant`) choose it."""
    backend = resolve_backend(algorithm, "auto")
    if backend != "torch" or (algorithm, "opencv") not in ENGINES:
        return backend
    if resolve_params(algorithm, params, preset).get("variant", "optflow") != "optflow":
        return "torch"
    if not runs_on_cpu(device):
        return "torch"
    return "torch" if repays_compiling and has_cxx_compiler() else "opencv"


def engine_class(algorithm: str, backend: str = "opencv") -> type[FlowEngine]:
    """The engine class for an algorithm and backend, with a one-line error for unknown ones."""
    return ENGINES[(algorithm, resolve_backend(algorithm, backend))]


def preset_params(algorithm: str, preset: str) -> dict[str, Any]:
    """The parameters a preset sets (`default`, `fast`, `accurate`; TV-L1 only)."""
    if preset not in TVL1_PRESETS:
        raise FlowkitError(f"unknown preset {preset!r} (choose from {', '.join(TVL1_PRESETS)})")
    if preset != "default" and algorithm != "tvl1":
        raise FlowkitError(f"presets are for tvl1; set {algorithm}'s parameters with --param")
    return dict(TVL1_PRESETS[preset])


def resolve_params(algorithm: str, params: Mapping[str, Any] | None = None,
                   preset: str = "default") -> dict[str, Any]:
    """Every parameter's value for `algorithm` under `preset` and `params`, without an engine."""
    merged = {**preset_params(algorithm, preset), **(params or {})}
    return engine_class(algorithm, "auto").resolve(merged)


def recorded_params(algorithm: str, params: Mapping[str, Any] | None = None,
                    preset: str = "default") -> dict[str, Any]:
    """The resolved parameters a dataset records (and compares on resume): those added later
    are left out while at their default, so older datasets still match."""
    resolved = resolve_params(algorithm, params, preset)
    late = {p.name: p.default for p in engine_class(algorithm, "auto").PARAMS if not p.recorded_at_default}
    return {k: v for k, v in resolved.items() if k not in late or v != late[k]}


def create_engine(
    algorithm: str,
    params: Mapping[str, Any] | None = None,
    backend: str = "opencv",
    device: str = "auto",
    preset: str = "default",
    compile: bool | None = None,
) -> FlowEngine:
    """Build an engine: `preset`, then `params` (strings are parsed), over the defaults.

    `compile` (torch engine): None compiles where possible; False suits a handful of pairs,
    which would not repay the compilation.
    """
    merged = {**preset_params(algorithm, preset), **(params or {})}
    cls = engine_class(algorithm, backend)
    if cls.backend == "torch":
        return cls(merged, device=device, compile=compile)
    if device not in ("auto", "cpu"):
        raise FlowkitError(f"the OpenCV {algorithm} engine runs on the CPU only, not {device!r}")
    return cls(merged)


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """`--param` values: `['tau=0.25', 'warps=3']` to a dict of strings; each engine parses its own."""
    return parse_assignments(pairs, "parameter")
