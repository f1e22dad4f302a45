"""Names and constants of the flowkit shard format (version 1); docs/FORMAT.md describes it in full.

Everything that reads or writes the format takes its group, dataset and attribute names from here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
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
WARPED_FLOW = "warped_flow"  # forward flow after camera-motion compensation (`extract --warp`)
FLOW_DATASETS = (FLOW, FLOW_BACKWARD, WARPED_FLOW)  # stored alike: same shape, encoding, checks
RGB = "rgb"

ENCODING_ATTR = "encoding"  # on flow datasets and rgb: how their values are stored
ENCODING_JPEG = "jpeg"  # variable-length JPEG files: (N,) frames, or (N, 2) u and v code images
ENCODING_RAW = "raw"  # uint8 (N, 2, H, W), deflate-compressed, one chunk per pair
FLOW_ENCODINGS = (ENCODING_JPEG, ENCODING_RAW)
QUALITY_ATTR = "quality"  # JPEG quality, or UNKNOWN_QUALITY for files imported as found
UNKNOWN_QUALITY = -1

COMPLETE_ATTR = "complete"
CHECKSUM_ATTR = "crc32"
BYTES_ATTR = "bytes"  # on `rgb`: total encoded bytes (variable-length data is stored apart)
FALLBACKS_ATTR = "homography_fallbacks"  # on `warped_flow`: pairs stored unwarped (no homography)


def as_text(value: Any) -> str:
    """An HDF5 string attribute or field (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def flow_dataset(backward: bool = False, warped: bool = False) -> str:
    """The name of the flow dataset a reader or writer means: forward, backward or warped."""
    if backward and warped:
        raise ValueError("warped flow is forward flow only")
    return WARPED_FLOW if warped else FLOW_BACKWARD if backward else FLOW


def video_group(video_id: str) -> str:
    """The HDF5 path of a video's group, in the index file and in its shard alike."""
    return f"{VIDEOS_GROUP}/{video_id}"


def canonical_settings(settings: dict[str, Any]) -> str:
    """Settings as the text stored in `settings` attributes: equal settings, equal text."""
    return json.dumps(settings, sort_keys=True)


def check_video_id(video_id: str) -> str | None:
    """Why `video_id` cannot name an HDF5 group, or None if it can."""
    if not video_id:
        return "empty id"
    parts = video_id.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"id {video_id!r} has an empty, '.' or '..' path component"
    return None


class IdChecker:
    """Checks the ids of a batch one by one: valid names, no duplicates, no id a folder of another.

    `ids` holds every id the dataset will hold (the batch and those already stored), since
    `videos/a` cannot be both a video and the folder of `videos/a/b`.
    """

    def __init__(self, ids: Iterable[str]) -> None:
        self.ids = set(ids)
        self.seen: dict[str, str] = {}

    def problem(self, video_id: str, source: str) -> str | None:
        """Why the video `video_id` from `source` cannot be stored, or None (and remember it)."""
        problem = check_video_id(video_id)
        if problem is not None:
            return problem
        if video_id in self.seen:
            return f"same id as {self.seen[video_id]} (ids are paths without extension)"
        parts = video_id.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in self.ids:
                return f"id clashes with video {parent!r}, whose id is a folder of this one"
        self.seen[video_id] = source
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
    engine: str = ""  # the backend that computed the flow (opencv, torch), and where
    device: str = ""
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
