"""The CUDA path, checked and measured in one run (benchmarks/gpu.sh calls it; about 6 minutes).

1. Agreement: the torch TV-L1 on the GPU against the same engine on the CPU, on the Middlebury
   and Yosemite pairs of the test data, for the default and denseflow presets: each one's
   endpoint error against the truth, and the mean distance between the two devices' flows.
2. Pairs/s at 342x256 (real UCF101 frames) for batch sizes 1 to 64, both presets, compiled.
3. `flowkit extract` end to end on the test data's clips, on the GPU, in a fresh process.
4. Training steps (forward, backward, SGD) of a TSN flow stream and an I3D RGB stream, fp32
   and bf16 autocast, samples/s.

    python benchmarks/gpu.py --data ../shared/testdata --out gpu.json

Every figure goes to the JSON file; the tables are printed as markdown. Each section stops at
its time budget and says so, so the whole run ends inside the device tool's 10-minute limit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowkit.flow.engines import create_engine  # noqa: E402
from flowkit.flow.flo import read_flo  # noqa: E402
from flowkit.flow.metrics import endpoint_error  # noqa: E402
from flowkit.models import create_model  # noqa: E402
from flowkit.video import FrameSize, VideoReader  # noqa: E402

PRESETS = ("default", "denseflow")
BATCHES = (1, 2, 4, 8, 16, 32, 64)


def emit(text: str = "") -> None:
    print(text, flush=True)


def truth_pairs(data: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    pairs = []
    for name in ("RubberWhale", "Dimetrodon", "Venus"):
        folder = data / "flow/middlebury" / name
        pairs.append((name, cv2.imread(str(folder / "gray/frame10.png"), 0),
                      cv2.imread(str(folder / "gray/frame11.png"), 0), read_flo(folder / "flow10.flo")))
    folder = data / "flow/yosemite"
    pairs.append(("Yosemite", cv2.imread(str(folder / "yos9.png"), 0), cv2.imread(str(folder / "yos10.png"), 0),
                  read_flo(folder / "correct_yos.flo")))
    return pairs


def frame_pairs(data: Path, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive frame pairs of the UCF101 clips at flowkit's default size (342x256)."""
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    for clip in sorted((data / "videos/ucf101").glob("*.avi")):
        frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in VideoReader(clip, FrameSize(short_side=256))]
        pairs += list(itertools.pairwise(frames))
    return pairs[:count]


def synchronize() -> None:
    torch.cuda.synchronize()


def agreement(data: Path, device: str) -> list[dict[str, Any]]:
    rows = []
    for preset in PRESETS:
        cpu = create_engine("tvl1", backend="torch", device="cpu", preset=preset, compile=False)
        gpu = create_engine("tvl1", backend="torch", device=device, preset=preset)
        for name, prev, nxt, truth in truth_pairs(data):
            on_cpu, on_gpu = cpu.calc(prev, nxt), gpu.calc(prev, nxt)
            rows.append({"preset": preset, "pair": name, "epe_cpu": endpoint_error(on_cpu, truth),
                         "epe_gpu": endpoint_error(on_gpu, truth),
                         "gpu_vs_cpu_px": float(np.linalg.norm(on_gpu - on_cpu, axis=-1).mean())})
            emit(f"  {preset} {name}: EPE cpu {rows[-1]['epe_cpu']:.4f} gpu {rows[-1]['epe_gpu']:.4f}, "
                 f"mean |gpu - cpu| {rows[-1]['gpu_vs_cpu_px']:.5f} px")
    return rows


