"""Every network by name, with what it expects: `create_model("i3d", num_classes=101, in_chans=2)`.

Each model module registers its builders with `@register_model(ModelInfo(...))`, as torchvision's
`register_model` and timm's `register_model` + `default_cfgs` do; this module imports none of
them (`flowkit.models` imports them all). A model built by a registered builder carries its
`ModelInfo` (`info_of(model)`), which `flowkit.models.weights` reads to load checkpoints and
`reset_classifier` to find the classifier. The tests walk `list_models()`, so a model registered
here gets the shape, gradient, train/eval, save/load and parameter-count tests for free.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from torch import Tensor, nn

from ..errors import FlowkitError

VALUES = ("imagenet", "unit", "caffe", "hara_kinetics", "mmaction_c3d", "kinetics", "x3d")  # the names of flowkit.data.values' RGB modes


@dataclass(frozen=True)
class ModelInfo:
    """What a registered network is and expects, at its builder's defaults.

    `channels`: input channels, one per argument of `forward` (RGB and flow for two-stream
    networks); `frames`: the time extent a 3D network convolves (1 for 2D networks, TSN and
    mid-level fusion included, which take several 2D snippets); `size`: the paper's height and
    width. `values`: the RGB values its weights expect, a mode of `flowkit.data.values`
    (`imagenet`: ImageNet mean/std; `unit`: [-1, 1]; `caffe`: BGR 0-255 minus [104, 117, 128];
    `hara_kinetics`: Hara's Kinetics mean/std; `mmaction_c3d`: RGB 0-255 minus [104, 117, 128];
    `kinetics`: torchvision's Kinetics mean/std; `x3d`: pytorchvideo's 0.45/0.225).
    `first_conv` and `classifier`: module names (None for two-tower networks, which have one of
    each per tower); `other_stems`: the other convolutions that take the input (SlowFast's Fast
    pathway stem), which cross-modality initialisation treats as `first_conv`. `params`: the
    parameter count. `layouts`: the other projects' checkpoint
    layouts `flowkit.models.weights` converts for it. `backbone`: for a wrapper whose weights are
    those of one inner registered network (TSN), that submodule's name.
    """

    name: str
    summary: str
    channels: tuple[int, ...]
    frames: int
    size: int
    values: str
    first_conv: str | None
    classifier: str | None
    params: int
    paper: str
    layouts: tuple[str, ...] = ()
    backbone: str | None = None
    other_stems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.values not in VALUES:
            raise ValueError(f"{self.name}: values must be one of {VALUES}, not {self.values!r}")

    @property
    def dims(self) -> int:
        """2 for image networks, 3 for clip networks."""
        return 3 if self.frames > 1 else 2

    @property
    def stems(self) -> tuple[str, ...]:
        """Every convolution that takes the input: `first_conv`, then `other_stems`."""
        return () if self.first_conv is None else (self.first_conv, *self.other_stems)


_MODELS: dict[str, tuple[Callable[..., nn.Module], ModelInfo]] = {}

P = ParamSpec("P")
M = TypeVar("M", bound=nn.Module)


def register_model(info: ModelInfo) -> Callable[[Callable[P, M]], Callable[P, M]]:
    """Decorator: register a builder under `info.name`; what it builds carries `info`."""

    def register(builder: Callable[P, M]) -> Callable[P, M]:
        if info.name in _MODELS:
            raise ValueError(f"model {info.name!r} is registered twice")

        @functools.wraps(builder)
        def build(*args: P.args, **kwargs: P.kwargs) -> M:
            model = builder(*args, **kwargs)
            model.model_info = info
            if info.dims == 3 and len(info.channels) == 1:
                model.register_forward_pre_hook(check_clip_input)
            return model

        _MODELS[info.name] = (build, info)
        return build

    return register


def check_clip_input(model: nn.Module, args: tuple[Any, ...]) -> None:
    """Before a one-input clip network runs: its input is (N, C, T, H, W) clips (SlowFast: or a
    list of them) of the channels it was built for (`in_chans`, else what its first convolution
    takes: MotionNet's stacks frames as channels), else a one-line FlowkitError
    naming the clip it expects. Registered on every such network its builder makes; the
    networks check their own extents (C3D's fc6, T3D's and S3D's smallest clip, SlowFast's
    frame multiple)."""
    info: ModelInfo = model.model_info
    channels = getattr(model, "in_chans", None)  # what the network was built for, else its stem's
    if not isinstance(channels, int):
        channels = model.get_submodule(info.first_conv).in_channels if info.first_conv else info.channels[0]
    clips = args[0] if args and isinstance(args[0], list | tuple) else args[:1]
    if len(args) != 1 or not all(isinstance(x, Tensor) and x.dim() == 5 and x.shape[1] == channels for x in clips):
        got = ", ".join(str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__ for x in clips)
        raise FlowkitError(
            f"{info.name} takes clips (N, C, T, H, W) of {channels} channels, not {got or 'no input'} "
            f"({info.frames} frames of {info.size}x{info.size} in the paper)"
        )


def list_models() -> list[str]:
    """The names `create_model` knows, in registration order."""
    return list(_MODELS)


def model_info(name: str) -> ModelInfo:
    """The metadata of the model `name`."""
    _check_name(name)
    return _MODELS[name][1]


def info_of(model: nn.Module) -> ModelInfo:
    """The metadata of a model built by a registered builder."""
    info = getattr(model, "model_info", None)
    if not isinstance(info, ModelInfo):
        raise FlowkitError(
            f"this {type(model).__name__} was not built by a registered builder "
            "(create_model or a builder of flowkit.models), so its metadata is unknown"
        )
    return info


def create_model(
    name: str, num_classes: int | None = None, in_chans: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build the model `name`; `num_classes` and `in_chans` default to the builder's (the paper's:
    ImageNet's 1000 for 2D backbones, Kinetics' 400 for 3D networks, UCF101's 101 for TSN and
    fusion). `in_chans` applies to single-input networks; TSN takes `modality` instead, the
    two-stream networks `flow_length`. Other keyword arguments go to the builder."""
    _check_name(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    return _MODELS[name][0](**kwargs)


def reset_classifier(model: nn.Module, num_classes: int) -> None:
    """Replace the model's classifier (named by its metadata) by a fresh one for `num_classes`,
    of the same kind (Linear, or I3D's 1x1x1 convolution), with PyTorch's default initialisation."""
    info = info_of(model)
    if info.backbone is not None:
        reset_classifier(model.get_submodule(info.backbone), num_classes)
        return
    if info.classifier is None:
        raise FlowkitError(f"{info.name} has one classifier per tower: reset each tower's")
    old = model.get_submodule(info.classifier)
    like = {"device": old.weight.device, "dtype": old.weight.dtype}
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, old.bias is not None, **like)
    elif isinstance(old, nn.Conv2d | nn.Conv3d):
        new = type(old)(old.in_channels, num_classes, old.kernel_size, bias=old.bias is not None,
                        **like)
    else:
        raise FlowkitError(f"{info.name}'s classifier is a {type(old).__name__}, not a layer")
    parent, _, attribute = info.classifier.rpartition(".")
    setattr(model.get_submodule(parent), attribute, new)


def _check_name(name: str) -> None:
    if name not in _MODELS:
        raise FlowkitError(f"unknown model {name!r}; models are {', '.join(_MODELS)}")


def accepts(name: str, argument: str) -> bool:
    """Whether the builder of `name` takes the keyword `argument` (`dropout`, say)."""
    import inspect

    if name not in _MODELS:
        raise FlowkitError(f"unknown model {name!r}; models are {', '.join(_MODELS)}")
    return argument in inspect.signature(_MODELS[name][0]).parameters


def clip_networks() -> list[str]:
    """The registered one-input 3D networks: what a stream of clips can train (`--arch`)."""
    return [name for name, (_, info) in _MODELS.items() if info.dims == 3 and len(info.channels) == 1]
