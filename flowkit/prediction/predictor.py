"""`flowkit predict`: the top classes of new videos under a trained run.

The videos' flow is made as the run's training data's was (its extraction settings: algorithm,
engine, parameters, size, bound, quantization), into a dataset in a temporary folder that is
removed afterwards (`keep`: a dataset that stays, and that a later run resumes), then scored by
the run's own test protocol and fusion. A video that cannot be read or decoded is reported in
one line; the others go on.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from flowkit.devices import resolve_device
from flowkit.errors import FlowkitError
from flowkit.extraction.pipeline import extract
from flowkit.extraction.settings import ExtractSettings
from flowkit.prediction.trained_run import read_run
from flowkit.store.reader import FlowStore
from flowkit.training.precision import autocast_dtype
from flowkit.video import VIDEO_EXTENSIONS

# What scoring one video can raise: unreadable (h5py: OSError, KeyError), too short for the test
# views, or too small for the network (torch: RuntimeError); the other videos go on.
VIDEO_ERRORS = (FlowkitError, OSError, KeyError, ValueError, RuntimeError)


@dataclass
class Prediction:
    """One video's top classes: (class name, probability) best first, and its fused class scores."""

    video: str
    top: list[tuple[str, float]]
    scores: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"video": self.video, "top": [{"class": c, "probability": round(p, 6)} for c, p in self.top]}


@dataclass
class PredictReport:
    """What `flowkit predict` found: a prediction per video that could be scored, an error per other."""

    run: str
    protocol: str
    predictions: list[Prediction] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # video as given -> one-line error
    kept: str | None = None  # the dataset of the videos' flow, when asked to keep it

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "protocol": self.protocol, "predictions": [p.to_dict() for p in self.predictions],
                "failed": [{"video": v, "error": e} for v, e in self.failed.items()], "kept": self.kept}


def top_classes(scores: np.ndarray, classes: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The k classes of highest score, with their softmax probabilities."""
    shifted = np.exp(scores - scores.max())
    probabilities = shifted / shifted.sum()
    order = np.argsort(-scores, kind="stable")[:k]
    return [(classes[i], float(probabilities[i])) for i in order]


def _link_names(videos: Sequence[Path]) -> dict[Path, str]:
    """A distinct file name (hence dataset id) for each video: its own, numbered on a clash."""
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for video in videos:
        name, n = video.name, 1
        while Path(name).stem in taken:
            n += 1
            name = f"{video.stem}-{n}{video.suffix}"
        taken.add(Path(name).stem)
        names[video] = name
    return names


def predict_videos(videos: Sequence[str | Path], run: str | Path, top_k: int = 5, keep: str | Path | None = None,
                   device: str = "auto", jobs: int | None = None, amp: str = "off",
                   progress: bool = True) -> PredictReport:
    """The top `top_k` classes of each video under the run `run` (`read_run`), its networks run
    at `amp`'s precision (`training.precision`)."""
    if top_k < 1:
        raise FlowkitError(f"--top-k must be at least 1, not {top_k}")
    trained = read_run(run)  # a bad run: one line, before any work
    target = resolve_device(device)
    autocast_dtype(amp, target)
    settings = ExtractSettings.from_fingerprint(trained.extraction, device)
    report = PredictReport(str(trained.folder), trained.protocol, kept=str(keep) if keep else None)
    given = [Path(v) for v in videos]
    for video in given:
        if not video.is_file():
            report.failed[str(video)] = "no such file"
        elif video.suffix.lower() not in VIDEO_EXTENSIONS:
            report.failed[str(video)] = f"not a video file flowkit reads ({', '.join(sorted(VIDEO_EXTENSIONS))})"
    readable = [v for v in dict.fromkeys(given) if str(v) not in report.failed]
    if not readable:
        return report
    names = _link_names(readable)
    with tempfile.TemporaryDirectory(prefix="flowkit-predict-") as work:
        folder = Path(work) / "videos"
        folder.mkdir()
        for video, name in names.items():
            os.symlink(video.resolve(), folder / name)
        dataset = Path(keep) if keep else Path(work) / "flow.h5"
        extracted = extract(folder, dataset, settings, jobs=jobs, progress=progress)
        source = {Path(name).stem: str(video) for video, name in names.items()}
        for failure in extracted.failed:
            report.failed[source[failure.id]] = failure.error
        with FlowStore(dataset) as store:
            for video_id, video in source.items():
                if video_id not in store and video not in report.failed:  # e.g. an extension not a video's
                    report.failed[video] = "no flow was extracted from it (not a video file flowkit reads?)"
            ids = [i for i in source if source[i] not in report.failed]
        networks = trained.networks(target)
        for video_id in tqdm(ids, unit="video", desc="predict", disable=not progress):
            try:
                scores = trained.score(networks, trained.test_data(dataset, [video_id]), target, amp).scores[0]
            except VIDEO_ERRORS as error:
                report.failed[source[video_id]] = str(error).splitlines()[0] if str(error) else type(error).__name__
                continue
            report.predictions.append(Prediction(source[video_id], top_classes(scores, trained.classes, top_k),
                                                 scores))
    order = {str(v): i for i, v in reversed(list(enumerate(given)))}  # the user's order
    report.predictions.sort(key=lambda p: order[p.video])
    report.failed = dict(sorted(report.failed.items(), key=lambda item: order[item[0]]))
    return report
