"""Joining datasets made elsewhere (other machines, make targets, Dask tasks) and repacking one.

`merge_datasets` gathers the shards of several datasets under one index: the shard files are
hard-linked into the output's shard folder (copied where the file system cannot link), so a
merge costs no copy of the data on one file system and leaves the inputs untouched.
`repack` writes a dataset's live videos into N new shards of about equal size.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from flowkit.errors import StoreError
from flowkit.store.dataset import DatasetWriter
from flowkit.store.failures import FailureRecord, clear_failure, read_failures, record_failure
from flowkit.store.format import canonical_settings
from flowkit.store.index import read_index
from flowkit.store.layout import DatasetLayout
from flowkit.store.reader import FlowStore
from flowkit.store.shards import ShardWriter, list_versions


@dataclass
class MergeReport:
    """What a merge or repack did."""

    inputs: int = 0
    shards: int = 0
    videos: int = 0
    linked: int = 0  # shard files hard-linked rather than copied
    failures: int = 0
    problems: list[str] = field(default_factory=list)


def _link_or_copy(source: Path, target: Path) -> bool:
    """Hard-link `source` to `target` (True), or copy it when linking is impossible (False)."""
    if target.exists():
        if target.stat().st_ino == source.stat().st_ino or target.stat().st_size == source.stat().st_size:
            return True  # already there: shard names are unique, and shards never change
        raise StoreError(f"{target} exists and differs from {source}")
    try:
        os.link(source, target)
        return True
    except OSError:
        tmp = target.with_name(target.name + ".copy.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return False


def merge_datasets(output: str | Path, inputs: list[str | Path]) -> MergeReport:
    """Join the datasets `inputs` into `output` (new, or an existing dataset with the same
    settings). All must have been made with the same settings (algorithm, parameters, bound,
    size...): anything else is refused before a file is touched. A video in several inputs
    keeps its newest copy."""
    if not inputs:
        raise StoreError("merge needs at least one dataset to join")
    paths = [Path(p) for p in inputs]
    settings = [read_index(p).settings for p in paths]
    first = canonical_settings(settings[0])
    existing = [(Path(output), read_index(output).settings)] if Path(output).exists() else []
    for path, other in [*zip(paths[1:], settings[1:], strict=True), *existing]:
        if canonical_settings(other) != first:
            changed = sorted(k for k in settings[0].keys() | other.keys() if settings[0].get(k) != other.get(k))
            raise StoreError(f"{path} was made with other settings than {paths[0]} ({', '.join(changed)} "
                             "differ); only datasets made alike can be merged")
    report = MergeReport(inputs=len(paths))
    with DatasetWriter(output) as dataset:
        dataset.adopt_settings(settings[0])
        for path in paths:
            contents = read_index(path)
            shards = sorted({path.parent / e.shard for e in contents.entries.values()})
            for shard in shards:
                if shard.parent.resolve() == dataset.layout.shard_dir.resolve():
                    continue  # merging a dataset into itself
                report.linked += _link_or_copy(shard, dataset.layout.shard_dir / shard.name)
                report.shards += 1
            for failure in read_failures(DatasetLayout(path)):
                _keep_newer_failure(dataset.layout, failure)
        _clear_fixed_failures(dataset.layout, dataset.live_versions(include_staged=False))
        live = dataset.reindex()
        report.videos = len(live)
        report.failures = len(read_failures(dataset.layout))
        report.problems = list(dataset.problems)
    return report


def _keep_newer_failure(layout: DatasetLayout, failure: FailureRecord) -> None:
    """Record `failure` unless the output holds a newer failure of the same source."""
    held = {f.source: f for f in read_failures(layout)}.get(failure.source)
    if held is None or held.time_ns <= failure.time_ns:
        record_failure(layout, failure)


def _clear_fixed_failures(layout: DatasetLayout, live: dict) -> None:
    """Newest wins for failures too: a failure is dropped when a copy of its source was extracted
    after it (fixed since, elsewhere or in a redone part), kept when the copy is older (the source
    broke after it was extracted)."""
    for failure in read_failures(layout):
        version = live.get(failure.id)
        if version is not None and version.source == failure.source and version.extracted_at_ns > failure.time_ns:
            clear_failure(layout, failure.source)


def repack(source: str | Path, output: str | Path, shards: int) -> MergeReport:
    """Write the live videos of `source` into `shards` new shards of about equal size, as the
    new dataset `output` (the source is left as it is)."""
    if shards < 1:
        raise StoreError(f"--shards must be at least 1, not {shards}")
    contents = read_index(source)
    with FlowStore(source) as store:
        versions = [(vid, store.shard_path(e.shard)) for vid, e in store.entries.items()]
    report = MergeReport(inputs=1)
    with DatasetWriter(output) as dataset:
        if dataset.layout.shard_paths():
            raise StoreError(f"{output} already holds shards; repack into a new dataset")
        dataset.adopt_settings(contents.settings)
        by_file: dict[Path, dict] = {}
        for _, file in versions:
            if file not in by_file:
                by_file[file] = {v.id: v for v in list_versions(file)}
        live = [by_file[file][vid] for vid, file in versions]
        sizes = {v.id: v.frames for v in live}  # frames: a fair proxy of a video's bytes
        bins: list[list] = [[] for _ in range(min(shards, max(len(live), 1)))]
        loads = [0] * len(bins)
        for version in sorted(live, key=lambda v: -sizes[v.id]):
            i = loads.index(min(loads))
            bins[i].append(version)
            loads[i] += sizes[version.id]
        for group in bins:
            if not group:
                continue
            writer = ShardWriter(dataset.layout.shard_dir)
            try:
                for version in sorted(group, key=lambda v: v.id):
                    writer.add(version)
                writer.commit()
            except BaseException:
                writer.abort()
                raise
            report.shards += 1
        for failure in contents.failures:
            record_failure(dataset.layout, failure)
        report.videos = len(dataset.reindex())
        report.failures = len(contents.failures)
    return report
