"""One small synthetic action dataset, extracted once for all training tests."""

from pathlib import Path

import pytest

from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.synth import make_action_dataset
from flowkit.video import FrameSize


@pytest.fixture(scope="session")
def action_data(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset, split folder): 8 classes x 16 clips (12 train, 4 test) of 12 frames at 48x48."""
    root = tmp_path_factory.mktemp("actions")
    make_action_dataset(root / "videos", videos_per_class=16, test_per_class=4, frames=12, size=48)
    settings = ExtractSettings(algorithm="dis", size=FrameSize.keep())
    report = extract(root / "videos", root / "out.h5", settings, jobs=2, progress=False)
    assert report.ok and report.extracted == 128
    return root / "out.h5", root / "videos/splits"
