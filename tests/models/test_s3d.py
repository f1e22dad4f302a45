"""S3D: torchvision's state-dict layout and parameter count, separable convolutions, the output
extent at full size, and the Kinetics values its weights expect; S3D-G's gates."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from flowkit.data.values import rgb_values
from flowkit.models import create_model, model_info, s3d, s3d_g
from flowkit.models.s3d import SelfGating

# torchvision/models/video/s3d.py (pytorch/vision, commit 0216591), written out: S3D.features as
# (index in the Sequential, SepInceptionBlock3D's in_planes, b0_out, b1_mid, b1_out, b2_mid,
# b2_out, b3_out); indices 1, 4, 7 and 13 are max pools.
TORCHVISION_BLOCKS = [
    (5, 192, 64, 96, 128, 16, 32, 32),
    (6, 256, 128, 128, 192, 32, 96, 64),
    (8, 480, 192, 96, 208, 16, 48, 64),
    (9, 512, 160, 112, 224, 24, 64, 64),
    (10, 512, 128, 128, 256, 24, 64, 64),
    (11, 512, 112, 144, 288, 32, 64, 64),
    (12, 528, 256, 160, 320, 32, 128, 128),
    (14, 832, 256, 160, 320, 32, 128, 128),
    (15, 832, 384, 192, 384, 48, 128, 128),
]
TORCHVISION_NUM_PARAMS = 8_320_048  # S3D_Weights.KINETICS400_V1.meta["num_params"]


def torchvision_s3d_shapes(num_classes: int = 400, in_chans: int = 3) -> dict:
    """Key -> shape of torchvision's S3D state dict: Conv3dNormActivation is a Sequential
    (0: Conv3d without bias, 1: BatchNorm3d, 2: ReLU), TemporalSeparableConv a Sequential of two
    of them (1xkxk, then kx1x1), the classifier Sequential(Dropout, Conv3d)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_norm_act(prefix: str, cin: int, cout: int, kernel=(1, 1, 1)) -> None:
        shapes[f"{prefix}.0.weight"] = (cout, cin, *kernel)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.1.{name}"] = (cout,)
        shapes[f"{prefix}.1.num_batches_tracked"] = ()

    def separable(prefix: str, cin: int, cout: int, k: int) -> None:
        conv_norm_act(f"{prefix}.0", cin, cout, (1, k, k))
        conv_norm_act(f"{prefix}.1", cout, cout, (k, 1, 1))

    separable("features.0", in_chans, 64, 7)
    conv_norm_act("features.2", 64, 64)
    separable("features.3", 64, 192, 3)
    for index, cin, b0, b1_mid, b1, b2_mid, b2, b3 in TORCHVISION_BLOCKS:
        block = f"features.{index}"
        conv_norm_act(f"{block}.branch0", cin, b0)
        conv_norm_act(f"{block}.branch1.0", cin, b1_mid)
        separable(f"{block}.branch1.1", b1_mid, b1, 3)
        conv_norm_act(f"{block}.branch2.0", cin, b2_mid)
        separable(f"{block}.branch2.1", b2_mid, b2, 3)
        conv_norm_act(f"{block}.branch3.1", cin, b3)
    shapes["classifier.1.weight"] = (num_classes, 1024, 1, 1, 1)
    shapes["classifier.1.bias"] = (num_classes,)
    return shapes


def trainable(shapes: dict) -> int:
    return sum(
        torch.Size(s).numel() for k, s in shapes.items()
        if "running" not in k and "num_batches" not in k
    )


def test_parameter_count_is_torchvisions() -> None:
    with torch.device("meta"):
        count = sum(p.numel() for p in s3d().parameters())
    assert count == trainable(torchvision_s3d_shapes()) == TORCHVISION_NUM_PARAMS
    assert model_info("s3d").params == TORCHVISION_NUM_PARAMS


def test_torchvisions_state_dict_loads_every_tensor_in_its_place() -> None:
    # Tensor number i of the torchvision-layout state dict is filled with i.
    shapes = torchvision_s3d_shapes(num_classes=400)
    state = {k: torch.full(s, float(i)) if s else torch.tensor(i)
             for i, (k, s) in enumerate(shapes.items())}
    model = s3d()
    model.load_state_dict(state)  # strict: same keys, same shapes
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert torch.equal(model.features[0][0][0].weight, state["features.0.0.0.weight"])
    assert torch.equal(model.features[15].branch3[1][1].running_var,
                       state["features.15.branch3.1.1.running_var"])
    assert torch.equal(model.classifier[1].bias, state["classifier.1.bias"])


