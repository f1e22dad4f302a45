"""The examples a user copies must keep working."""

import subprocess
import sys
from pathlib import Path

import cv2

from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.synth import Motion
from flowkit.video import FrameSize

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_motion_summary_reports_speed_and_direction(tmp_path, make_video):
    make_video("right.mkv", Motion(dx=2.0), frames=4)
    make_video("up.mkv", Motion(dy=-1.0), frames=4, seed=1)
    extract(tmp_path / "videos", tmp_path / "out.h5", ExtractSettings(size=FrameSize.keep()),
            jobs=1, progress=False)
    picture = tmp_path / "fastest.png"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "motion_summary.py"), str(tmp_path / "out.h5"),
         "--picture", str(picture)], capture_output=True, text=True, check=True,
    )
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[1:3]}
    assert abs(float(rows["right"][0]) - 2.0) < 0.3 and abs(float(rows["right"][1])) < 10
    assert abs(float(rows["up"][0]) - 1.0) < 0.3 and abs(float(rows["up"][1]) - 90) < 10
    assert "wrote" in done.stdout and cv2.imread(str(picture)).shape == (48, 64, 3)
