"""Shared fixtures: small real video files with known motion, and the optional shared test data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flowkit.store.reader import FlowStore
from flowkit.synth import Motion, render_frames
from flowkit.video import write_video

SHARED = Path(__file__).resolve().parents[2] / "shared" / "testdata"


@pytest.fixture
def shared_testdata() -> Path:
    """`../shared/testdata` beside the project; tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared/testdata is not present")
    return SHARED


MakeVideo = Callable[..., Path]
DEFAULT_MOTION = Motion(dx=1.0)


@pytest.fixture
def make_video(tmp_path: Path) -> MakeVideo:
    """Write a textured video moved by `motion` each frame; returns its path."""

    def make(
        name: str = "clip.mkv",
        motion: Motion = DEFAULT_MOTION,
        frames: int = 6,
        width: int = 64,
        height: int = 48,
        seed: int = 0,
        folder: Path | None = None,
        fps: float = 25.0,
    ) -> Path:
        root = folder if folder is not None else tmp_path / "videos"
        return write_video(root / name, render_frames(motion, frames, width, height, seed), fps)

    return make


def assert_same_videos(reference: Path, got: Path) -> None:
    """`got` holds the videos of `reference` with byte-identical flow and RGB."""
    with FlowStore(reference) as ref, FlowStore(got) as other:
        assert other.ids == ref.ids
        for video_id in ref.ids:
            a, b = ref.video(video_id), other.video(video_id)
            assert (a.entry.frames, a.entry.pairs) == (b.entry.frames, b.entry.pairs), video_id
            assert [a.flow_jpeg(i) for i in range(a.entry.pairs)] == [
                b.flow_jpeg(i) for i in range(b.entry.pairs)
            ], video_id
            if a.has_rgb:
                assert [a.rgb_jpeg(i) for i in range(a.entry.frames)] == [
                    b.rgb_jpeg(i) for i in range(b.entry.frames)
                ], video_id


@pytest.fixture(name="assert_same_videos")
def assert_same_videos_fixture() -> Callable[[Path, Path], None]:
    """`assert_same_videos(reference, got)`: the two datasets hold byte-identical videos."""
    return assert_same_videos
