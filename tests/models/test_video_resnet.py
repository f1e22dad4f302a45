"""R3D, MC3 and R(2+1)D: torchvision's layout and counts, the mid-channel rule, output extents,
Kinetics values, and R3D / MC3 inflated from a 2D ResNet-18."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowkit.data.values import rgb_values
from flowkit.errors import FlowkitError
from flowkit.models import create_model, inflate_state_dict, model_info, resnet18
from flowkit.models.weights import LAYOUTS, from_layout, load_init

# torchvision/models/video/resnet.py (pytorch/vision, read at d075d13a; the same architecture since
# v0.4, when the video models came): a state dict's keys and shapes, written out from that code.
# conv kinds: "3d" Conv3DSimple (3x3x3), "2d" Conv3DNoTemporal (1x3x3), "2+1d" Conv2Plus1D.
R3D = ("3d",) * 4
MC3 = ("3d", "2d", "2d", "2d")
R2PLUS1D = ("2+1d",) * 4
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def torchvision_video_layout(
    convs: tuple[str, ...], layers: tuple[int, ...], num_classes: int = 400
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's VideoResNet(BasicBlock, convs, layers, stem) state dict, in
    its order: BasicStem for R3D / MC3, R2Plus1dStem for R(2+1)D."""
    layout: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.{name}"] = (channels,)
        layout[f"{prefix}.num_batches_tracked"] = ()

    def conv(prefix: str, kind: str, cin: int, cout: int, mid: int) -> None:
        if kind == "2+1d":  # Sequential(1x3x3 conv, BN, ReLU, 3x1x1 conv)
            layout[f"{prefix}.0.weight"] = (mid, cin, 1, 3, 3)
            bn(f"{prefix}.1", mid)
            layout[f"{prefix}.3.weight"] = (cout, mid, 3, 1, 1)
        else:
            layout[f"{prefix}.weight"] = (cout, cin, 3 if kind == "3d" else 1, 3, 3)

    if convs[0] == "2+1d":
        layout["stem.0.weight"] = (45, 3, 1, 7, 7)
        bn("stem.1", 45)
        layout["stem.3.weight"] = (64, 45, 3, 1, 1)
        bn("stem.4", 64)
    else:
        layout["stem.0.weight"] = (64, 3, 3, 7, 7)
        bn("stem.1", 64)
    inplanes = 64
    for index, (kind, planes, blocks) in enumerate(zip(convs, (64, 128, 256, 512), layers, strict=True), 1):
        for b in range(blocks):
            p = f"layer{index}.{b}"
            # BasicBlock.__init__: one midplanes for both convolutions, from its own arguments
            mid = (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)
            conv(f"{p}.conv1.0", kind, inplanes, planes, mid)
            bn(f"{p}.conv1.1", planes)
            conv(f"{p}.conv2.0", kind, planes, planes, mid)
            bn(f"{p}.conv2.1", planes)
            if b == 0 and index > 1:  # _make_layer: stride 2 there, so a downsample
                layout[f"{p}.downsample.0.weight"] = (planes, inplanes, 1, 1, 1)
                bn(f"{p}.downsample.1", planes)
            inplanes = planes
    layout["fc.weight"] = (num_classes, 512)
    layout["fc.bias"] = (num_classes,)
    return layout


def parameter_count(layout: dict[str, tuple[int, ...]]) -> int:
    return sum(int(np.prod(s)) for k, s in layout.items() if not k.endswith(BUFFERS))


NETWORKS = {  # name: (convs, layers, torchvision's published num_params or None)
    "r3d_18": (R3D, (2, 2, 2, 2), 33_371_472),  # R3D_18_Weights.KINETICS400_V1.meta
    "mc3_18": (MC3, (2, 2, 2, 2), 11_695_440),  # MC3_18_Weights.KINETICS400_V1.meta
    "r2plus1d_18": (R2PLUS1D, (2, 2, 2, 2), 31_505_325),  # R2Plus1D_18_Weights.KINETICS400_V1.meta
    "r2plus1d_34": (R2PLUS1D, (3, 4, 6, 3), None),  # no torchvision weights: the code's count
}


@pytest.mark.parametrize("name", NETWORKS)
def test_the_count_is_torchvisions(name: str) -> None:
    convs, layers, published = NETWORKS[name]
    reference = parameter_count(torchvision_video_layout(convs, layers))
    if published is not None:
        assert reference == published  # the layout above is torchvision's
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == reference == model_info(name).params


def test_r2plus1d_34_count_by_hand() -> None:
    """R(2+1)D-34's count from torchvision's rules, written as sums: stem, four layers, fc."""
    def conv2plus1d(cin: int, cout: int, mid: int) -> int:  # 1x3x3, BN(mid), 3x1x1
        return cin * mid * 9 + 2 * mid + mid * cout * 3

    stem = 3 * 45 * 49 + 2 * 45 + 45 * 64 * 3 + 2 * 64
    total, inplanes = stem, 64
    for planes, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True):
        for b in range(blocks):
            mid = 27 * inplanes * planes // (9 * inplanes + 3 * planes)
            total += conv2plus1d(inplanes, planes, mid) + conv2plus1d(planes, planes, mid)
            total += 2 * 2 * planes  # the two BNs after the convolutions
            if b == 0 and planes > 64:  # stride 2: a 1x1x1 downsample and its BN
                total += inplanes * planes + 2 * planes
            inplanes = planes
    total += 512 * 400 + 400
    assert total == model_info("r2plus1d_34").params


