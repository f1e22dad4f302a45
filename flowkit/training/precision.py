"""Mixed precision: which float type the forward pass runs in, and the gradient scaler fp16 needs.

`--amp` modes: `auto` (fp16 on CUDA, full precision elsewhere: what training always did), `off`
(float32), `bf16` (bfloat16 autocast: CUDA where the GPU has it, and the CPU), `fp16` (float16
autocast with a GradScaler, so that small gradients do not flush to zero). Weights and the
optimizer stay float32 in every mode; only the autocast regions change. Also the channels-last
memory layout (`--channels-last`): the same values, stored in the order fast convolutions read.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from flowkit.errors import FlowkitError

if TYPE_CHECKING:  # torch is imported where it is used: the settings read without it
    import torch

AMP_MODES = ("auto", "off", "bf16", "fp16")
_LEGACY = {"true": "auto", "false": "off"}  # runs saved when `amp` was a yes/no setting


def amp_mode(value: Any) -> str:
    """A setting's value as one of AMP_MODES (old runs' true/false included); one line if not."""
    text = str(value).lower()
    text = _LEGACY.get(text, text)
    if text not in AMP_MODES:
        raise FlowkitError(f"amp must be one of {', '.join(AMP_MODES)}, not {value!r}")
    return text


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The float type autocast runs in on `device`, None for float32; a one-line error where the
    device cannot run the mode."""
    import torch

    mode = amp_mode(mode)
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode in ("auto", "fp16"):
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise FlowkitError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16")
    return torch.bfloat16


def autocast(mode: str, device: torch.device) -> AbstractContextManager[Any]:
    """The region a forward pass runs in under `mode`."""
    import torch

    dtype = autocast_dtype(mode, device)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(mode: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler, enabled for float16 only (bfloat16 has float32's range)."""
    import torch

    return torch.amp.GradScaler(device.type, enabled=autocast_dtype(mode, device) is torch.float16)


def memory_layout(x: torch.Tensor) -> Any:
    """The channels-last layout of a tensor's rank (images NHWC, clips NDHWC), None for others."""
    import torch

    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A batch (or a weight) channels-last, as cuDNN's and oneDNN's fast convolutions want."""
    layout = memory_layout(x)
    return x if layout is None else x.contiguous(memory_format=layout)


def channels_last_module(module: torch.nn.Module) -> torch.nn.Module:
    """Every 4-D and 5-D parameter and buffer of `module` channels-last, each by its own rank (a
    network may hold 2D and 3D convolutions: a mid-level fusion's Conv3d over 2D towers)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if memory_layout(tensor) is not None:
            tensor.data = to_channels_last(tensor.data)
    return module
