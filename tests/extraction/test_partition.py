"""`flowkit partition`: videos split into lists that stay put, so make redoes only what changed."""

import pytest
from click.testing import CliRunner

from flowkit.cli import EXIT_BAD_INPUT, cli
from flowkit.errors import FlowkitError
from flowkit.extraction.partition import part_of, split_videos
from flowkit.video import find_videos, video_id

VIDEOS = ["a.mp4", "b.mkv", "c.avi", "d.mkv", "e.mkv", "f.mkv", "cls/x.mkv", "cls/y.avi"]


@pytest.fixture
def videos(tmp_path, monkeypatch):
    """A folder of (empty) video files; the test runs in tmp_path, so paths print as typed."""
    for name in VIDEOS:
        path = tmp_path / "videos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (tmp_path / "videos/notes.txt").write_text("not a video")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "videos"


def partition(*args):
    result = CliRunner().invoke(cli, ["partition", *map(str, args)], catch_exceptions=False)
    return result, result.output


def _lists(folder) -> dict[str, list[str]]:
    return {p.name: p.read_text().splitlines() for p in sorted(folder.glob("list-*.txt"))}


def _listed(lists: dict[str, list[str]]) -> list[str]:
    """Every line of every list, sorted: each video must appear once."""
    return sorted(line for lines in lists.values() for line in lines)


