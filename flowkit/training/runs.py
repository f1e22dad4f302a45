"""Training the streams and fusing them: the run folders `flowkit train` and `train-two-stream` make.

    run/settings.json            the resolved settings, data, labels and the data's extraction settings
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

from flowkit.errors import FlowkitError
from flowkit.models.weights import load_init
from flowkit.store.reader import FlowStore
from flowkit.training.config import TrainConfig, command_config, settings_key
from flowkit.training.distributed import current_ranks, local_batch_size, on_main, process_group
from flowkit.training.evaluation import write_scores
from flowkit.training.scores import Scores, fuse
from flowkit.training.streams import (
    STREAMS,
    DataSource,
    LabelledData,
    fusion_datasets,
    fusion_model,
    fusion_view_logits,
    stream_datasets,
    stream_model,
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
    with FlowStore(data.path) as store:  # how its flow was made: `flowkit predict` makes the same
        extraction = store.settings
    record = {"config": config.to_dict(), "data": str(data.path), "classes": data.classes,
              "train_videos": len(data.train), "test_videos": len(data.test), "extraction": extraction,
              **extra}
    if resume and settings_path.exists():
        saved = json.loads(settings_path.read_text())
        differ = config.differences(saved.get("config", {}))
        if differ:
            raise FlowkitError(f"{out} was started with other settings ({', '.join(differ)}); "
                               "resume it with the same ones")
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
    train_set, test_set = fusion_datasets(config, data)
    model = fusion_model(config, len(data.classes), with_init=True)

    def loss(output: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        fused, temporal_logits = output
        return F.cross_entropy(fused, target) + F.cross_entropy(temporal_logits, target)

    trainer = Trainer(out / "fusion", "fusion", model, train_set, test_set, config.flow, config, data,
                      loss, fusion_view_logits(config.fusion_frames))
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
