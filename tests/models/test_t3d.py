"""T3D (Diba et al. 2017, arXiv 1711.08200): its parameter count worked out from the paper's
Table 1 (the public code, MohsenFayyaz89/T3D `models/DenseNet3D.py`, has no TTL to count), the
TTLs' temporal depths and widths, and the extents of a 32x224x224 clip through the network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flowkit.errors import FlowkitError
from flowkit.models import STAGES, create_model, model_info
from flowkit.models.t3d import TemporalTransition

# Table 1, T3D-121: DenseNet-121's blocks, growth k = 32, bottleneck 4k, stem 7x7x7 to 64.
BLOCKS, GROWTH, STEM, CLASSES = (6, 12, 24, 16), 32, 64, 400
TTL_DEPTHS = (6, 4, 4)  # the bold temporal depths of TTL 1, 2, 3 (besides 1 and 3)


def bn(c: int) -> int:
    return 2 * c  # weight and bias


def conv(cin: int, cout: int, t: int, h: int, w: int) -> int:
    return cin * cout * t * h * w  # no bias


def dense_layer(c: int) -> int:
    """BN-ReLU-Conv 1x1x1 c -> 4k, BN-ReLU-Conv 3x3x3 4k -> k."""
    return bn(c) + conv(c, 4 * GROWTH, 1, 1, 1) + bn(4 * GROWTH) + conv(4 * GROWTH, GROWTH, 3, 3, 3)


def ttl(c: int, depth: int) -> int:
    """Three BN-ReLU-Conv branches from c: 1x1x1 to c/4, 3x3x3 and depth x 3 x 3 to c/8 each."""
    return (bn(c) + conv(c, c // 4, 1, 1, 1) + bn(c) + conv(c, c // 8, 3, 3, 3)
            + bn(c) + conv(c, c // 8, depth, 3, 3))  # fmt: skip


def table_count(transition=ttl) -> tuple[int, dict[str, int]]:
    """The parameters of Table 1's network, term by term."""
    terms = {"conv0": conv(3, STEM, 7, 7, 7), "norm0": bn(STEM)}
    c = STEM
    for index, layers in enumerate(BLOCKS, 1):
        terms[f"denseblock{index}"] = sum(dense_layer(c + i * GROWTH) for i in range(layers))
        c += layers * GROWTH
        if index < len(BLOCKS):
            terms[f"ttl{index}"] = transition(c, TTL_DEPTHS[index - 1])
            c //= 2
    terms["norm5"] = bn(c)
    terms["fc"] = c * CLASSES + CLASSES
    return sum(terms.values()), terms


