"""Flow engines: one interface over TV-L1 (OpenCV's, and flowkit's own in PyTorch), DIS, Farneback,
and MotionNet (a network fitted without ground truth, flowkit.flow.motionnet).

An engine takes two grayscale uint8 frames and returns the dense displacement field from the first
to the second, float32 of shape (H, W, 2) holding (u, v) in pixels; `calc_batch` takes many pairs.
`create_engine(algorithm, params, backend=..., device=...)` builds one. Each algorithm lists its
parameters (name, default, meaning) in one table shared by its backends, so the CLI, the stored
attributes and the docs all come from the same place.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from flowkit.devices import resolve_device
from flowkit.errors import FlowkitError
from flowkit.flow.tvl1_params import VARIANTS, TVL1Params
from flowkit.params import parse_assignments, parse_bool


@dataclass(frozen=True)
class Param:
    """One engine parameter: its name, default value, type and what it does."""

    name: str
    default: Any
    type: type
    help: str
    recorded_at_default: bool = True  # False: a later addition, left out of datasets' settings
    # at its default, so that datasets made before it existed still match on resume

    def parse(self, text: str) -> Any:
        """A command-line string to this parameter's type, with a one-line error if it does not fit."""
        try:
            value = parse_bool(text) if self.type is bool else self.type(text)
            if self.type is float and not math.isfinite(value):
                raise ValueError(f"{text!r} is not finite")
            return value
        except ValueError:
            raise FlowkitError(
                f"parameter {self.name}={text!r}: expected {self.type.__name__}"
            ) from None


