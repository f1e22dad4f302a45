"""S3D (Xie et al. 2018): Inception-v1 in 3D with every 3x3x3 convolution made separable, a 1x3x3
spatial then a 3x1x1 temporal one, each with BN and ReLU.

Exact to torchvision's `torchvision/models/video/s3d.py` (pytorch/vision, commit 0216591): the
same layer table, BN eps 1e-3 and momentum 1e-3, the 2x7x7 average pool, dropout 0.2 and a 1x1x1
convolution classifier whose logits are averaged over what remains; the module names are
torchvision's, so its Kinetics-400 state dict (`s3d-d76dad2f.pth`) loads as it is. Its weights
expect `kinetics` values. Where the paper leaves details open (BN settings, dropout) this
follows torchvision's code.

S3D-G adds the paper's feature gating, where TensorFlow's reference (tensorflow/models
`research/slim/nets/s3dg.py` `self_gating`, `i3d_utils.py` `inception_block_v1_3d`) puts it:
after Conv2d_2c_3x3 and on the output of each of an Inception block's four branches. A gate
multiplies every channel by sigmoid(W mean(x)), W a C x C 1x1x1 convolution; the paper writes
a bias b too, TF-slim's code has none, and this follows the code. Everything else is the S3D
above, under the same names (the gates are `features.3.2` and each block's `gates`), so
torchvision's S3D weights start it with only the gates left fresh. Both also start from flowkit's
2D Inception-v1 by inflation (`load_init`, `inflate_state_dict`; the names in `layouts.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FlowkitError
from .registry import ModelInfo, register_model

_PAPER = (
    "Xie et al.: Rethinking Spatiotemporal Feature Learning: Speed-Accuracy Trade-offs in Video "
    "Classification (ECCV 2018)"
)
_BN_EPS = 1e-3
_BN_MOMENTUM = 1e-3  # torchvision's S3D
_CHANNELS = 1024
# The smallest clip: the unpadded 2x2x2 pool before Mixed_5b needs two positions on each axis.
MIN_FRAMES, MIN_SIZE = 5, 17

# Inception blocks: input channels, then 1x1 | 1x1 -> sep 3x3x3 | 1x1 -> sep 3x3x3 | pool -> 1x1.
_MIXED_3 = ((192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64))
_MIXED_4 = (
    (480, 192, 96, 208, 16, 48, 64),
    (512, 160, 112, 224, 24, 64, 64),
    (512, 128, 128, 256, 24, 64, 64),
    (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128),
)
_MIXED_5 = ((832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128))


def conv_bn_relu(
    cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
    stride: tuple[int, int, int] = (1, 1, 1), padding: tuple[int, int, int] = (0, 0, 0),
) -> nn.Sequential:
    """Convolution without bias, BN, ReLU: torchvision's `Conv3dNormActivation` (keys .0, .1)."""
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride, padding, bias=False),
        nn.BatchNorm3d(cout, eps=_BN_EPS, momentum=_BN_MOMENTUM),
        nn.ReLU(inplace=True),
    )


class SelfGating(nn.Module):
    """S3D-G's feature gating: channels scaled by sigmoid(W mean(x)), the mean over T, H, W."""

    def __init__(self, channels: int):
        super().__init__()
        self.transform = nn.Conv3d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.transform(x.mean(dim=(2, 3, 4), keepdim=True)))


class TemporalSeparableConv(nn.Sequential):
    """A k x k x k convolution factored into 1 x k x k (space) then k x 1 x 1 (time); `gated`:
    followed by a `SelfGating` (S3D-G)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int,
                 gated: bool = False):
        super().__init__(
            conv_bn_relu(cin, cout, (1, kernel, kernel), (1, stride, stride), (0, padding, padding)),
            conv_bn_relu(cout, cout, (kernel, 1, 1), (stride, 1, 1), (padding, 0, 0)),
            *([SelfGating(cout)] if gated else []),
        )


class SepInceptionBlock3D(nn.Module):
    """An Inception-v1 block whose 3x3x3 convolutions are separable (torchvision's branch names);
    `gated`: each branch's output gated (S3D-G)."""

    def __init__(self, cin: int, b0: int, b1_mid: int, b1: int, b2_mid: int, b2: int, b3: int,
                 gated: bool = False):
        super().__init__()
        self.branch0 = conv_bn_relu(cin, b0)
        self.branch1 = nn.Sequential(
            conv_bn_relu(cin, b1_mid), TemporalSeparableConv(b1_mid, b1, 3, 1, 1)
        )
        self.branch2 = nn.Sequential(
            conv_bn_relu(cin, b2_mid), TemporalSeparableConv(b2_mid, b2, 3, 1, 1)
        )
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), conv_bn_relu(cin, b3))
        self.out_channels = b0 + b1 + b2 + b3
        self.gates = nn.ModuleList(SelfGating(c) for c in (b0, b1, b2, b3)) if gated else None

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)]
        if self.gates is not None:
            branches = [gate(b) for gate, b in zip(self.gates, branches, strict=True)]
        return torch.cat(branches, 1)


