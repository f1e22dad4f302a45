"""TSN's two ways of starting a network on little data (Wang et al. 2016, section 3.2).

Cross-modality initialisation starts a flow or RGB-difference network from RGB ImageNet weights;
partial BN stops every BN layer but the first from re-estimating statistics on a small dataset.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


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


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BN layers in registration order (the first is the stem's)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def partial_bn(model: nn.Module) -> RemovableHandle:
    """TSN's partial BN: from now on every BN layer but the first keeps its running statistics
    and its scale and shift fixed while `model` trains; the first adapts to the new modality.

    The affine parameters stop requiring gradients at once (as TSN's code does); the statistics are
    frozen by a forward pre-hook, so `model.train()` does not undo it. Remove the returned handle
    and set `requires_grad` back to turn it off.
    """
    for bn in batch_norms(model)[1:]:
        for parameter in bn.parameters():
            parameter.requires_grad_(False)
    return model.register_forward_pre_hook(_freeze_later_batch_norms)


def _freeze_later_batch_norms(model: nn.Module, args: object) -> None:
    # A module-level function, not a closure over the layers, so that copies of the model
    # (copy.deepcopy, pickling) freeze their own layers.
    if model.training:
        for bn in batch_norms(model)[1:]:
            bn.eval()
