"""The `flowkit` command as a user runs it: output, exit codes, one-line errors."""

import json
import subprocess
import sys

import cv2
import h5py
import pytest
from click.testing import CliRunner

from flowkit.cli import EXIT_BAD_INPUT, EXIT_FAILED, cli
from flowkit.synth import Motion


@pytest.fixture
def runner():
    return CliRunner()


def invoke(runner, *args):
    result = runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result, result.output  # stdout and stderr, as a terminal shows them


def _one_line_error(output: str, needle: str) -> None:
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], output


def test_extract_info_verify_show(runner, tmp_path, make_video):
    make_video("cls/a.mkv", Motion(dx=1.5), frames=6)
    make_video("cls/b.avi", Motion(dy=1.0), frames=5, seed=2)
    (tmp_path / "videos/broken.mp4").write_text("not a video")
    out = tmp_path / "out.h5"
    result, output = invoke(runner, "extract", tmp_path / "videos", out, "--no-resize", "-q", "-j", "1")
    assert result.exit_code == EXIT_FAILED  # one video failed
    assert "extracted 2 videos (9 pairs)" in output
    assert "failed: broken.mp4: not a video OpenCV can decode" in output

    result, output = invoke(runner, "info", out)
    assert result.exit_code == 0
    assert "videos     2" in output and "11 RGB frames, 9 flow pairs" in output
    assert "algorithm  tvl1" in output and "tau=0.25" in output
    assert "failures   1" in output and "broken.mp4: not a video OpenCV can decode" in output

    result, output = invoke(runner, "info", out, "--json")
    summary = json.loads(output)
    assert summary["videos"] == 2 and summary["pairs"] == 9 and summary["settings"]["bound"] == 20.0
    assert summary["bytes_by_kind"]["flow"] > 0 and summary["bytes_by_kind"]["rgb"] > 0
    assert summary["failures"][0]["source"] == "broken.mp4"

    result, output = invoke(runner, "verify", out, "--quiet")
    assert result.exit_code == 0 and "2 videos, 11 frames, 9 pairs: OK" in output

    result, output = invoke(runner, "show", out, "cls/a", "-o", tmp_path / "a.png")
    picture = cv2.imread(str(tmp_path / "a.png"))
    assert result.exit_code == 0 and picture.shape == (48, 128, 3)  # frame beside flow
    result, output = invoke(runner, "show", out, "cls/b", "-o", tmp_path / "b.mp4")
    capture = cv2.VideoCapture(str(tmp_path / "b.mp4"))
    assert result.exit_code == 0 and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4

    result, output = invoke(runner, "show", out, "cls/zzz", "-o", tmp_path / "z.png")
    assert result.exit_code == EXIT_BAD_INPUT
    _one_line_error(output, "has no video 'cls/zzz'")


