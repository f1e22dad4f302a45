"""SlowFast R50 8x8 (Feichtenhofer 2019): a Slow pathway of few frames and many channels and a
Fast pathway of alpha = 4 times the frames and beta = 1/8 of the channels, joined by lateral
time-strided convolutions from Fast to Slow after the stem and each of res2..res4.

Exact to pytorchvideo's `create_slowfast` (`pytorchvideo/models/slowfast.py`, facebookresearch/
pytorchvideo commit f3142bb) with the settings of its hub builder `slowfast_r50`
(`pytorchvideo/models/hub/slowfast.py`): model depth 50, channel reduction ratio 8, fusion
channel ratio 2, fusion convolution 7x1x1 with stride 4x1x1, stems 1x7x7 (Slow) and 5x7x7
(Fast), temporal 3x1x1 `conv_a` in every Fast block and in Slow's res4 and res5 only, a head of
average pools (8x7x7 and 32x7x7, stride 1), concatenation, dropout 0.5 and a Linear `proj`
averaged over the positions left. The module names are pytorchvideo's, so its Kinetics-400
checkpoint (`SLOWFAST_8x8_R50.pyth`, its "model_state") loads as it is; its weights expect
`x3d` values (pytorchvideo's mean 0.45, std 0.225). The head's pools are cut to the feature map
for smaller inputs, as in flowkit's X3D.

`forward` takes the list [slow, fast] as pytorchvideo's does, or one clip of the Fast pathway's
frames, from which it takes the Slow clip as pytorchvideo's trainer does (`PackPathway` in
`pytorchvideo_trainer/datamodule/transforms.py`): T // 4 frames at `linspace(0, T - 1)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FlowkitError
from .registry import ModelInfo, register_model
from .x3d import bn  # pytorchvideo's BatchNorm3d settings, one home for both families

_PAPER = "Feichtenhofer et al.: SlowFast Networks for Video Recognition (ICCV 2019)"
ALPHA = 4  # Fast frames per Slow frame (the fusion convolution's time stride)
BETA_INVERSE = 8  # Slow channels per Fast channel
FUSION_RATIO = 2  # a lateral connection's output channels per Fast channel
_DEPTHS = (3, 4, 6, 3)  # ResNet-50's res2..res5
_SLOW_TEMPORAL = (False, False, True, True)  # Slow's conv_a is 3x1x1 in res4 and res5 only


def slow_frames(clip: Tensor) -> Tensor:
    """The Slow pathway's clip from a Fast one (N, C, T, H, W): T // 4 frames spread over T.

    The rule is the data layer's, `flowkit.data.sampling.slow_pathway` (the reference code's
    `linspace(0, T - 1, T // 4)`), written here again because models import no data module;
    tests/data/test_sampling.py checks the two give the same frames. The data layer delivers the
    Fast clip alone: one tensor, cropped and flipped once for both pathways, as the reference
    packs them."""
    t = clip.shape[2]
    index = torch.linspace(0, t - 1, t // ALPHA, device=clip.device).long()
    return clip.index_select(2, index)


class Stem(nn.Module):
    """Conv (stride 1x2x2, no bias), BN, ReLU, 1x3x3 max pool (stride 1x2x2)."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int]):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, (1, 2, 2), tuple(k // 2 for k in kernel),
                              bias=False)
        self.norm = bn(cout)
        self.activation = nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.activation(self.norm(self.conv(x))))


