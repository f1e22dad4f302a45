"""TV-L1 accuracy and speed: OpenCV's DualTVL1OpticalFlow against flowkit's torch engine.

    python benchmarks/tvl1.py [--quick] [--out results.json]

1. Accuracy: average endpoint error on the Middlebury pairs (RubberWhale, Dimetrodon, Venus) and
   Yosemite from ../shared/testdata (unknown pixels left out), and on two synthetic pairs with
   large motion (known flow), for OpenCV's defaults and the torch engine's four presets; plus
   the mean distance between OpenCV's and the torch engine's outputs at equal parameters.
2. Speed on the CPU: pairs/s at 342x256 on the same real frame pairs (UCF101 clips), for OpenCV
   (N processes x 1 thread, and 1 process x N threads) against the torch engine (compiled and
   eager, both layouts, each preset). Each worker first computes one pair untimed (for the torch
   engine that includes torch.compile), then the timed pairs.
3. On a CUDA device, when there is one: pairs/s against batch size.

Prints markdown tables and writes every figure to JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowkit.flow.engines import create_engine  # noqa: E402
from flowkit.flow.flo import read_flo  # noqa: E402
from flowkit.flow.metrics import endpoint_error  # noqa: E402
from flowkit.synth import Motion, render_frames  # noqa: E402
from flowkit.video import FrameSize, VideoReader  # noqa: E402

SHARED = ROOT.parent / "shared" / "testdata"
PRESETS = ("default", "fast", "accurate", "denseflow")


# ---- data ----------------------------------------------------------------------------------------


def accuracy_pairs() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, frame 1, frame 2, true flow): Middlebury, Yosemite, and two large synthetic motions."""
    pairs = []
    for name in ("RubberWhale", "Dimetrodon", "Venus"):
        folder = SHARED / "flow/middlebury" / name
        if folder.is_dir():
            pairs.append((name, cv2.imread(str(folder / "gray/frame10.png"), 0),
                          cv2.imread(str(folder / "gray/frame11.png"), 0), read_flo(folder / "flow10.flo")))
    yosemite = SHARED / "flow/yosemite"
    if yosemite.is_dir():
        pairs.append(("Yosemite", cv2.imread(str(yosemite / "yos9.png"), 0),
                      cv2.imread(str(yosemite / "yos10.png"), 0), read_flo(yosemite / "correct_yos.flo")))
    for name, motion in (("synthetic pan 20 px", Motion(dx=18.0, dy=-9.0)),
                         ("synthetic zoom 8%", Motion(zoom=1.08))):
        frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in render_frames(motion, 2, 342, 256, 11)]
        pairs.append((name, frames[0], frames[1], motion.flow(342, 256)))
    return pairs


