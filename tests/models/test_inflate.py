"""Inflation of single tensors and the errors of `inflate_state_dict`."""

from __future__ import annotations

import pytest
import torch

from flowkit.errors import FlowkitError
from flowkit.models import i3d, inception_v1, inflate_state_dict, inflate_weight


def test_a_kernel_is_repeated_in_time_and_divided() -> None:
    kernel = torch.randn(8, 3, 7, 7)
    inflated = inflate_weight(kernel, (8, 3, 5, 7, 7))
    assert inflated.shape == (8, 3, 5, 7, 7)
    for t in range(5):
        torch.testing.assert_close(inflated[:, :, t], kernel / 5)
    torch.testing.assert_close(inflated.sum(dim=2), kernel)  # same response to a constant clip


def test_a_linear_classifier_becomes_a_1x1x1_convolution_and_the_rest_is_copied() -> None:
    weight = torch.randn(10, 1024)
    assert torch.equal(inflate_weight(weight, (10, 1024, 1, 1, 1)).flatten(1), weight)
    statistics = torch.randn(64)
    copied = inflate_weight(statistics, (64,))
    assert torch.equal(copied, statistics) and copied is not statistics
    with pytest.raises(
        FlowkitError, match=r"cannot inflate shape \(8, 3, 7, 7\) to \(8, 2, 7, 7, 7\)"
    ):
        inflate_weight(torch.randn(8, 3, 7, 7), (8, 2, 7, 7, 7))


def test_inflate_state_dict_errors_are_one_line() -> None:
    target = i3d(num_classes=10)
    state = inception_v1(num_classes=10).state_dict()
    del state["features.mixed4b.b0.bn.bias"]
    state["fc.extra"] = torch.zeros(1)
    with pytest.raises(
        FlowkitError, match=r"keys 1 missing \(first features.mixed4b.b0.bn.bias\), 1 unexp"
    ):
        inflate_state_dict(state, target)
    wrong_classes = inception_v1(num_classes=11).state_dict()
    with pytest.raises(
        FlowkitError, match=r"^fc.weight: cannot inflate shape \(11, 1024\)"
    ) as error:
        inflate_state_dict(wrong_classes, target)
    assert "\n" not in str(error.value)
