"""Extraction benchmark: throughput against pure OpenCV TV-L1, peak memory, storage options.

What it measures, on the real clips in `../shared/testdata/videos` (synthetic videos written with
flowkit.synth when that folder is absent), at flowkit's default size (short side 256) and default
TV-L1 parameters:

1. Throughput, side by side in one run: pure OpenCV TV-L1 pairs/s on frames decoded beforehand
   (N processes x 1 thread, and 1 process x N threads), against `flowkit.extraction.pipeline.extract` end to
   end (decode + flow + quantize + JPEG + HDF5 write + shard packing) with jobs=N and jobs=1.
2. Peak RSS of `python -m flowkit extract` against video length (synthetic 340x256 videos of
   30 s, 2 min and 10 min), each run in its own subprocess under a wrapper that reports
   `ru_maxrss` of its children. DIS stands in for TV-L1 there: memory does not depend on the
   engine, and 15000 TV-L1 pairs would take hours.
3. Storage: bytes per flow pair, EPE against the float flow (clipped to the bound) and read+decode
   time for raw uint8 (deflate 1/4/6/9, lzf), JPEG q90/95/100 and PNG code images; RGB as JPEG
   q95 against raw deflate 4; and the dataset of section 1 on disk (blocks and file counts)
   against the same videos exported as mmaction2 rawframes, extrapolated to UCF101.

Run it from the project root:

    python benchmarks/extract.py --quick                          # a smoke run, about a minute
    python benchmarks/extract.py --out /tmp/bench_extract.json    # the full run (about 20 min, 2 cores)
    python benchmarks/extract.py --section memory                 # one section (repeatable)

It prints markdown tables and writes every figure to the JSON file given with `--out`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
from report import emit, md_table  # benchmarks/report.py

from flowkit.extraction.pipeline import ExtractSettings, available_cores, extract
from flowkit.flow.engines import FlowEngine, create_engine
from flowkit.flow.metrics import endpoint_error
from flowkit.flow.quantize import DEFAULT_BOUND, dequantize_flow, quantize_flow
from flowkit.rawframes import export_rawframes
from flowkit.store.codec import decode_jpeg, encode_jpeg
from flowkit.store.dataset import DEFAULT_SHARD_BYTES
from flowkit.store.format import BYTES_ATTR, RGB
from flowkit.store.reader import FlowStore
from flowkit.synth import Motion, render_frames, write_video
from flowkit.video import FrameSize, VideoReader, find_videos

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VIDEOS = PROJECT_ROOT.parent / "shared" / "testdata" / "videos"
MB = 1 << 20

QUICK_FRAMES = 12  # --quick: frames kept of each video in section 1
QUICK_VIDEOS = 2
MEMORY_FRAMES = {"30 s": 750, "2 min": 3000, "10 min": 15000}
QUICK_MEMORY_FRAMES = {"30 s": 50, "2 min": 200, "10 min": 400}
MEMORY_SIZE = (340, 256)
MEMORY_FPS = 25.0
# A slow rotation stays textured at any length: rendered translations freeze once the shift
# passes a few hundred pixels (the frames stop changing), which would make long videos trivial.
MEMORY_MOTION = Motion(rotate=0.25)
STORAGE_PAIRS = 24  # per UCF101 clip
QUICK_STORAGE_PAIRS = 4
READ_PASSES = 3  # read timings: the best of this many passes over all pairs
UCF101_VIDEOS = 13_320
UCF101_MEAN_FRAMES = 186
SECTIONS = ("throughput", "memory", "storage")


# ---- small helpers ------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        mem_kb = int(next(line for line in handle if line.startswith("MemTotal")).split()[1])
    return {
        "cores": available_cores(),
        "cpu": model,
        "ram_gib": round(mem_kb / (1 << 20), 1),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "loadavg_start": list(os.getloadavg()),
    }


def disk_usage(paths: Sequence[Path]) -> dict[str, int]:
    """Regular files and folders under `paths`: count, bytes (st_size) and disk bytes (blocks)."""
    usage = {"files": 0, "dirs": 0, "bytes": 0, "disk_bytes": 0}

    def add_file(path: Path) -> None:
        stat = path.stat()
        usage["files"] += 1
        usage["bytes"] += stat.st_size
        usage["disk_bytes"] += stat.st_blocks * 512

    for path in paths:
        if path.is_file():
            add_file(path)
            continue
        for dirpath, _dirnames, filenames in os.walk(path):
            usage["dirs"] += 1
            for name in filenames:
                add_file(Path(dirpath) / name)
    return usage


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its descendants)."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    machine = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
    parent: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        rest = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parent[pid] = int(rest[1])
        times[pid] = sum(int(x) for x in rest[11:15])  # utime stime cutime cstime
    ours = {os.getpid()}
    grew = True
    while grew:
        found = {pid for pid, ppid in parent.items() if ppid in ours} - ours
        ours |= found
        grew = bool(found)
    return machine / tick, sum(times.get(pid, 0) for pid in ours) / tick


def with_load(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`run()`'s figures plus the cores it used and the cores everything else used meanwhile.

    The machine may be shared: `other_cores` is the average number of cores busy with processes
    outside this benchmark's tree while `run` ran (from /proc/stat, less this tree's CPU time).
    """
    machine0, ours0 = cpu_seconds()
    start = time.perf_counter()
    result = run()
    wall = time.perf_counter() - start
    machine1, ours1 = cpu_seconds()
    own = ours1 - ours0
    return {**result, "own_cores": own / wall,
            "other_cores": max(0.0, (machine1 - machine0 - own) / wall)}


