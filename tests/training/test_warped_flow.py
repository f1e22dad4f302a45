"""TSN's third stream: warped flow read from an `extract --warp` dataset, trained, scored, fused."""

import numpy as np
import pytest
from click.testing import CliRunner

from flowkit.cli import cli
from flowkit.data.annotations import Annotation
from flowkit.data.datasets import Flow, ShardDataset
from flowkit.errors import FlowkitError
from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.store.reader import FlowStore
from flowkit.synth import make_action_dataset, render_pan_with_object
from flowkit.training.scores import Scores
from flowkit.video import FrameSize, write_video

DEMO = ["--pipeline", "pipelines/demo.toml", "--set", "crop_size=32", "--set", "workers=0",
        "--set", "test_snippets=2", "--epochs", "1", "-q"]


@pytest.fixture(scope="module")
def warped_actions(tmp_path_factory):
    """(dataset, splits): the action dataset, 8 classes x 3 clips (2 train, 1 test), with --warp
    (at 64x64: smaller frames have too few SIFT features for any homography)."""
    root = tmp_path_factory.mktemp("warped-actions")
    make_action_dataset(root / "videos", videos_per_class=3, test_per_class=1, frames=8, size=64)
    settings = ExtractSettings(algorithm="dis", size=FrameSize.keep(), warp=True)
    assert extract(root / "videos", root / "out.h5", settings, jobs=2, progress=False).ok
    return root / "out.h5", root / "videos/splits"


def test_flow_warped_reads_the_warped_flow_and_needs_it(tmp_path):
    frames, _ = render_pan_with_object(6, 80, 64, seed=1)
    write_video(tmp_path / "videos/pan/a.mkv", iter(frames))
    out = tmp_path / "out.h5"
    assert extract(tmp_path / "videos", out, ExtractSettings(algorithm="dis", size=FrameSize.keep(), warp=True),
                   jobs=1, progress=False).ok
    rows = [Annotation("pan/a", 0)]
    plain = ShardDataset(out, rows, Flow(length=2), segments=1, train=False, test_snippets=1, size=48)
    warped = ShardDataset(out, rows, Flow(length=2, warped=True), segments=1, train=False, test_snippets=1, size=48)
    x_plain, x_warped = plain[0][0].numpy(), warped[0][0].numpy()
    assert x_plain.shape == x_warped.shape == (1, 4, 48, 48)
    # The pan (2 px right) dominates the plain u; the warped u is near zero but for the object.
    assert np.median(x_plain[0, 0]) == pytest.approx(2.0, abs=0.3)
    assert abs(np.median(x_warped[0, 0])) < 0.3
    plain_out = tmp_path / "plain.h5"  # the same video without --warp
    assert extract(tmp_path / "videos", plain_out, ExtractSettings(algorithm="dis", size=FrameSize.keep()),
                   jobs=1, progress=False).ok
    ShardDataset(plain_out, rows, Flow(length=2))
    with pytest.raises(FlowkitError, match="has no warped flow: extract it with --warp"):
        ShardDataset(plain_out, rows, Flow(length=2, warped=True))
    with pytest.raises(FlowkitError, match="forward flow only"):
        Flow(length=4, bidirectional=True, warped=True)


def test_tsn_trains_warped_flow_and_fuse_takes_three_streams(warped_actions, tmp_path):
    data, splits = warped_actions
    with FlowStore(data) as store:  # most pairs are warped (the rest keep their plain flow)
        fallbacks = sum(store.video(v).homography_fallbacks for v in store.ids)
        assert fallbacks < 0.5 * sum(e.pairs for e in store.entries.values())
    runner = CliRunner()
    common = ["--data", str(data), "--labels", str(splits), *DEMO]
    for stream in ("rgb", "flow", "warped_flow"):
        result = runner.invoke(cli, ["train", "--modality", stream, *common, "--out", str(tmp_path / "run")]
                               + (["--resume"] if stream != "rgb" else []), catch_exceptions=False)
        assert result.exit_code == 0, result.output
    scores = {s: Scores.load(tmp_path / f"run/{s}/scores.npz") for s in ("rgb", "flow", "warped_flow")}
    assert scores["warped_flow"].scores.shape == (8, 8) and scores["warped_flow"].ids == scores["flow"].ids
    assert not np.array_equal(scores["warped_flow"].scores, scores["flow"].scores)  # another input
    fused = tmp_path / "fused.npz"
    result = runner.invoke(cli, ["fuse", *(str(tmp_path / f"run/{s}/scores.npz") for s in scores),
                                 "--weights", "1", "--weights", "1", "--weights", "0.5", "-o", str(fused)])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()[1:4]] == ["rgb", "flow", "warped_flow"]
    assert "fused" in result.output and Scores.load(fused).scores.shape == (8, 8)
    result = runner.invoke(cli, ["evaluate", str(tmp_path / "run/warped_flow"), "--data", str(data),
                                 "--labels", str(splits), "-q"])
    assert result.exit_code == 0, result.output
