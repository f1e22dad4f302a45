"""`flowkit extract` and the commands that scale it out: partition, merge, split."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flowkit.cli.app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    cli,
    echo_failures,
    engine_epilog,
    engine_options,
    engine_params,
)
from flowkit.flow.quantize import DEFAULT_BOUND


@cli.command(epilog=engine_epilog())
@click.argument("input_dir", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--list", "list_file", type=click.Path(path_type=Path),
              help="Extract only the videos this file names, one path per line, relative to INPUT_DIR.")
@engine_options
@click.option("--short-side", type=int, default=None,
              help="Resize so the shorter side has this many pixels [default: 256].")
@click.option("--size", "fixed_size", default=None, metavar="WxH", help="Resize to exactly WxH, e.g. 340x256.")
@click.option("--no-resize", is_flag=True, help="Keep the source size (rounded to even).")
@click.option("--bound", type=float, default=DEFAULT_BOUND, show_default=True,
              help="Flow is clipped to +-bound pixels before quantization to uint8.")
@click.option("--step", type=int, default=1, show_default=True, help="Flow between frames this far apart.")
@click.option("--fps", type=float, default=None, help="Resample videos to this frame rate first.")
@click.option("--backward", is_flag=True, help="Also store backward flow (frame i+step to frame i).")
@click.option("--warp", is_flag=True,
              help="Also store TSN's warped flow (camera motion removed by a homography) as warped_flow.")
@click.option("--rgb/--no-rgb", default=True, show_default=True, help="Store the RGB frames (JPEG).")
@click.option("--rgb-quality", type=int, default=95, show_default=True, help="JPEG quality of RGB frames.")
@click.option("--flow-format", type=click.Choice(["jpeg", "raw"]), default="jpeg", show_default=True,
              help="Flow as JPEG files of its u/v codes (denseflow's bytes) or a lossless uint8 array.")
@click.option("--flow-quality", type=int, default=95, show_default=True, help="JPEG quality of flow.")
@click.option("--compression", type=int, default=4, show_default=True,
              help="Deflate level of raw flow (0: none, 9: smallest); lossless.")
@click.option("--jobs", "-j", type=int, default=None, help="Worker processes [default: all cores].")
@click.option("--threads", type=int, default=None,
              help="Threads of each worker [default: cores / jobs]; 1 when make -j or a job runner "
                   "runs one extraction per core.")
@click.option("--batch-size", type=int, default=None,
              help="Frame pairs per torch engine call [default: 1 on CPU, 32 on GPU].")
@click.option("--force", is_flag=True, help="Redo every video, even those already done.")
@click.option("--shard-size", type=float, default=1024, show_default=True,
              help="Target shard size in MB (a small one, e.g. 0.001, packs a shard per video).")
@click.option("--scheduler", "--dask", "scheduler", default=None, metavar="ADDRESS",
              help="Run on a Dask cluster: tcp://host:8786, or local:N for N local worker processes.")
@click.option("--task-size", type=int, default=16, show_default=True,
              help="Videos per Dask task; each task writes one shard.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars: failures and a summary only.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's report as JSON.")
def extract(input_dir: Path, output: Path, list_file: Path | None, algorithm: str, engine: str,
            device: str, preset: str, params: tuple[str, ...], weights: Path | None, short_side: int | None,
            fixed_size: str | None, no_resize: bool, bound: float, step: int, fps: float | None, backward: bool,
            warp: bool, rgb: bool, rgb_quality: int,
            flow_format: str, flow_quality: int, compression: int, jobs: int | None,
            threads: int | None, batch_size: int | None, force: bool, shard_size: float, scheduler: str | None,
            task_size: int, quiet: bool, as_json: bool) -> None:
    """Compute optical flow for every video in INPUT_DIR into the dataset OUTPUT (e.g. out.h5).

    Run it again to resume: complete videos are skipped, changed sources are redone.
    """
    from flowkit.extraction.pipeline import extract as run_extract
    from flowkit.extraction.settings import ExtractSettings, frame_size, shard_bytes
    size = frame_size(short_side, fixed_size, no_resize)
    settings = ExtractSettings(
        algorithm=algorithm, params=tuple(sorted(engine_params(params, weights).items())), engine=engine,
        device=device, preset=preset, bound=bound,
        size=size, fps=fps, step=step, backward=backward, warp=warp, rgb=rgb, rgb_quality=rgb_quality,
        flow_format=flow_format, flow_quality=flow_quality, compression=compression,
        batch_size=batch_size,
    )
    report = run_extract(
        input_dir, output, settings, list_file=list_file, jobs=jobs, threads=threads, force=force,
        progress=not quiet and not as_json, shard_bytes=shard_bytes(shard_size),
        scheduler=scheduler, task_size=task_size,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        click.echo(
            f"{output}: extracted {report.extracted} videos ({report.pairs} pairs) in "
            f"{report.seconds:.1f} s; {report.skipped} already done; {len(report.failed)} failed",
            err=True,
        )
        echo_failures(report.failed, report.problems)
        if report.interrupted:
            click.echo("interrupted: run the same command again to continue", err=True)
    if report.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if not report.ok:
        sys.exit(EXIT_FAILED)


# ---- scaling out ------------------------------------------------------------------------------------


@cli.command()
@click.argument("output", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
def merge(output: Path, inputs: tuple[Path, ...]) -> None:
    """Join the datasets INPUTS (made elsewhere: machines, make targets) into OUTPUT.

    Their shards are hard-linked (copied across file systems); all must share one set of settings.
    """
    from flowkit.store.merge import merge_datasets

    report = merge_datasets(output, list(inputs))
    click.echo(f"{output}: {report.videos} videos from {report.inputs} datasets, {report.shards} shards "
               f"({report.linked} linked); {report.failures} failures recorded", err=True)
    echo_failures([], report.problems)


@cli.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--shards", type=int, required=True, help="How many shards to write.")
def split(source: Path, output: Path, shards: int) -> None:
    """Repack the dataset SOURCE into a new dataset OUTPUT of SHARDS shards of about equal size."""
    from flowkit.store.merge import repack

    report = repack(source, output, shards)
    click.echo(f"{output}: {report.videos} videos in {report.shards} shards", err=True)


@cli.command()
@click.argument("input_dir", type=click.Path(path_type=Path))
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--parts", type=int, required=True, help="How many lists.")
@click.option("--list", "list_file", type=click.Path(path_type=Path), help="Split these videos only.")
def partition(input_dir: Path, folder: Path, parts: int, list_file: Path | None) -> None:
    """Split the videos of INPUT_DIR into PARTS lists FOLDER/list-NNN.txt, for `extract --list`.

    A video's list depends on its id only, and a list file is rewritten only when it changes,
    so make (pipelines/extract.mk) redoes only the parts whose videos changed. Prints the lists.
    """
    from flowkit.extraction.partition import write_part_lists
    from flowkit.video import find_videos

    for path in write_part_lists(find_videos(input_dir, list_file), parts, folder):
        click.echo(path)
