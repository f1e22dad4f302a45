"""What every image backbone of this package shares: five named stages and a small classifier.

A spatial stream is a backbone with 3 input channels, a temporal stream the same backbone with 2L
(L stacked flow fields, u and v). TSN and mid-level fusion take any backbone, and fusion cuts two
of them at the same stage, so stages are named by their output stride, not by family: stage
`convN` ends at stride 2**N, as conv1 ... conv5_x in the ResNet paper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import FlowkitError

STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")


def next_stage(stage: str) -> str:
    """The stage after `stage` (`conv5` has none)."""
    check_stage(stage)
    if stage == STAGES[-1]:
        raise FlowkitError(f"{stage} is the last stage")
    return STAGES[STAGES.index(stage) + 1]


def check_stage(stage: str) -> None:
    """Raise a FlowkitError naming the stages if `stage` is not one."""
    if stage not in STAGES:
        raise FlowkitError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")


class Backbone(nn.Module):
    """A 2D (or inflated 3D) network as stages `conv1` ... `conv5` and a head: pool, dropout, `fc`.

    Subclasses build their layers, then set `stage_layers` (the names of the submodules each
    stage runs, in order), `stage_channels` (each stage's output channels), `in_chans`,
    `spatial_dims` (2 for images, 3 for clips), `dropout` and `fc`.
    """

    stage_layers: dict[str, tuple[str, ...]]
    stage_channels: dict[str, int]
    in_chans: int
    spatial_dims: int = 2
    dropout: nn.Module
    fc: nn.Module

    def forward_features(self, x: Tensor, start: str = "conv1", end: str = "conv5") -> Tensor:
        """Run stages `start` ... `end` (both included) on `x`; the feature map, unpooled."""
        check_stage(start)
        check_stage(end)
        for stage in STAGES[STAGES.index(start) : STAGES.index(end) + 1]:
            for name in self.stage_layers[stage]:
                x = self.get_submodule(name)(x)
        return x

    def forward_head(self, features: Tensor) -> Tensor:
        """Class scores from a feature map: global average pool, dropout, `fc`."""
        pooled = features.mean(dim=tuple(range(2, features.dim())))
        return self.fc(self.dropout(pooled))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def num_features(self) -> int:
        """Channels of the last feature map, the classifier's input."""
        return self.stage_channels["conv5"]

    def example_input(
        self, batch_size: int = 1, size: int = 224, frames: int = 64
    ) -> tuple[Tensor, ...]:
        """Random arguments for `forward`, at the paper's input size by default.

        `frames` is used by 3D backbones only.
        """
        time = (frames,) if self.spatial_dims == 3 else ()
        return (torch.randn(batch_size, self.in_chans, *time, size, size),)


def init_weights(model: nn.Module) -> None:
    """torchvision's ResNet initialisation, used by every network here: He-normal (fan-out) convs,
    BN scale 1 and shift 0; Linear layers keep PyTorch's default."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
