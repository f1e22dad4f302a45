"""A stream's starting checkpoint (`rgb.init`, `flow.init`) and the RGB values it is fed, which
follow the backbone's metadata (BN-Inception's ImageNet weights expect Caffe's BGR 0..255)."""

import pytest
import torch

from flowkit.errors import FlowkitError
from flowkit.models import create_model, tsn
from flowkit.training.config import load_config
from flowkit.training.runs import train_stream
from flowkit.training.streams import load_data, stream_modality


@pytest.mark.parametrize(
    ("settings", "values"),
    [({"backbone": "bninception"}, "caffe"), ({"backbone": "resnet18"}, "imagenet"),
     ({"backbone": "tiny"}, "imagenet"), ({"arch": "i3d"}, "unit")],
)  # fmt: skip
def test_rgb_values_follow_the_networks_metadata(settings, values) -> None:
    config = load_config(None, settings)
    assert stream_modality(config, "rgb").values == values
    if config.arch != "i3d":
        assert stream_modality(config, "rgbdiff").values == values


def test_a_stream_starts_from_its_init_checkpoint(action_data, tmp_path) -> None:
    data, splits = action_data
    start = tsn(num_classes=8, backbone="tiny", modality="flow")
    with torch.no_grad():
        start.backbone.conv1[0].weight.fill_(0.125)  # nothing a fresh network starts from
    torch.save({"model": start.state_dict()}, tmp_path / "start.pt")
    config = load_config("pipelines/demo.toml", {"crop_size": "40", "workers": "0",
                                                 "flow.epochs": "1", "flow.lr": "1e-9",
                                                 "flow.init": str(tmp_path / "start.pt")})  # fmt: skip
    train_stream(config, load_data(data, splits), "flow", tmp_path / "run", progress=False)
    trained = torch.load(tmp_path / "run/flow/final.pt", weights_only=False)["model"]
    stem = "backbone.conv1.0.weight"
    torch.testing.assert_close(trained[stem], start.state_dict()[stem])  # lr 1e-9: barely moved


def test_an_init_checkpoint_that_does_not_fit_stops_before_training(action_data, tmp_path) -> None:
    data, splits = action_data
    torch.save(create_model("resnet18").state_dict(), tmp_path / "resnet18.pth")
    config = load_config("pipelines/demo.toml", {"crop_size": "40", "workers": "0",
                                                 "rgb.init": str(tmp_path / "resnet18.pth")})  # fmt: skip
    with pytest.raises(FlowkitError, match=r"resnet18\.pth is in no checkpoint layout tiny reads"):
        train_stream(config, load_data(data, splits), "rgb", tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_checkpoints_record_the_rgb_values_their_model_was_trained_on(action_data, tmp_path) -> None:
    """`evaluate` rebuilds a stream's inputs from its checkpoint: the values travel with it (a
    checkpoint without them is from before, when every 2D stream was fed ImageNet's)."""
    data, splits = action_data
    config = load_config("pipelines/demo.toml", {"crop_size": "40", "workers": "0", "rgb.epochs": "1"})
    train_stream(config, load_data(data, splits), "rgb", tmp_path / "run", progress=False)
    for name in ("final.pt", "best.pt"):
        saved = torch.load(tmp_path / "run/rgb" / name, weights_only=False)
        assert saved["rgb_values"] == stream_modality(config, "rgb").values == "imagenet"
    assert stream_modality(config, "rgb", "caffe").values == "caffe"  # a checkpoint's word wins
