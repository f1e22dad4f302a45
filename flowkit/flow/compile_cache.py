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

# When compiling repays itself on a CPU, in pairs x pixels (millions), from benchmarks/startup.py
# (BENCHMARKS.md, "Start-up"): compiling costs about 24 s with the kernels not yet in the cache
# (cold) and 5 s with them there (warm); a compiled pair then saves about 3 us per pixel against
# the OpenCV engine or the uncompiled one (342x256: 0.17 s against 0.45-0.49 s).
COLD_BREAK_EVEN_MEGAPIXELS = 8.0  # about 90 pairs at 342x256
WARM_BREAK_EVEN_MEGAPIXELS = 1.5  # about 17 pairs


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


def break_even_pixels(warm: bool) -> float:
    """The job size (pairs x pixels per pair) from which compiling the TV-L1 kernels repays itself
    on a CPU."""
    return 1e6 * (WARM_BREAK_EVEN_MEGAPIXELS if warm else COLD_BREAK_EVEN_MEGAPIXELS)


def worth_compiling(pair_pixels: float, warm: bool) -> bool:
    """Whether a job of `pair_pixels` (pairs x pixels per pair) on a CPU repays compiling the
    TV-L1 kernels first."""
    return pair_pixels >= break_even_pixels(warm)
