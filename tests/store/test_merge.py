"""Joining datasets made apart (`flowkit merge`) and repacking one (`flowkit split`), on real extractions."""

import os
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowkit.cli import EXIT_BAD_INPUT, cli
from flowkit.errors import StoreError
from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.store.index import read_index
from flowkit.store.merge import MergeReport, merge_datasets, repack
from flowkit.store.reader import FlowStore
from flowkit.store.shards import list_versions
from flowkit.store.verify import verify_store
from flowkit.synth import Motion
from flowkit.video import FrameSize

DIS = ExtractSettings(algorithm="dis", size=FrameSize.keep())


def _extract(videos: Path, out: Path, settings: ExtractSettings = DIS):
    return extract(videos, out, settings, jobs=1, progress=False)


def _shards(index: Path) -> list[Path]:
    return sorted(index.with_name(index.name + ".shards").glob("part-*.h5"))


def _contents(index: Path) -> dict[str, tuple]:
    """Each video as comparable values: its table row, which extraction made it, its stored bytes."""
    out = {}
    with FlowStore(index) as store:
        for video_id in store.ids:
            video = store.video(video_id)
            e = video.entry
            out[video_id] = (
                (e.frames, e.pairs, e.height, e.width, e.fps),
                (video.attrs["source"], video.attrs["extracted_at_ns"]),
                [video.flow_jpeg(i) for i in range(e.pairs)],
                [video.rgb_jpeg(i) for i in range(e.frames)],
            )
    return out


def _files(index: Path) -> dict[str, tuple]:
    """A dataset's index and every file in its shard folder: bytes and mtime."""
    paths = [index, *index.with_name(index.name + ".shards").rglob("*")]
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(paths) if p.is_file()}


def _without_lock(files: dict[str, tuple]) -> dict[str, tuple]:
    """A writer rewrites its `.lock` (its pid) even when it then refuses: everything else counts."""
    return {k: v for k, v in files.items() if not k.endswith(".lock")}


def _verified(index: Path) -> None:
    report = verify_store(index)
    assert report.ok, report.problems


@pytest.fixture
def two_datasets(tmp_path, make_video):
    """Two datasets extracted alike from disjoint video folders: (first, second)."""
    make_video("walk/a.mkv", Motion(dx=1.0), seed=1, folder=tmp_path / "v1")
    make_video("walk/b.mkv", Motion(dy=1.0), frames=5, seed=2, folder=tmp_path / "v1")
    make_video("run/c.mkv", Motion(dx=-1.0), frames=7, seed=3, folder=tmp_path / "v2")
    first, second = tmp_path / "d1.h5", tmp_path / "d2.h5"
    assert _extract(tmp_path / "v1", first).extracted == 2
    assert _extract(tmp_path / "v2", second).extracted == 1
    return first, second


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result, result.output


def _one_line_error(output: str, needle: str) -> None:
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], output


# ---- merge -----------------------------------------------------------------------------------------


def test_merge_of_three_datasets_holds_every_video_byte_for_byte(tmp_path, make_video, two_datasets):
    make_video("jump/d.mkv", Motion(dx=2.0), seed=4, folder=tmp_path / "v3")
    third = tmp_path / "d3.h5"
    _extract(tmp_path / "v3", third)
    inputs = [*two_datasets, third]
    out = tmp_path / "merged.h5"
    report = merge_datasets(out, inputs)
    assert isinstance(report, MergeReport)
    assert (report.inputs, report.videos, report.shards, report.failures, report.problems) == (3, 4, 3, 0, [])
    merged = _contents(out)
    assert sorted(merged) == ["jump/d", "run/c", "walk/a", "walk/b"]
    for index in inputs:
        for video_id, value in _contents(index).items():
            assert merged[video_id] == value, video_id
    _verified(out)
    assert read_index(out).settings == read_index(inputs[0]).settings


def test_merge_hard_links_the_shards_and_leaves_the_inputs_untouched(tmp_path, two_datasets):
    before = {p: _files(p) for p in two_datasets}
    out = tmp_path / "merged.h5"
    report = merge_datasets(out, list(two_datasets))
    assert report.linked == report.shards == 2
    inputs = [s for index in two_datasets for s in _shards(index)]
    merged = _shards(out)
    assert sorted(s.name for s in merged) == sorted(s.name for s in inputs)
    for shard in inputs:  # the same file, not a copy
        assert (out.with_name("merged.h5.shards") / shard.name).stat().st_ino == shard.stat().st_ino
    assert {p: _files(p) for p in two_datasets} == before
    _verified(out)
    for index in two_datasets:
        _verified(index)


@pytest.mark.parametrize(("other", "differs"),
                         [(replace(DIS, bound=10.0), "bound"), (replace(DIS, algorithm="farneback"), "algorithm")])
