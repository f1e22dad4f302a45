"""Late fusion of scores and mid-level fusion of feature maps."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from flowkit.errors import FlowkitError
from flowkit.models import (
    TSN_WEIGHTS,
    LinearScoreFusion,
    SpatialFusion,
    TwoStreamFusion,
    late_fusion,
    resnet18,
    two_stream_fusion,
)

# ---------------------------------------------------------------------------------- late fusion


def test_late_fusion_averages_the_softmax() -> None:
    rgb, flow = torch.randn(4, 10), torch.randn(4, 10)
    fused = late_fusion([rgb, flow])
    torch.testing.assert_close(fused, (rgb.softmax(-1) + flow.softmax(-1)) / 2)
    torch.testing.assert_close(fused.sum(-1), torch.ones(4))


def test_late_fusion_weighted_as_tsn() -> None:
    rgb = torch.tensor([[2.0, 0.0]])
    flow = torch.tensor([[0.0, 2.0]])
    p = torch.tensor([2.0, 0.0]).softmax(-1)  # rgb's; flow's is p reversed
    fused = late_fusion([rgb, flow], TSN_WEIGHTS)
    expected = (1.0 * p + 1.5 * p.flip(0)) / 2.5
    torch.testing.assert_close(fused, expected.unsqueeze(0))
    assert fused[0, 1] > fused[0, 0]  # flow weighs more
    with pytest.raises(FlowkitError, match="1 weights for 2 streams"):
        late_fusion([rgb, flow], [1.0])


def two_streams(n: int, classes: int = 10, seed: int = 0):
    """Stream A is right 90% of the time but unsure of itself; stream B is right 40% of the time
    and always sure: averaging the softmax follows B, a fitted fusion should learn to trust A."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)

    def stream(accuracy: float, confidence: float) -> torch.Tensor:
        right = torch.rand(n, generator=g) < accuracy
        wrong = (labels + torch.randint(1, classes, (n,), generator=g)) % classes
        guess = torch.where(right, labels, wrong)
        return confidence * F.one_hot(guess, classes) + 0.3 * torch.randn(n, classes, generator=g)

    return [stream(0.9, 1.0), stream(0.4, 8.0)], labels


def test_learned_fusion_beats_the_average_on_miscalibrated_streams() -> None:
    train_scores, train_labels = two_streams(1000, seed=0)
    test_scores, test_labels = two_streams(1000, seed=1)
    fusion = LinearScoreFusion.fit(train_scores, train_labels)
    learned = (fusion(test_scores).argmax(-1) == test_labels).float().mean()
    average = (late_fusion(test_scores).argmax(-1) == test_labels).float().mean()
    assert average < 0.5  # mostly B's guesses
    assert learned > 0.8  # mostly A's (alone, A's argmax is right 85% of the time here)
    torch.testing.assert_close(fusion(test_scores).sum(-1), torch.ones(1000))
    weight_a, weight_b = fusion.linear.weight.split(10, dim=1)
    assert weight_a.diagonal().mean() > weight_b.diagonal().mean()


