"""The I3D paper's baselines (Carreira & Zisserman 2017, section 2, Table 1): their parameter
counts by arithmetic from the paper's text, and what each must do that a wrong one would not."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from flowkit.errors import FlowkitError
from flowkit.models import create_model, model_info

CLASSES = 400  # Kinetics, the dataset of Table 1
# Inception-v1 up to its global average pool: the registered ImageNet network without its
# 1024 -> 1000 classifier (inception_v1's own count is checked by test_registry).
TOWER = model_info("inception_v1").params - (1024 * 1000 + 1000)
STEM = 7 * 7 * 64  # Conv3d_1a_7x7's weights per input channel


def count(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name).parameters())


def near(ours: int, paper: float, tolerance: float) -> bool:
    return abs(ours - paper) / paper <= tolerance


def test_convnet_lstm_count_is_inception_v1_an_lstm_and_a_classifier() -> None:
    bn = 2 * 1024  # BN of the pooled features
    # PyTorch's LSTM: four gates, each with input and recurrent weights and two biases.
    lstm = 4 * 512 * (1024 + 512) + 2 * 4 * 512
    fc = 512 * CLASSES + CLASSES
    expected = TOWER + bn + lstm + fc
    assert expected == 5_599_904 + 2_048 + 3_149_824 + 205_200 == 8_956_976
    assert count("convnet_lstm") == expected == model_info("convnet_lstm").params
    assert near(expected, 9e6, 0.005)  # Table 1: 9M


def test_3d_convnet_count_is_c3d_with_bn_and_its_two_4096_layers() -> None:
    widths = (3, 64, 128, 256, 256, 512, 512, 512, 512)  # conv1a ... conv5b, each with BN
    convs = sum(27 * cin * cout + 2 * cout for cin, cout in itertools.pairwise(widths))
    fc6 = 512 * 1 * 4 * 4 * 4096 + 2 * 4096  # pool5 is 512x1x4x4; no bias, BN
    fc7 = 4096 * 4096 + 2 * 4096
    fc8 = 4096 * CLASSES + CLASSES
    expected = convs + fc6 + fc7 + fc8
    assert expected == 27_658_688 + 33_562_624 + 16_785_408 + 1_638_800 == 79_645_520
    assert count("i3d_paper_3d_convnet") == expected == model_info("i3d_paper_3d_convnet").params
    # Table 1's 79M is rounded; without fc7 the network would have 63M, far from it.
    assert near(expected, 79e6, 0.01) and not near(expected - fc7, 79e6, 0.1)


def test_3d_fused_count_is_two_towers_and_the_3d_fusion() -> None:
    flow_tower = TOWER + (20 - 3) * STEM  # 10 stacked flow fields: 20 input channels
    fusion = 27 * 2048 * 512 + 2 * 512  # 3x3x3 convolution of both towers' 1024 channels, BN
    fc = 512 * CLASSES + CLASSES
    expected = TOWER + flow_tower + fusion + fc
    assert expected == 5_599_904 + 5_653_216 + 28_312_576 + 205_200 == 39_770_896
    assert count("i3d_paper_3d_fused") == expected == model_info("i3d_paper_3d_fused").params
    assert near(expected, 39e6, 0.025)  # Table 1: 39M, rounded


# ---- ConvNet+LSTM --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lstm_model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("convnet_lstm", num_classes=5).eval()


def test_convnet_lstm_depends_on_frame_order_and_only_on_frames_so_far(lstm_model) -> None:
    clip = torch.randn(1, 3, 4, 32, 32)
    later_changed = clip.clone()
    later_changed[:, :, 2:] = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        steps = lstm_model.forward_all_steps(clip)
        assert steps.shape == (1, 4, 5)
        assert torch.equal(lstm_model(clip), steps[:, -1])  # the test output: the last frame's
        # A per-frame average would not see the order; the LSTM does.
        assert not torch.allclose(lstm_model(clip.flip(2)), lstm_model(clip), atol=1e-4)
        # Recurrent, not bidirectional: steps 0 and 1 ignore frames 2 and 3.
        changed = lstm_model.forward_all_steps(later_changed)
    assert torch.allclose(changed[:, :2], steps[:, :2], atol=1e-6)
    assert not torch.allclose(changed[:, 2:], steps[:, 2:], atol=1e-4)


def test_convnet_lstm_says_the_clip_it_takes(lstm_model) -> None:
    with pytest.raises(FlowkitError, match=r"clips \(N, C, T, H, W\) of 3 channels, not .*\(1, 2, 4") as error:
        lstm_model(torch.randn(1, 2, 4, 32, 32))
    assert "\n" not in str(error.value)


# ---- 3D-ConvNet ----------------------------------------------------------------------------------


def test_3d_convnet_has_bn_after_every_layer_and_halves_time_from_pool1() -> None:
    with torch.device("meta"):
        model = create_model("i3d_paper_3d_convnet")
        (clip,) = model.example_input(2)
        assert tuple(clip.shape) == (2, 3, 16, 112, 112)
        # 16 -> 8 (pool1: the paper's temporal stride 2) -> 4 -> 2 -> 1 -> 1; 112 -> ... -> 4.
        after_pool1 = model.pool1(model.conv1a(clip))
        assert tuple(after_pool1.shape[2:]) == (8, 56, 56)
        assert tuple(model.forward_features(clip).shape) == (2, 512, 1, 4, 4)
        assert model(clip).shape == (2, CLASSES)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(convs) == 8 and len(norms) == 10  # 8 convolutions and fc6, fc7
    assert all(conv.bias is None for conv in convs)  # BN's shift replaces it
    assert model.fc6.in_features == 8192


def test_3d_convnet_says_the_clip_its_fc6_fixes() -> None:
    model = create_model("i3d_paper_3d_convnet", num_classes=5, size=16).eval()
    with pytest.raises(FlowkitError, match=r"16 frames of 16x16 .*not \(1, 3, 8, 16, 16\)") as error:
        model(torch.randn(1, 3, 8, 16, 16))
    assert "\n" not in str(error.value)


# ---- 3D-Fused ------------------------------------------------------------------------------------


def test_3d_fused_fuses_5x7x7_grids_after_the_last_convolution() -> None:
    with torch.device("meta"):
        model = create_model("i3d_paper_3d_fused")
        rgb, flow = model.example_input(2)
        assert tuple(rgb.shape) == (2, 5, 3, 224, 224) and tuple(flow.shape) == (2, 5, 20, 224, 224)
        # Both towers' Mixed_5c, before Inception-v1's average pool: 5 x 7 x 7 (section 2.4).
        assert tuple(model.forward_towers(rgb, flow).shape) == (2, 2048, 5, 7, 7)
        assert model(rgb, flow).shape == (2, CLASSES)
    assert model.fusion.conv.weight.shape == (512, 2048, 3, 3, 3)
    assert model.pool.kernel == (3, 3, 3)


def test_3d_fused_towers_are_2d_and_apart_until_the_fusion() -> None:
    torch.manual_seed(0)
    model = create_model("i3d_paper_3d_fused", num_classes=5, flow_length=2).eval()
    rgb, flow = model.example_input(1, 32, 3)
    changed = flow.clone()
    changed[:, 1] = torch.randn_like(flow[:, 1])  # the flow of time step 1 only
    with torch.no_grad():
        before, after = model.forward_towers(rgb, flow), model.forward_towers(rgb, changed)
        assert not torch.allclose(model(rgb, flow), model(rgb, changed), atol=1e-5)
    assert torch.equal(after[:, :1024], before[:, :1024])  # the RGB tower never sees the flow
    assert torch.equal(after[:, 1024:, [0, 2]], before[:, 1024:, [0, 2]])  # nor other steps
    assert not torch.allclose(after[:, 1024:, 1], before[:, 1024:, 1])
    with pytest.raises(FlowkitError, match="as many flow stacks as RGB frames, not 2 and 3"):
        model(rgb, flow[:, :2])


@pytest.mark.parametrize(("name", "towers"), [("convnet_lstm", ("cnn",)), ("i3d_paper_3d_fused", ("rgb",))])
def test_imagenet_inception_v1_weights_fit_the_towers_but_its_classifier(name, towers) -> None:
    with torch.device("meta"):
        imagenet = {k: v.shape for k, v in create_model("inception_v1").state_dict().items()}
        model = create_model(name)
    for tower in towers:
        ours = {k: v.shape for k, v in model.get_submodule(tower).state_dict().items()}
        assert ours == {k: s for k, s in imagenet.items() if not k.startswith("fc.")}