# ---- the videos ---------------------------------------------------------------------------------


def trimmed_copies(source: Path, dest: Path, frames: int, videos: int) -> Path:
    """The first `frames` frames of the first `videos` videos, as lossless FFV1 .mkv copies."""
    for video in find_videos(source)[:videos]:
        reader = VideoReader(video.path, FrameSize.keep())
        kept = [frame for _, frame in zip(range(frames), reader, strict=False)]
        target = dest / Path(video.relpath).with_suffix(".mkv")
        write_video(target, iter(kept), fps=reader.source_fps)
    return dest


def synthetic_videos(dest: Path, frames: int, videos: int) -> Path:
    """Stand-ins for the real clips: 320x240 MJPG videos with camera motion."""
    motions = [Motion(dx=2.0), Motion(dy=1.5), Motion(rotate=1.5), Motion(zoom=1.01)]
    for i in range(videos):
        write_video(dest / f"synthetic_{i}.avi",
                    render_frames(motions[i % len(motions)], frames, 320, 240, seed=i))
    return dest


def prepare_videos(source: Path, quick: bool, tmp: Path) -> tuple[Path, str]:
    """The folder section 1 extracts, and a line saying what it holds."""
    if source.is_dir() and find_videos(source):
        if quick:
            folder = trimmed_copies(source, tmp / "trimmed", QUICK_FRAMES, QUICK_VIDEOS)
            return folder, f"first {QUICK_FRAMES} frames of {QUICK_VIDEOS} videos of {source} (FFV1 copies)"
        return source, f"real clips in {source}"
    frames, count = (QUICK_FRAMES, QUICK_VIDEOS) if quick else (100, 3)
    folder = synthetic_videos(tmp / "synthetic", frames, count)
    return folder, f"{count} synthetic 320x240 videos of {frames} frames ({source} is absent)"


def decode_gray(folder: Path, size: FrameSize) -> list[tuple[str, list[np.ndarray]]]:
    """Every video's frames as grayscale uint8 at `size`, decoded up front."""
    decoded = []
    for video in find_videos(folder):
        frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in VideoReader(video.path, size)]
        decoded.append((video.id, frames))
    return decoded


# ---- 1. throughput ------------------------------------------------------------------------------

_WORKER: dict[str, FlowEngine] = {}


def _pool_init(backend: str, warmup: tuple[np.ndarray, np.ndarray]) -> None:
    """One engine per worker, one thread; the torch engine compiles on `warmup`, untimed."""
    cv2.setNumThreads(1)
    engine = create_engine("tvl1", backend=backend, device="cpu")
    engine.set_threads(1)
    engine.calc(*warmup)
    _WORKER["engine"] = engine


def _pool_ready(_: int) -> None:
    time.sleep(0.5)  # long enough that every worker takes one: all are started and initialised


def _pool_flow(task: tuple[int, np.ndarray, np.ndarray]) -> tuple[int, float]:
    index, prev, nxt = task
    start = time.process_time()  # CPU seconds: another tenant's load does not inflate them
    _WORKER["engine"].calc(prev, nxt)
    return index, time.process_time() - start


def _pair_tasks(videos: list[tuple[str, list[np.ndarray]]]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    for index, (_, frames) in enumerate(videos):
        for prev, nxt in itertools.pairwise(frames):
            yield index, prev, nxt


def pure_processes(videos: list[tuple[str, list[np.ndarray]]], workers: int, backend: str) -> dict[str, Any]:
    """TV-L1 over every pair with `workers` processes of one thread each (Pool over pairs).

    The clock starts once every worker is up with its engine built (and compiled); per-video
    CPU seconds (one thread) are returned too, for the load-balance estimate.
    """
    pairs = sum(len(frames) - 1 for _, frames in videos)
    per_video = [0.0] * len(videos)
    warmup = (videos[0][1][0], videos[0][1][1])
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_pool_init,
                                                   initargs=(backend, warmup)) as pool:
        pool.map(_pool_ready, range(workers), chunksize=1)
        start = time.perf_counter()
        for index, seconds in pool.imap_unordered(_pool_flow, _pair_tasks(videos), chunksize=1):
            per_video[index] += seconds
        wall = time.perf_counter() - start
    return {"workers": workers, "threads": 1, "pairs": pairs, "seconds": wall,
            "pairs_per_s": pairs / wall, "video_compute_s": per_video}


