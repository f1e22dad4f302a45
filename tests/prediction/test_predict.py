"""`flowkit predict`: new videos scored by a trained run give exactly the scores the run gave them
in its own test (same flow, same protocol, same fusion), for late fusion, mid-level fusion, one
stream and a 3D network; undecodable videos fail alone; nothing is written unless --keep."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from flowkit.cli import EXIT_BAD_INPUT, EXIT_FAILED, cli
from flowkit.errors import FlowkitError
from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.prediction.predictor import predict_videos
from flowkit.store.reader import FlowStore
from flowkit.synth import make_action_dataset
from flowkit.training.scores import Scores
from flowkit.video import FrameSize

DEMO = ["--pipeline", "pipelines/demo.toml", "--set", "crop_size=40", "--set", "workers=0", "-q"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A dataset of 8 classes x 3 videos (1 test each), its videos, and four runs trained on it:
    late fusion, conv fusion, one flow stream, and an I3D RGB stream."""
    root = tmp_path_factory.mktemp("predict")
    make_action_dataset(root / "videos", videos_per_class=3, test_per_class=1, frames=12, size=48)
    report = extract(root / "videos", root / "data.h5", ExtractSettings(algorithm="dis", size=FrameSize.keep()),
                     jobs=1, progress=False)
    assert report.ok and report.extracted == 24
    data = ["--data", str(root / "data.h5"), "--labels", str(root / "videos/splits")]
    runs = {
        "late": ["train-two-stream", *DEMO, "--epochs", "2"],
        "conv": ["train-two-stream", *DEMO, "--fusion", "conv", "--set", "fusion_frames=3",
                 "--set", "test_snippets=3", "--set", "flow.epochs=1"],
        "flow": ["train", "--modality", "flow", *DEMO, "--epochs", "2"],
        "i3d": ["train", "--modality", "rgb", "--arch", "i3d", "--set", "clip_length=8", "--set", "crop_size=32",
                "--set", "workers=0", "--set", "rgb.epochs=1", "--set", "test_snippets=2", "-q"],
    }
    out = {"root": root, "data": root / "data.h5", "videos": root / "videos"}
    for name, args in runs.items():
        result = CliRunner().invoke(cli, [*args, *data, "--out", str(root / name)])
        assert result.exit_code == 0, result.output
        out[name] = root / name
    return out


def _test_videos(trained: dict[str, Path]) -> list[Path]:
    """The test split's videos: the last of each class (make_action_dataset's split)."""
    return sorted(trained["videos"].glob("*/*_02.avi"))


@pytest.mark.parametrize(("run", "scores"), [("late", "fused"), ("conv", "fusion"), ("flow", "flow"),
                                             ("i3d", "rgb")])
def test_predictions_are_the_runs_own_test_scores(trained, run, scores) -> None:
    """The flow is made again with the training data's settings (DIS on OpenCV: the same bytes), so
    each test video's fused scores equal those the run wrote for it."""
    videos = _test_videos(trained)
    report = predict_videos(videos, trained[run], top_k=3, device="cpu", jobs=1, progress=False)
    assert report.ok and len(report.predictions) == 8
    saved = Scores.load(trained[run] / scores / "scores.npz")
    for prediction, video in zip(report.predictions, videos, strict=True):
        assert prediction.video == str(video)
        own = saved.scores[saved.ids.index(f"{video.parent.name}/{video.stem}")]
        np.testing.assert_allclose(prediction.scores, own, rtol=1e-5, atol=1e-5)
        probabilities = np.exp(own - own.max()) / np.exp(own - own.max()).sum()
        best = np.argsort(-own)[:3]
        assert [c for c, _ in prediction.top] == [saved.classes[i] for i in best]
        np.testing.assert_allclose([p for _, p in prediction.top], probabilities[best], rtol=1e-4)


