"""The rawframes layouts: how peers name and number their files, and finding them in a folder.

A rawframes video is up to three streams of numbered JPEG files: the RGB frames, and the
horizontal (x) and vertical (y) flow codes as grayscale images. Peers name and number them
differently:

    peer                          RGB                    flow x, flow y                          from
    TSN's dense_flow, flowkit     img_00001.jpg          flow_x_00001.jpg, flow_y_00001.jpg      1
    open-mmlab denseflow          img_00000.jpg          flow_x_00000.jpg, flow_y_00000.jpg      0
    mmaction2 flow_extraction.py  img_00001.jpg          x_00001.jpg, y_00001.jpg                1
    twostreamfusion               <id>/frame000001.jpg   u/<id>/frame000001.jpg, v/<id>/...      1

Each stream's base is read on its own, from its lowest number, because folders mix them:
mmaction2's build_rawframes writes RGB from 1 with OpenCV beside denseflow's flow from 0. Flow
number `base + i` is the motion from RGB number `rgb_base + i` to the next frame.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from flowkit.errors import FlowkitError, VideoError

RGB, FLOW_X, FLOW_Y = "img", "flow_x", "flow_y"  # the streams, named as flowkit writes them


@dataclass(frozen=True)
class Naming:
    """One peer's file names for one stream: `prefix`, a number of `digits` or more, `.jpg`."""

    prefix: str
    digits: int
    folder: str = ""  # twostreamfusion's flow: the `u` or `v` tree above the video's folder

    def file_name(self, number: int) -> str:
        return f"{self.prefix}{number:0{self.digits}d}.jpg"

    def shown(self, number: int) -> str:
        """The file as messages name it (`u/frame000003.jpg` for a flow tree)."""
        return f"{self.folder}/{self.file_name(number)}" if self.folder else self.file_name(number)


TSN_NAMES = {RGB: Naming("img_", 5), FLOW_X: Naming("flow_x_", 5), FLOW_Y: Naming("flow_y_", 5)}
MMACTION2_FLOW = {FLOW_X: Naming("x_", 5), FLOW_Y: Naming("y_", 5)}
TWOSTREAM_RGB = Naming("frame", 6)
TWOSTREAM_FLOW = {FLOW_X: Naming("frame", 6, "u"), FLOW_Y: Naming("frame", 6, "v")}
FLOW_TREES = {"u": FLOW_X, "v": FLOW_Y}  # twostreamfusion's tvl1_flow/u/<id>/, tvl1_flow/v/<id>/

# The flow y naming that goes with each flow x naming, and back.
PARTNER = {
    pair[FLOW_X]: pair[FLOW_Y] for pair in (TSN_NAMES, MMACTION2_FLOW, TWOSTREAM_FLOW)
} | {pair[FLOW_Y]: pair[FLOW_X] for pair in (TSN_NAMES, MMACTION2_FLOW, TWOSTREAM_FLOW)}

# In a video's own folder, by file prefix: the stream and the naming.
_IN_FOLDER = {
    "img_": (RGB, TSN_NAMES[RGB]),
    "flow_x_": (FLOW_X, TSN_NAMES[FLOW_X]),
    "flow_y_": (FLOW_Y, TSN_NAMES[FLOW_Y]),
    "x_": (FLOW_X, MMACTION2_FLOW[FLOW_X]),
    "y_": (FLOW_Y, MMACTION2_FLOW[FLOW_Y]),
    "frame": (RGB, TWOSTREAM_RGB),
}
_FILE = re.compile(r"(img_|flow_x_|flow_y_|x_|y_|frame)(\d+)\.jpg")


def frame_file_name(kind: str, number: int) -> str:
    """`img_00001.jpg` for (RGB, 1): the names flowkit exports, TSN's and mmaction2's default."""
    return TSN_NAMES[kind].file_name(number)


