"""Extraction on a Dask cluster: tasks of videos, each packed into a shard of its own.

Every task extracts its videos into a staging folder of its own (beside the shards, on storage
all workers share), then packs them into one new shard and removes the folder. The process that
runs `flowkit extract` holds the dataset's lock, records each video's outcome as tasks finish,
and republishes the index from the shards. A worker killed mid-task loses only that task's
unfinished videos: Dask reruns the task, which keeps the videos its first attempt finished.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkit.errors import FlowkitError
from flowkit.extraction.settings import ExtractSettings
from flowkit.extraction.worker import VideoOutcome, extract_video
from flowkit.store.format import canonical_settings
from flowkit.store.layout import TASKS_FOLDER, TMP_SUFFIX
from flowkit.store.shards import ShardWriter, is_current, list_versions, source_signature
from flowkit.video import VideoFile


def task_name(videos: list[VideoFile], settings_json: str, shard_dir: Path) -> str:
    """The same for a rerun of the same task into the same output, so that it finds what the first
    attempt finished; different for another output, whose tasks are other work."""
    digest = hashlib.sha1(str(Path(shard_dir).resolve()).encode() + b"\0" + settings_json.encode())
    for video in videos:
        digest.update(video.id.encode() + b"\0")
    return digest.hexdigest()[:16]


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def allocate_like_a_plain_process() -> None:
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's
    adaptive mmap threshold: every frame-sized tensor is then mmapped and unmapped anew, and the
    TV-L1 engines run at half speed (0.44 s against 0.21 s a pair, measured). Set the thresholds
    an ordinary process settles at instead. No-op where the C library has no mallopt."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 64 << 20)
    except (OSError, AttributeError, TypeError):
        pass


def extract_task(videos: list[VideoFile], shard_dir: Path, settings: ExtractSettings, name: str) -> list[VideoOutcome]:
    """One Dask task: extract `videos`, pack them into one new shard, return their outcomes."""
    allocate_like_a_plain_process()
    work = Path(shard_dir) / TASKS_FOLDER / name
    work.mkdir(parents=True, exist_ok=True)
    for leftover in work.glob(f"*{TMP_SUFFIX}"):  # a killed attempt's half-written video
        leftover.unlink()
    settings_json = canonical_settings(settings.fingerprint)
    finished = {v.id: v for path in work.glob("*.h5") for v in list_versions(path, staged=True)}
    outcomes = []
    for video in videos:
        earlier = finished.get(video.id)
        if is_current(earlier, settings_json, source_signature(video.path)):
            outcomes.append(VideoOutcome(video.id, video.relpath, True, earlier.frames, earlier.pairs,
                                         staged=False))
            continue
        outcome = extract_video(video, work, settings, threads=1)
        outcome.staged = False
        outcomes.append(outcome)
    versions = [v for path in sorted(work.glob("*.h5")) for v in list_versions(path, staged=True)]
    if versions:
        writer = ShardWriter(Path(shard_dir))
        try:
            for version in versions:
                writer.add(version)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    shutil.rmtree(work, ignore_errors=True)
    return outcomes


def local_workers(scheduler: str) -> int | None:
    """N for `local:N` (a cluster of N local worker processes), None for a scheduler's address;
    raises FlowkitError for an address that is neither."""
    if not scheduler.startswith("local:"):
        if ":" not in scheduler:
            raise FlowkitError(f"--dask {scheduler!r}: expected a scheduler address (tcp://host:port) "
                               "or local:N")
        return None
    try:
        workers = int(scheduler.split(":", 1)[1])
    except ValueError:
        raise FlowkitError(f"--dask {scheduler!r}: expected local:N, N worker processes") from None
    if workers < 1:
        raise FlowkitError("--dask local:N needs at least one worker")
    return workers


@contextmanager
def dask_client(scheduler: str, quiet: bool = False) -> Iterator[Any]:
    """A client of the scheduler at `scheduler` (tcp://host:port), or of a cluster of N local
    worker processes started for the run (`local:N`); `quiet` keeps Dask's own warnings (such
    as a closing nanny's "Worker process still alive") off the terminal."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise FlowkitError("Dask is not installed: pip install 'flowkit[dask]'") from None
    workers = local_workers(scheduler)
    if workers is not None:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None,
                          silence_logs=logging.ERROR if quiet else logging.WARNING) as cluster, \
                Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler)  # waits distributed.comm.timeouts.connect (Dask's config: 30 s)
    except OSError as exc:
        raise FlowkitError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        yield client
    finally:
        client.close()


@dataclass
class DaskRunner:
    """Extracts videos on a Dask cluster in tasks of `task_size`, each packed into a shard of its
    own in `shard_dir`; a peer of the local runner: both yield one outcome per video.

    A task's key holds its name (output, settings and videos) and this run's token: two runs that
    share a scheduler never share a task, while a rerun after a crash reuses the task folders, and
    so the videos, that the killed run finished."""

    client: Any
    shard_dir: Path
    settings: ExtractSettings
    task_size: int
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def outcomes(self, todo: list[VideoFile], on_pairs: Callable[[int], None]) -> Iterator[VideoOutcome]:
        """Every video's outcome as its task ends; `on_pairs` hears each finished video's pairs."""
        from dask.distributed import as_completed

        settings = self.settings.compiling_for(todo)
        settings_json = canonical_settings(settings.fingerprint)
        batches = [todo[i : i + self.task_size] for i in range(0, len(todo), self.task_size)]
        futures = []
        for batch in batches:
            name = task_name(batch, settings_json, self.shard_dir)
            futures.append(self.client.submit(
                extract_task, batch, self.shard_dir, settings, name,
                pure=False, retries=3, key=f"flowkit-extract-{name}-{self.token}"))
        try:
            for future in as_completed(futures):
                for outcome in future.result():
                    if outcome.ok:
                        on_pairs(outcome.pairs)
                    yield outcome
        finally:
            for future in futures:
                future.cancel()
        with suppress(OSError):
            (Path(self.shard_dir) / TASKS_FOLDER).rmdir()  # every task removed its own folder
