"""The baselines of the I3D paper (Carreira & Zisserman, CVPR 2017, section 2 and Table 1):
ConvNet+LSTM, the "3D-ConvNet" (C3D with BN) and the "3D-Fused" two-stream network.

The paper released no code for them, so each is built from its text and the parameter counts of
its Table 1 (9M, 79M, 39M, figures rounded to the million). The implementation details (section
3) apply to all: "we follow each convolutional layer by a batch normalization layer and a ReLU
activation function, except for the last convolutional layers which produce the class scores";
all but the 3D-ConvNet start from ImageNet Inception-v1, flowkit's `InceptionV1`, whose ImageNet
weights (without `fc`) load into each tower with `strict=False`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FlowkitError
from .backbone import init_weights
from .i3d import InceptionV1, MaxPoolSame
from .registry import ModelInfo, register_model

_PAPER = (
    "Carreira & Zisserman: Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset "
    "(CVPR 2017)"
)
_FEATURES = 1024  # Inception-v1's Mixed_5c width


def _inception_tower(in_chans: int) -> InceptionV1:
    """An Inception-v1 without its ImageNet classifier: features, then the global average pool."""
    tower = InceptionV1(in_chans=in_chans)
    tower.fc = nn.Identity()
    return tower


def _check_clip(name: str, x: Tensor, channels: int, layout: str) -> None:
    """Raise a one-line FlowkitError unless `x` is 5D with `channels` where `layout` has C."""
    if x.dim() != 5 or x.shape[layout.split("(")[1].split(", ").index("C")] != channels:
        raise FlowkitError(
            f"{name} takes {layout} of {channels} channels, not a tensor of shape {tuple(x.shape)}"
        )


class ConvNetLSTM(nn.Module):
    """Inception-v1 on each frame, its 1024 pooled features batch-normalised, one 512-unit LSTM,
    dropout and a linear classifier at every time step (section 2.1).

    The paper trains on the outputs of all time steps (`forward_all_steps`) and tests on the last
    frame's (`forward`). Its LSTM is Cooijmans et al.'s batch-normalised one; this one is
    PyTorch's plain LSTM after a BN of its input (BN after the last pooling layer), which the
    recurrent BN's few thousand scales would change by under 0.1 %.

    Parameters at 400 classes: 8,956,976, Table 1's 9M less 0.5 %: the Inception-v1 tower
    without its ImageNet classifier (5,599,904), the BN (2,048), the LSTM (4 gates x 512 x
    (1024 + 512) weights + 2 x 4 x 512 biases: PyTorch keeps an input and a recurrent bias,
    TensorFlow's LSTM one, 2,048 fewer) and the classifier (205,200).
    """

    def __init__(
        self, *, num_classes: int = 400, in_chans: int = 3, hidden: int = 512, dropout: float = 0.0
    ):
        super().__init__()
        self.in_chans = in_chans
        self.cnn = _inception_tower(in_chans)
        self.bn = nn.BatchNorm1d(_FEATURES)
        self.lstm = nn.LSTM(_FEATURES, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def forward_all_steps(self, x: Tensor) -> Tensor:
        """Logits after each frame (N, T, classes) of clips (N, C, T, H, W)."""
        _check_clip("convnet_lstm", x, self.in_chans, "clips (N, C, T, H, W)")
        n, c, t = x.shape[:3]
        frames = x.transpose(1, 2).reshape(n * t, c, *x.shape[3:])
        features = self.bn(self.cnn(frames)).view(n, t, _FEATURES)
        hidden, _ = self.lstm(features)
        return self.fc(self.dropout(hidden))

    def forward(self, x: Tensor) -> Tensor:
        """Logits after the last frame (N, classes): the paper's test-time output."""
        return self.forward_all_steps(x)[:, -1]

    def example_input(
        self, batch_size: int = 1, size: int = 224, frames: int = 25
    ) -> tuple[Tensor, ...]:
        """A random clip of the paper's 25 frames (5 fps) of 224x224 by default."""
        return (torch.randn(batch_size, self.in_chans, frames, size, size),)


class ConvBNReLU3d(nn.Module):
    """A 3x3x3 convolution (no bias: BN follows), BN and ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


# C3D's layers (Tran et al. 2015): 8 convolutions, a 2x2x2 max pool after conv1a (the paper's
# change: temporal stride 2, where C3D's pool1 keeps time), conv2a, conv3b, conv4b and conv5b.
_CONV3D_LAYERS = (("conv1a", 64), "pool1", ("conv2a", 128), "pool2", ("conv3a", 256),
                  ("conv3b", 256), "pool3", ("conv4a", 512), ("conv4b", 512), "pool4",
                  ("conv5a", 512), ("conv5b", 512), "pool5")  # fmt: skip
_FC = 4096


def pooled_side(size: int) -> int:
    """pool5's height and width for `size` x `size` input: five 'same' pools of stride 2."""
    for _ in range(5):
        size = -(-size // 2)
    return size


class PaperConvNet3D(nn.Module):
    """The paper's 3D-ConvNet (section 2.3): C3D with BN after every convolution and fully
    connected layer, and pool1 of temporal stride 2, on 16x112x112 clips.

    Pools are 2x2x2 with TensorFlow's 'same' padding (the paper's framework), so a 16x112x112
    clip leaves pool5 a 512x1x4x4 map (time 16 -> 8 -> 4 -> 2 -> 1 -> 1, side 112 -> ... -> 4),
    fc6's 8192 inputs as in C3D. "2 fully connected layers at the top" are C3D's fc6 and fc7 (4096
    each, BN, ReLU, dropout), then the classifier `fc8`: the only reading that gives Table 1's
    79M (without fc7 the count is 63M). fc6 fixes the clip extent, as in C3D.

    Parameters at 400 classes: 79,645,520, Table 1's 79M plus 0.8 % (a rounded figure): the
    convolutions 27.7M (no biases, BN's shift replaces them), fc6 33.6M, fc7 16.8M, fc8 1.6M.
    """

    def __init__(
        self,
        *,
        num_classes: int = 400,
        in_chans: int = 3,
        dropout: float = 0.5,
        frames: int = 16,
        size: int = 112,
    ):
        super().__init__()
        self.in_chans, self.frames, self.size = in_chans, frames, size
        channels = in_chans
        for layer in _CONV3D_LAYERS:
            if isinstance(layer, str):
                setattr(self, layer, MaxPoolSame((2, 2, 2), (2, 2, 2)))
            else:
                name, channels, cin = layer[0], layer[1], channels
                setattr(self, name, ConvBNReLU3d(cin, channels))
        time = frames
        for _ in range(5):
            time = -(-time // 2)
        self.fc6 = nn.Linear(channels * time * pooled_side(size) ** 2, _FC, bias=False)
        self.bn6 = nn.BatchNorm1d(_FC)
        self.fc7 = nn.Linear(_FC, _FC, bias=False)
        self.bn7 = nn.BatchNorm1d(_FC)
        self.dropout = nn.Dropout(dropout)
        self.fc8 = nn.Linear(_FC, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """pool5's map (N, 512, T/32, H/32, W/32), rounded up."""
        for layer in _CONV3D_LAYERS:
            x = getattr(self, layer if isinstance(layer, str) else layer[0])(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Class scores of clips (N, in_chans, frames, size, size)."""
        expected = (self.in_chans, self.frames, self.size, self.size)
        if x.dim() != 5 or tuple(x.shape[1:]) != expected:
            raise FlowkitError(
                f"i3d_paper_3d_convnet takes clips (N, C, T, H, W) of {self.in_chans} channels, "
                f"{self.frames} frames of {self.size}x{self.size} (its fc6 fixes the extent), "
                f"not {tuple(x.shape)}"
            )
        x = self.forward_features(x).flatten(1)
        x = self.dropout(F.relu(self.bn6(self.fc6(x)), inplace=True))
        x = self.dropout(F.relu(self.bn7(self.fc7(x)), inplace=True))
        return self.fc8(x)

    def example_input(
        self, batch_size: int = 1, size: int | None = None, frames: int | None = None
    ) -> tuple[Tensor, ...]:
        """A random clip of the extent this network was built for (16x112x112 by default): fc6
        fixes it, so `size` and `frames`, which other networks take, are not used."""
        return (torch.randn(batch_size, self.in_chans, self.frames, self.size, self.size),)


class Fused3D(nn.Module):
    """The paper's 3D-Fused two-stream network (section 2.4): an RGB and a flow Inception-v1 run
    each of T time steps (the paper: 5 RGB frames 10 apart, and for each a stack of 10 flow
    fields) up to Mixed_5c, before its average pool; the two 1024-channel maps, concatenated into
    (N, 2048, T, 7, 7), go through a 3x3x3 convolution of 512 channels, BN and ReLU (section 3's
    rule for every convolution), a 3x3x3 max pool and the classifier `fc`.

    How the pooled grid reaches the classifier is not said; here the max pool has stride 1 and
    'same' padding and the grid is averaged, as I3D's head averages: neither adds a parameter.
    Parameters at 400 classes: 39,770,896, Table 1's 39M plus 2 % (a figure rounded to the
    million): two towers of 5.6M (the flow one's stem takes 20 channels: +53,312), the fusion
    convolution 3 x 3 x 3 x 2048 x 512 = 28.3M and its BN, the classifier 0.2M.
    """

    def __init__(
        self, *, num_classes: int = 400, flow_length: int = 10, dropout: float = 0.0
    ):
        super().__init__()
        self.rgb = _inception_tower(3)
        self.flow = _inception_tower(2 * flow_length)
        self.fusion = ConvBNReLU3d(2 * _FEATURES, 512)
        init_weights(self.fusion)
        self.pool = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512, num_classes)

    def forward_towers(self, rgb: Tensor, flow: Tensor) -> Tensor:
        """The concatenated Mixed_5c maps as clips (N, 2048, T, H/32, W/32)."""
        _check_clip("i3d_paper_3d_fused", rgb, 3, "RGB frames (N, T, C, H, W)")
        _check_clip("i3d_paper_3d_fused", flow, self.flow.in_chans, "flow stacks (N, T, C, H, W)")
        if rgb.shape[:2] != flow.shape[:2]:
            raise FlowkitError(
                f"i3d_paper_3d_fused takes as many flow stacks as RGB frames, not {flow.shape[1]} "
                f"and {rgb.shape[1]}"
            )
        n, t = rgb.shape[:2]
        maps = [tower.forward_features(x.flatten(0, 1)) for tower, x in
                ((self.rgb, rgb), (self.flow, flow))]  # fmt: skip
        fused = torch.cat(maps, 1)
        return fused.view(n, t, *fused.shape[1:]).transpose(1, 2)

    def forward(self, rgb: Tensor, flow: Tensor) -> Tensor:
        """Logits (N, classes) of RGB frames (N, T, 3, H, W) and flow stacks (N, T, 2L, H, W)."""
        x = self.pool(self.fusion(self.forward_towers(rgb, flow)))
        return self.fc(self.dropout(x.mean(dim=(2, 3, 4))))

    def example_input(
        self, batch_size: int = 1, size: int = 224, frames: int = 5
    ) -> tuple[Tensor, ...]:
        """Random RGB frames and flow stacks for `frames` time steps (the paper's 5) at 224x224."""
        shape = (batch_size, frames)
        return (
            torch.randn(*shape, 3, size, size),
            torch.randn(*shape, self.flow.in_chans, size, size),
        )


# 8,956,976 parameters at 400 classes; Table 1: 9M. The arithmetic is in
# tests/models/test_quo_vadis_baselines.py.
@register_model(
    ModelInfo(
        name="convnet_lstm", summary="I3D paper baseline: Inception-v1 per frame, 512-unit LSTM",
        channels=(3,), frames=25, size=224, values="unit", first_conv="cnn.features.conv1a.conv",
        classifier="fc", params=8_956_976, paper=_PAPER,
    )
)
def convnet_lstm(num_classes: int = 400, in_chans: int = 3, dropout: float = 0.0) -> ConvNetLSTM:
    """ConvNet+LSTM on 25-frame clips; the output after the last frame."""
    return ConvNetLSTM(num_classes=num_classes, in_chans=in_chans, dropout=dropout)


# 79,645,520 parameters at 400 classes; Table 1: 79M (a rounded figure: 0.8 % off).
# Values: `unit`, as every input of the paper's models; it was trained from scratch, so C3D's
# Sports-1M mean subtraction does not apply.
@register_model(
    ModelInfo(
        name="i3d_paper_3d_convnet", summary="I3D paper baseline: C3D with BN, pool1 stride 2",
        channels=(3,), frames=16, size=112, values="unit", first_conv="conv1a.conv",
        classifier="fc8", params=79_645_520, paper=_PAPER,
    )
)
def i3d_paper_3d_convnet(
    num_classes: int = 400, in_chans: int = 3, dropout: float = 0.5, frames: int = 16,
    size: int = 112,
) -> PaperConvNet3D:  # fmt: skip
    """The 3D-ConvNet on 16x112x112 clips unless built for another extent."""
    return PaperConvNet3D(num_classes=num_classes, in_chans=in_chans, dropout=dropout,
                          frames=frames, size=size)  # fmt: skip


# 39,770,896 parameters at 400 classes; Table 1: 39M (a rounded figure: 2 % off).
@register_model(
    ModelInfo(
        name="i3d_paper_3d_fused", summary="I3D paper baseline: 2D Inception-v1 towers, 3D fusion",
        channels=(3, 20), frames=1, size=224, values="unit", first_conv=None, classifier="fc",
        params=39_770_896, paper=_PAPER,
    )
)
def i3d_paper_3d_fused(
    num_classes: int = 400, flow_length: int = 10, dropout: float = 0.0
) -> Fused3D:
    """3D-Fused two-stream: RGB frames and stacks of `flow_length` flow fields, 5 time steps."""
    return Fused3D(num_classes=num_classes, flow_length=flow_length, dropout=dropout)
