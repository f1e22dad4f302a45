import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from flowkit.cli import cli
from flowkit.errors import FlowkitError, StoreError
from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.flow.quantize import quantize_flow
from flowkit.rawframes import FLOW_LIST, LAYOUT_ATTR, RGB_LIST, export_rawframes, import_rawframes
from flowkit.store.reader import FlowStore
from flowkit.store.verify import verify_store
from flowkit.synth import Motion
from flowkit.video import FrameSize

JPEG_MAX_ERROR = 3  # code steps a grayscale JPEG at quality 95 may move a flow code
JPEG_MEAN_ERROR = 0.5


def _names(kind, count):
    return [f"{kind}_{i:05d}.jpg" for i in range(1, count + 1)]


def _decoded(path):
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, path
    return image.astype(np.int16)


def _assert_close_to_codes(path, codes):
    diff = np.abs(_decoded(path) - codes.astype(np.int16))
    assert diff.max() <= JPEG_MAX_ERROR and diff.mean() <= JPEG_MEAN_ERROR, path


@pytest.fixture
def dataset(tmp_path, make_video):
    """Two extracted videos in class folders: ClassA/walk (6 frames), ClassB/pan (5 frames)."""
    videos = tmp_path / "videos"
    make_video("walk.mkv", Motion(dx=-0.5, dy=1.5), frames=6, seed=1, folder=videos / "ClassA")
    make_video("pan.mkv", Motion(dx=1.0), frames=5, seed=2, folder=videos / "ClassB")
    out = tmp_path / "out.h5"
    report = extract(videos, out, ExtractSettings(size=FrameSize.keep()), jobs=1, progress=False)
    assert report.ok and report.extracted == 2
    return out


