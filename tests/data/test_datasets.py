"""Datasets on a real extracted dataset: values, alignment, test views, loaders, samplers."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from flowkit.data.annotations import from_folders, read_file_list
from flowkit.data.datasets import RGB, Flow, ShardDataset, TwoStreamDataset
from flowkit.data.transforms import MultiScaleCrop, RandomCrop
from flowkit.data.values import IMAGENET_MEAN, IMAGENET_STD
from flowkit.errors import FlowkitError
from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.store.reader import FlowStore
from flowkit.synth import Motion, render_frames
from flowkit.video import FrameSize, write_video

W, H = 64, 48


def _gray_ramp(path: Path, frames: int) -> None:
    """Uniform frames whose brightness tells their index: 20 + 10 t."""
    write_video(path, (np.full((H, W, 3), 20 + 10 * t, np.uint8) for t in range(frames)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    videos = root / "videos"
    write_video(videos / "right/a.mkv", render_frames(Motion(dx=2.0), 14, W, H, seed=1))
    write_video(videos / "right/b.mkv", render_frames(Motion(dx=1.0), 12, W, H, seed=2))
    write_video(videos / "down/c.mkv", render_frames(Motion(dy=1.5), 13, W, H, seed=3))
    _gray_ramp(videos / "down/ramp.mkv", 16)
    settings = ExtractSettings(size=FrameSize.keep(), engine="opencv", backward=True)
    report = extract(videos, root / "out.h5", settings, jobs=1, progress=False)
    assert report.ok
    return root / "out.h5"


@pytest.fixture(scope="module")
def labels(dataset):
    with FlowStore(dataset) as store:
        return from_folders(store.ids)


def _index(ds, video_id):
    return [r.video for r in ds.rows].index(video_id)


def test_flow_stacks_hold_the_motion_in_pixels_or_units(dataset, labels):
    ds = ShardDataset(dataset, labels, Flow(length=4), segments=3, transform=RandomCrop(32, flip=0.0))
    x, y = ds[_index(ds, "right/a")]
    assert x.shape == (3, 8, 32, 32) and x.dtype == torch.float32 and y == labels.classes.index("right")
    assert x[:, 0::2].mean() == pytest.approx(2.0, abs=0.15)  # u channels: 2 px to the right
    assert x[:, 1::2].mean() == pytest.approx(0.0, abs=0.15)
    unit = ShardDataset(dataset, labels, Flow(length=4, values="unit"), transform=RandomCrop(32, flip=0.0))
    assert unit[_index(ds, "right/a")][0][:, 0::2].mean() == pytest.approx(2.0 / 20, abs=0.01)


def test_flipped_flow_has_u_negated(dataset, labels):
    ds = ShardDataset(dataset, labels, Flow(length=2), segments=1, transform=RandomCrop(32, flip=1.0))
    x, _ = ds[_index(ds, "right/a")]
    assert x[:, 0::2].mean() == pytest.approx(-2.0, abs=0.15)
    assert x[:, 1::2].mean() == pytest.approx(0.0, abs=0.15)


def test_mean_subtraction_and_trajectory_stacking(dataset, labels):
    with FlowStore(dataset) as store:  # whole fields, before any crop
        stack = Flow(length=3, mean_subtraction=True).read(store.video("down/c"), 2)
    assert stack.shape == (3, H, W, 2) and np.abs(stack.mean(axis=(1, 2))).max() < 1e-4
    traj = ShardDataset(dataset, labels, Flow(length=3, stacking="trajectory"), segments=1,
                        transform=RandomCrop(24, flip=0.0))
    x, _ = traj[_index(traj, "down/c")]
    assert x[:, 1::2].mean() == pytest.approx(1.5, abs=0.15)  # a translation: every trajectory alike


def test_bidirectional_stacks_forward_then_backward(dataset, labels):
    ds = ShardDataset(dataset, labels, Flow(length=4, bidirectional=True), segments=1,
                      transform=RandomCrop(32, flip=0.0))
    x, _ = ds[_index(ds, "right/a")]
    assert x[0, 0:4:2].mean() == pytest.approx(2.0, abs=0.2)  # forward u
    assert x[0, 4:8:2].mean() == pytest.approx(-2.0, abs=0.2)  # backward u: the motion undone


def test_rgb_frames_are_normalised_with_imagenet_statistics(dataset, labels):
    ds = ShardDataset(dataset, labels, RGB(), train=False, test_snippets=2, size=32)
    x, _ = ds[_index(ds, "down/ramp")]
    assert x.shape == (2, 3, 32, 32)
    with FlowStore(dataset) as store:
        video = store.video("down/ramp")
        frame0 = video.rgb_frame(0)[8:40, 16:48, ::-1].astype(np.float32) / 255
    expected = (frame0 - IMAGENET_MEAN) / IMAGENET_STD
    assert np.allclose(x[0].numpy().transpose(1, 2, 0), expected, atol=1e-5)
    unit = ShardDataset(dataset, labels, RGB(values="unit"), train=False, test_snippets=1, size=32)
    assert float(unit[_index(unit, "down/ramp")][0].max()) <= 1.0


def test_rgb_snippets_of_consecutive_frames_for_rgb_difference(dataset, labels):
    # TSN's RGB difference reads L + 1 frames per snippet; its model takes the differences.
    ds = ShardDataset(dataset, labels, RGB(length=4, values="unit"), train=False, test_snippets=1, size=32)
    x, _ = ds[_index(ds, "down/ramp")]
    assert x.shape == (1, 12, 32, 32)
    grey = (x[0].view(4, 3, 32, 32).mean(dim=(1, 2, 3)).numpy() + 1) * 127.5
    assert np.allclose(np.diff(grey), 10, atol=1.5)  # consecutive ramp frames


def test_test_protocol_views(dataset, labels):
    ds = ShardDataset(dataset, labels, Flow(length=3), train=False, test_snippets=5, test_crops=10, size=32)
    x, _ = ds[0]
    assert x.shape == (50, 6, 32, 32)
    assert torch.equal(x[0, 0].flip(-1), -x[5, 0])  # view 5 is view 0 mirrored, u negated


def test_two_stream_reads_rgb_in_the_middle_of_each_flow_snippet(dataset, labels):
    rgb = ShardDataset(dataset, labels, RGB(values="unit"), train=False, test_snippets=4, size=32)
    flow = ShardDataset(dataset, labels, Flow(length=4), train=False, test_snippets=4, size=32)
    pair = TwoStreamDataset(rgb, flow)
    x_rgb, x_flow, _ = pair[_index(flow, "down/ramp")]
    assert x_rgb.shape == (4, 3, 32, 32) and x_flow.shape == (4, 8, 32, 32)
    # 15 flow pairs, snippets of 4: starts 0, 4, 7, 11; frames 2, 6, 9, 13 -> 20 + 10 t grey.
    grey = (x_rgb.mean(dim=(1, 2, 3)).numpy() + 1) * 127.5
    assert np.allclose(grey, [40, 80, 110, 150], atol=2)
    train_pair = TwoStreamDataset(
        ShardDataset(dataset, labels, RGB(), segments=3, transform=MultiScaleCrop(24)),
        ShardDataset(dataset, labels, Flow(length=4), segments=3, transform=MultiScaleCrop(24)))
    a_rgb, a_flow, _ = train_pair[1]
    b_rgb, b_flow, _ = train_pair[1]
    assert torch.equal(a_rgb, b_rgb) and torch.equal(a_flow, b_flow)  # seeded: repeatable
    train_pair.set_epoch(1)
    assert not torch.equal(train_pair[1][1], a_flow)  # another epoch, other draws


def test_3d_clips_loop_short_videos(dataset, labels):
    clips = ShardDataset(dataset, labels, Flow(length=20, clip=True), clips=True, size=32)
    x, _ = clips[_index(clips, "right/b")]  # 11 flow pairs, a clip of 20 loops
    assert x.shape == (2, 20, 32, 32)
    assert torch.equal(x[:, 0], x[:, 11])
    rgb = ShardDataset(dataset, labels, RGB(length=8, stride=2, clip=True), clips=True, train=False, size=32)
    x, _ = rgb[_index(rgb, "down/ramp")]
    assert x.shape == (1, 3, 8, 32, 32)  # 16 frames: one clip spanning 15


def test_dataloader_workers_and_distributed_sampler(dataset, labels):
    ds = ShardDataset(dataset, labels, Flow(length=2), segments=2, transform=RandomCrop(24))
    direct = [ds[i][0] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=2, num_workers=2)
    batches = list(loader)
    assert torch.equal(torch.cat([b[0] for b in batches]), torch.stack(direct))
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        seen += [int(i) for i in sampler]
        part = list(DataLoader(ds, batch_size=1, sampler=sampler))
        assert len(part) == 2
    assert sorted(seen) == list(range(len(ds)))


def test_bad_configurations_are_clear(dataset, labels):
    with pytest.raises(FlowkitError, match="even length"):
        Flow(length=3, bidirectional=True)
    with pytest.raises(FlowkitError, match="not in"):
        ShardDataset(dataset, [labels.rows[0].__class__("nowhere/x", 0)], RGB())
    with pytest.raises(FlowkitError, match="split is empty"):
        ShardDataset(dataset, [], RGB())


def _epochs(ds, loader, epochs):
    """Every epoch's batches, concatenated, with `set_epoch` called before each, as documented."""
    out = []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        out.append(torch.cat([x for x, _ in loader]))
    return out


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_set_epoch_reaches_persistent_workers(dataset, labels, context):
    # Persistent workers keep the dataset they were given at the first epoch (forked or pickled).
    ds = ShardDataset(dataset, labels, Flow(length=2), segments=2, transform=RandomCrop(24))
    persistent = DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True,
                            multiprocessing_context=context)
    in_workers = _epochs(ds, persistent, 3)
    in_process = _epochs(ds, DataLoader(ds, batch_size=2, num_workers=0), 3)
    assert not torch.equal(in_workers[1], in_workers[0])  # epoch 1 draws other crops
    for epoch in range(3):
        assert torch.equal(in_workers[epoch], in_process[epoch])
    assert ds.epoch == 2


