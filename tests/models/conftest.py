"""Helpers for the network tests: small inputs, and BN layers with statistics worth checking."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from flowkit.models.init import batch_norms
from flowkit.models.weights import inflate_state_dict


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _randomize_batch_norms(model: nn.Module) -> nn.Module:
    """Give every BN layer statistics and affine parameters far from the identity, so that a test
    comparing two networks sees a wrong statistic or a missing scale."""
    with torch.no_grad():
        for bn in batch_norms(model):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return model


@pytest.fixture
def randomize_batch_norms() -> Callable[[nn.Module], nn.Module]:
    return _randomize_batch_norms


def _features_on_a_boring_video(net2d: nn.Module, net3d: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """`net3d`, inflated from `net2d`, on one 16x16 image repeated 160 times; and `net2d` on the
    image. Both networks in eval mode; returns (2D features, 3D features)."""
    net3d.load_state_dict(inflate_state_dict(net2d.state_dict(), net3d))
    image = torch.randn(1, 3, 16, 16)
    video = image.unsqueeze(2).expand(-1, -1, 160, -1, -1)
    with torch.no_grad():
        return net2d.forward_features(image), net3d.forward_features(video)


@pytest.fixture
def features_on_a_boring_video() -> Callable[[nn.Module, nn.Module], tuple[torch.Tensor, torch.Tensor]]:
    """The paper's "boring video" test: the 2D and the inflated 3D network's features."""
    return _features_on_a_boring_video
