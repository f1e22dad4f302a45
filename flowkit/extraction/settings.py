"""What an extraction run computes and stores: `ExtractSettings`, built and checked from options.

Every value a user can type is range-checked here (with flowkit.params' checks), before any file is opened, so a bad option
is one line and exit 2 instead of a run that hangs or stores meaningless codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from flowkit.devices import runs_on_cpu
from flowkit.errors import FlowkitError
from flowkit.flow.compile_cache import break_even_pixels, tvl1_is_warm, worth_compiling
from flowkit.flow.engines import (
    FlowEngine,
    auto_backend,
    create_engine,
    engine_class,
    has_cxx_compiler,
    recorded_params,
    resolve_backend,
    resolve_params,
)
from flowkit.flow.quantize import DEFAULT_BOUND
from flowkit.params import check_count, check_positive
from flowkit.store.format import ENCODING_JPEG, FLOW_ENCODINGS, FORMAT_VERSION
from flowkit.store.staging import DEFAULT_COMPRESSION, DEFAULT_QUALITY
from flowkit.video import FrameSize, VideoFile, read_header

DEFAULT_SHORT_SIDE = 256
MAX_FPS = 1000.0  # beyond any camera's rate; resampling to it repeats every source frame


def frame_size(short_side: int | None = None, fixed: str | None = None, keep: bool = False) -> FrameSize:
    """The frame size from the three resize options (`--short-side`, `--size WxH`, `--no-resize`),
    of which at most one may be given; none means a short side of 256, TSN's."""
    if sum([short_side is not None, fixed is not None, keep]) > 1:
        raise FlowkitError("use only one of --short-side, --size and --no-resize")
    if fixed:
        size = FrameSize.parse(fixed)
        if size.width is None:
            raise FlowkitError(f"--size {fixed!r} is not WxH")
        return size
    if keep:
        return FrameSize.keep()
    size = FrameSize(short_side=short_side if short_side is not None else DEFAULT_SHORT_SIDE)
    size.validate()
    return size


def shard_bytes(megabytes: float) -> int:
    """`--shard-size` (MB, positive) in bytes."""
    check_positive("--shard-size", megabytes)
    return max(1, int(megabytes * 2**20))