def test_the_count_is_the_arithmetic_of_the_papers_table() -> None:
    total, terms = table_count()
    # The figures the module docstring writes out, each the arithmetic above.
    assert terms == {
        "conv0": 65_856, "norm0": 128,
        "denseblock1": 777_408, "ttl1": 681_472, "denseblock2": 1_804_416, "ttl2": 2_132_992,
        "denseblock3": 4_607_232, "ttl3": 8_525_824, "denseblock4": 3_337_728,
        "norm5": 2_048, "fc": 410_000,
    }  # fmt: skip
    assert total == 22_345_104 == model_info("t3d").params
    with torch.device("meta"):
        model = create_model("t3d")
    assert sum(p.numel() for p in model.parameters()) == total
    for name, count in terms.items():
        assert sum(p.numel() for p in model.get_submodule(name).parameters()) == count, name
    # DenseNet3D-121 (1x1x1 transitions to c/2, the docstring's comparison).
    plain, _ = table_count(lambda c, depth: bn(c) + conv(c, c // 2, 1, 1, 1))
    assert plain == 11_696_528


def test_each_ttl_has_the_tables_temporal_depths_and_halves_the_width() -> None:
    with torch.device("meta"):
        model = create_model("t3d")
    widths_in = (256, 512, 1024)  # DenseNet-121's block outputs: 64 + 6k, 128 + 12k, 256 + 24k
    for index, (depth, cin) in enumerate(zip(TTL_DEPTHS, widths_in, strict=True), 1):
        layer = model.get_submodule(f"ttl{index}")
        assert isinstance(layer, TemporalTransition)
        convs = [next(m for m in b if isinstance(m, nn.Conv3d)) for b in layer.branches]
        assert [c.kernel_size for c in convs] == [(1, 1, 1), (3, 3, 3), (depth, 3, 3)]
        assert [c.in_channels for c in convs] == [cin] * 3
        assert [c.out_channels for c in convs] == [cin // 4, cin // 8, cin // 8]
        assert layer.out_channels == cin // 2
        assert (layer.pool.kernel_size, layer.pool.stride) == (2, 2)
    assert model.denseblock2[0].bottleneck[2].in_channels == 128  # DenseNet-121's widths follow
    assert model.denseblock4[0].bottleneck[2].in_channels == 512


def test_a_32x224x224_clip_ends_as_1x7x7_and_every_ttl_branch_keeps_the_extent() -> None:
    extents = {"conv1": (16, 112, 112), "conv2": (8, 56, 56), "conv3": (4, 28, 28),
               "conv4": (2, 14, 14), "conv5": (1, 7, 7)}  # fmt: skip
    channels = {"conv1": 64, "conv2": 256, "conv3": 512, "conv4": 1024, "conv5": 1024}
    branch_extents: dict[str, list[tuple[int, ...]]] = {}
    with torch.device("meta"):
        model = create_model("t3d")
        for index in (1, 2, 3):
            for branch in model.get_submodule(f"ttl{index}").branches:
                branch.register_forward_hook(
                    lambda m, i, o, n=index: branch_extents.setdefault(f"ttl{n}", []).append(
                        (tuple(i[0].shape[2:]), tuple(o.shape[2:]))))  # fmt: skip
        (x,) = model.example_input()
        assert tuple(x.shape) == (1, 3, 32, 224, 224)
        for stage in STAGES:
            x = model.forward_features(x, start=stage, end=stage)
            assert tuple(x.shape[1:]) == (channels[stage], *extents[stage]), stage
            assert x.shape[1] == model.stage_channels[stage]
        for index, before in ((1, (8, 56, 56)), (2, (4, 28, 28)), (3, (2, 14, 14))):
            assert branch_extents[f"ttl{index}"] == [(before, before)] * 3
        assert tuple(model(model.example_input()[0]).shape) == (1, 400)
    stem = model.conv0
    assert (stem.kernel_size, stem.stride, stem.padding) == ((7, 7, 7), (2, 2, 2), (3, 3, 3))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_the_deep_branch_pads_time_as_pytorchs_same_padding() -> None:
    # An even depth (6) cannot be centred: one more zero frame after than before, PyTorch's rule.
    layer = TemporalTransition(16, 6, (4, 2, 2)).eval()
    branch = layer.branches[2]
    x = torch.randn(1, 16, 8, 5, 5)
    with torch.no_grad():
        activated = branch[1](branch[0](x.clone()))
        expected = F.conv3d(activated, branch[-1].weight, padding="same")
        torch.testing.assert_close(branch(x), expected)
        assert tuple(layer(x).shape) == (1, 8, 4, 2, 2)


def test_a_clip_too_short_for_the_three_ttl_pools_is_a_one_line_error() -> None:
    with torch.device("meta"):
        model = create_model("t3d", num_classes=3)
        two_channels = create_model("t3d", num_classes=3, in_chans=2)
    with pytest.raises(FlowkitError, match=r"at least 29 frames of 29x29 .* not \(1, 3, 16, 64, 64\)"):
        model(torch.randn(1, 3, 16, 64, 64))
    with pytest.raises(FlowkitError, match="of 2 channels"):
        two_channels(torch.randn(1, 3, 32, 32, 32))
    assert model_info("t3d").values == "imagenet"
