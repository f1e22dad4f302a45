"""Extraction end to end on real video files with known motion."""

import os
import time
from dataclasses import replace

import cv2
import h5py
import numpy as np
import pytest

from flowkit.errors import FlowkitError
from flowkit.extraction.pipeline import ExtractSettings, extract, run_pipeline
from flowkit.extraction.worker import VideoOutcome
from flowkit.flow.metrics import endpoint_error
from flowkit.store.dataset import DatasetWriter, WriteReport
from flowkit.store.format import canonical_settings
from flowkit.store.reader import FlowStore
from flowkit.store.verify import verify_store
from flowkit.synth import Motion
from flowkit.video import FrameSize, find_videos

KEEP = ExtractSettings(size=FrameSize.keep(), engine="opencv")  # the torch engine: below


def run(videos, out, settings=KEEP, **kwargs):
    kwargs.setdefault("jobs", 1)
    return extract(videos, out, settings, progress=False, **kwargs)


def test_flow_matches_the_true_motion_with_u_then_v_and_frame_i_to_i_plus_1(tmp_path, make_video):
    make_video("right.mkv", Motion(dx=2.0), frames=5, width=96, height=72)
    make_video("up.mkv", Motion(dy=-1.5), frames=5, width=96, height=72, seed=1)
    report = run(tmp_path / "videos", tmp_path / "out.h5")
    assert report.ok and report.extracted == 2 and report.pairs == 8
    inner = (slice(12, -12), slice(12, -12))
    with FlowStore(tmp_path / "out.h5") as store:
        right, up = store.video("right"), store.video("up")
        assert right.flow_codes(slice(None)).shape == (4, 2, 72, 96) and right.flow_encoding == "jpeg"
        for i in range(4):
            truth = Motion(dx=2.0).flow(96, 72)
            assert endpoint_error(right.flow_pixels(i)[inner], truth[inner]) < 0.25
        u, v = right.flow_pixels(0)[inner].mean(axis=(0, 1))
        assert u == pytest.approx(2.0, abs=0.1) and v == pytest.approx(0.0, abs=0.1)
        u, v = up.flow_pixels(0)[inner].mean(axis=(0, 1))
        assert u == pytest.approx(0.0, abs=0.1) and v == pytest.approx(-1.5, abs=0.1)
        attrs = right.attrs
        assert attrs["frames"] == 5 and attrs["pairs"] == 4 and attrs["algorithm"] == "tvl1"
        assert attrs["source"] == "right.mkv" and attrs["bound"] == 20.0 and attrs["complete"]
        assert attrs["source_size"] == (tmp_path / "videos/right.mkv").stat().st_size


def test_rgb_frames_are_the_decoded_frames(tmp_path, make_video):
    from flowkit.video import VideoReader

    path = make_video("a.mkv", frames=4)
    run(tmp_path / "videos", tmp_path / "out.h5")
    decoded = list(VideoReader(path, FrameSize.keep()))
    with FlowStore(tmp_path / "out.h5") as store:
        video = store.video("a")
        assert video.rgb_jpeg(0)[:2] == b"\xff\xd8"  # a JPEG file
        assert video.group["rgb"].shape == (len(decoded),)
        for i, frame in enumerate(decoded):
            # Exactly the decoded frame, JPEG-encoded at quality 95.
            expected = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            assert video.rgb_jpeg(i) == expected
            assert np.abs(video.rgb_frame(i).astype(int) - frame).mean() < 6


def test_rerun_skips_complete_videos_and_redoes_changed_ones(tmp_path, make_video):
    a = make_video("a.mkv", seed=1)
    make_video("b.mkv", seed=2)
    out = tmp_path / "out.h5"
    assert run(tmp_path / "videos", out).extracted == 2
    again = run(tmp_path / "videos", out)
    assert (again.extracted, again.skipped) == (0, 2)
    stamp = a.stat().st_mtime_ns
    os.utime(a, ns=(stamp + 10**9, stamp + 10**9))
    changed = run(tmp_path / "videos", out)
    assert (changed.extracted, changed.skipped) == (1, 1)
    forced = run(tmp_path / "videos", out, force=True)
    assert (forced.extracted, forced.skipped) == (2, 0)
    # Every rerun replaced whole videos: one live copy each, the dead shards deleted.
    assert verify_store(out).ok
    with FlowStore(out) as store:
        assert len(store) == 2
        live = {e.shard for e in store.entries.values()}
    assert len(list((tmp_path / "out.h5.shards").glob("part-*.h5"))) == len(live)


def test_new_videos_are_added_to_an_existing_dataset(tmp_path, make_video):
    make_video("a.mkv")
    run(tmp_path / "videos", tmp_path / "out.h5")
    make_video("b.mkv", seed=3)
    report = run(tmp_path / "videos", tmp_path / "out.h5")
    assert (report.extracted, report.skipped) == (1, 1)
    with FlowStore(tmp_path / "out.h5") as store:
        assert store.ids == ["a", "b"]


