"""Clip features of every video of a dataset: `flowkit features DATA OUT`.

    report = extract_features("ucf101.h5", "features.h5", FeatureSettings(weights=("rgb=rgb_imagenet.pt",
                              "flow=flow_imagenet.pt")))

For each video, clips of `clip` frames start every `step` frames (video_features' stack and
step, `flowkit.data.sampling.feature_clips`); as there, a clip needs `clip + 1` frames, the
`clip` flows between them: RGB clip j reads frames s_j .. s_j + clip - 1 and flow clip j the flows
leaving those frames. Clips are read by the data layer (`RGB`, `Flow`: the values the network's
weights expect, flow in [-1, 1] as I3D's), centre-cropped to `size`, and run through one network
per modality: a registered one-input clip network (`i3d`, `x3d_m`, ...) built for 3 or 2
channels, or a tower of a two-tower network (`i3d_two_stream`: an `i3d` per stream). The layer
kept is `pool`, the input of the classifier (`ModelInfo.classifier`) averaged over any positions
left (I3D: the 1024-d features of its final pooling), or `logits`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from flowkit.data import sampling
from flowkit.data.datasets import RGB, Flow, Modality
from flowkit.data.transforms import center_crop
from flowkit.devices import resolve_device
from flowkit.errors import FlowkitError
from flowkit.models.layouts import LAYOUTS, find_layout
from flowkit.models.registry import clip_networks, create_model, info_of, model_info
from flowkit.models.weights import init_from_state, read_checkpoint
from flowkit.store.reader import FlowStore, VideoRecord
from flowkit.training.feature_output import VideoFeatures, open_output
from flowkit.training.precision import amp_mode, autocast, autocast_dtype

MODALITIES = ("rgb", "flow")
CHANNELS = {"rgb": 3, "flow": 2}
LAYERS = ("pool", "logits")
TOWERS = {"i3d_two_stream": "i3d"}  # two-tower networks: the registered network of each tower
RANDOM = "random (seed 0)"  # the `weights` attribute of features of an untrained network


@dataclass(frozen=True)
class FeatureSettings:
    """What `flowkit features` computes. `weights`: checkpoint files, `FILE` (for every
    modality: a one-stream checkpoint, or a two-tower network's whole state dict with its `rgb.`
    and `flow.` towers) or `rgb=FILE` / `flow=FILE`; none: the network's random initialisation
    at seed 0 (the same on every run)."""

    model: str = "i3d_two_stream"
    weights: tuple[str, ...] = ()
    modality: str = "both"
    clip: int = 16
    step: int = 16
    layer: str = "pool"
    size: int = 224
    device: str = "auto"
    batch_size: int = 8
    format: str = "h5"
    amp: str = "off"  # the forward pass's precision (training.precision): off keeps float32 features

    @property
    def modalities(self) -> tuple[str, ...]:
        return MODALITIES if self.modality == "both" else (self.modality,)

    def check(self) -> None:
        """Every option, in one line each, before any work."""
        if self.modality not in (*MODALITIES, "both"):
            raise FlowkitError(f"--modality must be rgb, flow or both, not {self.modality!r}")
        if self.layer not in LAYERS:
            raise FlowkitError(f"--layer must be pool or logits, not {self.layer!r}")
        for name in ("clip", "step", "size", "batch_size"):
            if getattr(self, name) < 1:
                raise FlowkitError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        amp_mode(self.amp)
        tower = TOWERS.get(self.model, self.model)
        model_info(self.model)  # an unknown name: one line listing the models
        if tower not in clip_networks():
            raise FlowkitError(f"{self.model} is not a clip network; features take a one-input 3D "
                               f"network ({', '.join(clip_networks())}) or {', '.join(TOWERS)}")


@dataclass
class Tower:
    """The network of one modality and where its weights came from."""

    network: nn.Module
    weights: str  # the file's name, or RANDOM
    sha256: str  # the file's, or ""
    rgb_values: str  # what its RGB inputs mean (flowkit.data.values): the network's, or its run's


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _weight_files(settings: FeatureSettings) -> dict[str, tuple[Path | None, bool]]:
    """modality -> (its checkpoint file, None: random; whether one FILE serves every stream)."""
    named = [w for w in settings.weights if "=" in w and w.partition("=")[0] in MODALITIES]
    plain = [w for w in settings.weights if w not in named]
    if len(plain) > 1:
        raise FlowkitError(f"--weights {plain[1]}: a second checkpoint for every stream; name each "
                           "stream's (rgb=FILE, flow=FILE)")
    shared = len(settings.modalities) > 1
    files = {m: (Path(plain[0]) if plain else None, shared) for m in settings.modalities}
    for item in named:
        name, _, path = item.partition("=")
        if name not in files:
            raise FlowkitError(f"--weights {item}: no {name} stream with --modality {settings.modality}")
        files[name] = (Path(path), False)
    for path in {f for f, _ in files.values() if f is not None}:
        if not path.is_file():
            raise FlowkitError(f"--weights {path}: no such file")
    return files


def _tower_state(state: dict[str, Tensor], modality: str, label: str, shared: bool) -> dict[str, Tensor]:
    """The part of a checkpoint for one tower: a two-tower state dict's `rgb.`/`flow.` entries,
    or the whole of a one-network checkpoint given for this stream alone."""
    prefix = f"{modality}."
    if any(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if any(k.startswith(tuple(f"{m}." for m in MODALITIES)) for k in state):
        raise FlowkitError(f"{label} has no {modality} tower")
    if shared:
        raise FlowkitError(f"{label} holds one network, not an rgb and a flow tower; give each "
                           "stream its own: --weights rgb=FILE --weights flow=FILE")
    return state


def _num_classes(state: Mapping[str, Tensor], model: nn.Module, label: str) -> int | None:
    """The class count of the checkpoint's classifier, in whichever layout it is."""
    info = info_of(model)
    layout = find_layout(state, model, label)
    key = LAYOUTS[layout.name].rename(f"{info.classifier}.weight", info)
    return int(state[key].shape[0]) if key in state else None


