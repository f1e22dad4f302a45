"""Names and constants of the flowkit shard format (version 1); docs/FORMAT.md describes it in full.

Everything that reads or writes the format takes its group, dataset and attribute names from here.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from flowkit import __version__

FORMAT_NAME = "flowkit"
SHARD_FORMAT_NAME = "flowkit-shard"
FORMAT_VERSION = 1

VIDEOS_GROUP = "videos"
INDEX_TABLE = "index"
FAILURES_TABLE = "failures"

FLOW = "flow"
FLOW_BACKWARD = "flow_backward"
RGB = "rgb"
RGB_ENCODING = "jpeg"

COMPLETE_ATTR = "complete"
CHECKSUM_ATTR = "crc32"
BYTES_ATTR = "bytes"  # on `rgb`: total encoded bytes (variable-length data is stored apart)


def video_group(video_id: str) -> str:
    """The HDF5 path of a video's group, in the index file and in its shard alike."""
    return f"{VIDEOS_GROUP}/{video_id}"


def check_video_id(video_id: str) -> str | None:
    """Why `video_id` cannot name an HDF5 group, or None if it can."""
    if not video_id:
        return "empty id"
    parts = video_id.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"id {video_id!r} has an empty, '.' or '..' path component"
    return None


@dataclass
class VideoAttrs:
    """Every attribute of a video group; `complete` is added last, when the video is published."""

    id: str  # the video's id: its source path relative to the input folder, without extension
    source: str  # the source path relative to the input folder
    source_size: int  # bytes of the source when extracted (with mtime: a changed source is redone)
    source_mtime_ns: int
    frames: int  # T: stored RGB frames (after resampling)
    pairs: int  # T - step: stored flow pairs
    height: int
    width: int
    fps: float  # frame rate of the stored frames
    step: int  # flow[i] is frame i -> frame i + step
    bound: float  # quantization bound in pixels
    algorithm: str
    params: str  # JSON: every parameter of the algorithm, defaults included
    settings: str  # JSON: everything that decides the stored values; equal settings: same data
    source_fps: float = 0.0
    source_frames: int = 0  # frames the decoder returned (headers are not trusted)
    header_frames: int = 0  # frames the container's header claims
    source_width: int = 0
    source_height: int = 0
    elapsed_s: float = 0.0
    extracted_at: str = ""
    extracted_at_ns: int = 0  # orders copies of the same video: the newest is live
    flowkit_version: str = __version__
    format_version: int = FORMAT_VERSION

    def stamped(self) -> dict[str, Any]:
        """The attributes to write, with the extraction time filled in if not set."""
        attrs = asdict(self)
        if not attrs["extracted_at_ns"]:
            now = time.time_ns()
            attrs["extracted_at_ns"] = now
            attrs["extracted_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now / 1e9))
        return attrs
