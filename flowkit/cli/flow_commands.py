"""Flow for one pair of images, its error against ground truth, and synthetic videos."""

from __future__ import annotations

from pathlib import Path

import click

from flowkit.cli.app import (
    cli,
    engine_epilog,
    engine_options,
)
from flowkit.errors import FlowkitError


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--kind", type=click.Choice(["actions", "camera"]), default="actions", show_default=True,
              help="actions: the 8-class two-stream demo dataset; camera: 4 clips of camera motion.")
@click.option("--videos-per-class", type=int, default=24, show_default=True)
@click.option("--test-per-class", type=int, default=8, show_default=True)
@click.option("--frames", type=int, default=16, show_default=True)
@click.option("--size", type=int, default=64, show_default=True, help="Frame side in pixels.")
@click.option("--seed", type=int, default=0, show_default=True)
def synth(folder: Path, kind: str, videos_per_class: int, test_per_class: int, frames: int,
          size: int, seed: int) -> None:
    """Write synthetic videos into FOLDER: a small action dataset (with UCF101-style split files
    in FOLDER/splits) in which colour and motion each carry part of the label, or camera motions."""
    from flowkit.synth import write_synthetic

    paths = write_synthetic(folder, kind, videos_per_class, test_per_class, frames, size, seed)
    click.echo(f"wrote {len(paths)} videos to {folder}")


@cli.command(epilog=engine_epilog())
@click.argument("frame1", type=click.Path(path_type=Path))
@click.argument("frame2", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="A .flo file (Middlebury format) or a .png picture (colour wheel).")
@engine_options
def flow(frame1: Path, frame2: Path, output: Path, algorithm: str, engine: str, device: str,
         preset: str, params: tuple[str, ...]) -> None:
    """Optical flow from the image FRAME1 to the image FRAME2."""
    from flowkit.flow.engines import create_engine, parse_params, resolve_backend
    from flowkit.flow.pairs import flow_between_files, write_flow_file

    backend = resolve_backend(algorithm, engine)
    # One pair never repays torch.compile's start-up cost.
    flow_engine = create_engine(algorithm, parse_params(params), backend, device, preset, compile=False)
    result, seconds = flow_between_files(flow_engine, frame1, frame2)
    write_flow_file(output, result)
    speed = float((result**2).sum(axis=-1).mean() ** 0.5)
    click.echo(f"wrote {output}: {result.shape[1]}x{result.shape[0]}, {algorithm} on "
               f"{flow_engine.backend}/{flow_engine.device} in {seconds:.2f} s, rms motion {speed:.2f} px")


@cli.command("flow-error")
@click.argument("estimate", type=click.Path(path_type=Path))
@click.argument("truth", type=click.Path(path_type=Path))
def flow_error(estimate: Path, truth: Path) -> None:
    """Average endpoint and angular error of the flow ESTIMATE against TRUTH (.flo files)."""
    from flowkit.flow.flo import read_flo
    from flowkit.flow.metrics import angular_error, endpoint_error, known_mask

    est, gt = read_flo(estimate), read_flo(truth)
    if est.shape != gt.shape:
        raise FlowkitError(f"{estimate} is {est.shape[1]}x{est.shape[0]}, {truth} {gt.shape[1]}x{gt.shape[0]}")
    known = known_mask(gt)
    click.echo(f"EPE {endpoint_error(est, gt):.4f} px  AE {angular_error(est, gt):.3f} deg  "
               f"({known.mean():.1%} of pixels known)")
