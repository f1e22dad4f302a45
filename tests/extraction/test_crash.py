"""Crash safety for real: `flowkit extract` processes killed with SIGKILL mid-run, then resumed.

Each run is killed at a moment chosen by watching its files: while a video is being staged, the
instant a shard or the index starts to be written, or a little after a video is published. After
every kill the dataset must open and verify; after a final run it must equal an uninterrupted one.
"""

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py

from flowkit.extraction.pipeline import ExtractSettings, extract
from flowkit.store.shards import list_versions
from flowkit.store.verify import verify_store
from flowkit.synth import Motion
from flowkit.video import FrameSize

SETTINGS = ["--algorithm", "dis", "--no-resize"]


def _start(videos: Path, out: Path, jobs: int) -> subprocess.Popen:
    # A shard size of 1 KB packs after every video, so there are many shard and index writes to hit.
    command = [sys.executable, "-m", "flowkit", "extract", str(videos), str(out), *SETTINGS,
               "--quiet", "--shard-size", "0.001", "--jobs", str(jobs)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _snapshot(out: Path) -> tuple:
    shards = out.with_name(out.name + ".shards")
    return (
        sorted(p.name for p in shards.glob("part-*")),
        sorted(p.name for p in shards.glob("staging/*")),
        sorted(p.name for p in out.parent.glob(out.name + "*.tmp")),
        out.stat().st_mtime_ns if out.exists() else 0,
    )


def _triggers(out: Path) -> list[tuple[str, Callable[[tuple, tuple], bool]]]:
    return [
        ("staging a video", lambda old, new: any(n.endswith(".tmp") for n in new[1])),
        ("writing a shard", lambda old, new: new[0] != old[0]),
        ("writing the index", lambda old, new: bool(new[2]) or new[3] != old[3]),
        ("after a video", lambda old, new: new[1] != old[1] and not any(n.endswith(".tmp") for n in new[1])),
    ]


def _assert_consistent(out: Path) -> None:
    """After any kill: every published file opens, and every video the index links verifies."""
    shards = out.with_name(out.name + ".shards")
    for path in [*shards.glob("part-*.h5"), *shards.glob("staging/*.h5")]:
        list_versions(path)  # raises if a published file is not a readable shard
    if out.exists():
        with h5py.File(out, "r") as handle:
            assert "index" in handle
        report = verify_store(out)
        assert report.ok, report.problems


def test_killed_runs_resume_to_a_bit_identical_result(tmp_path, make_video, assert_same_videos):
    videos = tmp_path / "videos"
    for i in range(8):
        motion = Motion(dx=1.0 + 0.2 * i, rotate=0.3 * i)
        make_video(f"v{i}.mkv", motion, frames=10, width=320, height=240, seed=i)
    reference = tmp_path / "reference.h5"
    extract(videos, reference, ExtractSettings(algorithm="dis", size=FrameSize.keep()),
            jobs=1, progress=False)

    out = tmp_path / "out.h5"
    triggers = _triggers(out)
    killed_while = []
    for attempt in range(12):
        name, fired = triggers[attempt % len(triggers)]
        old = _snapshot(out)
        process = _start(videos, out, jobs=1 + attempt % 2)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if fired(old, _snapshot(out)):
                break
        if process.poll() is not None:
            assert process.returncode == 0, process.stderr.read().decode()
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_while.append(name)
        _assert_consistent(out)
    assert len(set(killed_while)) == len(triggers), f"not every moment was hit: {killed_while}"

    final = _start(videos, out, jobs=2)
    _, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr.decode()
    assert verify_store(out).ok

    assert_same_videos(reference, out)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
