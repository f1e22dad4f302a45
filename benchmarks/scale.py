"""Scaling out: extraction on 1 and 2 workers (processes and Dask), the cost of joining shards
into one index, training on 1 and 2 processes (torchrun), and what they predict for K machines.

    python benchmarks/scale.py [--quick] [--out results.json] [--storage-mbps 1000]

Extraction runs the real clips of ../shared/testdata/videos at flowkit's defaults (short side 256,
TV-L1, engine auto); `--quick` uses synthetic clips and DIS instead. Every configuration starts
from an empty output, so each one pays for its own worker start-up (and torch.compile) as a
real run does. The join cost is measured by merging part datasets of many small videos and by
republishing an index, at two sizes, for a cost per video. Training runs `flowkit train` on the
synthetic action dataset with 1 process and with `torchrun --nproc-per-node 2` (same global batch)
and reads the per-epoch seconds from metrics.csv (the first epoch is left out: warm-up).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowkit.extraction.partition import split_videos  # noqa: E402
from flowkit.extraction.pipeline import ExtractSettings, extract  # noqa: E402
from flowkit.store.dataset import DatasetWriter  # noqa: E402
from flowkit.store.merge import merge_datasets  # noqa: E402
from flowkit.synth import Motion, make_action_dataset, render_frames  # noqa: E402
from flowkit.video import FrameSize, find_videos, write_video  # noqa: E402

VIDEOS = ROOT.parent / "shared" / "testdata" / "videos"


def _shard_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.with_name(out.name + ".shards").glob("part-*.h5"))


def extraction(tmp: Path, quick: bool) -> dict[str, Any]:
    """Pairs/s of one corpus with 1 and 2 worker processes, on one machine and on Dask."""
    if quick:
        videos = tmp / "clips"
        for i in range(8):
            write_video(videos / f"c{i}.mkv", render_frames(Motion(dx=1 + 0.2 * i, rotate=0.3), 40, 320, 240, i), 25)
        settings = ExtractSettings(algorithm="dis", size=FrameSize.keep())
    else:
        videos, settings = VIDEOS, ExtractSettings()
    runs: dict[str, Any] = {}
    for name, options in [("1 process (--jobs 1)", {"jobs": 1}), ("2 processes (--jobs 2)", {"jobs": 2}),
                          ("Dask, 1 worker (--dask local:1)", {"scheduler": "local:1", "task_size": 1}),
                          ("Dask, 2 workers (--dask local:2)", {"scheduler": "local:2", "task_size": 1})]:
        out = tmp / f"extract-{len(runs)}.h5"
        start = time.perf_counter()
        report = extract(videos, out, settings, progress=False, **options)
        seconds = time.perf_counter() - start
        if not report.ok:
            raise RuntimeError(f"{name}: {report.failed}")
        runs[name] = {"seconds": round(seconds, 2), "pairs": report.pairs, "videos": report.extracted,
                      "pairs_per_s": round(report.pairs / seconds, 3),
                      "shard_bytes_per_pair": round(_shard_bytes(out) / report.pairs)}
        print(f"  {name}: {report.pairs} pairs in {seconds:.1f} s = {report.pairs / seconds:.2f} pairs/s", flush=True)
    return runs


def join_cost(tmp: Path, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Seconds to merge part datasets holding N videos, and to republish an index of N videos."""
    folder = tmp / "many"
    for i in range(max(sizes)):
        write_video(folder / f"v{i:05d}.mkv", render_frames(Motion(dx=1.0), 3, 32, 32, i), 25)
    every = find_videos(folder)
    settings = ExtractSettings(algorithm="dis", size=FrameSize.keep(), rgb=False)
    results = {}
    for size in sizes:
        parts = []
        for index, part in enumerate(split_videos(every[:size], 8)):
            listing = tmp / f"list-{size}-{index}.txt"
            listing.write_text("".join(f"{v.relpath}\n" for v in part))
            out = tmp / f"part-{size}-{index}.h5"
            extract(folder, out, settings, list_file=listing, jobs=2, progress=False)
            parts.append(out)
        merged = tmp / f"merged-{size}.h5"
        start = time.perf_counter()
        merge_datasets(merged, parts)
        merge_s = time.perf_counter() - start
        start = time.perf_counter()
        with DatasetWriter(merged) as dataset:
            dataset.reindex()
        reindex_s = time.perf_counter() - start
        results[str(size)] = {"merge_s": round(merge_s, 3), "reindex_s": round(reindex_s, 3)}
        print(f"  {size} videos in 8 parts: merge {merge_s:.2f} s, index republished in {reindex_s:.2f} s", flush=True)
    small, large = sizes[0], sizes[-1]
    per_video = (results[str(large)]["reindex_s"] - results[str(small)]["reindex_s"]) / (large - small)
    results["reindex_ms_per_video"] = round(per_video * 1000, 4)
    return results


