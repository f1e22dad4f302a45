"""torch.compile's kernels for flowkit: one cache folder that every process shares, and whether it
already holds the TV-L1 kernels (which decides if compiling repays itself for a small job).

The folder is `$FLOWKIT_COMPILE_CACHE` (set it to a shared path on a cluster, so that one worker's
compilation serves all), else `$XDG_CACHE_HOME/flowkit/torch-compile` (`~/.cache/...`). A user's own
`TORCHINDUCTOR_CACHE_DIR` wins over both. No torch import here: the decision is made before any
worker loads torch.
"""

from __future__ import annotations

import hashlib
import os
from importlib.metadata import version
from pathlib import Path

CACHE_ENV = "FLOWKIT_COMPILE_CACHE"
INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"

# When compiling repays itself on a CPU, from benchmarks/startup.py (BENCHMARKS.md, "Start-up"):
# compiling costs about as many seconds as this many eager pairs at 342x256, with the kernels
# not yet in the cache (cold) or already there (warm).
COLD_BREAK_EVEN_PAIRS = 600
WARM_BREAK_EVEN_PAIRS = 60


def cache_dir() -> Path:
    """The folder torch.compile writes flowkit's kernels to."""
    if os.environ.get(INDUCTOR_ENV):
        return Path(os.environ[INDUCTOR_ENV])
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "flowkit" / "torch-compile"


def use_cache_dir() -> Path:
    """Point torch.compile at `cache_dir()` (for this process and the workers it starts)."""
    folder = cache_dir()
    os.environ.setdefault(INDUCTOR_ENV, str(folder))
    return folder


def _marker() -> Path:
    """One file per (TV-L1 source, torch version, cache folder): written after a compiled run."""
    source = Path(__file__).with_name("tvl1_torch.py")
    digest = hashlib.sha256(source.read_bytes() + version("torch").encode()).hexdigest()[:16]
    return cache_dir() / "flowkit-warm" / f"tvl1-{digest}"


def tvl1_is_warm() -> bool:
    """Whether a process has compiled the TV-L1 kernels with this torch into this cache."""
    return _marker().exists()


def mark_tvl1_warm() -> None:
    try:
        marker = _marker()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:  # a read-only cache only costs the next small job its eager choice
        pass


def worth_compiling(pairs: int, warm: bool) -> bool:
    """Whether `pairs` pairs on a CPU repay compiling the TV-L1 kernels first."""
    return pairs >= (WARM_BREAK_EVEN_PAIRS if warm else COLD_BREAK_EVEN_PAIRS)
