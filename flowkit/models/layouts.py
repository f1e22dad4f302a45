"""Other projects' names for flowkit's networks: a `Layout` per project, `from_layout` to rename a
checkpoint to a model's keys, `find_layout` to tell which layout a checkpoint is in.

Layouts: torchvision's (flowkit's ResNets and video ResNets keep its names), torchvision's 2D
ResNet for a video ResNet to inflate (`torchvision-resnet`), piergiaj/pytorch-i3d's
InceptionI3d, yjxiong/tsn-pytorch's BN-Inception, and flowkit's own 2D Inception-v1 for S3D to
inflate (`inception-v1`). `flowkit.models.weights` reads the files and loads them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import FlowkitError
from .i3d import END_POINTS
from .registry import ModelInfo, info_of
from .s3d import TemporalSeparableConv

COUNTER = "num_batches_tracked"  # BN's batch counter: absent from checkpoints before PyTorch 0.4.1


# ---- other projects' layouts --------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How another project names a network's tensors.

    `rename(key, info)` gives their name of our state-dict key `key`. `conv_biases(key)`, for
    layouts whose convolutions have a bias followed by BN, names the bias of the convolution that
    our BN running mean `key` follows: it is folded into that mean, which gives the same outputs
    (BN subtracts the mean from the convolution's output, bias included). `own(key)`: our keys
    the layout has no counterpart for (S3D's temporal convolutions and gates, for a 2D
    Inception-v1); they keep the model's values, or those `start(model)` gives.
    """

    name: str
    network: str  # what the checkpoint holds, for messages
    rename: Callable[[str, ModelInfo], str] = field(default=lambda key, info: key)
    conv_biases: Callable[[str], str | None] = field(default=lambda key: None)
    own: Callable[[str], bool] = field(default=lambda key: False)
    start: Callable[[nn.Module], dict[str, Tensor]] = field(default=lambda model: {})

    @property
    def ours(self) -> bool:
        """Whether the layout names every tensor as flowkit does (nothing to convert)."""
        return self.name in ("flowkit", "torchvision")


def _pytorch_i3d_name(key: str, info: ModelInfo) -> str:
    """piergiaj/pytorch-i3d's InceptionI3d name of an I3D key: `features.mixed3b.b0.conv.weight`
    is `Mixed_3b.b0.conv3d.weight`, the classifier `logits.conv3d`."""
    classifier = f"{info.classifier}."
    if key.startswith(classifier):
        return "logits.conv3d." + key[len(classifier) :]
    _, name, rest = key.split(".", 2)  # features.<name>.<rest>
    return f"{END_POINTS[name]}.{rest.replace('conv.', 'conv3d.')}"


# tsn-pytorch's BN-Inception (tf_model_zoo/bninception/bn_inception.yaml, built by pytorch_load.py
# and layer_factory.py): one Caffe layer id per convolution, `<id>_bn` for its BN.
_TSN_STEM = {"conv1": "conv1_7x7_s2", "conv2_reduce": "conv2_3x3_reduce", "conv2": "conv2_3x3"}
_TSN_BRANCHES = {
    "branch1x1": "1x1",
    "branch3x3.0": "3x3_reduce",
    "branch3x3.1": "3x3",
    "branch_double.0": "double_3x3_reduce",
    "branch_double.1": "double_3x3_1",
    "branch_double.2": "double_3x3_2",
    "branch_pool.1": "pool_proj",
}


def _tsn_pytorch_split(key: str) -> tuple[str, str, str]:
    """(Caffe layer id, `conv` or `bn`, tensor name) of a BNInception key below `features.`."""
    *path, unit, tensor = key.split(".")[1:]
    if len(path) == 1:
        return _TSN_STEM[path[0]], unit, tensor
    block, *branch = path
    return f"{block}_{_TSN_BRANCHES['.'.join(branch)]}", unit, tensor


def _tsn_pytorch_name(key: str, info: ModelInfo) -> str:
    """tsn-pytorch's name of a BNInception key: `features.inception_3a.branch3x3.0.conv.weight`
    is `inception_3a_3x3_reduce.weight`, its BN's `inception_3a_3x3_reduce_bn.weight`."""
    if key.startswith(f"{info.classifier}."):
        return "fc." + key.split(".")[-1]
    layer, unit, tensor = _tsn_pytorch_split(key)
    return f"{layer}.{tensor}" if unit == "conv" else f"{layer}_bn.{tensor}"


