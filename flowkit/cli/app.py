"""The `flowkit` command group: one-line errors and exit codes, and the pieces commands share."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from flowkit import __version__
from flowkit.errors import FlowkitError

EXIT_FAILED = 1  # the command ran, but some videos failed or data is damaged
EXIT_BAD_INPUT = 2  # nothing was done: the input, output or options are wrong
EXIT_INTERRUPTED = 130


class FlowkitGroup(click.Group):
    """Turns user-facing errors into one line on stderr and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FlowkitError as exc:
            if os.environ.get("RANK", "0") == "0":  # under torchrun every rank meets it: say it once
                click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except OSError as exc:  # disk full, permission changed mid-run...
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            click.echo(f"error: {exc.strerror or exc}{where}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=FlowkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowkit")
def cli() -> None:
    """TV-L1 optical flow into crash-safe HDF5 shards, and the two-stream networks that read them."""


def engine_epilog() -> str:
    from flowkit.flow.engines import ALGORITHMS, TVL1_PRESETS, engine_class

    lines = ["\b", "Parameters of each algorithm (--param NAME=VALUE), with defaults:"]
    for name in ALGORITHMS:
        params = engine_class(name, "auto").PARAMS
        lines.append(f"  {name}: " + ", ".join(f"{p.name}={p.default}" for p in params))
    lines.append("TV-L1 presets (--preset), applied before --param:")
    for name, values in TVL1_PRESETS.items():
        lines.append(f"  {name}: " + (", ".join(f"{k}={v}" for k, v in values.items()) or "OpenCV's defaults"))
    return "\n".join(lines)


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--algorithm, --engine, --device, --preset, --param and --weights, shared by `extract` and
    `flow`."""
    options = [
        click.option("--algorithm", default="tvl1", show_default=True,
                     help="tvl1, dis, farneback or motionnet (needs --weights)."),
        click.option("--engine", default="auto", show_default=True,
                     help="tvl1 on opencv or torch (flowkit's own TV-L1); auto: torch, the faster."),
        click.option("--device", default="auto", show_default=True,
                     help="Torch engine's device: auto (CUDA when present), cpu, cuda, cuda:N."),
        click.option("--preset", default="default", show_default=True,
                     help="TV-L1 parameter set: default (OpenCV's), fast, accurate, or denseflow "
                          "(OpenCV's CUDA TV-L1 as denseflow runs it; torch engine)."),
        click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
                     help="An algorithm parameter (repeatable); see the list below."),
        click.option("--weights", type=click.Path(path_type=Path), default=None,
                     help="motionnet's weights file (flowkit fit-motionnet); --param weights=FILE."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def engine_params(params: tuple[str, ...], weights: Path | None) -> dict[str, str]:
    """`--param` pairs and `--weights` as one dict of engine parameters."""
    from flowkit.flow.engines import parse_params

    merged = parse_params(params)
    if weights is not None:
        merged["weights"] = str(weights)
    return merged


def label_option_list() -> list[Callable[..., Any]]:
    """--labels, --format, --split and --test-list: a label source for `load_labels`."""
    return [
        click.option("--labels", type=click.Path(path_type=Path), default=None,
                     help="UCF101 or HMDB51 split folder, Kinetics CSV, mmaction2 list or CSV "
                          "[default: the class folders of the video ids]."),
        click.option("--format", "label_format", default="auto", show_default=True,
                     help="auto, ucf101, hmdb51, kinetics, filelist, csv or folders."),
        click.option("--split", type=int, default=1, show_default=True, help="UCF101/HMDB51 split."),
        click.option("--test-list", type=click.Path(path_type=Path), default=None,
                     help="The test list, for a --labels file list or CSV."),
    ]


def label_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The label-source options (label_option_list) on one command."""
    for option in reversed(label_option_list()):
        command = option(command)
    return command


def echo_failures(failed: list[Any], problems: list[str] = ()) -> None:
    """One line per failed video and per problem with the dataset, on stderr."""
    for failure in failed:
        click.echo(f"failed: {failure.source}: {failure.error}", err=True)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)


def print_metrics(rows: dict[str, dict[str, float]]) -> None:
    click.echo(f"{'':14s} {'top-1':>7s} {'top-5':>7s} {'mean class':>11s}")
    for name, m in rows.items():
        click.echo(f"{name:14s} {m['top1']:7.1%} {m['top5']:7.1%} {m['mean_class_accuracy']:11.1%}")


