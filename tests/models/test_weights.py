"""Starting a network from a checkpoint (`flowkit.models.weights.load_init`): flowkit's own,
torchvision's, pytorch-i3d's and tsn-pytorch's BN-Inception layouts; cross-modality
initialisation, inflation, the classifier, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_i3d import pytorch_i3d_checkpoint
from test_resnet import torchvision_layout
from torch import nn
from tsn_pytorch import TsnPytorchBNInception

from flowkit.data.values import RGB_VALUES, rgb_values
from flowkit.errors import FlowkitError
from flowkit.models import (
    bninception,
    create_model,
    cross_modality_weight,
    i3d,
    inception_v1,
    inflate_state_dict,
    list_models,
    load_init,
    model_info,
    resnet18,
    resnet18_3d,
    tsn,
)


def randomized(net: nn.Module, seed: int = 0) -> nn.Module:
    """Every tensor random and far from a fresh network's: convolution biases, BN statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(int(torch.randint(1, 100, (), generator=generator)))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 1.5 + 0.5)
            elif name.endswith("bn.weight") or name.endswith("_bn.weight"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.dim() == 1:  # biases, BN shifts, running means
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)
            else:  # He-normal, so that activations keep their scale over 30 layers
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2 / fan_in) ** 0.5)
    return net


def tsn_pytorch_file(tmp_path, counters: bool = True, **kwargs) -> tuple[nn.Module, object]:
    """tsn-pytorch's BNInception with random values, saved as its ImageNet file is named."""
    peer = randomized(TsnPytorchBNInception(**kwargs)).eval()
    state = peer.state_dict()
    if not counters:  # the 2017 file predates BN's batch counters (PyTorch 0.4.1)
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "bn_inception-9f5701afb96c8044.pth"
    torch.save(state, path)
    return peer, path


# ---- tsn-pytorch's BN-Inception -----------------------------------------------------------------


@pytest.mark.parametrize("counters", [True, False], ids=["485 tensors", "before PyTorch 0.4.1"])
def test_tsn_pytorch_bninception_gives_the_peers_logits(tmp_path, counters) -> None:
    peer, path = tsn_pytorch_file(tmp_path, counters)
    assert len(torch.load(path, weights_only=True)) == (485 if counters else 416)
    model = bninception().eval()
    load_init(model, path)
    x = torch.randn(2, 3, 224, 224) * 60  # BGR 0..255 minus the mean: the values it expects
    with torch.no_grad():
        expected, got = peer(x), model(x)
    assert expected.std() > 0.1  # the random network does not collapse its input
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_tsn_pytorch_bninception_is_loaded_strictly(tmp_path) -> None:
    _, path = tsn_pytorch_file(tmp_path)
    state = torch.load(path, weights_only=True)
    del state["inception_4c_double_3x3_1.bias"]  # a convolution bias is a tensor like any other
    torch.save(state, tmp_path / "incomplete.pth")
    model = bninception()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FlowkitError) as error:
        load_init(model, tmp_path / "incomplete.pth")
    assert str(error.value) == (
        f"--init {tmp_path / 'incomplete.pth'} is not a tsn-pytorch BNInception state dict: "
        "keys 1 missing (first inception_4c_double_3x3_1.bias)"
    )
    state["inception_4c_double_3x3_1.bias"] = torch.zeros(160)
    state["inception_6a_1x1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(FlowkitError, match=r"keys 1 unexpected \(first inception_6a_1x1.weight\)"):
        load_init(model, tmp_path / "extra.pth")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_tsn_pytorch_weights_start_both_tsn_streams(tmp_path) -> None:
    peer, path = tsn_pytorch_file(tmp_path)
    for modality, channels in (("rgb", 3), ("flow", 10)):
        model = tsn(num_classes=101, modality=modality)
        fc = model.backbone.fc.weight.clone()
        load_init(model, path)
        stem = model.backbone.features.conv1
        expected = peer.conv1_7x7_s2.weight
        if channels != 3:  # cross-modality initialisation
            expected = cross_modality_weight(expected, channels)
        assert torch.equal(stem.conv.weight, expected)
        # The convolution's bias is folded into the BN mean that follows it.
        folded = peer.conv1_7x7_s2_bn.running_mean - peer.conv1_7x7_s2.bias
        assert torch.equal(stem.bn.running_mean, folded)
        assert torch.equal(model.backbone.fc.weight, fc)  # 1000 ImageNet classes: its own kept


# ---- flowkit's and torchvision's layouts --------------------------------------------------------


def test_a_torchvision_file_starts_a_temporal_stream(tmp_path) -> None:
    checkpoint = {k: torch.randn(s) if s else torch.tensor(3) for k, s in torchvision_layout(18).items()}
    torch.save(checkpoint, tmp_path / "resnet18-f37072fd.pth")
    model = resnet18(num_classes=101, in_chans=10)
    fc = model.fc.weight.clone()
    load_init(model, tmp_path / "resnet18-f37072fd.pth")
    for key, value in model.state_dict().items():
        if key == "conv1.weight":
            assert torch.equal(value, cross_modality_weight(checkpoint[key], 10))
        elif key.startswith("fc."):
            assert key != "fc.weight" or torch.equal(value, fc)
        else:
            assert torch.equal(value, checkpoint[key]), key


def test_a_flowkit_run_checkpoint_starts_a_tsn(tmp_path) -> None:
    trained = tsn(num_classes=4, backbone="tiny", modality="flow", consensus="weighted")
    randomized(trained.backbone)
    torch.save({"model": trained.state_dict(), "epoch": 3}, tmp_path / "final.pt")
    model = tsn(num_classes=4, backbone="tiny", modality="flow")
    load_init(model, tmp_path / "final.pt")
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, trained.backbone.state_dict()[key]), key


