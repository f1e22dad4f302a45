"""`NAME=VALUE` pairs from the command line (`--param`, `--set`) as a dict of strings."""

from __future__ import annotations

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
