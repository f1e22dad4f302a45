"""Network benchmark: parameters, FLOPs, forward and forward+backward clips/s, and cheap wins.

What it measures, for every model of `flowkit.models.list_models()` with its builder's defaults:

1. Parameters, and multiply-accumulates (MACs) per clip, forward and forward+backward: half the
   FLOPs that `torch.utils.flop_counter.FlopCounterMode` counts on the meta device (no compute)
   for convolutions and matrix products. MACs are the unit the papers and fvcore call "FLOPs".
2. Clips/s at the paper's input size (224x224; TSN: K=3 snippets; I3D and the 3D ResNets: 64
   frames; mid-level fusion: T=5 time steps) and at a small one (112x112, 16 frames):
   forward in eval mode under `torch.no_grad`, and forward+backward in train mode (cross-entropy,
   no optimizer step). A clip is one sample of the batch: an image for a 2D stream, K snippets
   for TSN, a 64-frame clip for I3D, an RGB clip and a flow clip for two-stream I3D.
   One warm-up call, then calls until `--min-seconds` have passed (at least 2, at most 20).
3. Cheap wins on ResNet-50 (batch 8, 224x224) and I3D (1 x 64x224x224): inference mode,
   channels-last memory, torch.compile, bf16 autocast; each against the fp32 baseline, with the
   largest logit difference it makes.

The machine may be shared: each timing records the cores other processes used meanwhile (from
/proc/stat), and the load average is recorded before and after. Run it from the project root:

    python benchmarks/models.py --quick                         # a smoke run, a few minutes
    python benchmarks/models.py --out /tmp/bench_models.json    # the full run
    python benchmarks/models.py --device cuda                   # on a GPU, if there is one

It prints markdown tables and writes every figure to the JSON file given with `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from report import emit, md_table  # benchmarks/report.py
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from flowkit.errors import FlowkitError
from flowkit.models import TSN, TwoStreamFusion, create_model, list_models
from flowkit.models.quo_vadis_baselines import Fused3D
from flowkit.models.registry import info_of

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Batch per model kind at the paper's size and at the small one; chosen so that a call lasts a
# fraction of a second or more on 2 cores (clips/s depends on the batch; it is reported).
BATCH = {"2d": (8, 32), "tsn": (2, 8), "3d": (1, 2), "fusion": (1, 4)}
SMALL_SIZE, SMALL_FRAMES = 112, 16
QUICK_SIZE, QUICK_FRAMES = 64, 8
WIN_MODELS = {"resnet50": 8, "i3d": 1}  # cheap wins: model and batch, at the paper's size


# ---- small helpers ------------------------------------------------------------------------------


def machine_info(device: str) -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        mem_kb = int(next(line for line in handle if line.startswith("MemTotal")).split()[1])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout.strip()
    info = {
        "cores": len(os.sched_getaffinity(0)),
        "cpu": model,
        "ram_gib": round(mem_kb / (1 << 20), 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "commit": commit,
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "loadavg_start": list(os.getloadavg()),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all but idle and iowait) since boot."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def load_meter() -> Iterator[dict[str, float]]:
    """Fills the dict with `own_cores` (this process) and `other_cores` (everything else)."""
    figures: dict[str, float] = {}
    busy0, own0, start = machine_busy_seconds(), time.process_time(), time.perf_counter()
    yield figures
    wall = time.perf_counter() - start
    own = time.process_time() - own0
    figures["own_cores"] = own / wall
    figures["other_cores"] = max(0.0, (machine_busy_seconds() - busy0 - own) / wall)


def kind(model: nn.Module) -> str:
    """The batch class of a model: TSN, a mid-level fusion network, a clip network, an image one."""
    if isinstance(model, TSN):
        return "tsn"
    if isinstance(model, TwoStreamFusion | Fused3D):
        return "fusion"
    return "3d" if info_of(model).dims == 3 else "2d"


def make_input(model: nn.Module, batch: int, size: int | None, frames: int | None) -> tuple:
    """The model's example input; None keeps the paper's size / frames."""
    kwargs: dict[str, int] = {}
    if size is not None:
        kwargs["size"] = size
    if frames is not None and kind(model) == "3d":
        kwargs["frames"] = frames
    return model.example_input(batch, **kwargs)


def as_tuple(result: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return result if isinstance(result, tuple) else (result,)


def describe_input(inputs: tuple[Tensor, ...]) -> str:
    return " + ".join("x".join(str(d) for d in x.shape[1:]) for x in inputs)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(call: Callable[[], object], min_seconds: float, device: str, max_calls: int = 20) -> dict:
    """Seconds per call: one warm-up call, then calls until `min_seconds` (at least 2)."""
    synchronize(device)
    start = time.perf_counter()
    call()
    synchronize(device)
    warmup = time.perf_counter() - start
    calls, start = 0, time.perf_counter()
    with load_meter() as load:
        while calls < 2 or (time.perf_counter() - start < min_seconds and calls < max_calls):
            call()
            synchronize(device)
            calls += 1
    seconds = (time.perf_counter() - start) / calls
    return {"seconds_per_call": seconds, "calls": calls, "warmup_seconds": warmup, **load}


def train_step(model: nn.Module, inputs: tuple[Tensor, ...]) -> Callable[[], None]:
    """Forward, cross-entropy on every output, backward (no optimizer step)."""
    target = torch.zeros(inputs[0].shape[0], dtype=torch.long, device=inputs[0].device)

    def step() -> None:
        loss = sum(F.cross_entropy(out, target) for out in as_tuple(model(*inputs)))
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def within(contexts: Sequence[Callable[[], Any]], call: Callable[[], Any]) -> Any:
    with contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context())
        return call()


# ---- 1. parameters and FLOPs ------------------------------------------------------------------


def count_flops(name: str, size: int | None, frames: int | None) -> dict[str, float]:
    """Forward and forward+backward multiply-accumulates per clip, counted on the meta device."""
    with torch.device("meta"):
        model = create_model(name)
        inputs = make_input(model, 2, size, frames)  # 2: BatchNorm1d layers train on batches only
    counter = FlopCounterMode(display=False)
    with counter:
        model.eval()(*inputs)
    forward = counter.get_total_flops() / 4  # FLOPs / 2 = MACs, over a batch of 2
    with counter:
        sum(out.sum() for out in as_tuple(model.train()(*inputs))).backward()
    return {"forward_macs": forward, "train_macs": counter.get_total_flops() / 4}


# ---- 2. clips/s -------------------------------------------------------------------------------


def speed(name: str, size: int | None, frames: int | None, batch: int, args) -> dict[str, Any]:
    torch.manual_seed(0)
    model = create_model(name).to(args.device)
    if any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):
        batch = max(batch, 2)  # BatchNorm1d after fc6 trains on batches only
    inputs = tuple(x.to(args.device) for x in make_input(model, batch, size, frames))
    model.eval()
    with torch.no_grad():
        forward = timed(lambda: model(*inputs), args.min_seconds, args.device)
    model.train()
    train = timed(train_step(model, inputs), args.min_seconds, args.device)
    return {
        "input": describe_input(inputs),
        "batch": batch,
        "forward": {**forward, "clips_per_s": batch / forward["seconds_per_call"]},
        "train": {**train, "clips_per_s": batch / train["seconds_per_call"]},
    }


def models_section(args) -> dict[str, Any]:
    results: dict[str, Any] = {}
    sizes = {"paper": (None, None), "small": (SMALL_SIZE, SMALL_FRAMES)}
    sizes = {label: sizes[label] for label in args.sizes}
    if args.quick:
        sizes = {"small": (QUICK_SIZE, QUICK_FRAMES)}
    for name in args.models:
        with torch.device("meta"):
            model = create_model(name)
        entry: dict[str, Any] = {
            "params": sum(p.numel() for p in model.parameters()),
            "kind": kind(model),
        }
        for label, (size, frames) in sizes.items():
            batch = BATCH[entry["kind"]][0 if label == "paper" else 1]
            try:
                f = count_flops(name, size, frames)
            except FlowkitError as error:  # a network whose layers fix the clip (C3D's fc6, T3D)
                emit(f"  {name} {label}: skipped ({error})")
                continue
            f.update(speed(name, size, frames, batch, args))
            f["forward"]["gflops_per_s"] = 2 * f["forward_macs"] * f["forward"]["clips_per_s"] / 1e9
            f["train"]["gflops_per_s"] = 2 * f["train_macs"] * f["train"]["clips_per_s"] / 1e9
            entry[label] = f
            emit(
                f"  {name} {label} {f['input']} x {batch}: "
                f"forward {f['forward']['clips_per_s']:.2f} clips/s, "
                f"train {f['train']['clips_per_s']:.2f} clips/s "
                f"(other processes' cores {f['forward']['other_cores']:.2f} / "
                f"{f['train']['other_cores']:.2f})"
            )
        results[name] = entry
    return results


def models_text(results: dict[str, Any]) -> str:
    rows = []
    for name, entry in results.items():
        for label in ("paper", "small"):
            if label not in entry:
                continue
            f = entry[label]
            fwd, train = f["forward"], f["train"]
            rows.append(
                [
                    f"`{name}`",
                    f"{label}: {f['input']}",
                    f"{entry['params'] / 1e6:.2f}M",
                    f"{f['forward_macs'] / 1e9:.1f}",
                    f"{f['train_macs'] / 1e9:.1f}",
                    f["batch"],
                    f"{fwd['clips_per_s']:.2f} ({fwd['calls']})",
                    f"{train['clips_per_s']:.2f} ({train['calls']})",
                    f"{fwd['gflops_per_s']:.0f} / {train['gflops_per_s']:.0f}",
                    f"{max(fwd['other_cores'], train['other_cores']):.2f}",
                ]
            )
    headers = [
        "model", "input per clip", "params", "GMACs fwd", "GMACs fwd+bwd", "batch",
        "fwd clips/s (calls)", "fwd+bwd clips/s (calls)", "GFLOP/s fwd / fwd+bwd",
        "other cores (max)",
    ]  # fmt: skip
    return md_table(headers, rows)


# ---- 3. cheap wins ----------------------------------------------------------------------------


def measure_variant(
    label: str,
    model: nn.Module,
    inputs: tuple[Tensor, ...],
    forward_contexts: Sequence[Callable[[], Any]],
    train_contexts: Sequence[Callable[[], Any]] | None,
    reference: Tensor,
    args,
) -> dict[str, Any]:
    """One way of running the model: its speed, and how far its logits are from fp32 eager's."""
    batch = inputs[0].shape[0]

    def forward() -> Tensor:
        return within(forward_contexts, lambda: model(*inputs))

    start = time.perf_counter()
    out = forward().float()  # a compiled model compiles here
    first_call = time.perf_counter() - start
    fwd = timed(forward, args.min_seconds, args.device)
    row: dict[str, Any] = {
        "variant": label,
        "first_call_seconds": first_call,
        "forward": {**fwd, "clips_per_s": batch / fwd["seconds_per_call"]},
        "max_relative_logit_difference": (out - reference).abs().max().item()
        / reference.abs().max().item(),
        "top1_agreement": (out.argmax(-1) == reference.argmax(-1)).float().mean().item(),
    }
    if train_contexts is not None:
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        model.train()
        step = train_step(model, inputs)
        train = timed(lambda: within(train_contexts, step), args.min_seconds, args.device)
        row["train"] = {**train, "clips_per_s": batch / train["seconds_per_call"]}
        model.eval().load_state_dict(weights)  # train mode moved the BN statistics
    emit(
        f"  {label}: forward {row['forward']['clips_per_s']:.2f} clips/s"
        + (f", train {row['train']['clips_per_s']:.2f} clips/s" if "train" in row else "")
        + f", first call {first_call:.1f} s, "
        f"max |logit difference| / max |logit| {row['max_relative_logit_difference']:.1e}"
    )
    return row


