"""ResNet-18 and ResNet-50 as 2D streams, and the same networks inflated to 3D.

The 2D networks keep torchvision's module names (`conv1`, `bn1`, `layer1.0.downsample.0`, `fc`,
...), so a torchvision ImageNet state dict loads with `load_state_dict`; a temporal stream with
2L input channels takes it through `cross_modality_init`. The 3D networks have the same names and
follow the I3D paper's recipe: every k x k kernel becomes k x k x k, with temporal stride 2 where
I3D has it (the stem, the start of conv4 and of conv5), so `inflate_state_dict` maps a 2D
checkpoint onto them.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import FlowkitError
from .backbone import Backbone, init_weights
from .registry import ModelInfo, register_model

_PAPER = "He, Zhang, Ren & Sun: Deep Residual Learning for Image Recognition (CVPR 2016)"
_INFLATED = (
    "ResNet (He et al., CVPR 2016) inflated as in Carreira & Zisserman: Quo Vadis, Action "
    "Recognition? A New Model and the Kinetics Dataset (CVPR 2017)"
)


def _conv(dims: int, cin: int, cout: int, k: int, stride: int = 1, t_stride: int = 1) -> nn.Module:
    """A k x k convolution, 'same' padded, or its k x k x k inflation."""
    if dims == 2:
        return nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
    return nn.Conv3d(cin, cout, k, (t_stride, stride, stride), k // 2, bias=False)


def _bn(dims: int, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm3d(channels)


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions and a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, dims: int, cin: int, planes: int, stride: int = 1, t_stride: int = 1):
        super().__init__()
        self.conv1 = _conv(dims, cin, planes, 3, stride, t_stride)
        self.bn1 = _bn(dims, planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(dims, planes, planes, 3)
        self.bn2 = _bn(dims, planes)
        self.downsample = _downsample(dims, cin, planes * self.expansion, stride, t_stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided, as torchvision's ResNet v1.5) and 1x1 convolutions, and a shortcut."""

    expansion = 4

    def __init__(self, dims: int, cin: int, planes: int, stride: int = 1, t_stride: int = 1):
        super().__init__()
        self.conv1 = _conv(dims, cin, planes, 1)
        self.bn1 = _bn(dims, planes)
        self.conv2 = _conv(dims, planes, planes, 3, stride, t_stride)
        self.bn2 = _bn(dims, planes)
        self.conv3 = _conv(dims, planes, planes * self.expansion, 1)
        self.bn3 = _bn(dims, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(dims, cin, planes * self.expansion, stride, t_stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(dims: int, cin: int, cout: int, stride: int, t_stride: int) -> nn.Module | None:
    if stride == 1 and t_stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv(dims, cin, cout, 1, stride, t_stride), _bn(dims, cout))


class ResNet(Backbone):
    """ResNet (He et al. 2016) with torchvision's layout; `dims=3` inflates it as I3D does."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.0,
        dims: int = 2,
    ):
        super().__init__()
        if dims not in (2, 3):
            raise FlowkitError(f"dims must be 2 or 3, not {dims}")
        self.in_chans = in_chans
        self.spatial_dims = dims
        self.conv1 = _conv(dims, in_chans, 64, 7, stride=2, t_stride=2)
        self.bn1 = _bn(dims, 64)
        self.relu = nn.ReLU(inplace=True)
        if dims == 2:
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        cin = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if index == 0 else 2
            t_stride = 2 if index >= 2 else 1
            stage = []
            for b in range(blocks):
                stage.append(
                    block(dims, cin, planes, stride if b == 0 else 1, t_stride if b == 0 else 1)
                )
                cin = planes * block.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        self.stage_layers = {
            "conv1": ("conv1", "bn1", "relu"),
            "conv2": ("maxpool", "layer1"),
            "conv3": ("layer2",),
            "conv4": ("layer3",),
            "conv5": ("layer4",),
        }
        self.stage_channels = {
            "conv1": 64,
            "conv2": 64 * block.expansion,
            "conv3": 128 * block.expansion,
            "conv4": 256 * block.expansion,
            "conv5": 512 * block.expansion,
        }
        init_weights(self)


@register_model(
    ModelInfo(
        name="resnet18", summary="2D stream (any in_chans: 3 RGB, 2L flow)", channels=(3,),
        frames=1, size=224, values="imagenet", first_conv="conv1", classifier="fc",
        params=11_689_512, paper=_PAPER, layouts=("torchvision",),
    )
)
def resnet18(num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0) -> ResNet:
    """ResNet-18: a spatial stream (in_chans 3) or a temporal one (2L stacked flow channels)."""
    return ResNet(
        BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_chans=in_chans, dropout=dropout
    )


@register_model(
    ModelInfo(
        name="resnet50", summary="2D stream, torchvision's keys", channels=(3,), frames=1,
        size=224, values="imagenet", first_conv="conv1", classifier="fc", params=25_557_032,
        paper=_PAPER, layouts=("torchvision",),
    )
)
def resnet50(num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0) -> ResNet:
    """ResNet-50: a spatial stream (in_chans 3) or a temporal one (2L stacked flow channels)."""
    return ResNet(
        Bottleneck, (3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans, dropout=dropout
    )


@register_model(
    ModelInfo(
        name="resnet18_3d", summary="ResNet-18 inflated as I3D", channels=(3,), frames=64,
        size=224, values="imagenet", first_conv="conv1", classifier="fc", params=33_409_104,
        paper=_INFLATED, layouts=("torchvision",),
    )
)
def resnet18_3d(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.0) -> ResNet:
    """ResNet-18 inflated to 3D (I3D's recipe); takes clips (N, C, T, H, W)."""
    return ResNet(
        BasicBlock,
        (2, 2, 2, 2),
        num_classes=num_classes,
        in_chans=in_chans,
        dropout=dropout,
        dims=3,
    )


@register_model(
    ModelInfo(
        name="resnet50_3d", summary="ResNet-50 inflated as I3D", channels=(3,), frames=64,
        size=224, values="imagenet", first_conv="conv1", classifier="fc", params=47_018_576,
        paper=_INFLATED, layouts=("torchvision",),
    )
)
def resnet50_3d(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.0) -> ResNet:
    """ResNet-50 inflated to 3D (I3D's recipe); takes clips (N, C, T, H, W)."""
    return ResNet(
        Bottleneck,
        (3, 4, 6, 3),
        num_classes=num_classes,
        in_chans=in_chans,
        dropout=dropout,
        dims=3,
    )
