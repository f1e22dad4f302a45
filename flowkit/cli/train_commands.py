"""Training, evaluation and late fusion: train, train-two-stream, evaluate, fuse."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowkit.cli.app import cli, label_option_list, print_metrics
from flowkit.training.precision import AMP_MODES  # imports no torch: --help stays quick

if TYPE_CHECKING:
    from flowkit.training.runs import RunOutcome

# ---- training --------------------------------------------------------------------------------------------


def _config_epilog() -> str:
    from flowkit.training.config import TrainConfig

    defaults = TrainConfig().to_dict()
    lines = ["\b", "Settings (pipeline TOML keys, or --set KEY=VALUE), with their defaults",
             "(clip_length, clip_stride, crop_size 0: the network's own clip and size):"]
    for key, value in defaults.items():
        if isinstance(value, dict):
            lines.append(f"  [{key}] " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            lines.append(f"  {key}={value}")
    return "\n".join(lines)


def training_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Data, labels, settings and run-folder options shared by `train` and `train-two-stream`."""
    options = [
        click.option("--data", type=click.Path(path_type=Path), required=True, help="A dataset made by `flowkit extract`."),
        *label_option_list(),
        click.option("--pipeline", type=click.Path(path_type=Path), default=None,
                     help="A pipeline TOML file (pipelines/*.toml); options below override it."),
        click.option("--arch", default=None, help="twostream, tsn, or a 3D clip network: i3d, resnet18_3d, ..."),
        click.option("--backbone", default=None, help="2D backbone (resnet18, resnet50, bninception, tiny...)."),
        click.option("--epochs", type=int, default=None, help="Epochs of every stream."),
        click.option("--batch-size", type=int, default=None),
        click.option("--workers", type=int, default=None, help="DataLoader worker processes."),
        click.option("--device", default=None, help="auto, cpu, cuda or cuda:N."),
        click.option("--seed", type=int, default=None),
        click.option("--amp", type=click.Choice(AMP_MODES), default=None,
                     help="Mixed precision: auto (fp16 on CUDA, float32 on CPU), off, bf16, fp16."),
        click.option("--channels-last", is_flag=True, default=None,
                     help="Channels-last network and batches (the same values, faster convolutions)."),
        click.option("--compile", "compile_network", is_flag=True, default=None,
                     help="torch.compile the network (pays a compilation first; CPU: needs g++)."),
        click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
                     help="Any setting, e.g. flow.lr=0.005 or segments=7 (repeatable)."),
        click.option("--out", type=click.Path(path_type=Path), required=True, help="The run folder."),
        click.option("--resume", is_flag=True, help="Continue the run in --out where it stopped."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command(epilog=_config_epilog())
@click.option("--modality", type=click.Choice(["rgb", "flow", "rgbdiff", "warped_flow"]), required=True,
              help="warped_flow: TSN's flow with the camera motion removed (extract --warp); flow's settings.")
@click.option("--init", "init_file", type=click.Path(path_type=Path), default=None,
              help="Start from this checkpoint (ImageNet 2D weights, pytorch-i3d, pytorchvideo "
                   "or SlowFast .pyth, Hara's, a flowkit run's).")
@training_options
def train(modality: str, init_file: Path | None, data: Path, labels: Path | None, label_format: str,
          split: int, test_list: Path | None, pipeline: Path | None, arch: str | None,
          backbone: str | None, epochs: int | None, batch_size: int | None, workers: int | None,
          device: str | None, seed: int | None, amp: str | None, channels_last: bool | None,
          compile_network: bool | None, assignments: tuple[str, ...], out: Path, resume: bool,
          quiet: bool) -> None:
    """Train one stream (rgb, flow, or TSN's rgbdiff or warped_flow) into OUT/<modality>."""
    from flowkit.data.annotations import LabelSource
    from flowkit.training.runs import run_stream
    from flowkit.training.streams import DataSource

    outcome = run_stream(
        modality, DataSource(data, LabelSource(labels, label_format, split, test_list)), pipeline,
        {"arch": arch, "backbone": backbone, "epochs": epochs, "batch_size": batch_size,
         "workers": workers, "device": device, "seed": seed, **_fast_paths(amp, channels_last, compile_network)},
        assignments, init_file, out, resume,
        progress=not quiet)
    _report(outcome)


@cli.command("train-two-stream", epilog=_config_epilog())
@click.option("--fusion", default=None, help="late (default), or mid-level: sum, max, concat, conv, bilinear.")
@click.option("--init-rgb", type=click.Path(path_type=Path), default=None, help="The spatial stream's start.")
@click.option("--init-flow", type=click.Path(path_type=Path), default=None, help="The temporal stream's start.")
@training_options
def train_two_stream(fusion: str | None, init_rgb: Path | None, init_flow: Path | None, data: Path,
                     labels: Path | None, label_format: str, split: int, test_list: Path | None,
                     pipeline: Path | None, arch: str | None, backbone: str | None, epochs: int | None,
                     batch_size: int | None, workers: int | None, device: str | None, seed: int | None,
                     amp: str | None, channels_last: bool | None, compile_network: bool | None,
                     assignments: tuple[str, ...], out: Path, resume: bool, quiet: bool) -> None:
    """Train the spatial and temporal streams and fuse them; print each one's accuracy and the fused."""
    from flowkit.data.annotations import LabelSource
    from flowkit.training.runs import run_two_stream
    from flowkit.training.streams import DataSource

    outcome = run_two_stream(
        DataSource(data, LabelSource(labels, label_format, split, test_list)), pipeline,
        {"arch": arch, "backbone": backbone, "epochs": epochs, "batch_size": batch_size,
         "workers": workers, "device": device, "seed": seed, "fusion": fusion,
         "rgb.init": init_rgb, "flow.init": init_flow, **_fast_paths(amp, channels_last, compile_network)},
        assignments, out, resume, progress=not quiet)
    _report(outcome)


def _fast_paths(amp: str | None, channels_last: bool | None, compile_network: bool | None) -> dict[str, Any]:
    """--amp, --channels-last and --compile as settings; a flag not given leaves the pipeline's."""
    return {"amp": amp, "channels_last": channels_last or None, "compile": compile_network or None}


def _report(outcome: RunOutcome) -> None:
    """A run's test metrics (when it has a test split) and its folder, from one process only."""
    if outcome.reports:
        if outcome.metrics:
            print_metrics(outcome.metrics)
        click.echo(f"run: {outcome.folder}")


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True)
@click.option("--labels", type=click.Path(path_type=Path), default=None)
@click.option("--format", "label_format", default="auto", show_default=True)
@click.option("--split", type=int, default=1, show_default=True)
@click.option("--test-list", type=click.Path(path_type=Path), default=None)
@click.option("--crops", type=click.Choice(["1", "10"]), default=None, help="Centre crop or ten crops.")
@click.option("--snippets", type=int, default=None, help="Test snippets per video (2D networks).")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="Folder for scores.npz, metrics.json, confusion.png [default: next to CHECKPOINT].")
@click.option("--quiet", "-q", is_flag=True)
def evaluate(checkpoint: Path, data: Path, labels: Path | None, label_format: str, split: int,
             test_list: Path | None, crops: str | None, snippets: int | None, out: Path | None,
             quiet: bool) -> None:
    """Score the test split with a stream's model: a run's stream folder (its final model), or a
    final.pt or best.pt."""
    from flowkit.data.annotations import LabelSource
    from flowkit.training.evaluation import evaluate_and_write
    from flowkit.training.streams import DataSource

    scores, folder = evaluate_and_write(checkpoint, DataSource(data, LabelSource(labels, label_format, split, test_list)),
                                        int(crops) if crops else None, snippets, out, not quiet)
    print_metrics({checkpoint.name: scores.metrics()})
    click.echo(f"scores: {folder / 'scores.npz'}")


@cli.command()
@click.argument("scores", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--weights", type=float, multiple=True, help="One per scores file, e.g. --weights 1 --weights 1.5.")
@click.option("--average", type=click.Choice(["logits", "softmax"]), default="logits", show_default=True,
              help="Average class scores (TSN) or probabilities (the two-stream paper).")
@click.option("--learn", is_flag=True, help="Learn the fusion from the labelled scores (5-fold, no label leaks).")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None, help="Write the fused scores (.npz).")
def fuse(scores: tuple[Path, ...], weights: tuple[float, ...], average: str, learn: bool,
         out: Path | None) -> None:
    """Late fusion of saved test scores (.npz from evaluate or a run)."""
    from flowkit.training.scores import fuse_files

    rows, fused = fuse_files(scores, weights, average, learn)
    print_metrics(rows)
    if out:
        fused.save(out)
        click.echo(f"wrote {out}")