def pure_threads(videos: list[tuple[str, list[np.ndarray]]], threads: int, backend: str) -> dict[str, Any]:
    """TV-L1 over every pair in this process with `threads` threads (after one untimed pair)."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        engine = create_engine("tvl1", backend=backend, device="cpu")
        engine.set_threads(threads)
        engine.calc(videos[0][1][0], videos[0][1][1])
        pairs = 0
        start = time.perf_counter()
        for _, prev, nxt in _pair_tasks(videos):
            engine.calc(prev, nxt)
            pairs += 1
        wall = time.perf_counter() - start
    finally:
        cv2.setNumThreads(previous)
    return {"workers": 1, "threads": threads, "pairs": pairs, "seconds": wall, "pairs_per_s": pairs / wall}


def end_to_end(folder: Path, output: Path, jobs: int, backend: str) -> dict[str, Any]:
    """`flowkit.extraction.pipeline.extract` with default settings into a fresh output, timed from outside.

    Worker start-up is inside the clock, torch.compile included (from a warm on-disk cache).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    settings = ExtractSettings(engine=backend, device="cpu")
    report = extract(folder, output, settings, jobs=jobs, progress=False)
    wall = time.perf_counter() - start
    if not report.ok:
        raise RuntimeError(f"extraction with jobs={jobs} failed: {report.failed} {report.problems}")
    return {"jobs": jobs, "videos": report.extracted, "pairs": report.pairs, "seconds": wall,
            "pairs_per_s": report.pairs / wall, "output": str(output)}


def video_granularity_ceiling(costs: Sequence[float], workers: int) -> dict[str, float]:
    """How close whole-video scheduling can come to pair-level scheduling, from per-video costs.

    joblib hands videos out in order to whichever worker is free (greedy list scheduling); its
    makespan against the perfect split (total / workers) bounds the end-to-end ratio from above.
    """
    free = [0.0] * workers
    for cost in costs:
        slot = free.index(min(free))
        free[slot] += cost
    makespan, perfect = max(free), sum(costs) / workers
    return {"makespan_s": makespan, "perfect_split_s": perfect, "ceiling": perfect / makespan}


def throughput_section(folder: Path, described: str, cores: int, tmp: Path,
                       backend: str) -> tuple[dict[str, Any], str]:
    start = time.perf_counter()
    videos = decode_gray(folder, FrameSize())
    decode_s = time.perf_counter() - start
    processes = with_load(lambda: pure_processes(videos, cores, backend))
    threads = with_load(lambda: pure_threads(videos, cores, backend))
    best = max((processes, threads), key=lambda r: r["pairs_per_s"])
    e2e = with_load(lambda: end_to_end(folder, tmp / f"e2e_{backend}_jobsN" / "out.h5", cores, backend))
    e2e_one = with_load(lambda: end_to_end(folder, tmp / f"e2e_{backend}_jobs1" / "out.h5", 1, backend))
    ceiling = video_granularity_ceiling(processes["video_compute_s"], cores)
    result = {
        "engine": backend,
        "videos": described,
        "video_count": len(videos),
        "pairs": processes["pairs"],
        "sizes": sorted({f"{frames[0].shape[1]}x{frames[0].shape[0]}" for _, frames in videos}),
        "per_video": [{"id": vid, "pairs": len(frames) - 1, "cpu_s_1thread": cost}
                      for (vid, frames), cost in zip(videos, processes["video_compute_s"], strict=True)],
        "decode_s": decode_s,
        "pure_processes": processes,
        "pure_threads": threads,
        "pure_best": {k: best[k] for k in ("workers", "threads", "pairs_per_s")},
        "end_to_end": e2e,
        "end_to_end_jobs1": e2e_one,
        "ratio": e2e["pairs_per_s"] / best["pairs_per_s"],
        "ratio_jobs1_vs_threads": e2e_one["pairs_per_s"] / threads["pairs_per_s"],
        "video_granularity": ceiling,
        "target_ratio": 0.90,
    }
    pure = {"opencv": "pure OpenCV TV-L1", "torch": "pure torch TV-L1 (compiled)"}[backend]
    named = [
        (f"{pure}, {cores} processes x 1 thread", processes, ""),
        (f"{pure}, 1 process x {cores} threads", threads, ""),
        (f"flowkit extract --engine {backend}, jobs={cores}", e2e, f"{result['ratio']:.3f} of pure best"),
        (f"flowkit extract --engine {backend}, jobs=1", e2e_one,
         f"{result['ratio_jobs1_vs_threads']:.3f} of 1 x {cores} threads"),
    ]
    rows = [[name, f"{r['pairs_per_s']:.3f}", f"{r['seconds']:.1f}", f"{r['own_cores']:.2f}",
             f"{r['other_cores']:.2f}", ratio] for name, r, ratio in named]
    text = "\n".join([
        f"## 1. Throughput, {backend} engine (TV-L1, default parameters, short side 256)",
        "",
        f"{described}: {len(videos)} videos, {processes['pairs']} pairs, sizes {', '.join(result['sizes'])}; "
        f"{cores} cores. The pure runs use frames decoded beforehand ({decode_s:.1f} s, not counted) "
        "and start the clock after each worker's first (compiling) pair.",
        "",
        md_table(["what", "pairs/s", "wall s", "cores used", "other tenants' cores", "ratio"], rows),
        "",
        "Cores used: this benchmark's CPU seconds / wall time; other tenants': the rest of the "
        "machine's busy CPU meanwhile (the machine is shared).",
        "",
        f"End to end / pure best: **{result['ratio']:.3f}** (target >= 0.90: "
        f"{'met' if result['ratio'] >= 0.90 else 'not met'}).",
        f"Whole-video scheduling of these {len(videos)} videos on {cores} workers (greedy, in order, "
        f"from the measured single-thread CPU seconds per video) allows at most "
        f"{ceiling['ceiling']:.3f} of pair-level throughput "
        f"(makespan {ceiling['makespan_s']:.1f} s against a perfect split of {ceiling['perfect_split_s']:.1f} s).",
    ])
    return result, text


