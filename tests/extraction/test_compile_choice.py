"""What a job runs (issue 13's start-up): `--engine auto` is OpenCV's TV-L1 on a CPU unless the
job repays compiling the torch engine, and the torch engine compiles only then; decided from the
videos' headers (pairs x pixels) and whether the kernels are already in the compile cache."""

import pytest
import torch
from click.testing import CliRunner

from flowkit.cli import cli
from flowkit.extraction.pipeline import extract
from flowkit.extraction.settings import ExtractSettings
from flowkit.flow import compile_cache
from flowkit.flow.engines import auto_backend, has_cxx_compiler
from flowkit.store.reader import FlowStore
from flowkit.video import VideoFile, read_header

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not has_cxx_compiler(),
                                reason="the work rule is the CPU's, with a C++ compiler")


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


def test_the_job_is_counted_in_pairs_times_output_pixels(cache, make_video):
    videos = _videos(make_video, 3, frames=21)
    header = read_header(videos[0].path)
    assert (header.frames, header.width, header.height) == (21, 64, 48)
    settings = ExtractSettings()  # short side 256: 64x48 becomes 342x256
    assert settings.job_pair_pixels(videos) == 3 * 20 * 342 * 256
    assert ExtractSettings(step=2, backward=True).job_pair_pixels(videos) == 3 * 10 * 2 * 342 * 256


def test_small_jobs_run_eager_and_large_ones_compile(cache, make_video, monkeypatch):
    videos = _videos(make_video, 3, frames=21)  # 60 pairs at 342x256: 5.3 Mpx
    settings = ExtractSettings(engine="torch", device="cpu")
    assert settings.compiling_for(videos).compile is False  # cold cache: not repaid
    monkeypatch.setattr(compile_cache, "COLD_BREAK_EVEN_MEGAPIXELS", 5.0)
    assert settings.compiling_for(videos).compile is True
    assert settings.compiling_for(videos).make_engine().compiled


def test_a_warm_cache_lowers_the_work_that_repays_compiling(cache, make_video, monkeypatch):
    videos = _videos(make_video, 1, frames=11)  # 10 pairs: 0.88 Mpx
    monkeypatch.setattr(compile_cache, "WARM_BREAK_EVEN_MEGAPIXELS", 0.8)
    settings = ExtractSettings(engine="torch", device="cpu")
    assert settings.compiling_for(videos).compile is False
    compile_cache.mark_tvl1_warm()
    assert compile_cache.tvl1_is_warm()
    assert settings.compiling_for(videos).compile is True
    assert ExtractSettings(engine="torch", step=2).compiling_for(videos).compile is False


def test_auto_is_opencv_for_small_cpu_jobs_and_torch_where_it_repays(cache, make_video, monkeypatch, tmp_path):
    videos = _videos(make_video, 2, frames=6)
    small = extract(tmp_path / "videos", tmp_path / "small.h5", progress=False)
    assert small.extracted == 2
    assert FlowStore(tmp_path / "small.h5").settings["engine"] == "opencv"
    monkeypatch.setattr(compile_cache, "COLD_BREAK_EVEN_MEGAPIXELS", 0.1)
    assert ExtractSettings().choosing_engine(videos).engine == "torch"
    # settings only the torch engine has choose it, whatever the job
    monkeypatch.setattr(compile_cache, "COLD_BREAK_EVEN_MEGAPIXELS", 1e9)
    assert ExtractSettings(preset="denseflow").choosing_engine(videos).engine == "torch"
    assert auto_backend("tvl1", "cpu") == "opencv" and auto_backend("dis", "cpu") == "opencv"


def test_one_pair_on_a_cpu_runs_opencvs_engine(tmp_path):
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur((rng.random((48, 64)) * 255).astype(np.uint8), (5, 5), 0)
    cv2.imwrite(str(tmp_path / "a.png"), frame)
    cv2.imwrite(str(tmp_path / "b.png"), np.roll(frame, 1, axis=1))
    result = CliRunner().invoke(cli, ["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                                      str(tmp_path / "f.flo"), "--device", "cpu"])
    assert result.exit_code == 0 and "tvl1 on opencv/cpu" in result.output, result.output
    result = CliRunner().invoke(cli, ["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                                      str(tmp_path / "f.flo"), "--device", "cpu", "--preset", "denseflow"])
    assert result.exit_code == 0 and "tvl1 on torch/cpu" in result.output, result.output


def test_an_explicit_choice_and_other_engines_are_left_alone(cache, make_video):
    videos = _videos(make_video, 1, frames=6)
    assert ExtractSettings(engine="torch", compile=True).compiling_for(videos).compile is True
    assert ExtractSettings(engine="opencv").compiling_for(videos).compile is None
    assert ExtractSettings(engine="torch").choosing_engine(videos).engine == "torch"
