"""BN-Inception (Ioffe & Szegedy 2015), the backbone of Temporal Segment Networks.

The layer table of the paper's Figure 5, as in TSN's Caffe model (tsn-pytorch's
`tf_model_zoo/bninception/bn_inception.yaml`): inception 3a ... 5b with two stacked 3 x 3
convolutions in place of the 5 x 5, average pooling in the pool branch (max in 5b), and stride-2
blocks (3c, 4e) that pass the max-pooled input through. Every max pool is Caffe's (unpadded,
ceil mode), so that tsn-pytorch's ImageNet weights give the logits they give there
(`weights.load_init` converts them; their convolution biases fold into BN).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import Backbone, init_weights
from .registry import ModelInfo, register_model


class ConvBN(nn.Module):
    """Convolution, batch normalisation, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class CaffeMaxPool(nn.Module):
    """Caffe's 3 x 3 / 2 max pool (no padding, ceil mode), as the stride-2 blocks have it.

    At an even size it gives size / 2, as the padded 3 x 3 / 2 convolutions beside it; at an odd
    one, a row (column) that never wins is added at the end so that it still gives as many.
    """

    def forward(self, x: Tensor) -> Tensor:
        odd = [0, x.shape[-1] % 2, 0, x.shape[-2] % 2]
        if any(odd):
            x = F.pad(x, odd, value=float("-inf"))
        return F.max_pool2d(x, 3, 2, ceil_mode=True)


class InceptionBN(nn.Module):
    """One BN-Inception block: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool(-1x1), concatenated.

    With `stride=2` there is no 1x1 branch and the pool branch is the strided max pool itself.
    """

    def __init__(
        self,
        cin: int,
        c1: int,
        c3_reduce: int,
        c3: int,
        cd_reduce: int,
        cd: int,
        pool: str,
        pool_proj: int,
        stride: int = 1,
    ):
        super().__init__()
        self.branch1x1 = ConvBN(cin, c1, 1) if c1 else None
        self.branch3x3 = nn.Sequential(ConvBN(cin, c3_reduce, 1), ConvBN(c3_reduce, c3, 3, stride))
        self.branch_double = nn.Sequential(
            ConvBN(cin, cd_reduce, 1), ConvBN(cd_reduce, cd, 3), ConvBN(cd, cd, 3, stride)
        )
        if stride == 2:
            self.branch_pool = nn.Sequential(CaffeMaxPool())
        elif pool == "avg":
            self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), ConvBN(cin, pool_proj, 1))
        else:
            self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), ConvBN(cin, pool_proj, 1))
        self.out_channels = c1 + c3 + cd + (pool_proj if stride == 1 else cin)

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch3x3(x), self.branch_double(x), self.branch_pool(x)]
        if self.branch1x1 is not None:
            branches.insert(0, self.branch1x1(x))
        return torch.cat(branches, 1)


# name: (1x1, 3x3 reduce, 3x3, double 3x3 reduce, double 3x3, pool, pool proj, stride)
_BLOCKS = {
    "inception_3a": (64, 64, 64, 64, 96, "avg", 32, 1),
    "inception_3b": (64, 64, 96, 64, 96, "avg", 64, 1),
    "inception_3c": (0, 128, 160, 64, 96, "max", 0, 2),
    "inception_4a": (224, 64, 96, 96, 128, "avg", 128, 1),
    "inception_4b": (192, 96, 128, 96, 128, "avg", 128, 1),
    "inception_4c": (160, 128, 160, 128, 160, "avg", 128, 1),
    "inception_4d": (96, 128, 192, 160, 192, "avg", 128, 1),
    "inception_4e": (0, 128, 192, 192, 256, "max", 0, 2),
    "inception_5a": (352, 192, 320, 160, 224, "avg", 128, 1),
    "inception_5b": (352, 192, 320, 192, 224, "max", 128, 1),
}


class BNInception(Backbone):
    """BN-Inception as `features` (conv1 ... inception_5b) and a linear classifier `fc`."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0):
        super().__init__()
        self.in_chans = in_chans
        layers: dict[str, nn.Module] = {
            "conv1": ConvBN(in_chans, 64, 7, 2),
            "pool1": nn.MaxPool2d(3, 2, ceil_mode=True),
            "conv2_reduce": ConvBN(64, 64, 1),
            "conv2": ConvBN(64, 192, 3),
            "pool2": nn.MaxPool2d(3, 2, ceil_mode=True),
        }
        channels = 192
        for name, config in _BLOCKS.items():
            block = InceptionBN(channels, *config)
            layers[name] = block
            channels = block.out_channels
        self.features = nn.Sequential(OrderedDict(layers))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        stages = {
            "conv1": ("conv1",),
            "conv2": ("pool1", "conv2_reduce", "conv2"),
            "conv3": ("pool2", "inception_3a", "inception_3b"),
            "conv4": (
                "inception_3c",
                "inception_4a",
                "inception_4b",
                "inception_4c",
                "inception_4d",
            ),
            "conv5": ("inception_4e", "inception_5a", "inception_5b"),
        }
        self.stage_layers = {
            s: tuple(f"features.{n}" for n in names) for s, names in stages.items()
        }
        self.stage_channels = {
            "conv1": 64,
            "conv2": 192,
            "conv3": self.features.inception_3b.out_channels,
            "conv4": self.features.inception_4d.out_channels,
            "conv5": channels,
        }
        init_weights(self)


@register_model(
    ModelInfo(
        name="bninception", summary="2D stream, TSN's backbone", channels=(3,), frames=1,
        size=224, values="caffe", first_conv="features.conv1.conv", classifier="fc",
        params=11_285_224,
        paper="Ioffe & Szegedy: Batch Normalization: Accelerating Deep Network Training by "
        "Reducing Internal Covariate Shift (ICML 2015)",
        layouts=("tsn-pytorch",),
    )
)
def bninception(num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0) -> BNInception:
    """BN-Inception: a spatial stream (in_chans 3) or a temporal one (2L stacked flow channels)."""
    return BNInception(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
