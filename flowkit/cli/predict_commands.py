"""Classes of new videos under a trained run: predict."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flowkit.cli.app import EXIT_FAILED, cli
from flowkit.training.precision import AMP_MODES


@cli.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--run", "run", type=click.Path(path_type=Path), required=True,
              help="A train or train-two-stream run folder, one stream's folder, or its final.pt.")
@click.option("--top-k", type=int, default=5, show_default=True, help="Classes shown per video.")
@click.option("--keep", type=click.Path(path_type=Path), default=None,
              help="Keep the videos' flow in this dataset (default: a temporary one, removed).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--jobs", type=int, default=None, help="Extraction worker processes [default: the cores].")
@click.option("--amp", type=click.Choice(AMP_MODES), default="off", show_default=True,
              help="The networks' precision: off (float32), bf16, fp16, auto (fp16 on CUDA).")
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def predict(videos: tuple[Path, ...], run: Path, top_k: int, keep: Path | None, device: str, jobs: int | None,
            amp: str, as_json: bool, quiet: bool) -> None:
    """Top classes of each VIDEO under a trained run: its flow made as the run's data's was, its
    test protocol, its fusion."""
    from flowkit.prediction.predictor import predict_videos

    report = predict_videos(videos, run, top_k, keep, device, jobs, amp, progress=not quiet and not as_json)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        click.echo(f"run: {report.run} ({report.protocol})")
        for prediction in report.predictions:
            click.echo(prediction.video)
            width = max(len(name) for name, _ in prediction.top)
            for rank, (name, probability) in enumerate(prediction.top, 1):
                click.echo(f"  {rank}. {name:{width}s} {probability:6.1%}")
        if report.kept:
            click.echo(f"flow kept in {report.kept}")
    for video, error in report.failed.items():
        click.echo(f"failed: {video}: {error}", err=True)
    if not report.ok:
        sys.exit(EXIT_FAILED)
