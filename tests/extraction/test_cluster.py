"""Extraction on a real Dask cluster of worker processes, one of them killed in the middle of a task."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.store.layout import DatasetLayout
from flowkit.store.reader import FlowStore
from flowkit.store.shards import list_versions
from flowkit.store.verify import verify_store
from flowkit.synth import Motion
from flowkit.video import FrameSize

distributed = pytest.importorskip("dask.distributed")

SETTINGS = ExtractSettings(algorithm="dis", size=FrameSize.keep())


def _videos(make_video, count: int, frames: int) -> Path:
    for i in range(count):
        path = make_video(f"v{i}.mkv", Motion(dx=1.0 + 0.3 * i, rotate=0.2 * i), frames=frames,
                          width=320, height=240, seed=i)
    return path.parent


def _one_machine_reference(videos: Path, tmp_path: Path) -> Path:
    """The same videos extracted by one process, to compare a cluster's result with."""
    reference = tmp_path / "reference.h5"
    extract(videos, reference, SETTINGS, jobs=1, progress=False)
    return reference


def _kill_a_worker_mid_task(client, tasks: Path, kept: Path, run: threading.Thread) -> dict:
    """Wait until a task has finished a video but not the task, copy that video aside, SIGKILL
    the worker running the task; returns {task: copied file} for the task killed, or {} when the
    run ended first."""
    while run.is_alive():
        for finished in sorted(tasks.glob("*/*.h5")):
            task = finished.parent.name
            try:
                copy = kept / f"{task}-{finished.name}"
                shutil.copyfile(finished, copy)
                list_versions(copy, staged=True)
            except (OSError, Exception):  # the task packed its shard and removed its folder
                continue
            key = f"flowkit-extract-{task}-"  # then the run's token
            running = [worker for worker, keys in client.processing().items()
                       if any(str(k).startswith(key) for k in keys)]
            if not running or not finished.exists():
                continue
            os.kill(client.run(os.getpid, workers=running)[running[0]], signal.SIGKILL)
            return {task: copy}
        time.sleep(0.01)
    return {}


def test_killed_worker_loses_only_its_task_and_the_result_equals_one_machine(
        tmp_path, make_video, assert_same_videos):
    videos = _videos(make_video, count=8, frames=40)
    reference = _one_machine_reference(videos, tmp_path)

    out = tmp_path / "out.h5"
    kept = tmp_path / "kept"
    kept.mkdir()
    tasks = DatasetLayout(out).tasks_dir
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        result: dict = {}
        runner = threading.Thread(target=lambda: result.update(report=extract(
            videos, out, SETTINGS, scheduler=cluster.scheduler_address, task_size=4, progress=False)))
        runner.start()
        killed = _kill_a_worker_mid_task(client, tasks, kept, runner)
        runner.join(timeout=300)
    assert killed, "no worker was killed in the middle of a task"
    report = result["report"]
    assert report.extracted == 8 and not report.failed

    assert verify_store(out).ok
    assert_same_videos(reference, out)
    assert not tasks.exists()
    # The rerun of the killed task kept the video its first attempt had finished.
    (copy,) = killed.values()
    (earlier,) = list_versions(copy, staged=True)
    with FlowStore(out) as store:
        assert store.video(earlier.id).attrs["extracted_at_ns"] == earlier.extracted_at_ns
        shards = {store.entries[video_id].shard for video_id in store.ids}
    assert len(shards) == 2  # one shard per task of four videos


def test_resume_on_the_cluster_skips_complete_videos(tmp_path, make_video):
    videos = _videos(make_video, count=3, frames=4)
    out = tmp_path / "out.h5"
    first = extract(videos, out, SETTINGS, scheduler="local:2", task_size=1, progress=False)
    assert first.extracted == 3
    make_video("v3.mkv", Motion(dy=1.0), frames=4, width=320, height=240, seed=3)
    second = extract(videos, out, SETTINGS, scheduler="local:2", task_size=1, progress=False)
    assert (second.extracted, second.skipped) == (1, 3)
    assert verify_store(out).ok
    with FlowStore(out) as store:
        assert store.ids == ["v0", "v1", "v2", "v3"]


