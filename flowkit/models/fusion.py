"""Joining the spatial and temporal streams: late fusion of their scores, and mid-level fusion of
their feature maps (Feichtenhofer, Pinz & Zisserman, CVPR 2016).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FlowkitError
from .backbone import STAGES, Backbone, check_stage, next_stage
from .registry import ModelInfo, create_model, register_model

TSN_WEIGHTS = (1.0, 1.5)  # RGB : flow, TSN's late-fusion weights


def late_fusion(scores: Sequence[Tensor], weights: Sequence[float] | None = None) -> Tensor:
    """Class probabilities from several streams' logits (N, classes): the average of their
    softmax, weighted by `weights` (e.g. `TSN_WEIGHTS` for RGB, flow) if given."""
    weights = [1.0] * len(scores) if weights is None else list(weights)
    if len(weights) != len(scores):
        raise FlowkitError(f"{len(weights)} weights for {len(scores)} streams")
    probabilities = torch.stack([s.softmax(dim=-1) for s in scores])
    w = torch.tensor(weights, dtype=probabilities.dtype, device=probabilities.device)
    return torch.einsum("s,snc->nc", w, probabilities) / w.sum()


class LinearScoreFusion(nn.Module):
    """Late fusion learned on validation scores: a linear classifier on the streams' softmax
    scores, each L2-normalised, stacked (the two-stream paper's linear SVM; here multinomial
    logistic regression with an L2 penalty). Build it with `LinearScoreFusion.fit`."""

    def __init__(self, num_streams: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(num_streams * num_classes, num_classes)

    @staticmethod
    def features(scores: Sequence[Tensor]) -> Tensor:
        """The stacked L2-normalised softmax scores (N, streams * classes)."""
        return torch.cat([F.normalize(s.softmax(dim=-1), dim=-1) for s in scores], dim=-1)

    def forward(self, scores: Sequence[Tensor]) -> Tensor:
        """Fused class probabilities (N, classes) from each stream's logits."""
        return self.linear(self.features(scores)).softmax(dim=-1)

    @classmethod
    def fit(
        cls, scores: Sequence[Tensor], labels: Tensor, *, l2: float = 1e-3, max_iter: int = 200
    ) -> LinearScoreFusion:
        """Fit on the streams' logits for labelled videos (L-BFGS, float64, deterministic)."""
        x = cls.features([s.detach().double() for s in scores])
        fusion = cls(len(scores), scores[0].shape[-1]).double()
        nn.init.zeros_(fusion.linear.weight)
        nn.init.zeros_(fusion.linear.bias)
        optimizer = torch.optim.LBFGS(
            fusion.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe"
        )

        def loss() -> Tensor:
            optimizer.zero_grad()
            value = F.cross_entropy(fusion.linear(x), labels)
            value = value + 0.5 * l2 * fusion.linear.weight.square().sum()
            value.backward()
            return value

        optimizer.step(loss)
        return fusion.float()


FUSIONS = ("sum", "max", "concat", "conv", "bilinear")


class SpatialFusion(nn.Module):
    """Two feature maps (N, C, H, W) at the same place joined into one (Feichtenhofer et al. 3.1):

    sum, max (element-wise), concat (along channels), conv (a 1x1 convolution of the concatenation,
    starting as the sum of the two: [I I]), or bilinear (outer product of the two channel
    vectors at each location, averaged over locations: (N, C_s * C_t), no spatial extent left).
    """

    def __init__(self, kind: str, spatial_channels: int, temporal_channels: int):
        super().__init__()
        if kind not in FUSIONS:
            raise FlowkitError(f"unknown fusion {kind!r}; choose from {', '.join(FUSIONS)}")
        if kind in ("sum", "max", "conv") and spatial_channels != temporal_channels:
            raise FlowkitError(
                f"{kind} fusion joins maps of equal width, not {spatial_channels} and "
                f"{temporal_channels} channels; use concat or bilinear"
            )
        self.kind = kind
        widths = {
            "concat": spatial_channels + temporal_channels,
            "bilinear": spatial_channels * temporal_channels,
        }
        self.out_channels = widths.get(kind, spatial_channels)
        if kind == "conv":
            c = spatial_channels
            self.conv = nn.Conv2d(2 * c, c, 1)
            with torch.no_grad():
                self.conv.weight.copy_(
                    torch.cat([torch.eye(c), torch.eye(c)], 1).view(c, 2 * c, 1, 1)
                )
                self.conv.bias.zero_()

    def forward(self, spatial: Tensor, temporal: Tensor) -> Tensor:
        if self.kind == "sum":
            return spatial + temporal
        if self.kind == "max":
            return torch.maximum(spatial, temporal)
        if self.kind == "concat":
            return torch.cat([spatial, temporal], 1)
        if self.kind == "conv":
            return self.conv(torch.cat([spatial, temporal], 1))
        locations = spatial.shape[2] * spatial.shape[3]
        return torch.einsum("nihw,njhw->nij", spatial, temporal).flatten(1) / locations