# ---- 2. peak memory -----------------------------------------------------------------------------

_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(rc)\n"
)


def peak_rss(command: Sequence[str]) -> dict[str, Any]:
    """Run `command` under a wrapper process; its children's peak RSS (Linux reports KiB)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, *command],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("peak_rss_kb ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    kib = int(lines[-1].split()[1])
    return {"peak_rss_mb": kib / 1024, "seconds": wall}


def memory_run(frames: int, tmp: Path) -> dict[str, Any]:
    """Write one synthetic video of `frames` frames, extract it with DIS in a subprocess, clean up."""
    folder = tmp / f"memory_{frames}"
    video = folder / "videos" / f"synthetic_{frames}.avi"
    start = time.perf_counter()
    width, height = MEMORY_SIZE
    write_video(video, render_frames(MEMORY_MOTION, frames, width, height), fps=MEMORY_FPS)
    write_s = time.perf_counter() - start
    output = folder / "out.h5"
    command = [sys.executable, "-m", "flowkit", "extract", str(video.parent), str(output),
               "--algorithm", "dis", "-p", "preset=ultrafast", "--no-resize", "-q", "-j", "1"]
    measured = with_load(lambda: peak_rss(command))
    with FlowStore(output) as store:
        stored = next(iter(store.entries.values()))
        stored_frames = stored.frames
    usage = disk_usage([output, output.with_name(output.name + ".shards")])
    result = {"frames": frames, "stored_frames": stored_frames, "video_bytes": video.stat().st_size,
              "output_bytes": usage["bytes"], "write_video_s": write_s, **measured}
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()
    return result


def memory_section(quick: bool, tmp: Path) -> tuple[dict[str, Any], str]:
    lengths = QUICK_MEMORY_FRAMES if quick else MEMORY_FRAMES
    floor = peak_rss([sys.executable, "-c", "import flowkit.cli, flowkit.extraction.pipeline, flowkit.store.reader"])
    runs = {label: memory_run(frames, tmp) for label, frames in lengths.items()}
    longest = runs[list(lengths)[-1]]["peak_rss_mb"]
    shortest = runs[next(iter(lengths))]["peak_rss_mb"]
    result = {"import_floor_mb": floor["peak_rss_mb"], "runs": runs, "target_mb": 500,
              "growth_mb": longest - shortest}
    rows = [[label, r["frames"], r["stored_frames"], f"{r['peak_rss_mb']:.1f}", f"{r['seconds']:.1f}",
             f"{r['frames'] / r['seconds']:.0f}", f"{r['output_bytes'] / MB:.1f}",
             f"{r['output_bytes'] / r['frames'] / 1024:.1f}"] for label, r in runs.items()]
    rows.append(["(imports only)", "", "", f"{floor['peak_rss_mb']:.1f}", f"{floor['seconds']:.1f}", "", "", ""])
    width, height = MEMORY_SIZE
    text = "\n".join([
        "## 2. Peak memory against video length",
        "",
        f"Synthetic {width}x{height} MJPG videos at {MEMORY_FPS:g} fps ({MEMORY_MOTION.rotate:g} degree "
        "rotation per frame), each extracted in its own "
        "subprocess: `python -m flowkit extract DIR OUT --algorithm dis -p preset=ultrafast "
        "--no-resize -q -j 1`; peak RSS = `ru_maxrss` of a wrapper's children. DIS instead of "
        "TV-L1: memory does not depend on the engine, and 15000 TV-L1 pairs would take hours.",
        "",
        md_table(["length", "frames", "stored", "peak RSS MB", "wall s", "frames/s", "output MB",
                  "output KB/frame"], rows),
        "",
        f"Longest against shortest: {result['growth_mb']:+.1f} MB; target under about 500 MB for "
        f"10 minutes, flat with length: {'met' if longest < 500 and abs(result['growth_mb']) < 50 else 'not met'}"
        + (" (quick mode: shorter videos than the target speaks of)" if quick else "") + ".",
    ])
    return result, text


# ---- 3. storage ---------------------------------------------------------------------------------


def storage_clips(source: Path, fallback: Path) -> list[Path]:
    """The UCF101 clips of the real data, or the first two videos of whatever is extracted."""
    if source.is_dir():
        ucf = [v.path for v in find_videos(source) if v.relpath.startswith("ucf101/")]
        if ucf:
            return ucf
    return [v.path for v in find_videos(fallback)[:2]]


def clip_flow(paths: Sequence[Path], pairs: int, threads: int) -> dict[str, Any]:
    """TV-L1 float flow of the first `pairs` pairs of each clip, with its BGR frames and codes."""
    engine = create_engine("tvl1")
    engine.set_threads(threads)
    flows, frames, ids = [], [], []
    for path in paths:
        reader = VideoReader(path, FrameSize())
        clip = [frame for _, frame in zip(range(pairs + 1), reader, strict=False)]
        gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in clip]
        flows += [engine.calc(a, b) for a, b in itertools.pairwise(gray)]
        frames += clip
        ids += [(path, i) for i in range(len(clip) - 1)]
    clipped = [np.clip(f, -DEFAULT_BOUND, DEFAULT_BOUND) for f in flows]
    codes = [np.moveaxis(quantize_flow(f, DEFAULT_BOUND), -1, 0) for f in flows]
    return {"flows": flows, "clipped": clipped, "codes": codes, "frames": frames, "pairs": ids}


def mean_epe(decoded: Sequence[np.ndarray], clipped: Sequence[np.ndarray]) -> float:
    """Mean over pairs of the EPE of decoded (2, H, W) codes against the clipped float flow."""
    return statistics.fmean(
        endpoint_error(np.moveaxis(dequantize_flow(c, DEFAULT_BOUND), 0, -1), f)
        for c, f in zip(decoded, clipped, strict=True)
    )


def best_pass_seconds(read_all: Callable[[], None]) -> float:
    times = []
    for _ in range(READ_PASSES):
        start = time.perf_counter()
        read_all()
        times.append(time.perf_counter() - start)
    return min(times)


def raw_flow_option(codes: Sequence[np.ndarray], clipped: Sequence[np.ndarray], path: Path,
                    filter_opts: dict[str, Any]) -> dict[str, Any]:
    """Codes as a chunked uint8 (N, 2, H, W) dataset, one pair per chunk, read back pair by pair."""
    n = len(codes)
    shape = codes[0].shape
    start = time.perf_counter()
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("flow", shape=(n, *shape), chunks=(1, *shape),
                                        dtype=np.uint8, **filter_opts)
        for i, pair in enumerate(codes):
            dataset[i] = pair
        stored = dataset.id.get_storage_size()
    write_s = time.perf_counter() - start
    decoded: list[np.ndarray] = []
    with h5py.File(path, "r", rdcc_nbytes=0) as handle:  # no chunk cache: every read decompresses
        dataset = handle["flow"]
        read_s = best_pass_seconds(lambda: [dataset[i] for i in range(n)])
        decoded = [dataset[i] for i in range(n)]
    return {"bytes_per_pair": stored / n, "epe": mean_epe(decoded, clipped),
            "encode_ms": write_s / n * 1000, "read_ms": read_s / n * 1000}


def image_flow_option(codes: Sequence[np.ndarray], clipped: Sequence[np.ndarray], path: Path,
                      ext: str, params: list[int]) -> dict[str, Any]:
    """u and v code images as files (JPEG or PNG) in a variable-length (N, 2) dataset, as flowkit."""
    n = len(codes)
    start = time.perf_counter()
    files = [[cv2.imencode(ext, plane, params)[1].ravel() for plane in pair] for pair in codes]
    encode_s = time.perf_counter() - start
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("flow", shape=(n, 2), chunks=(min(64, n), 2),
                                        dtype=h5py.vlen_dtype(np.uint8))
        for i, (u_file, v_file) in enumerate(files):
            row = np.empty((1, 2), dtype=object)
            row[0, 0], row[0, 1] = u_file, v_file
            dataset[i : i + 1] = row

    def read_pair(dataset: h5py.Dataset, i: int) -> np.ndarray:
        u_file, v_file = dataset[i]
        return np.stack([cv2.imdecode(u_file, cv2.IMREAD_GRAYSCALE),
                         cv2.imdecode(v_file, cv2.IMREAD_GRAYSCALE)])

    with h5py.File(path, "r") as handle:
        dataset = handle["flow"]
        read_s = best_pass_seconds(lambda: [read_pair(dataset, i) for i in range(n)])
        decoded = [read_pair(dataset, i) for i in range(n)]
    payload = sum(f.size for pair in files for f in pair)
    return {"bytes_per_pair": payload / n, "epe": mean_epe(decoded, clipped),
            "encode_ms": encode_s / n * 1000, "read_ms": read_s / n * 1000}


def flow_options(clips: dict[str, Any], tmp: Path) -> dict[str, dict[str, Any]]:
    codes, clipped = clips["codes"], clips["clipped"]
    options: dict[str, dict[str, Any]] = {}
    for level in (1, 4, 6, 9):
        options[f"raw deflate {level}"] = raw_flow_option(
            codes, clipped, tmp / f"raw_{level}.h5", {"compression": "gzip", "compression_opts": level})
    options["raw lzf"] = raw_flow_option(codes, clipped, tmp / "raw_lzf.h5", {"compression": "lzf"})
    for quality in (90, 95, 100):
        options[f"jpeg q{quality}"] = image_flow_option(
            codes, clipped, tmp / f"jpeg_{quality}.h5", ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])
    options["png"] = image_flow_option(codes, clipped, tmp / "png.h5", ".png", [])
    return options


def rgb_options(frames: Sequence[np.ndarray], tmp: Path) -> dict[str, dict[str, Any]]:
    """BGR frames as JPEG q95 files (flowkit) against a raw uint8 deflate-4 dataset."""
    n = len(frames)
    start = time.perf_counter()
    files = [encode_jpeg(f, 95) for f in frames]
    jpeg_encode_s = time.perf_counter() - start
    read_s = best_pass_seconds(lambda: [decode_jpeg(f) for f in files])
    jpeg = {"bytes_per_frame": sum(f.size for f in files) / n, "encode_ms": jpeg_encode_s / n * 1000,
            "read_ms": read_s / n * 1000}
    path = tmp / "rgb_raw.h5"
    start = time.perf_counter()
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("rgb", shape=(n, *frames[0].shape), chunks=(1, *frames[0].shape),
                                        dtype=np.uint8, compression="gzip", compression_opts=4)
        for i, frame in enumerate(frames):
            dataset[i] = frame
        stored = dataset.id.get_storage_size()
    raw_encode_s = time.perf_counter() - start
    with h5py.File(path, "r", rdcc_nbytes=0) as handle:
        dataset = handle["rgb"]
        raw_read_s = best_pass_seconds(lambda: [dataset[i] for i in range(n)])
    raw = {"bytes_per_frame": stored / n, "encode_ms": raw_encode_s / n * 1000,
           "read_ms": raw_read_s / n * 1000}
    return {"jpeg q95": jpeg, "raw deflate 4": raw}


def stored_matches_denseflow(store_path: Path, clips: dict[str, Any], source: Path) -> dict[str, int]:
    """Pairs whose JPEG files in the extracted dataset equal a fresh q95 encode of the same flow."""
    checked = equal = 0
    with FlowStore(store_path) as store:
        for (path, i), pair in zip(clips["pairs"], clips["codes"], strict=True):
            video_id = path.relative_to(source).with_suffix("").as_posix() if source in path.parents else ""
            if video_id not in store:
                continue
            stored = store.video(video_id).flow_jpeg(i)
            fresh = tuple(encode_jpeg(plane, 95).tobytes() for plane in pair)
            checked += 1
            equal += stored == fresh
    return {"checked": checked, "byte_identical": equal}


def payload_bytes(store_path: Path, prefix: str = "") -> dict[str, int]:
    """Encoded bytes of flow and RGB and frame count, over videos whose id starts with `prefix`."""
    totals = {"flow": 0, "rgb": 0, "frames": 0, "pairs": 0, "videos": 0}
    with FlowStore(store_path) as store:
        for video_id in store.ids:
            if not video_id.startswith(prefix):
                continue
            video = store.video(video_id)
            totals["flow"] += int(video.flow.attrs[BYTES_ATTR])
            totals["rgb"] += int(video.group[RGB].attrs[BYTES_ATTR])
            totals["frames"] += video.entry.frames
            totals["pairs"] += video.flow.shape[0]
            totals["videos"] += 1
    return totals


def on_disk_comparison(store_path: Path, tmp: Path) -> dict[str, Any]:
    """The extracted dataset against the same videos exported as rawframes folders."""
    raw_dir = tmp / "rawframes"
    exported = export_rawframes(store_path, raw_dir)
    flowkit = disk_usage([store_path, store_path.with_name(store_path.name + ".shards")])
    rawframes = disk_usage([raw_dir])
    raw_flow_files = [p for p in raw_dir.rglob("flow_*.jpg")]
    raw_flow = {"files": len(raw_flow_files),
                "bytes": sum(p.stat().st_size for p in raw_flow_files),
                "disk_bytes": sum(p.stat().st_blocks * 512 for p in raw_flow_files)}
    payload = payload_bytes(store_path)
    return {"videos": exported.exported, "frames": exported.frames, "pairs": exported.pairs,
            "flowkit": flowkit, "rawframes": rawframes, "rawframes_flow": raw_flow,
            "flowkit_payload": payload,
            "file_ratio": rawframes["files"] / flowkit["files"],
            "disk_ratio": rawframes["disk_bytes"] / flowkit["disk_bytes"]}


def ucf101_extrapolation(store_path: Path, disk: dict[str, Any]) -> dict[str, Any]:
    """File counts for all of UCF101 from the measured bytes per frame of 342x256 clips."""
    ucf = payload_bytes(store_path, "ucf101/")
    basis = ucf if ucf["videos"] else disk["flowkit_payload"]
    payload_per_frame = (basis["flow"] + basis["rgb"]) / basis["frames"]
    all_payload = disk["flowkit_payload"]["flow"] + disk["flowkit_payload"]["rgb"]
    shard_disk = disk["flowkit"]["disk_bytes"] - Path(store_path).stat().st_blocks * 512
    overhead = shard_disk / all_payload  # HDF5 structure and block rounding around the JPEG bytes
    total = UCF101_VIDEOS * UCF101_MEAN_FRAMES * payload_per_frame * overhead
    shards = math.ceil(total / DEFAULT_SHARD_BYTES)
    bookkeeping = 3  # out.h5, settings.json, .lock
    raw_files = UCF101_VIDEOS * (UCF101_MEAN_FRAMES + 2 * (UCF101_MEAN_FRAMES - 1)) + 2
    return {"videos": UCF101_VIDEOS, "mean_frames": UCF101_MEAN_FRAMES,
            "basis": "ucf101 clips" if ucf["videos"] else "all extracted clips",
            "payload_bytes_per_frame": payload_per_frame, "shard_overhead": overhead,
            "flowkit_bytes": total, "flowkit_shards": shards, "flowkit_files": shards + bookkeeping,
            "rawframes_files": raw_files, "file_ratio": raw_files / (shards + bookkeeping),
            "target_ratio": 1000}


def storage_section(source: Path, fallback: Path, store_path: Path, quick: bool, cores: int,
                    tmp: Path) -> tuple[dict[str, Any], str]:
    pairs = QUICK_STORAGE_PAIRS if quick else STORAGE_PAIRS
    paths = storage_clips(source, fallback)
    clips = clip_flow(paths, pairs, cores)
    folder = tmp / "storage"
    folder.mkdir()
    flow = flow_options(clips, folder)
    rgb = rgb_options(clips["frames"], folder)
    identical = stored_matches_denseflow(store_path, clips, source)
    disk = on_disk_comparison(store_path, tmp)
    ucf = ucf101_extrapolation(store_path, disk)
    height, width = clips["codes"][0].shape[1:]
    raw4, jpeg95 = flow["raw deflate 4"], flow["jpeg q95"]
    result = {"clips": [str(p) for p in paths], "pairs": len(clips["codes"]), "size": f"{width}x{height}",
              "flow": flow, "rgb": rgb, "jpeg95_vs_stored": identical, "on_disk": disk, "ucf101": ucf,
              "default": "jpeg q95 (u/v code images); raw uint8 deflate 4 with --flow-format raw"}
    return result, storage_text(result, raw4, jpeg95)


def storage_text(result: dict[str, Any], raw4: dict[str, Any], jpeg95: dict[str, Any]) -> str:
    flow_rows = [[name, f"{o['bytes_per_pair']:.0f}", f"{o['bytes_per_pair'] / raw4['bytes_per_pair']:.2f}",
                  f"{o['epe']:.4f}", f"{o['encode_ms']:.2f}", f"{o['read_ms']:.2f}"]
                 for name, o in result["flow"].items()]
    rgb_rows = [[name, f"{o['bytes_per_frame']:.0f}", f"{o['encode_ms']:.2f}", f"{o['read_ms']:.2f}"]
                for name, o in result["rgb"].items()]
    disk, ucf = result["on_disk"], result["ucf101"]
    fk, rf, rff = disk["flowkit"], disk["rawframes"], disk["rawframes_flow"]
    disk_rows = [
        ["flowkit (index + shards + bookkeeping)", fk["files"], fk["dirs"], f"{fk['bytes'] / MB:.2f}",
         f"{fk['disk_bytes'] / MB:.2f}"],
        ["rawframes folders (+ 2 list files)", rf["files"], rf["dirs"], f"{rf['bytes'] / MB:.2f}",
         f"{rf['disk_bytes'] / MB:.2f}"],
        ["  of which flow_x/flow_y files", rff["files"], "", f"{rff['bytes'] / MB:.2f}",
         f"{rff['disk_bytes'] / MB:.2f}"],
        ["  flowkit's flow JPEG bytes (inside shards)", "", "",
         f"{disk['flowkit_payload']['flow'] / MB:.2f}", ""],
    ]
    same = result["jpeg95_vs_stored"]
    pairs = max(1, disk["pairs"])
    flowkit_flow = disk["flowkit_payload"]["flow"] * ucf["shard_overhead"] / pairs
    no_larger = flowkit_flow <= rff["disk_bytes"] / pairs
    identical = (f"{same['byte_identical']} of {same['checked']} pairs checked" if same["checked"]
                 else "no pair checked (the clips of this table are not in the dataset of section 1)")
    return "\n".join([
        "## 3. Storage",
        "",
        f"TV-L1 flow of {len(result['clips'])} clips, first {result['pairs']} pairs in all, {result['size']}; "
        "EPE in pixels against the float flow clipped to +-20; bytes are encoded payload per pair; "
        f"read = HDF5 read + decode, best of {READ_PASSES} passes, from the page cache.",
        "",
        md_table(["flow option", "bytes/pair", "vs raw deflate 4", "EPE px", "encode ms", "read ms"], flow_rows),
        "",
        md_table(["RGB option", "bytes/frame", "encode ms", "decode ms"], rgb_rows),
        "",
        f"flowkit's stored flow files equal a fresh JPEG q95 encode of the same codes (what "
        f"denseflow writes) for {identical}.",
        "",
        f"On disk: the dataset of section 1 ({disk['videos']} videos, {disk['frames']} frames, "
        f"{disk['pairs']} pairs) against `export_rawframes` of it.",
        "",
        md_table(["layout", "files", "folders", "MB (st_size)", "MB on disk (blocks)"], disk_rows),
        "",
        f"Files: {disk['file_ratio']:.0f}x fewer for these clips. UCF101 ({ucf['videos']} videos x "
        f"{ucf['mean_frames']} frames): {ucf['rawframes_files']:,} rawframe files against "
        f"{ucf['flowkit_files']} ({ucf['flowkit_shards']} shards of 1 GiB, "
        f"{ucf['flowkit_bytes'] / (1 << 30):.1f} GiB) = {ucf['file_ratio']:,.0f}x fewer "
        f"(target 1000x: {'met' if ucf['file_ratio'] >= 1000 else 'not met'}).",
        f"Default: {result['default']}: {jpeg95['bytes_per_pair'] / raw4['bytes_per_pair']:.2f}x the bytes "
        f"of raw deflate 4 for {jpeg95['epe'] - raw4['epe']:+.4f} px EPE. Stored flow no larger than "
        f"denseflow's JPEG rawframes for no more error: "
        f"{'met' if no_larger and same['checked'] and same['checked'] == same['byte_identical'] else 'not shown'} "
        f"(the same files, so the same error; on disk {flowkit_flow:.0f} B/pair in shards, counting "
        f"the shards' {ucf['shard_overhead']:.3f}x of HDF5 structure over their JPEG bytes, against "
        f"{rff['disk_bytes'] / pairs:.0f} B/pair for the flow_x/flow_y files, "
        f"{rff['bytes'] / pairs:.0f} B/pair before block rounding).",
    ])


# ---- the run ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (about a minute on 2 cores)")
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS,
                        help="folder of real videos (default: ../shared/testdata/videos)")
    parser.add_argument("--out", type=Path, default=None, help="write every figure to this JSON file")
    parser.add_argument("--engine", action="append", choices=("opencv", "torch"), default=None,
                        help="TV-L1 engine(s) for the throughput section (repeatable) [default: both]")
    parser.add_argument("--section", action="append", choices=SECTIONS, default=None,
                        help="run only this section (repeatable; storage needs throughput's dataset, "
                             "so it runs throughput too) [default: all]")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sections = set(args.section or SECTIONS)
    if "storage" in sections:
        sections.add("throughput")
    started = time.perf_counter()
    cores = available_cores()
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine_info(),
    }
    emit(f"# flowkit extraction benchmark{' (quick)' if args.quick else ''}\n")
    emit(md_table(["machine", ""], [[k, v] for k, v in results["machine"].items()]) + "\n")
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if "throughput" in sections:
            folder, described = prepare_videos(args.videos, args.quick, tmp)
            results["throughput"] = {}
            for backend in args.engine or ("opencv", "torch"):
                results["throughput"][backend], text = throughput_section(
                    folder, described, cores, tmp, backend)
                emit(text + "\n")
        if "memory" in sections:
            results["memory"], text = memory_section(args.quick, tmp)
            emit(text + "\n")
        if "storage" in sections:
            first = next(iter(results["throughput"].values()))
            store_path = Path(first["end_to_end"]["output"])
            results["storage"], text = storage_section(args.videos, folder, store_path, args.quick, cores, tmp)
            emit(text + "\n")
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["total_seconds"] = time.perf_counter() - started
    emit(f"Total: {results['total_seconds']:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
        emit(f"Figures: {args.out}")


if __name__ == "__main__":
    main()