def _run_rgb_values(path: Path) -> str | None:
    """The RGB values a flowkit run's checkpoint (`final.pt`, `best.pt`) was trained on."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    values = saved.get("rgb_values") if isinstance(saved, dict) else None
    return values if isinstance(values, str) else None


def build_towers(settings: FeatureSettings) -> dict[str, Tower]:
    """One network per modality, in eval mode, its weights loaded (`init_from_state`: any layout
    flowkit reads; one line naming the tensors that do not fit)."""
    name = TOWERS.get(settings.model, settings.model)
    towers = {}
    for modality, (path, shared) in _weight_files(settings).items():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # without weights: the same random network on every run
            network = create_model(name, in_chans=CHANNELS[modality])
        if path is not None:
            label = f"--weights {path}"
            state = _tower_state(read_checkpoint(path, label), modality, label, shared)
            classes = _num_classes(state, network, label)
            own = network.get_submodule(info_of(network).classifier).weight.shape[0]
            if classes is not None and classes != own:  # logits of the checkpoint's classes
                network = create_model(name, classes, in_chans=CHANNELS[modality])
            init_from_state(network, state, label)
        values = (_run_rgb_values(path) if path else None) or info_of(network).values
        towers[modality] = Tower(network.eval(), path.name if path else RANDOM, sha256(path) if path else "",
                                 values)
    return towers


class LayerTap:
    """A network's output (`logits`) or the input of its classifier (`pool`), averaged over the
    positions it still has: the features the classifier reads."""

    def __init__(self, network: nn.Module, layer: str) -> None:
        self.network, self.layer = network, layer
        self._kept: Tensor | None = None
        if layer == "pool":
            classifier = network.get_submodule(info_of(network).classifier)
            classifier.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
        """A Linear reads features on the last axis (pytorchvideo's heads apply it channels-last
        at every position), a convolution on axis 1."""
        x = args[0]
        if isinstance(module, nn.Linear):
            self._kept = x.reshape(x.shape[0], -1, x.shape[-1]).mean(1)
        else:
            self._kept = x.flatten(2).mean(2) if x.dim() > 2 else x

    @torch.no_grad()
    def __call__(self, clips: Tensor) -> Tensor:
        logits = self.network(clips)
        return logits if self.layer == "logits" else self._kept


def clip_reader(modality: str, tower: Tower, settings: FeatureSettings) -> Modality:
    """The data layer's reader of one modality's clips, in the values the network expects."""
    if modality == "rgb":
        return RGB(length=settings.clip, values=tower.rgb_values, clip=True)
    return Flow(length=settings.clip, values="unit", clip=True)


def clip_starts(video: VideoRecord, settings: FeatureSettings) -> np.ndarray:
    """The first frame of every clip of a video; a one-line FlowkitError if it has none."""
    entry = video.entry
    if "flow" in settings.modalities and entry.pairs == 0:
        raise FlowkitError("no flow stored (an RGB-only video)")
    if "rgb" in settings.modalities and not video.has_rgb:
        raise FlowkitError("no RGB frames stored (extracted with --no-rgb)")
    length = entry.pairs if "flow" in settings.modalities else entry.frames - 1
    starts = sampling.feature_clips(length, settings.clip, settings.step)
    if not len(starts):
        raise FlowkitError(f"{entry.frames} frames: a clip of {settings.clip} needs {settings.clip + 1}")
    return starts


def read_clips(video: VideoRecord, reader: Modality, starts: np.ndarray, size: int) -> Tensor:
    """(clips, C, T, size, size): each clip centre-cropped, as the data layer lays it out."""
    crop = center_crop(video.entry.height, video.entry.width, size)[0]
    return torch.from_numpy(np.stack([reader.view(reader.read(video, int(s)), crop, video) for s in starts]))


def video_features(video: VideoRecord, taps: dict[str, LayerTap], settings: FeatureSettings,
                   device: torch.device, towers: dict[str, Tower]) -> VideoFeatures:
    """Every modality's features of one video, with their attributes."""
    starts = clip_starts(video, settings)
    frames = starts[:, None] + np.arange(settings.clip)
    out: VideoFeatures = {}
    for modality, tap in taps.items():
        tower = towers[modality]
        reader = clip_reader(modality, tower, settings)
        parts = []
        for first in range(0, len(starts), settings.batch_size):
            clips = read_clips(video, reader, starts[first:first + settings.batch_size], settings.size)
            with autocast(settings.amp, device):
                parts.append(tap(clips.to(device)).float().cpu())
        attrs = {"model": settings.model, "weights": tower.weights, "weights_sha256": tower.sha256,
                 "layer": settings.layer, "clip": settings.clip, "step": settings.step,
                 "size": settings.size, "fps": float(video.entry.fps), "frames": frames}
        out[modality] = (torch.cat(parts).numpy(), attrs)
    return out


