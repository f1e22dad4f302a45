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
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from flowkit.errors import FlowkitError
from flowkit.extraction.pipeline import ExtractSettings, VideoOutcome, extract_video
from flowkit.store.format import canonical_settings
from flowkit.store.layout import TASKS_FOLDER, TMP_SUFFIX
from flowkit.store.shards import ShardWriter, list_versions
from flowkit.video import VideoFile


def task_name(videos: list[VideoFile], settings_json: str) -> str:
    """The same for a rerun of the same task, so that it finds what the first attempt finished."""
    digest = hashlib.sha1(settings_json.encode())
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
        try:
            stat = video.path.stat()
        except OSError:
            stat = None
        if earlier is not None and stat is not None and earlier.is_current(settings_json, stat.st_size, stat.st_mtime_ns):
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
def dask_client(scheduler: str) -> Iterator[Any]:
    """A client of the scheduler at `scheduler` (tcp://host:port), or of a cluster of N local
    worker processes started for the run (`local:N`)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise FlowkitError("Dask is not installed: pip install 'flowkit[dask]'") from None
    workers = local_workers(scheduler)
    if workers is not None:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
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


def run_tasks(client: Any, todo: list[VideoFile], shard_dir: Path, settings: ExtractSettings,
              task_size: int) -> Iterator[VideoOutcome]:
    """Submit `todo` in tasks of `task_size` videos; yield every video's outcome as tasks end."""
    from dask.distributed import as_completed

    settings_json = canonical_settings(settings.fingerprint)
    batches = [todo[i : i + task_size] for i in range(0, len(todo), task_size)]
    futures = [
        client.submit(extract_task, batch, shard_dir, settings, task_name(batch, settings_json),
                      pure=False, retries=3, key=f"flowkit-extract-{task_name(batch, settings_json)}")
        for batch in batches
    ]
    try:
        for future in as_completed(futures):
            yield from future.result()
    finally:
        for future in futures:
            future.cancel()
    with suppress(OSError):
        (Path(shard_dir) / TASKS_FOLDER).rmdir()  # every task removed its own folder
