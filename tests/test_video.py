import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from flowkit.errors import FlowkitError, VideoError
from flowkit.synth import Motion, render_frames
from flowkit.video import FrameSize, VideoReader, _resample, find_videos, video_id, write_video


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_find_videos_walks_recursively_sorted_skipping_hidden_and_non_videos(tmp_path):
    for rel in ["b/clip.MP4", "a/x.avi", "a/deeper/y.mkv", "notes.txt", ".hidden/z.mp4", "a/.w.mp4"]:
        _touch(tmp_path / rel)
    found = find_videos(tmp_path)
    assert [v.relpath for v in found] == ["a/deeper/y.mkv", "a/x.avi", "b/clip.MP4"]
    assert [v.id for v in found] == ["a/deeper/y", "a/x", "b/clip"]
    assert found[0].path == tmp_path / "a/deeper/y.mkv"


def test_list_file_names_videos_relative_to_the_folder(tmp_path):
    _touch(tmp_path / "v/a.avi")
    listing = tmp_path / "list.txt"
    listing.write_text("# a comment\n\na.avi\nmissing.mp4\n")
    found = find_videos(tmp_path / "v", listing)
    assert [(v.id, v.path.exists()) for v in found] == [("a", True), ("missing", False)]
    listing.write_text("../elsewhere.mp4\n")
    with pytest.raises(FlowkitError, match=r"list.txt:1: .* is outside the input folder"):
        find_videos(tmp_path / "v", listing)
    with pytest.raises(FlowkitError, match="cannot read list file"):
        find_videos(tmp_path / "v", tmp_path / "nope.txt")


def test_missing_input_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FlowkitError, match="does not exist"):
        find_videos(tmp_path / "nowhere")
    with pytest.raises(FlowkitError, match="not a folder"):
        find_videos(_touch(tmp_path / "file.mp4"))


def test_video_id_drops_only_the_extension():
    assert video_id("Class/v_a.b_c01.avi") == "Class/v_a.b_c01"


@pytest.mark.parametrize(
    ("size", "source", "expected"),
    [
        (FrameSize(short_side=256), (320, 240), (342, 256)),  # 341.33 rounds to even
        (FrameSize(short_side=256), (240, 320), (256, 342)),
        (FrameSize.fixed(340, 256), (320, 240), (340, 256)),
        (FrameSize.keep(), (65, 49), (64, 48)),
        (FrameSize.keep(), (67, 51), (68, 52)),
    ],
)
def test_frame_size_targets_are_even(size, source, expected):
    assert size.target(*source) == expected


def test_frame_size_parsing():
    assert FrameSize.parse("340x256") == FrameSize.fixed(340, 256)
    assert FrameSize.parse("128") == FrameSize(short_side=128)
    assert FrameSize.parse("keep") == FrameSize.keep()
    with pytest.raises(FlowkitError):
        FrameSize.parse("big")
    with pytest.raises(FlowkitError):
        FrameSize.parse("0x10")


def test_reader_decodes_every_frame_at_the_requested_size(make_video):
    path = make_video("a.mkv", frames=7, width=64, height=48)
    reader = VideoReader(path, FrameSize(short_side=32))
    frames = list(reader)
    assert len(frames) == 7 and reader.decoded == 7 and reader.frames == 7
    assert frames[0].shape == (32, 42, 3) and frames[0].dtype == np.uint8
    assert (reader.source_width, reader.source_height) == (64, 48)
    assert reader.source_fps == pytest.approx(25.0)
    # Iterating again starts over rather than accumulating counts.
    assert len(list(reader)) == 7 and reader.decoded == 7


def test_reader_resamples_to_a_lower_frame_rate(make_video):
    path = make_video("a.mkv", frames=25, fps=25.0)  # one second
    reader = VideoReader(path, FrameSize.keep(), fps=10.0)
    assert len(list(reader)) == 10
    assert reader.decoded == 25


