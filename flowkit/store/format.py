"""Names and constants of the flowkit shard format (version 1); docs/FORMAT.md describes it in full.

Everything that reads or writes the format takes its group, dataset and attribute names from here.
"""

from __future__ import annotations

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
