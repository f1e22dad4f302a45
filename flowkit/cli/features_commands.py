"""Clip features of a dataset: features."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flowkit.cli.app import EXIT_FAILED, cli
from flowkit.training.precision import AMP_MODES


@cli.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--model", default="i3d_two_stream", show_default=True,
              help="A registered clip network (i3d, x3d_m, ...) or i3d_two_stream.")
@click.option("--weights", multiple=True, metavar="[rgb=|flow=]FILE",
              help="Checkpoint (pytorch-i3d's, a run's final.pt, inflated 2D); rgb=/flow= for one "
                   "stream (repeatable). None: random weights.")
@click.option("--modality", type=click.Choice(["rgb", "flow", "both"]), default="both", show_default=True)
@click.option("--clip", type=int, default=16, show_default=True, help="Frames per clip (video_features' stack).")
@click.option("--step", type=int, default=16, show_default=True, help="Frames between clip starts.")
@click.option("--layer", type=click.Choice(["pool", "logits"]), default="pool", show_default=True,
              help="pool: the classifier's input (I3D: 1024-d); logits.")
@click.option("--size", type=int, default=224, show_default=True, help="Centre crop side.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Clips per forward pass.")
@click.option("--format", "fmt", type=click.Choice(["h5", "npy"]), default="h5", show_default=True,
              help="h5: one file, features/<id>/<modality>; npy: OUT/<id>_<modality>.npy.")
@click.option("--amp", type=click.Choice(AMP_MODES), default="off", show_default=True,
              help="The forward pass's precision: off (float32), bf16, fp16, auto (fp16 on CUDA).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def features(data: Path, out: Path, model: str, weights: tuple[str, ...], modality: str, clip: int,
             step: int, layer: str, size: int, device: str, batch_size: int, fmt: str, amp: str,
             as_json: bool, quiet: bool) -> None:
    """Clip features of every video of DATA into OUT; rerun to resume (done videos are skipped)."""
    from flowkit.training.features import FeatureSettings, extract_features

    settings = FeatureSettings(model=model, weights=weights, modality=modality, clip=clip, step=step,
                               layer=layer, size=size, device=device, batch_size=batch_size, format=fmt, amp=amp)
    report = extract_features(data, out, settings, progress=not quiet and not as_json)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        click.echo(f"{out}: features of {report.computed} videos ({report.clips} clips) in "
                   f"{report.elapsed_s:.1f} s; {report.skipped} already done; {len(report.failed)} failed")
        for video_id, error in report.failed.items():
            click.echo(f"failed: {video_id}: {error}", err=True)
    if not report.ok:
        sys.exit(EXIT_FAILED)