def test_clips_of_an_mmaction2_with_offset_list_are_sampled_inside_the_clip(dataset, tmp_path):
    # A with_offset line as mmaction2's RawframeDataset documents it (mmaction/datasets/
    # rawframe_dataset.py): `path offset total_frames label`; its RawFrameDecode reads frames
    # offset + 0 .. offset + total_frames - 1 of the folder.
    listed = tmp_path / "clips.txt"
    listed.write_text("down/ramp 4 6 1\ndown/ramp 10 3 0\n")
    with FlowStore(dataset) as store:
        clips = read_file_list(listed, with_offset=True).match(store.ids)
    rgb = ShardDataset(dataset, clips, RGB(values="unit"), train=False, test_snippets=6, size=32)
    grey = (rgb[0][0].mean(dim=(1, 2, 3)).numpy() + 1) * 127.5  # frame t is 20 + 10 t grey
    assert np.allclose(grey, [60, 70, 80, 90, 100, 110], atol=2)  # frames 4..9, no other
    train = ShardDataset(dataset, clips, RGB(values="unit"), segments=3, transform=RandomCrop(24, flip=0.0))
    for epoch in range(4):
        train.set_epoch(epoch)
        grey = (train[1][0].view(3, 3, 24, 24).mean(dim=(1, 2, 3)).numpy() + 1) * 127.5
        assert grey.min() > 115 and grey.max() < 145  # frames 10..12
    flow = ShardDataset(dataset, clips, Flow(length=2), train=False, test_snippets=4, size=32)
    pair = TwoStreamDataset(rgb, flow)
    x_rgb, x_flow, label = pair[1]  # 2 flows in a 3-frame clip: one snippet, its middle frame 11
    assert label == 0 and x_flow.shape == (4, 4, 32, 32)
    assert np.allclose((x_rgb.mean(dim=(1, 2, 3)).numpy() + 1) * 127.5, 130, atol=2)
    listed.write_text("down/ramp 12 5 1\n")
    with pytest.raises(FlowkitError, match=r"down/ramp: the labelled clip \(frames 12 to 16\) runs past "
                                           r"the video's 16 frames"):
        ShardDataset(dataset, read_file_list(listed, with_offset=True), RGB())
