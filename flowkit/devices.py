"""Which torch device a job runs on: one rule for the flow engines, training and torchrun."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flowkit.errors import FlowkitError

if TYPE_CHECKING:
    import torch


def surely_cpu(name: str) -> bool:
    """Whether `name` surely means the CPU here, answered without importing torch: `cpu`, or
    `auto` on a machine with no GPU device node (NVIDIA's or AMD's)."""
    if name == "cpu":
        return True
    return name == "auto" and not any(Path(node).exists() for node in ("/dev/nvidiactl", "/dev/kfd"))


def runs_on_cpu(name: str) -> bool:
    """Whether the device name `name` resolves to the CPU here (torch imported only when a GPU
    device node says it could be otherwise)."""
    return surely_cpu(name) or resolve_device(name).type == "cpu"


def wants_cuda(name: str) -> bool:
    """Whether the device name `name` (as given by a user) resolves to a GPU on this machine."""
    import torch

    return name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())


def resolve_device(name: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """`auto` is CUDA when present, else the CPU; asking for a device that is not there is an error.

    `local_rank` (a torchrun process's) makes `auto` and a bare `cuda` mean that process's GPU.
    """
    import torch

    if str(name) == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise FlowkitError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FlowkitError(f"device {name!r}: CUDA is not available on this machine")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FlowkitError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise FlowkitError(f"device {name!r}: only cpu and cuda are supported")
    return device