def wins_for(name: str, batch: int, args) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    eager = create_model(name).to(args.device).eval()
    size, frames = (QUICK_SIZE, QUICK_FRAMES) if args.quick else (None, None)
    inputs = tuple(x.to(args.device) for x in make_input(eager, batch, size, frames))
    layout = torch.channels_last_3d if inputs[0].dim() == 5 else torch.channels_last
    last = create_model(name).to(args.device).eval()
    last.load_state_dict(eager.state_dict())
    last = last.to(memory_format=layout)
    last_inputs = tuple(x.contiguous(memory_format=layout) for x in inputs)
    with torch.no_grad():
        reference = eager(*inputs).float()
    emit(f"  {name}, {describe_input(inputs)} x {batch}:")

    def bf16() -> Any:
        return torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16)

    no_grad, plain = torch.no_grad, contextlib.nullcontext
    variants = [
        ("baseline: eval, no_grad, fp32", eager, inputs, [no_grad], [plain]),
        ("torch.inference_mode", eager, inputs, [torch.inference_mode], None),
        ("channels-last", last, last_inputs, [no_grad], [plain]),
        ("bf16 autocast", eager, inputs, [no_grad, bf16], [bf16]),
    ]
    if not args.no_compile:
        variants += [
            ("torch.compile", torch.compile(eager), inputs, [no_grad], None),
            ("torch.compile + channels-last", torch.compile(last), last_inputs, [no_grad], None),
            ("torch.compile + bf16 autocast", torch.compile(eager), inputs, [no_grad, bf16], None),
        ]
    return [measure_variant(*v, reference, args) for v in variants]


