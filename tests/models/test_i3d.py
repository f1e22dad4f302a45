"""I3D: the paper's layer table and parameter count, inflation from Inception-v1, pytorch-i3d
checkpoints, and the two-stream sum."""

from __future__ import annotations

import pytest
import torch

from flowkit.errors import FlowkitError
from flowkit.models import (
    i3d,
    i3d_two_stream,
    inception_v1,
    load_pytorch_i3d,
    resnet18,
)
from flowkit.models.i3d import MaxPoolSame, Unit

# piergiaj/pytorch-i3d's InceptionI3d, written out from its source: Mixed blocks as
# (end point, input channels, [b0, b1a, b1b, b2a, b2b, b3b] output channels).
PYTORCH_I3D_STEM = [
    ("Conv3d_1a_7x7", None, 64, 7),  # (end point, input channels (None: the model's), out, kernel)
    ("Conv3d_2b_1x1", 64, 64, 1),
    ("Conv3d_2c_3x3", 64, 192, 3),
]
PYTORCH_I3D_MIXED = [
    ("Mixed_3b", 192, [64, 96, 128, 16, 32, 32]),
    ("Mixed_3c", 256, [128, 128, 192, 32, 96, 64]),
    ("Mixed_4b", 480, [192, 96, 208, 16, 48, 64]),
    ("Mixed_4c", 512, [160, 112, 224, 24, 64, 64]),
    ("Mixed_4d", 512, [128, 128, 256, 24, 64, 64]),
    ("Mixed_4e", 512, [112, 144, 288, 32, 64, 64]),
    ("Mixed_4f", 528, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5b", 832, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5c", 832, [384, 192, 384, 48, 128, 128]),
]


