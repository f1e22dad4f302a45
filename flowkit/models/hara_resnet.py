"""The 3D ResNets of Hara, Kataoka & Satoh (CVPR 2018), as kenshohara/3D-ResNets-PyTorch builds them.

Exact to `models/resnet.py` of that repository (master, commit 540a0ea, 2020-05-11) with the
defaults of its `opts.py` and `model.py`'s `generate_model`: conv1 7x7x7, stride (1, 2, 2),
padding (3, 3, 3) (`conv1_t_size=7`, `conv1_t_stride=1`); a 3x3x3 max pool of stride 2 in time
too (`no_max_pool=False`); every 3x3x3 convolution of stride 2 strides time as well; widen factor
1; global average pooling and `fc`; 400 classes; 16x112x112 clips (`sample_duration`,
`sample_size`). Module and tensor names are that file's (`conv1`, `bn1`, `layer1.0.conv1`,
`layer2.0.downsample.0`, `fc`), so the `state_dict` entry of a checkpoint its `main.py` saved
loads with `load_state_dict`, once the `module.` prefix `nn.DataParallel` adds (CVPR2018 branch)
is removed as its `util_scripts/remove_dataparallel.py` does. Shortcut B also has torchvision's
ResNet names and shapes, inflated: `inflate_state_dict` starts it from a 2D ResNet.

Shortcuts: the paper uses type A (zero-padded identity) for ResNet-18/34 and B (1x1x1
convolution + BN) for 50 and deeper; the code's default is B at every depth (`ResNet`'s
`shortcut_type='B'`, opts.py `--resnet_shortcut B`) and the 2020 checkpoints
(`r3d18_K_200ep.pth` ...) were trained with it, so these builders follow the code. The CVPR2018
branch's `resnet-18-kinetics.pth` and `resnet-34-kinetics.pth` were trained with
`--resnet_shortcut A` (its README): build those with `shortcut="A"`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FlowkitError
from .backbone import Backbone, init_weights
from .registry import ModelInfo, register_model
from .resnet import BasicBlock, Bottleneck

_PAPER = (
    "Hara, Kataoka & Satoh: Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and "
    "ImageNet? (CVPR 2018)"
)
SHORTCUTS = ("A", "B")


class ZeroPadShortcut(nn.Module):
    """Shortcut type A: the input subsampled by `stride` and zero-padded to `channels`.

    Hara's `_downsample_basic_block` (an `avg_pool3d` of kernel 1, which subsamples, then zeros
    concatenated along channels); no parameters, so nothing in the state dict. Hara's version
    also detaches the input (`out.data`), cutting the gradient through these few shortcuts; the
    values are the same and the gradient here flows, as in the paper's ResNets.
    """

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.channels, self.stride = channels, stride

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride
        x = x[:, :, ::s, ::s, ::s]
        return F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.channels - x.shape[1]))


class HaraResNet(Backbone):
    """3D ResNet of Hara et al. (kenshohara/3D-ResNets-PyTorch `models/resnet.py`)."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        num_classes: int = 400,
        in_chans: int = 3,
        shortcut: str = "B",
        dropout: float = 0.0,
    ):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise FlowkitError(f"shortcut must be A or B, not {shortcut!r}")
        self.in_chans = in_chans
        self.spatial_dims = 3
        self.conv1 = nn.Conv3d(in_chans, 64, 7, (1, 2, 2), 3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, 2, 1)
        cin = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if index == 0 else 2
            stage = [block(3, cin, planes, stride, stride)]
            cin = planes * block.expansion
            if shortcut == "A" and stage[0].downsample is not None:
                stage[0].downsample = ZeroPadShortcut(cin, stride)
            stage += [block(3, cin, planes) for _ in range(1, blocks)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
        self.dropout = nn.Dropout(dropout)  # Hara's code has none: 0 by default
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
            **{f"conv{n}": planes * block.expansion
               for n, planes in zip((2, 3, 4, 5), (64, 128, 256, 512), strict=True)},
        }  # fmt: skip
        init_weights(self)  # Hara's: He-normal fan-out convs, BN 1 and 0, Linear default

    def example_input(
        self, batch_size: int = 1, size: int = 112, frames: int = 16
    ) -> tuple[Tensor, ...]:
        """A random clip, 16 frames of 112x112 by default (Hara's `sample_duration`, `sample_size`)."""
        return super().example_input(batch_size, size, frames)


def _info(depth: int, params: int) -> ModelInfo:
    return ModelInfo(
        name=f"hara_r3d_{depth}", summary=f"3D ResNet-{depth} of Hara et al., shortcut B",
        channels=(3,), frames=16, size=112, values="hara_kinetics", first_conv="conv1",
        classifier="fc", params=params, paper=_PAPER,
    )  # fmt: skip


# Parameter counts at 400 classes, shortcut B, from kenshohara/3D-ResNets-PyTorch
# models/resnet.py (commit 540a0ea) `generate_model(depth)`; the arithmetic is in
# tests/models/test_hara_resnet.py. With shortcut A: 33,235,280 / 63,544,912 / 44,242,000 / 83,288,144.


@register_model(_info(18, 33_409_104))
def hara_r3d_18(
    num_classes: int = 400, in_chans: int = 3, shortcut: str = "B", dropout: float = 0.0
) -> HaraResNet:
    """Hara's 3D ResNet-18 (BasicBlock, [2, 2, 2, 2]): 33.4M parameters (B), 33.2M (A)."""
    return HaraResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_chans=in_chans,
                      shortcut=shortcut, dropout=dropout)  # fmt: skip


@register_model(_info(34, 63_718_736))
def hara_r3d_34(
    num_classes: int = 400, in_chans: int = 3, shortcut: str = "B", dropout: float = 0.0
) -> HaraResNet:
    """Hara's 3D ResNet-34 (BasicBlock, [3, 4, 6, 3]): 63.7M parameters (B), 63.5M (A)."""
    return HaraResNet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans,
                      shortcut=shortcut, dropout=dropout)  # fmt: skip


@register_model(_info(50, 47_018_576))
def hara_r3d_50(
    num_classes: int = 400, in_chans: int = 3, shortcut: str = "B", dropout: float = 0.0
) -> HaraResNet:
    """Hara's 3D ResNet-50 (Bottleneck, [3, 4, 6, 3]): 47.0M parameters."""
    return HaraResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans,
                      shortcut=shortcut, dropout=dropout)  # fmt: skip


@register_model(_info(101, 86_064_720))
def hara_r3d_101(
    num_classes: int = 400, in_chans: int = 3, shortcut: str = "B", dropout: float = 0.0
) -> HaraResNet:
    """Hara's 3D ResNet-101 (Bottleneck, [3, 4, 23, 3]): 86.1M parameters."""
    return HaraResNet(Bottleneck, (3, 4, 23, 3), num_classes=num_classes, in_chans=in_chans,
                      shortcut=shortcut, dropout=dropout)  # fmt: skip