def wins_section(args) -> dict[str, Any]:
    results = {}
    for name, batch in WIN_MODELS.items():
        if name in args.models:
            results[name] = {"batch": batch, "rows": wins_for(name, batch, args)}
    return results


def wins_text(results: dict[str, Any]) -> str:
    parts = []
    for name, entry in results.items():
        rows = []
        base = entry["rows"][0]
        for row in entry["rows"]:
            fwd, train = row["forward"], row.get("train")
            rows.append(
                [
                    row["variant"],
                    f"{fwd['clips_per_s']:.2f}",
                    f"{fwd['clips_per_s'] / base['forward']['clips_per_s']:.2f}x",
                    f"{train['clips_per_s']:.2f}" if train else "",
                    f"{train['clips_per_s'] / base['train']['clips_per_s']:.2f}x" if train else "",
                    f"{row['first_call_seconds']:.1f}",
                    f"{row['max_relative_logit_difference']:.1e}",
                    f"{row['top1_agreement']:.2f}",
                    f"{max(fwd['other_cores'], (train or fwd)['other_cores']):.2f}",
                ]
            )
        headers = [
            "variant", "fwd clips/s", "vs baseline", "fwd+bwd clips/s", "vs baseline",
            "first call s", "max logit diff (rel.)", "top-1 agreement", "other cores (max)",
        ]  # fmt: skip
        parts.append(f"`{name}`, batch {entry['batch']}:\n\n" + md_table(headers, rows))
    return "\n\n".join(parts)


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small inputs, one timed call each")
    parser.add_argument("--out", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    parser.add_argument("--min-seconds", type=float, default=None, help="timed seconds per figure")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--no-wins", action="store_true", help="skip section 3")
    parser.add_argument("--sizes", nargs="+", choices=("paper", "small"), default=("paper", "small"),
                        help="which inputs of section 1-2 to time (default both)")
    args = parser.parse_args(argv)
    if args.min_seconds is None:
        args.min_seconds = 0.0 if args.quick else 5.0
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    report: dict[str, Any] = {"machine": machine_info(args.device), "quick": args.quick}
    emit(f"machine: {json.dumps(report['machine'])}")
    start = time.perf_counter()
    emit("1-2. parameters, FLOPs, clips/s")
    report["models"] = models_section(args)
    if not args.no_wins:
        emit("3. cheap wins")
        report["wins"] = wins_section(args)
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    report["seconds"] = time.perf_counter() - start
    emit()
    emit(models_text(report["models"]))
    if report.get("wins"):
        emit()
        emit(wins_text(report["wins"]))
    emit()
    emit(
        f"load average {report['machine']['loadavg_start']} before, "
        f"{report['machine']['loadavg_end']} after; {report['seconds']:.0f} s"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
        emit(f"figures written to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
