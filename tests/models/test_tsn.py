"""TSN: consensus values, shared weights over snippets, modalities and their defaults."""

from __future__ import annotations

import pytest
import torch

from flowkit.errors import FlowkitError
from flowkit.models import TSN, SegmentConsensus, resnet18, tsn
from flowkit.models.init import batch_norms

SCORES = torch.tensor(
    [
        [[1.0, 0.0, 2.0], [3.0, -1.0, 0.0], [-2.0, 4.0, 1.0]],
        [[0.5, 0.5, 0.5], [0.0, 1.0, 0.0], [1.0, 0.0, -1.0]],
    ]
)  # (N=2, K=3 segments, 3 classes)


def test_average_consensus() -> None:
    expected = torch.tensor([[2 / 3, 1.0, 1.0], [0.5, 0.5, -0.5 / 3]])
    torch.testing.assert_close(SegmentConsensus("avg")(SCORES), expected)


def test_max_consensus() -> None:
    expected = torch.tensor([[3.0, 4.0, 2.0], [1.0, 1.0, 0.5]])
    assert torch.equal(SegmentConsensus("max")(SCORES), expected)


def test_weighted_consensus_starts_as_the_average_and_learns_weights() -> None:
    consensus = SegmentConsensus("weighted", num_segments=3)
    torch.testing.assert_close(consensus(SCORES), SCORES.mean(dim=1))
    with torch.no_grad():
        consensus.weight.copy_(torch.tensor([0.5, 0.3, 0.2]))
    expected = torch.tensor(
        [[0.5 + 0.9 - 0.4, -0.3 + 0.8, 1.0 + 0.2], [0.25 + 0.2, 0.25 + 0.3, 0.25 - 0.2]]
    )
    torch.testing.assert_close(consensus(SCORES), expected)
    assert consensus.weight.requires_grad
    with pytest.raises(FlowkitError, match="built for 3 segments, got 2"):
        consensus(SCORES[:, :2])


def test_one_backbone_scores_every_snippet() -> None:
    model = TSN(resnet18(num_classes=5), num_segments=3).eval()
    snippets = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        per_snippet = torch.stack([model.backbone(snippets[:, k]) for k in range(3)], dim=1)
        torch.testing.assert_close(model(snippets), per_snippet.mean(dim=1))
        # Average consensus takes any number of snippets: TSN tests on 25.
        assert model(torch.randn(1, 25, 3, 32, 32)).shape == (1, 5)


def test_rgb_difference_is_taken_between_consecutive_frames() -> None:
    model = tsn(num_classes=5, backbone="resnet18", modality="rgbdiff", snippet_length=2).eval()
    assert model.backbone.in_chans == 6 and model.in_chans == 9
    frames = torch.randn(1, 3, 9, 32, 32)  # 3 snippets of 3 RGB frames each
    (x,) = model.example_input(1, 32)
    assert x.shape == frames.shape
    diffs = torch.cat(
        [frames[:, :, 3:6] - frames[:, :, 0:3], frames[:, :, 6:9] - frames[:, :, 3:6]], 2
    )
    with torch.no_grad():
        expected = model.backbone(diffs.flatten(0, 1)).view(1, 3, 5).mean(dim=1)
        torch.testing.assert_close(model(frames), expected)


@pytest.mark.parametrize(
    ("modality", "channels", "dropout"), [("rgb", 3, 0.8), ("flow", 10, 0.7), ("rgbdiff", 15, 0.8)]
)
def test_paper_defaults_per_modality(modality, channels, dropout) -> None:
    with torch.device("meta"):
        model = tsn(modality=modality)
    assert type(model.backbone).__name__ == "BNInception"
    assert model.backbone.in_chans == channels
    assert model.backbone.dropout.p == dropout
    assert model.num_segments == 3 and model.consensus.kind == "avg"


def test_partial_bn_is_on_by_default() -> None:
    model = tsn(num_classes=5, backbone="resnet18").train()
    first, *others = batch_norms(model.backbone)
    before = [bn.running_mean.clone() for bn in (first, *others)]
    model(torch.randn(2, 3, 3, 32, 32))
    assert not torch.equal(first.running_mean, before[0])
    assert all(torch.equal(bn.running_mean, b) for bn, b in zip(others, before[1:], strict=True))
    unfrozen = tsn(num_classes=5, backbone="resnet18", partial_bn=False)
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_bad_arguments() -> None:
    with pytest.raises(
        FlowkitError, match="unknown modality 'depth'; modalities are rgb, rgbdiff, flow"
    ):
        tsn(modality="depth")
    with pytest.raises(FlowkitError, match="unknown consensus 'median'"):
        tsn(backbone="resnet18", consensus="median")
    with pytest.raises(FlowkitError, match="TSN takes a 2D backbone"):
        tsn(backbone="i3d")