def test_cli_extracts_on_a_local_cluster_and_records_failures(tmp_path, make_video):
    videos = _videos(make_video, count=2, frames=4)
    (videos / "broken.mp4").write_text("not a video")
    out = tmp_path / "out.h5"
    command = [sys.executable, "-m", "flowkit", "extract", str(videos), str(out), "--algorithm", "dis",
               "--no-resize", "--dask", "local:2", "--task-size", "1", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # 1: finished, some videos failed
    assert "broken.mp4" in done.stderr
    info = subprocess.run([sys.executable, "-m", "flowkit", "info", str(out)], capture_output=True,
                          text=True, timeout=60)
    assert "broken.mp4" in info.stdout
    assert verify_store(out).ok


@pytest.mark.parametrize("address, message", [
    ("local:x", "expected local:N"),
    ("local:0", "at least one worker"),
    ("nowhere", "expected a scheduler address"),
    ("tcp://127.0.0.1:9", "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
])
def test_cli_bad_cluster_address_is_one_line(tmp_path, make_video, address, message):
    videos = _videos(make_video, count=1, frames=3)
    command = [sys.executable, "-m", "flowkit", "extract", str(videos), str(tmp_path / "out.h5"),
               "--dask", address]
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.h5").exists()


def test_a_killed_client_leaves_finished_task_videos_that_the_next_run_publishes(
        tmp_path, make_video, assert_same_videos):
    videos = _videos(make_video, count=6, frames=40)
    reference = _one_machine_reference(videos, tmp_path)
    out = tmp_path / "out.h5"
    tasks = DatasetLayout(out).tasks_dir
    command = [sys.executable, "-m", "flowkit", "extract", str(videos), str(out), "--algorithm", "dis",
               "--no-resize", "--dask", "local:2", "--task-size", "3", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline, finished = time.monotonic() + 120, []
    while process.poll() is None and time.monotonic() < deadline and not finished:
        finished = sorted(tasks.glob("*/*.h5"))
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # the client, its scheduler and its workers at once
    process.wait()
    assert finished, "no task had finished a video before the run ended"
    left = sorted(tasks.glob("*/*.h5"))
    earlier = {v.id: v.extracted_at_ns for path in left for v in list_versions(path, staged=True)}
    assert earlier  # a task was killed with finished videos in its folder

    report = extract(videos, out, SETTINGS, jobs=1, progress=False)
    assert report.ok
    assert not tasks.exists()
    assert verify_store(out).ok
    assert_same_videos(reference, out)
    with FlowStore(out) as store:  # what the killed run's tasks had finished was kept, not redone
        assert all(store.video(i).attrs["extracted_at_ns"] == ns for i, ns in earlier.items())


def test_two_runs_sharing_a_scheduler_each_end_with_all_their_videos(
        tmp_path, make_video, assert_same_videos):
    """Two `flowkit extract` processes of the same videos into different outputs, at once, on one
    scheduler: task keys hold the output and a run token, so neither run takes the other's results
    (issue 15: the second run printed "extracted 2 videos ... 0 failed" and held 0 videos)."""
    videos = _videos(make_video, count=4, frames=6)
    reference = _one_machine_reference(videos, tmp_path)
    outputs = [tmp_path / "a.h5", tmp_path / "b.h5"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        runs = [subprocess.Popen(
            [sys.executable, "-m", "flowkit", "extract", str(videos), str(out), "--algorithm", "dis",
             "--no-resize", "--dask", cluster.scheduler_address, "--task-size", "2", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for out in outputs]
        done = [run.communicate(timeout=240) for run in runs]
    for out, run, (_, stderr) in zip(outputs, runs, done, strict=True):
        assert run.returncode == 0, stderr
        assert "extracted 4 videos" in stderr, stderr
        assert_same_videos(reference, out)
        assert verify_store(out).ok


def test_quiet_local_cluster_prints_the_summary_only(tmp_path, make_video):
    """`--dask local:N -q` prints one line: no "Worker process still alive" warnings of Dask's."""
    videos = _videos(make_video, count=2, frames=4)
    command = [sys.executable, "-m", "flowkit", "extract", str(videos), str(tmp_path / "out.h5"),
               "--algorithm", "dis", "--no-resize", "--dask", "local:2", "--task-size", "1", "-q"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "extracted 2 videos" in lines[0], done.stderr
