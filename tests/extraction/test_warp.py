"""`flowkit extract --warp` end to end: real synth videos, real TV-L1, real HDF5."""

import json

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from flowkit.cli import EXIT_BAD_INPUT, cli
from flowkit.errors import StoreError
from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.flow.engines import ALGORITHMS
from flowkit.store.format import WARPED_FLOW
from flowkit.store.reader import FlowStore
from flowkit.store.verify import verify_store
from flowkit.synth import (
    DEMO_MOTIONS,
    PAN_OBJECT_RADIUS,
    PAN_OBJECT_VELOCITY,
    render_pan_with_object,
)
from flowkit.video import FrameSize, write_video

SIZE, FRAMES = 96, 6
WIDTH = SIZE * 5 // 4  # the camera kind's frames


def _cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result, result.output


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    """`flowkit synth --kind camera` clips extracted with `--warp` (TV-L1, OpenCV)."""
    root = tmp_path_factory.mktemp("warp")
    result, output = _cli("synth", root / "videos", "--kind", "camera", "--frames", FRAMES, "--size", SIZE)
    assert result.exit_code == 0, output
    result, output = _cli("extract", root / "videos", root / "out.h5", "--no-resize", "--warp",
                          "--engine", "opencv", "-j", "1", "-q")
    assert result.exit_code == 0, output
    return root


def _mean_magnitude(video, warped):
    return float(np.mean([np.linalg.norm(video.flow_pixels(i, warped=warped), axis=-1).mean()
                          for i in range(video.entry.pairs)]))


def test_warped_flow_removes_the_camera_motion_and_keeps_the_moving_object(camera):
    with FlowStore(camera / "out.h5") as store:
        for name in DEMO_MOTIONS:
            video = store.video(name)
            plain, warped = _mean_magnitude(video, False), _mean_magnitude(video, True)
            assert plain > 0.5 and warped < 0.3 * plain, (name, plain, warped)
            assert video.homography_fallbacks == 0
        video = store.video("pan_right")
        _, centres = render_pan_with_object(FRAMES, WIDTH, SIZE, seed=0)
        ys, xs = np.mgrid[0:SIZE, 0:WIDTH]
        pan = np.array([DEMO_MOTIONS["pan_right"][0].dx, DEMO_MOTIONS["pan_right"][0].dy])
        relative = np.array(PAN_OBJECT_VELOCITY) - pan  # the object's motion over the background
        for i in range(video.entry.pairs):
            distance = np.hypot(xs - centres[i][0], ys - centres[i][1])
            inside, outside = distance < 0.6 * PAN_OBJECT_RADIUS * SIZE, distance > 1.6 * PAN_OBJECT_RADIUS * SIZE
            warped, plain = video.flow_pixels(i, warped=True), video.flow_pixels(i)
            assert np.abs(warped[inside].mean(axis=0) - relative).max() < 0.5, i
            assert np.abs(plain[inside].mean(axis=0) - PAN_OBJECT_VELOCITY).max() < 0.5, i
            assert np.linalg.norm(warped[outside], axis=-1).mean() < 0.15, i  # the background: still
            assert np.abs(plain[outside].mean(axis=0) - pan).max() < 0.2, i


def test_warped_flow_is_stored_as_flow_is_verified_and_shown(camera):
    out = camera / "out.h5"
    with FlowStore(out) as store:
        assert store.settings["warp"] is True
        video = store.video("pan_right")
        flow, warped = video.flow, video.warped_flow
        assert warped.shape == flow.shape == (FRAMES - 1, 2) and warped.dtype == flow.dtype
        assert dict(warped.attrs)["encoding"] == "jpeg" and warped.attrs["quality"] == flow.attrs["quality"]
        assert "crc32" in warped.attrs and "bytes" in warped.attrs
        assert video.flow_codes(slice(None), warped=True).shape == (FRAMES - 1, 2, SIZE, WIDTH)
    assert verify_store(out, mark=False).ok
    result, output = _cli("info", out)
    assert result.exit_code == 0 and "warped_flow" in output and "warp yes" in output
    assert "warped     0 of 20 pairs without a homography" in output
    result, output = _cli("info", out, "--json")
    summary = json.loads(output)
    assert summary["homography_fallbacks"] == {"pairs": 0, "videos": {}}
    assert summary["bytes_by_kind"]["warped_flow"] > 0


