"""Temporal Segment Networks (Wang et al. 2016): one backbone applied to K snippets, one per segment
of the video, with shared weights, and a segmental consensus of their class scores.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import FlowkitError
from .backbone import Backbone
from .init import partial_bn as enable_partial_bn
from .registry import ModelInfo, create_model, register_model

MODALITIES = ("rgb", "rgbdiff", "flow")
CONSENSUS = ("avg", "max", "weighted")
# TSN's snippet lengths: 1 frame, 5 flow fields (10 channels), 5 RGB differences (of 6 frames).
SNIPPET_LENGTH = {"rgb": 1, "rgbdiff": 5, "flow": 5}
DROPOUT = {"rgb": 0.8, "rgbdiff": 0.8, "flow": 0.7}  # before the classifier, as in the paper


def check_modality(modality: str) -> None:
    """Raise a FlowkitError naming the modalities if `modality` is not one."""
    if modality not in MODALITIES:
        raise FlowkitError(f"unknown modality {modality!r}; modalities are {', '.join(MODALITIES)}")


def backbone_channels(modality: str, snippet_length: int) -> int:
    """Input channels the backbone sees: 3 for RGB, 2L for flow, 3L for RGB differences."""
    check_modality(modality)
    return {"rgb": 3, "rgbdiff": 3 * snippet_length, "flow": 2 * snippet_length}[modality]


class SegmentConsensus(nn.Module):
    """Segment scores (N, K, classes) -> video scores (N, classes): their average, their maximum,
    or a learned weighted sum (weights start at 1/K, which is the average)."""

    def __init__(self, kind: str = "avg", num_segments: int = 3):
        super().__init__()
        if kind not in CONSENSUS:
            raise FlowkitError(f"unknown consensus {kind!r}; choose from {', '.join(CONSENSUS)}")
        self.kind = kind
        if kind == "weighted":
            self.weight = nn.Parameter(torch.full((num_segments,), 1.0 / num_segments))

    def forward(self, scores: Tensor) -> Tensor:
        if self.kind == "avg":
            return scores.mean(dim=1)
        if self.kind == "max":
            return scores.amax(dim=1)
        if scores.shape[1] != self.weight.numel():
            raise FlowkitError(
                f"weighted consensus was built for {self.weight.numel()} segments, "
                f"got {scores.shape[1]}"
            )
        return torch.einsum("nkc,k->nc", scores, self.weight)


class TSN(nn.Module):
    """TSN on snippets (N, K, C, H, W): K snippets per video, C = 3 (RGB), 2L (flow: L stacked
    u, v fields) or 3(L+1) (RGB difference: L+1 consecutive frames, differenced here)."""

    def __init__(
        self,
        backbone: Backbone,
        *,
        modality: str = "rgb",
        num_segments: int = 3,
        consensus: str = "avg",
        partial_bn: bool = True,
    ):
        super().__init__()
        if not isinstance(backbone, Backbone) or backbone.spatial_dims != 2:
            raise FlowkitError("TSN takes a 2D backbone of this package")
        check_modality(modality)
        self.backbone = backbone
        self.modality = modality
        self.num_segments = num_segments
        self.consensus = SegmentConsensus(consensus, num_segments)
        if partial_bn:
            enable_partial_bn(self.backbone)

    @property
    def in_chans(self) -> int:
        """Channels per input snippet (for RGB difference: of the frames, before differencing)."""
        c = self.backbone.in_chans
        return c + 3 if self.modality == "rgbdiff" else c

    def forward(self, x: Tensor) -> Tensor:
        n, k = x.shape[:2]
        if self.modality == "rgbdiff":
            frames = x.view(n, k, -1, 3, *x.shape[3:])
            x = (frames[:, :, 1:] - frames[:, :, :-1]).flatten(2, 3)
        scores = self.backbone(x.flatten(0, 1))
        return self.consensus(scores.view(n, k, -1))

    def example_input(
        self, batch_size: int = 1, size: int = 224, frames: int = 64
    ) -> tuple[Tensor, ...]:
        """Random snippets, K of them at 224x224 by default; `frames` is not used."""
        return (torch.randn(batch_size, self.num_segments, self.in_chans, size, size),)


@register_model(
    ModelInfo(
        name="tsn", summary="TSN, K snippets, avg / max / weighted consensus", channels=(3,),
        frames=1, size=224, values="caffe", first_conv="backbone.features.conv1.conv",
        classifier="backbone.fc", params=10_363_749,
        paper="Wang et al.: Temporal Segment Networks: Towards Good Practices for Deep Action "
        "Recognition (ECCV 2016)",
        backbone="backbone",
    )
)
def tsn(
    num_classes: int = 101,
    *,
    backbone: str = "bninception",
    modality: str = "rgb",
    num_segments: int = 3,
    snippet_length: int | None = None,
    consensus: str = "avg",
    dropout: float | None = None,
    partial_bn: bool = True,
) -> TSN:
    """TSN with a backbone of this package by name; snippet length and dropout default to the
    paper's for the modality (1 / 0.8 for RGB, 5 / 0.7 for flow, 5 / 0.8 for RGB difference)."""
    check_modality(modality)
    length = SNIPPET_LENGTH[modality] if snippet_length is None else snippet_length
    if modality == "rgb" and length != 1:
        raise FlowkitError("an RGB snippet is one frame")
    net = create_model(
        backbone,
        num_classes=num_classes,
        in_chans=backbone_channels(modality, length),
        dropout=DROPOUT[modality] if dropout is None else dropout,
    )
    return TSN(
        net,
        modality=modality,
        num_segments=num_segments,
        consensus=consensus,
        partial_bn=partial_bn,
    )
