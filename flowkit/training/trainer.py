"""The Trainer: one model trained on one training set, evaluated on the test set, into a folder.

    <folder>/last.pt         model, optimizer, schedule, epoch, RNG: `--resume` goes on from it
    <folder>/final.pt        the final model (what `flowkit evaluate` scores)
    <folder>/best.pt         the model with the best test top-1 seen (as the TSN code keeps it)
    <folder>/metrics.csv     one row per epoch: loss, accuracy, learning rate, test metrics
    <folder>/curves.png      accuracy curves (and loss.png)
    <folder>/scores.npz      the final model's test scores (with metrics.json and confusion.png)

Runs are repeatable on a CPU: the data draws its samples from (seed, epoch, index), the loader
shuffles with a per-epoch generator, and the RNG state that dropout uses is saved with every epoch.
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from flowkit.data.datasets import RGB
from flowkit.devices import resolve_device
from flowkit.errors import FlowkitError
from flowkit.flow.engine_base import has_cxx_compiler
from flowkit.training.config import StreamConfig, TrainConfig
from flowkit.training.distributed import (
    RankSampler,
    barrier,
    current_ranks,
    gather_from_ranks,
    local_batch_size,
    rank_share,
    sum_over_ranks,
)
from flowkit.training.evaluation import predict, write_scores
from flowkit.training.plots import line_chart
from flowkit.training.precision import (
    autocast,
    autocast_dtype,
    channels_last_module,
    grad_scaler,
    to_channels_last,
)
from flowkit.training.scores import Scores
from flowkit.training.streams import LabelledData, video_ids, view_logits


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
        autocast_dtype(config.amp, self.device)  # a mode the device cannot run: one line, now
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=settings.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.schedule = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, settings.lr_steps, config.lr_gamma)
        self.scaler = grad_scaler(config.amp, self.device)
        self.epoch, self.best = 0, -1.0
        # What the RGB inputs meant (evaluate rebuilds them so); None for flow and fusion.
        modality = getattr(train_set, "modality", None)
        self._rgb_values = modality.values if isinstance(modality, RGB) else None

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
        if state["scaler"] and self.scaler.is_enabled():  # a disabled scaler saves nothing
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
        if self.config.channels_last:
            channels_last_module(self.model)
        if self.ranks.distributed:
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.config.compile:
            if self.device.type == "cpu" and not has_cxx_compiler():
                raise FlowkitError("--compile on a CPU needs a C++ compiler (g++ or clang++) on the PATH")
            self.net = torch.compile(self.net)
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
                                           "config": self.config.to_dict(), "stream": self.name,
                                           "rgb_values": self._rgb_values})
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
                                "stream": self.name, "rgb_values": self._rgb_values})
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
            if self.config.channels_last:
                inputs = [to_channels_last(x) for x in inputs]
            target = target.to(self.device)
            with autocast(self.config.amp, self.device):
                output = self.net(*inputs)
                loss = self.loss(output, target)
                extra = getattr(self.model, "auxiliary_loss", None)  # e.g. hidden two-stream's
                if extra is not None:
                    loss = loss + extra
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
        ids = video_ids(self.test_set)
        positions = rank_share(list(range(len(ids))), self.ranks)
        part = None
        if positions:
            part = predict(self.model, Subset(self.test_set, positions), self.logits, [ids[i] for i in positions],
                           self.data.classes, self.device, workers=self.config.workers, progress=progress,
                           desc=f"{self.name} test", amp=self.config.amp)
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
