"""C3D (Tran, Bourdev, Fergus, Torresani & Paluri, ICCV 2015), as mmaction2 builds it.

Exact to open-mmlab/mmaction2 `mmaction/models/backbones/c3d.py` (commit 4d6c934, 2023-10-12)
with the head and settings of `configs/_base_/models/c3d_sports1m_pretrained.py` (used by
`configs/recognition/c3d/c3d_sports1m-pretrained_8xb30-16x1x1-45e_ucf101-rgb.py`): eight 3x3x3
convolutions with biases and ReLU, no BN (`norm_cfg=None`); max pools 1x2x2 after conv1a, 2x2x2
after conv2a, conv3b, conv4b and conv5b, pool5 padded (0, 1, 1) as the Caffe model; the 512x1x4x4
map of a 16x112x112 clip flattened into fc6 (8192 -> 4096), ReLU, dropout 0.5, fc7 (4096), ReLU;
then `I3DHead` with `spatial_type=None`: dropout 0.5 and `fc_cls`; 101 classes (UCF101).

Names are mmaction2's `Recognizer3D`'s (`backbone.conv1a.conv.weight`, `backbone.fc6.weight`,
`cls_head.fc_cls.weight`), so its UCF101 checkpoint's `state_dict` loads as it is. The Sports-1M
initialisation (`c3d_sports1m_pretrain_20201016-dcc47ddc.pth`) is read by mmaction2 into the
backbone alone with `load_checkpoint(..., strict=False)`: it holds backbone names (`conv1a.conv.*`
... `fc7.*`), load it into `model.backbone` with `strict=False`.

fc6's width fixes the clip: built for `frames` x `size` x `size` (mmaction2's `out_dim`), the
network takes clips of exactly that extent, and says so when given another.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import FlowkitError
from .registry import ModelInfo, register_model

_PAPER = (
    "Tran, Bourdev, Fergus, Torresani & Paluri: Learning Spatiotemporal Features with 3D "
    "Convolutional Networks (ICCV 2015)"
)
MIN_FRAMES = 16  # four poolings of stride 2 in time: fewer frames leave pool5 nothing
MIN_SIZE = 16  # five of stride 2 in space (pool5 padded)


class C3DConv(nn.Module):
    """mmcv's `ConvModule` without norm: a 3x3x3 convolution (with bias) and ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.conv(x))


def pooled_extent(frames: int, size: int) -> tuple[int, int]:
    """(time, side) of pool5's output for a `frames` x `size` x `size` clip."""
    for _ in range(4):  # pool1 keeps time, pool2 ... pool5 halve it (floor)
        frames //= 2
    for _ in range(4):  # pool1 ... pool4 halve the side (floor)
        size //= 2
    return frames, size // 2 + 1  # pool5: kernel 2, stride 2, padding 1


class C3DBackbone(nn.Module):
    """mmaction2's `C3D` backbone: the convolutions, fc6 and fc7; 4096 features per clip."""

    def __init__(self, in_chans: int, dropout: float, fc6_in: int):
        super().__init__()
        self.conv1a = C3DConv(in_chans, 64)
        self.pool1 = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.conv2a = C3DConv(64, 128)
        self.pool2 = nn.MaxPool3d(2, 2)
        self.conv3a = C3DConv(128, 256)
        self.conv3b = C3DConv(256, 256)
        self.pool3 = nn.MaxPool3d(2, 2)
        self.conv4a = C3DConv(256, 512)
        self.conv4b = C3DConv(512, 512)
        self.pool4 = nn.MaxPool3d(2, 2)
        self.conv5a = C3DConv(512, 512)
        self.conv5b = C3DConv(512, 512)
        self.pool5 = nn.MaxPool3d(2, 2, (0, 1, 1))
        self.fc6 = nn.Linear(fc6_in, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)

    def forward_features(self, x: Tensor) -> Tensor:
        """pool5's map (N, 512, T/16, ., .)."""
        for name in ("conv1a", "pool1", "conv2a", "pool2", "conv3a", "conv3b", "pool3",
                     "conv4a", "conv4b", "pool4", "conv5a", "conv5b", "pool5"):  # fmt: skip
            x = getattr(self, name)(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x).flatten(1)
        x = self.dropout(self.relu(self.fc6(x)))
        return self.relu(self.fc7(x))


class C3DHead(nn.Module):
    """mmaction2's `I3DHead` with `spatial_type=None`: dropout and `fc_cls` on fc7's features."""

    def __init__(self, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc_cls = nn.Linear(4096, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_cls(self.dropout(x))


class C3D(nn.Module):
    """C3D for `frames` x `size` x `size` clips (N, C, T, H, W): backbone, then head."""

    def __init__(
        self,
        *,
        num_classes: int = 101,
        in_chans: int = 3,
        dropout: float = 0.5,
        frames: int = 16,
        size: int = 112,
    ):
        super().__init__()
        if frames < MIN_FRAMES or size < MIN_SIZE:
            raise FlowkitError(
                f"C3D needs clips of at least {MIN_FRAMES} frames of {MIN_SIZE}x{MIN_SIZE}, "
                f"not {frames} of {size}x{size}"
            )
        self.in_chans, self.frames, self.size = in_chans, frames, size
        time, side = pooled_extent(frames, size)
        self.backbone = C3DBackbone(in_chans, dropout, 512 * time * side * side)
        self.cls_head = C3DHead(num_classes, dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        """mmaction2's: convolutions He-normal (fan-out) with zero bias (`kaiming_init`), fc6 and
        fc7 normal with std 0.005 (`init_std`), fc_cls std 0.01 (the head's), biases zero."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01 if module is self.cls_head.fc_cls else 0.005)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores of clips (N, in_chans, frames, size, size)."""
        expected = (self.in_chans, self.frames, self.size, self.size)
        if x.dim() != 5 or tuple(x.shape[1:]) != expected:
            raise FlowkitError(
                f"C3D takes clips (N, C, T, H, W) of {self.in_chans} channels, {self.frames} frames "
                f"of {self.size}x{self.size} (its fc6 fixes the extent), not {tuple(x.shape)}"
            )
        return self.cls_head(self.backbone(x))

    def example_input(
        self, batch_size: int = 1, size: int | None = None, frames: int | None = None
    ) -> tuple[Tensor, ...]:
        """A random clip of the extent this network was built for (16x112x112 by default): its
        fc6 fixes it, so `size` and `frames`, which other networks take, are not used."""
        return (torch.randn(batch_size, self.in_chans, self.frames, self.size, self.size),)


# 78,409,573 parameters at 101 classes: mmaction2 C3D + I3DHead (configs/recognition/c3d/README.md
# says 78.4M); the arithmetic from mmaction2's c3d.py is in tests/models/test_c3d.py.
@register_model(
    ModelInfo(
        name="c3d", summary="C3D, mmaction2's (fc6 fixes the clip extent)", channels=(3,),
        frames=16, size=112, values="mmaction_c3d", first_conv="backbone.conv1a.conv",
        classifier="cls_head.fc_cls", params=78_409_573, paper=_PAPER,
    )
)
def c3d(
    num_classes: int = 101, in_chans: int = 3, dropout: float = 0.5, frames: int = 16,
    size: int = 112,
) -> C3D:  # fmt: skip
    """C3D for UCF101 (101 classes), on 16x112x112 clips unless built for another extent."""
    return C3D(num_classes=num_classes, in_chans=in_chans, dropout=dropout, frames=frames,
               size=size)  # fmt: skip
