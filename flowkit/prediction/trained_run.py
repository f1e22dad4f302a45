"""A run folder read back to score new videos: its saved models, its fusion, its classes, and how
the flow of the data it was trained on was made.

A `train` run scores with its stream's final model; a `train-two-stream` run with both streams'
fused as it fused them (late: its weights and average) or with its mid-level fusion's model.
`--run` may also name one stream's folder or checkpoint (`run/rgb`, `run/flow/best.pt`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowkit.data.annotations import Annotation
from flowkit.errors import FlowkitError
from flowkit.store.reader import FlowStore
from flowkit.training.evaluation import SavedStream, predict, read_saved_stream
from flowkit.training.scores import Scores, fuse
from flowkit.training.streams import LabelledData

SETTINGS_FILE = "settings.json"


@dataclass
class TrainedRun:
    """What scores a new video: the saved models (one, or a late fusion's two) and their fusion."""

    folder: Path
    parts: list[SavedStream]
    extraction: dict[str, Any]  # the training data's extraction settings (ExtractSettings.fingerprint)

    @property
    def classes(self) -> list[str]:
        return self.parts[0].classes

    @property
    def protocol(self) -> str:
        """The streams, the fusion and the test views, in words."""
        config = self.parts[0].config
        names = " + ".join(p.stream for p in self.parts)
        if len(self.parts) > 1:
            weights = " : ".join(f"{w:g}" for w in config.fusion_weights)
            names += f", late fusion of {config.fusion_average} {weights}"
        elif self.parts[0].stream == "fusion":
            names = f"rgb + flow, {config.fusion} fusion"
        views = "clips" if config.clips else "snippets"
        crops = "1 crop" if config.test_crops == 1 else f"{config.test_crops} crops"
        return f"{names}; {config.test_snippets} {views} x {crops}"

    def networks(self, device: torch.device) -> list[nn.Module]:
        return [part.network().to(device) for part in self.parts]

    def score(self, networks: list[nn.Module], data: LabelledData, device: torch.device, amp: str = "off") -> Scores:
        """The run's test protocol on `data`'s test videos, its parts fused as the run fused them."""
        scores = []
        for part, network in zip(self.parts, networks, strict=True):
            test_set = part.test_set(data)
            scores.append(predict(network, test_set, part.view_logits(), [r.video for r in data.test],
                                  self.classes, device, progress=False, amp=amp))
        if len(scores) == 1:
            return scores[0]
        config = self.parts[0].config
        return fuse(scores, config.fusion_weights, config.fusion_average)

    def test_data(self, dataset: Path, ids: list[str]) -> LabelledData:
        """`ids` of `dataset` as a test split of this run's classes (labels unknown: 0)."""
        return LabelledData(dataset, self.classes, [], [Annotation(video_id, 0) for video_id in ids])


def _stream_parts(folder: Path, settings: dict[str, Any]) -> list[Path]:
    """The saved models a run folder scores with, by the command that made it."""
    command = settings.get("command")
    if command == "train":
        return [folder / str(settings.get("modality")) / "final.pt"]
    if command == "train-two-stream":
        fusion = settings.get("config", {}).get("fusion", "late")
        return [folder / "rgb" / "final.pt", folder / "flow" / "final.pt"] if fusion == "late" else \
            [folder / "fusion" / "final.pt"]
    raise FlowkitError(f"{folder / SETTINGS_FILE} is not the settings of a train or train-two-stream run")


def _run_settings(folder: Path) -> dict[str, Any]:
    path = folder / SETTINGS_FILE
    try:
        settings = json.loads(path.read_text())
    except FileNotFoundError:
        raise FlowkitError(f"{folder} is not a run folder (no {SETTINGS_FILE}): give a run of "
                           "flowkit train or train-two-stream, a stream's folder, or its final.pt") from None
    except (OSError, ValueError) as error:
        raise FlowkitError(f"{path} cannot be read as a run's settings ({error})") from None
    if not isinstance(settings, dict):
        raise FlowkitError(f"{path} is not a run's settings")
    return settings


def _extraction(settings: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The training data's extraction settings: recorded in the run, or (older runs) read from
    the dataset it names."""
    if isinstance(settings.get("extraction"), dict):
        return settings["extraction"]
    data = Path(str(settings.get("data", "")))
    # A relative path was relative to where training ran: here, or a folder above the run's.
    found = [p for p in (data, *(a / data for a in folder.resolve().parents)) if p.is_file()]
    if not found:
        raise FlowkitError(f"{folder} records no extraction settings and its dataset {data} is gone: "
                           "predict cannot make the flow it was trained on")
    with FlowStore(found[0]) as store:
        return store.settings


def read_run(run: str | Path) -> TrainedRun:
    """A run folder, one of its stream folders, or a stream's checkpoint, ready to score; a
    one-line FlowkitError for anything else (an unfinished run: its missing final.pt)."""
    path = Path(run)
    if not path.exists():
        raise FlowkitError(f"--run {path}: no such run folder or checkpoint")
    if path.is_file() or (path / "final.pt").exists():  # one stream: its folder or checkpoint
        folder = path.parent if path.is_file() else path
        parts = [read_saved_stream(path)]  # not a checkpoint: said before the run is looked for
        settings = _run_settings(folder.parent)
    else:
        folder = path
        settings = _run_settings(folder)
        files = _stream_parts(folder, settings)
        for file in files:
            if not file.exists():
                raise FlowkitError(f"{file.parent} has no final.pt: the run has not finished (continue it with --resume)")
        parts = [read_saved_stream(file) for file in files]
    if any(p.classes != parts[0].classes for p in parts):
        raise FlowkitError(f"{folder}: the streams were trained on different classes")
    return TrainedRun(folder, parts, _extraction(settings, folder))
