"""Helpers for the network tests: small inputs, and BN layers with statistics worth checking."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from flowkit.models.init import batch_norms


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
