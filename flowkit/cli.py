"""The `flowkit` command: parse, call the library, report. No logic of its own lives here."""

from __future__ import annotations

import json
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


def _engine_epilog() -> str:
    from flowkit.flow.engines import ALGORITHMS, TVL1_PRESETS, engine_class

    lines = ["\b", "Parameters of each algorithm (--param NAME=VALUE), with defaults:"]
    for name in ALGORITHMS:
        params = engine_class(name, "opencv").PARAMS
        lines.append(f"  {name}: " + ", ".join(f"{p.name}={p.default}" for p in params))
    lines.append("TV-L1 presets (--preset), applied before --param:")
    for name, values in TVL1_PRESETS.items():
        lines.append(f"  {name}: " + (", ".join(f"{k}={v}" for k, v in values.items()) or "OpenCV's defaults"))
    return "\n".join(lines)


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--algorithm, --engine, --device, --preset and --param, shared by `extract` and `flow`."""
    options = [
        click.option("--algorithm", default="tvl1", show_default=True, help="tvl1, dis or farneback."),
        click.option("--engine", default="auto", show_default=True,
                     help="tvl1 on opencv or torch (flowkit's own TV-L1); auto: torch, the faster."),
        click.option("--device", default="auto", show_default=True,
                     help="Torch engine's device: auto (CUDA when present), cpu, cuda, cuda:N."),
        click.option("--preset", default="default", show_default=True,
                     help="TV-L1 parameter set: default (OpenCV's), fast or accurate."),
        click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
                     help="An algorithm parameter (repeatable); see the list below."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command(epilog=_engine_epilog())
@click.argument("input_dir", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--list", "list_file", type=click.Path(path_type=Path),
              help="Extract only the videos this file names, one path per line, relative to INPUT_DIR.")
@engine_options
@click.option("--short-side", type=int, default=None,
              help="Resize so the shorter side has this many pixels [default: 256].")
@click.option("--size", "fixed_size", default=None, metavar="WxH", help="Resize to exactly WxH, e.g. 340x256.")
@click.option("--no-resize", is_flag=True, help="Keep the source size (rounded to even).")
@click.option("--bound", type=float, default=20.0, show_default=True,
              help="Flow is clipped to +-bound pixels before quantization to uint8.")
@click.option("--step", type=int, default=1, show_default=True, help="Flow between frames this far apart.")
@click.option("--fps", type=float, default=None, help="Resample videos to this frame rate first.")
@click.option("--backward", is_flag=True, help="Also store backward flow (frame i+step to frame i).")
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
@click.option("--shard-size", type=int, default=1024, show_default=True, help="Target shard size in MB.")
@click.option("--scheduler", "--dask", "scheduler", default=None, metavar="ADDRESS",
              help="Run on a Dask cluster: tcp://host:8786, or local:N for N local worker processes.")
@click.option("--task-size", type=int, default=16, show_default=True,
              help="Videos per Dask task; each task writes one shard.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars: failures and a summary only.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's report as JSON.")
def extract(input_dir: Path, output: Path, list_file: Path | None, algorithm: str, engine: str,
            device: str, preset: str, params: tuple[str, ...], short_side: int | None, fixed_size: str | None, no_resize: bool,
            bound: float, step: int, fps: float | None, backward: bool, rgb: bool, rgb_quality: int,
            flow_format: str, flow_quality: int, compression: int, jobs: int | None,
            threads: int | None, batch_size: int | None, force: bool, shard_size: int, scheduler: str | None,
            task_size: int, quiet: bool, as_json: bool) -> None:
    """Compute optical flow for every video in INPUT_DIR into the dataset OUTPUT (e.g. out.h5).

    Run it again to resume: complete videos are skipped, changed sources are redone.
    """
    from flowkit.extraction.pipeline import ExtractSettings
    from flowkit.extraction.pipeline import extract as run_extract
    from flowkit.flow.engines import parse_params
    from flowkit.video import FrameSize

    given = [short_side is not None, fixed_size is not None, no_resize]
    if sum(given) > 1:
        raise FlowkitError("use only one of --short-side, --size and --no-resize")
    if fixed_size:
        size = FrameSize.parse(fixed_size)
        if size.width is None:
            raise FlowkitError(f"--size {fixed_size!r} is not WxH")
    elif no_resize:
        size = FrameSize.keep()
    else:
        size = FrameSize(short_side=short_side if short_side is not None else 256)
    settings = ExtractSettings(
        algorithm=algorithm, params=tuple(sorted(parse_params(params).items())), engine=engine,
        device=device, preset=preset, bound=bound,
        size=size, fps=fps, step=step, backward=backward, rgb=rgb, rgb_quality=rgb_quality,
        flow_format=flow_format, flow_quality=flow_quality, compression=compression,
        batch_size=batch_size,
    )
    report = run_extract(
        input_dir, output, settings, list_file=list_file, jobs=jobs, threads=threads, force=force,
        progress=not quiet and not as_json, shard_bytes=shard_size << 20,
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
        _echo_failures(report.failed, report.problems)
        if report.interrupted:
            click.echo("interrupted: run the same command again to continue", err=True)
    if report.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if not report.ok:
        sys.exit(EXIT_FAILED)


def _echo_failures(failed: list[Any], problems: list[str] = ()) -> None:
    """One line per failed video and per problem with the dataset, on stderr."""
    for failure in failed:
        click.echo(f"failed: {failure.source}: {failure.error}", err=True)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)


def _format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def info(dataset: Path, as_json: bool) -> None:
    """What DATASET holds: videos, frames, bytes, algorithm and parameters, failures."""
    from flowkit.store.summary import summarize

    summary = summarize(dataset)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    settings = summary["settings"]
    kinds = summary.get("bytes_by_kind", {})
    lines = [
        f"{dataset}  (flowkit format {summary['format_version']}, updated {summary['updated_at']})",
        f"videos     {summary['videos']}",
        f"frames     {summary['frames']} RGB frames, {summary['pairs']} flow pairs",
        "sizes      " + ", ".join(f"{size} ({n})" for size, n in summary["sizes"].items()),
        f"storage    {_format_bytes(summary['bytes'])} in {summary['shards']} shard(s): "
        + ", ".join(f"{k} {_format_bytes(v)}" for k, v in kinds.items())
        + (f"; {summary['bytes_per_pair']:.0f} B per flow pair" if summary.get("bytes_per_pair") else ""),
    ]
    if settings:
        params = " ".join(f"{k}={v}" for k, v in settings.get("params", {}).items())
        flow = settings.get("flow_format", "raw")
        if flow == "jpeg" and settings.get("flow_quality") is not None:
            flow += f" q{settings['flow_quality']}"
        rgb = "no"
        if settings.get("rgb"):
            quality = settings.get("rgb_quality")
            rgb = f"jpeg q{quality}" if quality is not None else "jpeg"
        engine = f" ({settings['engine']})" if settings.get("engine") else ""
        lines += [
            f"algorithm  {settings.get('algorithm')}{engine}  {params}".rstrip(),
            f"settings   bound {settings.get('bound', 0):g}, step {settings.get('step', 1)}, "
            f"size {settings.get('size')}, fps {settings.get('fps') or 'source'}, "
            f"backward {'yes' if settings.get('backward') else 'no'}, flow {flow}, rgb {rgb}",
        ]
    failures = summary["failures"]
    lines.append(f"failures   {len(failures)}")
    lines += [f"  {f['source']}: {f['error']}" for f in failures]
    click.echo("\n".join(lines))


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def verify(dataset: Path, quiet: bool) -> None:
    """Read every video of DATASET back and check shapes and checksums; exit 1 on any damage."""
    from tqdm import tqdm

    from flowkit.store.verify import verify_store

    # disable=None: no bar when stderr is not a terminal (logs, CI).
    with tqdm(unit="video", desc="verify", disable=True if quiet else None, leave=False) as bar:
        report = verify_store(dataset, progress=lambda _: bar.update(1))
    for problem in report.problems:
        click.echo(f"damaged: {problem}", err=True)
    status = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    click.echo(f"{dataset}: {report.videos} videos, {report.frames} frames, {report.pairs} pairs: {status}")
    if not report.ok:
        sys.exit(EXIT_FAILED)


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.argument("video")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="A .png/.jpg (one pair) or .mp4/.avi (every pair).")
@click.option("--pair", "index", type=int, default=None, help="Which pair to show [default: the middle one].")
@click.option("--max-flow", type=float, default=None, help="Displacement shown at full saturation.")
def show(dataset: Path, video: str, output: Path, index: int | None, max_flow: float | None) -> None:
    """Picture VIDEO's RGB frames beside their flow in the Middlebury colour wheel."""
    from flowkit.store.pictures import write_flow_picture
    from flowkit.store.reader import FlowStore

    with FlowStore(dataset) as store:
        path = write_flow_picture(store.video(video), output, index, max_flow)
    click.echo(f"wrote {path}")


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
    from flowkit.synth import make_action_dataset, make_camera_videos

    if frames < 2 or size < 16 or videos_per_class <= test_per_class or test_per_class < 1:
        raise FlowkitError("need --frames >= 2, --size >= 16 and 1 <= --test-per-class < --videos-per-class")
    if kind == "camera":
        paths = make_camera_videos(folder, frames, size * 5 // 4, size)
    else:
        paths = make_action_dataset(folder, videos_per_class, frames, size, test_per_class, seed)
    click.echo(f"wrote {len(paths)} videos to {folder}")


@cli.command("export-rawframes")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.argument("out_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--jpeg-quality", type=int, default=95, show_default=True,
              help="JPEG quality of the flow images (RGB frames are copied as stored).")
@click.option("--video", "videos", multiple=True, metavar="ID",
              help="Export only this video (repeatable) [default: all].")
def export_rawframes(dataset: Path, out_dir: Path, jpeg_quality: int, videos: tuple[str, ...]) -> None:
    """Write DATASET as mmaction2/TSN rawframes: DIR/<id>/img_00001.jpg, flow_x_00001.jpg ...

    Also writes DIR/rawframes_rgb.txt and DIR/rawframes_flow.txt (`path total_frames label`).
    """
    from flowkit.rawframes.conversion import export_rawframes as run_export

    report = run_export(dataset, out_dir, jpeg_quality, list(videos) or None)
    click.echo(
        f"{out_dir}: exported {report.exported} videos ({report.frames} frames, {report.pairs} "
        f"flow pairs) in {report.seconds:.1f} s; {len(report.failed)} failed",
        err=True,
    )
    _echo_failures(report.failed)
    if not report.ok:
        sys.exit(EXIT_FAILED)


@cli.command("import-rawframes")
@click.argument("in_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--bound", type=float, default=20.0, show_default=True,
              help="The bound (pixels) the flow JPEGs were quantized with.")
@click.option("--force", is_flag=True, help="Redo every folder, even those already imported.")
def import_rawframes(in_dir: Path, dataset: Path, bound: float, force: bool) -> None:
    """Import every rawframes folder under DIR (img_00001.jpg, flow_x_00001.jpg ...) into DATASET.

    Run it again to resume: folders already imported and unchanged are skipped.
    """
    from flowkit.rawframes.conversion import import_rawframes as run_import

    report = run_import(in_dir, dataset, bound=bound, force=force)
    dropped = len(report.dropped_extra_flow)
    click.echo(
        f"{dataset}: imported {report.imported} videos ({report.pairs} pairs) in "
        f"{report.seconds:.1f} s; {report.skipped} already done; {len(report.failed)} failed"
        + (f"; dropped the extra last flow of {dropped}" if dropped else ""),
        err=True,
    )
    _echo_failures(report.failed, report.problems)
    if not report.ok:
        sys.exit(EXIT_FAILED)


@cli.command(epilog=_engine_epilog())
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
        click.option("--labels", type=click.Path(path_type=Path), default=None,
                     help="UCF101 or HMDB51 split folder, Kinetics CSV, mmaction2 list or CSV "
                          "[default: the class folders of the video ids]."),
        click.option("--format", "label_format", default="auto", show_default=True,
                     help="auto, ucf101, hmdb51, kinetics, filelist, csv or folders."),
        click.option("--split", type=int, default=1, show_default=True, help="UCF101/HMDB51 split."),
        click.option("--test-list", type=click.Path(path_type=Path), default=None,
                     help="The test list, for a --labels file list or CSV."),
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


def _print_metrics(rows: dict[str, dict[str, float]]) -> None:
    click.echo(f"{'':14s} {'top-1':>7s} {'top-5':>7s} {'mean class':>11s}")
    for name, m in rows.items():
        click.echo(f"{name:14s} {m['top1']:7.1%} {m['top5']:7.1%} {m['mean_class_accuracy']:11.1%}")


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
            _print_metrics({modality: scores.metrics()})
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
        _print_metrics(summary)
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
    _print_metrics({checkpoint.name: scores.metrics()})
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
    _print_metrics(rows)
    if out:
        fused.save(out)
        click.echo(f"wrote {out}")


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
    _echo_failures([], report.problems)


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


def main() -> None:
    cli(prog_name="flowkit")