def test_merge_refuses_other_settings_before_creating_any_file(tmp_path, make_video, two_datasets, other,
                                                               differs):
    first, _ = two_datasets
    make_video("x.mkv", seed=5, folder=tmp_path / "v4")
    odd = tmp_path / "odd.h5"
    _extract(tmp_path / "v4", odd, other)
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "merged.h5"
    with pytest.raises(StoreError, match=f"other settings .*{differs}"):
        merge_datasets(out, [first, odd])
    assert sorted(tmp_path.iterdir()) == before  # no merged.h5, no merged.h5.shards

    result, output = invoke("merge", out, first, odd)
    assert result.exit_code == EXIT_BAD_INPUT
    _one_line_error(output, "other settings")
    assert sorted(tmp_path.iterdir()) == before


def test_merge_refuses_a_missing_input_before_creating_any_file(tmp_path, two_datasets):
    before = sorted(tmp_path.iterdir())
    result, output = invoke("merge", tmp_path / "merged.h5", two_datasets[0], tmp_path / "typo.h5")
    assert result.exit_code == EXIT_BAD_INPUT
    _one_line_error(output, "typo.h5 does not exist")
    assert sorted(tmp_path.iterdir()) == before


def test_a_video_in_two_inputs_keeps_its_newest_copy_whatever_the_order(tmp_path, make_video, two_datasets):
    first, _ = two_datasets
    # walk/a again, other content, extracted later into its own dataset.
    make_video("walk/a.mkv", Motion(dy=-2.0), frames=8, seed=9, folder=tmp_path / "v5")
    newer = tmp_path / "newer.h5"
    _extract(tmp_path / "v5", newer)
    old, new = _contents(first)["walk/a"], _contents(newer)["walk/a"]
    assert new[1][1] > old[1][1] and new[2] != old[2]
    for n, order in enumerate([[first, newer], [newer, first]]):
        out = tmp_path / f"merged-{n}.h5"
        report = merge_datasets(out, order)
        assert report.videos == 2
        merged = _contents(out)
        assert merged["walk/a"] == new and merged["walk/b"] == _contents(first)["walk/b"]
        _verified(out)


def test_failures_of_an_input_are_carried_into_the_merge_and_shown_by_info(tmp_path, make_video):
    make_video("a.mkv", seed=1, folder=tmp_path / "v1")
    (tmp_path / "v1/broken.avi").write_bytes(b"")
    make_video("b.mkv", seed=2, folder=tmp_path / "v2")
    report = _extract(tmp_path / "v1", tmp_path / "d1.h5")
    assert [f.source for f in report.failed] == ["broken.avi"]
    _extract(tmp_path / "v2", tmp_path / "d2.h5")
    out = tmp_path / "merged.h5"

    result, output = invoke("merge", out, tmp_path / "d1.h5", tmp_path / "d2.h5")
    assert result.exit_code == 0, output
    assert "2 videos from 2 datasets, 2 shards (2 linked); 1 failures recorded" in output
    assert [(f.id, f.source) for f in read_index(out).failures] == [("broken", "broken.avi")]

    result, output = invoke("info", out)
    assert result.exit_code == 0
    assert "videos     2" in output and "failures   1" in output
    assert "broken.avi: empty file (0 bytes)" in output


def test_a_failure_fixed_in_an_input_is_cleared_from_the_merge(tmp_path, make_video):
    make_video("a.mkv", seed=1)
    (tmp_path / "videos/broken.avi").write_bytes(b"")
    part, out = tmp_path / "part.h5", tmp_path / "merged.h5"
    _extract(tmp_path / "videos", part)
    assert merge_datasets(out, [part]).failures == 1
    (tmp_path / "videos/broken.avi").unlink()
    make_video("broken.avi", seed=2)  # fixed, then its part redone (extract.mk: `make -B` the part)
    _extract(tmp_path / "videos", part)
    assert read_index(part).failures == []
    merge_datasets(out, [part])
    assert sorted(read_index(out).entries) == ["a", "broken"]
    assert read_index(out).failures == []  # `flowkit info` must not list a video that is there


def test_a_source_that_broke_after_extraction_keeps_its_failure_in_the_merge(tmp_path, make_video):
    source = make_video("a.mkv", seed=1)
    part, out = tmp_path / "part.h5", tmp_path / "merged.h5"
    _extract(tmp_path / "videos", part)
    source.write_bytes(b"")  # broke later: the old copy stays, and the failure is recorded
    _extract(tmp_path / "videos", part)
    assert [f.id for f in read_index(part).failures] == ["a"] and "a" in read_index(part).entries
    merge_datasets(out, [part])
    assert [f.id for f in read_index(out).failures] == ["a"]
    assert "a" in read_index(out).entries