def test_verify_exits_nonzero_on_damage(runner, tmp_path, make_video):
    make_video("a.mkv", frames=6)
    out = tmp_path / "out.h5"
    invoke(runner, "extract", tmp_path / "videos", out, "--no-resize", "-q", "-j", "1")
    shard = next((tmp_path / "out.h5.shards").glob("part-*.h5"))
    with h5py.File(shard, "r+") as handle:  # damage: change one pair behind flowkit's back
        flow = handle["videos/a/flow"]
        row = flow[1:2]
        row[0, 0] = row[0, 0].copy()
        row[0, 0][-10] ^= 0xFF
        flow[1:2] = row
    result, output = invoke(runner, "verify", out, "-q")
    assert result.exit_code == EXIT_FAILED
    assert "damaged: a: flow checksum mismatch" in output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["extract", "{tmp}/nowhere", "{tmp}/out.h5"], "input folder"),
        (["extract", "{tmp}/videos", "{tmp}/missing/out.h5"], "output folder"),
        (["extract", "{tmp}/videos", "{tmp}/foreign.h5"], "not a flowkit file; refusing to overwrite"),
        (["extract", "{tmp}/videos", "{tmp}/out.h5", "--size", "10x10", "--no-resize"], "only one of"),
        (["extract", "{tmp}/videos", "{tmp}/out.h5", "--algorithm", "raft"], "unknown flow algorithm"),
        (["extract", "{tmp}/videos", "{tmp}/out.h5", "-p", "tau"], "is not NAME=VALUE"),
        (["extract", "{tmp}/videos", "{tmp}/out.h5", "-p", "warps=x"], "expected int"),
        (["extract", "{tmp}/videos", "{tmp}/out.h5", "--step", "0"], "--step must be at least 1"),
        (["extract", "{tmp}/videos", "{tmp}/out.h5", "--threads", "0"], "--threads must be at least 1"),
        (["extract", "{tmp}/videos", "{tmp}/out.h5", "--task-size", "0"], "--task-size must be at least 1"),
        (["info", "{tmp}/foreign.h5"], "is not a flowkit file"),
        (["info", "{tmp}/none.h5"], "does not exist"),
        (["verify", "{tmp}/videos/a.mkv"], "is not a flowkit file"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(runner, tmp_path, make_video, args, needle):
    make_video("a.mkv")
    with h5py.File(tmp_path / "foreign.h5", "w") as handle:
        handle["x"] = 1
    before = (tmp_path / "foreign.h5").read_bytes()
    result, output = invoke(runner, *[a.format(tmp=tmp_path) for a in args])
    if args[0] == "verify":  # verify reports, one line, and exits 1: damage, not usage
        assert result.exit_code == EXIT_FAILED and needle in output and "Traceback" not in output
    else:
        assert result.exit_code == EXIT_BAD_INPUT
        _one_line_error(output, needle)
    assert (tmp_path / "foreign.h5").read_bytes() == before


def test_extract_json_report_and_resume(runner, tmp_path, make_video):
    make_video("a.mkv")
    args = ["extract", tmp_path / "videos", tmp_path / "out.h5", "--no-resize", "--json", "-j", "1"]
    result, _ = invoke(runner, *args)
    assert result.exit_code == 0 and json.loads(result.stdout)["extracted"] == 1
    result, _ = invoke(runner, *args)
    report = json.loads(result.stdout)
    assert (report["extracted"], report["skipped"], report["ok"]) == (0, 1, True)


def test_help_lists_every_algorithm_parameter_and_python_m_works():
    result = CliRunner().invoke(cli, ["extract", "--help"])
    assert "tvl1: tau=0.25, lambda=0.15" in result.output and "farneback:" in result.output
    done = subprocess.run([sys.executable, "-m", "flowkit", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("flowkit, version")


def test_synth_writes_the_action_dataset_and_camera_clips(runner, tmp_path):
    result, _ = invoke(runner, "synth", tmp_path / "actions", "--videos-per-class", "3",
                       "--test-per-class", "1", "--frames", "4", "--size", "32")
    assert result.exit_code == 0 and "wrote 24 videos" in result.output
    classes = sorted(p.name for p in (tmp_path / "actions").iterdir() if p.name != "splits")
    assert classes == sorted(f"{a}_{d}" for a in ("warm", "cool") for d in ("right", "left", "down", "up"))
    from flowkit.data.annotations import read_ucf101

    labels = read_ucf101(tmp_path / "actions/splits")
    assert labels.counts() == {"train": 16, "test": 8} and labels.classes[0] == "warm_right"
    result, _ = invoke(runner, "synth", tmp_path / "camera", "--kind", "camera", "--frames", "3", "--size", "24")
    assert sorted(p.name for p in (tmp_path / "camera").iterdir()) == [
        "pan_right.mp4", "rotate.mkv", "tilt_down.avi", "zoom_in.mp4"]
    result, output = invoke(runner, "synth", tmp_path / "bad", "--test-per-class", "30")
    assert result.exit_code == EXIT_BAD_INPUT and "--test-per-class" in output
