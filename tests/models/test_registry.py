"""The same tests for every model `create_model` knows: shape, gradient, train/eval, save/load,
and the metadata each registers (parameter count, first convolution, classifier)."""

from __future__ import annotations

import ast
import copy
import functools
import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import flowkit.models
from flowkit.errors import FlowkitError
from flowkit.models import (
    I3D,
    STAGES,
    Backbone,
    ResNet,
    TwoStreamFusion,
    create_model,
    info_of,
    list_models,
    model_info,
    reset_classifier,
    resnet18,
)
from flowkit.models.resnet import BasicBlock

NUM_CLASSES = 5
BATCH = 2
SIZE = 48  # conv5 is 2x2: BN in train mode still sees more than one value per channel
FRAMES = 8  # 3D networks: 8 frames; fusion: 2 time steps
MODELS = list_models()
# Networks whose classifier fixes the clip extent (C3D's fc6) are built for a small clip.
SMALL_CLIP = {"c3d": {"size": 16}, "i3d_paper_3d_convnet": {"size": 16}}
# (size, frames) for networks without early pooling (the video ResNets keep 56x56 up to layer2),
# which take seconds at 8x48x48 on 2 cores: 4x32x32 still leaves their layer4 2x2.
SMALL_CLIPS = dict.fromkeys(("r3d_18", "mc3_18", "r2plus1d_18", "r2plus1d_34"), (32, 4))
SMALL_CLIPS["t3d"] = (32, 32)  # T3D needs 29 frames of 29x29 (three TTL pools after two halvings)
SMALL_CLIPS["slowfast_r50"] = (32, 8)  # 2 Slow frames; res5 1x1, BN sees 4 (Slow), 16 values
# Networks that run a 2D Inception-v1 on every frame (the I3D paper's baselines): 2 of 32x32.
SMALL_CLIPS |= dict.fromkeys(("convnet_lstm", "i3d_paper_3d_fused"), (32, 2))
# Clip networks whose convolutions are 2D, run on each frame (an LSTM joins the frames).
PER_FRAME_2D = {"convnet_lstm"}
# Clip networks whose 2D stem takes the clip's frames stacked (MotionNet: 11 frames x 3 channels).
STACKED_FRAMES = {"hidden_two_stream"}


def small_input(model: nn.Module) -> tuple[Tensor, ...]:
    frames = 2 if isinstance(model, TwoStreamFusion) else FRAMES
    size, frames = SMALL_CLIPS.get(info_of(model).name, (SIZE, frames))
    return model.example_input(BATCH, size, frames)