TEMPORAL_FUSIONS = ("conv3d", "pool3d", "average")


class TwoStreamFusion(nn.Module):
    """Mid-level two-stream fusion of T time steps (Feichtenhofer et al., CVPR 2016).

    Both towers run each of the T frames (RGB) and flow stacks up to `layer`; `SpatialFusion`
    joins them there. The fused maps go on through the spatial tower's later stages (none at
    conv5), then are fused over time by `temporal_fusion`:

    - `conv3d` (the paper's final architecture): a 3x3x3 convolution over (T, H, W) and ReLU,
      then a 3D max pool over all T frames and 2x2 (stride 2); it starts as a smoothing average
      of the fused channels (the authors' code starts it as 0.25 / 0.75 of the two towers);
    - `pool3d`: the 3D max pool alone;
    - `average`: the mean over frames (the only choice after bilinear fusion);

    then global average pooling, dropout and a new classifier. The temporal tower is kept whole,
    with the same pooling over time and its own classifier, as in the paper; the spatial tower's
    classifier is dropped. `forward` returns (fused logits, temporal logits): train on both
    losses; at test time average their softmax (`late_fusion`).
    """

    def __init__(
        self,
        spatial: Backbone,
        temporal: Backbone,
        *,
        layer: str = "conv5",
        fusion: str = "concat",
        temporal_fusion: str = "conv3d",
        dropout: float = 0.85,
    ):
        super().__init__()
        check_stage(layer)
        for tower in (spatial, temporal):
            if not isinstance(tower, Backbone) or tower.spatial_dims != 2:
                raise FlowkitError("TwoStreamFusion takes two 2D backbones of this package")
        if temporal_fusion not in TEMPORAL_FUSIONS:
            raise FlowkitError(
                f"unknown temporal fusion {temporal_fusion!r}; "
                f"choose from {', '.join(TEMPORAL_FUSIONS)}"
            )
        if layer != STAGES[-1] and fusion in ("concat", "bilinear"):
            raise FlowkitError(
                f"{fusion} fusion changes the width, so it can only be at the last stage"
            )
        if fusion == "bilinear" and temporal_fusion != "average":
            raise FlowkitError(
                "bilinear fusion leaves no map to fuse over time: use temporal_fusion='average'"
            )
        self.layer = layer
        self.temporal_fusion = temporal_fusion
        self.spatial, self.temporal = spatial, temporal
        self.spatial.fc = nn.Identity()
        self.fusion = SpatialFusion(
            fusion, spatial.stage_channels[layer], temporal.stage_channels[layer]
        )
        width = self.fusion.out_channels if layer == STAGES[-1] else spatial.num_features
        if temporal_fusion == "conv3d":
            self.conv3d = nn.Conv3d(width, spatial.num_features, 3, padding=1)
            _smoothing_average_(self.conv3d)
            width = spatial.num_features
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, temporal.fc.out_features)

    def forward(self, rgb: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (fused, temporal) of RGB frames (N, T, 3, H, W) and flow (N, T, 2L, H, W)."""
        n, t = rgb.shape[:2]
        xs = self.spatial.forward_features(rgb.flatten(0, 1), end=self.layer)
        xt = self.temporal.forward_features(flow.flatten(0, 1), end=self.layer)
        fused = self.fusion(xs, xt)
        if self.layer != STAGES[-1]:
            fused = self.spatial.forward_features(fused, start=next_stage(self.layer))
            xt = self.temporal.forward_features(xt, start=next_stage(self.layer))
        if self.fusion.kind == "bilinear":
            pooled = fused.view(n, t, -1).mean(dim=1)
        else:
            fused = _clips(fused, n, t)
            if self.temporal_fusion == "conv3d":
                fused = F.relu(self.conv3d(fused))
            pooled = self._over_time(fused).mean(dim=(2, 3, 4))
        temporal = self.temporal.forward_head(self._over_time(_clips(xt, n, t)))
        return self.fc(self.dropout(pooled)), temporal

    def _over_time(self, x: Tensor) -> Tensor:
        if self.temporal_fusion == "average":
            return x
        t, h, w = x.shape[2:]
        return F.max_pool3d(x, (t, min(2, h), min(2, w)), stride=2, ceil_mode=True)

    def example_input(
        self, batch_size: int = 1, size: int = 224, frames: int = 5
    ) -> tuple[Tensor, ...]:
        """Random RGB frames and flow stacks for `frames` time steps (the paper's 5) at 224x224."""
        shape = (batch_size, frames)
        return (
            torch.randn(*shape, self.spatial.in_chans, size, size),
            torch.randn(*shape, self.temporal.in_chans, size, size),
        )


def _clips(x: Tensor, n: int, t: int) -> Tensor:
    """Per-frame maps (N*T, C, H, W) as clips (N, C, T, H, W)."""
    return x.view(n, t, *x.shape[1:]).transpose(1, 2)


def _smoothing_average_(conv: nn.Conv3d) -> None:
    """Output channel o starts as the average, over the inputs i with i % out == o, of a 3x3x3
    Gaussian (sigma 1, summing to 1) on channel i."""
    cout, cin = conv.weight.shape[:2]
    r = torch.arange(-1.0, 2.0)
    g = torch.exp(-(r.view(3, 1, 1) ** 2 + r.view(1, 3, 1) ** 2 + r.view(1, 1, 3) ** 2) / 2)
    inputs = torch.arange(cin)
    outputs = inputs % cout
    share = cin // cout + (outputs < cin % cout).float()  # how many inputs each output averages
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[outputs, inputs] = (g / g.sum()) / share.view(-1, 1, 1, 1)
        conv.bias.zero_()


@register_model(
    ModelInfo(
        name="two_stream_fusion",
        summary="mid-level fusion (Feichtenhofer et al.), ResNet-18 towers", channels=(3, 20),
        frames=1, size=224, values="imagenet", first_conv=None, classifier=None,
        params=36_666_250,
        paper="Feichtenhofer, Pinz & Zisserman: Convolutional Two-Stream Network Fusion for "
        "Video Action Recognition (CVPR 2016)",
    )
)
def two_stream_fusion(
    num_classes: int = 101,
    *,
    backbone: str = "resnet18",
    flow_length: int = 10,
    layer: str = "conv5",
    fusion: str = "concat",
    temporal_fusion: str = "conv3d",
    dropout: float = 0.85,
) -> TwoStreamFusion:
    """Two towers of the backbone named (spatial: 3 channels, temporal: 2 x `flow_length`) fused
    as in Feichtenhofer et al.; by default their final architecture at conv5.

    The default ResNet-18 is 512 channels wide at conv5, as the paper's VGG-16: its 3x3x3 fusion
    convolution has 14M parameters. On ResNet-50 (2048 channels) that convolution has 226M.
    """
    spatial = create_model(backbone, num_classes=num_classes)
    temporal = create_model(backbone, num_classes=num_classes, in_chans=2 * flow_length)
    return TwoStreamFusion(
        spatial,
        temporal,
        layer=layer,
        fusion=fusion,
        temporal_fusion=temporal_fusion,
        dropout=dropout,
    )
