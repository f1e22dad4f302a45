"""Finding videos on disk and decoding them, frame by frame, at the size and rate flow is computed at.

Decoding streams: one frame is held at a time (two while resampling), so memory does not grow with
video length. Container headers are never trusted for the frame count: frames are counted as they
decode, and a video that decodes to far fewer frames than its header claims is reported as
truncated.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flowkit.errors import FlowkitError, VideoError

# Containers OpenCV's FFmpeg backend reads; matched case-insensitively.
VIDEO_EXTENSIONS = frozenset(
    [".avi", ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".ts", ".mts", ".m2ts", ".vob", ".asf", ".divx"]
)

# (fourcc) a container gets when flowkit writes videos: codecs OpenCV's bundled FFmpeg writes
# on every platform.
WRITE_CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".mkv": "FFV1"}

# A video that decodes to fewer than this share of the frames its header claims is truncated.
# Headers are often off by a frame or two (HDMB51's AVIs claim one more than decoders return).
TRUNCATION_RATIO = 0.9


@dataclass(frozen=True)
class VideoFile:
    """A video to extract: its id (relative path without extension, '/'-separated) and location."""

    id: str
    path: Path
    relpath: str


def video_id(relpath: str) -> str:
    """The id flowkit gives a video: its path relative to the input folder, without extension."""
    path = Path(relpath)
    return path.with_suffix("").as_posix() if path.suffix else path.as_posix()


def find_videos(root: Path, list_file: Path | None = None) -> list[VideoFile]:
    """Every video under `root` (recursive, sorted, hidden entries skipped), or those `list_file` names.

    A list file holds one path per line, relative to `root`; blank lines and `#` comments are
    skipped. Listed paths are taken as given, so a missing one fails at extraction with its own
    message instead of vanishing silently.
    """
    root = Path(root)
    if not root.exists():
        raise FlowkitError(f"input folder {root} does not exist")
    if not root.is_dir():
        raise FlowkitError(f"input {root} is not a folder")
    if list_file is not None:
        return _videos_from_list(root, Path(list_file))
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            found.append(VideoFile(video_id(rel), path, rel))
    return sorted(found, key=lambda v: v.relpath)


def _videos_from_list(root: Path, list_file: Path) -> list[VideoFile]:
    try:
        lines = list_file.read_text().splitlines()
    except OSError as exc:
        raise FlowkitError(f"cannot read list file {list_file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise FlowkitError(f"list file {list_file} is not a text file") from None
    videos = []
    root_abs = root.resolve()
    for lineno, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry) if Path(entry).is_absolute() else root / entry
        try:
            rel = path.resolve().relative_to(root_abs).as_posix()
        except ValueError:
            raise FlowkitError(
                f"{list_file}:{lineno}: {entry} is outside the input folder {root}"
            ) from None
        videos.append(VideoFile(video_id(rel), path, rel))
    return videos


MAX_SIDE = 16384  # pixels: beyond 16K video, and 4 GB a frame pair of flow


@dataclass(frozen=True)
class FrameSize:
    """How decoded frames are resized: to a short side, to a fixed size, or kept (made even)."""

    short_side: int | None = 256
    width: int | None = None
    height: int | None = None

    @classmethod
    def keep(cls) -> FrameSize:
        return cls(short_side=None)

    @classmethod
    def fixed(cls, width: int, height: int) -> FrameSize:
        return cls(short_side=None, width=width, height=height)

    @classmethod
    def parse(cls, text: str) -> FrameSize:
        """`256` (short side), `340x256` (width x height) or `keep`."""
        text = text.strip().lower()
        try:
            if text in ("keep", "none", "original"):
                return cls.keep()
            if "x" in text:
                w, h = (int(part) for part in text.split("x"))
                size = cls.fixed(w, h)
            else:
                size = cls(short_side=int(text))
        except ValueError:
            raise FlowkitError(
                f"size {text!r} is not N (short side), WxH or 'keep'"
            ) from None
        size.validate()
        return size

    def validate(self) -> None:
        for value in (self.short_side, self.width, self.height):
            if value is not None and not 2 <= value <= MAX_SIDE:
                raise FlowkitError(f"frame size {self.describe()}: each side must be 2..{MAX_SIDE} pixels")

    def describe(self) -> str:
        if self.width is not None:
            return f"{self.width}x{self.height}"
        return str(self.short_side) if self.short_side else "keep"

    def target(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) a `width` x `height` source becomes; both even, as codecs want."""
        if self.width is not None and self.height is not None:
            return _even(self.width), _even(self.height)
        if self.short_side is None:
            return _even(width), _even(height)
        scale = self.short_side / min(width, height)
        return _even(width * scale), _even(height * scale)


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


