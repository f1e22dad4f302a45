import warnings

import pytest

from flowkit.data.annotations import (
    AnnotationError,
    LabelList,
    from_folders,
    load_labels,
    read_class_names,
    read_csv,
    read_file_list,
    read_hmdb51,
    read_kinetics_csv,
    read_ucf101,
)


def test_ucf101_split_1_counts_and_labels(shared_testdata):
    labels = read_ucf101(shared_testdata / "splits/ucf101", split=1)
    assert len(labels.classes) == 101 and labels.classes[0] == "ApplyEyeMakeup"
    assert labels.counts() == {"train": 9537, "test": 3783}
    first = labels.rows[0]
    assert (first.video, first.label, first.split) == ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 0, "train")
    test = labels.split("test")
    assert test.rows[0].video == "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01" and test.rows[-1].label == 100
    assert read_ucf101(shared_testdata / "splits/ucf101", split=3).counts() == {"train": 9624, "test": 3696}


def test_hmdb51_split_1(shared_testdata):
    labels = read_hmdb51(shared_testdata / "splits/hmdb51", split=1)
    assert len(labels.classes) == 51 and labels.classes == sorted(labels.classes)
    assert labels.counts() == {"train": 3570, "test": 1530}  # 70 and 30 per class
    wave = labels.classes.index("wave")
    waves = [r for r in labels.rows if r.label == wave]
    assert len(waves) == 100 and all(r.video.startswith("wave/") for r in waves)
    assert "wave/21_wave_u_nm_np1_fr_goo_5" in {r.video for r in waves if r.split == "train"}


def test_malformed_lines_name_file_and_line(tmp_path):
    folder = tmp_path / "ucf"
    folder.mkdir()
    (folder / "classInd.txt").write_text("1 Alpha\n2 Beta\n")
    (folder / "trainlist01.txt").write_text("Alpha/v_a.avi 1\nGamma/v_c.avi 3\n")
    (folder / "testlist01.txt").write_text("")
    with pytest.raises(AnnotationError, match=r"trainlist01.txt:2: class 'Gamma' is not in classInd"):
        read_ucf101(folder)
    (folder / "trainlist01.txt").write_text("Alpha/v_a.avi 2\n")
    with pytest.raises(AnnotationError, match=r"trainlist01.txt:1: label 2 does not match class Alpha"):
        read_ucf101(folder)
    (folder / "classInd.txt").write_text("1 Alpha\n3 Beta\n")
    with pytest.raises(AnnotationError, match=r"classInd.txt:2: expected '2 <class>'"):
        read_ucf101(folder)
    with pytest.raises(AnnotationError, match="cannot read"):
        read_ucf101(tmp_path / "nowhere")
    hmdb = tmp_path / "hmdb"
    hmdb.mkdir()
    (hmdb / "run_test_split1.txt").write_text("a.avi 1\nb.avi 7\n")
    with pytest.raises(AnnotationError, match=r"run_test_split1.txt:2: expected '<video> 0\|1\|2'"):
        read_hmdb51(hmdb)


def test_kinetics_csv(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,0347ZoDXyP0,14,24,train\n"
        "air drumming,-eGnPDG5Pxs,0,10,validate\n"
    )
    labels = read_kinetics_csv(path, classes=["abseiling", "air drumming", "zumba"])
    assert [(r.video, r.label, r.split) for r in labels.rows] == [
        ("abseiling/0347ZoDXyP0_000014_000024", 0, "train"),
        ("air drumming/-eGnPDG5Pxs_000000_000010", 1, "val"),
    ]
    path.write_text("label,youtube_id,time_start,time_end,split\nflying,x,0,10,train\n")
    with pytest.raises(AnnotationError, match=r"train.csv:2: class 'flying' is not in the label map"):
        read_kinetics_csv(path, classes=["abseiling"])


def test_kinetics_label_map(shared_testdata):
    names = read_class_names(shared_testdata / "splits/kinetics400/label_map_k400.txt")
    assert len(names) == 400 and names[0] == "abseiling"


def test_mmaction_file_lists_csv_and_folders(tmp_path):
    rawframes = tmp_path / "list.txt"
    rawframes.write_text("Alpha/v_a 120 0\nBeta/v_b.avi 2\n")
    labels = read_file_list(rawframes, split="train")
    assert [(r.video, r.label) for r in labels.rows] == [("Alpha/v_a", 0), ("Beta/v_b", 2)]
    assert len(labels.classes) == 3
    rawframes.write_text("Alpha/v_a 120 x\n")
    with pytest.raises(AnnotationError, match=r"list.txt:1: label 'x' is not a whole number"):
        read_file_list(rawframes)

    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("video,label\nclips/a.mp4,dog\nclips/b.mp4,cat\nclips/c.mp4,dog\n")
    named = read_csv(csv_path)
    assert named.classes == ["cat", "dog"] and [r.label for r in named.rows] == [1, 0, 1]
    assert named.rows[0].video == "clips/a"

    folders = from_folders(["run/x", "jump/y", "run/z"])
    assert folders.classes == ["jump", "run"] and [r.label for r in folders.rows] == [1, 0, 1]
    with pytest.raises(AnnotationError, match="not in a class folder"):
        from_folders(["run/x", "loose"])


