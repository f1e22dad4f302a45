"""ResNet: torchvision's state-dict layout (so its ImageNet files load), and inflation to 3D."""

from __future__ import annotations

import pytest
import torch

from flowkit.models import resnet18, resnet18_3d, resnet50


def torchvision_layout(depth: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's `resnet18()` / `resnet50()` state dict (1000 classes), in
    torchvision's order, written out from its architecture rather than from flowkit's code."""
    layout: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.{name}"] = (channels,)
        layout[f"{prefix}.num_batches_tracked"] = ()

    layout["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    blocks, expansion = {18: ((2, 2, 2, 2), 1), 50: ((3, 4, 6, 3), 4)}[depth]
    cin = 64
    for layer, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), 1):
        for b in range(count):
            p = f"layer{layer}.{b}"
            if expansion == 1:
                layout[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
                bn(f"{p}.bn1", planes)
                layout[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
            else:
                layout[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
                bn(f"{p}.bn1", planes)
                layout[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
                layout[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
                bn(f"{p}.bn3", planes * 4)
            if b == 0 and (layer > 1 or cin != planes * expansion):
                layout[f"{p}.downsample.0.weight"] = (planes * expansion, cin, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            cin = planes * expansion
    layout["fc.weight"] = (1000, cin)
    layout["fc.bias"] = (1000,)
    return layout


@pytest.mark.parametrize(
    ("depth", "build", "params"), [(18, resnet18, 11_689_512), (50, resnet50, 25_557_032)]
)
def test_a_torchvision_checkpoint_file_loads(tmp_path, depth, build, params) -> None:
    layout = torchvision_layout(depth)
    model = build()
    state = model.state_dict()
    assert list(state) == list(layout)
    assert {k: tuple(v.shape) for k, v in state.items()} == layout
    assert sum(p.numel() for p in model.parameters()) == params  # torchvision's published counts

    checkpoint = {
        k: torch.randint(0, 5, shape) if k.endswith("num_batches_tracked") else torch.randn(shape)
        for k, shape in layout.items()
    }
    torch.save(checkpoint, tmp_path / "resnet.pth")
    model.load_state_dict(torch.load(tmp_path / "resnet.pth", weights_only=True))
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint[key]), key


def test_resnet50_strides_in_the_3x3_convolution_as_torchvision() -> None:
    # torchvision's ResNet v1.5: the same shapes as v1, the stride moved from the first 1x1 conv.
    block = resnet50().layer2[0]
    assert block.conv1.stride == (1, 1)
    assert block.conv2.stride == (2, 2)
    assert block.downsample[0].stride == (2, 2)


def test_inflated_resnet_on_a_boring_video_gives_the_2d_activations(
    randomize_batch_norms, features_on_a_boring_video,
) -> None:
    net2d = randomize_batch_norms(resnet18(num_classes=7)).eval()
    features2d, features3d = features_on_a_boring_video(net2d, resnet18_3d(num_classes=7).eval())
    assert features3d.shape[2] == 20  # temporal stride 8
    # Zero padding in time reaches the first and last few steps; the middle sees only the image.
    scale = features2d.abs().max()
    for t in range(6, 14):
        torch.testing.assert_close(features3d[:, :, t], features2d, rtol=0, atol=1e-5 * scale)
    assert (features3d[:, :, 0] - features2d).abs().max() > 1e-3 * scale  # the border is not