def _tsn_pytorch_conv_bias(key: str) -> str | None:
    if not key.startswith("features.") or not key.endswith(".bn.running_mean"):
        return None
    return f"{_tsn_pytorch_split(key)[0]}.bias"


def _torchvision_resnet_name(key: str, info: ModelInfo) -> str:
    """torchvision's 2D ResNet name of a video ResNet key (R3D and MC3 inflate from it):
    `stem.0` is `conv1`, `stem.1` `bn1`, a block's `conv1.0` `conv1` and `conv1.1` `bn1`."""
    key = re.sub(r"^stem\.([01])\.", lambda m: ("conv1.", "bn1.")[int(m[1])], key)
    return re.sub(r"\.conv([12])\.([01])\.", lambda m: f".{('conv', 'bn')[int(m[2])]}{m[1]}.", key)


# S3D from flowkit's 2D Inception-v1 (i3d.py's names): the spatial half of each separable
# convolution takes the 2D unit, the temporal half starts as the identity (`identity_temporal`),
# S3D-G's gates keep the model's fresh values. Keys: s3d.py's (torchvision's) Sequential indices.
_S3D_UNITS = {"0.0": "conv1a", "2": "conv2b", "3.0": "conv2c"}
_S3D_BLOCKS = dict(zip((5, 6, 8, 9, 10, 11, 12, 14, 15), ("mixed3b", "mixed3c", "mixed4b",
                       "mixed4c", "mixed4d", "mixed4e", "mixed4f", "mixed5b", "mixed5c"),
                       strict=True))  # fmt: skip
_S3D_BRANCHES = {"branch0": "b0", "branch1.0": "b1a", "branch1.1.0": "b1b", "branch2.0": "b2a",
                 "branch2.1.0": "b2b", "branch3.1": "b3b"}  # fmt: skip
_S3D_OWN = re.compile(r"^features\.[03]\.[12]\.|\.branch[12]\.1\.1\.|\.gates\.")


def _inception_v1_name(key: str, info: ModelInfo) -> str:
    """The 2D Inception-v1's name of an S3D key with a 2D counterpart: `features.0.0.0.weight`
    is `features.conv1a.conv.weight`, `features.5.branch1.1.0.1.bias`
    `features.mixed3b.b1b.bn.bias`, the classifier `fc`."""
    if key.startswith(f"{info.classifier}."):
        return "fc." + key.rsplit(".", 1)[1]
    path, unit, tensor = key.rsplit(".", 2)  # unit: 0 the convolution, 1 its BN
    _, index, *rest = path.split(".")
    if int(index) in _S3D_BLOCKS:
        name = f"{_S3D_BLOCKS[int(index)]}.{_S3D_BRANCHES['.'.join(rest)]}"
    else:
        name = _S3D_UNITS[".".join((index, *rest))]
    return f"features.{name}.{('conv', 'bn')[int(unit)]}.{tensor}"