def classify(name: str, flow_tree: str = "") -> tuple[str, Naming, int] | None:
    """(stream, naming, number) of a rawframe file name, or None for any other file.

    In a folder under a `u`/`v` flow tree (`flow_tree` is FLOW_X or FLOW_Y), only
    twostreamfusion's `frame` files are flow; elsewhere they are RGB.
    """
    match = _FILE.fullmatch(name)
    if match is None:
        return None
    prefix, digits = match.groups()
    if flow_tree:
        naming = TWOSTREAM_FLOW[flow_tree]
        return (flow_tree, naming, int(digits)) if prefix == "frame" and len(digits) >= naming.digits else None
    kind, naming = _IN_FOLDER[prefix]
    return (kind, naming, int(digits)) if len(digits) >= naming.digits else None


@dataclass(frozen=True)
class Stream:
    """The numbered files of one stream of a video, as one peer named them."""

    kind: str
    naming: Naming
    files: dict[int, Path]

    @property
    def base(self) -> int:
        """The number of the first file: 0 or 1; anything higher means the first is missing."""
        first = min(self.files)
        if first > 1:
            raise VideoError(
                f"the first {self.kind} file is {self.naming.shown(first)}; numbering must start at "
                f"{self.naming.shown(0)} or {self.naming.shown(1)}"
            )
        return first

    def check_numbering(self) -> None:
        """Raise VideoError naming the first missing file when the numbers are not base, base+1 ..."""
        for expected, number in enumerate(sorted(self.files), self.base):
            if number != expected:
                raise VideoError(f"{self.naming.shown(expected)} is missing (numbering has a gap)")

    def shown(self, path: Path) -> str:
        """One of its files as messages name it (`u/frame000003.jpg` in a flow tree)."""
        return f"{self.naming.folder}/{path.name}" if self.naming.folder else path.name

    def in_order(self) -> list[tuple[str, Path]]:
        """(shown name, path) of every file, by number."""
        return [(self.shown(self.files[n]), self.files[n]) for n in sorted(self.files)]

    def shown_first(self) -> str:
        return self.shown(self.files[min(self.files)])


def peer_name(streams: dict[str, Stream]) -> str:
    """The peer whose layout the streams follow, read from the flow files if any, else the RGB."""
    stream = streams.get(FLOW_X) or streams.get(FLOW_Y) or streams[RGB]
    if stream.naming in (TWOSTREAM_RGB, *TWOSTREAM_FLOW.values()):
        return "twostreamfusion"
    if stream.naming in MMACTION2_FLOW.values():
        return "mmaction2"
    return "denseflow" if stream.base == 0 else "tsn"


def describe_layout(streams: dict[str, Stream]) -> str:
    """`denseflow (img_00000.jpg, flow_x_00000.jpg, flow_y_00000.jpg)`: the peer, the first files."""
    firsts = ", ".join(streams[kind].shown_first() for kind in (RGB, FLOW_X, FLOW_Y) if kind in streams)
    return f"{peer_name(streams)} ({firsts})"


# ---- finding rawframe videos in a folder ------------------------------------------------------------


@dataclass(frozen=True)
class RawframeFolder:
    """One video's rawframe streams (from one folder, or from twostreamfusion's u/ and v/ trees)."""

    id: str
    source: str  # the folder its flow (else its RGB) was read from, relative to the input folder
    streams: dict[str, Stream]
    problem: str = ""  # set when the file names alone rule it out

    @property
    def relpath(self) -> str:
        """The source as the extraction pipeline names it (failures are keyed by it)."""
        return self.source

    def stat(self) -> tuple[int, int]:
        """(total bytes, newest mtime in ns) of its rawframe files: a change means redo."""
        stats = [p.stat() for stream in self.streams.values() for p in stream.files.values()]
        return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


@dataclass
class _Found:
    """A video's streams as the walk gathers them, from one folder or several."""

    folders: list[str] = field(default_factory=list)  # in the walk's order
    sources: dict[str, str] = field(default_factory=dict)  # stream -> folder it came from
    streams: dict[str, Stream] = field(default_factory=dict)
    problem: str = ""


