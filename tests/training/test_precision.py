"""Mixed precision and the fast paths of training: `--amp bf16|fp16` really runs the forward pass
in that type (float32 weights kept, GradScaler for fp16), `--channels-last` trains the same
network in another memory layout, `--compile` trains a compiled network; speed settings may change
on resume, precision may not; features and predict take `--amp` too."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from flowkit.cli import EXIT_BAD_INPUT, cli
from flowkit.errors import FlowkitError
from flowkit.flow.engine_base import has_cxx_compiler
from flowkit.training.config import load_config
from flowkit.training.precision import AMP_MODES, amp_mode, autocast_dtype, channels_last_module
from flowkit.training.streams import load_data, stream_datasets, stream_model
from flowkit.training.trainer import Trainer

CPU = torch.device("cpu")


def test_modes_and_the_yes_no_of_old_runs() -> None:
    assert AMP_MODES == ("auto", "off", "bf16", "fp16")
    assert [amp_mode(v) for v in (True, False, "true", "BF16", "fp16")] == ["auto", "off", "auto", "bf16", "fp16"]
    assert autocast_dtype("auto", CPU) is None and autocast_dtype("off", CPU) is None
    assert autocast_dtype("auto", torch.device("cuda")) is torch.float16  # fp16 on CUDA, as before
    assert autocast_dtype("bf16", CPU) is torch.bfloat16 and autocast_dtype("fp16", CPU) is torch.float16
    with pytest.raises(FlowkitError, match="amp must be one of auto, off, bf16, fp16, not 'half'"):
        load_config(None, {"amp": "half"})
    assert load_config(None, {"amp": "true"}).amp == "auto"


def _trainer(action_data, tmp_path, **settings) -> Trainer:
    data, splits = action_data
    config = load_config("pipelines/demo.toml", {"crop_size": "40", "workers": "0", "rgb.epochs": "2",
                                                 "eval_every": "0", **settings})
    labelled = load_data(data, splits)
    train_set, _ = stream_datasets(config, "rgb", labelled)
    torch.manual_seed(config.seed)
    return Trainer(tmp_path, "rgb", stream_model(config, "rgb", 8), train_set, None, config.rgb, config, labelled)


def _forward_types(trainer: Trainer) -> set[torch.dtype]:
    """The output types of every convolution during one training epoch."""
    seen: set[torch.dtype] = set()
    hooks = [m.register_forward_hook(lambda m, a, out: seen.add(out.dtype)) for m in trainer.model.modules()
             if isinstance(m, torch.nn.Conv2d)]
    trainer.settings.epochs = 1
    trainer.fit(progress=False)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize(("mode", "dtype", "scaled"), [("off", torch.float32, False), ("bf16", torch.bfloat16, False),
                                                       ("fp16", torch.float16, True)])
def test_amp_runs_the_forward_pass_in_its_type_and_keeps_float32_weights(action_data, tmp_path, mode, dtype,
                                                                         scaled) -> None:
    trainer = _trainer(action_data, tmp_path, amp=mode)
    assert trainer.scaler.is_enabled() is scaled
    before = [p.detach().clone() for p in trainer.model.parameters()]
    assert _forward_types(trainer) == {dtype}
    params = list(trainer.model.parameters())
    assert all(p.dtype is torch.float32 for p in params)
    assert any(not torch.equal(a, b) for a, b in zip(before, params, strict=True))  # it trained
    row = (tmp_path / "metrics.csv").read_text().splitlines()[1].split(",")
    assert np.isfinite(float(row[2]))  # train_loss


def test_bf16_training_learns_like_float32(action_data, tmp_path) -> None:
    """Same seed, same batches: the bf16 run's losses follow the float32 run's closely."""
    losses = {}
    for mode in ("off", "bf16"):
        trainer = _trainer(action_data, tmp_path / mode, amp=mode)
        trainer.fit(progress=False)
        rows = (tmp_path / mode / "metrics.csv").read_text().splitlines()[1:]
        losses[mode] = [float(r.split(",")[2]) for r in rows]
    assert losses["off"][1] < losses["off"][0]
    np.testing.assert_allclose(losses["bf16"], losses["off"], rtol=0.05)


def test_channels_last_trains_the_same_network(action_data, tmp_path) -> None:
    """The same values in another layout: the same outputs to float rounding, and a training run
    whose losses follow the plain one's (SGD amplifies rounding a little over two epochs)."""
    plain = _trainer(action_data, tmp_path / "plain")
    x = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(1))  # the global RNG left as seeded
    reference = plain.model.eval().backbone(x)
    plain.fit(progress=False)
    fast = _trainer(action_data, tmp_path / "fast", channels_last="true")  # the same seed: the same dropout
    channels_last_module(fast.model.eval())
    conv = next(m for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast.model.backbone(x.contiguous(memory_format=torch.channels_last)), reference,
                               rtol=1e-4, atol=1e-5)
    fast.fit(progress=False)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # it stayed so while training
    losses = [[float(r.split(",")[2]) for r in (tmp_path / name / "metrics.csv").read_text().splitlines()[1:]]
              for name in ("plain", "fast")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-3)


