"""Training the streams and fusing them: the run folders `flowkit train` and `train-two-stream` make.

    run/settings.json            the resolved settings, data and labels
    run/<stream>/...             one stream's checkpoints, metrics, curves and scores (trainer.py)
    run/fused/...                late fusion of the two streams' scores (train-two-stream)
    run/summary.json             per-stream and fused accuracy

A stream is `rgb`, `flow`, `rgbdiff` or `warped_flow`; `fusion` is a jointly trained mid-level fusion.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from flowkit.data.datasets import ShardDataset, TwoStreamDataset
from flowkit.errors import FlowkitError
from flowkit.models.fusion import TwoStreamFusion
from flowkit.models.registry import create_model
from flowkit.models.weights import load_init
from flowkit.training.config import TrainConfig, command_config, settings_key
from flowkit.training.distributed import current_ranks, local_batch_size, on_main, process_group
from flowkit.training.evaluation import write_scores
from flowkit.training.scores import Scores, fuse
from flowkit.training.streams import (
    STREAMS,
    DataSource,
    LabelledData,
    fusion_view_logits,
    stream_datasets,
    stream_modality,
    stream_model,
    train_crop,
)
from flowkit.training.trainer import Trainer


def prepare_run(out: str | Path, config: TrainConfig, data: LabelledData, resume: bool,
                extra: dict[str, Any]) -> Path:
    """Create (or, with `resume`, reopen) the run folder; refuse to overwrite another run.
    Under torchrun rank 0 does it, and every rank gets its answer."""
    local_batch_size(config.batch_size, current_ranks())  # before the folder is made
    return on_main(lambda: _prepare_run(Path(out), config, data, resume, extra))


def _prepare_run(out: Path, config: TrainConfig, data: LabelledData, resume: bool,
                 extra: dict[str, Any]) -> Path:
    settings_path = out / "settings.json"
    if out.exists() and any(out.iterdir()) and not resume:
        raise FlowkitError(f"run folder {out} is not empty: use --resume to continue it, or another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise FlowkitError(f"cannot write the run folder {out}: {exc.strerror}") from None
    record = {"config": config.to_dict(), "data": str(data.path), "classes": data.classes,
              "train_videos": len(data.train), "test_videos": len(data.test), **extra}
    if resume and settings_path.exists():
        saved = json.loads(settings_path.read_text())
        if saved.get("config") != record["config"]:
            raise FlowkitError(f"{out} was started with other settings; resume it with the same ones")
    settings_path.write_text(json.dumps(record, indent=1) + "\n")
    return out


def _seed(config: TrainConfig) -> None:
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)


def train_stream(config: TrainConfig, data: LabelledData, stream: str, out: Path, resume: bool = False,
                 progress: bool = True) -> Scores | None:
    """Train one stream in `out/<stream>`; its test scores, or None without a test split."""
    if stream not in STREAMS:
        raise FlowkitError(f"stream must be one of {', '.join(STREAMS)}, not {stream!r}")
    _seed(config)
    train_set, test_set = stream_datasets(config, stream, data)
    model = stream_model(config, stream, len(data.classes))
    settings = config.stream(stream)
    if settings.init:
        load_init(model, settings.init)
    trainer = Trainer(out / stream, stream, model, train_set, test_set, settings, config, data)
    if resume:
        trainer.resume()
    return trainer.fit(progress)


def train_joint_fusion(config: TrainConfig, data: LabelledData, out: Path, resume: bool = False,
                       progress: bool = True) -> Scores | None:
    """Mid-level fusion (Feichtenhofer et al. 2016): both towers trained together, on `fusion_frames`
    time steps per sample, with the fused and the temporal tower's losses summed."""
    _seed(config)
    t = config.fusion_frames
    snippets = max(t, config.test_snippets // t * t)
    rgb_mod, flow_mod = stream_modality(config, "rgb"), stream_modality(config, "flow")
    common = {"size": config.crop_size, "seed": config.seed}
    crop = train_crop(config)
    train_set = TwoStreamDataset(ShardDataset(data.path, data.train, rgb_mod, segments=t, transform=crop, **common),
                                 ShardDataset(data.path, data.train, flow_mod, segments=t, transform=crop, **common))
    test_set = None
    if data.test:
        test_common = {"train": False, "test_snippets": snippets, "test_crops": 1,
                       "test_flip": config.flip, **common}
        test_set = TwoStreamDataset(ShardDataset(data.path, data.test, rgb_mod, **test_common),
                                    ShardDataset(data.path, data.test, flow_mod, **test_common))
    classes = len(data.classes)
    spatial = create_model(config.backbone, classes, in_chans=3, dropout=config.rgb.dropout)
    temporal = create_model(config.backbone, classes, in_chans=2 * flow_mod.clip_len, dropout=config.flow.dropout)
    if config.rgb.init:
        load_init(spatial, config.rgb.init)
    if config.flow.init:
        load_init(temporal, config.flow.init)
    model = TwoStreamFusion(spatial, temporal, fusion=config.fusion,
                            temporal_fusion="average" if config.fusion == "bilinear" else "conv3d")

    def loss(output: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        fused, temporal_logits = output
        return F.cross_entropy(fused, target) + F.cross_entropy(temporal_logits, target)

    trainer = Trainer(out / "fusion", "fusion", model, train_set, test_set, config.flow, config, data,
                      loss, fusion_view_logits(t))
    if resume:
        trainer.resume()
    return trainer.fit(progress)


def train_two_stream(config: TrainConfig, data: LabelledData, out: Path, resume: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """Both streams and their fusion; returns {stream: metrics} for rgb, flow and fused."""
    summary: dict[str, Any] = {}
    main = current_ranks().main
    if config.fusion == "late":
        parts = [train_stream(config, data, stream, out, resume, progress) for stream in ("rgb", "flow")]
        if parts[0] is not None and parts[1] is not None:
            summary = {"rgb": parts[0].metrics(), "flow": parts[1].metrics()}
            fused = fuse(parts, config.fusion_weights, config.fusion_average)
            summary["fused"] = fused.metrics()
            if main:
                write_scores(fused, out / "fused", f"late fusion {config.fusion_weights}")
    else:
        scores = train_joint_fusion(config, data, out, resume, progress)
        if scores is not None:
            summary = {f"fused ({config.fusion})": scores.metrics()}
    if main:
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


# ---- the commands: settings and data in, a trained run out ---------------------------------------------


@dataclass
class RunOutcome:
    """What a training command reports: its run folder and its test metrics."""

    folder: Path
    metrics: dict[str, Any]  # {stream or fusion: metrics}; empty without a test split
    reports: bool  # this process reports: the only one, or rank 0 under torchrun


def run_stream(stream: str, source: DataSource, pipeline: str | Path | None, options: dict[str, Any],
               assignments: Sequence[str], init: str | Path | None, out: str | Path, resume: bool = False,
               progress: bool = True) -> RunOutcome:
    """`flowkit train`: one stream trained into `out/<stream>`, starting from `init` when given.
    Settings and labels are checked before the run folder is made."""
    config = command_config(pipeline, {**options, f"{settings_key(stream)}.init": init}, assignments)
    data = source.load()
    with process_group(config.device) as ranks:  # torchrun: one process of several
        run = prepare_run(out, config, data, resume, {"command": "train", "modality": stream})
        scores = train_stream(config, data, stream, run, resume, progress)
    return RunOutcome(run, {stream: scores.metrics()} if scores is not None else {}, ranks.main)


def run_two_stream(source: DataSource, pipeline: str | Path | None, options: dict[str, Any],
                   assignments: Sequence[str], out: str | Path, resume: bool = False,
                   progress: bool = True) -> RunOutcome:
    """`flowkit train-two-stream`: both streams and their fusion, scored on the test split."""
    config = command_config(pipeline, options, assignments)
    data = source.load()
    if not data.test:
        raise FlowkitError("train-two-stream needs a test split to score and fuse the streams")
    with process_group(config.device) as ranks:  # torchrun: one process of several
        run = prepare_run(out, config, data, resume, {"command": "train-two-stream"})
        summary = train_two_stream(config, data, run, resume, progress)
    return RunOutcome(run, summary, ranks.main)
