"""The shard store on its own: staged files, packing, the index, reading, locking, damage."""

import h5py
import numpy as np
import pytest

from flowkit.errors import StoreError
from flowkit.store.dataset import DatasetWriter
from flowkit.store.format import VideoAttrs
from flowkit.store.index import read_index
from flowkit.store.reader import FlowStore
from flowkit.store.staging import StagedVideoWriter
from flowkit.store.verify import verify_store

H, W = 12, 16


def _codes(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 2, H, W), dtype=np.uint8)


def _stage(dataset: DatasetWriter, video_id: str, seed: int = 0, frames: int = 4,
           flow_format: str = "raw"):
    flow = _codes(seed, frames - 1)
    writer = StagedVideoWriter(dataset.layout.staging_dir, video_id, H, W, rgb_quality=95,
                               flow_format=flow_format)
    for pair in flow:
        writer.append_flow(pair)
    for i in range(frames):
        writer.append_rgb(np.full((H, W, 3), 10 * i, np.uint8))
    attrs = VideoAttrs(
        id=video_id, source=f"{video_id}.avi", source_size=1, source_mtime_ns=1, frames=frames,
        pairs=frames - 1, height=H, width=W, fps=25.0, step=1, bound=20.0, algorithm="test",
        params="{}", settings="{}",
    )
    writer.commit(attrs)
    return flow


def test_staged_videos_become_visible_only_when_packed(tmp_path):
    index = tmp_path / "out.h5"
    with DatasetWriter(index) as dataset:
        flow_a = _stage(dataset, "cls/a", seed=1)
        assert not index.exists()  # staged, not yet published
        dataset.pack()
        flow_b = _stage(dataset, "cls/b", seed=2, frames=3)
        with FlowStore(index) as store:
            assert store.ids == ["cls/a"]
        dataset.pack()
    with FlowStore(index) as store:
        assert store.ids == ["cls/a", "cls/b"]
        video = store.video("cls/b")
        assert np.array_equal(video.flow[()], flow_b) and video.flow_encoding == "raw"
        assert np.array_equal(video.flow_codes(slice(0, 2)), flow_b)
        assert video.rgb_jpeg(2)[:2] == b"\xff\xd8" and (video.rgb_frame(2) == 20).all()
        assert (video.entry.frames, video.entry.pairs) == (3, 2)
        assert np.array_equal(store.video("cls/a").flow[()], flow_a)
    # Plain h5py follows the index's external links.
    with h5py.File(index, "r") as handle:
        assert np.array_equal(handle["videos/cls/a/flow"][()], flow_a)
    assert verify_store(index).ok


def test_jpeg_flow_stores_u_and_v_code_images(tmp_path):
    index = tmp_path / "out.h5"
    with DatasetWriter(index) as dataset:
        writer = StagedVideoWriter(dataset.layout.staging_dir, "smooth", H, W, rgb_quality=None)
        ramp = np.stack([np.tile(np.arange(W, dtype=np.uint8) * 8, (H, 1)),
                         np.full((H, W), 128, np.uint8)])
        writer.append_flow(ramp)
        writer.append_flow_jpeg(b"\xff\xd8u-file", b"\xff\xd8v-file")  # stored byte for byte
        writer.commit(VideoAttrs(
            id="smooth", source="s.avi", source_size=1, source_mtime_ns=1, frames=3, pairs=2,
            height=H, width=W, fps=25.0, step=1, bound=20.0, algorithm="test", params="{}",
            settings="{}"))
        dataset.pack()
    with FlowStore(index) as store:
        video = store.video("smooth")
        assert video.flow_encoding == "jpeg" and video.flow.shape == (2, 2)
        assert np.abs(video.flow_codes(0).astype(int) - ramp).max() <= 2  # JPEG at quality 95
        assert video.flow_jpeg(1) == (b"\xff\xd8u-file", b"\xff\xd8v-file")
        assert not video.has_rgb


