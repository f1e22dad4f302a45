"""Training the streams and fusing them: the run folders `flowkit train` and `train-two-stream` make.

    run/settings.json            the resolved settings, data and labels
    run/<stream>/last.pt         model, optimizer, schedule, epoch, RNG: `--resume` goes on from it
    run/<stream>/final.pt        the final model (what `flowkit evaluate` scores)
    run/<stream>/best.pt         the model with the best test top-1 seen (as the TSN code keeps it)
    run/<stream>/metrics.csv     one row per epoch: loss, accuracy, learning rate, test metrics
    run/<stream>/curves.png      accuracy curves (and loss.png)
    run/<stream>/scores.npz      the final model's test scores (video ids, labels, scores)
    run/<stream>/confusion.png   their confusion matrix
    run/fused/...                late fusion of the two streams' scores (train-two-stream)
    run/summary.json             per-stream and fused accuracy

A stream is `rgb`, `flow` or `rgbdiff`; `fusion` is a jointly trained mid-level fusion. Runs are
repeatable on a CPU: the data draws its samples from (seed, epoch, index), the loader shuffles
with a per-epoch generator, and the RNG state that dropout uses is saved with every epoch.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from flowkit.data.annotations import Annotation, load_labels
from flowkit.data.datasets import RGB, Flow, Modality, ShardDataset, TwoStreamDataset
from flowkit.data.transforms import MultiScaleCrop, RandomCrop
from flowkit.devices import resolve_device
from flowkit.errors import FlowkitError
from flowkit.models.fusion import TwoStreamFusion
from flowkit.models.registry import create_model, model_info
from flowkit.models.tsn import TSN
from flowkit.models.weights import load_init
from flowkit.store.reader import FlowStore
from flowkit.training.config import StreamConfig, TrainConfig, load_config
from flowkit.training.distributed import (
    RankSampler,
    barrier,
    current_ranks,
    gather_from_ranks,
    local_batch_size,
    on_main,
    rank_share,
    sum_over_ranks,
)
from flowkit.training.evaluation import Scores, confusion_matrix, fuse, predict, write_metrics
from flowkit.training.plots import confusion_image, line_chart

STREAMS = ("rgb", "flow", "rgbdiff")


@dataclass
class LabelledData:
    """A dataset with its classes and its labelled training and test videos."""

    path: Path
    classes: list[str]
    train: list[Annotation]
    test: list[Annotation]


def load_data(data: str | Path, labels: str | Path | None, fmt: str = "auto", split: int = 1,
              test: str | Path | None = None) -> LabelledData:
    """Open the dataset and match its ids to the label lists; errors before any training."""
    with FlowStore(data) as store:
        train, test_list = load_labels(labels, store.ids, fmt, split, test)
    if not train.rows:
        raise FlowkitError("the training split is empty: no labelled video is in the dataset")
    return LabelledData(Path(data), train.classes, train.rows, test_list.rows)


# ---- what a stream is ---------------------------------------------------------------------------------


def stream_modality(config: TrainConfig, stream: str) -> Modality:
    """The input one stream reads: frames or flow, as 2D snippets or 3D clips; RGB values as the
    network's metadata says its weights expect them."""
    values = model_info("i3d" if config.arch == "i3d" else config.backbone).values
    if config.arch == "i3d":
        if stream == "rgb":
            return RGB(length=config.clip_length, stride=config.clip_stride, values=values, clip=True)
        if stream == "flow":
            return Flow(length=config.clip_length, stride=config.clip_stride, values="unit", clip=True)
        raise FlowkitError("i3d has rgb and flow streams, not rgbdiff")
    length = 10 if config.arch == "twostream" and config.flow_length == TrainConfig.flow_length else config.flow_length
    if stream == "rgb":
        return RGB(values=values)
    if stream == "rgbdiff":
        return RGB(length=length + 1, values=values)
    return Flow(length=length, stacking=config.stacking, mean_subtraction=config.mean_subtraction)


def _segments(config: TrainConfig) -> int:
    return 1 if config.arch == "twostream" else config.segments