@dataclass
class VideoReader:
    """Decodes one video into BGR uint8 frames at the requested size and (optional) frame rate.

    Iterate to get frames. After iteration, `decoded` holds how many frames the decoder returned
    and `frames` how many were yielded (they differ only when resampling).
    """

    path: Path
    size: FrameSize = FrameSize()
    fps: float | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.source_fps = 0.0
        self.header_frames = 0
        self.source_width = 0
        self.source_height = 0
        self.width = 0
        self.height = 0
        self.decoded = 0
        self.frames = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        self.decoded = self.frames = 0
        capture = self._open()
        try:
            frames = self._decode(capture)
            if self.fps:
                frames = _resample(frames, self.fps, self.source_fps)
            for _, frame in frames:
                self.frames += 1
                yield frame
        finally:
            capture.release()
        if self.decoded == 0:
            raise VideoError("no decodable frames")
        if self.header_frames > 0 and self.decoded < TRUNCATION_RATIO * self.header_frames:
            raise VideoError(
                f"truncated: decoded {self.decoded} of the {self.header_frames} frames its header claims"
            )

    def _open(self) -> cv2.VideoCapture:
        path = self.path
        if not path.exists():
            raise VideoError("no such file")
        if path.is_dir():
            raise VideoError("is a folder, not a video file")
        if not path.is_file():
            raise VideoError("not a regular file")
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise VideoError(f"cannot read: {exc.strerror.lower()}") from None
        if path.stat().st_size == 0:
            raise VideoError("empty file (0 bytes)")
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise VideoError("not a video OpenCV can decode")
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.source_fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.header_frames = _header_count(count)
        return capture

    def _decode(self, capture: cv2.VideoCapture) -> Iterator[tuple[float, np.ndarray]]:
        """Yields (timestamp in seconds, resized frame); timestamps repaired where not increasing."""
        last_ts = -np.inf
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                return
            ts = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not np.isfinite(ts) or ts <= last_ts:
                ts = last_ts + 1.0 / self.source_fps if self.decoded else 0.0
            last_ts = ts
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            if self.decoded == 0:
                self.source_height, self.source_width = frame.shape[:2]
                self.width, self.height = self.size.target(self.source_width, self.source_height)
            self.decoded += 1
            yield ts, _resize(frame, self.width, self.height)


@dataclass(frozen=True)
class VideoHeader:
    """What a video's header claims (zeros when it claims nothing or cannot be opened): cheap, no
    decoding; an estimate, since headers can be off by a frame or more."""

    frames: int
    width: int
    height: int


def read_header(path: str | Path) -> VideoHeader:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        opened = capture.isOpened()
        values = [capture.get(p) if opened else 0.0
                  for p in (cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT)]
    finally:
        capture.release()
    return VideoHeader(*(_header_count(v) for v in values))


def _header_count(value: float) -> int:
    """A count a header property gives (OpenCV returns 0, NaN or negatives when it has none)."""
    return int(value) if value and np.isfinite(value) and value > 0 else 0


def _resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    shrink = width * height < w * h
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _resample(
    frames: Iterator[tuple[float, np.ndarray]], fps: float, source_fps: float
) -> Iterator[tuple[float, np.ndarray]]:
    """Nearest-in-time resampling to `fps`: output frame k shows the source frame nearest k / fps.

    Works on real timestamps, so variable-frame-rate sources resample correctly. The video lasts
    until its last frame's timestamp plus one source frame period.
    """
    k = 0
    start = None
    prev: tuple[float, np.ndarray] | None = None
    for ts, frame in frames:
        if start is None:
            start = ts
        if prev is not None:
            boundary = (prev[0] + ts) / 2 - start
            while k / fps < boundary - 1e-9:
                yield start + k / fps, prev[1]
                k += 1
        prev = (ts, frame)
    if prev is not None and start is not None:
        end = prev[0] - start + 1.0 / source_fps
        while k / fps < end - 1e-9:
            yield start + k / fps, prev[1]
            k += 1


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 25.0) -> Path:
    """Write BGR frames, sized by the first, with the codec of the extension (.avi, .mp4, .mkv)."""
    path = Path(path)
    codec = WRITE_CODECS.get(path.suffix.lower())
    if codec is None:
        raise FlowkitError(f"cannot write {path.suffix or 'extension-less'} videos; use one of {', '.join(WRITE_CODECS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
                if not writer.isOpened():
                    raise FlowkitError(f"OpenCV cannot write {path} with codec {codec}")
            writer.write(frame)
    finally:
        if writer is not None:
            writer.release()
    return path