@dataclass(frozen=True)
class ExtractSettings:
    """Everything that decides the stored values; a change to any of them means redoing a video."""

    algorithm: str = "tvl1"
    params: tuple[tuple[str, Any], ...] = ()
    engine: str = "auto"  # opencv, torch, or auto: the fastest (see flow.engines.resolve_backend)
    device: str = "auto"  # torch engine only; not fingerprinted: devices agree to float rounding
    batch_size: int | None = None  # pairs per torch engine call; results do not depend on it
    preset: str = "default"
    bound: float = DEFAULT_BOUND
    size: FrameSize = field(default_factory=FrameSize)
    fps: float | None = None
    step: int = 1
    backward: bool = False
    warp: bool = False  # also TSN's warped flow (camera motion removed); any engine can
    rgb: bool = True
    rgb_quality: int = DEFAULT_QUALITY
    flow_format: str = ENCODING_JPEG
    flow_quality: int = DEFAULT_QUALITY
    compression: int = DEFAULT_COMPRESSION  # raw flow's deflate level: lossless, not fingerprinted
    compile: bool | None = None  # torch engine: None decides from the job (`compiling_for`); not fingerprinted

    def validate(self) -> None:
        check_positive("--bound", self.bound)
        check_count("--step", self.step)
        check_positive("--fps", self.fps, MAX_FPS)
        if not 0 <= self.rgb_quality <= 100:
            raise FlowkitError(f"--rgb-quality must be 0..100, got {self.rgb_quality}")
        if not 0 <= self.flow_quality <= 100:
            raise FlowkitError(f"--flow-quality must be 0..100, got {self.flow_quality}")
        if self.flow_format not in FLOW_ENCODINGS:
            raise FlowkitError(
                f"--flow-format must be one of {', '.join(FLOW_ENCODINGS)}, not {self.flow_format!r}"
            )
        check_count("--batch-size", self.batch_size)
        if not 0 <= self.compression <= 9:
            raise FlowkitError(f"--compression must be 0..9, got {self.compression}")
        self.size.validate()

    @property
    def backend(self) -> str:
        return resolve_backend(self.algorithm, self.engine)

    def make_engine(self) -> FlowEngine:
        if self.backend == "torch":
            return engine_class(self.algorithm, "torch")(
                resolve_params(self.algorithm, dict(self.params), self.preset), device=self.device,
                batch_size=self.batch_size, compile=self.compile)
        return create_engine(self.algorithm, dict(self.params), self.backend, self.device, self.preset,
                             compile=self.compile)

    def job_pair_pixels(self, videos: Sequence[VideoFile], enough: float = float("inf")) -> float:
        """The job's work in pairs x pixels at the output size, from the videos' headers (read
        only until `enough`)."""
        total = 0.0
        for video in videos:
            header = read_header(video.path)
            width, height = self.size.target(header.width, header.height) if header.width else (0, 0)
            pairs = max(header.frames - 1, 0) // self.step * (2 if self.backward else 1)
            total += pairs * width * height
            if total >= enough:
                break
        return total

    def _repays_compiling(self, videos: Sequence[VideoFile]) -> bool:
        warm = tvl1_is_warm()
        return worth_compiling(self.job_pair_pixels(videos, break_even_pixels(warm)), warm)

    def choosing_engine(self, videos: Sequence[VideoFile]) -> ExtractSettings:
        """`--engine auto` made explicit for a job of `videos` (`flow.engines.auto_backend`)."""
        if self.engine != "auto":
            return self
        backend = auto_backend(self.algorithm, self.device,
                               runs_on_cpu(self.device) and self._repays_compiling(videos),
                               self.preset, dict(self.params))
        return replace(self, engine=backend)

    def compiling_for(self, videos: Sequence[VideoFile]) -> ExtractSettings:
        """These settings with torch.compile decided for a job of `videos`: on a CPU, compiled
        only when the job's pairs repay the compilation (less work needed when the kernels are
        already in the cache); on a GPU, compiled."""
        if self.compile is not None or self.backend != "torch":
            return self
        if not runs_on_cpu(self.device):
            return replace(self, compile=True)
        return replace(self, compile=has_cxx_compiler() and self._repays_compiling(videos))

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        """The settings as stored in the dataset and compared on resume (engine params resolved).

        `warp` is there only when on, so datasets made before it existed keep their settings.
        A dataset made without `--warp` and run again with it (or the other way round) has other
        settings: refused in one line unless `--force`, which redoes every video with warped flow.
        """
        fingerprint = {
            "algorithm": self.algorithm,
            "engine": self.backend,
            "params": recorded_params(self.algorithm, dict(self.params), self.preset),
            "bound": float(self.bound),
            "size": self.size.describe(),
            "fps": self.fps,
            "step": self.step,
            "backward": self.backward,
            "rgb": self.rgb,
            "rgb_quality": self.rgb_quality if self.rgb else None,
            "flow_format": self.flow_format,
            "flow_quality": self.flow_quality if self.flow_format == ENCODING_JPEG else None,
            "format_version": FORMAT_VERSION,
        }
        if self.warp:
            fingerprint["warp"] = True
        return fingerprint

    @classmethod
    def from_fingerprint(cls, stored: dict[str, Any], device: str = "auto") -> ExtractSettings:
        """The settings a dataset records (`fingerprint`), to make more of the same flow: what
        `flowkit predict` extracts new videos with."""
        try:
            return cls(algorithm=stored["algorithm"], params=tuple(sorted(stored["params"].items())),
                       engine=stored["engine"], device=device, bound=float(stored["bound"]),
                       size=FrameSize.parse(str(stored["size"])), fps=stored["fps"], step=int(stored["step"]),
                       backward=bool(stored["backward"]), warp=bool(stored.get("warp", False)),
                       rgb=bool(stored["rgb"]), rgb_quality=stored["rgb_quality"] or DEFAULT_QUALITY,
                       flow_format=stored["flow_format"], flow_quality=stored["flow_quality"] or DEFAULT_QUALITY)
        except (KeyError, TypeError, AttributeError) as error:
            raise FlowkitError(f"the recorded extraction settings are incomplete ({error})") from None

    def keeping_stored_engine(self, stored: dict[str, Any] | None) -> ExtractSettings:
        """`--engine auto` resumes with the engine the dataset was made with, not a different one."""
        if self.engine == "auto" and stored and stored.get("algorithm") == self.algorithm:
            engine = stored.get("engine")
            if engine in ("opencv", "torch"):
                return replace(self, engine=engine)
        return self
