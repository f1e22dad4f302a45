"""T3D (Diba et al. 2017): DenseNet3D-121 whose transitions are Temporal Transition Layers.

Built from the paper's Table 1 (arXiv 1711.08200, "T3D-121" column), since the public T3D code
(MohsenFayyaz89/T3D `models/DenseNet3D.py`) has a DenseNet3D with plain 1x1x1 transitions and no
TTL that runs. The table, at the paper's 32x224x224 clips (extents T x H x W):

- conv0: 7x7x7 convolution, 64 channels, stride 2 -> 16x112x112; pool0: 3x3x3 max pool, stride 2
  -> 8x56x56.
- Dense blocks of 6, 12, 24 and 16 layers, each layer BN-ReLU-Conv 1x1x1 (4 * growth = 128
  channels) then BN-ReLU-Conv 3x3x3 (growth 32 channels), its output concatenated to its input:
  DenseNet-121's blocks in 3D.
- TTL 1, 2, 3 between the blocks: three parallel BN-ReLU-Conv branches with kernels 1x1x1, 3x3x3
  and TxTx3x3 (temporal depth 6 in TTL 1, 4 in TTL 2 and 3: the table's bold temporal depths
  1, 3, 6 / 1, 3, 4), concatenated, then a 2x2x2 average pool: 8x56x56 -> 4x28x28 -> 2x14x14 ->
  1x7x7.
- BN-ReLU, global average pool, a linear classifier (400 Kinetics classes).

Choices the paper leaves open, stated here:

- TTL widths. The table gives kernels, not channels. A TTL after a block of C channels outputs
  C / 2, DenseNet-BC's compression (theta = 0.5) that DenseNet-121, and so DenseNet3D-121's
  transitions, use: the 1x1x1 branch (DenseNet's own transition) C / 4, the 3x3x3 and the
  temporally deep branch C / 8 each. So every dense block sees exactly DenseNet-121's widths
  (64, 128, 256, 512 in; 256, 512, 1024, 1024 out) and the TTL changes only what a transition
  sees in time; equal thirds would not divide 128, 256 or 512.
- Not rekon/T3D-keras's port (`T3D_keras.py` `_TTL`: 1x3x3, 3x3x3, 4x3x3 of 128 channels in
  every TTL, followed by a plain transition), which departs from the table.
- Each branch has its own BN-ReLU (the table's "each conv is BN-ReLU-Conv").
- An even temporal kernel (6 or 4) is padded "same" (PyTorch pads one more frame after than
  before), the other kernels symmetrically, so the branches keep the extent and concatenate.
- Convolutions have no bias (DenseNet's); conv0 is padded 3, pool0 1 (torchvision DenseNet's).

Parameter count at 400 classes, from this table with exact arithmetic (tests/models/test_t3d.py
writes every term): conv0 3 * 64 * 343 = 65,856 and norm0 128; dense blocks 1-4 (a layer of
input c: 2c + 128c + 256 + 128 * 32 * 27) 777,408 + 1,804,416 + 4,607,232 + 3,337,728; TTL 1-3
(input C: 3 * 2C for the BNs + C * C/4 + C * C/8 * 27 + C * C/8 * 9d, d = 6, 4, 4) 681,472 +
2,132,992 + 8,525,824; norm5 2,048; fc 1024 * 400 + 400 = 410,000: 22,345,104 in all
(DenseNet3D-121, whose transitions are BN-ReLU-Conv 1x1x1 to C/2, has 11,696,528).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import FlowkitError
from .backbone import Backbone, init_weights
from .registry import ModelInfo, register_model

_PAPER = (
    "Diba, Fayyaz, Sharma, Karami, Arzani, Yousefzadeh & Van Gool: Temporal 3D ConvNets: New "
    "Architecture and Transfer Learning for Video Classification (arXiv 1711.08200, 2017)"
)
BLOCKS = (6, 12, 24, 16)  # DenseNet-121's dense blocks
GROWTH = 32
BOTTLENECK = 4 * GROWTH
STEM = 64
TTL_DEPTHS = (6, 4, 4)  # Table 1: the temporally deep branch of TTL 1, 2 and 3


def _bn_relu_conv(cin: int, cout: int, kernel: tuple[int, int, int]) -> nn.Sequential:
    """BN-ReLU-Conv keeping the extent ("same"); an even temporal kernel gets one zero frame
    more after than before, as PyTorch's padding="same" (which would copy the input each call)."""
    layers: list[nn.Module] = [nn.BatchNorm3d(cin), nn.ReLU(inplace=True)]
    time, height, width = kernel
    padding = (time // 2, height // 2, width // 2)
    if time % 2 == 0:
        layers.append(nn.ConstantPad3d((0, 0, 0, 0, (time - 1) // 2, time // 2), 0.0))
        padding = (0, height // 2, width // 2)
    layers.append(nn.Conv3d(cin, cout, kernel, padding=padding, bias=False))
    return nn.Sequential(*layers)


class DenseLayer(nn.Module):
    """BN-ReLU-Conv 1x1x1 to 4k channels, BN-ReLU-Conv 3x3x3 to k; appended to the input."""

    def __init__(self, cin: int, growth: int = GROWTH, bottleneck: int = BOTTLENECK):
        super().__init__()
        self.bottleneck = _bn_relu_conv(cin, bottleneck, (1, 1, 1))
        self.conv = _bn_relu_conv(bottleneck, growth, (3, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv(self.bottleneck(x))], 1)


class DenseBlock(nn.Sequential):
    """`layers` dense layers: `cin + layers * growth` channels out."""

    def __init__(self, cin: int, layers: int, growth: int = GROWTH):
        super().__init__(*(DenseLayer(cin + i * growth, growth) for i in range(layers)))
        self.out_channels = cin + layers * growth


class TemporalTransition(nn.Module):
    """T3D's TTL: BN-ReLU-Conv branches 1x1x1, 3x3x3 and `depth`x3x3 of `widths` channels,
    concatenated, then a 2x2x2 average pool (halving time and space)."""

    def __init__(self, cin: int, depth: int, widths: tuple[int, int, int]):
        super().__init__()
        kernels = ((1, 1, 1), (3, 3, 3), (depth, 3, 3))
        self.branches = nn.ModuleList(
            _bn_relu_conv(cin, width, kernel) for width, kernel in zip(widths, kernels, strict=True)
        )
        self.pool = nn.AvgPool3d(2, 2)
        self.out_channels = sum(widths)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(torch.cat([branch(x) for branch in self.branches], 1))


def ttl_widths(channels: int) -> tuple[int, int, int]:
    """The TTL branch widths chosen for `channels` in: C/4, C/8, C/8 (C/2 in all, DenseNet-BC's
    compression; the module docstring says why)."""
    return channels // 4, channels // 8, channels // 8


def _halved(n: int) -> int:
    """Extent after a stride-2 stage padded to keep ceil(n / 2) (conv0, pool0)."""
    return (n + 1) // 2


def smallest_extent() -> int:
    """The fewest frames (and pixels) T3D takes: conv0 and pool0 halve (rounding up), the three
    TTL pools halve (rounding down) and must leave at least one."""
    n = 1
    while _halved(_halved(n)) < 2 ** len(TTL_DEPTHS):
        n += 1
    return n


class T3D(Backbone):
    """Temporal 3D ConvNet (T3D-121) of Diba et al.: Table 1 of arXiv 1711.08200."""

    def __init__(self, *, num_classes: int = 400, in_chans: int = 3, dropout: float = 0.0):
        super().__init__()
        self.in_chans = in_chans
        self.spatial_dims = 3
        self.conv0 = nn.Conv3d(in_chans, STEM, 7, 2, 3, bias=False)
        self.norm0 = nn.BatchNorm3d(STEM)
        self.relu0 = nn.ReLU(inplace=True)
        self.pool0 = nn.MaxPool3d(3, 2, 1)
        channels = STEM
        stage_channels = {"conv1": STEM}
        for index, layers in enumerate(BLOCKS, 1):
            block = DenseBlock(channels, layers)
            self.add_module(f"denseblock{index}", block)
            channels = block.out_channels
            stage_channels[f"conv{index + 1}"] = channels
            if index < len(BLOCKS):
                ttl = TemporalTransition(channels, TTL_DEPTHS[index - 1], ttl_widths(channels))
                self.add_module(f"ttl{index}", ttl)
                channels = ttl.out_channels
        self.norm5 = nn.BatchNorm3d(channels)
        self.relu5 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)  # the paper names none: 0 by default
        self.fc = nn.Linear(channels, num_classes)
        self.stage_layers = {
            "conv1": ("conv0", "norm0", "relu0"),
            "conv2": ("pool0", "denseblock1"),
            "conv3": ("ttl1", "denseblock2"),
            "conv4": ("ttl2", "denseblock3"),
            "conv5": ("ttl3", "denseblock4", "norm5", "relu5"),
        }
        self.stage_channels = stage_channels
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        least = smallest_extent()
        if x.dim() != 5 or x.shape[1] != self.in_chans or min(x.shape[2:]) < least:
            raise FlowkitError(
                f"T3D takes clips (N, C, T, H, W) of {self.in_chans} channels and at least "
                f"{least} frames of {least}x{least} (the paper's: 32 of 224x224), "
                f"not {tuple(x.shape)}"
            )
        return super().forward(x)

    def example_input(
        self, batch_size: int = 1, size: int = 224, frames: int = 32
    ) -> tuple[Tensor, ...]:
        """A random clip, 32 frames of 224x224 by default (the paper's T3D input)."""
        return super().example_input(batch_size, size, frames)


# 22,345,104 parameters at 400 classes: the arithmetic from the paper's Table 1 is in the module
# docstring and tests/models/test_t3d.py (no reference code to count: MohsenFayyaz89/T3D has no
# TTL).
@register_model(ModelInfo(
    name="t3d", summary="T3D-121: DenseNet3D-121 with temporal transition layers",
    channels=(3,), frames=32, size=224, values="imagenet", first_conv="conv0", classifier="fc",
    params=22_345_104, paper=_PAPER,
))  # fmt: skip
def t3d(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.0) -> T3D:
    """T3D-121 of Diba et al.: 22.3M parameters (counted from the paper's layer table)."""
    return T3D(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