def speed_pairs(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive real frame pairs at 342x256 (UCF101 clips at flowkit's default size)."""
    clips = sorted((SHARED / "videos/ucf101").glob("*.avi"))
    if not clips:  # without the shared data: a synthetic clip
        frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
                  for f in render_frames(Motion(dx=1.5, rotate=0.5), count + 1, 342, 256, 3)]
        return list(itertools.pairwise(frames))
    per_clip = -(-count // len(clips))
    pairs = []
    for clip in clips:
        frames = []
        for frame in VideoReader(clip, FrameSize(short_side=256)):
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
            if len(frames) > per_clip:
                break
        pairs += list(itertools.pairwise(frames))
    return pairs[:count]


# ---- accuracy ------------------------------------------------------------------------------------


def accuracy(pairs: list) -> dict[str, Any]:
    rows: dict[str, dict[str, float]] = {}
    agreement = {}
    for name, prev, nxt, truth in pairs:
        opencv = create_engine("tvl1").calc(prev, nxt)
        row = {"opencv default": endpoint_error(opencv, truth)}
        for preset in PRESETS:
            engine = create_engine("tvl1", backend="torch", device="cpu", preset=preset, compile=False)
            flow = engine.calc(prev, nxt)
            row[f"torch {preset}"] = endpoint_error(flow, truth)
            if preset == "default":
                agreement[name] = float(np.linalg.norm(flow - opencv, axis=-1).mean())
        rows[name] = row
    return {"epe": rows, "torch_vs_opencv_px": agreement}


# ---- speed ---------------------------------------------------------------------------------------


def _worker(config: dict[str, Any], pairs: list, queue: mp.Queue) -> None:
    """Compute one warm-up pair, then time the rest; report (compile-inclusive warm-up, timed)."""
    threads = config["threads"]
    cv2.setNumThreads(threads)
    torch.set_num_threads(threads)
    engine = create_engine("tvl1", backend=config["backend"], device="cpu", preset=config["preset"],
                           compile=config.get("compile"))
    start = time.perf_counter()
    engine.calc(*pairs[0])
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for prev, nxt in pairs[1:]:
        engine.calc(prev, nxt)
    queue.put((warm, time.perf_counter() - start, len(pairs) - 1))


def run_config(config: dict[str, Any], pairs: list) -> dict[str, Any]:
    """pairs/s of one configuration: `processes` workers share the pairs, each with a warm-up."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    processes = config["processes"]
    shares = [[pairs[0], *pairs[i::processes]] for i in range(processes)]  # each warms up on pair 0
    workers = [ctx.Process(target=_worker, args=(config, share, queue)) for share in shares]
    load_before = os.getloadavg()[0]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    timed = max(r[1] for r in results)
    done = sum(r[2] for r in results)
    return {**config, "pairs": done, "seconds": timed, "pairs_per_s": done / timed,
            "warmup_s": max(r[0] for r in results), "load_before": load_before}


def speed(pairs: list, cores: int, quick: bool) -> list[dict[str, Any]]:
    configs = [
        {"name": "OpenCV", "backend": "opencv", "preset": "default", "processes": cores, "threads": 1},
        {"name": "OpenCV", "backend": "opencv", "preset": "default", "processes": 1, "threads": cores},
        {"name": "torch, compiled", "backend": "torch", "preset": "default", "compile": True,
         "processes": cores, "threads": 1},
        {"name": "torch, compiled", "backend": "torch", "preset": "default", "compile": True,
         "processes": 1, "threads": cores},
        {"name": "torch, eager", "backend": "torch", "preset": "default", "compile": False,
         "processes": cores, "threads": 1},
        {"name": "torch, compiled", "backend": "torch", "preset": "fast", "compile": True,
         "processes": cores, "threads": 1},
        {"name": "torch, compiled", "backend": "torch", "preset": "accurate", "compile": True,
         "processes": cores, "threads": 1},
        {"name": "torch, compiled", "backend": "torch", "preset": "denseflow", "compile": True,
         "processes": cores, "threads": 1},
    ]
    if quick:
        configs = configs[:3]
    results = []
    for config in configs:
        result = run_config(config, pairs)
        print(f"  {result['name']} {result['preset']} {result['processes']}x{result['threads']}: "
              f"{result['pairs_per_s']:.2f} pairs/s", file=sys.stderr, flush=True)
        results.append(result)
    return results


def gpu_batches(pairs: list) -> list[dict[str, Any]] | str:
    if not torch.cuda.is_available():
        return "no CUDA device on this machine"
    prevs = np.stack([p[0] for p in pairs])
    nexts = np.stack([p[1] for p in pairs])
    rows = []
    engine = create_engine("tvl1", backend="torch", device="cuda")
    for batch in (1, 8, 32, 128):
        reps = max(1, batch // len(pairs) + 1)
        a = np.concatenate([prevs] * reps)[:batch]
        b = np.concatenate([nexts] * reps)[:batch]
        engine.solver.flow(a, b)  # warm-up / compile
        torch.cuda.synchronize()
        start = time.perf_counter()
        engine.solver.flow(a, b)
        torch.cuda.synchronize()
        rows.append({"batch": batch, "pairs_per_s": batch / (time.perf_counter() - start)})
    return rows


# ---- report --------------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    if "accuracy" in results:
        lines += ["### Accuracy (average endpoint error, px; lower is better)", ""]
        epe = results["accuracy"]["epe"]
        columns = ["opencv default", *(f"torch {p}" for p in PRESETS)]
        lines.append("| pair | " + " | ".join(columns) + " | torch default vs OpenCV, px |")
        lines.append("| --- " * (len(columns) + 2) + "|")
        for name, row in epe.items():
            agree = results["accuracy"]["torch_vs_opencv_px"][name]
            lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + f" | {agree:.4f} |")
    if "speed" not in results:
        return "\n".join(lines)
    lines += ["", f"### Speed on the CPU ({results['speed_pairs']} pairs at 342x256)", "",
              "| engine | preset | processes x threads | pairs/s | vs OpenCV best | warm-up s |",
              "| --- | --- | --- | --- | --- | --- |"]
    speed_rows = results["speed"]
    best_opencv = max(r["pairs_per_s"] for r in speed_rows if r["backend"] == "opencv")
    for r in speed_rows:
        lines.append(f"| {r['name']} | {r['preset']} | {r['processes']} x {r['threads']} | "
                     f"{r['pairs_per_s']:.2f} | {r['pairs_per_s'] / best_opencv:.2f}x | {r['warmup_s']:.1f} |")
    gpu = results["gpu"]
    lines += ["", "### GPU", ""]
    if isinstance(gpu, str):
        lines.append(gpu)
    else:
        lines += ["| batch | pairs/s |", "| --- | --- |"] + [f"| {r['batch']} | {r['pairs_per_s']:.1f} |" for r in gpu]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few pairs, three configurations")
    parser.add_argument("--out", type=Path, default=None, help="write every figure here as JSON")
    parser.add_argument("--section", choices=("all", "accuracy", "speed"), default="all")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cores": cores, "python": platform.python_version(), "torch": torch.__version__,
                    "opencv": cv2.__version__, "platform": platform.platform(),
                    "loadavg_start": os.getloadavg()},
    }
    start = time.perf_counter()
    pairs = accuracy_pairs()
    if args.quick:
        pairs = [p for p in pairs if p[0] in ("RubberWhale", "synthetic pan 20 px")]
    if args.section in ("all", "accuracy"):
        print("accuracy...", file=sys.stderr, flush=True)
        results["accuracy"] = accuracy(pairs)
    if args.section in ("all", "speed"):
        timed = speed_pairs(6 if args.quick else 40)
        results["speed_pairs"] = len(timed)
        print("speed...", file=sys.stderr, flush=True)
        results["speed"] = speed(timed, cores, args.quick)
        results["gpu"] = gpu_batches(timed)
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["seconds"] = time.perf_counter() - start
    print(report(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
