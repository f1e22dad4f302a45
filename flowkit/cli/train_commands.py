"""Training, evaluation and late fusion: train, train-two-stream, evaluate, fuse."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from flowkit.cli.app import (
    cli,
    label_option_list,
    print_metrics,
)
from flowkit.errors import FlowkitError

# ---- training --------------------------------------------------------------------------------------------


def _config_epilog() -> str:
    from flowkit.training.config import TrainConfig

    defaults = TrainConfig().to_dict()
    lines = ["\b", "Settings (pipeline TOML keys, or --set KEY=VALUE), with their defaults:"]
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
        click.option("--arch", default=None, help="twostream, tsn or i3d."),
        click.option("--backbone", default=None, help="2D backbone (resnet18, resnet50, bninception, tiny...)."),
        click.option("--epochs", type=int, default=None, help="Epochs of every stream."),
        click.option("--batch-size", type=int, default=None),
        click.option("--workers", type=int, default=None, help="DataLoader worker processes."),
        click.option("--device", default=None, help="auto, cpu, cuda or cuda:N."),
        click.option("--seed", type=int, default=None),
        click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
                     help="Any setting, e.g. flow.lr=0.005 or segments=7 (repeatable)."),
        click.option("--out", type=click.Path(path_type=Path), required=True, help="The run folder."),
        click.option("--resume", is_flag=True, help="Continue the run in --out where it stopped."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _training_setup(data: Path, labels: Path | None, label_format: str, split: int,
                    test_list: Path | None, pipeline: Path | None, overrides: dict[str, Any],
                    assignments: tuple[str, ...]) -> tuple[Any, Any]:
    from flowkit.params import parse_assignments
    from flowkit.training.config import load_config
    from flowkit.training.train import load_data

    settings = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in settings:
        epochs = settings.pop("epochs")
        settings["rgb.epochs"] = settings["flow.epochs"] = epochs
    settings.update(parse_assignments(assignments))
    config = load_config(pipeline, settings)
    return config, load_data(data, labels, label_format, split, test_list)


@cli.command(epilog=_config_epilog())
@click.option("--modality", type=click.Choice(["rgb", "flow", "rgbdiff"]), required=True)
@click.option("--init", "init_file", type=click.Path(path_type=Path), default=None,
              help="Start from this checkpoint (ImageNet 2D weights, pytorch-i3d, a flowkit run's).")
@training_options
def train(modality: str, init_file: Path | None, data: Path, labels: Path | None, label_format: str,
          split: int, test_list: Path | None, pipeline: Path | None, arch: str | None,
          backbone: str | None, epochs: int | None, batch_size: int | None, workers: int | None,
          device: str | None, seed: int | None, assignments: tuple[str, ...], out: Path,
          resume: bool, quiet: bool) -> None:
    """Train one stream (rgb, flow or TSN's rgbdiff) into OUT/<modality>."""
    from flowkit.training.distributed import process_group
    from flowkit.training.train import prepare_run, train_stream

    stream_key = "flow" if modality == "flow" else "rgb"
    config, labelled = _training_setup(
        data, labels, label_format, split, test_list, pipeline,
        {"arch": arch, "backbone": backbone, "epochs": epochs, "batch_size": batch_size,
         "workers": workers, "device": device, "seed": seed,
         f"{stream_key}.init": str(init_file) if init_file else None}, assignments)
    with process_group(config.device) as ranks:  # torchrun: one process of several
        run = prepare_run(out, config, labelled, resume, {"command": "train", "modality": modality})
        scores = train_stream(config, labelled, modality, run, resume, progress=not quiet)
    if ranks.main:
        if scores is not None:
            print_metrics({modality: scores.metrics()})
        click.echo(f"run: {run}")


@cli.command("train-two-stream", epilog=_config_epilog())
@click.option("--fusion", default=None, help="late (default), or mid-level: sum, max, concat, conv, bilinear.")
@click.option("--init-rgb", type=click.Path(path_type=Path), default=None, help="The spatial stream's start.")
@click.option("--init-flow", type=click.Path(path_type=Path), default=None, help="The temporal stream's start.")
@training_options
def train_two_stream(fusion: str | None, init_rgb: Path | None, init_flow: Path | None, data: Path,
                     labels: Path | None, label_format: str, split: int, test_list: Path | None,
                     pipeline: Path | None, arch: str | None, backbone: str | None, epochs: int | None,
                     batch_size: int | None, workers: int | None, device: str | None, seed: int | None,
                     assignments: tuple[str, ...], out: Path, resume: bool, quiet: bool) -> None:
    """Train the spatial and temporal streams and fuse them; print each one's accuracy and the fused."""
    from flowkit.training.distributed import process_group
    from flowkit.training.train import prepare_run
    from flowkit.training.train import train_two_stream as run_two_stream

    config, labelled = _training_setup(
        data, labels, label_format, split, test_list, pipeline,
        {"arch": arch, "backbone": backbone, "epochs": epochs, "batch_size": batch_size,
         "workers": workers, "device": device, "seed": seed, "fusion": fusion,
         "rgb.init": str(init_rgb) if init_rgb else None, "flow.init": str(init_flow) if init_flow else None},
        assignments)
    if not labelled.test:
        raise FlowkitError("train-two-stream needs a test split to score and fuse the streams")
    with process_group(config.device) as ranks:  # torchrun: one process of several
        run = prepare_run(out, config, labelled, resume, {"command": "train-two-stream"})
        summary = run_two_stream(config, labelled, run, resume, progress=not quiet)
    if ranks.main:
        print_metrics(summary)
        click.echo(f"run: {run}")


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
    from flowkit.training.train import evaluate_checkpoint, load_data, write_scores

    labelled = load_data(data, labels, label_format, split, test_list)
    scores = evaluate_checkpoint(checkpoint, labelled, int(crops) if crops else None, snippets, not quiet)
    folder = out or (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "evaluation"
    write_scores(scores, folder, checkpoint.name)
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
    from flowkit.training.evaluation import Scores, fuse_learned
    from flowkit.training.evaluation import fuse as fuse_scores

    if weights and learn:
        raise FlowkitError("use --weights or --learn, not both")
    parts = [Scores.load(path) for path in scores]
    fused = fuse_learned(parts) if learn else fuse_scores(parts, weights or None, average)
    rows = {path.stem if path.stem != "scores" else path.parent.name: p.metrics() for path, p in zip(scores, parts, strict=True)}
    rows["fused"] = fused.metrics()
    print_metrics(rows)
    if out:
        fused.save(out)
        click.echo(f"wrote {out}")
