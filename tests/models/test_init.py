"""TSN's cross-modality initialisation and partial BN."""

from __future__ import annotations

import copy

import torch
from torch import nn

from flowkit.models import cross_modality_init, cross_modality_weight, i3d, partial_bn, resnet18
from flowkit.models.init import batch_norms


def test_cross_modality_weight_averages_rgb_and_replicates_it() -> None:
    rgb = torch.randn(64, 3, 7, 7)
    flow = cross_modality_weight(rgb, 10)
    assert flow.shape == (64, 10, 7, 7)
    average = (rgb[:, 0] + rgb[:, 1] + rgb[:, 2]) / 3
    for channel in range(10):
        torch.testing.assert_close(flow[:, channel], average)


def test_an_rgb_checkpoint_starts_a_temporal_stream() -> None:
    rgb_state = resnet18(num_classes=101).state_dict()
    temporal = resnet18(num_classes=101, in_chans=20)  # L = 10 flow fields
    temporal.load_state_dict(cross_modality_init(rgb_state, 20))
    for key, value in temporal.state_dict().items():
        if key == "conv1.weight":
            expected = rgb_state[key].mean(dim=1, keepdim=True).expand(-1, 20, -1, -1)
            torch.testing.assert_close(value, expected)
        else:
            assert torch.equal(value, rgb_state[key]), key


def test_an_rgb_i3d_starts_a_flow_i3d() -> None:
    rgb_state = i3d().state_dict()
    flow = i3d(in_chans=2)
    flow.load_state_dict(cross_modality_init(rgb_state, 2))
    stem = rgb_state["features.conv1a.conv.weight"]
    assert torch.allclose(flow.features.conv1a.conv.weight[:, 1], stem.mean(dim=1))


def _small_net() -> nn.Module:
    return resnet18(num_classes=4)


def test_partial_bn_updates_only_the_first_layers_statistics() -> None:
    model = _small_net()
    partial_bn(model)
    model.eval()
    model.train()  # partial BN survives a mode switch
    first, *others = batch_norms(model)
    before = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in others]
    stem_output = {}
    model.conv1.register_forward_hook(lambda m, i, out: stem_output.setdefault("x", out.detach()))
    x = torch.randn(4, 3, 32, 32)
    old_mean, old_var = first.running_mean.clone(), first.running_var.clone()
    model(x)
    # The first BN: one momentum step toward this batch's statistics.
    conv = stem_output["x"]
    batch_mean = conv.mean(dim=(0, 2, 3))
    batch_var = conv.var(dim=(0, 2, 3), unbiased=True)
    m = first.momentum
    torch.testing.assert_close(first.running_mean, (1 - m) * old_mean + m * batch_mean)
    torch.testing.assert_close(first.running_var, (1 - m) * old_var + m * batch_var)
    assert first.training
    # Every other BN: statistics untouched, normalising with them (eval mode), affine frozen.
    for bn, (mean, var) in zip(others, before, strict=True):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
        assert not bn.training
        assert not bn.weight.requires_grad and not bn.bias.requires_grad
    assert first.weight.requires_grad and first.bias.requires_grad
    assert all(
        p.requires_grad
        for name, p in model.named_parameters()
        if "bn" not in name and "downsample.1" not in name
    )


def test_partial_bn_is_kept_by_a_copy_of_the_model() -> None:
    model = _small_net()
    partial_bn(model)
    twin = copy.deepcopy(model).train()
    later = batch_norms(twin)[1:]
    before = [bn.running_mean.clone() for bn in later]
    twin(torch.randn(2, 3, 32, 32))
    assert all(torch.equal(bn.running_mean, b) for bn, b in zip(later, before, strict=True))
    assert all(bn.training for bn in batch_norms(model))  # the original was not touched
