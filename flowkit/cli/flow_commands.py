"""Flow for one pair of images, its error against ground truth, and synthetic videos."""

from __future__ import annotations

from pathlib import Path

import click

from flowkit.cli.app import (
    cli,
    engine_epilog,
    engine_options,
    engine_params,
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
         preset: str, params: tuple[str, ...], weights: Path | None) -> None:
    """Optical flow from the image FRAME1 to the image FRAME2."""
    from flowkit.flow.engines import auto_backend, create_engine, resolve_backend
    from flowkit.flow.pairs import flow_between_files, write_flow_file

    # One pair never repays torch.compile's start-up cost: auto is OpenCV's on a CPU.
    chosen = engine_params(params, weights)
    backend = (auto_backend(algorithm, device, preset=preset, params=chosen) if engine == "auto"
               else resolve_backend(algorithm, engine))
    flow_engine = create_engine(algorithm, chosen, backend, device, preset,
                                compile=False)
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


@cli.command("fit-motionnet")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The weights file to write (for --algorithm motionnet --weights).")
@click.option("--steps", type=int, default=2000, show_default=True, help="Adam steps.")
@click.option("--frames", type=int, default=2, show_default=True,
              help="Frames per snippet: 2 for the flow engine; the paper's MotionNet takes 11.")
@click.option("--color/--gray", default=False, show_default=True,
              help="BGR frames (3 channels) or gray (1), as the flow engine sees them.")
@click.option("--snippets", type=int, default=64, show_default=True,
              help="Snippets drawn from DATA (kept in memory).")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True,
              help="Adam's rate (the reference's: 3.2e-5 over 400k steps).")
@click.option("--crop", type=int, default=None, help="Random crops of this side (default: whole frames).")
@click.option("--width", type=float, default=1.0, show_default=True,
              help="Channel multiplier (1: the paper's MotionNet; 0.25: 16x fewer operations).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=int, default=0, show_default=True)
def fit_motionnet(data: Path, output: Path, steps: int, frames: int, color: bool, snippets: int,
                  batch_size: int, lr: float, crop: int | None, width: float, device: str,
                  seed: int) -> None:
    """Fit MotionNet (hidden two-stream's flow network) on the RGB frames of the dataset DATA,
    without ground truth (its photometric, smoothness and SSIM loss); no stored flow is read."""
    from flowkit.training.motionnet import fit_motionnet_on_dataset

    report = fit_motionnet_on_dataset(
        data, output, steps, frames=frames, gray=not color, snippets=snippets, seed=seed,
        batch_size=batch_size, lr=lr, crop=crop, width=width, device=device)
    click.echo(f"wrote {output}: MotionNet ({report['frames']} frames of {report['channels']} channels, "
               f"width {report['width']:g}) fitted on {report['snippets']} snippets of {report['size']} "
               f"in {report['steps']} steps, {report['seconds']:.1f} s; loss {report['first_loss']:.3f} "
               f"-> {report['last_loss']:.3f}")