def test_a_video_that_cannot_be_decoded_fails_alone_and_nothing_is_left_behind(trained, tmp_path,
                                                                                monkeypatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF not really a video" * 100)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    good = _test_videos(trained)[:2]
    before = sorted(p.name for p in tmp_path.iterdir())
    videos_before = sorted(p.name for p in good[0].parent.iterdir())
    result = CliRunner().invoke(cli, ["predict", str(good[0]), str(broken), str(tmp_path / "gone.mp4"), str(notes),
                                      str(good[1]), "--run", str(trained["late"]), "--device", "cpu", "-q",
                                      "--top-k", "2"])
    assert result.exit_code == EXIT_FAILED
    lines = result.output.splitlines()
    assert lines[0].startswith(f"run: {trained['late']} (rgb + flow, late fusion of logits 1 : 1; 5 snippets x 1 crop)")
    assert lines[1] == str(good[0]) and lines[4] == str(good[1])
    assert [line.split(". ")[0] for line in lines[2:4] + lines[5:7]] == ["  1", "  2", "  1", "  2"]
    failed = [line for line in lines if line.startswith("failed: ")]
    assert len(failed) == 3
    assert failed[0].startswith(f"failed: {broken}: ") and "decode" in failed[0], failed[0]
    assert failed[1] == f"failed: {tmp_path / 'gone.mp4'}: no such file"
    assert failed[2].startswith(f"failed: {notes}: not a video file flowkit reads")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside the videos
    assert list(scratch.iterdir()) == []  # the temporary dataset is gone
    assert sorted(p.name for p in good[0].parent.iterdir()) == videos_before


def test_keep_stores_the_flow_and_a_second_run_reuses_it(trained, tmp_path) -> None:
    videos = _test_videos(trained)[:3]
    keep = tmp_path / "kept.h5"
    args = ["predict", *map(str, videos), "--run", str(trained["flow"]), "--keep", str(keep), "--device", "cpu",
            "--json"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert report["kept"] == str(keep) and report["failed"] == []
    assert [p["video"] for p in report["predictions"]] == [str(v) for v in videos]
    assert all(len(p["top"]) == 5 and p["top"][0]["probability"] >= p["top"][1]["probability"]
               for p in report["predictions"])
    with FlowStore(keep) as store, FlowStore(trained["data"]) as source:
        assert sorted(store.ids) == sorted(v.stem for v in videos)
        assert store.settings == source.settings  # the training data's extraction settings
        for video in videos:
            np.testing.assert_array_equal(store.video(video.stem).flow_codes(3),
                                          source.video(f"{video.parent.name}/{video.stem}").flow_codes(3))
    stamp = keep.stat().st_mtime_ns
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and json.loads(again.output)["predictions"] == report["predictions"]
    assert keep.stat().st_mtime_ns >= stamp


def test_a_stream_folder_an_old_run_and_bad_runs(trained, tmp_path) -> None:
    video = _test_videos(trained)[0]
    whole = predict_videos([video], trained["late"], device="cpu", progress=False).predictions[0]
    rgb = predict_videos([video], trained["late"] / "rgb", device="cpu", progress=False)
    assert rgb.protocol.startswith("rgb;")
    own = Scores.load(trained["late"] / "rgb/scores.npz")
    np.testing.assert_allclose(rgb.predictions[0].scores, own.scores[own.ids.index(f"{video.parent.name}/{video.stem}")],
                               rtol=1e-5, atol=1e-5)
    # A run from before the extraction settings were recorded: read from its dataset.
    settings = json.loads((trained["late"] / "settings.json").read_text())
    del settings["extraction"]
    old = tmp_path / "old"
    old.mkdir()
    for stream in ("rgb", "flow"):
        (old / stream).mkdir()
        (old / stream / "final.pt").write_bytes((trained["late"] / stream / "final.pt").read_bytes())
    (old / "settings.json").write_text(json.dumps(settings))
    np.testing.assert_array_equal(predict_videos([video], old, device="cpu", progress=False).predictions[0].scores,
                                  whole.scores)
    settings["data"] = str(tmp_path / "moved.h5")
    (old / "settings.json").write_text(json.dumps(settings))
    with pytest.raises(FlowkitError, match=r"records no extraction settings and its dataset .* is gone"):
        predict_videos([video], old)
    (old / "flow/final.pt").unlink()
    del settings["data"]
    settings["extraction"] = json.loads((trained["late"] / "settings.json").read_text())["extraction"]
    (old / "settings.json").write_text(json.dumps(settings))
    for run, message in ((old, "has no final.pt: the run has not finished"),
                         (tmp_path / "nowhere", "no such run folder"),
                         (trained["videos"], "is not a run folder"),
                         (trained["data"], "is not a flowkit stream checkpoint")):
        result = CliRunner().invoke(cli, ["predict", str(video), "--run", str(run)])
        assert result.exit_code == EXIT_BAD_INPUT and message in result.output, result.output
        assert result.output.count("\n") == 1
    bad_k = CliRunner().invoke(cli, ["predict", str(video), "--run", str(trained["late"]), "--top-k", "0"])
    assert bad_k.exit_code == EXIT_BAD_INPUT and "--top-k must be at least 1" in bad_k.output


def test_extraction_settings_survive_their_record() -> None:
    """What a dataset records is enough to make the same flow again."""
    for settings in (ExtractSettings(), ExtractSettings(algorithm="dis", size=FrameSize.keep(), rgb=False),
                     ExtractSettings(preset="denseflow", engine="torch", bound=15, step=2, backward=True, warp=True,
                                     size=FrameSize.fixed(340, 256), fps=10, flow_format="raw"),
                     ExtractSettings(params=(("lambda", 0.2),), rgb_quality=80, flow_quality=70)):
        again = ExtractSettings.from_fingerprint(json.loads(json.dumps(settings.fingerprint)))
        assert again.fingerprint == settings.fingerprint
    with pytest.raises(FlowkitError, match="extraction settings are incomplete"):
        ExtractSettings.from_fingerprint({"algorithm": "tvl1"})


def test_amp_bf16_scores_close_to_float32(trained) -> None:
    videos = _test_videos(trained)[:2]
    exact = predict_videos(videos, trained["late"], device="cpu", progress=False)
    half = predict_videos(videos, trained["late"], device="cpu", amp="bf16", progress=False)
    for a, b in zip(exact.predictions, half.predictions, strict=True):
        assert not np.array_equal(a.scores, b.scores)  # it did run in bfloat16
        np.testing.assert_allclose(b.scores, a.scores, atol=0.05 * np.abs(a.scores).max())
