"""Export list labels: the label source's 0-based indices, else the class folder as training reads it."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from flowkit.cli import cli
from flowkit.data.annotations import LabelSource, from_folders
from flowkit.rawframes import (
    FLOW_LIST,
    NO_LABEL,
    RGB_LIST,
    export_rawframes,
    import_rawframes,
)
from flowkit.store.reader import FlowStore

# Real UCF101 names: the pairs a case-sensitive sort orders unlike classInd.txt, and a subset.
UCF101_CLASSES = ["ApplyEyeMakeup", "BaseballPitch", "Hammering", "HammerThrow", "JumpingJack", "JumpRope"]


def _dataset(tmp_path: Path, ids: list[str]) -> Path:
    """A dataset of 3-frame videos with these ids, imported from TSN-layout folders."""
    rng = np.random.default_rng(0)
    for video_id in ids:
        folder = tmp_path / "rf" / video_id
        folder.mkdir(parents=True)
        for i in range(1, 4):
            cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        for i in range(1, 3):
            for kind in ("flow_x", "flow_y"):
                cv2.imwrite(str(folder / f"{kind}_{i:05d}.jpg"), np.full((16, 16), 128, np.uint8))
    out = tmp_path / "data.h5"
    assert import_rawframes(tmp_path / "rf", out).ok
    return out


def _labels(list_file: Path) -> dict[str, int]:
    return {path: int(label) for path, _, label in (line.split() for line in list_file.read_text().splitlines())}


def _class_ind(splits: Path) -> dict[str, int]:
    """classInd.txt as UCF101 distributes it: `<1-based index> <class>` per line."""
    return {name: int(index) for index, name in (line.split() for line in (splits / "classInd.txt").read_text().split("\n") if line.strip())}


def _ucf101_ids(prefix: str = "ucf101/") -> list[str]:
    # g08 clips are in trainlist01, g01 clips in testlist01: both splits of the source are used.
    return [f"{prefix}{c}/v_{c}_g{g:02d}_c01" for c in UCF101_CLASSES for g in (1, 8)]


@pytest.mark.filterwarnings("ignore:.*labelled videos are not in the dataset")
def test_ucf101_labels_are_classind_minus_one(tmp_path, shared_testdata):
    splits = shared_testdata / "splits/ucf101"
    data = _dataset(tmp_path, _ucf101_ids())
    report = export_rawframes(data, tmp_path / "out", labels=LabelSource(splits))
    assert report.ok and report.unlabelled == 0
    official = _class_ind(splits)
    assert len(report.classes) == len(official) == 101
    expected = {video_id: official[video_id.split("/")[1]] - 1 for video_id in _ucf101_ids()}
    assert _labels(tmp_path / "out" / RGB_LIST) == expected
    assert _labels(tmp_path / "out" / FLOW_LIST) == expected
    # The official order, which a case-sensitive sort of the names reverses.
    by_class = {video_id.split("/")[1]: label for video_id, label in expected.items()}
    assert by_class["Hammering"] < by_class["HammerThrow"] and by_class["JumpingJack"] < by_class["JumpRope"]
    assert sorted(["Hammering", "HammerThrow"]) == ["HammerThrow", "Hammering"]

    # A subset exported alone keeps the same labels.
    subset = export_rawframes(data, tmp_path / "one", ids=[_ucf101_ids()[2]], labels=LabelSource(splits))
    assert subset.exported == 1
    assert _labels(tmp_path / "one" / FLOW_LIST) == {_ucf101_ids()[2]: official["BaseballPitch"] - 1}


@pytest.mark.filterwarnings("ignore:.*labelled videos are not in the dataset")
def test_cli_labels_and_absolute_paths_read_from_anywhere(tmp_path, shared_testdata, monkeypatch):
    splits = shared_testdata / "splits/ucf101"
    data = _dataset(tmp_path, _ucf101_ids(prefix=""))
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["export-rawframes", str(data), "out", "--labels", str(splits),
                                      "--format", "ucf101", "--split", "2", "--absolute"])
    assert result.exit_code == 0, result.output
    official = _class_ind(splits)
    lines = (out / RGB_LIST).read_text().splitlines()
    assert len(lines) == len(_ucf101_ids())
    # Read as yjxiong/tsn-pytorch's dataset.py does: VideoRecord(x.strip().split(' ')) per line,
    # then Image.open(os.path.join(record.path, 'img_{:05d}.jpg'.format(idx))) for idx from 1:
    # relative to the working directory, wherever that is.
    monkeypatch.chdir(tmp_path / "rf")
    with FlowStore(data) as store:
        for line in lines:
            path, num_frames, label = line.strip().split(" ")
            assert os.path.isabs(path)
            video_id = Path(path).relative_to(out.resolve()).as_posix()
            assert int(label) == official[video_id.split("/")[0]] - 1
            for idx in range(1, int(num_frames) + 1):
                with open(os.path.join(path, f"img_{idx:05d}.jpg"), "rb") as handle:
                    assert handle.read() == store.video(video_id).rgb_jpeg(idx - 1)


def test_without_labels_the_class_is_the_parent_folder_as_training_reads_it(tmp_path):
    ids = _ucf101_ids()  # prefixed: ucf101/<class>/<clip>
    data = _dataset(tmp_path, ids)
    report = export_rawframes(data, tmp_path / "out")
    folders = from_folders(ids)
    assert report.classes == folders.classes and "ucf101" not in report.classes
    assert _labels(tmp_path / "out" / FLOW_LIST) == {row.video: row.label for row in folders.rows}


def test_a_label_list_labels_what_it_lists_and_the_rest_are_minus_one(tmp_path):
    data = _dataset(tmp_path, ["clips/a", "clips/b", "clips/c"])
    # An mmaction2 rawframes list, `path total_frames label` (mmaction2 docs: annotation files).
    listed = tmp_path / "train.txt"
    listed.write_text("clips/a 3 4\nclips/c 3 0\n")
    report = export_rawframes(data, tmp_path / "out", labels=LabelSource(listed))
    assert report.unlabelled == 1
    assert _labels(tmp_path / "out" / RGB_LIST) == {"clips/a": 4, "clips/b": NO_LABEL, "clips/c": 0}
    result = CliRunner().invoke(cli, ["export-rawframes", str(data), str(tmp_path / "cli"), "--labels", str(listed)])
    assert result.exit_code == 0, result.output
    assert f"1 videos listed with label -1: {listed} does not label them" in result.stderr


def test_bad_label_source_is_one_line_before_any_work(tmp_path):
    data = _dataset(tmp_path, ["clips/a"])
    result = CliRunner().invoke(cli, ["export-rawframes", str(data), str(tmp_path / "out"),
                                      "--labels", str(tmp_path / "nowhere.txt")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: labels {tmp_path / 'nowhere.txt'} do not exist"
    assert not (tmp_path / "out").exists()
