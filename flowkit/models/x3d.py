"""X3D (Feichtenhofer 2020): a ResNet of depthwise 3x3x3 bottlenecks, expanded from a tiny base
along width, depth, frame count and resolution; XS, S, M and L.

Exact to pytorchvideo's `create_x3d` (`pytorchvideo/models/x3d.py`, facebookresearch/pytorchvideo
commit f3142bb) with the settings of its hub builders (`pytorchvideo/models/hub/x3d.py`): width
factor 2.0, bottleneck factor 2.25, depth factor 2.2 (L: 5.0), SE of ratio 1/16 in every other
block, Swish after the depthwise convolution, a 2048-wide `lin_5` head without BN, dropout 0.5,
no output activation. The module names are pytorchvideo's, so its Kinetics-400 checkpoints
(`X3D_XS.pyth` ... `X3D_L.pyth`, their "model_state") load as they are; their weights expect
`x3d` values. Following the code, the stem's spatial convolution is named `conv_t` and its
depthwise temporal one `conv_xy` (pytorchvideo's `create_x3d_stem` passes them that way round).
The head's average pool covers the feature map of the hub's input size and is cut to the feature
map for smaller inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import ModelInfo, register_model

_PAPER = "Feichtenhofer: X3D: Expanding Architectures for Efficient Video Recognition (CVPR 2020)"
_STEM_WIDTH = 12  # before the width factor
_BASE_DEPTHS = (1, 2, 5, 3)
_WIDTH_FACTOR = 2.0
_BOTTLENECK_FACTOR = 2.25
_SE_RATIO = 0.0625
_HEAD_WIDTH = 2048


def round_width(width: float, multiplier: float, divisor: int = 8) -> int:
    """Channels after a width multiplier: nearest multiple of 8 (at least 8), one more step
    when rounding lost over 10 % (pytorchvideo's `round_width`)."""
    width *= multiplier
    rounded = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * width else rounded


def bn(channels: int) -> nn.BatchNorm3d:
    """pytorchvideo's 3D batch norm (eps 1e-5, momentum 0.1), for X3D and SlowFast."""
    return nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the global mean: 1x1x1 conv, ReLU, 1x1x1 conv, sigmoid (fvcore's)."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(channels, reduced, 1), nn.ReLU(), nn.Conv3d(reduced, channels, 1), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


class Bottleneck(nn.Module):
    """1x1x1 conv, BN, ReLU; depthwise 3x3x3 conv (strided), BN, [SE], Swish; 1x1x1 conv, BN."""

    def __init__(self, cin: int, inner: int, cout: int, stride: tuple[int, int, int], se: bool):
        super().__init__()
        self.conv_a = nn.Conv3d(cin, inner, 1, bias=False)
        self.norm_a = bn(inner)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv3d(inner, inner, 3, stride, 1, groups=inner, bias=False)
        gate = SqueezeExcitation(inner, round_width(inner, _SE_RATIO)) if se else nn.Identity()
        self.norm_b = nn.Sequential(bn(inner), gate)
        self.act_b = nn.SiLU()  # Swish, x * sigmoid(x)
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.norm_c = bn(cout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """Bottleneck plus shortcut (a strided 1x1x1 conv, with BN where the width changes), ReLU."""

    def __init__(self, cin: int, inner: int, cout: int, stride: tuple[int, int, int], se: bool):
        super().__init__()
        strided = math.prod(stride) > 1
        self.branch1_conv = (
            nn.Conv3d(cin, cout, 1, stride, bias=False) if cin != cout or strided else None
        )
        self.branch1_norm = bn(cout) if cin != cout else None
        self.branch2 = Bottleneck(cin, inner, cout, stride, se)
        self.activation = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
            if self.branch1_norm is not None:
                shortcut = self.branch1_norm(shortcut)
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """`depth` blocks, the first strided 1x2x2; SE in the 1st, 3rd, 5th, ... block."""

    def __init__(self, depth: int, cin: int, inner: int, cout: int):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(cin if i == 0 else cout, inner, cout, (1, 2, 2) if i == 0 else (1, 1, 1),
                     se=i % 2 == 0)
            for i in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class Stem(nn.Module):
    """1x3x3 conv (stride 1x2x2), depthwise 5x1x1 conv, BN, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Module()
        self.conv.conv_t = nn.Conv3d(cin, cout, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)
        self.conv.conv_xy = nn.Conv3d(cout, cout, (5, 1, 1), 1, (2, 0, 0), groups=cout, bias=False)
        self.norm = bn(cout)
        self.activation = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.norm(self.conv.conv_xy(self.conv.conv_t(x))))


class Head(nn.Module):
    """`pool`: 1x1x1 conv to the last stage's inner width, BN, ReLU, average pool, 1x1x1 conv to
    2048 (no BN), ReLU; then dropout, the Linear `proj` at every position, and their mean."""

    def __init__(self, cin: int, inner: int, num_classes: int, pool: tuple[int, int, int],
                 dropout: float):
        super().__init__()
        self.pool = nn.Module()
        self.pool.pre_conv = nn.Conv3d(cin, inner, 1, bias=False)
        self.pool.pre_norm = bn(inner)
        self.pool.pre_act = nn.ReLU()
        self.pool.post_conv = nn.Conv3d(inner, _HEAD_WIDTH, 1, bias=False)
        self.pool.post_act = nn.ReLU()
        self.pool_kernel = pool
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(_HEAD_WIDTH, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        p = self.pool
        x = p.pre_act(p.pre_norm(p.pre_conv(x)))
        window = tuple(min(k, s) for k, s in zip(self.pool_kernel, x.shape[2:], strict=True))
        x = F.avg_pool3d(x, window, stride=1)
        x = p.post_act(p.post_conv(x))
        x = self.proj(self.dropout(x).permute(0, 2, 3, 4, 1))
        return x.mean(dim=(1, 2, 3))


class X3D(nn.Module):
    """X3D on clips (N, C, T, H, W): `blocks` = stem, four stages (res2..res5), head."""

    def __init__(self, *, frames: int, size: int, depth_factor: float, num_classes: int = 400,
                 in_chans: int = 3, dropout: float = 0.5):
        super().__init__()
        self.in_chans, self.frames, self.size = in_chans, frames, size
        stem = round_width(_STEM_WIDTH, _WIDTH_FACTOR)
        blocks: list[nn.Module] = [Stem(in_chans, stem)]
        base, cin = _STEM_WIDTH, stem
        for i, base_depth in enumerate(_BASE_DEPTHS):
            if i > 0:
                base = round_width(base, 2.0)
            cout = round_width(base, _WIDTH_FACTOR)
            inner = int(_BOTTLENECK_FACTOR * cout)
            blocks.append(ResStage(math.ceil(depth_factor * base_depth), cin, inner, cout))
            cin = cout
        pool = (frames, math.ceil(size / 32), math.ceil(size / 32))
        blocks.append(Head(cin, inner, num_classes, pool, dropout))
        self.blocks = nn.ModuleList(blocks)

    def forward_features(self, x: Tensor) -> Tensor:
        """The res5 feature map (N, 192, T, H/32, W/32)."""
        for block in self.blocks[:-1]:
            x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks[-1](self.forward_features(x))

    def example_input(
        self, batch_size: int = 1, size: int | None = None, frames: int | None = None
    ) -> tuple[Tensor, ...]:
        """A random clip, at the size's hub input by default (e.g. X3D-M: 16 frames of 224x224)."""
        t, s = frames or self.frames, size or self.size
        return (torch.randn(batch_size, self.in_chans, t, s, s),)


def _info(name: str, frames: int, size: int, params: int) -> ModelInfo:
    return ModelInfo(
        name=name, summary=f"X3D-{name[4:].upper()} (pytorchvideo's)", channels=(3,),
        frames=frames, size=size, values="x3d", first_conv="blocks.0.conv.conv_t",
        classifier="blocks.5.proj", params=params, paper=_PAPER,
    )


# Frames, crop size and depth factor: pytorchvideo/models/hub/x3d.py. Parameter counts at 400
# classes from create_x3d's code (tests/models/test_x3d.py counts them by its rules); the model
# zoo table (pytorchvideo's docs/source/model_zoo.md) rounds them to 3.79M (XS, S, M), 6.15M (L).
@register_model(_info("x3d_xs", 4, 160, 3_794_274))
def x3d_xs(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.5) -> X3D:
    """X3D-XS: 4 frames of 160x160."""
    return X3D(frames=4, size=160, depth_factor=2.2, num_classes=num_classes,
               in_chans=in_chans, dropout=dropout)


@register_model(_info("x3d_s", 13, 160, 3_794_274))
def x3d_s(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.5) -> X3D:
    """X3D-S: 13 frames of 160x160."""
    return X3D(frames=13, size=160, depth_factor=2.2, num_classes=num_classes,
               in_chans=in_chans, dropout=dropout)


@register_model(_info("x3d_m", 16, 224, 3_794_274))
def x3d_m(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.5) -> X3D:
    """X3D-M: 16 frames of 224x224."""
    return X3D(frames=16, size=224, depth_factor=2.2, num_classes=num_classes,
               in_chans=in_chans, dropout=dropout)


@register_model(_info("x3d_l", 16, 312, 6_153_384))
def x3d_l(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.5) -> X3D:
    """X3D-L: 16 frames of 312x312, depth factor 5.0."""
    return X3D(frames=16, size=312, depth_factor=5.0, num_classes=num_classes,
               in_chans=in_chans, dropout=dropout)