def test_matching_to_dataset_ids_with_or_without_prefix():
    labels = from_folders(["Alpha/v_a", "Beta/v_b", "Beta/v_c"])
    prefixed = labels.match(["UCF-101/Alpha/v_a", "UCF-101/Beta/v_b", "UCF-101/Beta/v_c"])
    assert [r.video for r in prefixed.rows] == ["UCF-101/Alpha/v_a", "UCF-101/Beta/v_b", "UCF-101/Beta/v_c"]
    flat = labels.match(["v_a", "v_b", "v_c"])
    assert [r.label for r in flat.rows] == [0, 1, 1]
    with pytest.raises(AnnotationError, match=r"1 of 3 labelled videos are not in the dataset \(first: Beta/v_c\)"):
        labels.match(["Alpha/v_a", "Beta/v_b"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = labels.match(["Alpha/v_a", "Beta/v_b"], missing="warn")
    assert len(kept.rows) == 2 and "skipped" in str(caught[0].message)
    with pytest.raises(AnnotationError, match="no videos in split 'val'"):
        LabelList(["a"], labels.rows).split("val")


# mmaction2's list forms, written exactly as open-mmlab/mmaction2 documents them (commit 4d6c934):
# the RawframeDataset docstring and load_data_list in mmaction/datasets/rawframe_dataset.py
# (rawframes, multi-class and with_offset examples) and VideoDataset's in video_dataset.py
# (`path label`; with multi_class, `path label label ...`).
MMACTION_RAWFRAMES = """some/directory-1 163 1
some/directory-2 122 1
some/directory-3 258 2
some/directory-4 234 2
some/directory-5 295 3
some/directory-6 121 3
"""
MMACTION_MULTI_CLASS = """some/directory-1 163 1 3 5
some/directory-2 122 1 2
some/directory-3 258 2
some/directory-4 234 2 4 6 8
some/directory-5 295 3
some/directory-6 121 3
"""
MMACTION_WITH_OFFSET = """some/directory-1 12 163 3
some/directory-2 213 122 4
some/directory-3 100 258 5
some/directory-4 98 234 2
some/directory-5 0 295 3
some/directory-6 50 121 3
"""
MMACTION_VIDEOS = """some/path/000.mp4 1
some/path/001.mp4 1
some/path/002.mp4 2
some/path/003.mp4 2
some/path/004.mp4 3
some/path/005.mp4 3
"""


def _mmaction_list(tmp_path, text):
    path = tmp_path / "list.txt"
    path.write_text(text)
    return path


def test_mmaction_rawframes_and_video_lists(tmp_path):
    rawframes = read_file_list(_mmaction_list(tmp_path, MMACTION_RAWFRAMES))
    assert [(r.video, r.label, r.offset, r.frames) for r in rawframes.rows[:2]] == [
        ("some/directory-1", 1, 0, None), ("some/directory-2", 1, 0, None)]
    assert len(rawframes.classes) == 4
    videos = read_file_list(_mmaction_list(tmp_path, MMACTION_VIDEOS))
    assert [r.video for r in videos.rows][:2] == ["some/path/000", "some/path/001"]
    assert [r.label for r in videos.rows] == [1, 1, 2, 2, 3, 3]


def test_mmaction_with_offset_lists_keep_the_clip(tmp_path):
    path = _mmaction_list(tmp_path, MMACTION_WITH_OFFSET)
    clips = read_file_list(path, "train", with_offset=True)
    assert [(r.video, r.offset, r.frames, r.label) for r in clips.rows] == [
        ("some/directory-1", 12, 163, 3), ("some/directory-2", 213, 122, 4), ("some/directory-3", 100, 258, 5),
        ("some/directory-4", 98, 234, 2), ("some/directory-5", 0, 295, 3), ("some/directory-6", 50, 121, 3)]
    # Matched to prefixed dataset ids, a row keeps its clip.
    ids = [f"data/some/directory-{i}" for i in range(1, 7)]
    train, _ = load_labels(path, ids, fmt="filelist-offset")
    assert (train.rows[1].video, train.rows[1].offset, train.rows[1].frames) == ("data/some/directory-2", 213, 122)
    # Without the with_offset setting a 4-field line could be either form (so mmaction2 needs it too).
    with pytest.raises(AnnotationError, match=r"list.txt:1: 4 fields: an mmaction2 with_offset line .* "
                                              r"or a two-label line"):
        read_file_list(path)
    with pytest.raises(AnnotationError, match=r"list.txt:1: 3 fields, expected a with_offset line"):
        read_file_list(_mmaction_list(tmp_path, MMACTION_RAWFRAMES), with_offset=True)
    with pytest.raises(AnnotationError, match=r"list.txt:1: total_frames 0 is below 1"):
        read_file_list(_mmaction_list(tmp_path, "some/directory-1 12 0 3\n"), with_offset=True)


def test_mmaction_multi_label_lines_are_refused_naming_the_form(tmp_path):
    with pytest.raises(AnnotationError, match=r"^\S*list.txt:1: 3 labels: an mmaction2 multi-label line "
                                              r"\(path total_frames label label \.\.\.\); flowkit trains one label"):
        read_file_list(_mmaction_list(tmp_path, MMACTION_MULTI_CLASS))
    with pytest.raises(AnnotationError, match=r"list.txt:1: 4 fields: .* a two-label line"):
        read_file_list(_mmaction_list(tmp_path, "some/directory-2 122 1 2\n"))
    with pytest.raises(AnnotationError, match=r"list.txt:1: 2 labels: an mmaction2 multi-label video line"):
        read_file_list(_mmaction_list(tmp_path, "some/path/000.mp4 1 3\n"))
    with pytest.raises(AnnotationError, match=r"list.txt:1: 2 labels: an mmaction2 multi-label with_offset line"):
        read_file_list(_mmaction_list(tmp_path, "some/directory-1 12 163 3 5\n"), with_offset=True)
    with pytest.raises(AnnotationError, match=r"list.txt:1: no label"):
        read_file_list(_mmaction_list(tmp_path, "some/path/000.mp4\n"))