def _write_folder(folder, frames, flows, size=(48, 64), seed=0):
    """A synthetic rawframes folder; returns the flow codes written, (flows, 2, H, W)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(1, frames + 1):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), image)
    # Smooth codes, as real flow is: JPEG keeps them within a step or two.
    ys, xs = np.mgrid[0 : size[0], 0 : size[1]]
    codes = np.stack([
        np.stack([100 + (xs + 3 * k) % 40, 150 - ys % 30]).astype(np.uint8) for k in range(flows)
    ]) if flows else np.zeros((0, 2, *size), np.uint8)
    for i, pair in enumerate(codes, 1):
        cv2.imwrite(str(folder / f"flow_x_{i:05d}.jpg"), pair[0], [cv2.IMWRITE_JPEG_QUALITY, 100])
        cv2.imwrite(str(folder / f"flow_y_{i:05d}.jpg"), pair[1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    return codes


# ---- export -------------------------------------------------------------------------------------


def test_export_writes_numbered_files_lists_and_the_stored_values(dataset, tmp_path):
    out = tmp_path / "rawframes"
    report = export_rawframes(dataset, out)
    assert report.ok and report.exported == 2 and report.classes == ["ClassA", "ClassB"]
    assert (report.frames, report.pairs) == (11, 9)

    walk = sorted(os.listdir(out / "ClassA/walk"))
    assert walk == sorted(_names("img", 6) + _names("flow_x", 5) + _names("flow_y", 5))
    assert len(os.listdir(out / "ClassB/pan")) == 5 + 4 + 4
    assert (out / RGB_LIST).read_text().splitlines() == ["ClassA/walk 6 0", "ClassB/pan 5 1"]
    assert (out / FLOW_LIST).read_text().splitlines() == ["ClassA/walk 5 0", "ClassB/pan 4 1"]

    with FlowStore(dataset) as store:
        for video_id in ("ClassA/walk", "ClassB/pan"):
            video = store.video(video_id)
            for i in range(video.entry.frames):
                assert (out / video_id / f"img_{i + 1:05d}.jpg").read_bytes() == video.rgb_jpeg(i)
            for i in range(video.entry.pairs):  # flow stored as JPEG: the very same files
                u_file, v_file = video.flow_jpeg(i)
                assert (out / video_id / f"flow_x_{i + 1:05d}.jpg").read_bytes() == u_file
                assert (out / video_id / f"flow_y_{i + 1:05d}.jpg").read_bytes() == v_file
    # flow_x_00001 holds the first pair's horizontal motion: pan moves 1 px right, 0 px down.
    inner = (slice(8, -8), slice(8, -8))
    pan_x = _decoded(out / "ClassB/pan/flow_x_00001.jpg")[inner]
    pan_y = _decoded(out / "ClassB/pan/flow_y_00001.jpg")[inner]
    assert abs(np.median(pan_x) - quantize_flow(np.float32(1.0))) <= 1
    assert abs(np.median(pan_y) - quantize_flow(np.float32(0.0))) <= 1


def test_export_of_raw_flow_encodes_its_codes_as_jpeg(tmp_path, make_video):
    make_video("a.mkv", Motion(dx=1.0), frames=4)
    out = tmp_path / "out.h5"
    settings = ExtractSettings(size=FrameSize.keep(), flow_format="raw")
    assert extract(tmp_path / "videos", out, settings, jobs=1, progress=False).ok
    export_rawframes(out, tmp_path / "rf")
    with FlowStore(out) as store:
        video = store.video("a")
        assert video.flow_encoding == "raw"
        for i in range(video.entry.pairs):
            _assert_close_to_codes(tmp_path / f"rf/a/flow_x_{i + 1:05d}.jpg", video.flow_codes(i)[0])
            _assert_close_to_codes(tmp_path / f"rf/a/flow_y_{i + 1:05d}.jpg", video.flow_codes(i)[1])


def test_export_of_a_subset_keeps_the_whole_datasets_labels_and_replaces_stale_files(dataset, tmp_path):
    out = tmp_path / "rawframes"
    stale = out / "ClassB/pan"
    stale.mkdir(parents=True)
    for name in ("img_00009.jpg", "flow_x_00005.jpg", "flow_y_00042.jpg", "notes.txt"):
        (stale / name).write_bytes(b"old")
    report = export_rawframes(dataset, out, ids=["ClassB/pan"])
    assert report.exported == 1
    assert (out / RGB_LIST).read_text() == "ClassB/pan 5 1\n"
    assert (out / FLOW_LIST).read_text() == "ClassB/pan 4 1\n"
    assert not (out / "ClassA").exists()
    assert sorted(os.listdir(stale)) == sorted(
        _names("img", 5) + _names("flow_x", 4) + _names("flow_y", 4) + ["notes.txt"]
    )


def test_export_without_class_folders_or_rgb(tmp_path, make_video):
    make_video("a.mkv", frames=5, seed=1)
    make_video("b.mkv", frames=5, seed=2, folder=tmp_path / "videos/sub")
    out = tmp_path / "out.h5"
    settings = ExtractSettings(size=FrameSize.keep(), rgb=False)
    assert extract(tmp_path / "videos", out, settings, jobs=1, progress=False).ok
    report = export_rawframes(out, tmp_path / "rf")
    assert report.classes == [] and report.frames == 0
    assert (tmp_path / "rf" / RGB_LIST).read_text() == ""
    assert (tmp_path / "rf" / FLOW_LIST).read_text().splitlines() == ["a 4 -1", "sub/b 4 -1"]
    assert sorted(os.listdir(tmp_path / "rf/a")) == sorted(_names("flow_x", 4) + _names("flow_y", 4))


def test_export_bad_input_is_a_one_line_error(dataset, tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        export_rawframes(tmp_path / "missing.h5", tmp_path / "rf")
    with pytest.raises(FlowkitError, match="has no video 'nope'"):
        export_rawframes(dataset, tmp_path / "rf", ids=["nope"])
    with pytest.raises(FlowkitError, match=r"0\.\.100"):
        export_rawframes(dataset, tmp_path / "rf", jpeg_quality=101)
    assert not (tmp_path / "rf").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FlowkitError, match="not a folder"):
        export_rawframes(dataset, tmp_path / "file")


# ---- import -------------------------------------------------------------------------------------


def test_export_then_import_round_trips(dataset, tmp_path):
    export_rawframes(dataset, tmp_path / "rf")
    back = tmp_path / "back.h5"
    report = import_rawframes(tmp_path / "rf", back)
    assert report.ok and (report.imported, report.skipped) == (2, 0)
    assert (report.frames, report.pairs) == (11, 9)
    assert verify_store(back).ok

    with FlowStore(dataset) as original, FlowStore(back) as imported:
        assert imported.ids == original.ids == ["ClassA/walk", "ClassB/pan"]
        assert imported.settings["imported_from"] == "rawframes"
        # flowkit writes TSN's names and numbers (yjxiong/dense_flow src/common.cpp: "_%05d.jpg", i+1).
        assert {imported.video(v).attrs[LAYOUT_ATTR] for v in imported.ids} == {
            "tsn (img_00001.jpg, flow_x_00001.jpg, flow_y_00001.jpg)"
        }
        for video_id in original.ids:
            a, b = original.video(video_id), imported.video(video_id)
            assert (b.entry.frames, b.entry.pairs) == (a.entry.frames, a.entry.pairs)
            assert (b.entry.height, b.entry.width) == (48, 64)
            assert b.attrs["source"] == video_id and b.attrs["algorithm"] == "imported"
            assert b.bound == 20.0 and b.step == 1 and b.attrs["fps"] == 0.0
            assert json.loads(b.attrs["settings"]) == imported.settings
            for i in range(a.entry.frames):
                assert b.rgb_jpeg(i) == a.rgb_jpeg(i)
            for i in range(a.entry.pairs):  # lossless both ways: the same JPEG files
                assert b.flow_jpeg(i) == a.flow_jpeg(i)

    again = import_rawframes(tmp_path / "rf", back)
    assert (again.imported, again.skipped) == (0, 2)
    # A changed folder is redone; the other stays skipped.
    touched = tmp_path / "rf/ClassB/pan/img_00001.jpg"
    later = touched.stat().st_mtime_ns + 10**9
    os.utime(touched, ns=(later, later))
    again = import_rawframes(tmp_path / "rf", back)
    assert (again.imported, again.skipped) == (1, 1)
    assert verify_store(back).ok


def test_import_checks_each_folder_and_imports_the_good_ones(tmp_path):
    rf = tmp_path / "rf"
    good = _write_folder(rf / "good", frames=4, flows=3, seed=1)
    extra = _write_folder(rf / "extra", frames=4, flows=4, seed=2)
    flow_only = _write_folder(rf / "flow_only", frames=0, flows=3, seed=3)
    _write_folder(rf / "mismatch", frames=5, flows=2)
    _write_folder(rf / "gap", frames=5, flows=4)
    (rf / "gap/img_00003.jpg").unlink()
    _write_folder(rf / "no_y", frames=4, flows=3)
    (rf / "no_y/flow_y_00002.jpg").unlink()
    _write_folder(rf / "sizes", frames=4, flows=3)
    cv2.imwrite(str(rf / "sizes/img_00004.jpg"), np.zeros((24, 32, 3), np.uint8))
    _write_folder(rf / "garbage", frames=4, flows=3)
    (rf / "garbage/flow_x_00002.jpg").write_bytes(b"not a jpeg")
    (rf / "not_frames").mkdir()
    (rf / "not_frames/readme.txt").write_text("ignored")

    out = tmp_path / "out.h5"
    report = import_rawframes(rf, out, bound=15.0)
    assert report.folders == 8 and report.imported == 3 and not report.ok
    assert report.dropped_extra_flow == ["extra"]
    errors = {f.id: f.error for f in report.failed}
    assert errors == {
        "mismatch": "5 img files but 2 flow_x files; expected 4 (or 5)",
        "gap": "img_00003.jpg is missing (numbering has a gap)",
        "no_y": "flow_y_00002.jpg is missing for flow_x_00002.jpg",
        "sizes": "img_00004.jpg is 32x24, the first image 64x48",
        "garbage": "flow_x_00002.jpg is not a decodable image",
    }
    assert verify_store(out).ok
    with FlowStore(out) as store:
        assert store.ids == ["extra", "flow_only", "good"]
        assert sorted(f.id for f in store.failures) == sorted(errors)
        for video_id, codes, frames in (("good", good, 4), ("extra", extra[:3], 4),
                                        ("flow_only", flow_only, 4)):
            video = store.video(video_id)
            assert (video.entry.frames, video.entry.pairs, video.bound) == (frames, 3, 15.0)
            diff = np.abs(video.flow_codes(slice(None)).astype(np.int16) - codes.astype(np.int16))
            assert diff.max() <= 2
            assert video.flow_jpeg(0)[0] == (rf / f"{video_id}/flow_x_00001.jpg").read_bytes()
        assert store.video("flow_only").has_rgb is False
        good_video = store.video("good")
        for i in range(4):
            assert good_video.rgb_jpeg(i) == (rf / f"good/img_{i + 1:05d}.jpg").read_bytes()

    # Fixing a folder clears its failure on the next run; the good ones are skipped.
    (rf / "mismatch/img_00005.jpg").unlink()
    (rf / "mismatch/img_00004.jpg").unlink()
    again = import_rawframes(rf, out, bound=15.0)
    assert (again.imported, again.skipped) == (1, 3)
    assert "mismatch" not in {f.id for f in again.failures}


def test_import_refuses_other_settings_without_force(tmp_path):
    _write_folder(tmp_path / "rf/v", frames=3, flows=2)
    out = tmp_path / "out.h5"
    assert import_rawframes(tmp_path / "rf", out).ok
    with pytest.raises(FlowkitError, match=r"other settings \(bound differ\).*--force"):
        import_rawframes(tmp_path / "rf", out, bound=10.0)
    report = import_rawframes(tmp_path / "rf", out, bound=10.0, force=True)
    assert report.imported == 1
    with FlowStore(out) as store:
        assert store.video("v").bound == 10.0 and store.settings["bound"] == 10.0


def test_import_bad_input_never_touches_the_output(tmp_path):
    with pytest.raises(FlowkitError, match="does not exist"):
        import_rawframes(tmp_path / "missing", tmp_path / "out.h5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlowkitError, match="no rawframe folders"):
        import_rawframes(tmp_path / "empty", tmp_path / "out.h5")
    for bound in (0, float("nan"), float("inf")):
        with pytest.raises(FlowkitError, match="--bound must be a positive finite number"):
            import_rawframes(tmp_path / "empty", tmp_path / "out.h5", bound=bound)
    assert not (tmp_path / "out.h5").exists()

    _write_folder(tmp_path / "rf/v", frames=3, flows=2)
    foreign = tmp_path / "notes.h5"
    foreign.write_text("my notes")
    with pytest.raises(StoreError, match="not a flowkit file"):
        import_rawframes(tmp_path / "rf", foreign)
    assert foreign.read_text() == "my notes"
    with pytest.raises(StoreError, match="does not exist"):
        import_rawframes(tmp_path / "rf", tmp_path / "nowhere/out.h5")


# ---- command line -------------------------------------------------------------------------------


def test_cli_export_and_import(dataset, tmp_path):
    runner = CliRunner()
    rf, back = tmp_path / "rf", tmp_path / "back.h5"
    result = runner.invoke(cli, ["export-rawframes", str(dataset), str(rf), "--video", "ClassA/walk"])
    assert result.exit_code == 0, result.output
    assert "exported 1 videos (6 frames, 5 flow pairs)" in result.stderr
    assert (rf / FLOW_LIST).read_text() == "ClassA/walk 5 0\n"

    result = runner.invoke(cli, ["import-rawframes", str(rf), str(back), "--bound", "20"])
    assert result.exit_code == 0, result.output
    assert "imported 1 videos (5 pairs)" in result.stderr and "0 failed" in result.stderr

    (rf / "ClassA/walk/flow_y_00003.jpg").unlink()
    result = runner.invoke(cli, ["import-rawframes", str(rf), str(back)])
    assert result.exit_code == 1
    assert "failed: ClassA/walk: flow_y_00003.jpg is missing for flow_x_00003.jpg" in result.stderr


def test_cli_bad_input_is_one_line_without_traceback(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["import-rawframes", str(tmp_path / "missing"), str(tmp_path / "o.h5")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: input folder {tmp_path / 'missing'} does not exist"
    result = runner.invoke(cli, ["export-rawframes", str(tmp_path / "o.h5"), str(tmp_path / "rf")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
    assert not Path(tmp_path / "rf").exists()
