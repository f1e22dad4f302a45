"""S3D and S3D-G started from flowkit's 2D Inception-v1 by inflation: the boring-video identity,
`load_init` from an Inception-v1 file, and the identity start of the temporal convolutions."""

from __future__ import annotations

import pytest
import torch

from flowkit.models import cross_modality_weight, inception_v1, inflate_state_dict, load_init, s3d
from flowkit.models.s3d import S3D, TemporalSeparableConv, s3d_g


def _boring(net2d: torch.nn.Module, net3d: S3D, size: int, frames: int = 16):
    """(2D features, 3D features, 2D logits, 3D logits) on one size x size image, and on the clip
    of it repeated `frames` times."""
    net3d.load_state_dict(inflate_state_dict(net2d.state_dict(), net3d))
    image = torch.randn(1, 3, size, size)
    clip = image.unsqueeze(2).expand(-1, -1, frames, -1, -1)
    with torch.no_grad():
        features2d, features3d = net2d.forward_features(image), net3d.forward_features(clip)
        logits2d, logits3d = net2d.forward_head(features2d), net3d.forward_head(features3d)
    return features2d, features3d, logits2d, logits3d


def test_inflated_s3d_on_a_boring_video_gives_the_2d_activations_and_logits(
    randomize_batch_norms,
) -> None:
    net2d = randomize_batch_norms(inception_v1(num_classes=7)).eval()
    net3d = s3d(num_classes=7).eval()
    # 17 x 17 keeps every stride-2 layer's input odd (17, 9, 5, 3) and pool5's even (2), where
    # Inception-v1's TF 'same' padding is S3D's symmetric padding. The temporal halves start as
    # the identity, so nothing in time is approximate: every step equals the 2D map, the first
    # and last included (zero padding in time meets only zero taps), and so do the logits.
    features2d, features3d, logits2d, logits3d = _boring(net2d, net3d, 17)
    assert features3d.shape == (1, 1024, 2, 1, 1)
    scale = float(features2d.abs().max())
    for t in range(features3d.shape[2]):
        torch.testing.assert_close(features3d[:, :, t], features2d, rtol=0, atol=1e-5 * scale)
    assert logits2d.std() > 0.1  # the random network does not collapse its input
    torch.testing.assert_close(logits3d, logits2d, rtol=0, atol=1e-5 * float(logits2d.abs().max()))
    # At an even size 'same' padding puts the odd pixel at the end (Inception-v1, TensorFlow's
    # rule) and S3D pads both sides (torchvision's): the grids shift by a pixel, which no weights
    # can undo. That is the padding, not the inflation: 224 x 224 is near, not equal.
    features2d, features3d, _, _ = _boring(net2d, net3d, 32)
    assert (features3d[:, :, 0] - features2d).abs().max() > 1e-2 * float(features2d.abs().max())


def test_the_temporal_halves_start_as_the_identity() -> None:
    net3d = s3d(num_classes=7)
    state = inflate_state_dict(inception_v1(num_classes=7).state_dict(), net3d)
    units = [(n, m) for n, m in net3d.named_modules() if isinstance(m, TemporalSeparableConv)]
    assert len(units) == 2 + 2 * 9  # Conv2d_1a, Conv2d_2c, two per Inception block
    for name, unit in units:
        kernel = state[f"{name}.1.0.weight"]
        channels, k = unit[1][0].out_channels, unit[1][0].kernel_size[0]
        expected = torch.zeros(channels, channels, k, 1, 1)
        expected[range(channels), range(channels), k // 2] = 1.0
        assert torch.equal(kernel, expected), name
        eps = unit[1][1].eps
        assert torch.equal(state[f"{name}.1.1.running_var"], torch.full((channels,), 1 - eps))
        assert not state[f"{name}.1.1.running_mean"].any() and not state[f"{name}.1.1.bias"].any()
    net3d.load_state_dict(state)
    unit = net3d.features[3][1].eval()  # Conv2d_2c's 3x1x1 convolution, BN, ReLU
    x = torch.rand(2, 192, 5, 3, 3)  # non-negative, as after the spatial half's ReLU
    with torch.no_grad():
        torch.testing.assert_close(unit(x), x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("in_chans", [3, 2], ids=["rgb", "flow"])
def test_load_init_starts_s3d_and_s3d_g_from_an_inception_v1_file(tmp_path, in_chans) -> None:
    net2d = inception_v1()  # ImageNet's 1000 classes: the models keep their own classifiers
    with torch.no_grad():
        for tensor in net2d.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_()
    torch.save(net2d.state_dict(), tmp_path / "inception_v1.pth")
    plain, gated = s3d(num_classes=5, in_chans=in_chans), s3d_g(num_classes=5, in_chans=in_chans)
    own = {k: v.clone() for k, v in gated.state_dict().items()
           if "gates" in k or "3.2." in k or k.startswith("classifier.")}  # fmt: skip
    classifier = plain.classifier[1].weight.clone()
    load_init(plain, tmp_path / "inception_v1.pth")
    load_init(gated, tmp_path / "inception_v1.pth")
    stem = net2d.features.conv1a.conv.weight
    if in_chans != 3:  # cross-modality initialisation, then inflation
        stem = cross_modality_weight(stem, in_chans)
    assert torch.equal(plain.features[0][0][0].weight, stem.unsqueeze(2))
    block = plain.features[9]  # Mixed_4c
    spatial = net2d.features.mixed4c.b2b.conv.weight.unsqueeze(2)
    assert torch.equal(block.branch2[1][0][0].weight, spatial)
    assert torch.equal(block.branch3[1][1].running_var, net2d.features.mixed4c.b3b.bn.running_var)
    assert torch.equal(plain.classifier[1].weight, classifier)
    for key, value in gated.state_dict().items():  # S3D-G: S3D's tensors, its gates fresh
        assert torch.equal(value, own[key] if key in own else plain.state_dict()[key]), key
    assert len(own) == 1 + 4 * 9 + 2