def _stamps(folder) -> dict[str, tuple[int, int]]:
    """Inode and mtime of each list: both change when a list is rewritten (atomically)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("list-*.txt")}


def test_every_video_is_in_exactly_one_list_chosen_by_its_id(videos, tmp_path):
    result, output = partition("videos", "parts", "--parts", "3")
    assert result.exit_code == 0
    # One path per line, as typed: extract.mk derives its part targets from these.
    assert output.splitlines() == ["parts/list-000.txt", "parts/list-001.txt", "parts/list-002.txt"]
    lists = _lists(tmp_path / "parts")
    assert _listed(lists) == sorted(VIDEOS)  # each once, notes.txt not at all
    for index, (name, lines) in enumerate(lists.items()):
        assert name == f"list-{index:03d}.txt" and lines == sorted(lines)
        assert all(part_of(video_id(line), 3) == index for line in lines)
        # `flowkit extract --list` reads them back as the videos they name.
        found = find_videos(videos, tmp_path / "parts" / name)
        assert [v.path for v in found] == [videos / line for line in lines]
        assert all(v.path.is_file() for v in found)


def test_parts_are_pinned_across_runs_and_machines():
    """A new mapping would make every make target redo its part: these values must never change."""
    ids = ["a", "b", "c", "d", "e", "f", "cls/x", "cls/y"]
    assert [part_of(i, 2) for i in ids] == [1, 0, 0, 0, 0, 1, 1, 0]
    assert [part_of(i, 3) for i in ids] == [1, 0, 1, 2, 1, 1, 0, 1]
    assert [part_of(i, 1) for i in ids] == [0] * 8


def test_a_second_run_rewrites_no_list(videos, tmp_path):
    first, _ = partition("videos", "parts", "--parts", "3")
    lists, stamps = _lists(tmp_path / "parts"), _stamps(tmp_path / "parts")
    again, _ = partition("videos", "parts", "--parts", "3")
    assert again.output == first.output
    assert _lists(tmp_path / "parts") == lists and _stamps(tmp_path / "parts") == stamps


def test_adding_or_removing_a_video_rewrites_only_its_list(videos, tmp_path):
    partition("videos", "parts", "--parts", "3")
    lists, stamps = _lists(tmp_path / "parts"), _stamps(tmp_path / "parts")
    (videos / "g.mkv").write_bytes(b"")  # part 2 of 3
    assert part_of("g", 3) == 2
    partition("videos", "parts", "--parts", "3")
    now = _lists(tmp_path / "parts")
    assert now["list-002.txt"] == sorted([*lists["list-002.txt"], "g.mkv"])
    changed = {name for name in stamps if _stamps(tmp_path / "parts")[name] != stamps[name]}
    assert changed == {"list-002.txt"}
    assert {k: v for k, v in now.items() if k != "list-002.txt"} == {
        k: v for k, v in lists.items() if k != "list-002.txt"}

    stamps = _stamps(tmp_path / "parts")
    (videos / "cls/x.mkv").unlink()  # part 0 of 3
    partition("videos", "parts", "--parts", "3")
    assert "cls/x.mkv" not in _lists(tmp_path / "parts")["list-000.txt"]
    changed = {name for name in stamps if _stamps(tmp_path / "parts")[name] != stamps[name]}
    assert changed == {"list-000.txt"}


def test_fewer_parts_remove_the_stale_lists_and_more_parts_add_them(videos, tmp_path):
    partition("videos", "parts", "--parts", "4")
    assert len(_lists(tmp_path / "parts")) == 4
    _, output = partition("videos", "parts", "--parts", "2")
    assert output.splitlines() == ["parts/list-000.txt", "parts/list-001.txt"]
    lists = _lists(tmp_path / "parts")
    assert list(lists) == ["list-000.txt", "list-001.txt"]  # list-002 and list-003 are gone
    assert _listed(lists) == sorted(VIDEOS)
    partition("videos", "parts", "--parts", "3")
    lists = _lists(tmp_path / "parts")
    assert list(lists) == ["list-000.txt", "list-001.txt", "list-002.txt"]
    assert _listed(lists) == sorted(VIDEOS)
    # Other files in the folder (the part datasets of extract.mk) are not the partition's to delete.
    (tmp_path / "parts/part-003.h5").write_bytes(b"x")
    partition("videos", "parts", "--parts", "1")
    assert list(_lists(tmp_path / "parts")) == ["list-000.txt"]
    assert (tmp_path / "parts/part-003.h5").exists()


@pytest.mark.parametrize("parts", ["0", "-2"])
def test_fewer_than_one_part_is_a_one_line_error_that_keeps_the_lists(videos, tmp_path, parts):
    partition("videos", "parts", "--parts", "2")
    lists, stamps = _lists(tmp_path / "parts"), _stamps(tmp_path / "parts")
    result, output = partition("videos", "parts", "--parts", parts)
    assert result.exit_code == EXIT_BAD_INPUT and "Traceback" not in output
    assert output.splitlines() == [f"error: --parts must be at least 1, got {parts}"]
    assert _lists(tmp_path / "parts") == lists and _stamps(tmp_path / "parts") == stamps
    with pytest.raises(FlowkitError, match="at least 1"):
        split_videos(find_videos(videos), int(parts))


def test_a_list_file_splits_only_the_videos_it_names(videos, tmp_path):
    (tmp_path / "some.txt").write_text("# a subset\na.mp4\ncls/y.avi\n\nf.mkv\n")
    result, _ = partition("videos", "parts", "--parts", "2", "--list", "some.txt")
    assert result.exit_code == 0
    lists = _lists(tmp_path / "parts")
    assert lists == {"list-000.txt": ["cls/y.avi"], "list-001.txt": ["a.mp4", "f.mkv"]}


def test_a_missing_input_folder_is_a_one_line_error_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result, output = partition("nowhere", "parts", "--parts", "2")
    assert result.exit_code == EXIT_BAD_INPUT
    assert output.splitlines() == ["error: input folder nowhere does not exist"]
    assert not (tmp_path / "parts").exists()


def test_a_new_folder_is_not_made_for_a_bad_number_of_parts(videos, tmp_path):
    result, _ = partition("videos", "fresh", "--parts", "0")
    assert result.exit_code == EXIT_BAD_INPUT
    assert not (tmp_path / "fresh").exists()


def test_empty_parts_get_no_list(videos, tmp_path):
    parts = 64  # more parts than videos: most are empty, and make must get no target for them
    result, output = partition("videos", "parts", "--parts", parts)
    assert result.exit_code == 0
    used = sorted({part_of(video_id(name), parts) for name in VIDEOS})
    assert output.splitlines() == [f"parts/list-{i:03d}.txt" for i in used]
    assert all(lines for lines in _lists(tmp_path / "parts").values())