def outputs(model: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    result = model(*inputs)
    return result if isinstance(result, tuple) else (result,)


def build(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """A fresh copy of the model (initialising the large ones takes longer than copying them)."""
    return copy.deepcopy(_built(name, seed, tuple(sorted(kwargs.items()))))


@functools.cache
def _built(name: str, seed: int, kwargs: tuple) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=NUM_CLASSES, **{**SMALL_CLIP.get(name, {}), **dict(kwargs)})


def test_registry_names_every_family() -> None:
    assert set(MODELS) >= {
        "resnet18", "resnet50", "bninception", "inception_v1",
        "resnet18_3d", "resnet50_3d", "i3d", "i3d_two_stream", "tsn", "two_stream_fusion",
    }  # fmt: skip


def test_unknown_name_is_a_one_line_error() -> None:
    with pytest.raises(FlowkitError, match="unknown model 'resnet5'; models are resnet18") as error:
        create_model("resnet5")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", MODELS)
def test_shape(name: str) -> None:
    model = build(name).eval()
    inputs = small_input(model)
    with torch.no_grad():
        results = outputs(model, inputs)
    for result in results:
        assert result.shape == (BATCH, NUM_CLASSES)
        assert torch.isfinite(result).all()


@pytest.mark.parametrize("name", MODELS)
def test_gradient_reaches_every_trainable_parameter(name: str) -> None:
    model = build(name).train()
    target = torch.arange(BATCH) % NUM_CLASSES
    loss = sum(F.cross_entropy(r, target) for r in outputs(model, small_input(model)))
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for parameter_name, parameter in trainable:
        assert parameter.grad is not None, f"no gradient reached {parameter_name}"
        assert torch.isfinite(parameter.grad).all(), parameter_name
    # The stem is the farthest from the loss: a nonzero gradient there went through everything.
    stem = next(p for p in model.parameters() if p.dim() >= 4)
    assert stem.grad.abs().sum() > 0


def _buffers(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.named_buffers()}


@pytest.mark.parametrize("name", MODELS)
def test_train_and_eval_modes(name: str) -> None:
    model = build(name)
    inputs = small_input(model)
    with torch.no_grad():
        model.eval()
        before = _buffers(model)
        eval_a, eval_b = outputs(model, inputs), outputs(model, inputs)
        assert all(torch.equal(a, b) for a, b in zip(eval_a, eval_b, strict=True))
        assert all(torch.equal(v, before[k]) for k, v in model.named_buffers())

        model.train()
        train_a, train_b = outputs(model, inputs), outputs(model, inputs)
    # Train mode normalises with the batch's statistics and updates the running ones (C3D, which
    # has no BN, differs by its dropout).
    assert not all(torch.allclose(a, b) for a, b in zip(eval_a, train_a, strict=True))
    changed = [k for k, v in model.named_buffers() if not torch.equal(v, before[k])]
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert any(k.endswith("running_mean") for k in changed) == has_bn
    # Two passes in train mode differ exactly when there is dropout.
    has_dropout = any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())
    same = all(torch.allclose(a, b) for a, b in zip(train_a, train_b, strict=True))
    assert same != has_dropout


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip(name: str) -> None:
    model = build(name, seed=0)
    inputs = small_input(model)
    with torch.no_grad():
        outputs(model.train(), inputs)  # running statistics that differ from a fresh model's
    file = io.BytesIO()
    torch.save(model.state_dict(), file)
    file.seek(0)
    copy = build(name, seed=1).eval()
    model.eval()
    with torch.no_grad():
        expected = outputs(model, inputs)
        assert not all(
            torch.equal(a, b) for a, b in zip(outputs(copy, inputs), expected, strict=True)
        )
        copy.load_state_dict(torch.load(file, weights_only=True))
        for got, want in zip(outputs(copy, inputs), expected, strict=True):
            assert torch.equal(got, want)


def _kind(name: str) -> type:
    with torch.device("meta"):  # no memory, no initialisation cost
        return type(create_model(name))


SINGLE_INPUT = [n for n in MODELS if issubclass(_kind(n), Backbone | I3D)]


@pytest.mark.parametrize("name", SINGLE_INPUT)
def test_in_chans(name: str) -> None:
    model = build(name, in_chans=10).eval()  # a temporal stream of L = 5 flow fields
    (x,) = small_input(model)
    assert x.shape[1] == 10
    with torch.no_grad():
        assert model(x).shape == (BATCH, NUM_CLASSES)


BACKBONES = [n for n in SINGLE_INPUT if issubclass(_kind(n), Backbone)]


@pytest.mark.parametrize("name", BACKBONES)
def test_stage_convN_ends_at_stride_2_to_the_N(name: str) -> None:
    model = build(name).eval()
    (x,) = small_input(model)
    size = x.shape[-1]  # SIZE, or the model's own in SMALL_CLIPS
    with torch.no_grad():
        for n, stage in enumerate(STAGES, start=1):
            x = model.forward_features(x, start=stage, end=stage)
            assert x.shape[1] == model.stage_channels[stage], stage
            side = -(-size // 2**n)  # ceil: every family pads its strided layers
            assert x.shape[-2:] == (side, side), stage
        assert x.shape[1] == model.num_features


# ---- the metadata each model registers -----------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_is_the_registered_one(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == model_info(name).params


@pytest.mark.parametrize("name", MODELS)
def test_metadata_names_the_first_convolution_and_the_classifier(name: str) -> None:
    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name).eval()  # BN after a fully connected layer needs 2 in training
        inputs = model.example_input(1, info.size, info.frames)
    assert info_of(model) is info
    channel_axis = 1 if info.dims == 3 else -3  # (N, C, T, H, W); (N, [K,] C, H, W)
    assert tuple(x.shape[channel_axis] for x in inputs) == info.channels
    if info.first_conv is None:
        assert len(info.channels) == 2  # one first convolution per tower
        if info.classifier is not None:  # towers fused into one classifier (3D-Fused)
            classifier = model.get_submodule(info.classifier)
            with torch.device("meta"):
                assert model(*inputs).shape[1] == classifier.weight.shape[0]
        return
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)]
    stem = model.get_submodule(info.first_conv)
    assert stem is convolutions[0]
    assert stem.in_channels == info.channels[0] * (info.frames if name in STACKED_FRAMES else 1)
    two_d = name in PER_FRAME_2D | STACKED_FRAMES
    assert isinstance(stem, nn.Conv3d if info.dims == 3 and not two_d else nn.Conv2d)
    classifier = model.get_submodule(info.classifier)
    assert classifier is [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv3d)][-1]
    with torch.device("meta"):
        assert model(*inputs).shape[1] == classifier.weight.shape[0]  # it gives the logits