def test_a_2d_checkpoint_is_inflated_for_a_3d_network(tmp_path) -> None:
    for net2d, net3d in ((inception_v1(num_classes=7), i3d(num_classes=7)),
                         (resnet18(), resnet18_3d(num_classes=5))):  # fmt: skip
        randomized(net2d)
        torch.save(net2d.state_dict(), tmp_path / "2d.pth")
        load_init(net3d, tmp_path / "2d.pth")
        reference = net3d.state_dict()
        fits = {k: v for k, v in net2d.state_dict().items()
                if not (k.startswith("fc.") and v.shape[0] != reference[k].shape[0])}  # fmt: skip
        expected = inflate_state_dict(fits, {k: reference[k] for k in fits})
        for key, value in expected.items():
            assert torch.equal(reference[key], value), key


def test_pytorch_i3d_weights_through_load_init(tmp_path) -> None:
    checkpoint = pytorch_i3d_checkpoint(in_chans=2)
    torch.save(checkpoint, tmp_path / "flow_imagenet.pt")
    model = i3d(num_classes=51, in_chans=2)
    load_init(model, tmp_path / "flow_imagenet.pt")
    assert torch.equal(model.features.mixed4e.b2b.conv.weight, checkpoint["Mixed_4e.b2b.conv3d.weight"])
    assert model.fc.weight.shape[0] == 51  # Kinetics' 400 classes: the model's own classifier


def test_weights_that_do_not_fit_say_which_tensors_and_shapes_differ(tmp_path) -> None:
    state = resnet18().state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 32, 3, 3)
    state["layer2.0.bn1.bias"] = torch.zeros(7)
    del state["layer4.1.bn2.running_var"]
    torch.save(state, tmp_path / "bad.pth")
    model = resnet18(num_classes=101)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FlowkitError) as error:
        load_init(model, tmp_path / "bad.pth")
    assert str(error.value) == (
        f"--init {tmp_path / 'bad.pth'} does not fit resnet18: 2 tensors of other shapes "
        "(layer1.0.conv1.weight: checkpoint (64, 32, 3, 3), model (64, 64, 3, 3); "
        "layer2.0.bn1.bias: checkpoint (7,), model (128,)), "
        "keys 1 missing (first layer4.1.bn2.running_var)"
    )
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_checkpoint_in_no_layout_the_model_reads(tmp_path) -> None:
    torch.save(resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(FlowkitError) as error:
        load_init(bninception(), tmp_path / "resnet18.pth")
    assert str(error.value) == (
        f"--init {tmp_path / 'resnet18.pth'} is in no checkpoint layout bninception reads: it has "
        "no first convolution features.conv1.conv.weight (flowkit), conv1_7x7_s2.weight "
        "(tsn-pytorch)"
    )
    with pytest.raises(FlowkitError, match="i3d_two_stream has two towers"):
        load_init(create_model("i3d_two_stream"), tmp_path / "resnet18.pth")
    with pytest.raises(FlowkitError, match=r"missing\.pth: no such file"):
        load_init(bninception(), tmp_path / "missing.pth")


# ---- the values each network's weights expect ---------------------------------------------------


def test_every_model_names_values_the_data_side_produces() -> None:
    assert {model_info(name).values for name in list_models()} <= set(RGB_VALUES)
    assert model_info("bninception").values == "caffe"
    assert model_info("resnet50").values == "imagenet"
    assert model_info("i3d").values == "unit"


def test_caffe_values_are_bgr_0_255_minus_tsns_mean() -> None:
    # tsn-pytorch: Stack(roll=True) reverses RGB to BGR, ToTorchFormatTensor(div=False) keeps
    # 0..255, GroupNormalize subtracts input_mean [104, 117, 128] and divides by input_std [1].
    frames = np.random.default_rng(0).integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)
    values = rgb_values(frames, "caffe")
    expected = frames[..., ::-1].astype(np.float32) - np.array([104, 117, 128], np.float32)
    np.testing.assert_array_equal(values, expected)
    assert values.dtype == np.float32


def test_bninception_stride_2_blocks_pool_as_caffe() -> None:
    # Caffe's 3x3/2 max pool has no padding (windows start at 0, 2, ...); at odd sizes the block
    # still gives ceil(size / 2), as its padded 3x3/2 convolutions.
    pool = bninception().features.inception_3c.branch_pool
    row = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    assert pool(row)[0, 0, 0].tolist() == [2.0, 4.0, 6.0, 7.0]
    assert pool(torch.randn(1, 1, 7, 7)).shape[-2:] == (4, 4)
