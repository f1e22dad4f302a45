"""Fitting MotionNet without ground truth, and its weights file (what `--weights` reads).

A weights file is a `torch.save`d dict: `format` ("flowkit-motionnet"), `version`, `config`
(frames, channels, width: enough to rebuild the network), `state_dict`, and what the fit did
(`steps`, `loss`). `flowkit fit-motionnet` writes one; the `motionnet` flow engine reads one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowkit.devices import resolve_device
from flowkit.errors import FlowkitError
from flowkit.flow.motionnet import MotionNet, normalize_frames, unsupervised_loss

FORMAT = "flowkit-motionnet"
VERSION = 1
PAPER_LR = 3.2e-5  # the reference's Adam rate (models/multiframe_MotionNet/solver.prototxt)


def save_motionnet(net: MotionNet, path: str | Path, **meta: Any) -> None:
    """Write `net` as a flowkit MotionNet weights file (atomically: a temporary file renamed)."""
    path = Path(path)
    record = {"format": FORMAT, "version": VERSION,
              "config": {"frames": net.frames, "channels": net.channels, "width": net.width},
              "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}, **meta}
    temporary = path.with_name(path.name + ".tmp")
    torch.save(record, temporary)
    temporary.replace(path)


def read_weights(path: str | Path) -> dict[str, Any]:
    """A weights file's record, with a one-line error for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FlowkitError(f"motionnet weights {path} do not exist")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors: the file is not ours
        raise FlowkitError(f"{path} is not a MotionNet weights file ({type(exc).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise FlowkitError(f"{path} is not a MotionNet weights file (write one with flowkit fit-motionnet)")
    if record.get("version") != VERSION:
        raise FlowkitError(f"{path} is MotionNet weights version {record.get('version')}, not {VERSION}")
    return record


def check_pair_weights(path: str | Path, sha256: str = "") -> str:
    """The SHA-256 of the pair-model weights file `path` (what the flow engine needs), with a
    one-line error when there is none, it is not one, or it is not the file `sha256` names."""
    if not path:
        raise FlowkitError("motionnet needs trained weights: --weights FILE "
                           "(write them with flowkit fit-motionnet)")
    config = read_weights(path)["config"]
    if config.get("frames") != 2:
        raise FlowkitError(f"{path} is a {config.get('frames')}-frame MotionNet; the flow engine "
                           "needs a pair model (flowkit fit-motionnet --frames 2)")
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if sha256 and sha256 != digest:
        raise FlowkitError(f"{path} has changed: its SHA-256 is {digest[:12]}..., not {sha256[:12]}...")
    return digest


def load_motionnet(path: str | Path, device: str | torch.device = "cpu") -> MotionNet:
    """The MotionNet a weights file holds, in eval mode on `device`."""
    record = read_weights(path)
    config = record["config"]
    try:
        net = MotionNet(int(config["frames"]), int(config["channels"]), float(config["width"]))
        net.load_state_dict(record["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FlowkitError(f"{path}: the weights do not fit a MotionNet ({first})") from None
    return net.to(device).eval()


def fit_motionnet(
    snippets: np.ndarray,
    steps: int,
    batch_size: int = 4,
    lr: float = 1e-4,
    crop: int | None = None,
    width: float = 1.0,
    device: str = "auto",
    seed: int = 0,
    net: MotionNet | None = None,
    log: Callable[[int, float, dict[str, float]], None] | None = None,
) -> tuple[MotionNet, list[float]]:
    """Fit a MotionNet to uint8 `snippets` (N, T, H, W, C: T frames, BGR or C = 1 gray) by
    `steps` Adam steps of its unsupervised loss, no flow needed; each step draws `batch_size`
    snippets and (when `crop` is given) one random `crop` x `crop` window of them.
    Returns the network (eval mode) and the loss of each step."""
    if snippets.ndim != 5 or snippets.dtype != np.uint8 or snippets.shape[1] < 2:
        raise FlowkitError("MotionNet fits uint8 snippets (N, T >= 2, H, W, C)")
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise FlowkitError("steps and batch size must be at least 1, the rate above 0")
    n, frames, height, width_px, channels = snippets.shape
    if crop is not None and not 32 <= crop <= min(height, width_px):
        raise FlowkitError(f"crop {crop} must be 32 or more and fit the {width_px}x{height} frames")
    resolved = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = (net or MotionNet(frames, channels, width)).to(resolved).train()
    if (net.frames, net.channels) != (frames, channels):
        raise FlowkitError(f"this MotionNet takes {net.frames} frames of {net.channels} channels, "
                           f"the snippets have {frames} of {channels}")
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999))
    data = torch.from_numpy(snippets)
    losses = []
    for step in range(steps):
        pick = torch.randint(n, (batch_size,), generator=generator)
        batch = data[pick]
        if crop is not None:
            y = int(torch.randint(height - crop + 1, (1,), generator=generator))
            x = int(torch.randint(width_px - crop + 1, (1,), generator=generator))
            batch = batch[:, :, y: y + crop, x: x + crop]
        inputs = normalize_frames(batch.to(resolved))
        loss, terms = unsupervised_loss(inputs, net(inputs), channels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if log is not None:
            log(step, losses[-1], terms)
    return net.eval(), losses


def fit_and_save(snippets: np.ndarray, output: str | Path, steps: int, **options: Any) -> dict[str, Any]:
    """`fit_motionnet`, then its weights written to `output`; what the fit did, for a report."""
    start = time.perf_counter()
    net, losses = fit_motionnet(snippets, steps, **options)
    seconds = time.perf_counter() - start
    save_motionnet(net, output, steps=steps, loss=losses[-1], snippets=int(snippets.shape[0]))
    return {"steps": steps, "first_loss": losses[0], "last_loss": losses[-1], "seconds": seconds,
            "frames": net.frames, "channels": net.channels, "width": net.width}
