"""Label lists: the ways datasets are described, turned into (video id, label, split) rows.

Every reader returns a `LabelList`: the class names (label i is `classes[i]`, 0-based) and one
`Annotation` per video. `LabelList.match(ids)` then ties the rows to the ids a flowkit dataset
holds, which may carry a prefix (`UCF-101/ApplyEyeMakeup/v_...`) or none (`v_...`).
Malformed input raises `AnnotationError` naming the file and line.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from flowkit.errors import FlowkitError
from flowkit.video import VIDEO_EXTENSIONS, video_id


class AnnotationError(FlowkitError):
    """A label file that cannot be read as what it claims to be."""


@dataclass(frozen=True)
class Annotation:
    """One labelled video: `video` is an id as flowkit forms them (relative path, no extension).

    A row may label a clip of a longer video instead (mmaction2's `with_offset` lists): `frames`
    frames from frame `offset` (0-based, in the dataset's stored frames); the datasets then
    sample inside the clip only. `frames` None: the whole video.
    """

    video: str
    label: int
    split: str = ""  # "train", "test", "val", or "" when the source does not say
    offset: int = 0
    frames: int | None = None


@dataclass
class LabelList:
    """Class names and labelled videos; `label` indexes `classes`."""

    classes: list[str]
    rows: list[Annotation] = field(default_factory=list)

    def split(self, name: str) -> LabelList:
        """Only the rows of one split; an empty result is an error, not a silent no-op."""
        rows = [r for r in self.rows if r.split == name]
        if not rows:
            have = sorted({r.split for r in self.rows})
            raise AnnotationError(f"no videos in split {name!r} (splits present: {', '.join(have) or 'none'})")
        return LabelList(self.classes, rows)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row.split] = out.get(row.split, 0) + 1
        return out

    def match(self, ids: Iterable[str], missing: str = "error") -> LabelList:
        """Rows re-keyed to the dataset's ids: exact, else by a unique path suffix.

        `missing` is "error" (one line naming the first unknown video and the count) or "warn"
        (skip them with one warning: videos that failed extraction, say).
        """
        ids = list(ids)
        exact = set(ids)
        by_suffix: dict[str, list[str]] = {}
        for vid in ids:
            parts = PurePosixPath(vid).parts
            for i in range(len(parts)):
                by_suffix.setdefault("/".join(parts[i:]), []).append(vid)
        matched, unknown = [], []
        for row in self.rows:
            if row.video in exact:
                matched.append(row)
                continue
            candidates = by_suffix.get(row.video) or by_suffix.get(PurePosixPath(row.video).name, [])
            if len(candidates) == 1:
                matched.append(replace(row, video=candidates[0]))
            else:
                unknown.append(row.video)
        if unknown:
            message = f"{len(unknown)} of {len(self.rows)} labelled videos are not in the dataset (first: {unknown[0]})"
            if missing == "error":
                raise AnnotationError(message)
            warnings.warn(message + "; skipped", stacklevel=2)
        return LabelList(self.classes, matched)


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; a clear error if the file cannot be read."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise AnnotationError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise AnnotationError(f"{path} is not a text file") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _csv_rows(path: Path, reader: Any) -> list[Any]:
    """Every row of a CSV file, read with `csv.reader` or `csv.DictReader`."""
    try:
        with open(path, newline="") as handle:
            return list(reader(handle))
    except OSError as exc:
        raise AnnotationError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise AnnotationError(f"{path} is not a CSV file ({exc})") from None


def _int(path: Path, lineno: int, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AnnotationError(f"{path}:{lineno}: {what} {text!r} is not a whole number") from None


# ---- UCF101 ---------------------------------------------------------------------------------------


def read_ucf101(folder: str | Path, split: int = 1) -> LabelList:
    """`classInd.txt` + `trainlist0K.txt` + `testlist0K.txt` (labels 1-based there, 0-based here)."""
    folder = Path(folder)
    if split not in (1, 2, 3):
        raise AnnotationError(f"UCF101 has splits 1, 2 and 3, not {split}")
    classes = []
    for lineno, line in _lines(folder / "classInd.txt"):
        parts = line.split()
        if len(parts) != 2 or _int(folder / "classInd.txt", lineno, parts[0], "class index") != len(classes) + 1:
            raise AnnotationError(f"{folder / 'classInd.txt'}:{lineno}: expected '{len(classes) + 1} <class>'")
        classes.append(parts[1])
    index = {name: i for i, name in enumerate(classes)}
    rows = []
    for kind in ("train", "test"):
        path = folder / f"{kind}list0{split}.txt"
        for lineno, line in _lines(path):
            parts = line.split()
            name = parts[0]
            cls = name.split("/")[0]
            if cls not in index:
                raise AnnotationError(f"{path}:{lineno}: class {cls!r} is not in classInd.txt")
            if len(parts) > 1 and _int(path, lineno, parts[1], "label") - 1 != index[cls]:
                raise AnnotationError(f"{path}:{lineno}: label {parts[1]} does not match class {cls}")
            rows.append(Annotation(video_id(name), index[cls], kind))
    return LabelList(classes, rows)


# ---- HMDB51 ---------------------------------------------------------------------------------------

_HMDB_FILE = re.compile(r"(.+)_test_split([123])\.txt")


def read_hmdb51(folder: str | Path, split: int = 1) -> LabelList:
    """`<class>_test_split<K>.txt` files: 1 = train, 2 = test, 0 = unused (left out)."""
    folder = Path(folder)
    if split not in (1, 2, 3):
        raise AnnotationError(f"HMDB51 has splits 1, 2 and 3, not {split}")
    files = {_HMDB_FILE.fullmatch(p.name).group(1): p for p in folder.glob(f"*_test_split{split}.txt")
             if _HMDB_FILE.fullmatch(p.name)}
    if not files:
        raise AnnotationError(f"no HMDB51 split files (*_test_split{split}.txt) in {folder}")
    classes = sorted(files)  # by class name: `climb` before `climb_stairs`, unlike their files
    rows = []
    for label, name in enumerate(classes):
        path = files[name]
        for lineno, line in _lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise AnnotationError(f"{path}:{lineno}: expected '<video> 0|1|2'")
            if parts[1] != "0":
                kind = "train" if parts[1] == "1" else "test"
                rows.append(Annotation(f"{classes[label]}/{video_id(parts[0])}", label, kind))
    return LabelList(classes, rows)


# ---- Kinetics ---------------------------------------------------------------------------------------


def read_kinetics_csv(path: str | Path, classes: list[str] | None = None) -> LabelList:
    """The CSV `label,youtube_id,time_start,time_end,split`; ids are `<label>/<youtube_id>_<start>_<end>`
    with zero-padded times, the names the usual download scripts give the clips.

    `classes` fixes the label order (Kinetics-400's label map); by default, sorted names.
    """
    path = Path(path)
    records = _csv_rows(path, csv.DictReader)
    needed = {"label", "youtube_id", "time_start", "time_end", "split"}
    if not records or not needed <= set(records[0]):
        raise AnnotationError(f"{path}: expected the columns {', '.join(sorted(needed))}")
    names = classes or sorted({r["label"] for r in records})
    index = {name: i for i, name in enumerate(names)}
    rows = []
    for lineno, record in enumerate(records, 2):
        if record["label"] not in index:
            raise AnnotationError(f"{path}:{lineno}: class {record['label']!r} is not in the label map")
        start = _int(path, lineno, record["time_start"], "time_start")
        end = _int(path, lineno, record["time_end"], "time_end")
        clip = f"{record['youtube_id']}_{start:06d}_{end:06d}"
        split = {"validate": "val", "validation": "val"}.get(record["split"], record["split"])
        rows.append(Annotation(f"{record['label']}/{clip}", index[record["label"]], split))
    return LabelList(names, rows)


def read_class_names(path: str | Path) -> list[str]:
    """One class name per line (Kinetics-400's label map, HMDB51's class list)."""
    return [line for _, line in _lines(Path(path))]


# ---- generic formats ----------------------------------------------------------------------------------


def read_file_list(path: str | Path, split: str = "", classes: list[str] | None = None,
                   with_offset: bool = False) -> LabelList:
    """mmaction2/TSN lists, as mmaction2's RawframeDataset and VideoDataset read them:
    `path total_frames label` (rawframes), `path label` (videos) and, with `with_offset`,
    `path offset total_frames label` (clips of longer videos: kept as the rows' offset and frames).

    Multi-label lines (`path total_frames label label ...`, `video.mp4 label label ...`) are
    refused in one line that names the form: flowkit trains one label per video. A 4-field line
    is a with_offset line or a two-label one; mmaction2 itself tells them apart only by its
    `with_offset` and `multi_class` settings, so without `with_offset` the error names both.
    """
    path = Path(path)
    rows = [_file_list_row(path, lineno, line.split(), split, with_offset) for lineno, line in _lines(path)]
    count = max((r.label for r in rows), default=-1) + 1
    return LabelList(classes or [str(i) for i in range(count)], rows)


_ONE_LABEL = "flowkit trains one label per video"


def _file_list_row(path: Path, lineno: int, parts: list[str], split: str, with_offset: bool) -> Annotation:
    """One line of an mmaction2 list."""
    where, fields = f"{path}:{lineno}", len(parts)
    if fields == 1:
        raise AnnotationError(f"{where}: no label (mmaction2 reads such a line as an unlabelled video)")
    # Video lists name files; rawframes lists name frame folders, which mmaction2's
    # build_rawframes names after the video without its extension.
    if PurePosixPath(parts[0]).suffix.lower() in VIDEO_EXTENSIONS and fields > 2 and not with_offset:
        raise AnnotationError(f"{where}: {fields - 1} labels: an mmaction2 multi-label video line "
                              f"(path label label ...); {_ONE_LABEL}")
    offset, frames = 0, None
    if with_offset:
        if fields > 4:
            raise AnnotationError(f"{where}: {fields - 3} labels: an mmaction2 multi-label with_offset line "
                                  f"(path offset total_frames label label ...); {_ONE_LABEL}")
        if fields < 4:
            raise AnnotationError(f"{where}: {fields} fields, expected a with_offset line 'path offset total_frames label'")
        offset = _at_least(path, lineno, parts[1], "offset", 0)
        frames = _at_least(path, lineno, parts[2], "total_frames", 1)
    elif fields == 4:
        raise AnnotationError(f"{where}: 4 fields: an mmaction2 with_offset line (path offset total_frames label; "
                              f"read it as format 'filelist-offset') or a two-label line (path total_frames "
                              f"label label; {_ONE_LABEL})")
    elif fields > 4:
        raise AnnotationError(f"{where}: {fields - 2} labels: an mmaction2 multi-label line "
                              f"(path total_frames label label ...); {_ONE_LABEL}")
    elif fields == 3:
        _at_least(path, lineno, parts[1], "total_frames", 0)
    label = _at_least(path, lineno, parts[-1], "label", 0)
    return Annotation(video_id(parts[0]), label, split, offset, frames)


def _at_least(path: Path, lineno: int, text: str, what: str, least: int) -> int:
    value = _int(path, lineno, text, what)
    if value < least:
        unlabelled = " (unlabelled video)" if what == "label" else ""
        raise AnnotationError(f"{path}:{lineno}: {what} {value} is below {least}{unlabelled}")
    return value


def read_csv(path: str | Path, split: str = "") -> LabelList:
    """A CSV with columns `video,label` (label: a class name or a 0-based index)."""
    path = Path(path)
    records = _csv_rows(path, csv.reader)
    if records and [c.strip().lower() for c in records[0][:2]] == ["video", "label"]:
        records = records[1:]
        start = 2
    else:
        start = 1
    pairs = []
    for lineno, record in enumerate(records, start):
        if len(record) < 2 or not record[0].strip():
            raise AnnotationError(f"{path}:{lineno}: expected 'video,label'")
        pairs.append((video_id(record[0].strip()), record[1].strip()))
    if all(label.isdigit() for _, label in pairs):
        count = max((int(label) for _, label in pairs), default=-1) + 1
        classes = [str(i) for i in range(count)]
        rows = [Annotation(video, int(label), split) for video, label in pairs]
    else:
        classes = sorted({label for _, label in pairs})
        index = {name: i for i, name in enumerate(classes)}
        rows = [Annotation(video, index[label], split) for video, label in pairs]
    return LabelList(classes, rows)


def from_folders(ids: Iterable[str], split: str = "") -> LabelList:
    """Folder-per-class layout: the label is the folder above each video (`<class>/<clip>`)."""
    ids = list(ids)
    flat = [vid for vid in ids if "/" not in vid]
    if flat:
        raise AnnotationError(f"{len(flat)} videos are not in a class folder (first: {flat[0]})")
    classes = sorted({vid.rsplit("/", 2)[-2] for vid in ids})
    index = {name: i for i, name in enumerate(classes)}
    return LabelList(classes, [Annotation(vid, index[vid.rsplit("/", 2)[-2]], split) for vid in ids])


LABEL_FORMATS = ("auto", "ucf101", "hmdb51", "kinetics", "filelist", "filelist-offset", "csv", "folders")


def detect_format(path: Path) -> str:
    """Which reader a labels path calls for, from what it is and holds."""
    if path.is_dir():
        if (path / "classInd.txt").is_file():
            return "ucf101"
        if any(path.glob("*_test_split[123].txt")):
            return "hmdb51"
        raise AnnotationError(f"{path} holds neither UCF101 (classInd.txt) nor HMDB51 (*_test_split1.txt) split files")
    if not path.is_file():
        raise AnnotationError(f"labels {path} do not exist")
    if path.suffix.lower() == ".csv":
        header = path.read_text().split("\n", 1)[0]
        return "kinetics" if "youtube_id" in header else "csv"
    return "filelist"


@dataclass(frozen=True)
class LabelSource:
    """A dataset's labels as commands describe them (`--labels`, `--format`, `--split`,
    `--test-list`): anything `load_labels` reads; no `path` labels videos by their class folder."""

    path: str | Path | None = None
    format: str = "auto"
    split: int = 1
    test_list: str | Path | None = None

    def load(self, ids: Iterable[str]) -> tuple[LabelList, LabelList]:
        """(train, test) label lists matched to `ids`, as `load_labels` gives them."""
        return load_labels(self.path, ids, self.format, self.split, self.test_list)


def load_labels(path: str | Path | None, ids: Iterable[str], fmt: str = "auto", split: int = 1,
                test: str | Path | None = None) -> tuple[LabelList, LabelList]:
    """(train, test) label lists matched to a dataset's `ids`, from any supported description.

    UCF101 and HMDB51 folders and Kinetics CSVs carry their splits; a file list (`filelist-offset`:
    mmaction2's with_offset list) or a plain CSV is the training list and `test` names the test
    one; `folders` (or no path) labels every video by its class folder and needs `test` too, or
    uses no test split.
    """
    ids = list(ids)
    if fmt not in LABEL_FORMATS:
        raise AnnotationError(f"label format must be one of {', '.join(LABEL_FORMATS)}, not {fmt!r}")
    if path is None or fmt == "folders":
        labels = from_folders(ids, "train")
        return labels, (from_folders(_read_ids(Path(test)), "test") if test else LabelList(labels.classes))
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt in ("ucf101", "hmdb51", "kinetics"):
        reader = {"ucf101": read_ucf101, "hmdb51": read_hmdb51}.get(fmt)
        labels = reader(path, split) if reader else read_kinetics_csv(path)
        matched = labels.match(ids, missing="warn")
        test_name = "val" if fmt == "kinetics" and not any(r.split == "test" for r in matched.rows) else "test"
        return matched.split("train"), matched.split(test_name)

    def read(list_path: Path, split_name: str) -> LabelList:
        if fmt == "csv":
            return read_csv(list_path, split_name)
        return read_file_list(list_path, split_name, with_offset=fmt == "filelist-offset")

    train = read(path, "train").match(ids, missing="warn")
    if test is None:
        return train, LabelList(train.classes)
    test_list = read(Path(test), "test").match(ids, missing="warn")
    return train, LabelList(train.classes, test_list.rows)


def _read_ids(path: Path) -> list[str]:
    return [video_id(line.split()[0]) for _, line in _lines(path)]