def _flow_tree(in_dir: Path, relative: PurePosixPath) -> tuple[str, PurePosixPath]:
    """(FLOW_X or FLOW_Y, the video's path) for a folder under a `u`/`v` tree, else ("", itself).

    A flow tree is a `u` or `v` folder beside the other one, as twostreamfusion's are.
    """
    parts = relative.parts
    for i, part in enumerate(parts):
        if part in FLOW_TREES and all((in_dir.joinpath(*parts[:i]) / tree).is_dir() for tree in FLOW_TREES):
            return FLOW_TREES[part], PurePosixPath(*parts[:i], *parts[i + 1 :])
    return "", relative


def _streams_of(folder: Path, names: list[str], flow_tree: str) -> tuple[dict[str, Stream], str]:
    """The streams among one folder's file names, and the problem that rules them out, if any."""
    found: dict[str, dict[Naming, dict[int, Path]]] = {}
    for name in names:
        classified = classify(name, flow_tree)
        if classified is None:
            continue
        kind, naming, number = classified
        numbered = found.setdefault(kind, {}).setdefault(naming, {})
        if number in numbered:
            return {}, f"{numbered[number].name} and {name} both number {kind} frame {number}"
        numbered[number] = folder / name
    streams = {}
    for kind, by_naming in found.items():
        if len(by_naming) > 1:
            firsts = [naming.file_name(min(numbered)) for naming, numbered in by_naming.items()]
            return {}, f"{firsts[0]} and {firsts[1]} are two namings of {kind} files in one folder"
        (naming, numbered), = by_naming.items()
        streams[kind] = Stream(kind, naming, numbered)
    return streams, ""


def find_rawframe_folders(in_dir: Path) -> list[RawframeFolder]:
    """Every video under `in_dir` (itself included, hidden folders skipped) with rawframe files.

    A folder's own files make one video, named by its path; twostreamfusion's `u/<id>/` and
    `v/<id>/` frames (u/ and v/ side by side) are the flow of video `<id>`, joined with RGB
    frames in `<id>/` if any.
    Any file of a known naming counts, so a video missing its first file is reported rather
    than silently skipped.
    """
    if not in_dir.exists():
        raise FlowkitError(f"input folder {in_dir} does not exist")
    if not in_dir.is_dir():
        raise FlowkitError(f"input {in_dir} is not a folder")
    name = in_dir.resolve().name
    if name in FLOW_TREES and all((in_dir.resolve().parent / tree).is_dir() for tree in FLOW_TREES):
        raise FlowkitError(f"{in_dir} is one of twostreamfusion's u/ and v/ flow trees: "
                           f"import the folder that holds both ({in_dir.resolve().parent})")
    videos: dict[str, _Found] = {}
    for dirpath, dirnames, filenames in os.walk(in_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        relative = PurePosixPath(folder.relative_to(in_dir).as_posix())
        flow_tree, video_path = _flow_tree(in_dir, relative)
        streams, problem = _streams_of(folder, sorted(filenames), flow_tree)
        if not streams and not problem and flow_tree:  # not flow: `u` may be a video's own name
            flow_tree, video_path = "", relative
            streams, problem = _streams_of(folder, sorted(filenames), "")
        if not streams and not problem:
            continue
        # The input folder itself is one video: name it after the folder.
        video_id = in_dir.resolve().name if str(video_path) == "." else str(video_path)
        video = videos.setdefault(video_id, _Found())
        video.folders.append(str(relative))
        video.problem = video.problem or problem
        for kind, stream in streams.items():
            if kind in video.streams:
                video.problem = video.problem or (
                    f"{kind} files in both {video.sources[kind]} and {relative}"
                )
            video.streams[kind] = stream
            video.sources[kind] = str(relative)
    found = []
    for video_id, video in videos.items():
        sources = [video.sources[k] for k in (FLOW_X, FLOW_Y, RGB) if k in video.sources]
        streams = {} if video.problem else video.streams
        found.append(RawframeFolder(video_id, (sources or video.folders)[0], streams, video.problem))
    return sorted(found, key=lambda f: f.id)
