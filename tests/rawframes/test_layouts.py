"""Importing the rawframes folders peers really write, each fixture built the way that peer writes it."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from flowkit.cli import cli
from flowkit.errors import FlowkitError
from flowkit.rawframes import (
    FLOW_LIST,
    LAYOUT_ATTR,
    RGB_LIST,
    export_rawframes,
    find_rawframe_folders,
    import_rawframes,
)
from flowkit.store.reader import FlowStore
from flowkit.store.summary import summarize
from flowkit.store.verify import verify_store

SIZE = (48, 64)


def _jpeg(image: np.ndarray) -> bytes:
    """A JPEG as OpenCV encodes it with default parameters (cv::imencode(".jpg"), cv2.imwrite)."""
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def _video(frames: int, seed: int = 0) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    """RGB frames and flow (x, y) code images of a video of `frames` frames: frames - 1 pairs."""
    rng = np.random.default_rng(seed)
    rgb = [_jpeg(rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)) for _ in range(frames)]
    ys, xs = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    flow = [
        (_jpeg(((xs + 3 * k) % 40 + 100).astype(np.uint8)), _jpeg((150 - ys % 30).astype(np.uint8)))
        for k in range(frames - 1)
    ]
    return rgb, flow


def _write(folder: Path, names: list[str], files: list[bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in zip(names, files, strict=True):
        (folder / name).write_bytes(data)


def _assert_stored(store: FlowStore, video_id: str, rgb: list[bytes], flow: list[tuple[bytes, bytes]]) -> None:
    """The video holds exactly these files, byte for byte, in this order."""
    video = store.video(video_id)
    assert (video.entry.frames, video.entry.pairs) == (max(len(rgb), len(flow) + 1), len(flow))
    assert video.has_rgb == bool(rgb)
    for i, data in enumerate(rgb):
        assert video.rgb_jpeg(i) == data
    for i, pair in enumerate(flow):
        assert video.flow_jpeg(i) == pair


def _write_denseflow(folder: Path, rgb: list[bytes], flow: list[tuple[bytes, bytes]]) -> None:
    """As open-mmlab/denseflow writes a video (src/common.cpp writeImages and writeFlowImages,
    sprintf "_%05d.jpg" from `start`; src/denseflow_gpu.cpp extract_frames_video starts
    video_frame_idx at 0 and calls them with the "img", "flow_x" and "flow_y" prefixes, step 1
    so base 0): img_00000.jpg ..., flow_x_00000.jpg ..., numbered from 0 (mmaction2 issue #2207)."""
    _write(folder, [f"img_{i:05d}.jpg" for i in range(len(rgb))], rgb)
    _write(folder, [f"flow_x_{i:05d}.jpg" for i in range(len(flow))], [x for x, _ in flow])
    _write(folder, [f"flow_y_{i:05d}.jpg" for i in range(len(flow))], [y for _, y in flow])


def test_denseflow_folders_numbered_from_0_import_byte_for_byte(tmp_path):
    rf = tmp_path / "rawframes"
    walk, pan = _video(6, seed=1), _video(4, seed=2)
    _write_denseflow(rf / "ClassA/walk", *walk)
    _write_denseflow(rf / "ClassB/pan", *pan)
    out = tmp_path / "out.h5"
    report = import_rawframes(rf, out)
    assert report.ok and report.imported == 2, report.failed
    assert verify_store(out).ok
    with FlowStore(out) as store:
        _assert_stored(store, "ClassA/walk", *walk)
        _assert_stored(store, "ClassB/pan", *pan)
        layout = store.video("ClassA/walk").attrs[LAYOUT_ATTR]
    assert layout == "denseflow (img_00000.jpg, flow_x_00000.jpg, flow_y_00000.jpg)"
    assert summarize(out)["layouts"] == {layout: 2}


def test_denseflow_flow_beside_rgb_from_1_pairs_by_position(tmp_path):
    # mmaction2 tools/data/build_rawframes.py --use-opencv writes RGB with
    # mmcv.imwrite(f'{out_full_path}/img_{i + 1:05d}.jpg') and the flow with denseflow (-s=1),
    # whose files start at 0: flow_x_00000.jpg is the motion from img_00001.jpg (issue #2207).
    rgb, flow = _video(5, seed=3)
    folder = tmp_path / "rf/v_Archery_g01_c01"
    _write(folder, [f"img_{i + 1:05d}.jpg" for i in range(len(rgb))], rgb)
    _write(folder, [f"flow_x_{i:05d}.jpg" for i in range(len(flow))], [x for x, _ in flow])
    _write(folder, [f"flow_y_{i:05d}.jpg" for i in range(len(flow))], [y for _, y in flow])
    out = tmp_path / "out.h5"
    assert import_rawframes(tmp_path / "rf", out).ok
    with FlowStore(out) as store:
        _assert_stored(store, "v_Archery_g01_c01", rgb, flow)
        assert store.video("v_Archery_g01_c01").attrs[LAYOUT_ATTR] == (
            "denseflow (img_00001.jpg, flow_x_00000.jpg, flow_y_00000.jpg)"
        )


def _write_mmaction2(dest: Path, rgb: list[bytes], flow: list[tuple[bytes, bytes]], save_rgb: bool) -> None:
    """As mmaction2's tools/misc/flow_extraction.py writes a video: flow_tmpl '{}_{:05d}.jpg'
    formatted with 'x' and 'y' and ind + start_idx (--start-idx defaults to 1), one file per
    pair; RGB only with --save-rgb, rgb_tmpl 'img_{:05d}.jpg' from start_idx."""
    start_idx = 1
    _write(dest, ["{}_{:05d}.jpg".format("x", i + start_idx) for i in range(len(flow))], [x for x, _ in flow])
    _write(dest, ["{}_{:05d}.jpg".format("y", i + start_idx) for i in range(len(flow))], [y for _, y in flow])
    if save_rgb:
        _write(dest, [f"img_{i + start_idx:05d}.jpg" for i in range(len(rgb))], rgb)


def test_mmaction2_flow_extraction_folders_with_and_without_rgb(tmp_path):
    rf = tmp_path / "flows"
    with_rgb, flow_only = _video(5, seed=4), _video(6, seed=5)
    _write_mmaction2(rf / "v_a", *with_rgb, save_rgb=True)
    _write_mmaction2(rf / "v_b", *flow_only, save_rgb=False)  # the script's default
    out = tmp_path / "out.h5"
    report = import_rawframes(rf, out)
    assert report.ok and report.imported == 2, report.failed
    assert verify_store(out).ok
    with FlowStore(out) as store:
        _assert_stored(store, "v_a", *with_rgb)
        _assert_stored(store, "v_b", [], flow_only[1])
        assert store.video("v_a").attrs[LAYOUT_ATTR] == "mmaction2 (img_00001.jpg, x_00001.jpg, y_00001.jpg)"
        assert store.video("v_b").attrs[LAYOUT_ATTR] == "mmaction2 (x_00001.jpg, y_00001.jpg)"


def _write_twostreamfusion(root: Path, video: str, rgb: list[bytes], flow: list[tuple[bytes, bytes]],
                           rgb_dir: str = "jpegs_256", flow_dir: str = "tvl1_flow") -> None:
    """As feichtenhofer/twostreamfusion reads its UCF101/HMDB51 downloads: RGB in
    jpegs_256/<video>/frame%06d.jpg (cnn_ucf101_get_frame_batch.m: ['frame' sprintf('%06d.jpg', k)]
    from 1) and flow in tvl1_flow/u/<video>/ and tvl1_flow/v/<video>/ with the same names
    (cnn_ucf101_get_flow_batch.m: ['u' filesep vid_name 'frame' sprintf('%06d.jpg', k)], 'v' the same)."""
    names = [f"frame{i + 1:06d}.jpg" for i in range(len(rgb))]
    _write(root / rgb_dir / video, names, rgb)
    _write(root / flow_dir / "u" / video, names[: len(flow)], [x for x, _ in flow])
    _write(root / flow_dir / "v" / video, names[: len(flow)], [y for _, y in flow])


def test_twostreamfusion_flow_and_rgb_trees(tmp_path):
    data = tmp_path / "ucf101"
    first, second = _video(5, seed=6), _video(4, seed=7)
    _write_twostreamfusion(data, "v_ApplyEyeMakeup_g01_c01", *first)
    _write_twostreamfusion(data, "v_Archery_g01_c01", *second)

    flow_out = tmp_path / "flow.h5"  # the flow download alone: flow-only videos
    report = import_rawframes(data / "tvl1_flow", flow_out)
    assert report.ok and report.imported == 2, report.failed
    assert verify_store(flow_out).ok
    with FlowStore(flow_out) as store:
        assert store.ids == ["v_ApplyEyeMakeup_g01_c01", "v_Archery_g01_c01"]
        _assert_stored(store, "v_ApplyEyeMakeup_g01_c01", [], first[1])
        assert store.video("v_Archery_g01_c01").attrs[LAYOUT_ATTR] == (
            "twostreamfusion (u/frame000001.jpg, v/frame000001.jpg)"
        )

    rgb_out = tmp_path / "rgb.h5"  # the RGB download alone: RGB-only videos, no flow
    report = import_rawframes(data / "jpegs_256", rgb_out)
    assert report.ok and report.imported == 2 and report.pairs == 0, report.failed
    assert verify_store(rgb_out).ok
    with FlowStore(rgb_out) as store:
        _assert_stored(store, "v_Archery_g01_c01", second[0], [])
        assert store.video("v_Archery_g01_c01").attrs[LAYOUT_ATTR] == "twostreamfusion (frame000001.jpg)"

    # The RGB folders moved beside u/ and v/ join their flow into one video.
    joined = tmp_path / "joined"
    _write_twostreamfusion(joined, "v_Archery_g01_c01", *second, rgb_dir=".", flow_dir=".")
    out = tmp_path / "both.h5"
    assert import_rawframes(joined, out).ok
    with FlowStore(out) as store:
        assert store.ids == ["v_Archery_g01_c01"]
        _assert_stored(store, "v_Archery_g01_c01", *second)
        assert store.video("v_Archery_g01_c01").attrs[LAYOUT_ATTR] == (
            "twostreamfusion (frame000001.jpg, u/frame000001.jpg, v/frame000001.jpg)"
        )


def test_denseflow_rgb_only_folder(tmp_path):
    # denseflow -s=0 extracts frames only (README; tools/denseflow.cpp: "0 for img"): img_00000.jpg ...
    rgb, _ = _video(4, seed=8)
    _write(tmp_path / "rf/v", [f"img_{i:05d}.jpg" for i in range(len(rgb))], rgb)
    out = tmp_path / "out.h5"
    assert import_rawframes(tmp_path / "rf", out).ok
    assert verify_store(out).ok
    with FlowStore(out) as store:
        _assert_stored(store, "v", rgb, [])
        assert store.video("v").attrs[LAYOUT_ATTR] == "denseflow (img_00000.jpg)"
    # Exported back in flowkit's own layout: the same bytes from img_00001.jpg, no flow to list.
    report = export_rawframes(out, tmp_path / "back")
    assert report.ok and (report.frames, report.pairs) == (4, 0)
    assert [(tmp_path / f"back/v/img_{i + 1:05d}.jpg").read_bytes() for i in range(4)] == rgb
    assert (tmp_path / "back" / RGB_LIST).read_text() == "v 4 -1\n"
    assert (tmp_path / "back" / FLOW_LIST).read_text() == ""


def test_real_gaps_fail_that_video_naming_the_file(tmp_path):
    rf = tmp_path / "rf"
    for name in ("good", "flow_gap", "rgb_gap", "no_first"):
        _write_denseflow(rf / name, *_video(6))
    for kind in ("flow_x", "flow_y"):
        (rf / f"flow_gap/{kind}_00002.jpg").unlink()
    (rf / "rgb_gap/img_00003.jpg").unlink()
    (rf / "no_first/img_00000.jpg").unlink()
    (rf / "no_first/img_00001.jpg").unlink()
    _write_twostreamfusion(rf, "tsf", *_video(5), rgb_dir="tsf_rgb", flow_dir="tsf_flow")
    for tree in ("u", "v"):
        (rf / f"tsf_flow/{tree}/tsf/frame000003.jpg").unlink()
    _write_twostreamfusion(rf, "tsf_v", *_video(5), rgb_dir="tsf_rgb", flow_dir="tsf_flow")
    (rf / "tsf_flow/v/tsf_v/frame000002.jpg").unlink()
    mixed = rf / "mixed"
    _write_denseflow(mixed, *_video(3))
    (mixed / "x_00000.jpg").write_bytes((mixed / "flow_x_00000.jpg").read_bytes())

    out = tmp_path / "out.h5"
    report = import_rawframes(rf, out)
    errors = {f.id: f.error for f in report.failed}
    assert errors == {
        "flow_gap": "flow_x_00002.jpg is missing (numbering has a gap)",
        "rgb_gap": "img_00003.jpg is missing (numbering has a gap)",
        "no_first": "the first img file is img_00002.jpg; numbering must start at img_00000.jpg or img_00001.jpg",
        "tsf_flow/tsf": "u/frame000003.jpg is missing (numbering has a gap)",
        "tsf_flow/tsf_v": "v/frame000002.jpg is missing for u/frame000002.jpg",
        "mixed": "flow_x_00000.jpg and x_00000.jpg are two namings of flow_x files in one folder",
    }
    assert {f.id: f.source for f in report.failed}["tsf_flow/tsf"] == "tsf_flow/u/tsf"
    with FlowStore(out) as store:
        assert store.ids == ["good", "tsf_rgb/tsf", "tsf_rgb/tsf_v"]


def test_a_folder_named_u_with_rawframe_files_is_a_video(tmp_path):
    rgb, flow = _video(3)
    _write_denseflow(tmp_path / "rf/u", rgb, flow)
    (folder,) = find_rawframe_folders(tmp_path / "rf")
    assert folder.id == "u" and not folder.problem


def test_cli_info_says_which_layout_it_read(tmp_path):
    rf = tmp_path / "rf"
    _write_denseflow(rf / "a", *_video(4, seed=1))
    _write_mmaction2(rf / "b", *_video(4, seed=2), save_rgb=False)
    _write_mmaction2(rf / "c", *_video(4, seed=3), save_rgb=False)
    out = tmp_path / "out.h5"
    runner = CliRunner()
    result = runner.invoke(cli, ["import-rawframes", str(rf), str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["info", str(out)])
    assert result.exit_code == 0, result.output
    assert ("layout     mmaction2 (x_00001.jpg, y_00001.jpg) (2), "
            "denseflow (img_00000.jpg, flow_x_00000.jpg, flow_y_00000.jpg) (1)") in result.output.splitlines()


@pytest.mark.parametrize("digits", [5, 6])
def test_more_digits_than_the_peer_minimum_are_read(tmp_path, digits):
    rgb, flow = _video(3)
    folder = tmp_path / "rf/v"
    _write(folder, [f"img_{i + 1:0{digits}d}.jpg" for i in range(3)], rgb)
    _write(folder, [f"flow_x_{i + 1:0{digits}d}.jpg" for i in range(2)], [x for x, _ in flow])
    _write(folder, [f"flow_y_{i + 1:0{digits}d}.jpg" for i in range(2)], [y for _, y in flow])
    out = tmp_path / "out.h5"
    assert import_rawframes(tmp_path / "rf", out).ok
    with FlowStore(out) as store:
        _assert_stored(store, "v", rgb, flow)
        assert store.video("v").attrs[LAYOUT_ATTR].startswith("tsn (img_")


def test_importing_one_flow_tree_alone_is_refused(tmp_path):
    _write_twostreamfusion(tmp_path, "v_a", *_video(3))
    with pytest.raises(FlowkitError, match=r"one of twostreamfusion's u/ and v/ flow trees: import the folder"):
        import_rawframes(tmp_path / "tvl1_flow/u", tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_a_video_folder_named_v_alone_is_no_flow_tree(tmp_path):
    rgb, _ = _video(3)
    _write(tmp_path / "rf/Cls/v", [f"frame{i + 1:06d}.jpg" for i in range(3)], rgb)
    out = tmp_path / "out.h5"
    assert import_rawframes(tmp_path / "rf", out).ok
    with FlowStore(out) as store:
        _assert_stored(store, "Cls/v", rgb, [])
