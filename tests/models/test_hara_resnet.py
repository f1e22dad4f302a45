"""Hara et al.'s 3D ResNets: kenshohara/3D-ResNets-PyTorch's tensor layout and parameter counts,
its strides (16x112x112 -> 1x4x4), and shortcut A's zero padding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flowkit.data.values import rgb_values
from flowkit.errors import FlowkitError
from flowkit.models import STAGES, create_model, model_info
from flowkit.models.hara_resnet import ZeroPadShortcut

# kenshohara/3D-ResNets-PyTorch models/resnet.py (master, 540a0ea) `generate_model`.
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}  # fmt: skip
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def hara_layout(depth: int, shortcut: str = "B", classes: int = 400) -> dict[str, tuple[int, ...]]:
    """Key -> shape of Hara's `generate_model(depth, shortcut_type=shortcut, n_classes=classes)`
    state dict, in its order, written from models/resnet.py's rules: conv1 (64, 3, 7, 7, 7),
    `_make_layer` giving block 0 of a layer a downsample when `stride != 1 or in_planes !=
    planes * expansion` (type B: `conv1x1x1` + BN; type A: a function, no tensors)."""
    layout: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.{name}"] = (channels,)
        layout[f"{prefix}.num_batches_tracked"] = ()

    layout["conv1.weight"] = (64, 3, 7, 7, 7)
    bn("bn1", 64)
    kind, blocks = DEPTHS[depth]
    expansion = 1 if kind == "basic" else 4
    in_planes = 64
    for layer, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), 1):
        stride = 1 if layer == 1 else 2
        for b in range(count):
            p = f"layer{layer}.{b}"
            if kind == "basic":  # conv3x3x3, bn1, conv3x3x3, bn2
                layout[f"{p}.conv1.weight"] = (planes, in_planes, 3, 3, 3)
                bn(f"{p}.bn1", planes)
                layout[f"{p}.conv2.weight"] = (planes, planes, 3, 3, 3)
                bn(f"{p}.bn2", planes)
            else:  # conv1x1x1, bn1, conv3x3x3 (strided), bn2, conv1x1x1, bn3
                layout[f"{p}.conv1.weight"] = (planes, in_planes, 1, 1, 1)
                bn(f"{p}.bn1", planes)
                layout[f"{p}.conv2.weight"] = (planes, planes, 3, 3, 3)
                bn(f"{p}.bn2", planes)
                layout[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1, 1)
                bn(f"{p}.bn3", planes * 4)
            downsample = b == 0 and (stride != 1 or in_planes != planes * expansion)
            if downsample and shortcut == "B":
                layout[f"{p}.downsample.0.weight"] = (planes * expansion, in_planes, 1, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            in_planes = planes * expansion
    layout["fc.weight"] = (classes, in_planes)
    layout["fc.bias"] = (classes,)
    return layout


def hara_parameter_count(depth: int, shortcut: str = "B", classes: int = 400) -> int:
    """Parameters of Hara's network: every tensor of its state dict but BN's buffers."""
    return sum(
        math.prod(shape)
        for key, shape in hara_layout(depth, shortcut, classes).items()
        if not key.endswith(BN_BUFFERS)
    )


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_layout_and_parameter_count_are_haras(depth: int, shortcut: str) -> None:
    with torch.device("meta"):
        model = create_model(f"hara_r3d_{depth}", shortcut=shortcut)
    state = model.state_dict()
    layout = hara_layout(depth, shortcut)
    assert list(state) == list(layout)
    assert {k: tuple(v.shape) for k, v in state.items()} == layout
    count = sum(p.numel() for p in model.parameters())
    assert count == hara_parameter_count(depth, shortcut)
    if shortcut == "B":  # the code's default: the registered figure
        assert count == model_info(f"hara_r3d_{depth}").params


def test_the_registered_counts_are_the_arithmetic() -> None:
    expected = {18: 33_409_104, 34: 63_718_736, 50: 47_018_576, 101: 86_064_720}
    assert {d: hara_parameter_count(d) for d in DEPTHS} == expected
    assert {d: model_info(f"hara_r3d_{d}").params for d in DEPTHS} == expected


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_16x112x112_clip_ends_as_1x4x4(depth: int) -> None:
    # conv1 strides space only, the max pool and the first conv of layers 2-4 stride time too:
    # I3D's inflation (time kept by the pool) or torchvision's R3D (no max pool) would differ.
    extents = {"conv1": (16, 56, 56), "conv2": (8, 28, 28), "conv3": (4, 14, 14),
               "conv4": (2, 7, 7), "conv5": (1, 4, 4)}  # fmt: skip
    with torch.device("meta"):
        model = create_model(f"hara_r3d_{depth}")
        (x,) = model.example_input()
        assert tuple(x.shape) == (1, 3, 16, 112, 112)
        for stage in STAGES:
            x = model.forward_features(x, start=stage, end=stage)
            assert tuple(x.shape[2:]) == extents[stage], stage
            assert x.shape[1] == model.stage_channels[stage]
        assert tuple(model(model.example_input()[0]).shape) == (1, 400)
    stem = model.conv1
    assert (stem.kernel_size, stem.stride, stem.padding) == ((7, 7, 7), (1, 2, 2), (3, 3, 3))


def test_shortcut_a_is_haras_zero_padded_subsampling() -> None:
    # Hara's `_downsample_basic_block`: F.avg_pool3d(x, kernel_size=1, stride=stride), then zeros
    # concatenated to `planes` channels.
    x = torch.randn(2, 64, 5, 7, 7)
    out = F.avg_pool3d(x, kernel_size=1, stride=2)
    zeros = torch.zeros(out.size(0), 128 - out.size(1), out.size(2), out.size(3), out.size(4))
    expected = torch.cat([out, zeros], dim=1)
    assert torch.equal(ZeroPadShortcut(128, 2)(x), expected)

    model = create_model("hara_r3d_18", num_classes=5, shortcut="A").eval()
    assert isinstance(model.layer2[0].downsample, ZeroPadShortcut)
    assert model.layer1[0].downsample is None  # 64 -> 64, stride 1: plain identity
    with torch.no_grad():
        assert model(torch.randn(1, 3, 8, 32, 32)).shape == (1, 5)


def test_an_unknown_shortcut_is_a_one_line_error() -> None:
    with pytest.raises(FlowkitError, match="shortcut must be A or B, not 'C'"):
        create_model("hara_r3d_18", shortcut="C")


def test_a_checkpoint_saved_by_haras_main_loads(tmp_path) -> None:
    # Hara's main.py `save_checkpoint`: {'epoch', 'arch', 'state_dict', 'optimizer', 'scheduler'};
    # the CVPR2018 branch's saved the nn.DataParallel model, whose keys start with 'module.'
    # (util_scripts/remove_dataparallel.py strips it: '.'.join(k.split('.')[1:])).
    layout = hara_layout(18, classes=700)  # r3d18_K_200ep.pth: --n_pretrain_classes 700
    torch.manual_seed(1)
    state = {
        f"module.{k}": (torch.randint(0, 9, s) if k.endswith("tracked") else torch.randn(s))
        for k, s in layout.items()
    }
    file = tmp_path / "r3d18_K_200ep.pth"
    torch.save({"epoch": 200, "arch": "resnet-18", "state_dict": state}, file)

    checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    loaded = {".".join(k.split(".")[1:]): v for k, v in checkpoint["state_dict"].items()}
    model = create_model("hara_r3d_18", num_classes=700)
    model.load_state_dict(loaded)  # strict: every name and shape is Hara's
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[f"module.{key}"]), key


def test_hara_kinetics_values_are_main_pys_defaults() -> None:
    # main.py: get_mean_std(value_scale=1, dataset='kinetics') (mean.py), ToTensor (0..1, RGB),
    # ScaleValue(1), Normalize(mean, std).
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    mean = np.array([0.4345, 0.4051, 0.3775], np.float32)
    std = np.array([0.2768, 0.2713, 0.2737], np.float32)
    expected = (frames.astype(np.float32) / 255.0 - mean) / std
    np.testing.assert_allclose(rgb_values(frames, "hara_kinetics"), expected, rtol=1e-6)
    assert all(model_info(f"hara_r3d_{d}").values == "hara_kinetics" for d in DEPTHS)


def test_inflated_from_torchvision_resnet18_it_sees_a_boring_video_as_the_image(
    randomize_batch_norms, features_on_a_boring_video,
) -> None:
    # Shortcut B gives torchvision's names and shapes inflated, so a 2D ResNet-18 starts it.
    net2d = randomize_batch_norms(create_model("resnet18", num_classes=7)).eval()
    net3d = create_model("hara_r3d_18", num_classes=7).eval()
    features2d, features3d = features_on_a_boring_video(net2d, net3d)
    assert features3d.shape[2] == 10  # 160 frames, temporal stride 16
    # Zero padding in time reaches all but the middle steps (a deep temporal receptive field).
    scale = features2d.abs().max()
    for t in (4, 5):
        torch.testing.assert_close(features3d[:, :, t], features2d, rtol=0, atol=1e-5 * scale)
    assert (features3d[:, :, 0] - features2d).abs().max() > 1e-3 * scale
