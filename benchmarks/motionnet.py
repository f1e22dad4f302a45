"""MotionNet after a short unsupervised fit against TV-L1 (flowkit's torch engine and OpenCV's) on
the Middlebury pairs of ../shared/testdata: average endpoint error and pairs/s, in one run.

    python benchmarks/motionnet.py [--steps 400] [--width 0.5] [--out results.json]

MotionNet (a pair model on gray frames, as the `motionnet` flow engine runs it) is fitted with
its unsupervised loss on random crops of the three pairs themselves: no ground truth is read
until the error is measured. Each engine then computes every pair once untimed (warm-up) and
once timed. Prints a markdown table; writes every figure, the machine, and how busy it was
(load average, and the CPU share the whole machine used during the run, from /proc/stat) to JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowkit.flow.engines import FlowEngine, create_engine  # noqa: E402
from flowkit.flow.flo import read_flo  # noqa: E402
from flowkit.flow.metrics import endpoint_error  # noqa: E402
from flowkit.flow.motionnet_fit import fit_motionnet, save_motionnet  # noqa: E402

MIDDLEBURY = ROOT.parent / "shared" / "testdata" / "flow" / "middlebury"
NAMES = ("RubberWhale", "Dimetrodon", "Venus")


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat's first line."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def load_pairs() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    pairs = []
    for name in NAMES:
        folder = MIDDLEBURY / name
        pairs.append((name, cv2.imread(str(folder / "gray/frame10.png"), cv2.IMREAD_GRAYSCALE),
                      cv2.imread(str(folder / "gray/frame11.png"), cv2.IMREAD_GRAYSCALE),
                      read_flo(folder / "flow10.flo")))
    return pairs


def snippets_of(pairs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], crop: int) -> np.ndarray:
    """Every pair cut into crop-sized tiles at half-crop strides: uint8 (N, 2, crop, crop, 1)."""
    tiles = []
    for _, first, second, _ in pairs:
        for y in range(0, first.shape[0] - crop + 1, crop // 2):
            for x in range(0, first.shape[1] - crop + 1, crop // 2):
                tiles.append(np.stack([first[y: y + crop, x: x + crop], second[y: y + crop, x: x + crop]]))
    return np.stack(tiles)[..., None]


def measure(engine: FlowEngine, pairs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    for _, first, second, _ in pairs:  # warm-up: first calls, caches
        engine.calc(first, second)
    start = time.perf_counter()
    errors = {name: endpoint_error(engine.calc(first, second), truth) for name, first, second, truth in pairs}
    seconds = time.perf_counter() - start
    return {"epe": errors, "pairs_per_s": len(pairs) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and OpenCV threads (1: the fairest on a shared machine)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not MIDDLEBURY.is_dir():
        sys.exit(f"{MIDDLEBURY} is absent: this benchmark needs ../shared/testdata")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    load_start, ticks_start, wall_start = os.getloadavg(), cpu_ticks(), time.perf_counter()
    pairs = load_pairs()

    fit_start = time.perf_counter()
    net, losses = fit_motionnet(snippets_of(pairs, args.crop), args.steps, batch_size=args.batch_size,
                                lr=args.lr, width=args.width, device="cpu", seed=0)
    fit_seconds = time.perf_counter() - fit_start
    weights = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_motionnet.pt"
    save_motionnet(net, weights, steps=args.steps)

    rows = {
        "zero flow": {"epe": {n: endpoint_error(np.zeros_like(t), t) for n, _, _, t in pairs},
                      "pairs_per_s": None},
        "MotionNet (fitted)": measure(create_engine("motionnet", {"weights": str(weights)}, "torch", "cpu"), pairs),
        "TV-L1 torch (eager)": measure(create_engine("tvl1", None, "torch", "cpu", compile=False), pairs),
        "TV-L1 OpenCV": measure(create_engine("tvl1", None, "opencv"), pairs),
    }
    busy = np.subtract(cpu_ticks(), ticks_start)
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "opencv": cv2.__version__, "threads": args.threads,
                    "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                    "machine_cpu_busy": float(busy[0] / max(busy[1], 1))},
        "fit": {"steps": args.steps, "width": args.width, "crop": args.crop, "batch_size": args.batch_size,
                "lr": args.lr, "seconds": fit_seconds, "first_loss": losses[0], "last_loss": losses[-1],
                "parameters": sum(p.numel() for p in net.parameters())},
        "rows": rows, "seconds": time.perf_counter() - wall_start,
    }
    print(f"| engine | {' | '.join(NAMES)} | mean EPE | pairs/s |")
    print("| --- |" + " --- |" * (len(NAMES) + 2))
    for name, row in rows.items():
        epe = [row["epe"][n] for n in NAMES]
        speed = f"{row['pairs_per_s']:.2f}" if row["pairs_per_s"] else "—"
        print(f"| {name} | " + " | ".join(f"{e:.3f}" for e in epe) + f" | {np.mean(epe):.3f} | {speed} |")
    print(f"\nfit: {args.steps} steps in {fit_seconds:.0f} s (loss {losses[0]:.2f} -> {losses[-1]:.2f}); "
          f"run {results['seconds']:.0f} s; load {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}; "
          f"machine CPU busy {results['machine']['machine_cpu_busy']:.0%}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
