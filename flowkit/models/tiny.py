"""A tiny 2D backbone for demos, tests and quick experiments on small frames.

Five stages of one strided 3 x 3 convolution each (stride 2 per stage, as every backbone here),
with BN and ReLU: about 0.2M parameters, so that two streams train in minutes on a CPU.
"""

from __future__ import annotations

from torch import nn

from .backbone import Backbone, init_weights
from .registry import ModelInfo, register_model

_WIDTHS = (16, 32, 64, 96, 128)


class TinyNet(Backbone):
    """`conv1` ... `conv5`, each Conv3x3 (stride 2) + BN + ReLU, then pool, dropout and `fc`."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0):
        super().__init__()
        self.in_chans = in_chans
        cin = in_chans
        self.stage_layers, self.stage_channels = {}, {}
        for i, width in enumerate(_WIDTHS, 1):
            stage = nn.Sequential(nn.Conv2d(cin, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
            self.add_module(f"conv{i}", stage)
            self.stage_layers[f"conv{i}"] = (f"conv{i}",)
            self.stage_channels[f"conv{i}"] = width
            cin = width
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)


@register_model(
    ModelInfo(
        name="tiny", summary="2D stream for demos and tests", channels=(3,), frames=1, size=224,
        values="imagenet", first_conv="conv1.0", classifier="fc", params=319_032,
        paper="none: flowkit's own, five strided convolutions",
    )
)
def tiny(num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0) -> TinyNet:
    """TinyNet: five 3 x 3 stride-2 convolutions (16 ... 128 channels), for small frames."""
    return TinyNet(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
