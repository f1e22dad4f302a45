"""R3D, MC3 and R(2+1)D (Tran et al. 2018) with torchvision's layer choices and state-dict keys.

One generic network, as torchvision's `torchvision/models/video/resnet.py` builds it: a stem
(`stem`), four layers of BasicBlocks (`layer1` ... `layer4`, widths 64 ... 512, spatial and temporal
stride 2 at the start of layers 2-4 where the block's convolution has a time extent), a global
average pool and `fc`. The three 18-layer networks differ only in their convolutions:

- R3D-18: 3x3x3 everywhere, stem 3x7x7 stride (1, 2, 2);
- MC3-18: 3x3x3 in the stem and layer1, 1x3x3 ("no temporal") in layers 2-4, which so never
  stride in time (torchvision's MC3, the paper's "MC3": 3D convolutions up to conv2_x);
- R(2+1)D-18: each 3x3x3 factored into a 1x3x3 spatial convolution to M channels, BN, ReLU and a
  3x1x1 temporal one; the stem is 1x7x7 to 45 channels then 3x1x1 to 64.

The module names are torchvision's, so its Kinetics checkpoints (`r3d_18-b3b3357e.pth`,
`mc3_18-a90a0ba3.pth`, `r2plus1d_18-91a641e6.pth`) load with `model.load_state_dict`, and
R3D-18 and MC3-18 start from a 2D ResNet-18 by inflation (`weights.load_init`, layout
`torchvision-resnet`). They take clips (N, C, T, H, W), 16x112x112 in the paper, with
torchvision's Kinetics normalisation (`flowkit.data.values` mode `kinetics`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import FlowkitError
from .backbone import init_weights
from .registry import ModelInfo, register_model

_PAPER = (
    "Tran, Wang, Torresani, Ray, LeCun & Paluri: A Closer Look at Spatiotemporal Convolutions "
    "for Action Recognition (CVPR 2018), with torchvision's layer choices"
)
_WIDTHS = (64, 128, 256, 512)
_STEM_R2PLUS1D_MID = 45  # torchvision's R2Plus1dStem: 1x7x7 to 45 channels, then 3x1x1 to 64


def midplanes(inplanes: int, planes: int) -> int:
    """The R(2+1)D mid-channel rule: the M that gives the factored pair (1x3x3 to M, 3x1x1 to
    `planes`) the parameters of one 3x3x3 convolution, floor(27 N_in N / (9 N_in + 3 N)).

    torchvision computes it once per block, from the block's input and output widths, and uses it
    for both of the block's convolutions; the paper's rule per convolution would give the second
    convolution of the first block of layers 2-4 another M (288, not 230, in layer2). We follow the
    code, whose checkpoints have these shapes."""
    return (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)


class Conv3DSimple(nn.Conv3d):
    """A full 3x3x3 convolution, strided in time and space (R3D; MC3's layer1). `mid` is unused:
    every convolution kind takes the (2+1)D one's arguments, so a block builds any of them."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1):
        super().__init__(cin, cout, 3, stride, 1, bias=False)

    @staticmethod
    def shortcut_stride(stride: int) -> tuple[int, int, int]:
        return stride, stride, stride


class Conv3DNoTemporal(nn.Conv3d):
    """A 1x3x3 convolution, strided in space only (MC3's layers 2-4)."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1):
        super().__init__(cin, cout, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)

    @staticmethod
    def shortcut_stride(stride: int) -> tuple[int, int, int]:
        return 1, stride, stride


class Conv2Plus1D(nn.Sequential):
    """A (2+1)D convolution: 1x3x3 to `mid` channels, BN, ReLU, 3x1x1 (R(2+1)D)."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1):
        super().__init__(
            nn.Conv3d(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False),
        )

    @staticmethod
    def shortcut_stride(stride: int) -> tuple[int, int, int]:
        return stride, stride, stride


ConvKind = type[Conv3DSimple | Conv3DNoTemporal | Conv2Plus1D]


class BasicBlock(nn.Module):
    """Two convolutions of one kind, each followed by BN (`conv1`, `conv2`), and a shortcut: the
    identity, or a strided 1x1x1 convolution and BN (`downsample`) where the shape changes."""

    def __init__(self, cin: int, planes: int, conv: ConvKind, stride: int = 1):
        super().__init__()
        mid = midplanes(cin, planes)
        self.conv1 = nn.Sequential(
            conv(cin, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(conv(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, planes, 1, conv.shortcut_stride(stride), bias=False),
                nn.BatchNorm3d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


def basic_stem(in_chans: int) -> nn.Sequential:
    """torchvision's BasicStem (R3D, MC3): 3x7x7 convolution, stride (1, 2, 2), BN, ReLU."""
    return nn.Sequential(
        nn.Conv3d(in_chans, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
    )


def r2plus1d_stem(in_chans: int) -> nn.Sequential:
    """torchvision's R2Plus1dStem: 1x7x7 to 45 channels (stride (1, 2, 2)), BN, ReLU, then 3x1x1
    to 64, BN, ReLU."""
    mid = _STEM_R2PLUS1D_MID
    return nn.Sequential(
        nn.Conv3d(in_chans, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, 64, (3, 1, 1), 1, (1, 0, 0), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
    )


class VideoResNet(nn.Module):
    """A video ResNet of BasicBlocks on clips (N, C, T, H, W): `stem`, `layer1` ... `layer4` (one
    convolution kind per layer; `stem` builds the stem for `in_chans`), global average pool, dropout (none in torchvision's), `fc`.

    Initialised as torchvision's: He-normal (fan-out) convolutions, BN 1 and 0, `fc` N(0, 0.01)
    with zero bias.
    """

    def __init__(
        self,
        convs: tuple[ConvKind, ConvKind, ConvKind, ConvKind],
        layers: tuple[int, int, int, int],
        *,
        stem: Callable[[int], nn.Sequential] = basic_stem,
        num_classes: int = 400,
        in_chans: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_chans = in_chans
        self.stem = stem(in_chans)
        cin = 64
        for index, (conv, planes, blocks) in enumerate(zip(convs, _WIDTHS, layers, strict=True)):
            stage = []
            for b in range(blocks):
                stride = 2 if index > 0 and b == 0 else 1
                stage.append(BasicBlock(cin, planes, conv, stride))
                cin = planes
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """The layer4 feature map (N, 512, T', H/16, W/16), unpooled."""
        if x.dim() != 5 or x.shape[1] != self.in_chans:
            raise FlowkitError(
                f"{type(self).__name__} takes clips (N, {self.in_chans}, T, H, W), "
                f"16x112x112 in the paper; got shape {tuple(x.shape)}"
            )
        x = self.stem(x)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = self.get_submodule(name)(x)
        return x

    def forward_head(self, features: Tensor) -> Tensor:
        """Class scores: global average pool, dropout, `fc`."""
        return self.fc(self.dropout(features.mean(dim=(2, 3, 4))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def example_input(
        self, batch_size: int = 1, size: int = 112, frames: int = 16
    ) -> tuple[Tensor, ...]:
        """A random clip, at the paper's 16x112x112 by default."""
        return (torch.randn(batch_size, self.in_chans, frames, size, size),)


def _info(name: str, summary: str, params: int, layouts: tuple[str, ...]) -> ModelInfo:
    return ModelInfo(
        name=name, summary=summary, channels=(3,), frames=16, size=112, values="kinetics",
        first_conv="stem.0", classifier="fc", params=params, paper=_PAPER, layouts=layouts,
    )  # fmt: skip


# Parameter counts, 400 classes: torchvision's weights meta `num_params` (torchvision
# torchvision/models/video/resnet.py, v0.13+: R3D_18_Weights, MC3_18_Weights,
# R2Plus1D_18_Weights), which its architecture's code gives (tests/models/test_video_resnet.py
# counts them from it). R(2+1)D-34 has no torchvision weights: its count is that code's, with
# layers [3, 4, 6, 3], worked out in the same test.
@register_model(
    _info("r3d_18", "R3D-18: 3x3x3 convolutions", 33_371_472, ("torchvision", "torchvision-resnet"))
)
def r3d_18(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.0) -> VideoResNet:
    """R3D-18: 3D ResNet-18 of full 3x3x3 convolutions (torchvision's `r3d_18`)."""
    return VideoResNet(
        (Conv3DSimple,) * 4, (2, 2, 2, 2),
        num_classes=num_classes, in_chans=in_chans, dropout=dropout,
    )  # fmt: skip


@register_model(
    _info("mc3_18", "MC3-18: 3D stem and layer1, 2D layers 2-4", 11_695_440,
          ("torchvision", "torchvision-resnet"))
)  # fmt: skip
def mc3_18(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.0) -> VideoResNet:
    """MC3-18: 3x3x3 convolutions in the stem and layer1, 1x3x3 in layers 2-4 (torchvision's
    `mc3_18`)."""
    return VideoResNet(
        (Conv3DSimple, Conv3DNoTemporal, Conv3DNoTemporal, Conv3DNoTemporal), (2, 2, 2, 2),
        num_classes=num_classes, in_chans=in_chans, dropout=dropout,
    )  # fmt: skip


@register_model(
    _info("r2plus1d_18", "R(2+1)D-18: (2+1)D convolutions", 31_505_325, ("torchvision",))
)
def r2plus1d_18(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.0) -> VideoResNet:
    """R(2+1)D-18: every 3x3x3 factored into 1x3x3 and 3x1x1 (torchvision's `r2plus1d_18`)."""
    return VideoResNet(
        (Conv2Plus1D,) * 4, (2, 2, 2, 2), stem=r2plus1d_stem,
        num_classes=num_classes, in_chans=in_chans, dropout=dropout,
    )  # fmt: skip


@register_model(
    _info("r2plus1d_34", "R(2+1)D-34: torchvision's blocks, layers [3, 4, 6, 3]", 61_831_661,
          ("torchvision",))
)  # fmt: skip
def r2plus1d_34(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.0) -> VideoResNet:
    """R(2+1)D-34: torchvision's R(2+1)D stem and blocks in layers [3, 4, 6, 3].

    This is the choice of reference (not Hara's `resnet2p1d.py`), and the paper's R(2+1)D-34 is
    this network: its 34-layer ResNet of (2+1)D blocks. Where the paper's mid-channel rule, applied
    per convolution, gives another M (the second convolution of the first block of layers 2-4),
    we follow torchvision's code, one M per block, as for R(2+1)D-18 (see `midplanes`).
    moabitcoin/ig65m-pytorch's R(2+1)D-34 checkpoints are torchvision's VideoResNet in this shape.
    """
    return VideoResNet(
        (Conv2Plus1D,) * 4, (3, 4, 6, 3), stem=r2plus1d_stem,
        num_classes=num_classes, in_chans=in_chans, dropout=dropout,
    )  # fmt: skip
