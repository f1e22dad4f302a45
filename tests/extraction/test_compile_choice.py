"""An extraction compiles the torch TV-L1 only when its pairs repay the compilation (issue 13):
decided from the videos' header frame counts and whether the kernels are already cached."""

import pytest
import torch

from flowkit.extraction.settings import ExtractSettings
from flowkit.flow import compile_cache
from flowkit.flow.engines import has_cxx_compiler
from flowkit.video import VideoFile, header_frame_count

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not has_cxx_compiler(),
                                reason="the pair-count rule is the CPU's, with a C++ compiler")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.delenv(compile_cache.INDUCTOR_ENV, raising=False)
    monkeypatch.setenv(compile_cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _videos(make_video, count: int, frames: int) -> list[VideoFile]:
    paths = [make_video(f"v{i}.mkv", frames=frames) for i in range(count)]
    return [VideoFile(path=p, relpath=p.name, id=p.stem) for p in paths]


def test_cache_folder_follows_the_documented_variables(cache, monkeypatch, tmp_path):
    assert compile_cache.cache_dir() == cache
    monkeypatch.setenv(compile_cache.INDUCTOR_ENV, str(tmp_path / "own"))
    assert compile_cache.cache_dir() == tmp_path / "own"  # the user's own inductor folder wins
    monkeypatch.delenv(compile_cache.INDUCTOR_ENV)
    monkeypatch.delenv(compile_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.cache_dir() == tmp_path / "xdg/flowkit/torch-compile"


def test_small_jobs_run_eager_and_large_ones_compile(cache, make_video, monkeypatch):
    videos = _videos(make_video, 3, frames=21)
    assert header_frame_count(videos[0].path) == 21
    settings = ExtractSettings(engine="torch", device="cpu")
    assert settings.compiling_for(videos).compile is False  # 60 pairs, cold cache
    monkeypatch.setattr(compile_cache, "COLD_BREAK_EVEN_PAIRS", 50)
    assert settings.compiling_for(videos).compile is True
    assert settings.compiling_for(videos).make_engine().compiled


def test_a_warm_cache_lowers_the_pairs_that_repay_compiling(cache, make_video, monkeypatch):
    videos = _videos(make_video, 2, frames=26)  # 50 pairs
    monkeypatch.setattr(compile_cache, "WARM_BREAK_EVEN_PAIRS", 40)
    settings = ExtractSettings(engine="torch", device="cpu")
    assert settings.compiling_for(videos).compile is False
    compile_cache.mark_tvl1_warm()
    assert compile_cache.tvl1_is_warm()
    assert settings.compiling_for(videos).compile is True
    assert ExtractSettings(engine="torch", step=2).compiling_for(videos).compile is False  # 24 pairs


def test_an_explicit_choice_and_other_engines_are_left_alone(cache, make_video):
    videos = _videos(make_video, 1, frames=6)
    assert ExtractSettings(engine="torch", compile=True).compiling_for(videos).compile is True
    assert ExtractSettings(engine="opencv").compiling_for(videos).compile is None
