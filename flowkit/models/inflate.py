"""Inflation (Carreira & Zisserman 2017): a 2D network's weights as the weights of its 3D twin.

Each k x k kernel is repeated N times along time and divided by N, so that a "boring video" (one
image repeated) gives the 3D network the 2D network's activations: ImageNet weights become a
video network's starting point. Works for any 2D/3D pair with the same module names: Inception-v1
-> I3D, ResNet -> ResNet-3D here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from ..errors import FlowkitError


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