def test_split_keeps_warped_flow_byte_for_byte(camera, tmp_path):
    result, output = _cli("split", camera / "out.h5", tmp_path / "split.h5", "--shards", "2")
    assert result.exit_code == 0, output
    with FlowStore(camera / "out.h5") as a, FlowStore(tmp_path / "split.h5") as b:
        assert a.settings == b.settings and sorted(a.ids) == sorted(b.ids)
        for video_id in a.ids:
            x, y = a.video(video_id), b.video(video_id)
            assert [x.flow_jpeg(i, warped=True) for i in range(x.entry.pairs)] == [
                y.flow_jpeg(i, warped=True) for i in range(y.entry.pairs)]
    assert verify_store(tmp_path / "split.h5", mark=False).ok


@pytest.fixture
def flat_video(tmp_path):
    """Featureless frames: no homography can be found for any pair."""
    frames = [np.full((48, 64, 3), 100 + i, np.uint8) for i in range(4)]
    return write_video(tmp_path / "videos" / "flat.mkv", iter(frames))


def test_pairs_without_a_homography_keep_the_plain_flow_and_are_counted(tmp_path, flat_video):
    out = tmp_path / "out.h5"
    report = extract(tmp_path / "videos", out, ExtractSettings(size=FrameSize.keep(), engine="opencv", warp=True,
                                                               flow_format="raw"), jobs=1, progress=False)
    assert report.ok
    with FlowStore(out) as store:
        video = store.video("flat")
        assert video.homography_fallbacks == 3
        assert np.array_equal(video.flow_codes(slice(None), warped=True), video.flow_codes(slice(None)))
        assert video.warped_flow.attrs["encoding"] == "raw"
    output = _cli("info", out)[1]
    assert "warped     3 of 3 pairs without a homography (stored unwarped) in 1 video(s)" in output
    assert "  flat: 3" in output
    assert json.loads(_cli("info", out, "--json")[1])["homography_fallbacks"] == {"pairs": 3, "videos": {"flat": 3}}
    # Damage to the warped flow is found as damage to the flow is.
    with FlowStore(out) as store:
        shard = store.shard_path(store.entries["flat"].shard)
    with h5py.File(shard, "r+") as f:
        dataset = f[f"videos/flat/{WARPED_FLOW}"]
        codes = dataset[1]
        codes[0, 0, 0] ^= 1
        dataset[1] = codes
    report = verify_store(out, mark=False)
    assert not report.ok and any("warped_flow checksum mismatch" in p for p in report.problems), report.problems


def test_a_dataset_without_warp_refuses_warp_unless_forced(tmp_path, flat_video):
    out = tmp_path / "out.h5"
    args = [tmp_path / "videos", out, "--no-resize", "--engine", "opencv", "-j", "1", "-q"]
    assert _cli("extract", *args)[0].exit_code == 0
    with FlowStore(out) as store:  # as datasets made before warped flow existed: no trace of it
        assert "warp" not in store.settings
        video = store.video("flat")
        assert video.warped_flow is None and video.homography_fallbacks is None
        with pytest.raises(StoreError, match=r"no warped flow \(extract with --warp\)"):
            video.flow_codes(0, warped=True)
    assert "warped " not in _cli("info", out)[1]
    result, output = _cli("extract", *args)
    assert result.exit_code == 0 and "1 already done" in output  # the plain rerun still resumes
    result, output = _cli("extract", *args, "--warp")
    assert result.exit_code == EXIT_BAD_INPUT
    assert output.strip().splitlines() == [
        f"error: {out} was made with other settings (warp differ); use --force to redo every video "
        "with the new ones, or another output file"]
    result, output = _cli("extract", *args, "--warp", "--force")
    assert result.exit_code == 0 and "extracted 1 videos" in output, output
    with FlowStore(out) as store:
        assert store.settings["warp"] is True and store.video("flat").warped_flow is not None


def test_a_device_that_is_not_there_fails_in_one_line_before_any_work(tmp_path, flat_video):
    out = tmp_path / "out.h5"
    result, output = _cli("extract", tmp_path / "videos", out, "--warp", "--engine", "torch",
                          "--device", "cuda:99", "-q")
    assert result.exit_code == EXIT_BAD_INPUT, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "cuda:99" in lines[0] and "Traceback" not in output
    assert not out.exists()