def _epoch_seconds(metrics: Path) -> list[float]:
    with open(metrics, newline="") as handle:
        return [float(row["seconds"]) for row in csv.DictReader(handle)]


NETWORKS = [("tiny TSN (loader-bound)", "tiny"), ("ResNet-18 TSN (compute-bound)", "resnet18")]
PROCESSES = ["1 process, 1 thread", "1 process, 2 threads", "2 processes (torchrun), 1 thread each"]


def training(tmp: Path, epochs: int) -> dict[str, Any]:
    """Samples/s of `flowkit train` (TSN flow stream, a loader-bound and a compute-bound backbone)
    with 1 process and with 2 (torchrun)."""
    data = tmp / "actions"
    make_action_dataset(data / "videos", videos_per_class=16, test_per_class=4, frames=12, size=112)
    extract(data / "videos", data / "out.h5", ExtractSettings(algorithm="dis", size=FrameSize.keep()),
            jobs=2, progress=False)
    train_videos = 8 * 12
    args = ["-m", "flowkit", "train", "--modality", "flow", "--data", str(data / "out.h5"),
            "--labels", str(data / "videos/splits"), "--pipeline", str(ROOT / "pipelines/demo.toml"),
            "--set", "crop_size=96", "--set", "workers=0", "--set", f"flow.epochs={epochs}",
            "--set", "eval_every=0", "-q"]
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    results: dict[str, Any] = {}
    for network, backbone in NETWORKS:
        results[network] = {}
        for name, launcher, threads in zip(PROCESSES, [[sys.executable], [sys.executable],
                                                       [torchrun, "--standalone", "--nproc-per-node", "2"]],
                                           ["1", "2", "1"], strict=True):
            out = tmp / f"run-{backbone}-{len(results[network])}"
            done = subprocess.run([*launcher, *args, "--backbone", backbone, "--out", str(out)], capture_output=True,
                                  text=True, env={**os.environ, "OMP_NUM_THREADS": threads}, cwd=ROOT)
            if done.returncode:
                raise RuntimeError(f"{network}, {name}: {done.stderr[-2000:]}")
            seconds = _epoch_seconds(out / "flow/metrics.csv")[1:]
            rate = train_videos * len(seconds) / sum(seconds)
            results[network][name] = {"epoch_seconds": seconds, "samples_per_s": round(rate, 2)}
            print(f"  {network}, {name}: {rate:.1f} samples/s", flush=True)
        results[network]["2_vs_1"] = round(results[network][PROCESSES[2]]["samples_per_s"]
                                           / results[network][PROCESSES[1]]["samples_per_s"], 3)
    return results