def identity_temporal(model: nn.Module) -> dict[str, Tensor]:
    """The temporal half (k x 1 x 1 convolution, BN, ReLU) of each separable convolution of an
    S3D as the identity: kernel 1 at the centre tap from each channel to itself and 0 elsewhere,
    BN of scale 1, shift 0, mean 0 and variance 1 - eps, so that in eval mode it gives its input
    (non-negative: it follows a ReLU) back exactly, at every time step, clip ends included
    (zero padding meets only zero taps) and at time stride 2 (it keeps every other step).

    torchvision's s3d.py has no inflation (its weights come trained on Kinetics) and no rule of
    the S3D paper is followed here; IBM/action-recognition-pytorch's `inflate_from_2d_model`
    leaves these kernels random. A centre tap is Girdhar et al.'s "center"
    inflation (Detect-and-Track, CVPR 2018) of the temporal factor alone: the start that keeps
    the boring-video identity exact. The choice is flowkit's."""
    state: dict[str, Tensor] = {}
    for name, module in model.named_modules():
        if not isinstance(module, TemporalSeparableConv):
            continue
        conv, bn = module[1][0], module[1][1]
        kernel = torch.zeros_like(conv.weight)
        channels = torch.arange(conv.out_channels)
        kernel[channels, channels, conv.kernel_size[0] // 2] = 1.0
        unit = f"{name}.1"
        state[f"{unit}.0.weight"] = kernel
        state[f"{unit}.1.weight"] = torch.ones_like(bn.weight)
        state[f"{unit}.1.bias"] = torch.zeros_like(bn.bias)
        state[f"{unit}.1.running_mean"] = torch.zeros_like(bn.running_mean)
        state[f"{unit}.1.running_var"] = torch.full_like(bn.running_var, 1.0 - bn.eps)
        state[f"{unit}.1.{COUNTER}"] = torch.zeros_like(bn.num_batches_tracked)
    return state


LAYOUTS = {
    "flowkit": Layout("flowkit", "flowkit"),
    "torchvision": Layout("torchvision", "torchvision"),  # flowkit's ResNets keep its names
    "torchvision-resnet": Layout(
        "torchvision-resnet", "torchvision 2D ResNet", _torchvision_resnet_name
    ),
    "pytorch-i3d": Layout("pytorch-i3d", "pytorch-i3d InceptionI3d", _pytorch_i3d_name),
    "tsn-pytorch": Layout(
        "tsn-pytorch", "tsn-pytorch BNInception", _tsn_pytorch_name, _tsn_pytorch_conv_bias
    ),
    "inception-v1": Layout(
        "inception-v1", "flowkit 2D Inception-v1", _inception_v1_name,
        own=lambda key: _S3D_OWN.search(key) is not None, start=identity_temporal,
    ),
}


def from_layout(
    state: Mapping[str, Tensor], model: nn.Module, layout: Layout, label: str
) -> dict[str, Tensor]:
    """`state`, in `layout`, renamed to `model`'s keys; every tensor of both must be matched
    (BN counters may be absent), else a one-line FlowkitError in their names. Keys the layout
    has no counterpart for (`layout.own`) get `layout.start`'s tensors or the model's own."""
    info = info_of(model)
    reference = model.state_dict()
    names = {layout.rename(key, info): key for key in reference if not layout.own(key)}
    biases = {key: bias for key in names.values() if (bias := layout.conv_biases(key)) is not None}
    required = {k for k, ours in names.items() if not ours.endswith(COUNTER)} | set(biases.values())
    missing = sorted(required - state.keys())
    unexpected = sorted(state.keys() - names.keys() - set(biases.values()))
    if missing or unexpected:
        raise FlowkitError(
            f"{label} is not a {layout.network} state dict: keys " + key_counts(missing, unexpected)
        )
    converted = {ours: state[theirs] for theirs, ours in names.items() if theirs in state}
    for key, bias in biases.items():
        converted[key] = converted[key] - state[bias]
    own = {key: value for key, value in reference.items() if layout.own(key)}
    return {**converted, **own, **layout.start(model)}


def find_layout(state: Mapping[str, Tensor], model: nn.Module, label: str) -> Layout:
    """The layout, among flowkit's and those the model's metadata lists, whose name for the
    model's first convolution the checkpoint has."""
    info = info_of(model)
    stem = f"{info.first_conv}.weight"
    layouts = [LAYOUTS["flowkit"], *(LAYOUTS[name] for name in info.layouts)]
    for layout in layouts:
        if layout.rename(stem, info) in state:
            return layout
    names: dict[str, list[str]] = {}
    for layout in layouts:
        names.setdefault(layout.rename(stem, info), []).append(layout.name)
    tried = ", ".join(f"{name} ({', '.join(kinds)})" for name, kinds in names.items())
    raise FlowkitError(
        f"{label} is in no checkpoint layout {info.name} reads: it has no first convolution {tried}"
    )




def key_counts(missing: Sequence[str], unexpected: Sequence[str]) -> str:
    """`N missing (first K), M unexpected (first L)`, for one-line messages."""
    parts = [f"{len(missing)} missing (first {missing[0]})" if missing else ""]
    parts += [f"{len(unexpected)} unexpected (first {unexpected[0]})" if unexpected else ""]
    return ", ".join(p for p in parts if p)
