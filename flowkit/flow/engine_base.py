"""What every flow engine is: its parameters (`Param`) and its interface (`FlowEngine`).

An engine takes two grayscale uint8 frames and returns the dense displacement field from the first
to the second, float32 of shape (H, W, 2) holding (u, v) in pixels; `calc_batch` takes many pairs.
`flowkit.flow.engines` lists the engines and builds them.
"""

from __future__ import annotations

import math
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.params import parse_bool


@dataclass(frozen=True)
class Param:
    """One engine parameter: its name, default value, type and what it does."""

    name: str
    default: Any
    type: type
    help: str
    recorded_at_default: bool = True  # False: a later addition, left out of datasets' settings
    # at its default, so that datasets made before it existed still match on resume

    def parse(self, text: str) -> Any:
        """A command-line string to this parameter's type, with a one-line error if it does not fit."""
        try:
            value = parse_bool(text) if self.type is bool else self.type(text)
            if self.type is float and not math.isfinite(value):
                raise ValueError(f"{text!r} is not finite")
            return value
        except ValueError:
            raise FlowkitError(
                f"parameter {self.name}={text!r}: expected {self.type.__name__}"
            ) from None


class FlowEngine(ABC):
    """Dense optical flow between two grayscale uint8 frames of equal size."""

    algorithm: ClassVar[str]
    backend: ClassVar[str] = "opencv"
    PARAMS: ClassVar[tuple[Param, ...]]
    batch_size: int = 1  # pairs per `calc_batch` call that use the engine best
    device: str = "cpu"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = self.resolve(params)

    @classmethod
    def resolve(cls, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every parameter's value: the defaults overridden by `params` (strings are parsed)."""
        known = {p.name: p for p in cls.PARAMS}
        unknown = sorted(set(params or {}) - set(known))
        if unknown:
            raise FlowkitError(
                f"{cls.algorithm} has no parameter {', '.join(unknown)} "
                f"(it has: {', '.join(known)})"
            )
        merged = {p.name: p.default for p in cls.PARAMS}
        for name, value in (params or {}).items():
            param = known[name]
            merged[name] = param.parse(value) if isinstance(value, str) else param.type(value)
        return merged

    @abstractmethod
    def calc(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow from `prev` to `nxt`: float32 (H, W, 2), u (x, right) then v (y, down), in pixels."""

    def calc_batch(self, prevs: Sequence[np.ndarray], nexts: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Flow for many pairs of equal-sized frames; each result is what `calc` would give."""
        return [self.calc(prev, nxt) for prev, nxt in zip(prevs, nexts, strict=True)]

    def batch_size_for(self, height: int, width: int) -> int:
        """How many pairs of this size one `calc_batch` call should take."""
        return self.batch_size

    def set_threads(self, threads: int) -> None:
        """Threads this process's engine may use; workers share the cores between them."""
        cv2.setNumThreads(max(1, int(threads)))


def has_cxx_compiler() -> bool:
    """Whether torch.compile can build CPU kernels here (it needs a C++ compiler)."""
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))