def test_merging_into_an_existing_dataset_of_the_same_settings_adds(tmp_path, two_datasets):
    first, second = two_datasets
    out = tmp_path / "merged.h5"
    assert merge_datasets(out, [first]).videos == 2
    assert sorted(_contents(out)) == ["walk/a", "walk/b"]
    report = merge_datasets(out, [second])
    assert report.videos == 3
    merged = _contents(out)
    assert merged == {**_contents(first), **_contents(second)}
    _verified(out)
    # Merging the same input again changes nothing.
    assert merge_datasets(out, [second]).videos == 3 and _contents(out) == merged


def test_merging_into_a_dataset_of_other_settings_is_refused(tmp_path, make_video, two_datasets):
    first, _ = two_datasets
    make_video("x.mkv", seed=5, folder=tmp_path / "v4")
    odd = tmp_path / "odd.h5"
    _extract(tmp_path / "v4", odd, replace(DIS, bound=10.0))
    out = tmp_path / "merged.h5"
    merge_datasets(out, [first])
    before = _files(out)
    with pytest.raises(StoreError, match="only datasets made alike can be merged"):
        merge_datasets(out, [odd])
    assert _files(out) == before  # refused before the output was opened
    assert sorted(_contents(out)) == ["walk/a", "walk/b"]


# ---- repack (flowkit split) -------------------------------------------------------------------------


@pytest.fixture
def uneven(tmp_path, make_video):
    """One dataset of six videos of 8, 7, 6, 5, 4 and 4 frames in one shard, and a failure."""
    for seed, frames in enumerate([8, 7, 6, 5, 4, 4]):
        make_video(f"v{seed}.mkv", frames=frames, seed=seed)
    (tmp_path / "videos/broken.avi").write_bytes(b"")
    source = tmp_path / "source.h5"
    _extract(tmp_path / "videos", source)
    assert len(_shards(source)) == 1
    return source


def _frames_per_shard(index: Path) -> list[int]:
    return sorted(sum(v.frames for v in list_versions(s)) for s in _shards(index))


@pytest.mark.parametrize(("shards", "loads"), [(2, [17, 17]), (3, [11, 11, 12]), (1, [34])])
def test_repack_writes_n_shards_of_balanced_frames_and_the_same_content(tmp_path, uneven, shards, loads):
    before = _files(uneven)
    out = tmp_path / "repacked.h5"
    report = repack(uneven, out, shards)
    assert (report.shards, report.videos, report.failures) == (shards, 6, 1)
    assert _frames_per_shard(out) == loads
    assert _contents(out) == _contents(uneven)
    assert read_index(out).settings == read_index(uneven).settings
    assert [f.source for f in read_index(out).failures] == ["broken.avi"]
    _verified(out)
    assert _files(uneven) == before  # the source is left as it is


def test_split_command_repacks_and_refuses_a_target_that_holds_shards(tmp_path, uneven):
    out = tmp_path / "repacked.h5"
    result, output = invoke("split", uneven, out, "--shards", "2")
    assert result.exit_code == 0 and "6 videos in 2 shards" in output
    assert len(_shards(out)) == 2
    before = {p: _files(p) for p in (uneven, out)}
    for target in (out, uneven):
        with pytest.raises(StoreError, match="already holds shards"):
            repack(uneven, target, 3)
        result, output = invoke("split", uneven, target, "--shards", "3")
        assert result.exit_code == EXIT_BAD_INPUT
        _one_line_error(output, "already holds shards")
    assert {p: _without_lock(_files(p)) for p in (uneven, out)} == {
        p: _without_lock(f) for p, f in before.items()}


def test_split_into_zero_shards_is_a_one_line_error(tmp_path, uneven):
    out = tmp_path / "repacked.h5"
    for shards in ("0", "-1"):
        result, output = invoke("split", uneven, out, "--shards", shards)
        assert result.exit_code == EXIT_BAD_INPUT
        _one_line_error(output, "--shards must be at least 1")
    assert not out.exists() and not out.with_name("repacked.h5.shards").exists()


def test_repack_into_more_shards_than_videos_writes_one_per_video(tmp_path, two_datasets):
    first, _ = two_datasets
    out = tmp_path / "repacked.h5"
    assert repack(first, out, 5).shards == 2
    assert _frames_per_shard(out) == [5, 6]
    assert _contents(out) == _contents(first)


def test_hard_linked_merge_survives_the_inputs_being_deleted(tmp_path, two_datasets):
    out = tmp_path / "merged.h5"
    merge_datasets(out, list(two_datasets))
    expected = {**_contents(two_datasets[0]), **_contents(two_datasets[1])}
    for index in two_datasets:
        for path in sorted(index.with_name(index.name + ".shards").rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        index.with_name(index.name + ".shards").rmdir()
        os.unlink(index)
    assert _contents(out) == expected
    _verified(out)