def predict_machines(extraction_runs: dict[str, Any], join: dict[str, Any], storage_mbps: float,
                     videos: int, pairs_per_video: float, task_size: int = 16) -> dict[str, Any]:
    """Hours for `videos` on K machines like this one (2 Dask workers each). The model: K times
    the measured rate of one machine, until the shared storage is full (each pair is written
    staged, read back and written into a shard); plus the tail (the last task, which one worker
    finishes alone) and one final index of every video."""
    run = extraction_runs["Dask, 2 workers (--dask local:2)"]
    rate = run["pairs_per_s"]
    io_per_pair = 3 * run["shard_bytes_per_pair"]
    storage_limit = storage_mbps * 1e6 / io_per_pair
    index_s = join["reindex_ms_per_video"] / 1000 * videos
    tail_s = task_size * pairs_per_video / (rate / 2)
    rows = []
    for machines in (1, 4, 16, 64, 256, 1024, 4096):
        effective = min(machines * rate, storage_limit)
        seconds = videos * pairs_per_video / effective + tail_s + index_s
        rows.append({"machines": machines, "pairs_per_s": round(effective, 1),
                     "bound": "storage" if storage_limit < machines * rate else "compute",
                     "hours": round(seconds / 3600, 2)})
    for row in rows:
        row["speedup"] = round(rows[0]["hours"] / row["hours"], 1)
        row["efficiency"] = round(row["speedup"] / row["machines"], 3)
    return {"videos": videos, "pairs_per_video": pairs_per_video, "machine_pairs_per_s": rate,
            "io_bytes_per_pair": io_per_pair, "storage_mbps": storage_mbps,
            "storage_bound_machines": round(storage_limit / rate), "tail_s": round(tail_s),
            "final_index_s": round(index_s), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="synthetic clips and DIS, fewer epochs")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--storage-mbps", type=float, default=1000.0,
                        help="shared storage bandwidth (MB/s) assumed for the K-machine prediction")
    parser.add_argument("--sections", nargs="+", default=["extraction", "join", "training"],
                        choices=["extraction", "join", "training"], help="what to measure [default: all]")
    parser.add_argument("--predict-from", type=Path, default=None,
                        help="only redo the K-machine prediction from an earlier --out file")
    args = parser.parse_args()
    if args.predict_from:
        results = json.loads(args.predict_from.read_text())
        results["prediction_kinetics"] = predict_machines(results["extraction"], results["join"],
                                                          args.storage_mbps, 300_000, 250)
        print(json.dumps(results["prediction_kinetics"], indent=1))
        if args.out:
            args.out.write_text(json.dumps(results, indent=1) + "\n")
        return
    results: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, "
                                          f"{os.cpu_count()} cores, Python {platform.python_version()}"}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if "extraction" in args.sections:
            print("extraction:", flush=True)
            results["extraction"] = extraction(tmp, args.quick)
        if "join" in args.sections:
            print("joining shards into one index:", flush=True)
            results["join"] = join_cost(tmp, (100, 400) if args.quick else (200, 800))
        if "training" in args.sections:
            print("training:", flush=True)
            results["training"] = training(tmp, 3 if args.quick else 5)
    if "extraction" in results:
        runs = results["extraction"]
        results["extraction_2_vs_1"] = {
            "processes": round(runs["2 processes (--jobs 2)"]["pairs_per_s"]
                               / runs["1 process (--jobs 1)"]["pairs_per_s"], 3),
            "dask": round(runs["Dask, 2 workers (--dask local:2)"]["pairs_per_s"]
                          / runs["Dask, 1 worker (--dask local:1)"]["pairs_per_s"], 3),
            "dask_2_vs_processes_2": round(runs["Dask, 2 workers (--dask local:2)"]["pairs_per_s"]
                                           / runs["2 processes (--jobs 2)"]["pairs_per_s"], 3),
        }
        if "join" in results:  # Kinetics-400: about 300,000 clips of 10 s at 25 fps
            results["prediction_kinetics"] = predict_machines(runs, results["join"], args.storage_mbps,
                                                              300_000, 250)
    print(json.dumps({k: v for k, v in results.items() if k not in ("extraction", "join")}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
