"""Printing benchmark results: markdown tables, and lines that show up as they are measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats are printed as given (format them before)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def emit(text: str = "") -> None:
    """Print now, not when the buffer fills: a long benchmark shows each figure as it comes."""
    print(text, flush=True)
