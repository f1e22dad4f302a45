"""TV-L1 start-up: what a fresh process pays before its first pair, and when compiling repays it.

    python benchmarks/startup.py [--quick] [--out startup.json]

Each figure comes from a fresh Python process (as a user's `flowkit flow` or a make/Dask worker
is), timed from before `import` to the first and to the 10th pair of real UCF101 frames:

1. The torch engine eager, compiled with a cold compile cache (an empty TORCHINDUCTOR_CACHE_DIR)
   and compiled with a warm one (the same folder, second process), at 85x64 (the demo's size),
   342x256 and 584x388, with 1 and 2 threads, the machine quiet; and at 342x256 with the other
   core kept busy by a spinning process.
2. The goal's ratio: `flowkit flow A B -o F` (process start included, flowkit's own choice of
   compiled or eager) against OpenCV's DualTVL1OpticalFlow on the same pair in a fresh process.

Prints markdown tables and writes every figure to JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowkit.video import FrameSize, VideoReader  # noqa: E402

CLIP = ROOT.parent / "shared/testdata/videos/ucf101"
SIZES = {"85x64": 64, "342x256": 256, "584x388": 388}

# Runs in the fresh process: imports, builds the engine, computes pairs, prints the times.
PROBE = """
import time, sys, json
t0 = time.perf_counter()
import numpy as np, torch
torch.set_num_threads({threads})
from flowkit.flow.engines import create_engine
frames = np.load({frames!r})
engine = create_engine("tvl1", backend="torch", device="cpu", compile={compile})
engine.set_threads({threads})
t_ready = time.perf_counter()
marks = []
for i in range({pairs}):
    engine.calc(frames[i % (len(frames) - 1)], frames[i % (len(frames) - 1) + 1])
    marks.append(time.perf_counter() - t0)
print(json.dumps({{"imports_and_engine_s": t_ready - t0, "first_pair_s": marks[0], "tenth_pair_s": marks[-1]}}))
"""

OPENCV_PAIR = """
import time; t0 = time.perf_counter()
import cv2
a = cv2.imread({a!r}, 0); b = cv2.imread({b!r}, 0)
cv2.optflow.DualTVL1OpticalFlow_create().calc(a, b, None)
print(time.perf_counter() - t0)
"""


def save_frames(folder: Path, short_side: int) -> Path:
    frames = []
    for frame in VideoReader(sorted(CLIP.glob("*.avi"))[0], FrameSize(short_side=short_side)):
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        if len(frames) == 11:
            break
    import numpy as np

    path = folder / f"frames_{short_side}.npy"
    np.save(path, np.stack(frames))
    return path


def fresh_process(code: str, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=True)
    return time.perf_counter() - start, done.stdout.strip().splitlines()[-1]


def probe(frames: Path, threads: int, compile: bool, cache: Path, pairs: int) -> dict[str, Any]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    wall, line = fresh_process(PROBE.format(threads=threads, frames=str(frames), compile=compile, pairs=pairs), env)
    return {**json.loads(line), "process_wall_s": wall}


def startup_table(folder: Path, busy: bool, quick: bool) -> list[dict[str, Any]]:
    rows = []
    sizes = {"342x256": 256} if quick or busy else SIZES  # busy: the default size only
    for label, side in sizes.items():
        frames = save_frames(folder, side)
        for threads in (1,) if quick else (1, 2):
            cache = Path(tempfile.mkdtemp(dir=folder, prefix="inductor-"))
            for mode, compile in (("eager", False), ("compiled, cold cache", True), ("compiled, warm cache", True)):
                figures = probe(frames, threads, compile, cache, 10)
                rows.append({"size": label, "threads": threads, "mode": mode, "other_core_busy": busy, **figures})
                print(f"  {label} {threads} thread(s) {mode} busy={busy}: first pair {figures['first_pair_s']:.1f} s, "
                      f"10th {figures['tenth_pair_s']:.1f} s", file=sys.stderr, flush=True)
    return rows


def one_pair_goal(folder: Path) -> dict[str, Any]:
    frames = []
    for frame in VideoReader(sorted(CLIP.glob("*.avi"))[0], FrameSize(short_side=256)):
        frames.append(frame)
        if len(frames) == 2:
            break
    a, b = folder / "a.png", folder / "b.png"
    cv2.imwrite(str(a), frames[0])
    cv2.imwrite(str(b), frames[1])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flowkit", "flow", str(a), str(b), "-o", str(folder / "f.flo")],
                   check=True, capture_output=True, env=env, cwd=ROOT)
    flowkit_s = time.perf_counter() - start
    opencv_s, _ = fresh_process(OPENCV_PAIR.format(a=str(a), b=str(b)), env)
    return {"flowkit_flow_s": flowkit_s, "opencv_fresh_process_s": opencv_s, "ratio": flowkit_s / opencv_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="342x256, one thread, quiet only")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cores": os.cpu_count(),
                               "loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results["one_pair"] = one_pair_goal(folder)
        print(f"one pair: flowkit flow {results['one_pair']['flowkit_flow_s']:.2f} s, OpenCV "
              f"{results['one_pair']['opencv_fresh_process_s']:.2f} s", file=sys.stderr, flush=True)
        results["startup"] = startup_table(folder, busy=False, quick=args.quick)
        if not args.quick:
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                results["startup"] += startup_table(folder, busy=True, quick=False)
            finally:
                spinner.kill()
    results["loadavg_end"] = os.getloadavg()
    one = results["one_pair"]
    print(f"`flowkit flow` one pair {one['flowkit_flow_s']:.2f} s vs OpenCV in a fresh process "
          f"{one['opencv_fresh_process_s']:.2f} s: {one['ratio']:.2f}x\n")
    print("| size | threads | other core | mode | imports + engine s | first pair s | 10th pair s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results["startup"]:
        print(f"| {r['size']} | {r['threads']} | {'busy' if r['other_core_busy'] else 'quiet'} | {r['mode']} | "
              f"{r['imports_and_engine_s']:.1f} | {r['first_pair_s']:.1f} | {r['tenth_pair_s']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
