"""Numeric options of every command refused in one line with exit 2, before any work (issue 15's
hostile run: values that should be refused must never run)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from flowkit.cli import EXIT_BAD_INPUT, cli
from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.synth import Motion
from flowkit.video import FrameSize


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-options")
    from flowkit.synth import render_frames
    from flowkit.video import write_video

    write_video(root / "videos" / "cls" / "a.mkv", render_frames(Motion(dx=1.0), 4, 32, 32, 0))
    out = root / "out.h5"
    extract(root / "videos", out, ExtractSettings(algorithm="dis", size=FrameSize.keep()), jobs=1,
            progress=False)
    return root


CASES = [
    (["show", "{out}", "cls/a", "-o", "{tmp}/p.png", "--pair", "-4"], "--pair -4"),
    (["show", "{out}", "cls/a", "-o", "{tmp}/p.png", "--pair", "99"], "--pair 99"),
    (["show", "{out}", "cls/a", "-o", "{tmp}/p.png", "--max-flow", "nan"], "--max-flow"),
    (["show", "{out}", "cls/a", "-o", "{tmp}/p.png", "--max-flow", "0"], "--max-flow"),
    (["export-rawframes", "{out}", "{tmp}/rf", "--jpeg-quality", "101"], "--jpeg-quality"),
    (["import-rawframes", "{tmp}", "{tmp}/in.h5", "--bound", "inf"], "--bound"),
    (["partition", "{root}/videos", "{tmp}/parts", "--parts", "0"], "--parts"),
    (["split", "{out}", "{tmp}/split.h5", "--shards", "0"], "--shards"),
    (["synth", "{tmp}/s", "--frames", "1"], "--frames"),
    (["synth", "{tmp}/s", "--size", "100000"], "--size"),
    (["train", "--modality", "rgb", "--data", "{out}", "--out", "{tmp}/run", "--epochs", "-1"], "epochs"),
    (["train", "--modality", "rgb", "--data", "{out}", "--out", "{tmp}/run", "--batch-size", "0"], "batch_size must be at least 1"),
    (["train", "--modality", "rgb", "--data", "{out}", "--out", "{tmp}/run", "--set", "rgb.lr=nan"], "lr"),
    (["train", "--modality", "rgb", "--data", "{out}", "--out", "{tmp}/run", "--workers", "-1"], "workers must be 0"),
    (["flow", "{tmp}/a.png", "{tmp}/b.png", "-o", "{tmp}/f.flo", "-p", "tau=nan"], "tau"),
    (["flow", "{tmp}/a.png", "{tmp}/b.png", "-o", "{tmp}/f.flo", "-p", "warps=0"], "warps"),
]


@pytest.mark.parametrize("args, needle", CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in CASES])
def test_bad_numbers_are_one_line(dataset, tmp_path, args, needle):
    import cv2
    import numpy as np

    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((16, 16), 128, np.uint8))
    filled = [a.format(out=dataset / "out.h5", tmp=tmp_path, root=dataset) for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(cli, filled, catch_exceptions=False)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert needle in lines[-1], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