def stream_datasets(config: TrainConfig, stream: str, data: LabelledData) -> tuple[ShardDataset, ShardDataset | None]:
    """Training and test datasets of one stream (test None when there is no test split)."""
    modality = stream_modality(config, stream)
    common = {"clips": config.arch == "i3d", "size": config.crop_size, "seed": config.seed}
    train = ShardDataset(data.path, data.train, modality, segments=_segments(config),
                         transform=_train_crop(config), **common)
    test = None
    if data.test:
        test = ShardDataset(data.path, data.test, modality, train=False, test_snippets=config.test_snippets,
                            test_crops=config.test_crops, test_flip=config.flip, **common)
    return train, test


def _train_crop(config: TrainConfig) -> MultiScaleCrop | RandomCrop:
    flip = 0.5 if config.flip else 0.0
    if config.arch == "i3d":
        return RandomCrop(config.crop_size, flip=flip)
    return MultiScaleCrop(config.crop_size, flip=flip)


def stream_model(config: TrainConfig, stream: str, num_classes: int) -> nn.Module:
    settings: StreamConfig = getattr(config, "flow" if stream == "flow" else "rgb")
    if config.arch == "i3d":
        return create_model("i3d", num_classes, in_chans=3 if stream == "rgb" else 2, dropout=settings.dropout)
    modality = stream_modality(config, stream)
    length = modality.clip_len - 1 if stream == "rgbdiff" else modality.clip_len
    return create_model("tsn", num_classes, backbone=config.backbone, modality=stream,
                        num_segments=_segments(config), snippet_length=None if stream == "rgb" else length,
                        consensus=config.consensus, dropout=settings.dropout, partial_bn=config.partial_bn)


