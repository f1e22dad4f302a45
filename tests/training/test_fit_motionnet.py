"""`flowkit fit-motionnet` on a dataset's RGB frames, then `flowkit extract --algorithm motionnet`
with the weights it wrote; and hidden two-stream as a training arch."""

from __future__ import annotations

import hashlib
import json

import h5py
from click.testing import CliRunner

from flowkit.cli import EXIT_BAD_INPUT, cli
from flowkit.flow.motionnet_fit import read_weights
from flowkit.synth import Motion
from flowkit.training.config import TrainConfig


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result, result.output


def test_fit_on_rgb_frames_then_extract_with_the_weights(tmp_path, make_video):
    make_video("a/one.mkv", Motion(dx=1.5), frames=8)
    make_video("b/two.mkv", Motion(dy=-1.0), frames=8, seed=1)
    rgb_only = tmp_path / "frames.h5"
    result, output = invoke("extract", tmp_path / "videos", rgb_only, "--algorithm", "farneback",
                            "--no-resize", "-q", "-j", "1")
    assert result.exit_code == 0, output

    weights = tmp_path / "motionnet.pt"
    result, output = invoke("fit-motionnet", rgb_only, "-o", weights, "--steps", "4", "--width",
                            "0.0625", "--snippets", "4", "--device", "cpu")
    assert result.exit_code == 0, output
    assert "MotionNet (2 frames of 1 channels, width 0.0625) fitted on 4 snippets of 64x48" in output
    record = read_weights(weights)
    assert record["config"] == {"frames": 2, "channels": 1, "width": 0.0625} and record["steps"] == 4

    out = tmp_path / "motion.h5"
    result, output = invoke("extract", tmp_path / "videos", out, "--algorithm", "motionnet",
                            "--weights", weights, "--device", "cpu", "--no-resize", "-q", "-j", "1")
    assert result.exit_code == 0, output
    with h5py.File(out) as f:
        stored = dict(f["videos/a/one"].attrs)
    assert stored["algorithm"] == "motionnet"
    assert json.loads(stored["params"])["weights_sha256"] == record_sha(weights)

    result, output = invoke("fit-motionnet", rgb_only, "-o", weights, "--steps", "1", "--frames", "9")
    assert result.exit_code == EXIT_BAD_INPUT and "no video with 9 or more stored RGB frames" in output


def record_sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hidden_two_stream_is_a_clip_arch():
    config = TrainConfig(arch="hidden_two_stream", clip_length=11)
    config.validate()
    assert config.clips


def test_extract_with_motionnet_and_no_weights_stops_before_any_work(tmp_path, make_video):
    make_video("a/one.mkv", Motion(dx=1.5), frames=4)
    out = tmp_path / "out.h5"
    result, output = invoke("extract", tmp_path / "videos", out, "--algorithm", "motionnet", "-q")
    assert result.exit_code == EXIT_BAD_INPUT
    lines = output.strip().splitlines()
    assert lines == ["error: motionnet needs trained weights: --weights FILE "
                     "(write them with flowkit fit-motionnet)"], output
    assert not out.exists()