def _pool(kernel: tuple[int, int, int], stride: tuple[int, int, int],
          padding: tuple[int, int, int]) -> nn.MaxPool3d:
    return nn.MaxPool3d(kernel, stride, padding)


class S3D(nn.Module):
    """S3D on clips (N, C, T, H, W): `features` (indices as torchvision's), a 2x7x7 average pool
    (stride 1), dropout, a 1x1x1 convolution `classifier.1`, logits averaged over positions.

    The pool window is cut to the feature map when the input is smaller than 16x224x224.
    `gated`: S3D-G (feature gating from Conv2d_2c_3x3 on).
    """

    def __init__(self, *, num_classes: int = 400, in_chans: int = 3, dropout: float = 0.2,
                 gated: bool = False):
        super().__init__()
        self.in_chans = in_chans
        self.features = nn.Sequential(
            TemporalSeparableConv(in_chans, 64, 7, 2, 3),
            _pool((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            conv_bn_relu(64, 64),
            TemporalSeparableConv(64, 192, 3, 1, 1, gated),
            _pool((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *(SepInceptionBlock3D(*row, gated) for row in _MIXED_3),
            _pool((3, 3, 3), (2, 2, 2), (1, 1, 1)),
            *(SepInceptionBlock3D(*row, gated) for row in _MIXED_4),
            _pool((2, 2, 2), (2, 2, 2), (0, 0, 0)),
            *(SepInceptionBlock3D(*row, gated) for row in _MIXED_5),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Conv3d(_CHANNELS, num_classes, 1, bias=True)
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """The Mixed_5c feature map (N, 1024, T/8, H/32, W/32)."""
        if x.shape[2] < MIN_FRAMES or min(x.shape[3:]) < MIN_SIZE:
            raise FlowkitError(
                f"S3D takes clips (N, C, T, H, W) of {self.in_chans} channels and at least "
                f"{MIN_FRAMES} frames of {MIN_SIZE}x{MIN_SIZE} (torchvision's: 16 of 224x224), "
                f"not {tuple(x.shape)}"
            )
        return self.features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        t, h, w = features.shape[2:]
        x = F.avg_pool3d(features, (min(2, t), min(7, h), min(7, w)), stride=1)
        return self.classifier(x).mean(dim=(2, 3, 4))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def example_input(
        self, batch_size: int = 1, size: int = 224, frames: int = 16
    ) -> tuple[Tensor, ...]:
        """A random clip, at torchvision's training size by default (16 frames of 224x224)."""
        return (torch.randn(batch_size, self.in_chans, frames, size, size),)


@register_model(
    ModelInfo(
        name="s3d", summary="S3D, separable 3D Inception (torchvision's)", channels=(3,),
        frames=16, size=224, values="kinetics", first_conv="features.0.0.0",
        classifier="classifier.1", layouts=("inception-v1",),
        # torchvision/models/video/s3d.py, S3D_Weights.KINETICS400_V1 meta "num_params": 8320048
        params=8_320_048, paper=_PAPER,
    )
)
def s3d(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.2) -> S3D:
    """S3D, torchvision's: RGB (in_chans 3) or flow (in_chans 2L) clips."""
    return S3D(num_classes=num_classes, in_chans=in_chans, dropout=dropout)


@register_model(
    ModelInfo(
        name="s3d_g", summary="S3D-G, S3D with feature gating (TF-slim's places)", channels=(3,),
        frames=16, size=224, values="kinetics", first_conv="features.0.0.0",
        classifier="classifier.1", layouts=("inception-v1",),
        # S3D's 8,320,048 plus one bias-free C x C gate after Conv2d_2c_3x3 (192) and on each
        # branch of the nine Inception blocks (TF-slim s3dg.py / i3d_utils.py): 1,219,328 more.
        params=9_539_376, paper=_PAPER,
    )
)
def s3d_g(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.2) -> S3D:
    """S3D-G: S3D with feature gating; starts from torchvision's S3D weights (gates fresh)."""
    return S3D(num_classes=num_classes, in_chans=in_chans, dropout=dropout, gated=True)