def pytorch_i3d_shapes(in_chans: int = 3, num_classes: int = 400, counters: bool = True) -> dict:
    """Key -> shape of an InceptionI3d state dict (`counters`: with BN's num_batches_tracked)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def unit(prefix: str, cin: int, cout: int, k: int) -> None:
        shapes[f"{prefix}.conv3d.weight"] = (cout, cin, k, k, k)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.bn.{name}"] = (cout,)
        if counters:
            shapes[f"{prefix}.bn.num_batches_tracked"] = ()

    for name, cin, cout, k in PYTORCH_I3D_STEM:
        unit(name, in_chans if cin is None else cin, cout, k)
    for name, cin, (b0, b1a, b1b, b2a, b2b, b3b) in PYTORCH_I3D_MIXED:
        unit(f"{name}.b0", cin, b0, 1)
        unit(f"{name}.b1a", cin, b1a, 1)
        unit(f"{name}.b1b", b1a, b1b, 3)
        unit(f"{name}.b2a", cin, b2a, 1)
        unit(f"{name}.b2b", b2a, b2b, 3)
        unit(f"{name}.b3b", cin, b3b, 1)
    shapes["logits.conv3d.weight"] = (num_classes, 1024, 1, 1, 1)
    shapes["logits.conv3d.bias"] = (num_classes,)
    return shapes


def pytorch_i3d_checkpoint(**kwargs) -> dict[str, torch.Tensor]:
    """A synthetic checkpoint in which tensor number i is filled with i: every tensor findable."""
    return {
        key: torch.full(shape, float(i)) if shape else torch.tensor(i)
        for i, (key, shape) in enumerate(pytorch_i3d_shapes(**kwargs).items())
    }


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_is_the_papers_12m_per_stream_25m_two_stream() -> None:
    # The paper rounds down to whole millions: 12M means [12M, 13M). The exact figure is
    # pytorch-i3d's InceptionI3d (the released model's layers, BN with scale and shift).
    rgb, flow = count(i3d(num_classes=400)), count(i3d(num_classes=400, in_chans=2))
    trainable_in_pytorch_i3d = sum(
        torch.Size(s).numel()
        for k, s in pytorch_i3d_shapes().items()
        if "running" not in k and "num_batches" not in k
    )
    assert rgb == trainable_in_pytorch_i3d == 12_697_264
    assert 12_000_000 <= rgb < 13_000_000
    assert rgb - (1024 * 400 + 400) == 12_287_264  # without the classifier: "12.3M"
    assert flow == rgb - 64 * 7**3  # one input channel fewer in the stem
    two_stream = count(i3d_two_stream(num_classes=400))
    assert two_stream == rgb + flow
    assert 25_000_000 <= two_stream < 26_000_000


def test_layer_table_and_tf_same_padding() -> None:
    features = i3d().features
    assert features.conv1a.conv.kernel_size == (7, 7, 7) and features.conv1a.conv.stride == (
        2,
        2,
        2,
    )
    assert (features.pool2a.kernel, features.pool2a.stride) == ((1, 3, 3), (1, 2, 2))
    assert (features.pool3a.kernel, features.pool3a.stride) == ((1, 3, 3), (1, 2, 2))
    assert (features.pool4a.kernel, features.pool4a.stride) == ((3, 3, 3), (2, 2, 2))
    assert (features.pool5a.kernel, features.pool5a.stride) == ((2, 2, 2), (2, 2, 2))
    eps = {m.eps for m in features.modules() if isinstance(m, torch.nn.BatchNorm3d)}
    assert eps == {1e-3}
    with torch.device("meta"):
        model = i3d()
        # The paper's input, 64 frames of 224x224, gives 8x7x7 at Mixed_5c.
        assert model.forward_features(torch.empty(1, 3, 64, 224, 224)).shape == (1, 1024, 8, 7, 7)
        # TensorFlow's "same": every strided layer gives ceil(size / stride), odd sizes included.
        assert model.forward_features(torch.empty(1, 3, 9, 65, 65)).shape == (1, 1024, 2, 3, 3)


def test_tf_same_padding_puts_the_odd_pixel_at_the_end() -> None:
    # Size 8, kernel 7, stride 2: TensorFlow pads 2 before and 3 after; a kernel of ones on an
    # input of ones counts the real pixels under each window.
    unit = Unit(1, 1, (1, 7), (1, 2)).eval()
    with torch.no_grad():
        unit.conv.weight.fill_(1.0)
        counts = unit(torch.ones(1, 1, 1, 8)) * (1 + unit.bn.eps) ** 0.5
    torch.testing.assert_close(counts.flatten(), torch.tensor([5.0, 7.0, 6.0, 4.0]))
    # Kernel 3, stride 2: nothing before, one (never chosen) after.
    pool = MaxPoolSame((1, 3), (1, 2))
    assert pool(torch.arange(8.0).view(1, 1, 1, 8)).flatten().tolist() == [2.0, 4.0, 6.0, 7.0]


def test_head_pools_2x7x7_then_averages_the_logits() -> None:
    model = i3d(num_classes=3).eval()
    features = torch.randn(1, 1024, 8, 7, 7)
    windows = features.unfold(2, 2, 1).mean(dim=(-1, 3, 4))  # the 7 overlapping 2x7x7 windows
    expected = torch.einsum("nct,kc->nk", windows, model.fc.weight.flatten(1)) / 7 + model.fc.bias
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(features), expected)


def test_inflated_inception_on_a_boring_video_gives_the_2d_activations(
    randomize_batch_norms, features_on_a_boring_video,
) -> None:
    net2d = randomize_batch_norms(inception_v1(num_classes=7)).eval()
    features2d, features3d = features_on_a_boring_video(net2d, i3d(num_classes=7).eval())
    assert features3d.shape[2] == 20
    # Zero padding in time reaches the first and last few steps; the middle sees only the image.
    scale = features2d.abs().max()
    for t in range(7, 13):
        torch.testing.assert_close(features3d[:, :, t], features2d, rtol=0, atol=1e-5 * scale)
    assert (features3d[:, :, 0] - features2d).abs().max() > 1e-3 * scale


@pytest.mark.parametrize(
    "counters", [True, False], ids=["with BN counters", "before PyTorch 0.4.1"]
)
def test_pytorch_i3d_checkpoint_loads(tmp_path, counters) -> None:
    checkpoint = pytorch_i3d_checkpoint(counters=counters)
    torch.save(checkpoint, tmp_path / "rgb_imagenet.pt")
    model = i3d()
    load_pytorch_i3d(model, tmp_path / "rgb_imagenet.pt")
    f = model.features
    assert torch.equal(f.conv1a.conv.weight, checkpoint["Conv3d_1a_7x7.conv3d.weight"])
    assert torch.equal(f.conv2c.bn.running_var, checkpoint["Conv3d_2c_3x3.bn.running_var"])
    assert torch.equal(f.mixed3b.b1a.bn.running_mean, checkpoint["Mixed_3b.b1a.bn.running_mean"])
    assert torch.equal(f.mixed4e.b2b.conv.weight, checkpoint["Mixed_4e.b2b.conv3d.weight"])
    assert torch.equal(f.mixed5c.b3b.bn.bias, checkpoint["Mixed_5c.b3b.bn.bias"])
    assert torch.equal(model.fc.weight, checkpoint["logits.conv3d.weight"])
    assert torch.equal(model.fc.bias, checkpoint["logits.conv3d.bias"])
    # Each tensor of the checkpoint landed in exactly one place, and every float tensor was set.
    loaded = [v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    filled = {int(v.flatten()[0]) for v in loaded}
    assert all(v.unique().numel() == 1 for v in loaded)
    assert len(filled) == len(loaded)
    assert filled == {int(v.flatten()[0]) for k, v in checkpoint.items() if "num_batches" not in k}


def test_flow_checkpoint_and_a_new_classifier() -> None:
    checkpoint = pytorch_i3d_checkpoint(in_chans=2)
    model = i3d(num_classes=101, in_chans=2)
    fc = model.fc.weight.clone()
    with pytest.raises(FlowkitError, match="400 classes and the model 101; pass classifier=False"):
        load_pytorch_i3d(model, checkpoint)
    load_pytorch_i3d(model, checkpoint, classifier=False)
    assert torch.equal(model.fc.weight, fc)
    assert torch.equal(model.features.conv1a.conv.weight, checkpoint["Conv3d_1a_7x7.conv3d.weight"])


def mismatches(tmp_path):
    rgb = pytorch_i3d_checkpoint()
    incomplete = dict(rgb)
    del incomplete["Mixed_4c.b2b.bn.running_var"]
    renamed = {k.replace("conv3d", "conv"): v for k, v in rgb.items()}
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    torch.save(resnet18().state_dict(), tmp_path / "resnet18.pth")
    # "model", "model_state" and "state_dict" entries are unwrapped (weights.WRAPPERS); not others
    torch.save({"weights": rgb, "epoch": 3}, tmp_path / "wrapped.pt")
    return [
        (i3d(in_chans=2), rgb, "an RGB checkpoint \\(3 input channels\\) for a model with 2 input"),
        (i3d(), incomplete, "keys 1 missing \\(first Mixed_4c.b2b.bn.running_var\\)"),
        (
            i3d(),
            renamed,
            "state dict: keys 59 missing \\(first Conv3d_1a_7x7.conv3d.weight\\), 59 unexp",
        ),
        (
            i3d(),
            tmp_path / "resnet18.pth",
            "resnet18.pth is not a pytorch-i3d InceptionI3d state dict",
        ),
        (i3d(), tmp_path / "notes.pt", "notes.pt is not a PyTorch checkpoint that torch.load"),
        (
            i3d(),
            tmp_path / "wrapped.pt",
            "not a PyTorch state dict \\(found dict with entries weights, epoch\\)",
        ),
        (i3d(), tmp_path / "missing.pt", "missing.pt: no such file"),
    ]


def test_a_mismatching_checkpoint_is_a_one_line_error(tmp_path) -> None:
    for model, source, message in mismatches(tmp_path):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(FlowkitError, match=message) as error:
            load_pytorch_i3d(model, source)
        assert "\n" not in str(error.value)
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched


def test_two_stream_i3d_sums_the_streams_logits() -> None:
    model = i3d_two_stream(num_classes=6).eval()
    rgb, flow = model.example_input(2, 32, 8)
    assert (rgb.shape[1], flow.shape[1]) == (3, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(rgb, flow), model.rgb(rgb) + model.flow(flow))
        assert not torch.allclose(model(rgb, flow), model.rgb(rgb))
