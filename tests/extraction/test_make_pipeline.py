"""pipelines/extract.mk run by real make: parts extracted apart, merged, and only what changed redone."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowkit.extraction.partition import part_of
from flowkit.store.index import read_index
from flowkit.store.reader import FlowStore
from flowkit.store.verify import verify_store

MAKEFILE = Path(__file__).resolve().parents[2] / "pipelines" / "extract.mk"
FIRST = ["a", "b", "c", "f"]  # two in each of 2 parts: b, c in part 0; a, f in part 1


@pytest.fixture
def make(tmp_path):
    """Run extract.mk in tmp_path on tmp_path/videos into out.h5; returns the finished process."""
    if shutil.which("make") is None:
        pytest.skip("make is not on PATH")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["LC_ALL"] = "C"  # make's own messages in English

    def run(shards: int = 2, *flags: str) -> subprocess.CompletedProcess:
        command = [
            "make", "-f", str(MAKEFILE), "-j", "2", *flags, "VIDEOS=videos", "OUT=out.h5", f"SHARDS={shards}",
            f"FLOWKIT={sys.executable} -m flowkit", "EXTRACT_ARGS=--algorithm dis --no-resize",
        ]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    return run


@pytest.fixture
def videos(tmp_path, make_video):
    assert [part_of(v, 2) for v in FIRST] == [1, 0, 0, 1]
    for seed, name in enumerate(FIRST):
        make_video(f"{name}.mkv", frames=6 + seed % 2, seed=seed)
    return tmp_path / "videos"


def _built(done: subprocess.CompletedProcess) -> list[str]:
    """The part datasets this make run extracted, from the commands make echoed."""
    commands = [line.split() for line in done.stdout.splitlines() if " -m flowkit extract " in line]
    return sorted(words[words.index("extract") + 2] for words in commands)  # extract VIDEOS OUTPUT


def _merged(done: subprocess.CompletedProcess) -> bool:
    return any(" -m flowkit merge " in line for line in done.stdout.splitlines())


def _stamps(*roots: Path) -> dict[str, tuple[int, int]]:
    """Inode and mtime of every file under `roots`: both change when a file is rewritten."""
    found = {}
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                found[str(path)] = (path.stat().st_ino, path.stat().st_mtime_ns)
    return found


def _check_out(tmp_path: Path, ids: list[str]) -> None:
    """OUT verifies, holds `ids`, each byte-identical to its part's copy, in hard-linked shards."""
    out, parts = tmp_path / "out.h5", tmp_path / "out.h5.parts"
    report = verify_store(out)
    assert report.ok, report.problems
    with FlowStore(out) as merged:
        assert merged.ids == sorted(ids)
        for index in sorted(parts.glob("part-*.h5")):
            with FlowStore(index) as part:
                for video_id in part.ids:
                    a, b = merged.video(video_id), part.video(video_id)
                    assert a.attrs["extracted_at_ns"] == b.attrs["extracted_at_ns"], video_id
                    assert [a.flow_jpeg(i) for i in range(a.entry.pairs)] == [
                        b.flow_jpeg(i) for i in range(b.entry.pairs)], video_id
    # OUT links exactly the parts' live shards: none left behind from a part since redone.
    part_shards = {p.name: p.stat().st_ino for p in parts.glob("part-*.h5.shards/part-*.h5")}
    out_shards = {p.name: p.stat().st_ino for p in (tmp_path / "out.h5.shards").glob("part-*.h5")}
    assert out_shards == part_shards


def test_make_extracts_each_part_merges_them_and_then_has_nothing_to_do(tmp_path, make, videos):
    (videos / "broken.avi").write_bytes(b"")  # fails in part 0, which must still be made
    done = make()
    assert done.returncode == 0, done.stdout + done.stderr
    assert _built(done) == ["out.h5.parts/part-000.h5", "out.h5.parts/part-001.h5"] and _merged(done)
    parts = tmp_path / "out.h5.parts"
    assert sorted(p.name for p in parts.glob("list-*.txt")) == ["list-000.txt", "list-001.txt"]
    assert (parts / "list-000.txt").read_text() == "b.mkv\nbroken.avi\nc.mkv\n"
    _check_out(tmp_path, FIRST)
    assert [f.source for f in read_index(tmp_path / "out.h5").failures] == ["broken.avi"]

    stamps = _stamps(parts, tmp_path / "out.h5", tmp_path / "out.h5.shards")
    again = make()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to be done" in again.stdout or "is up to date" in again.stdout
    assert _built(again) == [] and not _merged(again)
    assert _stamps(parts, tmp_path / "out.h5", tmp_path / "out.h5.shards") == stamps


def test_a_deleted_part_is_rebuilt_alone_and_merged_again(tmp_path, make, videos):
    assert make().returncode == 0
    parts = tmp_path / "out.h5.parts"
    kept = _stamps(parts / "part-001.h5", parts / "part-001.h5.shards", parts / "list-001.txt")
    old_out = _stamps(tmp_path / "out.h5")
    (parts / "part-000.h5").unlink()
    shutil.rmtree(parts / "part-000.h5.shards")

    done = make()
    assert done.returncode == 0, done.stdout + done.stderr
    assert _built(done) == ["out.h5.parts/part-000.h5"] and _merged(done)
    assert _stamps(parts / "part-001.h5", parts / "part-001.h5.shards", parts / "list-001.txt") == kept
    assert _stamps(tmp_path / "out.h5") != old_out
    _check_out(tmp_path, FIRST)
    assert _built(make()) == []


def test_a_new_video_rebuilds_only_the_part_it_falls_in(tmp_path, make, make_video, videos):
    assert make().returncode == 0
    parts = tmp_path / "out.h5.parts"
    kept = _stamps(parts / "part-001.h5", parts / "part-001.h5.shards", parts / "list-001.txt")
    assert part_of("d", 2) == 0
    make_video("d.mkv", frames=8, seed=7)

    done = make()
    assert done.returncode == 0, done.stdout + done.stderr
    assert _built(done) == ["out.h5.parts/part-000.h5"] and _merged(done)
    assert "extracted 1 videos (7 pairs)" in done.stderr and "2 already done" in done.stderr
    assert _stamps(parts / "part-001.h5", parts / "part-001.h5.shards", parts / "list-001.txt") == kept
    _check_out(tmp_path, [*FIRST, "d"])
    assert _built(make()) == []


def test_more_parts_than_videos_still_builds(tmp_path, make, make_video):
    make_video("a.mkv", seed=1)
    make_video("b.mkv", seed=2)
    assert sorted(part_of(v, 4) for v in "ab") == [2, 3]  # parts 0 and 1 are empty
    done = make(shards=4)
    assert done.returncode == 0, done.stdout + done.stderr
    report = verify_store(tmp_path / "out.h5")
    assert report.ok and report.videos == 2


def test_a_failing_part_fails_its_target_only_and_make_again_finishes(tmp_path, make, videos):
    parts = tmp_path / "out.h5.parts"
    parts.mkdir()
    (parts / "part-000.h5").write_text("not a flowkit dataset")  # extract refuses to overwrite it
    done = make(2, "-k")
    assert done.returncode != 0
    assert "not a flowkit file" in done.stderr
    assert verify_store(parts / "part-001.h5").ok  # -k: the other part was built
    assert not (tmp_path / "out.h5").exists()  # the merge needs every part
    (parts / "part-000.h5").unlink()
    again = make()
    assert again.returncode == 0, again.stdout + again.stderr
    assert _built(again) == ["out.h5.parts/part-000.h5"]
    _check_out(tmp_path, FIRST)
