"""Every registered clip network as a stream: its flow network (2 channels) builds from the
settings and gives logits on a small clip; settings whose clip it cannot take fail in one line;
every shipped pipeline builds its streams' networks."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from flowkit.errors import FlowkitError
from flowkit.models.registry import clip_networks, model_info
from flowkit.training.config import load_config
from flowkit.training.streams import stream_model

CLASSES = 5
# (frames, crop) of a small clip each network takes: most take any; T3D needs 29 of 29x29, S3D
# 5 of 17x17, C3D 16 of 16x16 (its fc6 is built for the clip the settings give).
SMALL = {"t3d": (29, 29), "s3d": (5, 32), "s3d_g": (5, 32), "c3d": (16, 16),
         "hidden_two_stream": (11, 32)}
# Networks that compute their own flow from RGB clips have no flow stream: a one-line error.
RGB_ONLY = {"hidden_two_stream"}


def _config(arch: str, frames: int, size: int):
    return load_config(None, {"arch": arch, "clip_length": str(frames), "crop_size": str(size)})


def test_every_one_input_3d_network_is_a_clip_network_and_no_two_input_one_is():
    names = clip_networks()
    assert {"c3d", "t3d", "slowfast_r50", "x3d_m", "i3d_paper_3d_convnet", "r2plus1d_18"} <= set(names)
    assert not {"i3d_two_stream", "i3d_paper_3d_fused", "two_stream_fusion"} & set(names)


@pytest.mark.parametrize("arch", clip_networks())
def test_the_flow_stream_of_every_clip_network_gives_logits(arch: str) -> None:
    """On the meta device (shapes without work: a real pass of each takes seconds on 2 cores;
    tests/models/test_registry.py runs every network for real, the 3-channel way, which the
    2-channel one differs from in the first convolution only)."""
    frames, size = SMALL.get(arch, (4, 32))
    if arch in RGB_ONLY:
        with pytest.raises(FlowkitError, match="from RGB clips") as error, torch.device("meta"):
            stream_model(_config(arch, frames, size), "flow", CLASSES)
        assert "\n" not in str(error.value)
        return
    with torch.device("meta"):
        model = stream_model(_config(arch, frames, size), "flow", CLASSES).eval()
        logits = model(torch.empty(2, 2, frames, size, size))
    assert model.get_submodule(model_info(arch).first_conv).in_channels == 2
    assert logits.shape == (2, CLASSES)
    with pytest.raises(FlowkitError, match="of 2 channels"), torch.device("meta"):
        model(torch.empty(2, 3, frames, size, size))  # an RGB clip into the flow stream


@pytest.mark.parametrize(("arch", "settings", "says"), [
    ("slowfast_r50", {"clip_length": "30"}, "a multiple of 4 frames"),
    ("t3d", {"clip_length": "16"}, "at least 29 frames of 29x29"),
    ("s3d", {"crop_size": "16"}, "at least 5 frames of 17x17"),
    ("c3d", {"clip_length": "8"}, "at least 16 frames"),
])
def test_a_clip_the_network_cannot_take_fails_when_the_settings_load(arch, settings, says):
    with pytest.raises(FlowkitError, match=says) as error:
        load_config(None, {"arch": arch, **settings})
    assert "\n" not in str(error.value)


def test_c3d_is_built_for_the_clip_the_settings_give():
    model = stream_model(_config("c3d", 16, 32), "rgb", CLASSES).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 32, 32)).shape == (1, CLASSES)
    with pytest.raises(FlowkitError, match="16 frames of 32x32"):
        model(torch.randn(1, 3, 16, 112, 112))  # the paper's clip, not the settings'


PIPELINES = sorted((Path(__file__).resolve().parents[2] / "pipelines").glob("*.toml"))


@pytest.mark.parametrize("path", PIPELINES, ids=[p.stem for p in PIPELINES])
def test_every_pipeline_loads_and_builds_its_stream_models(path: Path) -> None:
    """Each shipped pipeline's settings build both streams' networks, and a clip network takes
    the clip the pipeline reads (on the meta device: the paper-sized networks cost no memory)."""
    config = load_config(path)  # which runs the network on the clip (TrainConfig.validate)
    with torch.device("meta"):
        rgb = stream_model(config, "rgb", 101)
        if config.arch not in RGB_ONLY:
            flow = stream_model(config, "flow", 101)
        if config.clips:
            clip = torch.empty(2, 3, config.clip_length, config.crop_size, config.crop_size)
            assert rgb.eval()(clip).shape == (2, 101)
            if config.arch not in RGB_ONLY:
                assert flow.get_submodule(model_info(config.arch).first_conv).in_channels == 2


def test_the_pipelines_cover_every_3d_family():
    archs = {tomllib.loads(path.read_text())["arch"] for path in PIPELINES}
    assert {"c3d", "r2plus1d_18", "hara_r3d_50", "s3d", "x3d_m", "slowfast_r50", "t3d",
            "i3d_paper_3d_convnet", "i3d"} <= archs
