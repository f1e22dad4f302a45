"""Settings as users type them: `NAME=VALUE` pairs (`--param`, `--set`), their boolean words, and
the range checks every numeric option goes through."""

from __future__ import annotations

import math
from collections.abc import Iterable

from flowkit.errors import FlowkitError


def parse_assignments(pairs: Iterable[str], what: str = "setting") -> dict[str, str]:
    """`["tau=0.25", " warps = 3 "]` to `{"tau": "0.25", "warps": "3"}`; each value is parsed
    later, by what knows its type."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise FlowkitError(f"{what} {pair!r} is not NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")


def parse_bool(value: str | bool) -> bool:
    """`true`/`1`/`yes` or `false`/`0`/`no` (any case) as a bool; anything else raises ValueError,
    as `int("x")` does, for the caller to name the setting."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError(f"{value!r} is not a boolean")
    return text in TRUE_WORDS


def check_count(name: str, value: int | None, minimum: int = 1) -> None:
    """A count option (`--jobs`, `--shard-size` ...) that must be at least `minimum`, if given."""
    if value is not None and value < minimum:
        raise FlowkitError(f"{name} must be at least {minimum}, got {value}")


def check_positive(name: str, value: float | None, maximum: float = math.inf) -> None:
    """A real option that must be finite, above 0 and at most `maximum`, if given."""
    if value is None:
        return
    if not math.isfinite(value) or value <= 0:
        raise FlowkitError(f"{name} must be a positive finite number, got {value}")
    if value > maximum:
        raise FlowkitError(f"{name} must be at most {maximum:g}, got {value:g}")
