"""Training pictures drawn with OpenCV (no plotting library needed): curves and a confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _bgr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return rgb[2], rgb[1], rgb[0]


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    return list(np.linspace(lo, hi, count))


def line_chart(series: dict[str, Sequence[tuple[float, float]]], path: str | Path, title: str,
               xlabel: str, ylabel: str, size: tuple[int, int] = (640, 400)) -> Path:
    """Lines of (x, y) points, one per named series, with axes, ticks and a legend, as a PNG."""
    width, height = size
    left, right, top, bottom = 70, 20, 40, 50
    image = np.full((height, width, 3), 255, np.uint8)
    points = [p for values in series.values() for p in values]
    if points:
        xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
        x0, x1 = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1
        y0, y1 = float(ys.min()), float(ys.max())
        pad = (y1 - y0) * 0.05 or 0.5
        y0, y1 = y0 - pad, y1 + pad

        def to_px(x: float, y: float) -> tuple[int, int]:
            px = left + (x - x0) / (x1 - x0) * (width - left - right)
            py = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
            return round(px), round(py)

        for value in _ticks(y0, y1):
            _, py = to_px(x0, value)
            cv2.line(image, (left, py), (width - right, py), (230, 230, 230), 1)
            cv2.putText(image, f"{value:.3g}", (5, py + 4), _FONT, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
        whole = all(float(x).is_integer() for x in xs)
        x_ticks = sorted({round(v) for v in _ticks(x0, x1)}) if whole else _ticks(x0, x1)
        for value in x_ticks:
            px, _ = to_px(value, y0)
            cv2.putText(image, f"{value:.3g}", (px - 10, height - bottom + 18), _FONT, 0.4,
                        (60, 60, 60), 1, cv2.LINE_AA)
        for i, (name, values) in enumerate(series.items()):
            colour = _bgr(_COLOURS[i % len(_COLOURS)])
            pts = np.array([to_px(x, y) for x, y in values], np.int32)
            if len(pts) > 1:
                cv2.polylines(image, [pts], False, colour, 2, cv2.LINE_AA)
            for p in pts:
                cv2.circle(image, tuple(int(v) for v in p), 3, colour, -1, cv2.LINE_AA)
            cv2.line(image, (width - right - 150, top + 10 + 18 * i), (width - right - 125, top + 10 + 18 * i), colour, 2)
            cv2.putText(image, name, (width - right - 118, top + 14 + 18 * i), _FONT, 0.45,
                        (30, 30, 30), 1, cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    cv2.putText(image, title, (left, 25), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, xlabel, (width // 2 - 20, height - 10), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, ylabel, (5, top - 8), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), image)
    return Path(path)


def confusion_image(counts: np.ndarray, classes: Sequence[str], path: str | Path, title: str) -> Path:
    """Rows: true class, columns: predicted; colour is each row's share, counts written when few."""
    n = len(classes)
    cell = max(8, min(48, 640 // max(n, 1)))
    label_w = 0 if n > 30 else 9 * max(len(c) for c in classes) + 10
    top = 40
    image = np.full((top + n * cell + 10, label_w + n * cell + 10, 3), 255, np.uint8)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, float), where=rows > 0)
    colours = cv2.applyColorMap((share * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    for i in range(n):
        for j in range(n):
            y, x = top + i * cell, label_w + j * cell
            image[y : y + cell, x : x + cell] = colours[i, j]
            if n <= 15:
                text = str(int(counts[i, j]))
                ink = (0, 0, 0) if share[i, j] > 0.5 else (255, 255, 255)
                cv2.putText(image, text, (x + 4, y + cell // 2 + 4), _FONT, 0.4, ink, 1, cv2.LINE_AA)
        if label_w:
            cv2.putText(image, classes[i], (4, top + i * cell + cell // 2 + 4), _FONT, 0.4,
                        (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, title, (4, 25), _FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), image)
    return Path(path)