def test_a_newer_copy_replaces_the_old_and_its_dead_shard_is_deleted(tmp_path):
    index = tmp_path / "out.h5"
    with DatasetWriter(index) as dataset:
        _stage(dataset, "a", seed=1)
        first = dataset.pack()
        new = _stage(dataset, "a", seed=9)
        dataset.pack()
        assert not first[0].exists()
        assert len(dataset.layout.shard_paths()) == 1
        assert dataset.layout.staged_paths() == []
    with FlowStore(index) as store:
        assert np.array_equal(store.video("a").flow[()], new)


def test_abort_and_leftover_temporaries_leave_nothing(tmp_path):
    index = tmp_path / "out.h5"
    with DatasetWriter(index) as dataset:
        writer = StagedVideoWriter(dataset.layout.staging_dir, "x", H, W)
        writer.append_flow(_codes(0, 1)[0])
        writer.abort()
        assert list(dataset.layout.staging_dir.iterdir()) == []
        # As a process killed mid-write would leave it:
        StagedVideoWriter(dataset.layout.staging_dir, "y", H, W).append_flow(_codes(0, 1)[0])
    with DatasetWriter(index) as dataset:
        assert list(dataset.layout.staging_dir.iterdir()) == []


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    with DatasetWriter(tmp_path / "out.h5"), pytest.raises(StoreError, match="is being written by flowkit pid"):
        DatasetWriter(tmp_path / "out.h5").__enter__()


def test_foreign_output_file_is_refused_and_left_untouched(tmp_path):
    foreign = tmp_path / "out.h5"
    with h5py.File(foreign, "w") as handle:
        handle["mine"] = np.arange(3)
    before = foreign.read_bytes()
    with pytest.raises(StoreError, match="not a flowkit file; refusing to overwrite"):
        DatasetWriter(foreign).__enter__()
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(StoreError, match="not a flowkit file"):
        DatasetWriter(text).__enter__()
    assert foreign.read_bytes() == before and text.read_text() == "hello"
    with pytest.raises(StoreError, match="is not a flowkit file"):
        read_index(foreign)


def test_missing_or_unwritable_output_folder(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        DatasetWriter(tmp_path / "no" / "out.h5").__enter__()


def test_verify_finds_damaged_bytes_and_missing_shards(tmp_path):
    index = tmp_path / "out.h5"
    with DatasetWriter(index) as dataset:
        _stage(dataset, "a", seed=1, frames=6)
        _stage(dataset, "b", seed=2, frames=6)
        dataset.pack()
    shard = next((tmp_path / "out.h5.shards").glob("part-*.h5"))
    with h5py.File(shard, "r") as handle:
        offset = handle["videos/a/flow"].id.get_chunk_info(2).byte_offset
    data = bytearray(shard.read_bytes())
    data[offset + 40] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify_store(index)
    assert not report.ok and report.videos == 2
    assert any(p.startswith("a:") for p in report.problems)
    assert not any(p.startswith("b:") for p in report.problems)
    shard.unlink()
    report = verify_store(index)
    assert len(report.problems) == 2 and "is missing" in report.problems[0]


@pytest.mark.parametrize("flow_format", ["raw", "jpeg"])
def test_stacks_of_pairs_and_frames_are_the_single_reads_laid_out(tmp_path, flow_format):
    """`flow_stack` and `rgb_stack` (what the datasets read) hold exactly `flow_codes` and
    `rgb_frame` of each index, consecutive (one read) or not, in the (N, H, W, C) layout."""
    index = tmp_path / "out.h5"
    with DatasetWriter(index) as dataset:
        _stage(dataset, "v", seed=3, frames=7, flow_format=flow_format)
        dataset.pack()
    with FlowStore(index) as store:
        video = store.video("v")
        for indices in ([2, 3, 4], [5, 1, 1], [0], []):
            codes = video.flow_stack(np.array(indices, dtype=np.int64))
            assert codes.shape == (len(indices), H, W, 2) and codes.dtype == np.uint8
            for n, i in enumerate(indices):
                np.testing.assert_array_equal(np.moveaxis(codes[n], -1, 0), video.flow_codes(i))
            frames = video.rgb_stack(np.array(indices, dtype=np.int64))
            assert frames.shape == (len(indices), H, W, 3)
            for n, i in enumerate(indices):
                np.testing.assert_array_equal(frames[n], video.rgb_frame(i)[..., ::-1])  # RGB order