def test_a_wrapper_reads_its_backbones_metadata() -> None:
    model = create_model("tsn", num_classes=5, backbone="resnet18")
    info = info_of(model)
    assert info.backbone == "backbone"
    assert info_of(model.backbone) is model_info("resnet18")


CLASSIFIED = [n for n in MODELS if model_info(n).classifier is not None]


@pytest.mark.parametrize("name", CLASSIFIED)
def test_reset_classifier(name: str) -> None:
    model = build(name).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reset_classifier(model, 7)
    classifier = model.get_submodule(model_info(name).classifier)
    changed = {k for k, v in model.state_dict().items() if k not in before or not torch.equal(v, before[k])}
    assert changed == {f"{model_info(name).classifier}.weight", f"{model_info(name).classifier}.bias"}
    assert classifier.weight.shape[0] == 7
    with torch.no_grad():
        assert all(r.shape == (BATCH, 7) for r in outputs(model, small_input(model)))


def test_reset_classifier_follows_a_wrappers_backbone() -> None:
    model = create_model("tsn", num_classes=5, backbone="tiny")
    reset_classifier(model, 9)
    assert model.backbone.fc.out_features == 9


def test_two_tower_models_have_no_single_classifier() -> None:
    with torch.device("meta"):
        model = create_model("i3d_two_stream")
    with pytest.raises(FlowkitError, match="i3d_two_stream has one classifier per tower"):
        reset_classifier(model, 3)


def test_a_builder_called_directly_tags_its_model_and_a_bare_class_does_not() -> None:
    with torch.device("meta"):
        assert info_of(resnet18()) is model_info("resnet18")
        bare = ResNet(BasicBlock, (1, 1, 1, 1))
    with pytest.raises(FlowkitError, match="not built by a registered builder"):
        info_of(bare)
    with pytest.raises(FlowkitError, match="unknown model 'resnet5'"):
        model_info("resnet5")


def test_the_registry_imports_no_model_module() -> None:
    package = Path(flowkit.models.__file__).parent
    tree = ast.parse((package / "registry.py").read_text())
    relative = [
        "." * node.level + (node.module or "")
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative == ["..errors"]  # no sibling in flowkit/models


CLIP_NETWORKS = [n for n in MODELS if model_info(n).dims == 3 and len(model_info(n).channels) == 1]


@pytest.mark.parametrize("name", CLIP_NETWORKS)
def test_a_clip_of_the_wrong_shape_is_one_line_naming_the_clip_expected(name: str) -> None:
    """A flow clip into an RGB network, a 4D tensor, a clip too small: a FlowkitError saying the
    channels, frames and size (a small clip may also just work); never an error from deep
    inside the network. (tests/training/test_streams.py sends RGB into the flow networks.)"""
    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=NUM_CLASSES).eval()
        good = torch.empty(1, 3, info.frames, info.size, info.size)
        assert model(good).shape == (1, NUM_CLASSES)
        for bad in (torch.empty(1, 2, info.frames, info.size, info.size),
                    torch.empty(1, 3, info.size, info.size)):
            with pytest.raises(FlowkitError, match="3 channels") as error:
                model(bad)
            message = str(error.value)
            assert "\n" not in message and f"{info.frames} " in message and f"{info.size}x" in message
            assert str(tuple(bad.shape)) in message
        try:
            assert model(torch.empty(1, 3, 2, 8, 8)).shape == (1, NUM_CLASSES)
        except FlowkitError as error:
            message = str(error)
            assert "\n" not in message and ("(1, 3, 2, 8, 8)" in message or "8x8" in message)