@dataclass
class FeatureReport:
    """What a features run did."""

    out: str
    videos: int = 0
    computed: int = 0
    skipped: int = 0
    clips: int = 0
    elapsed_s: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)  # id -> one-line error, this run's and older

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, "videos": self.videos, "computed": self.computed, "skipped": self.skipped,
                "clips": self.clips, "elapsed_s": round(self.elapsed_s, 3),
                "failed": [{"id": k, "error": v} for k, v in self.failed.items()]}


# What one video can raise: unreadable (h5py: OSError, KeyError), undecodable, or too small for
# the network (torch: RuntimeError, as is running out of GPU memory); the others go on.
VIDEO_ERRORS = (FlowkitError, OSError, KeyError, ValueError, RuntimeError)


def extract_features(data: str | Path, out: str | Path, settings: FeatureSettings,
                     progress: bool = False) -> FeatureReport:
    """Features of every video of the dataset `data` into `out`; videos already there are
    skipped, a video that fails is recorded (and retried by the next run), the others go on."""
    settings.check()
    began = time.perf_counter()
    device = resolve_device(settings.device)
    autocast_dtype(settings.amp, device)  # a mode the device cannot run: one line, before any work
    towers = build_towers(settings)  # bad weights: an error before OUT is touched
    taps = {m: LayerTap(t.network.to(device), settings.layer) for m, t in towers.items()}
    stored = {"model": settings.model, "modalities": list(settings.modalities), "clip": settings.clip,
              "step": settings.step, "layer": settings.layer, "size": settings.size,
              "weights_sha256": {m: t.sha256 for m, t in towers.items()}}
    report = FeatureReport(str(out))
    with FlowStore(data) as store, open_output(out, settings.format, stored) as output:
        done = output.done()
        report.videos = len(store.ids)
        todo = [i for i in store.ids if i not in done]
        report.skipped = report.videos - len(todo)
        for video_id in tqdm(todo, unit="video", desc="videos", disable=not progress):
            try:
                features = video_features(store.video(video_id), taps, settings, device, towers)
            except VIDEO_ERRORS as error:
                output.record_failure(video_id, str(error).splitlines()[0] if str(error) else type(error).__name__)
                continue
            output.write(video_id, features)
            report.computed += 1
            report.clips += len(next(iter(features.values()))[0])
        output.finish()
        report.failed = {k: v for k, v in output.failures().items() if k in store}
    report.elapsed_s = time.perf_counter() - began
    return report
