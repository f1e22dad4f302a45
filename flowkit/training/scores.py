"""Video-level scores, the test protocol's metrics, and late fusion of saved scores.

A `Scores` holds, per test video, its id, its label and its class scores: the logits of its
test views (snippets x crops, or clips x crops) averaged, as TSN does. They are saved as `.npz`
(`ids`, `labels`, `scores`, `classes`) so that streams trained apart can be fused later.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowkit.errors import FlowkitError
from flowkit.models.fusion import LinearScoreFusion, late_fusion


@dataclass
class Scores:
    """Class scores (N, classes) of N labelled videos."""

    ids: list[str]
    labels: np.ndarray
    scores: np.ndarray
    classes: list[str]

    def save(self, path: str | Path) -> None:
        np.savez(path, ids=np.array(self.ids), labels=self.labels, scores=self.scores,
                 classes=np.array(self.classes))

    @classmethod
    def load(cls, path: str | Path) -> Scores:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls([str(i) for i in data["ids"]], data["labels"].astype(np.int64),
                           data["scores"].astype(np.float32), [str(c) for c in data["classes"]])
        except FileNotFoundError:
            raise FlowkitError(f"{path}: no such file") from None
        except (OSError, ValueError, KeyError) as exc:
            raise FlowkitError(f"{path} is not a flowkit scores file ({exc})") from None

    def metrics(self) -> dict[str, float]:
        return accuracy_metrics(self.scores, self.labels, len(self.classes))


def accuracy_metrics(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """Top-1, top-5 and mean class accuracy (the mean of per-class recalls), as fractions."""
    if len(labels) == 0:
        raise FlowkitError("no videos to score")
    ranked = np.argsort(-scores, axis=1)
    top1 = float((ranked[:, 0] == labels).mean())
    top5 = float((ranked[:, :5] == labels[:, None]).any(axis=1).mean())
    present = [c for c in range(num_classes) if (labels == c).any()]
    per_class = [float((ranked[labels == c, 0] == c).mean()) for c in present]
    return {"top1": top1, "top5": top5, "mean_class_accuracy": float(np.mean(per_class)), "videos": len(labels)}


def confusion_matrix(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels, scores.argmax(axis=1)), 1)
    return counts


# ---- late fusion ---------------------------------------------------------------------------------


def _aligned(parts: Sequence[Scores]) -> None:
    first = parts[0]
    for other in parts[1:]:
        if other.ids != first.ids or not np.array_equal(other.labels, first.labels):
            raise FlowkitError("the scores files hold different videos or labels; fuse scores of one test split")
        if other.classes != first.classes:
            raise FlowkitError("the scores files have different classes")


FUSION_AVERAGES = ("logits", "softmax")


def fuse(parts: Sequence[Scores], weights: Sequence[float] | None = None, average: str = "logits") -> Scores:
    """Weighted average of the streams' scores (TSN: 1 : 1.5 for RGB : flow).

    `logits` averages the class scores themselves, as TSN's evaluation does: a product of the
    streams' unnormalised probabilities, so a stream that cannot tell two classes apart does not
    outvote one that can. `softmax` averages probabilities, as the two-stream paper does.
    """
    if len(parts) < 2:
        raise FlowkitError("fusion takes at least two scores files")
    if average not in FUSION_AVERAGES:
        raise FlowkitError(f"fusion averages {' or '.join(FUSION_AVERAGES)}, not {average!r}")
    _aligned(parts)
    weights = list(weights) if weights is not None else [1.0] * len(parts)
    if len(weights) != len(parts) or min(weights) < 0 or sum(weights) <= 0:
        raise FlowkitError(f"give one non-negative weight per scores file ({len(parts)}), not all zero")
    first = parts[0]
    if average == "logits":
        fused = sum(w * p.scores for w, p in zip(weights, parts, strict=True)) / sum(weights)
        return Scores(first.ids, first.labels, fused.astype(np.float32), first.classes)
    probabilities = late_fusion([torch.from_numpy(p.scores) for p in parts], weights).numpy()
    return Scores(first.ids, first.labels, np.log(np.clip(probabilities, 1e-12, None)), first.classes)


def fuse_learned(parts: Sequence[Scores], folds: int = 5, seed: int = 0) -> Scores:
    """Fusion weights learned from labelled scores (a linear model on the stacked, L2-normalised
    softmax scores, as the two-stream paper's SVM): each video is scored by a model fitted on the
    other folds, so no video's own label is used to score it."""
    if len(parts) < 2:
        raise FlowkitError("fusion takes at least two scores files")
    _aligned(parts)
    first = parts[0]
    n = len(first.labels)
    if n < folds:
        raise FlowkitError(f"learned fusion needs at least {folds} videos, not {n}")
    order = np.random.default_rng(seed).permutation(n)
    fused = np.zeros_like(first.scores)
    logits = [torch.from_numpy(p.scores) for p in parts]
    labels = torch.from_numpy(first.labels)
    for fold in np.array_split(order, folds):
        train = np.setdiff1d(order, fold)
        model = LinearScoreFusion.fit([s[train] for s in logits], labels[train])
        with torch.no_grad():
            probabilities = model([s[fold] for s in logits]).numpy()
        fused[fold] = np.log(np.clip(probabilities, 1e-12, None))
    return Scores(first.ids, first.labels, fused, first.classes)


def write_metrics(path: Path, metrics: dict[str, float]) -> None:
    path.write_text(json.dumps(metrics, indent=1) + "\n")


def fuse_files(paths: Sequence[str | Path], weights: Sequence[float] = (), average: str = "logits",
               learn: bool = False) -> tuple[dict[str, dict[str, float]], Scores]:
    """`flowkit fuse`: saved scores fused with `weights` (one per file; default equal) or by a
    learned fusion. Returns each file's metrics (named by the file, or by its folder for a run's
    scores.npz) and the fused ones under "fused", and the fused scores."""
    if weights and learn:
        raise FlowkitError("use --weights or --learn, not both")
    files = [Path(path) for path in paths]
    parts = [Scores.load(path) for path in files]
    fused = fuse_learned(parts) if learn else fuse(parts, weights or None, average)
    rows = {path.stem if path.stem != "scores" else path.parent.name: p.metrics()
            for path, p in zip(files, parts, strict=True)}
    rows["fused"] = fused.metrics()
    return rows, fused