def test_learned_fusion_reads_l2_normalised_softmax_scores() -> None:
    scores = [torch.randn(3, 4), torch.randn(3, 4)]
    features = LinearScoreFusion.features(scores)
    assert features.shape == (3, 8)
    torch.testing.assert_close(features[:, :4].norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(features[:, 4:], F.normalize(scores[1].softmax(-1), dim=-1))


# ----------------------------------------------------------------------------- spatial fusion

A, B = torch.randn(2, 6, 3, 3), torch.randn(2, 6, 3, 3)


def test_sum_max_concat() -> None:
    assert torch.equal(SpatialFusion("sum", 6, 6)(A, B), A + B)
    assert torch.equal(SpatialFusion("max", 6, 6)(A, B), torch.maximum(A, B))
    concat = SpatialFusion("concat", 6, 6)
    assert torch.equal(concat(A, B), torch.cat([A, B], 1)) and concat.out_channels == 12


def test_conv_fusion_starts_as_sum_fusion_and_is_learnable() -> None:
    conv = SpatialFusion("conv", 6, 6)
    torch.testing.assert_close(conv(A, B), A + B)
    assert conv.conv.weight.shape == (6, 12, 1, 1) and conv.conv.weight.requires_grad


def test_bilinear_fusion_is_the_average_outer_product() -> None:
    fused = SpatialFusion("bilinear", 6, 6)(A, B)
    assert fused.shape == (2, 36)
    expected = torch.zeros(2, 6, 6)
    for y in range(3):
        for x in range(3):
            expected += A[:, :, y, x, None] * B[:, None, :, y, x]
    torch.testing.assert_close(fused, (expected / 9).flatten(1))


def test_unequal_widths() -> None:
    with pytest.raises(FlowkitError, match="sum fusion joins maps of equal width, not 6 and 8"):
        SpatialFusion("sum", 6, 8)
    assert SpatialFusion("concat", 6, 8).out_channels == 14
    with pytest.raises(FlowkitError, match="unknown fusion 'add'"):
        SpatialFusion("add", 6, 6)


# ------------------------------------------------------------------------------ two towers

NUM_CLASSES, FRAMES, SIZE = 5, 3, 64


def towers(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    return resnet18(num_classes=NUM_CLASSES), resnet18(num_classes=NUM_CLASSES, in_chans=4)


def fusion_model(**kwargs) -> TwoStreamFusion:
    torch.manual_seed(1)
    return TwoStreamFusion(*towers(), **kwargs).eval()


def clip_input(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, FRAMES, 3, SIZE, SIZE), torch.randn(n, FRAMES, 4, SIZE, SIZE)


@pytest.mark.parametrize(
    "options",
    [
        {"fusion": "sum"},
        {"fusion": "max"},
        {"fusion": "concat"},
        {"fusion": "conv"},
        {"fusion": "bilinear", "temporal_fusion": "average"},
        {"fusion": "conv", "layer": "conv4"},
        {"fusion": "sum", "layer": "conv3", "temporal_fusion": "pool3d"},
        {"fusion": "concat", "temporal_fusion": "average"},
    ],
    ids=lambda o: "-".join(o.values()),
)
def test_fusion_shapes(options) -> None:
    model = fusion_model(**options)
    with torch.no_grad():
        fused, temporal = model(*clip_input())
    assert fused.shape == temporal.shape == (2, NUM_CLASSES)


def test_conv_fusion_at_init_equals_sum_fusion_end_to_end() -> None:
    conv, summed = fusion_model(fusion="conv"), fusion_model(fusion="sum")
    summed.fc.load_state_dict(conv.fc.state_dict())
    rgb, flow = clip_input()
    with torch.no_grad():
        for a, b in zip(conv(rgb, flow), summed(rgb, flow), strict=True):
            torch.testing.assert_close(a, b)


def test_conv3d_fusion_starts_as_a_smoothing_average_of_the_two_towers() -> None:
    model = fusion_model(fusion="concat")
    c = model.spatial.num_features
    assert model.conv3d.weight.shape == (c, 2 * c, 3, 3, 3)
    spatial, temporal = torch.rand(1, c, 1, 1, 1), torch.rand(1, c, 1, 1, 1)
    constant = torch.cat([spatial, temporal], 1).expand(-1, -1, 5, 5, 5)
    with torch.no_grad():
        out = model.conv3d(constant)
    # Away from the zero padding, a constant clip comes out as the two towers' average.
    torch.testing.assert_close(out[:, :, 2, 2, 2], ((spatial + temporal) / 2).flatten(1))


def test_time_order_matters_to_3d_convolution_not_to_3d_pooling() -> None:
    rgb, flow = clip_input()
    reverse = [2, 1, 0]
    with torch.no_grad():
        pooled = fusion_model(fusion="conv", temporal_fusion="pool3d")
        fused, _ = pooled(rgb, flow)
        torch.testing.assert_close(pooled(rgb[:, reverse], flow[:, reverse])[0], fused)
        convolved = fusion_model(fusion="conv", temporal_fusion="conv3d")
        convolved.conv3d.weight.normal_(0, 0.01)  # the initial Gaussian is symmetric in time
        fused, _ = convolved(rgb, flow)
        assert not torch.allclose(convolved(rgb[:, reverse], flow[:, reverse])[0], fused)
        # Every frame counts: changing only the last one changes the fused scores.
        changed = rgb.clone()
        changed[:, -1] = torch.randn_like(changed[:, -1])
        assert not torch.allclose(convolved(changed, flow)[0], fused)


def test_the_temporal_tower_keeps_its_own_head() -> None:
    spatial, temporal = towers()
    original = copy.deepcopy(temporal).eval()
    model = TwoStreamFusion(spatial, temporal).eval()
    assert model.temporal.fc is temporal.fc
    assert isinstance(model.spatial.fc, torch.nn.Identity)  # the spatial head is dropped
    rgb, flow = clip_input()
    with torch.no_grad():
        _, scores = model(rgb, flow)
        features = original.forward_features(flow.flatten(0, 1))  # (N*T, C, 2, 2)
        clips = features.view(2, FRAMES, -1, 2, 2).transpose(1, 2)
        pooled = clips.amax(dim=(2, 3, 4))  # 3D max pool over all T and 2x2, here everything
        torch.testing.assert_close(scores, original.fc(pooled))


def test_invalid_combinations() -> None:
    with pytest.raises(FlowkitError, match="concat fusion changes the width, so it can only be at"):
        fusion_model(fusion="concat", layer="conv4")
    with pytest.raises(FlowkitError, match="use temporal_fusion='average'"):
        fusion_model(fusion="bilinear")
    with pytest.raises(FlowkitError, match="unknown stage 'fc7'"):
        fusion_model(layer="fc7")


def test_builder_by_backbone_name() -> None:
    with torch.device("meta"):
        model = two_stream_fusion(num_classes=101, backbone="bninception", flow_length=5)
    assert model.temporal.in_chans == 10 and model.spatial.in_chans == 3
    assert model.fc.out_features == model.temporal.fc.out_features == 101
    assert model.conv3d.weight.shape == (1024, 2048, 3, 3, 3)