def test_every_3d_convolution_is_separable() -> None:
    # S3D's point: no k x k x k kernel; each is spatial (1 x k x k) or temporal (k x 1 x 1).
    kernels = [m.kernel_size for m in s3d().modules() if isinstance(m, nn.Conv3d)]
    assert all(t == 1 or (h, w) == (1, 1) for t, h, w in kernels)
    assert (7, 1, 1) in kernels and (1, 7, 7) in kernels and (3, 1, 1) in kernels
    bns = {(m.eps, m.momentum) for m in s3d().modules() if isinstance(m, nn.BatchNorm3d)}
    assert bns == {(1e-3, 1e-3)}


def test_full_size_extent_and_head() -> None:
    with torch.device("meta"):
        model = create_model("s3d")
        # 16 frames of 224x224 give 2x7x7 at Mixed_5c: the head's 2x7x7 pool leaves one position.
        assert model.forward_features(torch.empty(1, 3, 16, 224, 224)).shape == (1, 1024, 2, 7, 7)
        assert model(torch.empty(1, 3, 64, 224, 224)).shape == (1, 400)
    model = s3d(num_classes=3).eval()
    features = torch.randn(1, 1024, 8, 7, 7)
    windows = features.unfold(2, 2, 1).mean(dim=(-1, 3, 4))  # 7 overlapping 2x7x7 windows
    conv = model.classifier[1]
    expected = torch.einsum("nct,kc->nk", windows, conv.weight.flatten(1)) / 7 + conv.bias
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(features), expected)


def test_kinetics_values_are_torchvisions() -> None:
    # torchvision/transforms/_presets.py VideoClassification: 0..1, then this mean and std.
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    mean, std = [0.43216, 0.394666, 0.37645], [0.22803, 0.22145, 0.216989]
    expected = (frames / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(rgb_values(frames, "kinetics"), expected, rtol=1e-5, atol=1e-5)
    assert model_info("s3d").values == "kinetics"


def test_s3d_g_gates_where_tf_slim_does_and_counts_them() -> None:
    # tensorflow/models research/slim/nets/s3dg.py: self_gating (a bias-free C x C 1x1x1 conv,
    # "transformer_W") after Conv2d_2c_3x3 (192 channels) and, in i3d_utils.inception_block_v1_3d,
    # on each of the four branches of every Inception block.
    gated = [192] + [c for _, _, b0, _, b1, _, b2, b3 in TORCHVISION_BLOCKS for c in (b0, b1, b2, b3)]
    with torch.device("meta"):
        model = s3d_g()
    gates = [m for m in model.modules() if isinstance(m, SelfGating)]
    assert [g.transform.in_channels for g in gates] == gated
    assert all(g.transform.bias is None for g in gates)
    count = sum(p.numel() for p in model.parameters())
    assert count == TORCHVISION_NUM_PARAMS + sum(c * c for c in gated) == model_info("s3d_g").params


def test_s3d_g_starts_from_torchvisions_s3d_weights() -> None:
    shapes = torchvision_s3d_shapes()
    state = {k: torch.randn(s) if s else torch.tensor(0) for k, s in shapes.items()}
    model = s3d_g()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected
    assert missing and all(".gates." in k or k == "features.3.2.transform.weight" for k in missing)


def test_a_gate_scales_each_channel_by_the_sigmoid_of_the_mixed_means() -> None:
    gate = SelfGating(3)
    x = torch.randn(2, 3, 4, 5, 5)
    with torch.no_grad():
        weights = torch.sigmoid(x.mean(dim=(2, 3, 4)) @ gate.transform.weight.flatten(1).T)
        torch.testing.assert_close(gate(x), x * weights[:, :, None, None, None])


def test_a_flow_stream_takes_two_channels() -> None:
    model = s3d(num_classes=5, in_chans=2).eval()
    assert model.features[0][0][0].in_channels == 2
    (clip,) = model.example_input(1, 32, 8)
    with torch.no_grad():
        assert model(clip).shape == (1, 5)