def test_changed_settings_need_force(tmp_path, make_video):
    make_video("a.mkv")
    out = tmp_path / "out.h5"
    run(tmp_path / "videos", out)
    other = ExtractSettings(size=FrameSize.keep(), bound=10.0)
    with pytest.raises(FlowkitError, match=r"other settings \(bound differ\); use --force"):
        run(tmp_path / "videos", out, other)
    assert run(tmp_path / "videos", out, other, force=True).extracted == 1
    with FlowStore(out) as store:
        assert store.video("a").bound == 10.0 and store.settings["bound"] == 10.0


def test_step_backward_fps_size_and_no_rgb(tmp_path, make_video):
    make_video("a.mkv", Motion(dx=1.5), frames=10, width=96, height=72)
    settings = ExtractSettings(size=FrameSize.fixed(64, 48), step=2, backward=True, rgb=False)
    run(tmp_path / "videos", tmp_path / "out.h5", settings)
    with FlowStore(tmp_path / "out.h5") as store:
        video = store.video("a")
        assert video.flow_codes(slice(None)).shape == (8, 2, 48, 64)
        assert video.flow_codes(slice(None), backward=True).shape == (8, 2, 48, 64)
        assert not video.has_rgb and video.step == 2
        inner = (slice(8, -8), slice(8, -8))
        forward = video.flow_pixels(3)[inner].mean(axis=(0, 1))
        backward = video.flow_pixels(3, backward=True)[inner].mean(axis=(0, 1))
        # Two frames apart at 64/96 scale: 1.5 * 2 * 2/3 = 2 px to the right, and back.
        assert forward[0] == pytest.approx(2.0, abs=0.15) and backward[0] == pytest.approx(-2.0, abs=0.15)
    run(tmp_path / "videos", tmp_path / "slow.h5", ExtractSettings(size=FrameSize.keep(), fps=12.5))
    with FlowStore(tmp_path / "slow.h5") as store:
        video = store.video("a")
        assert video.entry.frames == 5 and video.attrs["source_frames"] == 10
        assert video.attrs["fps"] == 12.5 and video.attrs["source_fps"] == pytest.approx(25.0)


def test_two_workers_give_bit_identical_results(tmp_path, make_video):
    for i in range(3):
        make_video(f"v{i}.mkv", Motion(dx=1.0, rotate=0.5 * i), frames=5, seed=i)
    run(tmp_path / "videos", tmp_path / "one.h5", jobs=1)
    run(tmp_path / "videos", tmp_path / "two.h5", jobs=2)
    with h5py.File(tmp_path / "one.h5") as one, h5py.File(tmp_path / "two.h5") as two:
        for i in range(3):
            a, b = one[f"videos/v{i}/flow"][()], two[f"videos/v{i}/flow"][()]
            assert [x.tobytes() for x in a.ravel()] == [x.tobytes() for x in b.ravel()]


