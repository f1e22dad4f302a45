"""Commands on a dataset: info, verify, show, and rawframes export and import."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flowkit.cli.app import (
    EXIT_FAILED,
    cli,
    echo_failures,
    label_options,
)
from flowkit.flow.quantize import DEFAULT_BOUND


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def info(dataset: Path, as_json: bool) -> None:
    """What DATASET holds: videos, frames, bytes, algorithm and parameters, failures."""
    from flowkit.store.summary import describe, summarize

    summary = summarize(dataset)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    click.echo(describe(summary, str(dataset)))


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def verify(dataset: Path, quiet: bool) -> None:
    """Read every video of DATASET back and check it; exit 1 on any damage.

    Checks the checksum of every stored byte of flow and RGB, reads every dataset end to end,
    parses every attribute and reads each shard's tree (docs/FORMAT.md: what this cannot see).
    Each damaged video is marked in DATASET: run the `flowkit extract` (or `import-rawframes`)
    that made it again, the same command, and it redoes exactly those videos from their sources
    and clears the marks; `flowkit verify` then says OK.
    """
    from tqdm import tqdm

    from flowkit.store.verify import verify_store

    # disable=None: no bar when stderr is not a terminal (logs, CI).
    with tqdm(unit="video", desc="verify", disable=True if quiet else None, leave=False) as bar:
        report = verify_store(dataset, progress=lambda _: bar.update(1))
    for problem in report.problems:
        click.echo(f"damaged: {problem}", err=True)
    status = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    click.echo(f"{dataset}: {report.videos} videos, {report.frames} frames, {report.pairs} pairs: {status}")
    if report.marked:
        click.echo(f"marked {report.marked} damaged video(s): the same `flowkit extract` (or "
                   "`import-rawframes`) command as before redoes them from their sources", err=True)
    if report.mark_error:
        click.echo(f"problem: {report.mark_error}", err=True)
    if not report.ok:
        sys.exit(EXIT_FAILED)


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.argument("video")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="A .png/.jpg (one pair) or .mp4/.avi (every pair).")
@click.option("--pair", "index", type=int, default=None, help="Which pair to show, from 0 (negative: from the end) [default: the middle one].")
@click.option("--max-flow", type=float, default=None, help="Displacement shown at full saturation.")
def show(dataset: Path, video: str, output: Path, index: int | None, max_flow: float | None) -> None:
    """Picture VIDEO's RGB frames beside their flow in the Middlebury colour wheel."""
    from flowkit.store.pictures import write_flow_picture
    from flowkit.store.reader import FlowStore

    with FlowStore(dataset) as store:
        path = write_flow_picture(store.video(video), output, index, max_flow)
    click.echo(f"wrote {path}")


@cli.command("export-rawframes")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.argument("out_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--jpeg-quality", type=int, default=95, show_default=True,
              help="JPEG quality of the flow images (RGB frames are copied as stored).")
@click.option("--video", "videos", multiple=True, metavar="ID",
              help="Export only this video (repeatable) [default: all].")
@label_options
@click.option("--absolute", is_flag=True,
              help="List absolute paths (DIR resolved), for loaders that open them from anywhere (tsn-pytorch).")
@click.option("--warped", is_flag=True,
              help="Write the warped flow (extract --warp) as the flow_x/flow_y files, as dense_flow's extract_warp_gpu.")
def export_rawframes(dataset: Path, out_dir: Path, jpeg_quality: int, videos: tuple[str, ...],
                     labels: Path | None, label_format: str, split: int, test_list: Path | None,
                     absolute: bool, warped: bool) -> None:
    """Write DATASET as mmaction2/TSN rawframes: DIR/<id>/img_00001.jpg, flow_x_00001.jpg ...

    Also writes DIR/rawframes_rgb.txt and DIR/rawframes_flow.txt (`path total_frames label`),
    labels 0-based from --labels (e.g. UCF101's classInd.txt order), else by class folder.
    """
    from flowkit.data.annotations import LabelSource
    from flowkit.rawframes import export_rawframes as run_export

    source = LabelSource(labels, label_format, split, test_list)
    report = run_export(dataset, out_dir, jpeg_quality, list(videos) or None, source, absolute, warped)
    click.echo(
        f"{out_dir}: exported {report.exported} videos ({report.frames} frames, {report.pairs} "
        f"flow pairs) in {report.seconds:.1f} s; {len(report.failed)} failed",
        err=True,
    )
    if report.unlabelled:
        why = report.unlabelled_reason or f"{labels or 'the label source'} does not label them"
        click.echo(f"{report.unlabelled} videos listed with label -1: {why}", err=True)
    echo_failures(report.failed)
    if not report.ok:
        sys.exit(EXIT_FAILED)


@cli.command("import-rawframes")
@click.argument("in_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--bound", type=float, default=DEFAULT_BOUND, show_default=True,
              help="The bound (pixels) the flow JPEGs were quantized with.")
@click.option("--force", is_flag=True, help="Redo every folder, even those already imported.")
def import_rawframes(in_dir: Path, dataset: Path, bound: float, force: bool) -> None:
    """Import every rawframes folder under DIR into DATASET, in any layout it detects: TSN's
    img_00001.jpg, flow_x_00001.jpg; denseflow's from 00000; mmaction2's x_00001.jpg, y_00001.jpg;
    twostreamfusion's u/<id>/frame000001.jpg, v/<id>/... (`flowkit info` says which it read).

    Run it again to resume: folders already imported and unchanged are skipped.
    """
    from flowkit.rawframes import import_rawframes as run_import

    report = run_import(in_dir, dataset, bound=bound, force=force)
    dropped = len(report.dropped_extra_flow)
    click.echo(
        f"{dataset}: imported {report.imported} videos ({report.pairs} pairs) in "
        f"{report.seconds:.1f} s; {report.skipped} already done; {len(report.failed)} failed"
        + (f"; dropped the extra last flow of {dropped}" if dropped else ""),
        err=True,
    )
    echo_failures(report.failed, report.problems)
    if not report.ok:
        sys.exit(EXIT_FAILED)
