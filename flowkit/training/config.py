"""Training settings: one dataclass, read from a pipeline TOML file, overridden from the command line.

    config = load_config("pipelines/ucf101-tsn.toml", {"batch_size": "32", "flow.lr": "0.01"})

Top-level keys hold what both streams share; the `[rgb]` and `[flow]` tables hold what each
stream trains with (the papers train them apart, with their own rates and schedules). Unknown
keys and values of the wrong type are one-line errors naming the file or option.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from flowkit.errors import FlowkitError
from flowkit.params import parse_assignments, parse_bool
from flowkit.training.precision import amp_mode

SNIPPET_ARCHITECTURES = ("twostream", "tsn")  # 2D networks on snippets; any clip network also goes
FUSIONS = ("late", "sum", "max", "concat", "conv", "bilinear")
STREAMS_WITH_SETTINGS = ("rgb", "flow")  # the tables of StreamConfig; rgbdiff trains with rgb's, warped_flow with flow's
EVERY_STREAM = ("epochs",)  # top-level overrides meaning that setting of every stream


@dataclass
class StreamConfig:
    """How one stream trains: SGD with momentum, a step schedule, gradient clipping, dropout."""

    lr: float = 0.001
    epochs: int = 80
    lr_steps: list[int] = field(default_factory=lambda: [30, 60])
    dropout: float = 0.8
    clip_grad: float = 20.0  # max global gradient norm; 0 turns clipping off
    init: str = ""  # a checkpoint to start from (2D ImageNet weights, I3D weights, a flowkit run)


SPEED_ONLY = ("channels_last", "compile")  # how fast a run goes, not what it computes


@dataclass
class TrainConfig:
    """Everything a run needs besides the data; defaults are TSN's (Wang et al. 2016) on UCF101."""

    arch: str = "tsn"  # twostream (Simonyan & Zisserman 2014), tsn, or a 3D clip network: i3d, ...
    fusion: str = "late"  # late, or a mid-level fusion trained jointly: sum, max, concat, conv, bilinear
    backbone: str = "bninception"  # 2D backbone of twostream and tsn (any 2D model of flowkit.models)
    segments: int = 3  # TSN's K (twostream: 1 snippet)
    flow_length: int = 5  # L flows per snippet (twostream: 10)
    stacking: str = "flow"  # flow or trajectory
    mean_subtraction: bool = False
    consensus: str = "avg"  # TSN's segmental consensus: avg, max, weighted
    partial_bn: bool = True  # TSN's partial BN (for fine-tuning pretrained weights; off from scratch)
    clip_length: int = 0  # 3D networks: frames per clip; 0: the network's (see `resolve`)
    clip_stride: int = 0  # 3D networks: frames between a clip's; 0: the network's
    crop_size: int = 0  # 0: the network's paper size (224 for the 2D backbones, 112 for C3D ...)
    flip: bool = True  # mirror half the training samples (off when left/right matters to the labels)
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_gamma: float = 0.1  # the rate is multiplied by this at each step
    test_snippets: int = 25  # 2D nets: snippets per test video (3D: every clip)
    test_crops: int = 1  # 1 (centre) or 10
    fusion_weights: list[float] = field(default_factory=lambda: [1.0, 1.5])  # RGB : flow
    fusion_average: str = "logits"  # late fusion averages logits (TSN) or softmax (two-stream paper)
    fusion_frames: int = 5  # mid-level fusion: time steps per sample
    workers: int = 2  # DataLoader worker processes
    seed: int = 0
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N
    amp: str = "auto"  # auto (fp16 on CUDA, float32 elsewhere), off, bf16, fp16 (training.precision)
    channels_last: bool = False  # the network and its batches channels-last (NHWC / NDHWC)
    compile: bool = False  # torch.compile the network for training
    eval_every: int = 1  # epochs between evaluations on the test split during training
    rgb: StreamConfig = field(default_factory=StreamConfig)
    flow: StreamConfig = field(default_factory=lambda: StreamConfig(
        lr=0.001, epochs=340, lr_steps=[190, 300], dropout=0.7))

    def validate(self) -> None:
        """Fill the settings left to the network (`resolve`), then check them all."""
        self.resolve()
        self.amp = amp_mode(self.amp)  # old runs saved a yes/no
        from flowkit.models.registry import clip_networks  # here: the models bring in torch

        checks = [
            (self.arch in SNIPPET_ARCHITECTURES or self.arch in clip_networks(),
             f"arch must be one of {', '.join(SNIPPET_ARCHITECTURES + tuple(clip_networks()))}, "
             f"not {self.arch!r}"),
            (self.fusion in FUSIONS, f"fusion must be one of {', '.join(FUSIONS)}, not {self.fusion!r}"),
            (self.fusion == "late" or self.arch in SNIPPET_ARCHITECTURES,
             "mid-level fusion joins two 2D towers: use arch twostream or tsn, or fusion late"),
            (self.stacking in ("flow", "trajectory"), f"stacking must be flow or trajectory, not {self.stacking!r}"),
            (self.test_crops in (1, 10), f"test_crops must be 1 or 10, not {self.test_crops}"),
            (len(self.fusion_weights) == 2, "fusion_weights takes two numbers: RGB and flow"),
            (self.fusion_average in ("logits", "softmax"), "fusion_average must be logits or softmax"),
            *((getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
              for name in ("segments", "flow_length", "batch_size", "crop_size", "test_snippets",
                           "fusion_frames", *(("clip_length", "clip_stride") if self.clips else ()))),
            (self.workers >= 0, f"workers must be 0 (load in the training process) or more, got {self.workers}"),
            (self.eval_every >= 0, f"eval_every must be 0 (at the end only) or more, got {self.eval_every}"),
            *((math.isfinite(getattr(self, name)) and getattr(self, name) >= 0,
               f"{name} must be a finite number >= 0, got {getattr(self, name)}")
              for name in ("momentum", "weight_decay", "lr_gamma")),
        ]
        for stream in STREAMS_WITH_SETTINGS:
            s = getattr(self, stream)
            checks += [(math.isfinite(s.lr) and s.lr > 0 and s.epochs >= 1,
                        f"{stream}.lr must be positive and {stream}.epochs at least 1"),
                       (math.isfinite(s.clip_grad) and s.clip_grad >= 0,
                        f"{stream}.clip_grad must be a finite number >= 0 (0: no clipping)"),
                       (0 <= s.dropout < 1, f"{stream}.dropout must be in [0, 1)")]
        for ok, message in checks:
            if not ok:
                raise FlowkitError(message)
        if self.clips:
            self._check_clip_fits()

    def resolve(self) -> None:
        """Settings left at 0, the network's, from the network: a 3D network's clip is its
        reference's (`flowkit.data.sampling.REFERENCE_CLIPS`: X3D's T x tau per size, SlowFast's
        Fast clip), else `ModelInfo.frames` consecutive frames; the crop is `ModelInfo.size` (of
        the backbone for 2D architectures). A setting given keeps its value."""
        from flowkit.data.sampling import REFERENCE_CLIPS, ClipSampling
        from flowkit.models.registry import clip_networks, model_info

        if self.arch not in SNIPPET_ARCHITECTURES and self.arch not in clip_networks():
            return  # validate names the architectures
        if self.crop_size == 0:
            self.crop_size = model_info(self.arch if self.clips else self.backbone).size
        if self.clips:
            reference = REFERENCE_CLIPS.get(self.arch, ClipSampling(model_info(self.arch).frames))
            self.clip_length = self.clip_length or reference.frames
            self.clip_stride = self.clip_stride or reference.stride

    def model_options(self, stream: str) -> dict[str, Any]:
        """The builder arguments of a clip network for `stream`: its input channels (3 RGB, 2
        flow), the stream's dropout, and the clip's extent for networks whose classifier fixes
        it (C3D's and the I3D paper's 3D-ConvNet's fc6)."""
        from flowkit.models.registry import accepts

        options: dict[str, Any] = {"in_chans": 3 if stream == "rgb" else 2}
        given = {"dropout": self.stream(stream).dropout, "frames": self.clip_length, "size": self.crop_size}
        options.update((key, value) for key, value in given.items() if accepts(self.arch, key))
        return options

    def _check_clip_fits(self) -> None:
        """The network takes the clip these settings read: built on the meta device (no memory,
        no work), it runs one, and its own one-line error says what it takes."""
        import torch

        from flowkit.models.registry import create_model

        try:
            with torch.device("meta"):
                model = create_model(self.arch, 2, **self.model_options("rgb")).eval()
                model(torch.empty(1, 3, self.clip_length, self.crop_size, self.crop_size))
        except FlowkitError as error:
            raise FlowkitError(f"clip_length {self.clip_length}, crop_size {self.crop_size} do not fit "
                               f"{self.arch}: {error}") from None

    @property
    def clips(self) -> bool:
        """Whether the streams are 3D networks on clips (else 2D networks on snippets)."""
        return self.arch not in SNIPPET_ARCHITECTURES

    def stream(self, stream: str) -> StreamConfig:
        """The settings `stream` trains with: flow's for flow and warped_flow, rgb's for rgb and rgbdiff."""
        return getattr(self, settings_key(stream))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def differences(self, saved: dict[str, Any]) -> list[str]:
        """The settings in which a run's saved `config` differs from these, as a resume compares
        them: settings of speed alone (`SPEED_ONLY`) may change; one the saved run predates
        counts only when it is off its default; an old run's yes/no `amp` reads as its mode."""
        defaults, mine = TrainConfig().to_dict(), self.to_dict()
        saved = {**saved, "amp": amp_mode(saved["amp"])} if "amp" in saved else saved
        return [key for key, value in mine.items() if key not in SPEED_ONLY
                and saved.get(key, defaults[key]) != value]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def settings_key(stream: str) -> str:
    """The table of settings a stream trains with: `flow` for flow and TSN's warped_flow (the
    paper trains it as the flow stream), `rgb` for rgb and rgbdiff."""
    return "flow" if stream in ("flow", "warped_flow") else "rgb"


def _convert(value: Any, kind: Any, where: str) -> Any:
    """A TOML value or command-line string as the field's type."""
    origin = getattr(kind, "__origin__", None)
    try:
        if origin is list:
            items = value.split(",") if isinstance(value, str) else list(value)
            inner = kind.__args__[0]
            return [inner(item) for item in items]
        if kind is bool:
            return parse_bool(value)
        if (kind is float and isinstance(value, bool)) or (kind is int and isinstance(value, float)):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise FlowkitError(f"{where}: {value!r} is not a {getattr(kind, '__name__', kind)}") from None


def _apply(target: Any, values: dict[str, Any], where: str) -> None:
    hints = get_type_hints(type(target))
    for key, value in values.items():
        if key not in hints:
            known = ", ".join(hints)
            raise FlowkitError(f"{where}: unknown setting {key!r} (settings: {known})")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise FlowkitError(f"{where}: {key} is a table of settings")
            _apply(getattr(target, key), value, f"{where} [{key}]")
        else:
            setattr(target, key, _convert(value, kind, f"{where}: {key}"))


def load_config(pipeline: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the pipeline file, then `overrides` (dotted keys: `flow.lr`; a top-level key
    of `EVERY_STREAM`, such as `epochs`, sets that setting of every stream)."""
    config = TrainConfig()
    if pipeline is not None:
        path = Path(pipeline)
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise FlowkitError(f"cannot read pipeline {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise FlowkitError(f"{path} is not valid TOML: {exc}") from None
        _apply(config, data, str(path))
    for key, value in _each_stream(overrides or {}):
        nested: dict[str, Any] = {}
        cursor = nested
        *parents, leaf = key.split(".")
        for part in parents:
            cursor = cursor.setdefault(part, {})
        cursor[leaf] = value
        _apply(config, nested, f"option {key}")
    config.validate()
    return config


def _each_stream(overrides: dict[str, Any]) -> list[tuple[str, Any]]:
    """The overrides in order, a key of `EVERY_STREAM` given once for each stream's table."""
    pairs: list[tuple[str, Any]] = []
    for key, value in overrides.items():
        if key in EVERY_STREAM:
            pairs += [(f"{stream}.{key}", value) for stream in STREAMS_WITH_SETTINGS]
        else:
            pairs.append((key, value))
    return pairs


def command_config(pipeline: str | Path | None, options: dict[str, Any],
                   assignments: Sequence[str] = ()) -> TrainConfig:
    """A command's settings: defaults, the pipeline file, its options (None: not given), then its
    `--set KEY=VALUE` assignments."""
    overrides = {key: value for key, value in options.items() if value is not None}
    overrides.update(parse_assignments(assignments))
    return load_config(pipeline, overrides)
