import pytest

from flowkit.errors import FlowkitError
from flowkit.params import parse_assignments
from flowkit.training.config import TrainConfig, command_config, load_config


def test_defaults_are_tsns_and_files_and_options_override_them(tmp_path):
    config = load_config()
    assert (config.arch, config.segments, config.flow_length) == ("tsn", 3, 5)
    assert (config.rgb.dropout, config.flow.dropout, config.flow.lr_steps) == (0.8, 0.7, [190, 300])
    pipeline = tmp_path / "p.toml"
    pipeline.write_text('arch = "twostream"\nflow_length = 10\n[flow]\nlr = 0.01\nlr_steps = [5, 8]\n')
    config = load_config(pipeline, {"flow.lr": "0.02", "segments": "7", "flip": "false", "rgb.lr_steps": "3,4"})
    assert config.arch == "twostream" and config.flow_length == 10 and config.segments == 7
    assert config.flow.lr == 0.02 and config.flow.lr_steps == [5, 8] and config.rgb.lr_steps == [3, 4]
    assert config.flip is False


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("segmnts = 3\n", {}, "unknown setting 'segmnts'"),
        ("segments = 'three'\n", {}, "segments: 'three' is not a int"),
        ("", {"flow.lrr": "1"}, r"option flow.lrr: \[flow\]: unknown setting 'lrr'|unknown setting 'lrr'"),
        ("", {"arch": "c3d"}, "arch must be one of twostream, tsn, i3d"),
        ("", {"fusion": "conv", "arch": "i3d"}, "mid-level fusion joins two 2D towers"),
        ("", {"test_crops": "5"}, "test_crops must be 1 or 10"),
        ("arch = \n", {}, "is not valid TOML"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, text, overrides, message):
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(text)
    with pytest.raises(FlowkitError, match=message):
        load_config(pipeline, overrides)


def test_assignments_and_missing_pipeline(tmp_path):
    assert parse_assignments(["a=1", " flow.lr = 0.1 "]) == {"a": "1", "flow.lr": "0.1"}
    with pytest.raises(FlowkitError, match="not NAME=VALUE"):
        parse_assignments(["novalue"])
    with pytest.raises(FlowkitError, match="cannot read pipeline"):
        load_config(tmp_path / "none.toml")


def test_every_shipped_pipeline_loads():
    from pathlib import Path

    pipelines = sorted((Path(__file__).resolve().parents[2] / "pipelines").glob("*.toml"))
    assert pipelines
    for path in pipelines:
        assert isinstance(load_config(path), TrainConfig), path


def test_epochs_given_once_are_every_streams_and_a_streams_own_setting_wins():
    config = load_config(None, {"epochs": "3"})
    assert (config.rgb.epochs, config.flow.epochs) == (3, 3)
    config = load_config(None, {"epochs": "3", "flow.epochs": "5"})
    assert (config.rgb.epochs, config.flow.epochs) == (3, 5)
    with pytest.raises(FlowkitError, match=r"option rgb\.epochs.*'many' is not a int"):
        load_config(None, {"epochs": "many"})
    pipeline = load_config("pipelines/demo.toml", {"epochs": 2})  # its [rgb] and [flow] say 12
    assert (pipeline.rgb.epochs, pipeline.flow.epochs) == (2, 2)


def test_a_commands_options_not_given_leave_the_settings_and_assignments_come_last():
    config = command_config(None, {"arch": None, "segments": 5, "epochs": 4}, ["segments=7", "rgb.epochs=9"])
    assert config.arch == TrainConfig.arch and config.segments == 7
    assert (config.rgb.epochs, config.flow.epochs) == (9, 4)
    assert config.stream("rgbdiff") is config.rgb and config.stream("flow") is config.flow
