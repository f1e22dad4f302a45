"""Training throughput per architecture, and where the time goes: loading or computing.

    python benchmarks/train.py [--quick] [--out results.json]

The five real clips of ../shared/testdata/videos are extracted at flowkit's defaults (short side
256, TV-L1 on the torch engine, flow as JPEG). For each setting, three figures over the same
batches: the DataLoader alone (samples/s it can deliver), the model alone on tensors already in
memory (forward + backward + SGD step), and the real training loop, timed per step as
"waiting for the next batch" and "computing". The compute-busy share is compute time over the
loop's wall time: the loader is not the bottleneck when it is high (target: 90%).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowkit.data.annotations import Annotation  # noqa: E402
from flowkit.extraction.pipeline import ExtractSettings, extract  # noqa: E402
from flowkit.store.reader import FlowStore  # noqa: E402
from flowkit.training.config import load_config  # noqa: E402
from flowkit.training.streams import LabelledData, stream_datasets, stream_model  # noqa: E402

VIDEOS = ROOT.parent / "shared" / "testdata" / "videos"

SETTINGS = [
    ("tsn rgb (BN-Inception, K=3, 224)", "rgb", {"arch": "tsn", "backbone": "bninception"}),
    ("tsn flow (BN-Inception, K=3, L=5, 224)", "flow", {"arch": "tsn", "backbone": "bninception"}),
    ("two-stream flow (ResNet-18, L=10, 224)", "flow", {"arch": "twostream", "backbone": "resnet18"}),
    ("i3d rgb (16 x 112 x 112)", "rgb", {"arch": "i3d", "clip_length": "16", "crop_size": "112"}),
    ("tsn flow (tiny, K=3, L=5, 112)", "flow", {"arch": "tsn", "backbone": "tiny", "crop_size": "112"}),
]


def prepare(tmp: Path) -> LabelledData:
    out = tmp / "out.h5"
    report = extract(VIDEOS, out, ExtractSettings(), progress=False)
    if not report.ok:
        raise RuntimeError(f"extraction failed: {report.failed}")
    with FlowStore(out) as store:
        rows = [Annotation(vid, i % 2) for i, vid in enumerate(store.ids)] * 16  # 80 samples
    return LabelledData(out, ["a", "b"], rows, [])


def loader_only(loader: DataLoader, steps: int) -> float:
    samples, start = 0, None
    for i, (x, _) in enumerate(loader):
        if i == 0:
            start = time.perf_counter()  # after worker start-up
            continue
        samples += x.shape[0]
        if i == steps:
            break
    return samples / (time.perf_counter() - start)


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def compute_only(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    step(model, optimizer, x, y)
    start = time.perf_counter()
    for _ in range(steps):
        step(model, optimizer, x, y)
    return steps * x.shape[0] / (time.perf_counter() - start)


def training_loop(model: torch.nn.Module, loader: DataLoader, steps: int) -> dict[str, float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    waiting = computing = 0.0
    samples = 0
    iterator = iter(loader)
    step(model, optimizer, *next(iterator))  # worker start-up and first step, untimed
    for _ in range(steps):
        start = time.perf_counter()
        x, y = next(iterator)
        ready = time.perf_counter()
        step(model, optimizer, x, y)
        done = time.perf_counter()
        waiting += ready - start
        computing += done - ready
        samples += x.shape[0]
    wall = waiting + computing
    return {"samples_per_s": samples / wall, "compute_busy": computing / wall, "waiting_s": waiting,
            "computing_s": computing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    steps = 2 if args.quick else 6
    cores = len(os.sched_getaffinity(0))
    worker_counts = [0, 1, cores] if not args.quick else [cores]
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cores": cores, "python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "loadavg_start": os.getloadavg()},
        "batch": args.batch, "steps": steps, "rows": [],
    }
    settings = SETTINGS[-2:] if args.quick else SETTINGS
    with tempfile.TemporaryDirectory(prefix="flowkit-train-bench-") as tmp:
        data = prepare(Path(tmp))
        for name, stream, overrides in settings:
            config = load_config(None, {**overrides, "batch_size": str(args.batch)})
            dataset, _ = stream_datasets(config, stream, data)
            model = stream_model(config, stream, 2).train()
            x, y = next(iter(DataLoader(dataset, batch_size=args.batch)))
            model_speed = compute_only(model, x, y, steps)
            for workers in worker_counts:
                loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=workers,
                                    persistent_workers=workers > 0)
                row = {"setting": name, "workers": workers, "model_samples_per_s": model_speed,
                       "loader_samples_per_s": loader_only(loader, steps),
                       **training_loop(model, loader, steps)}
                results["rows"].append(row)
                print(f"  {name} workers={workers}: loop {row['samples_per_s']:.2f} samples/s, "
                      f"compute busy {row['compute_busy']:.0%}", file=sys.stderr, flush=True)
    results["machine"]["loadavg_end"] = os.getloadavg()
    lines = ["| setting | loader workers | loader alone, samples/s | model alone, samples/s | "
             "training loop, samples/s | compute busy |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        lines.append(f"| {r['setting']} | {r['workers']} | {r['loader_samples_per_s']:.1f} | "
                     f"{r['model_samples_per_s']:.2f} | {r['samples_per_s']:.2f} | {r['compute_busy']:.0%} |")
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