def throughput(data: Path, device: str, budget: float) -> list[dict[str, Any]]:
    pairs = frame_pairs(data, 64)
    prevs, nexts = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    rows, start = [], time.perf_counter()
    for preset in PRESETS:
        engine = create_engine("tvl1", backend="torch", device=device, preset=preset)
        for batch in BATCHES:
            if time.perf_counter() - start > budget:
                emit(f"  time budget spent: {preset} from batch {batch} on not measured")
                break
            a = torch.as_tensor(prevs[:batch], device=device)
            b = torch.as_tensor(nexts[:batch], device=device)
            warm = time.perf_counter()
            engine.solver.flow(a, b)  # compiles this batch's variants
            synchronize()
            warm = time.perf_counter() - warm
            calls, t0 = 0, time.perf_counter()
            while calls < 2 or (time.perf_counter() - t0 < 3.0 and calls < 20):
                engine.solver.flow(a, b)
                synchronize()
                calls += 1
            per_call = (time.perf_counter() - t0) / calls
            rows.append({"preset": preset, "batch": batch, "pairs_per_s": batch / per_call,
                         "first_call_s": warm, "calls": calls})
            emit(f"  {preset} batch {batch}: {batch / per_call:.1f} pairs/s (first call {warm:.1f} s)")
    return rows


def extraction(data: Path, device: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clips.h5"
        command = [sys.executable, "-m", "flowkit", "extract", str(data / "videos"), str(out),
                   "--device", device, "-q", "--json"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=240)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:], "seconds": seconds}
        summary = json.loads(done.stdout)
    pairs = summary["pairs"]
    return {"seconds": seconds, "summary": summary, "pairs_per_s": pairs / seconds if pairs else None}


def samples_per_s(model: torch.nn.Module, x: torch.Tensor, bf16: bool) -> float:
    """Training steps (forward, cross-entropy, backward, SGD) per second, times the batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    target = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    synchronize()
    t0, calls = time.perf_counter(), 0
    while calls < 3 or (time.perf_counter() - t0 < 4.0 and calls < 30):
        step()
        synchronize()
        calls += 1
    return x.shape[0] * calls / (time.perf_counter() - t0)


def training_steps(device: str) -> list[dict[str, Any]]:
    setups = [
        ("tsn flow (BN-Inception, 3 x 10-channel 224^2)", 32, (3, 10, 224, 224),
         {"name": "tsn", "backbone": "bninception", "modality": "flow", "num_segments": 3}),
        ("i3d rgb (64 x 224^2)", 8, (3, 64, 224, 224), {"name": "i3d"}),
    ]
    rows = []
    for label, batch, shape, kwargs in setups:
        for precision in ("fp32", "bf16"):
            model = create_model(num_classes=101, **kwargs).to(device).train()
            x = torch.randn(batch, *shape, device=device)
            rate = samples_per_s(model, x, precision == "bf16")
            rows.append({"model": label, "precision": precision, "batch": batch, "samples_per_s": rate,
                         "max_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30})
            emit(f"  {label} {precision}: {rate:.1f} samples/s")
            del model, x
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "testdata")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--throughput-budget", type=float, default=180.0, help="seconds for section 2")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        emit("no CUDA device here: this benchmark measures the GPU path only")
        return 1
    if not (args.data / "flow/middlebury").is_dir():
        emit(f"no test data at {args.data} (give --data)")
        return 1
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "gpu": torch.cuda.get_device_name(args.device),
        "torch": torch.__version__, "python": platform.python_version(), "opencv": cv2.__version__,
        "cpu_cores": os.cpu_count()}
    emit(f"machine: {json.dumps(report)}")
    sections = [("agreement", lambda: agreement(args.data, args.device)),
                ("throughput", lambda: throughput(args.data, args.device, args.throughput_budget)),
                ("extraction", lambda: extraction(args.data, args.device)),
                ("training", lambda: training_steps(args.device))]
    for name, run in sections:
        emit(f"{name}...")
        start = time.perf_counter()
        try:
            report[name] = run()
        except Exception as error:  # one broken section must not hide the others' figures
            report[name] = {"error": f"{type(error).__name__}: {error}"}
            emit(f"  failed: {report[name]['error']}")
        report[f"{name}_seconds"] = time.perf_counter() - start
        if args.out:
            args.out.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
