"""Scoring test videos with a model: the test protocol, a saved checkpoint, the files of its scores.

`predict` averages the logits of every test view of each video; `read_saved_stream` reads a
run's saved model (`SavedStream`) and `score_saved` runs its test protocol on any videos;
`evaluate_checkpoint` scores a stream's test split (what `flowkit evaluate` does); `write_scores` writes scores.npz,
metrics.json and confusion.png of any `Scores`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from flowkit.data.datasets import ShardDataset, TwoStreamDataset
from flowkit.devices import resolve_device
from flowkit.errors import FlowkitError
from flowkit.training.config import TrainConfig, load_config
from flowkit.training.plots import confusion_image
from flowkit.training.precision import autocast
from flowkit.training.scores import Scores, confusion_matrix, write_metrics
from flowkit.training.streams import (
    STREAMS,
    DataSource,
    LabelledData,
    fusion_model,
    fusion_test_dataset,
    fusion_view_logits,
    stream_model,
    test_dataset,
    video_ids,
    view_logits,
)


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    view_logits: Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor],
    ids: list[str],
    classes: list[str],
    device: torch.device,
    workers: int = 0,
    progress: bool = True,
    desc: str = "test",
    amp: str = "off",
) -> Scores:
    """Every video's averaged view logits; `dataset` is in test mode (all views per item);
    `amp`: the forward pass's precision (`training.precision`)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=1, num_workers=workers)
    scores, labels = [], []
    for *inputs, label in tqdm(loader, desc=desc, unit="video", disable=None if progress else True,
                               leave=False):
        views = tuple(x[0].to(device, non_blocking=True) for x in inputs)
        with autocast(amp, device):
            logits = view_logits(model, views).float()
        scores.append(logits.mean(dim=0).cpu().numpy())
        labels.append(int(label[0]))
    return Scores(list(ids), np.array(labels, np.int64), np.stack(scores), list(classes))


@dataclass
class SavedStream:
    """A stream's (or a mid-level fusion's) saved model, `final.pt` or `best.pt` of a run: its
    network's weights, the settings it was trained with, its classes and its RGB values."""

    path: Path
    stream: str  # rgb, flow, rgbdiff, warped_flow, or fusion
    config: TrainConfig
    classes: list[str]
    state: dict[str, torch.Tensor]
    rgb_values: str | None

    def network(self) -> nn.Module:
        """The trained network, on the CPU, in eval mode."""
        classes = len(self.classes)
        model = fusion_model(self.config, classes) if self.stream == "fusion" else \
            stream_model(self.config, self.stream, classes)
        model.load_state_dict(self.state)
        return model.eval()

    def test_set(self, data: LabelledData) -> ShardDataset | TwoStreamDataset:
        """`data`'s test videos, each with every view of the run's test protocol."""
        if self.stream == "fusion":
            return fusion_test_dataset(self.config, data)
        return test_dataset(self.config, self.stream, data, self.rgb_values)

    def view_logits(self) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor]:
        return fusion_view_logits(self.config.fusion_frames) if self.stream == "fusion" else view_logits


def read_saved_stream(checkpoint: str | Path, test_crops: int | None = None,
                      test_snippets: int | None = None) -> SavedStream:
    """A run's saved model (a stream's folder: its `final.pt`), its test protocol overridden by
    `test_crops` / `test_snippets`; a one-line FlowkitError for anything else."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "final.pt"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FlowkitError(f"{path}: no such checkpoint") from None
    except Exception as error:  # torch.load raises many kinds on a file that is not a checkpoint
        raise FlowkitError(f"{path} is not a flowkit stream checkpoint ({type(error).__name__})") from None
    if not isinstance(saved, dict) or not {"model", "config", "stream"} <= saved.keys():
        raise FlowkitError(f"{path} is not a flowkit stream checkpoint (final.pt or best.pt of a run)")
    if saved["stream"] not in (*STREAMS, "fusion"):
        raise FlowkitError(f"{path} holds a {saved['stream']} model, not a stream's")
    config = load_config(None, _flatten(saved["config"]))
    if test_crops is not None:
        config.test_crops = test_crops
    if test_snippets is not None:
        config.test_snippets = test_snippets
    config.validate()
    # Checkpoints from before the RGB values were saved all used ImageNet's (2D) or [-1, 1] (I3D),
    # whatever their backbone's metadata says now.
    legacy = "unit" if config.clips else "imagenet"
    return SavedStream(path, saved["stream"], config, list(saved["classes"]), saved["model"],
                       saved.get("rgb_values", legacy))


def score_saved(saved: SavedStream, data: LabelledData, device: str | None = None,
                progress: bool = True) -> Scores:
    """The test protocol of a saved model on `data`'s test videos, on `device` (default the run's)."""
    test_set = saved.test_set(data)
    target = resolve_device(device or saved.config.device)
    model = saved.network().to(target)
    return predict(model, test_set, saved.view_logits(), video_ids(test_set), saved.classes, target,
                   workers=saved.config.workers, progress=progress)


def evaluate_checkpoint(checkpoint: str | Path, data: LabelledData, test_crops: int | None = None,
                        test_snippets: int | None = None, progress: bool = True) -> Scores:
    """The test protocol for a stream's saved model (`final.pt`, `best.pt`, or a run's stream
    folder: its final model)."""
    saved = read_saved_stream(checkpoint, test_crops, test_snippets)
    if saved.stream == "fusion":
        raise FlowkitError(f"{saved.path} holds a fusion model; evaluate its streams' checkpoints")
    if saved.classes != data.classes:
        raise FlowkitError("the labels' classes differ from those the model was trained on")
    if not data.test:
        raise FlowkitError("the test split is empty")
    return score_saved(saved, data, progress=progress)


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


def evaluate_and_write(checkpoint: str | Path, source: DataSource, test_crops: int | None = None,
                       test_snippets: int | None = None, out: str | Path | None = None,
                       progress: bool = True) -> tuple[Scores, Path]:
    """`flowkit evaluate`: the checkpoint's test scores, written (`write_scores`) to `out`, by
    default an `evaluation` folder in the run's stream folder or beside the checkpoint file;
    returns the scores and that folder."""
    data = source.load()
    scores = evaluate_checkpoint(checkpoint, data, test_crops, test_snippets, progress)
    checkpoint = Path(checkpoint)
    folder = Path(out) if out else (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "evaluation"
    write_scores(scores, folder, checkpoint.name)
    return scores, folder
