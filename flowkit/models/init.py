"""TSN's partial BN (Wang et al. 2016, section 3.2): on a small dataset, every BN layer but the
first keeps the statistics it was pretrained with. (Cross-modality initialisation, the other way
TSN starts a network on little data, is in `weights`.)
"""

from __future__ import annotations

from torch import nn
from torch.utils.hooks import RemovableHandle


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