def test_resampling_follows_real_timestamps_of_variable_rate_video():
    # Frames at 0, 0.12, 0.15, 0.4 s (irregular), the last lasting 1/10 s: 0.5 s at 20 fps = 10 frames.
    stamps = [0.0, 0.12, 0.15, 0.4]
    frames = [(t, np.full((1, 1), i)) for i, t in enumerate(stamps)]
    out = [int(f[0, 0]) for _, f in _resample(iter(frames), 20.0, 10.0)]
    # Output times 0, .05, .10, ..., .45 s, each showing the source frame nearest in time.
    assert out == [0, 0, 1, 2, 2, 2, 3, 3, 3, 3]


def test_grayscale_sources_decode_to_three_channels(tmp_path):
    path = tmp_path / "gray.mkv"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 25, (64, 48), False)
    for frame in render_frames(Motion(dx=1), 4, 64, 48):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    writer.release()
    frames = list(VideoReader(path, FrameSize.keep()))
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)
    assert np.array_equal(frames[0][..., 0], frames[0][..., 1])


def test_odd_sized_sources_are_resized_to_even(tmp_path):
    # An image sequence is the one way to get odd-sized frames here (OpenCV's video writers crop
    # to even sizes); its path is a pattern, not a file, so decode it from an opened capture.
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img_{i:03d}.png"), np.full((49, 65, 3), 40 * i, np.uint8))
    reader = VideoReader(tmp_path / "img_%03d.png", FrameSize.keep())
    reader.source_fps = 25.0
    capture = cv2.VideoCapture(str(tmp_path / "img_%03d.png"), cv2.CAP_FFMPEG)
    frames = [frame for _, frame in reader._decode(capture)]
    assert len(frames) == 3 and (reader.source_width, reader.source_height) == (65, 49)
    assert frames[0].shape == (48, 64, 3)


def test_hmdb51_headers_claim_one_frame_more_than_decoded(shared_testdata):
    path = next((shared_testdata / "videos/hmdb51").glob("*.avi"))
    reader = VideoReader(path, FrameSize(short_side=64))
    count = sum(1 for _ in reader)
    assert reader.header_frames == count + 1  # not truncated: within the tolerance
    assert count == reader.decoded > 10


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.mp4", b"", "empty file"),
        ("text.mp4", b"this is not a video\n" * 20, "not a video OpenCV can decode"),
    ],
)
def test_bad_files_raise_one_line_video_errors(tmp_path, name, content, message):
    path = _touch(tmp_path / name, content)
    with pytest.raises(VideoError, match=message) as info:
        list(VideoReader(path))
    assert "\n" not in str(info.value)


def test_missing_folder_and_unreadable_paths(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        list(VideoReader(tmp_path / "gone.mp4"))
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(VideoError, match="is a folder"):
        list(VideoReader(tmp_path / "dir.mp4"))
    os.mkfifo(tmp_path / "pipe.mp4")  # opening it to read would block forever
    with pytest.raises(VideoError, match="not a regular file"):
        list(VideoReader(tmp_path / "pipe.mp4"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path, make_video):
    path = make_video("locked.mkv")
    path.chmod(0)
    with pytest.raises(VideoError, match="cannot read: permission denied"):
        list(VideoReader(path))


def test_truncated_video_is_detected_after_decoding(tmp_path):
    path = write_video(tmp_path / "full.avi", render_frames(Motion(dx=1), 40, 64, 48))
    cut = tmp_path / "cut.avi"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    reader = VideoReader(cut, FrameSize.keep())
    with pytest.raises(VideoError, match=r"truncated: decoded \d+ of the 40 frames"):
        list(reader)
    assert 0 < reader.decoded < 36


def test_write_video_picks_the_codec_by_extension(tmp_path):
    frames = list(render_frames(Motion(dx=1), 3, 32, 24))
    for name in ("a.avi", "b.mp4", "c.mkv"):
        assert len(list(VideoReader(write_video(tmp_path / name, frames), FrameSize.keep()))) == 3
    with pytest.raises(FlowkitError, match=r"cannot write \.webm videos"):
        write_video(tmp_path / "d.webm", frames)
