"""Every network by name: `create_model("i3d", num_classes=101, in_chans=2)`, as timm does.

The tests walk `list_models()`, so a model added here gets the shape, gradient, train/eval and
save/load tests for free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import FlowkitError
from .bninception import bninception
from .fusion import two_stream_fusion
from .i3d import i3d, i3d_two_stream, inception_v1
from .resnet import resnet18, resnet18_3d, resnet50, resnet50_3d
from .tiny import tiny
from .tsn import tsn

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "bninception": bninception,
    "tiny": tiny,
    "inception_v1": inception_v1,
    "resnet18_3d": resnet18_3d,
    "resnet50_3d": resnet50_3d,
    "i3d": i3d,
    "i3d_two_stream": i3d_two_stream,
    "tsn": tsn,
    "two_stream_fusion": two_stream_fusion,
}


def list_models() -> list[str]:
    """The names `create_model` knows."""
    return list(_MODELS)


def create_model(
    name: str, num_classes: int | None = None, in_chans: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build the model `name`; `num_classes` and `in_chans` default to the builder's (the paper's:
    ImageNet's 1000 for 2D backbones, Kinetics' 400 for 3D networks, UCF101's 101 for TSN and
    fusion). `in_chans` applies to single-input networks; TSN takes `modality` instead, the
    two-stream networks `flow_length`. Other keyword arguments go to the builder."""
    if name not in _MODELS:
        raise FlowkitError(f"unknown model {name!r}; models are {', '.join(_MODELS)}")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    return _MODELS[name](**kwargs)
