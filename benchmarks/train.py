"""Training throughput per architecture, and where the time goes: loading or computing; and the
demo trained under each precision and fast path.

    python benchmarks/train.py [--quick] [--out results.json]
    python benchmarks/train.py --precision [--epochs 12] [--out results.json]

The five real clips of ../shared/testdata/videos are extracted at flowkit's defaults (short side
256, TV-L1 on the torch engine, flow as JPEG). For each setting, three figures over the same
batches: the DataLoader alone (samples/s it can deliver), the model alone on tensors already in
memory (forward + backward + SGD step), and the real training loop, timed per step as
"waiting for the next batch" and "computing". The compute-busy share is compute time over the
loop's wall time: the loader is not the bottleneck when it is high (target: 90%).

`--precision`: the demo's dataset (`flowkit synth`'s 192 clips; flow by DIS, which the figures do
not depend on) and `pipelines/demo.toml`, the flow stream trained by flowkit's own Trainer from the
same seed under `--amp off` (float32), `bf16`, `fp16`, `--channels-last` and `--compile`: samples/s
over the epochs after the first (the first, which pays any compilation, apart), the final
training loss and the test top-1, each against float32's.
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


PRECISIONS = [("float32", {}), ("bf16", {"amp": "bf16"}), ("fp16", {"amp": "fp16"}),
              ("channels-last", {"channels_last": "true"}), ("compile", {"compile": "true"})]


def precision_runs(epochs: int) -> dict[str, Any]:
    """The demo's flow stream trained under each precision and fast path, from one seed."""
    from flowkit.flow.engine_base import has_cxx_compiler
    from flowkit.synth import make_action_dataset
    from flowkit.training.runs import train_stream
    from flowkit.training.streams import load_data
    from flowkit.video import FrameSize

    rows = []
    with tempfile.TemporaryDirectory(prefix="flowkit-precision-bench-") as tmp:
        root = Path(tmp)
        make_action_dataset(root / "videos")
        report = extract(root / "videos", root / "out.h5", ExtractSettings(algorithm="dis", size=FrameSize.keep()),
                         progress=False)
        if not report.ok:
            raise RuntimeError(f"extraction failed: {report.failed}")
        data = load_data(root / "out.h5", root / "videos/splits")
        for name, overrides in PRECISIONS:
            if name == "compile" and not has_cxx_compiler():
                continue
            config = load_config(ROOT / "pipelines/demo.toml", {"epochs": str(epochs), "eval_every": "0",
                                                                 "flow.lr_steps": str(epochs * 3 // 4), **overrides})
            scores = train_stream(config, data, "flow", root / name, progress=False)
            log = (root / name / "flow/metrics.csv").read_text().splitlines()[1:]
            seconds = [float(line.split(",")[-1]) for line in log]
            samples = len(data.train)
            rows.append({"setting": name, "first_epoch_s": seconds[0],
                         "samples_per_s": samples * (len(seconds) - 1) / sum(seconds[1:]),
                         "final_loss": float(log[-1].split(",")[2]), "test_top1": scores.metrics()["top1"]})
            print(f"  {name}: {rows[-1]['samples_per_s']:.1f} samples/s, loss {rows[-1]['final_loss']:.4f}",
                  file=sys.stderr, flush=True)
    base = rows[0]
    for row in rows:
        row["speed_vs_float32"] = row["samples_per_s"] / base["samples_per_s"]
    return {"epochs": epochs, "train_videos": len(data.train), "rows": rows, "compute": precision_compute()}


def precision_compute(steps: int = 4, batch: int = 8) -> list[dict[str, Any]]:
    """A compute-bound network (ResNet-18 on 10-flow stacks at 112^2), forward + backward + SGD
    on one batch in memory, under each precision and layout: what the demo's loader-bound loop
    cannot show."""
    from flowkit.models import create_model
    from flowkit.training.precision import (
        autocast,
        channels_last_module,
        grad_scaler,
        to_channels_last,
    )

    device = torch.device("cpu")
    rows = []
    for name, overrides in PRECISIONS:
        if name == "compile":
            continue
        torch.manual_seed(0)
        model = create_model("resnet18", 2, in_chans=20).train()
        x, y = torch.randn(batch, 20, 112, 112), torch.randint(0, 2, (batch,))
        if overrides.get("channels_last"):
            channels_last_module(model)
            x = to_channels_last(x)
        mode = overrides.get("amp", "off")
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        scaler = grad_scaler(mode, device)

        start = time.perf_counter()
        for i in range(steps + 1):  # the first step untimed
            if i == 1:
                start = time.perf_counter()
            with autocast(mode, device):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        rows.append({"setting": name, "samples_per_s": steps * batch / (time.perf_counter() - start)})
    for row in rows:
        row["speed_vs_float32"] = row["samples_per_s"] / rows[0]["samples_per_s"]
    return rows


def print_precision(results: dict[str, Any]) -> None:
    lines = ["| setting | samples/s (epochs 2+) | vs float32 | first epoch, s | final training loss | test top-1 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        lines.append(f"| {r['setting']} | {r['samples_per_s']:.1f} | {r['speed_vs_float32']:.2f}x | "
                     f"{r['first_epoch_s']:.1f} | {r['final_loss']:.4f} | {r['test_top1']:.1%} |")
    lines += ["", "| ResNet-18 flow (L=10, 112^2), fwd+bwd+SGD | samples/s | vs float32 |", "| --- | --- | --- |"]
    lines += [f"| {r['setting']} | {r['samples_per_s']:.2f} | {r['speed_vs_float32']:.2f}x |" for r in results["compute"]]
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", action="store_true", help="The demo under each precision and fast path.")
    parser.add_argument("--epochs", type=int, default=12, help="--precision: epochs (the demo's 12).")
    args = parser.parse_args()
    if args.precision:
        info = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__, "loadavg_start": os.getloadavg()}
        results = {**info, **precision_runs(args.epochs), "loadavg_end": os.getloadavg()}
        print_precision(results)
        if args.out:
            args.out.write_text(json.dumps(results, indent=1, default=float))
        return
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