class FlowEngine(ABC):
    """Dense optical flow between two grayscale uint8 frames of equal size."""

    algorithm: ClassVar[str]
    backend: ClassVar[str] = "opencv"
    PARAMS: ClassVar[tuple[Param, ...]]
    batch_size: int = 1  # pairs per `calc_batch` call that use the engine best
    device: str = "cpu"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = self.resolve(params)

    @classmethod
    def resolve(cls, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every parameter's value: the defaults overridden by `params` (strings are parsed)."""
        known = {p.name: p for p in cls.PARAMS}
        unknown = sorted(set(params or {}) - set(known))
        if unknown:
            raise FlowkitError(
                f"{cls.algorithm} has no parameter {', '.join(unknown)} "
                f"(it has: {', '.join(known)})"
            )
        merged = {p.name: p.default for p in cls.PARAMS}
        for name, value in (params or {}).items():
            param = known[name]
            merged[name] = param.parse(value) if isinstance(value, str) else param.type(value)
        return merged

    @abstractmethod
    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow from `prev` to `nxt`: float32 (H, W, 2), u (x, right) then v (y, down), in pixels."""

    def calc_batch(self, prevs: Sequence[np.ndarray], nexts: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Flow for many pairs of equal-sized frames; each result is what `calc` would give."""
        return [self.calc(prev, nxt) for prev, nxt in zip(prevs, nexts, strict=True)]

    def batch_size_for(self, height: int, width: int) -> int:
        """How many pairs of this size one `calc_batch` call should take."""
        return self.batch_size

    def set_threads(self, threads: int) -> None:
        """Threads this process's engine may use; workers share the cores between them."""
        cv2.setNumThreads(max(1, int(threads)))


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


class TVL1Engine(FlowEngine):
    """OpenCV-contrib's DualTVL1OpticalFlow (Zach et al. 2007, Wedel et al. 2009), its defaults."""

    algorithm = "tvl1"
    PARAMS = TVL1_PARAMS

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        p = self.params
        if p["variant"] != "optflow":
            raise FlowkitError(f"variant={p['variant']} (preset denseflow) is the torch engine's: OpenCV's CUDA "
                               "module is not in opencv-python; use --engine torch")
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
        self._dis = self._build(self.params)

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


class TorchTVL1Engine(FlowEngine):
    """flowkit's TV-L1 in PyTorch (flowkit.flow.tvl1_torch): OpenCV's algorithm, batched, any device.

    `device` is `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`. `compile` fuses the inner
    iterations with torch.compile; by default on whenever it can be (a C++ compiler for CPU); an
    extraction decides it from its pair count (`flowkit.flow.compile_cache.worth_compiling`).
    On a CPU each call runs on `threads` intra-op threads, 1 unless `set_threads` says more: a
    frame's tensors are too small to share, and with 2 threads an eager pair took 60x longer
    when another process kept a core busy (OpenMP's threads waiting for each other; BENCHMARKS.md).
    Parallelism comes from worker processes instead.
    """

    algorithm = "tvl1"
    backend = "torch"
    PARAMS = TVL1_PARAMS

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        device: str = "auto",
        compile: bool | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(params)
        from flowkit.flow import tvl1_torch

        p = self.params
        if p["gamma"] != 0:
            raise FlowkitError("the torch TV-L1 has no illumination term: use gamma=0 or --engine opencv")
        if p["median_filtering"] not in (0, 1, 3, 5):
            raise FlowkitError("median_filtering must be 1 (off), 3 or 5, as in OpenCV")
        if p["variant"] not in VARIANTS:
            raise FlowkitError(f"variant must be one of {', '.join(VARIANTS)}, not {p['variant']!r}")
        if p["nscales"] < 1 or p["warps"] < 1 or not 0 < p["scale_step"] < 1:
            raise FlowkitError("nscales and warps must be at least 1, scale_step within (0, 1)")
        resolved = resolve_device(device)
        self.device = str(resolved)
        if compile is None:
            compile = resolved.type == "cuda" or has_cxx_compiler()
        self.compiled = compile
        self.threads = 1
        self.fixed_batch = batch_size
        self.batch_size = batch_size or (1 if resolved.type == "cpu" else 32)
        solver_params = TVL1Params(
            tau=p["tau"], lambda_=p["lambda"], theta=p["theta"], nscales=p["nscales"],
            warps=p["warps"], epsilon=p["epsilon"], inner_iterations=p["inner_iterations"],
            outer_iterations=p["outer_iterations"], scale_step=p["scale_step"],
            median_filtering=p["median_filtering"], variant=p["variant"],
        )
        self.solver = tvl1_torch.TVL1Solver(solver_params, resolved, compile=compile)

    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        with self._own_threads():
            return self.solver.flow(prev, nxt).cpu().numpy()

    @contextlib.contextmanager
    def _own_threads(self) -> Iterator[None]:
        """torch's intra-op thread count set to this engine's for the call, then restored."""
        import torch

        before = torch.get_num_threads()
        if before != self.threads:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def batch_size_for(self, height: int, width: int) -> int:
        """On a CPU, one pair at a time for frames of 256 lines (measured fastest: the working set
        stays in cache), more for small frames, whose per-call overhead batching amortizes."""
        if self.fixed_batch or self.solver.device.type != "cpu":
            return self.batch_size
        return int(max(1, min(32, 2 ** np.floor(np.log2(65536 / (height * width))))))

    def calc_batch(self, prevs: Sequence[np.ndarray], nexts: Sequence[np.ndarray]) -> list[np.ndarray]:
        with self._own_threads():
            flows = self.solver.flow(np.stack(prevs), np.stack(nexts)).cpu().numpy()
        return list(flows)

    def set_threads(self, threads: int) -> None:
        super().set_threads(threads)
        self.threads = max(1, int(threads))


class MotionNetEngine(FlowEngine):
    """MotionNet (flowkit.flow.motionnet, Zhu et al. 2017): a network's flow, from a weights file
    written by `flowkit fit-motionnet` (a pair model: `--frames 2`). An untrained MotionNet's flow
    is meaningless, so `weights` is required; `weights_sha256` is filled in from the file, so a
    dataset's stored settings change when the weights do. A 3-channel model sees each gray frame
    three times (engines receive gray frames)."""

    algorithm = "motionnet"
    backend = "torch"
    PARAMS = (
        Param("weights", "", str, "MotionNet weights file (flowkit fit-motionnet); required"),
        Param("weights_sha256", "", str, "the weights file's SHA-256 (filled in; given, it must match)"),
    )

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        device: str = "auto",
        compile: bool | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(params)
        from flowkit.flow.motionnet_fit import load_motionnet

        resolved = resolve_device(device)
        self.device = str(resolved)
        self.net = load_motionnet(self.params["weights"], resolved)
        self.batch_size = batch_size or (1 if resolved.type == "cpu" else 16)

    @classmethod
    def resolve(cls, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """As the base, with the weights checked (they exist, are a pair MotionNet) and hashed."""
        from flowkit.flow.motionnet_fit import check_pair_weights

        p = super().resolve(params)
        p["weights_sha256"] = check_pair_weights(p["weights"], p["weights_sha256"])
        return p

    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self.calc_batch([prev], [nxt])[0]

    def calc_batch(self, prevs: Sequence[np.ndarray], nexts: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        from flowkit.flow.motionnet import normalize_frames

        pairs = np.stack([np.stack(prevs), np.stack(nexts)], axis=1)[..., None]  # (N, 2, H, W, 1)
        pairs = np.repeat(pairs, self.net.channels, axis=-1)
        with torch.inference_mode():
            x = normalize_frames(torch.from_numpy(pairs).to(self.device))
            flow = self.net.flow_pixels(x)[:, 0]  # (N, 2, H, W)
        return list(flow.permute(0, 2, 3, 1).float().cpu().numpy())

    def set_threads(self, threads: int) -> None:
        import torch

        super().set_threads(threads)
        torch.set_num_threads(max(1, int(threads)))


def has_cxx_compiler() -> bool:
    """Whether torch.compile can build CPU kernels here (it needs a C++ compiler)."""
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


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
    late = {p.name: p.default for p in engine_class(algorithm, "opencv").PARAMS if not p.recorded_at_default}
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