def test_a_network_of_2d_and_3d_convolutions_goes_channels_last_each_by_its_rank() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv3d(4, 4, 3), torch.nn.Linear(4, 2))
    channels_last_module(net)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert net[1].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert net[2].weight.is_contiguous()


@pytest.mark.skipif(not has_cxx_compiler(), reason="torch.compile on a CPU needs a C++ compiler")
def test_compile_trains_a_compiled_network(action_data, tmp_path) -> None:
    one = {"rgb.epochs": "1", "rgb.dropout": "0"}  # inductor draws its own dropout masks
    plain = _trainer(action_data, tmp_path / "plain", **one)
    plain.fit(progress=False)
    compiled = _trainer(action_data, tmp_path / "compiled", compile="true", **one)
    compiled.fit(progress=False)
    assert type(compiled.net).__name__ == "OptimizedModule" and compiled.net is not compiled.model
    assert set(torch.load(tmp_path / "compiled/final.pt", weights_only=False)["model"]) == \
        set(plain.model.state_dict())  # the checkpoint holds the plain module's names
    losses = [float((tmp_path / name / "metrics.csv").read_text().splitlines()[1].split(",")[2])
              for name in ("plain", "compiled")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-3)


def test_speed_settings_may_change_on_resume_precision_may_not(action_data, tmp_path) -> None:
    data, splits = action_data
    common = ["train", "--modality", "rgb", "--data", str(data), "--labels", str(splits), "--pipeline",
              "pipelines/demo.toml", "--set", "crop_size=40", "--set", "workers=0", "--epochs", "1", "-q",
              "--out", str(tmp_path / "run")]
    assert CliRunner().invoke(cli, common).exit_code == 0
    settings = json.loads((tmp_path / "run/settings.json").read_text())
    assert settings["config"]["amp"] == "auto" and settings["config"]["channels_last"] is False
    again = CliRunner().invoke(cli, [*common, "--resume", "--channels-last"])
    assert again.exit_code == 0, again.output
    other = CliRunner().invoke(cli, [*common, "--resume", "--amp", "bf16"])
    assert other.exit_code == EXIT_BAD_INPUT
    assert other.output.strip().endswith("was started with other settings (amp); resume it with the same ones")
    # A run saved when amp was yes/no, before channels_last and compile existed, resumes.
    del settings["config"]["channels_last"], settings["config"]["compile"]
    settings["config"]["amp"] = True
    (tmp_path / "run/settings.json").write_text(json.dumps(settings))
    old = CliRunner().invoke(cli, [*common, "--resume"])
    assert old.exit_code == 0, old.output
    config = load_config("pipelines/demo.toml", {"crop_size": "40", "workers": "0", "epochs": "1"})
    assert config.differences(settings["config"]) == []
    assert config.differences({**settings["config"], "amp": False}) == ["amp"]
    bad = CliRunner().invoke(cli, [*common[:-1], str(tmp_path / "bad"), "--amp", "half"])
    assert bad.exit_code == EXIT_BAD_INPUT and "'half' is not one of 'auto', 'off', 'bf16', 'fp16'" in bad.output