def test_bad_videos_are_recorded_and_the_others_still_extracted(tmp_path, make_video):
    videos = tmp_path / "videos"
    make_video("good.mkv")
    make_video("one_frame.mkv", frames=1)
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "text.mp4").write_text("hello, I am not a video\n" * 10)
    full = make_video("long.avi", frames=40)
    data = full.read_bytes()
    (videos / "truncated.avi").write_bytes(data[: len(data) // 2])
    full.unlink()
    make_video("dup.mkv")
    make_video("dup.avi")
    out = tmp_path / "out.h5"
    report = run(videos, out)
    assert report.extracted == 2 and not report.ok
    errors = {f.source: f.error for f in report.failed}
    assert errors == {
        "one_frame.mkv": "only 1 decodable frame; flow at step 1 needs at least 2",
        "empty.mp4": "empty file (0 bytes)",
        "text.mp4": "not a video OpenCV can decode",
        "truncated.avi": errors["truncated.avi"],
        "dup.mkv": "same id as dup.avi (ids are paths without extension)",
    }
    assert errors["truncated.avi"].startswith("truncated: decoded")
    with FlowStore(out) as store:
        assert store.ids == ["dup", "good"]
        assert sorted(f.source for f in store.failures) == sorted(errors)
    assert verify_store(out).ok
    # Fixing a video clears its failure on the next run; the rest are retried and fail again.
    (videos / "empty.mp4").unlink()
    make_video("empty.mp4")
    report = run(videos, out)
    assert report.extracted == 1 and len(report.failed) == 4
    with FlowStore(out) as store:
        assert "empty" in store and "empty.mp4" not in {f.source for f in store.failures}


def test_a_video_whose_id_is_a_folder_of_another_is_refused(tmp_path, make_video):
    make_video("a.mkv")
    make_video("a/b.mkv", seed=1)
    report = run(tmp_path / "videos", tmp_path / "out.h5")
    assert report.extracted == 1
    assert report.failed[0].source == "a/b.mkv" and "clashes" in report.failed[0].error


def test_nothing_to_do_when_the_folder_has_no_videos(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(FlowkitError, match="no videos found"):
        run(tmp_path / "videos", tmp_path / "out.h5")


def test_ucf101_and_hmdb51_clips(tmp_path, shared_testdata):
    settings = ExtractSettings(algorithm="dis", size=FrameSize(short_side=64))
    start = time.perf_counter()
    report = run(shared_testdata / "videos", tmp_path / "out.h5", settings, jobs=2)
    assert report.ok and report.extracted == 5, report.failed
    with FlowStore(tmp_path / "out.h5") as store:
        hmdb = [store.video(i) for i in store.ids if i.startswith("hmdb51/")]
        for video in hmdb:
            # Frames are counted as decoded: one fewer than the AVI header claims.
            assert video.entry.frames == video.attrs["header_frames"] - 1
            assert video.entry.height == 64 and video.entry.width % 2 == 0
        ucf = store.video("ucf101/v_ApplyEyeMakeup_g01_c01")
        assert ucf.entry.frames == 164 and ucf.entry.width == 86
    assert time.perf_counter() - start < 120


def test_two_workers_packing_after_every_video(tmp_path, make_video):
    # With a pack per result, one result's pack often packs (and deletes) the staged file of a
    # result not yet processed: bookkeeping must not depend on that file still being there.
    for i in range(10):
        make_video(f"v{i}.mkv", frames=3, width=32, height=24, seed=i)
    report = run(tmp_path / "videos", tmp_path / "out.h5", jobs=2, shard_bytes=1)  # every video is over a byte: a shard each
    assert report.ok and report.extracted == 10
    assert verify_store(tmp_path / "out.h5").ok
    assert list((tmp_path / "out.h5.shards/staging").iterdir()) == []


def test_torch_engine_extracts_what_opencv_does_and_batching_changes_nothing(tmp_path, make_video):
    make_video("a.mkv", Motion(dx=1.5, rotate=0.5), frames=6, width=80, height=60)
    opencv = ExtractSettings(size=FrameSize.keep(), engine="opencv", flow_format="raw")
    torch_one = replace(opencv, engine="torch", device="cpu")
    torch_batched = replace(torch_one, batch_size=3)
    for name, settings in (("cv", opencv), ("t1", torch_one), ("t3", torch_batched)):
        assert run(tmp_path / "videos", tmp_path / f"{name}.h5", settings).ok
    with FlowStore(tmp_path / "cv.h5") as cv, FlowStore(tmp_path / "t1.h5") as t1, \
            FlowStore(tmp_path / "t3.h5") as t3:
        assert (t1.video("a").attrs["engine"], t1.video("a").attrs["device"]) == ("torch", "cpu")
        assert cv.video("a").attrs["engine"] == "opencv" and t1.settings["engine"] == "torch"
        ref, ours = cv.video("a").flow_codes(slice(None)), t1.video("a").flow_codes(slice(None))
        diff = np.abs(ref.astype(int) - ours.astype(int))  # codes are 0.157 px apart
        assert diff.mean() < 0.1 and (diff > 2).mean() < 0.001, (diff.mean(), diff.max())
        assert np.array_equal(ours, t3.video("a").flow_codes(slice(None)))


def test_auto_engine_resumes_with_the_engine_a_dataset_was_made_with(tmp_path, make_video):
    make_video("a.mkv")
    out = tmp_path / "out.h5"
    run(tmp_path / "videos", out, ExtractSettings(size=FrameSize.keep(), engine="opencv"))
    again = run(tmp_path / "videos", out, ExtractSettings(size=FrameSize.keep()))  # engine auto
    assert (again.extracted, again.skipped) == (0, 1)
    with pytest.raises(FlowkitError, match=r"\(engine differ\)"):
        run(tmp_path / "videos", out, ExtractSettings(size=FrameSize.keep(), engine="torch"))


class _RunnerThatLoses:
    """A runner whose worker says a video is done but wrote it nowhere (as the tasks of another
    run did before task keys held the output): a fault injected into what the pipeline trusts."""

    def outcomes(self, todo, on_pairs):
        for video in todo:
            yield VideoOutcome(video.id, video.relpath, True, frames=3, pairs=2, staged=False)


def test_a_video_reported_done_but_not_in_the_output_is_a_failure(tmp_path, make_video):
    make_video("a.mkv", Motion(dx=1.0), frames=3)
    out = tmp_path / "out.h5"
    settings = ExtractSettings(algorithm="dis").fingerprint
    report = WriteReport()
    with DatasetWriter(out) as dataset:
        dataset.adopt_settings(settings)
        counts = run_pipeline(dataset, find_videos(tmp_path / "videos"), _RunnerThatLoses(),
                              canonical_settings(settings), False, report, progress=False)
    assert counts.done == 0
    assert [f.error for f in report.failed] == ["finished, but not in the published output"]
    assert not report.ok
