"""Hidden two-stream: the reference's parameter count, its flow-to-stream mapping, the
unsupervised loss left for the trainer, and one-line errors for the wrong input."""

from __future__ import annotations

import pytest
import torch

from flowkit.errors import FlowkitError
from flowkit.models import create_model, model_info
from flowkit.models.hidden_two_stream import flow_to_stream


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_is_the_prototxts_arithmetic():
    with torch.device("meta"):
        model = create_model("hidden_two_stream")
    assert _count(model.motionnet) == 42_319_860
    assert _count(model.temporal) == 134_684_133  # VGG-16: 138,357,544 + 9,792 - 4,097,000 + 413,797
    assert _count(model) == model_info("hidden_two_stream").params == 177_003_993
    assert model.temporal.features[0].in_channels == 20 and model.temporal.fc8.out_features == 101


def test_the_temporal_stream_sees_clipped_flow_as_centred_uint8_codes():
    flow2 = torch.tensor([0.0, 0.5, 1.0, 2.0, -1.0, -3.0]).view(1, 6, 1, 1)  # units of 20 px
    codes = flow_to_stream(flow2, (2, 2))[0, :, 0, 0]
    expected = torch.tensor([127.5, 191.25, 255.0, 255.0, 0.0, 0.0]) - 128
    assert torch.allclose(codes, expected)


def test_training_adds_motionnets_unsupervised_loss_and_it_reaches_motionnet():
    torch.manual_seed(0)
    model = create_model("hidden_two_stream", num_classes=3, width=0.0625).train()
    (clip,) = model.example_input(2, 32)
    model(clip)
    aux = model.auxiliary_loss
    assert aux is not None and aux.dim() == 0 and torch.isfinite(aux)
    aux.backward()
    assert model.motionnet.predict6.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.temporal.parameters())  # the classifier's loss is apart
    model.eval()
    with torch.no_grad():
        logits = model(clip)
    assert logits.shape == (2, 3) and model.auxiliary_loss is None
    model.train()
    with torch.no_grad():
        model(clip)
    assert model.auxiliary_loss is None  # no gradients, nothing to train


@pytest.mark.parametrize("shape, needle", [
    ((1, 3, 8, 32, 32), r"expects clips \(N, 3, 11, H, W\): 11 RGB frames, got \(1, 3, 8, 32, 32\)"),
    ((1, 3, 11, 16, 16), "needs frames of 32x32 or more"),
])
def test_the_wrong_clip_is_a_one_line_error(shape, needle):
    model = create_model("hidden_two_stream", num_classes=3, width=0.0625).eval()
    with pytest.raises(FlowkitError, match=needle) as error:
        model(torch.zeros(shape))
    assert "\n" not in str(error.value)


def test_a_flow_stream_is_refused():
    with pytest.raises(FlowkitError, match="computes its own flow from RGB clips"):
        create_model("hidden_two_stream", in_chans=2)