@pytest.mark.parametrize("name", NETWORKS)
def test_a_torchvision_state_dict_loads_as_it_is(tmp_path, name: str) -> None:
    convs, layers, _ = NETWORKS[name]
    layout = torchvision_video_layout(convs, layers)
    model = create_model(name)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout
    assert list(model.state_dict()) == list(layout)  # the same order as well
    checkpoint = {
        k: torch.randint(0, 5, s) if k.endswith("num_batches_tracked") else torch.randn(s)
        for k, s in layout.items()
    }
    torch.save(checkpoint, tmp_path / f"{name}.pth")
    model.load_state_dict(torch.load(tmp_path / f"{name}.pth", weights_only=True))
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint[key]), key
    load_init(model, tmp_path / f"{name}.pth")  # --init reads it too


def test_r2plus1d_mid_channels_are_one_per_block() -> None:
    with torch.device("meta"):
        model = create_model("r2plus1d_18")
    first, second = model.layer2[0], model.layer2[1]
    # 64 -> 128: floor(27*64*128 / (9*64 + 3*128)) = 230 for both convolutions of the block,
    # though the second maps 128 -> 128, for which the rule alone gives 288 (as in layer2[1]).
    assert first.conv1[0][0].out_channels == first.conv2[0][0].out_channels == 230
    assert second.conv1[0][0].out_channels == 288
    assert model.layer1[0].conv1[0][0].out_channels == 144
    assert model.stem[0].out_channels == 45


@pytest.mark.parametrize(("name", "time"), [("r3d_18", 2), ("mc3_18", 16), ("r2plus1d_18", 2),
                                            ("r2plus1d_34", 2)])
def test_output_extent_at_the_papers_input(name: str, time: int) -> None:
    # 16x112x112: space /16 (stem and layers 2-4 stride 2, no max pool), time /8 where layers
    # 2-4 convolve in time; MC3's 1x3x3 layers never stride in time.
    with torch.device("meta"):
        model = create_model(name)
        (clip,) = model.example_input(2)
        assert clip.shape == (2, 3, 16, 112, 112)
        assert model.forward_features(clip).shape == (2, 512, time, 7, 7)
        assert model(clip).shape == (2, 400)


def test_flow_clips_and_a_wrong_shape() -> None:
    with torch.device("meta"):
        model = create_model("r2plus1d_18", num_classes=101, in_chans=2)
        assert model(torch.empty(1, 2, 16, 112, 112)).shape == (1, 101)
        with pytest.raises(FlowkitError, match=r"of 2 channels, not \(1, 3, 16, 112, 112\) \(16 frames of 112x112") as e:
            model(torch.empty(1, 3, 16, 112, 112))
    assert "\n" not in str(e.value)


def test_kinetics_values_are_torchvisions_video_normalisation() -> None:
    # torchvision/transforms/_presets.py VideoClassification: convert_image_dtype (x / 255), then
    # normalize with mean (0.43216, 0.394666, 0.37645), std (0.22803, 0.22145, 0.216989).
    frames = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    mean = np.array([0.43216, 0.394666, 0.37645])
    std = np.array([0.22803, 0.22145, 0.216989])
    np.testing.assert_allclose(rgb_values(frames, "kinetics"), (frames / 255 - mean) / std,
                               rtol=1e-5, atol=1e-5)
    assert all(model_info(name).values == "kinetics" for name in NETWORKS)


def _without_max_pool(net2d: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The 2D ResNet's layer4 map with its max pool left out: the video ResNets' stem has none."""
    x = net2d.relu(net2d.bn1(net2d.conv1(image)))
    for layer in (net2d.layer1, net2d.layer2, net2d.layer3, net2d.layer4):
        x = layer(x)
    return x


@pytest.mark.parametrize(("name", "time", "clean"), [("r3d_18", 20, range(8, 12)),
                                                     ("mc3_18", 160, range(10, 150))])
def test_inflated_from_resnet18_on_a_boring_video(randomize_batch_norms, name, time, clean) -> None:
    net2d = randomize_batch_norms(resnet18(num_classes=7)).eval()
    net3d = create_model(name, num_classes=7).eval()
    renamed = from_layout(net2d.state_dict(), net3d, LAYOUTS["torchvision-resnet"], "resnet18")
    net3d.load_state_dict(inflate_state_dict(renamed, net3d))
    image = torch.randn(1, 3, 16, 16)
    video = image.unsqueeze(2).expand(-1, -1, 160, -1, -1)
    with torch.no_grad():
        features2d, features3d = _without_max_pool(net2d, image), net3d.forward_features(video)
    assert features3d.shape[2] == time
    # Zero padding in time reaches the first and last steps; the middle sees only the image.
    scale = features2d.abs().max()
    for t in clean:
        torch.testing.assert_close(features3d[:, :, t], features2d, rtol=0, atol=1e-5 * scale)
    assert (features3d[:, :, 0] - features2d).abs().max() > 1e-3 * scale  # the border is not


def test_init_from_a_2d_resnet18_file_inflates(tmp_path) -> None:
    net2d = resnet18()  # ImageNet's 1000 classes: the model keeps its own classifier
    torch.save(net2d.state_dict(), tmp_path / "resnet18.pth")
    net3d = create_model("r3d_18", num_classes=101)
    classifier = net3d.fc.weight.clone()
    load_init(net3d, tmp_path / "resnet18.pth")
    stem = net2d.conv1.weight.detach()
    assert torch.allclose(net3d.stem[0].weight, stem.unsqueeze(2).expand(-1, -1, 3, -1, -1) / 3)
    assert torch.equal(net3d.layer2[0].conv1[1].running_var, net2d.layer2[0].bn1.running_var)
    assert torch.equal(net3d.fc.weight, classifier)
    with pytest.raises(FlowkitError, match="r2plus1d_18"):  # no 2D twin: stops in one line
        load_init(create_model("r2plus1d_18"), tmp_path / "resnet18.pth")