class Bottleneck(nn.Module):
    """`conv_a` (1x1x1 or 3x1x1), BN, ReLU; 1x3x3 `conv_b` (spatially strided), BN, ReLU;
    1x1x1 `conv_c`, BN."""

    def __init__(self, cin: int, inner: int, cout: int, temporal: bool, stride: int):
        super().__init__()
        t = 3 if temporal else 1
        self.conv_a = nn.Conv3d(cin, inner, (t, 1, 1), padding=(t // 2, 0, 0), bias=False)
        self.norm_a = bn(inner)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv3d(inner, inner, (1, 3, 3), (1, stride, stride), (0, 1, 1),
                                bias=False)
        self.norm_b = bn(inner)
        self.act_b = nn.ReLU()
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.norm_c = bn(cout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """Bottleneck plus shortcut (a strided 1x1x1 conv and BN where width or stride change), ReLU."""

    def __init__(self, cin: int, inner: int, cout: int, temporal: bool, stride: int):
        super().__init__()
        projected = cin != cout or stride > 1
        self.branch1_conv = (
            nn.Conv3d(cin, cout, 1, (1, stride, stride), bias=False) if projected else None
        )
        self.branch1_norm = bn(cout) if projected else None
        self.branch2 = Bottleneck(cin, inner, cout, temporal, stride)
        self.activation = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        if self.branch1_conv is not None and self.branch1_norm is not None:
            shortcut = self.branch1_norm(self.branch1_conv(x))
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """`depth` blocks, the first one strided."""

    def __init__(self, depth: int, cin: int, inner: int, cout: int, temporal: bool, stride: int):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(cin if i == 0 else cout, inner, cout, temporal, stride if i == 0 else 1)
            for i in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class FuseFastToSlow(nn.Module):
    """The lateral connection: the Fast map through a 7x1x1 conv of time stride 4, BN and ReLU,
    concatenated to the Slow map's channels."""

    def __init__(self, fast_channels: int):
        super().__init__()
        out = fast_channels * FUSION_RATIO
        self.conv_fast_to_slow = nn.Conv3d(fast_channels, out, (7, 1, 1), (ALPHA, 1, 1),
                                           (3, 0, 0), bias=False)
        self.norm = bn(out)
        self.activation = nn.ReLU()

    def forward(self, slow: Tensor, fast: Tensor) -> Tensor:
        fused = self.activation(self.norm(self.conv_fast_to_slow(fast)))
        return torch.cat([slow, fused], 1)


class Pathways(nn.Module):
    """One block per pathway, then (except after res5) the lateral fusion (pytorchvideo's
    `MultiPathWayWithFuse`)."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fast_channels: int | None):
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = FuseFastToSlow(fast_channels) if fast_channels else None

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        slow, fast = (block(p) for block, p in zip(self.multipathway_blocks, x, strict=True))
        if self.multipathway_fusion is not None:
            slow = self.multipathway_fusion(slow, fast)
        return [slow, fast]


class PoolConcat(nn.Module):
    """Per pathway an average pool (stride 1), the two maps concatenated (pytorchvideo's
    `PoolConcatPathway`)."""

    def __init__(self, kernels: tuple[tuple[int, int, int], ...]):
        super().__init__()
        self.kernels = kernels

    def forward(self, x: list[Tensor]) -> Tensor:
        pooled = []
        for features, kernel in zip(x, self.kernels, strict=True):
            window = tuple(min(k, s) for k, s in zip(kernel, features.shape[2:], strict=True))
            pooled.append(F.avg_pool3d(features, window, stride=1))
        return torch.cat(pooled, 1)


class Head(nn.Module):
    """Dropout, the Linear `proj` at every position, and the mean over the positions."""

    def __init__(self, cin: int, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.dropout(x).permute(0, 2, 3, 4, 1)).mean(dim=(1, 2, 3))


class SlowFast(nn.Module):
    """SlowFast on [slow (N, C, T/4, H, W), fast (N, C, T, H, W)] or on the Fast clip alone:
    `blocks` = stem, res2..res5 (each both pathways and a fusion), pools, head."""

    def __init__(self, *, num_classes: int = 400, in_chans: int = 3, dropout: float = 0.5,
                 frames: int = 32, size: int = 224):
        super().__init__()
        self.in_chans, self.frames, self.size = in_chans, frames, size
        slow_in, blocks = 64, []
        fast_in = slow_in // BETA_INVERSE
        blocks.append(Pathways(Stem(in_chans, slow_in, (1, 7, 7)),
                               Stem(in_chans, fast_in, (5, 7, 7)), fast_in))
        slow_in += fast_in * FUSION_RATIO
        out = 256
        for i, (depth, temporal) in enumerate(zip(_DEPTHS, _SLOW_TEMPORAL, strict=True)):
            stride = 1 if i == 0 else 2
            fast_out = out // BETA_INVERSE
            slow = ResStage(depth, slow_in, out // 4, out, temporal, stride)
            fast = ResStage(depth, fast_in, fast_out // 4, fast_out, True, stride)
            last = i == len(_DEPTHS) - 1
            blocks.append(Pathways(slow, fast, None if last else fast_out))
            slow_in = out + (0 if last else fast_out * FUSION_RATIO)
            fast_in, out = fast_out, out * 2
        cells = size // 32
        pools = ((frames // ALPHA, cells, cells), (frames, cells, cells))
        blocks.append(PoolConcat(pools))
        blocks.append(Head(slow_in + fast_in, num_classes, dropout))
        self.blocks = nn.ModuleList(blocks)

    def forward_features(self, x: Tensor | list[Tensor] | tuple[Tensor, Tensor]) -> list[Tensor]:
        """The res5 feature maps [slow (N, 2048, T/4, H/32, W/32), fast (N, 256, T, H/32, W/32)]."""
        if isinstance(x, Tensor):
            if x.shape[2] % ALPHA:
                raise FlowkitError(
                    f"slowfast_r50 takes Fast clips (N, C, T, H, W) of {self.in_chans} channels and "
                    f"a multiple of {ALPHA} frames (the paper's: {self.frames} of "
                    f"{self.size}x{self.size}), not {tuple(x.shape)}")
            x = [slow_frames(x), x]
        pathways = list(x)
        for block in self.blocks[:-2]:
            pathways = block(pathways)
        return pathways

    def forward(self, x: Tensor | list[Tensor] | tuple[Tensor, Tensor]) -> Tensor:
        return self.blocks[-1](self.blocks[-2](self.forward_features(x)))

    def example_input(
        self, batch_size: int = 1, size: int | None = None, frames: int | None = None
    ) -> tuple[Tensor, ...]:
        """A random Fast clip (the Slow one is taken from it), 32 frames of 224x224 by default."""
        t, s = frames or self.frames, size or self.size
        return (torch.randn(batch_size, self.in_chans, t, s, s),)


# Parameter count at 400 classes from create_slowfast's code (tests/models/test_slowfast.py
# builds its state dict's key/shape table by its rules); pytorchvideo's model zoo table
# (docs/source/model_zoo.md, commit f3142bb) gives 34.57M for SLOWFAST_8x8_R50.
@register_model(ModelInfo(
    name="slowfast_r50", summary="SlowFast R50 8x8 (pytorchvideo's)", channels=(3,), frames=32,
    size=224, values="x3d", first_conv="blocks.0.multipathway_blocks.0.conv",
    other_stems=("blocks.0.multipathway_blocks.1.conv",),  # the Fast pathway's stem
    classifier="blocks.6.proj", params=34_566_488, paper=_PAPER,
))
def slowfast_r50(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.5) -> SlowFast:
    """SlowFast R50 8x8: 32 Fast frames (8 Slow) of 224x224."""
    return SlowFast(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