@pytest.mark.parametrize("algorithm", sorted(set(ALGORITHMS) - {"motionnet"}))  # motionnet: needs fitted weights
def test_every_algorithm_can_warp(tmp_path, algorithm):
    """--warp only warps frames: any engine computes the flow of the warped pair."""
    frames, _ = render_pan_with_object(3, 80, 64, seed=2)
    write_video(tmp_path / "videos" / "pan.mkv", iter(frames))
    settings = ExtractSettings(algorithm=algorithm, engine="opencv", size=FrameSize.keep(), warp=True)
    assert extract(tmp_path / "videos", tmp_path / "out.h5", settings, jobs=1, progress=False).ok
    with FlowStore(tmp_path / "out.h5") as store:
        video = store.video("pan")
        assert video.homography_fallbacks == 0
        assert _mean_magnitude(video, True) < 0.5 * _mean_magnitude(video, False)


def test_export_rawframes_writes_the_warped_flow_under_the_flow_names(camera, tmp_path):
    out = camera / "out.h5"
    result, output = _cli("export-rawframes", out, tmp_path / "warped", "--warped", "--video", "pan_right")
    assert result.exit_code == 0, output
    with FlowStore(out) as store:
        video = store.video("pan_right")
        for i in range(video.entry.pairs):
            u_file, v_file = video.flow_jpeg(i, warped=True)
            assert (tmp_path / f"warped/pan_right/flow_x_{i + 1:05d}.jpg").read_bytes() == u_file
            assert (tmp_path / f"warped/pan_right/flow_y_{i + 1:05d}.jpg").read_bytes() == v_file
            assert u_file != video.flow_jpeg(i)[0]


def test_export_rawframes_warped_needs_warped_flow(tmp_path, flat_video):
    out = tmp_path / "out.h5"
    assert extract(tmp_path / "videos", out, ExtractSettings(size=FrameSize.keep(), engine="opencv"),
                   jobs=1, progress=False).ok
    result, output = _cli("export-rawframes", out, tmp_path / "rf", "--warped")
    assert result.exit_code == EXIT_BAD_INPUT
    assert output.strip().splitlines() == [f"error: {out} has no warped flow: extract it with --warp"]


def test_pairs_that_touch_a_featureless_frame_fall_back_and_the_others_are_warped(tmp_path):
    frames, _ = render_pan_with_object(6, 96, 72, seed=4)
    frames[2] = np.full_like(frames[2], 120)  # pairs 1 and 2 touch a featureless frame
    write_video(tmp_path / "videos" / "pan.mkv", iter(frames))
    settings = ExtractSettings(algorithm="dis", size=FrameSize.keep(), warp=True)
    assert extract(tmp_path / "videos", tmp_path / "out.h5", settings, jobs=1, progress=False).ok
    with FlowStore(tmp_path / "out.h5") as store:
        video = store.video("pan")
        assert video.homography_fallbacks == 2
        plain, warped = video.flow_codes(slice(None)), video.flow_codes(slice(None), warped=True)
    assert [np.array_equal(plain[i], warped[i]) for i in range(5)] == [False, True, True, False, False]


def test_a_batch_mixing_found_and_failed_homographies_keeps_each_pair_in_its_place():
    """The batched path (one engine call per batch, as the torch engine takes it)."""
    from flowkit.extraction.worker import _warped_flows
    from flowkit.flow.camera_motion import CameraMotion, warp_onto_first
    from flowkit.flow.engines import create_engine

    frames, _ = render_pan_with_object(6, 96, 72, seed=4)
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    grey[2] = np.full_like(grey[2], 120)
    engine, motion = create_engine("dis", {}), CameraMotion()
    features = [motion.features(g) for g in grey]
    batch = [(grey[i], grey[i + 1]) for i in range(5)]
    forwards = engine.calc_batch([a for a, _ in batch], [b for _, b in batch])
    warped, failed = _warped_flows(engine, motion, batch, [(features[i], features[i + 1]) for i in range(5)], forwards)
    assert failed == 2 and warped[1] is forwards[1] and warped[2] is forwards[2]
    for i in (0, 3, 4):
        estimate = motion.estimate(features[i], features[i + 1], (72, 96))
        assert np.array_equal(warped[i], engine.calc(grey[i], warp_onto_first(*batch[i], estimate.homography)))
