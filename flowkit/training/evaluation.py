"""Scoring test videos with a model: the test protocol, a saved checkpoint, the files of its scores.

`predict` averages the logits of every test view of each video; `evaluate_checkpoint` runs it
for a stream's saved model (what `flowkit evaluate` does); `write_scores` writes scores.npz,
metrics.json and confusion.png of any `Scores`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from flowkit.devices import resolve_device
from flowkit.errors import FlowkitError
from flowkit.training.config import load_config
from flowkit.training.plots import confusion_image
from flowkit.training.scores import Scores, confusion_matrix, write_metrics
from flowkit.training.streams import (
    STREAMS,
    DataSource,
    LabelledData,
    stream_datasets,
    stream_model,
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
) -> Scores:
    """Every video's averaged view logits; `dataset` is in test mode (all views per item)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=1, num_workers=workers)
    scores, labels = [], []
    for *inputs, label in tqdm(loader, desc=desc, unit="video", disable=None if progress else True,
                               leave=False):
        views = tuple(x[0].to(device, non_blocking=True) for x in inputs)
        logits = view_logits(model, views).float()
        scores.append(logits.mean(dim=0).cpu().numpy())
        labels.append(int(label[0]))
    return Scores(list(ids), np.array(labels, np.int64), np.stack(scores), list(classes))


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
    # The values the model was trained on; checkpoints from before they were saved all used
    # ImageNet's (2D) or [-1, 1] (I3D), whatever their backbone's metadata says now.
    legacy = "unit" if config.arch == "i3d" else "imagenet"
    _, test_set = stream_datasets(config, saved["stream"], data, saved.get("rgb_values", legacy))
    model = stream_model(config, saved["stream"], len(data.classes))
    model.load_state_dict(saved["model"])
    device = resolve_device(config.device)
    model.to(device)
    return predict(model, test_set, view_logits, video_ids(test_set), data.classes, device,
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
