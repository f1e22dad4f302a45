"""Hidden two-stream (Zhu, Lan, Newsam & Hauptmann, ACCV 2018 / arXiv 2017): MotionNet's flow
feeding the temporal stream, trained end to end from RGB clips; no stored flow.

As bryanyzhu/Hidden-Two-Stream `models/ucf101_split2_unsup_end/stack_motionnet_vgg16_deploy.prototxt`
and `end_train_val.prototxt` (commit fdeb787): 11 RGB frames (33 channels) into MotionNet
(flowkit.flow.motionnet), whose finest prediction (half size, 20 channels: 10 flows) is scaled to
pixels (x 20), clipped to +-20, mapped to 0..255 (the TSN/denseflow quantization, without the
rounding), upsampled x2 bilinearly and centred (- 128); then VGG-16 on 20 channels: 13 3x3
convolutions with ReLU in five blocks, max pools, fc6 and fc7 4096 (dropout 0.9 and 0.8), fc8;
101 classes (UCF101). Training adds MotionNet's unsupervised loss (weight 1, as every loss of
`end_train_val.prototxt`) to the classification loss: in train mode with gradients on, forward
leaves it in `auxiliary_loss`, which flowkit's trainer adds.

The input is an RGB clip (N, 3, 11, H, W) with `caffe` values (BGR 0-255 minus [104, 117, 128]);
MotionNet gets the reference's (BGR minus [104, 117, 123]) / 255. Any H, W from 32 up; the
classifier's 7x7 (torchvision's adaptive pooling) makes any size give logits.

Parameters at 101 classes, the prototxt's arithmetic (weights + biases per layer):
MotionNet 42,319,860: conv1 19,072 + conv1_1 36,928 + conv2 73,856 + conv2_1 147,584 + conv3
295,168 + conv3_1 590,080 + conv4 1,180,160 + conv4_1, conv5, conv5_1 2,359,808 each + conv6
4,719,616 + conv6_1 9,438,208; predictions: 184,340 (from 1024) + 92,180 + 46,100 + 23,060 + 11,540;
flow upsampling deconvolutions 4 x 6,420; deconv5 8,389,120, deconv4 2,097,408, deconv3 524,416,
deconv2 131,136; smooth5 4,811,264 (1044 in), smooth4 1,815,808 (788), smooth3 465,536 (404),
smooth2 122,176 (212). VGG-16 on 20 channels 134,684,133: torchvision's VGG-16 138,357,544,
+ 9,792 for conv1_1's 17 extra input channels, - 4,097,000 + 413,797 for fc8 at 101 classes.
Total 177,003,993. The prototxt's frozen constants (lr_mult 0: the Scale layers of the mapping
and the 320-weight bilinear upsampling) are fixed arithmetic here, not parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FlowkitError
from ..flow.motionnet import FLOW_SCALE, MotionNet, unsupervised_loss
from .registry import ModelInfo, register_model

_PAPER = (
    "Zhu, Lan, Newsam & Hauptmann: Hidden Two-Stream Convolutional Networks for Action "
    "Recognition (ACCV 2018; arXiv:1704.00389)"
)
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
BOUND = 20.0  # the reference clips flow to +-20 before the temporal stream
# caffe values (BGR minus [104, 117, 128]) to the reference's MotionNet input (minus [104, 117, 123])
_MEAN_SHIFT = (0.0, 0.0, 5.0)


class TemporalVGG16(nn.Module):
    """VGG-16 (Simonyan & Zisserman 2015) on stacked flow, as the reference's temporal stream."""

    def __init__(self, in_chans: int = 20, num_classes: int = 101, dropout: tuple[float, float] = (0.9, 0.8)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for v in VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((7, 7))
        self.fc6 = nn.Linear(512 * 7 * 7, 4096)
        self.drop6 = nn.Dropout(dropout[0])
        self.fc7 = nn.Linear(4096, 4096)
        self.drop7 = nn.Dropout(dropout[1])
        self.fc8 = nn.Linear(4096, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.pool(self.features(x)), 1)
        x = self.drop6(F.relu(self.fc6(x)))
        x = self.drop7(F.relu(self.fc7(x)))
        return self.fc8(x)


def flow_to_stream(flow2: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """MotionNet's finest prediction (units of 20 pixels) to the temporal stream's input: pixels
    clipped to +-20, mapped to 0..255, upsampled to `size`, minus 128 (the reference's layers)."""
    codes = (torch.clamp(flow2 * FLOW_SCALE, -BOUND, BOUND) + BOUND) * (255.0 / (2 * BOUND))
    return F.interpolate(codes, size=tuple(size), mode="bilinear", align_corners=False) - 128.0


class HiddenTwoStream(nn.Module):
    """MotionNet on `frames` RGB frames, then VGG-16 on its 2 x (frames - 1) flow channels."""

    def __init__(self, num_classes: int = 101, in_chans: int = 3, frames: int = 11,
                 width: float = 1.0, dropout: float | tuple[float, float] = (0.9, 0.8),
                 unsupervised_weight: float = 1.0) -> None:
        super().__init__()
        if in_chans != 3:
            raise FlowkitError("hidden_two_stream computes its own flow from RGB clips: "
                               "train its rgb stream (in_chans 3), not a flow stream")
        self.frames, self.in_chans = frames, in_chans
        self.unsupervised_weight = unsupervised_weight
        self.motionnet = MotionNet(frames, in_chans, width)
        drops = (dropout, dropout) if isinstance(dropout, float | int) else tuple(dropout)
        self.temporal = TemporalVGG16(2 * (frames - 1), num_classes, drops)
        self.register_buffer("mean_shift", torch.tensor(_MEAN_SHIFT).view(1, 3, 1, 1, 1), persistent=False)
        self.auxiliary_loss: Tensor | None = None

    def motion_input(self, clip: Tensor) -> Tensor:
        """A clip (N, 3, T, H, W) of caffe values to MotionNet's stacked input (N, 3T, H, W)."""
        if clip.dim() != 5 or clip.shape[1] != self.in_chans or clip.shape[2] != self.frames:
            raise FlowkitError(f"hidden_two_stream expects clips (N, {self.in_chans}, {self.frames}, H, W): "
                               f"{self.frames} RGB frames, got {tuple(clip.shape)}")
        if min(clip.shape[-2:]) < 32:
            raise FlowkitError(f"hidden_two_stream needs frames of 32x32 or more, got "
                               f"{clip.shape[-1]}x{clip.shape[-2]}")
        x = (clip + self.mean_shift) / 255.0
        n, c, t, h, w = x.shape
        return x.transpose(1, 2).reshape(n, t * c, h, w)

    def forward(self, clip: Tensor) -> Tensor:
        x = self.motion_input(clip)
        predictions = self.motionnet(x)
        self.auxiliary_loss = None
        if self.training and torch.is_grad_enabled() and self.unsupervised_weight > 0:
            loss, _ = unsupervised_loss(x, predictions, self.in_chans)
            self.auxiliary_loss = self.unsupervised_weight * loss
        return self.temporal(flow_to_stream(predictions[0], x.shape[-2:]))

    def example_input(self, batch_size: int = 1, size: int | None = None,
                      frames: int | None = None) -> tuple[Tensor, ...]:
        """A random clip of `size` (224 by default); the frame count is the network's (11)."""
        side = size or 224
        return (torch.randn(batch_size, self.in_chans, self.frames, side, side) * 60,)


# 177,003,993 at 101 classes: MotionNet 42,319,860 + VGG-16 on 20 channels 134,684,133 (see above).
@register_model(
    ModelInfo(
        name="hidden_two_stream", summary="Hidden two-stream: MotionNet flow into a VGG-16 temporal stream",
        channels=(3,), frames=11, size=224, values="caffe", first_conv="motionnet.encoder.0.0",
        classifier="temporal.fc8", params=177_003_993, paper=_PAPER,
    )
)
def hidden_two_stream(
    num_classes: int = 101, in_chans: int = 3, frames: int = 11, width: float = 1.0,
    dropout: float | tuple[float, float] = (0.9, 0.8), unsupervised_weight: float = 1.0,
) -> HiddenTwoStream:  # fmt: skip
    """Hidden two-stream's temporal stream for UCF101: MotionNet (11 frames) and VGG-16."""
    return HiddenTwoStream(num_classes, in_chans, frames, width, dropout, unsupervised_weight)