def view_logits(model: nn.Module, views: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Logits of every test view of one video, for one stream's network."""
    if isinstance(model, TSN):
        return model.backbone(views[0])  # each view alone: TSN averages snippet scores at test time
    return model(*views)


def fusion_view_logits(time_steps: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor]:
    """Test views of a mid-level fusion, grouped `time_steps` snippets at a time; the fused and the
    temporal tower's softmax averaged, as the paper does at test time."""

    def logits(model: nn.Module, views: tuple[torch.Tensor, ...]) -> torch.Tensor:
        rgb, flow = views
        fused, temporal = model(rgb.view(-1, time_steps, *rgb.shape[1:]),
                                flow.view(-1, time_steps, *flow.shape[1:]))
        return ((fused.softmax(-1) + temporal.softmax(-1)) / 2).log()

    return logits


def _video_ids(dataset: ShardDataset | TwoStreamDataset) -> list[str]:
    rows = dataset.flow.rows if isinstance(dataset, TwoStreamDataset) else dataset.rows
    return [r.video for r in rows]


# ---- training one model ----------------------------------------------------------------------------


class Trainer:
    """Trains one model on one training set, evaluating on the test set, into `folder`.

    Under torchrun every rank runs a Trainer: each trains on its share of every global batch
    (DistributedDataParallel averages the gradients), scores its share of the test videos, and
    rank 0 alone writes the files."""

    def __init__(self, folder: Path, name: str, model: nn.Module, train_set: Any, test_set: Any,
                 settings: StreamConfig, config: TrainConfig, data: LabelledData,
                 loss: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
                 logits: Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor] = view_logits) -> None:
        self.folder, self.name, self.model = folder, name, model
        self.train_set, self.test_set = train_set, test_set
        self.settings, self.config, self.data = settings, config, data
        self.loss = loss or (lambda out, y: F.cross_entropy(out, y))
        self.logits = logits
        self.ranks = current_ranks()
        self.local_batch = local_batch_size(config.batch_size, self.ranks)
        self.device = resolve_device(config.device, self.ranks.local_rank if self.ranks.distributed else None)
        self.net: nn.Module = model  # what training calls: the model, or its DDP wrapper
        self.final_scores: Scores | None = None
        self.amp = config.amp and self.device.type == "cuda"
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=settings.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.schedule = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, settings.lr_steps, config.lr_gamma)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch, self.best = 0, -1.0

    # checkpoints ------------------------------------------------------------------------------------

    def _checkpoint(self) -> dict[str, Any]:
        """Everything `resume` needs; called on every rank, as it gathers each rank's RNG states."""
        rng = gather_from_ranks({"torch": torch.get_rng_state(), "python": random.getstate(),
                                 "numpy": np.random.get_state()})
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "best": self.best, "rng": rng}

    def _save(self, name: str, payload: dict[str, Any]) -> None:
        if not self.ranks.main:
            return
        tmp = self.folder / f"{name}.tmp"
        torch.save(payload, tmp)
        tmp.replace(self.folder / name)  # a kill mid-save leaves the previous checkpoint whole

    def resume(self) -> None:
        path = self.folder / "last.pt"
        if not path.exists():
            return
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best = state["epoch"], state["best"]
        rng = state["rng"]  # one entry per rank; a run resumed on other ranks takes rank 0's
        mine = rng[self.ranks.rank] if len(rng) == self.ranks.world else rng[0]
        torch.set_rng_state(mine["torch"])
        random.setstate(mine["python"])
        np.random.set_state(mine["numpy"])

    # the loop ------------------------------------------------------------------------------------------

    def fit(self, progress: bool = True) -> Scores | None:
        """Train the remaining epochs; returns the best model's test scores (None without a test set)."""
        main = self.ranks.main
        if main:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.model.to(self.device)
        if self.ranks.distributed:
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        progress = progress and main
        while self.epoch < self.settings.epochs:
            start = time.perf_counter()
            loss, accuracy = self._train_epoch(progress)
            row = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                   "train_loss": loss, "train_acc": accuracy}
            self.schedule.step()
            self.epoch += 1
            last = self.epoch == self.settings.epochs
            every = self.config.eval_every
            if self.test_set is not None and (last or (every > 0 and self.epoch % every == 0)):
                scores = self._predict(progress)
                metrics = scores.metrics()
                row.update({"test_top1": metrics["top1"], "test_top5": metrics["top5"],
                            "test_mean_class_acc": metrics["mean_class_accuracy"]})
                if metrics["top1"] > self.best:
                    self.best = metrics["top1"]
                    self._save("best.pt", {"model": self.model.state_dict(), "epoch": self.epoch,
                                           "metrics": metrics, "classes": self.data.classes,
                                           "config": self.config.to_dict(), "stream": self.name})
                if last:  # the reported scores are the final model's, not a pick on the test split
                    self.final_scores = scores
                    if main:
                        write_scores(scores, self.folder, self.name)
            row["seconds"] = round(time.perf_counter() - start, 2)
            checkpoint = self._checkpoint()
            if main:
                self._log(row)
            self._save("last.pt", checkpoint)
        self._save("final.pt", {"model": self.model.state_dict(), "epoch": self.epoch,
                                "classes": self.data.classes, "config": self.config.to_dict(),
                                "stream": self.name})
        if main:
            self._draw_curves()
        barrier()  # the files are written before any rank goes on
        if self.final_scores is None and (self.folder / "scores.npz").exists():  # a finished run resumed
            self.final_scores = Scores.load(self.folder / "scores.npz")
        return self.final_scores

    def _loader(self) -> DataLoader:
        """This rank's batches of the epoch: its share of each global batch."""
        sampler = RankSampler(len(self.train_set), self.config.seed, self.epoch, self.ranks)
        generator = torch.Generator().manual_seed(self.config.seed * 100003 + self.epoch)
        return DataLoader(self.train_set, batch_size=self.local_batch, sampler=sampler,
                          num_workers=self.config.workers, generator=generator, drop_last=False,
                          pin_memory=self.device.type == "cuda")

    def _train_epoch(self, progress: bool) -> tuple[float, float]:
        self.net.train()
        self.train_set.set_epoch(self.epoch)
        total, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(self._loader(), desc=f"{self.name} {self.epoch + 1}/{self.settings.epochs}",
                   unit="batch", disable=None if progress else True, leave=False)
        for *inputs, target in bar:
            inputs = [x.to(self.device, non_blocking=True) for x in inputs]
            target = target.to(self.device)
            with torch.autocast(self.device.type, enabled=self.amp):
                output = self.net(*inputs)
                loss = self.loss(output, target)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.settings.clip_grad > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            logits = output[0] if isinstance(output, tuple) else output
            total += len(target)
            correct += int((logits.argmax(dim=1) == target).sum())
            loss_sum += float(loss.detach()) * len(target)
            bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
        loss_sum, correct, total = sum_over_ranks(loss_sum, correct, total)
        return loss_sum / total, correct / total

    def _predict(self, progress: bool) -> Scores:
        """Every test video's scores, on every rank; each rank scores its share of the videos."""
        ids = _video_ids(self.test_set)
        positions = rank_share(list(range(len(ids))), self.ranks)
        part = None
        if positions:
            part = predict(self.model, Subset(self.test_set, positions), self.logits, [ids[i] for i in positions],
                           self.data.classes, self.device, workers=self.config.workers, progress=progress,
                           desc=f"{self.name} test")
        parts = [(p, s) for p, s in gather_from_ranks((positions, part)) if s is not None]
        if len(parts) == 1:
            return parts[0][1]
        order = np.argsort(np.concatenate([p for p, _ in parts]), kind="stable")
        ids = [video for _, s in parts for video in s.ids]
        return Scores([ids[i] for i in order],
                      np.concatenate([s.labels for _, s in parts])[order],
                      np.concatenate([s.scores for _, s in parts])[order], list(self.data.classes))

    def _log(self, row: dict[str, Any]) -> None:
        path = self.folder / "metrics.csv"
        columns = ["epoch", "lr", "train_loss", "train_acc", "test_top1", "test_top5",
                   "test_mean_class_acc", "seconds"]
        new = not path.exists()
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in columns})

    def _draw_curves(self) -> None:
        with open(self.folder / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        epochs = [float(r["epoch"]) for r in rows]
        line_chart({"train loss": list(zip(epochs, [float(r["train_loss"]) for r in rows], strict=True))},
                   self.folder / "loss.png", f"{self.name}: training loss", "epoch", "loss")
        series = {"train": list(zip(epochs, [float(r["train_acc"]) for r in rows], strict=True))}
        tested = [(e, float(r["test_top1"])) for e, r in zip(epochs, rows, strict=True) if r["test_top1"]]
        if tested:
            series["test top-1"] = tested
        line_chart(series, self.folder / "curves.png", f"{self.name}: accuracy", "epoch", "accuracy")


# ---- runs -------------------------------------------------------------------------------------------------


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
    settings: StreamConfig = getattr(config, "flow" if stream == "flow" else "rgb")
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
    crop = _train_crop(config)
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


def evaluate_checkpoint(checkpoint: str | Path, data: LabelledData, test_crops: int | None = None,
                        test_snippets: int | None = None, progress: bool = True) -> Scores:
    """The test protocol for a stream's saved model (`final.pt`, `best.pt`, or a run's stream
    folder: its final model)."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "final.pt"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FlowkitError(f"{path}: no such checkpoint") from None
    if not isinstance(saved, dict) or not {"model", "config", "stream"} <= saved.keys():
        raise FlowkitError(f"{path} is not a flowkit stream checkpoint (final.pt or best.pt of a run)")
    if saved["stream"] not in STREAMS:
        raise FlowkitError(f"{path} holds a {saved['stream']} model; evaluate its streams' checkpoints")
    config = load_config(None, _flatten(saved["config"]))
    if test_crops is not None:
        config.test_crops = test_crops
    if test_snippets is not None:
        config.test_snippets = test_snippets
    config.validate()
    if list(saved["classes"]) != data.classes:
        raise FlowkitError("the labels' classes differ from those the model was trained on")
    if not data.test:
        raise FlowkitError("the test split is empty")
    _, test_set = stream_datasets(config, saved["stream"], data)
    model = stream_model(config, saved["stream"], len(data.classes))
    model.load_state_dict(saved["model"])
    device = resolve_device(config.device)
    model.to(device)
    return predict(model, test_set, view_logits, _video_ids(test_set), data.classes, device,
                   workers=config.workers, progress=progress)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def write_scores(scores: Scores, out: Path, title: str) -> None:
    """scores.npz, metrics.json and confusion.png of `scores` in the folder `out`."""
    out.mkdir(parents=True, exist_ok=True)
    scores.save(out / "scores.npz")
    write_metrics(out / "metrics.json", scores.metrics())
    counts = confusion_matrix(scores.scores, scores.labels, len(scores.classes))
    confusion_image(counts, scores.classes, out / "confusion.png", f"{title}: top-1 {scores.metrics()['top1']:.1%}")
