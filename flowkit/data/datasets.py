"""PyTorch datasets reading flowkit shards: RGB frames, RGB differences, flow stacks, 3D clips.

    labels = read_ucf101("ucfTrainTestlist", split=1).split("train")
    flow = ShardDataset("ucf101.h5", labels, Flow(length=5), segments=3, transform=MultiScaleCrop())
    x, y = flow[0]      # x: (3, 10, 224, 224) = K segments x 2L channels; y: the label

A dataset pairs a modality (what one snippet is: `RGB` frames or `Flow` stacks) with a sampling rule
(TSN segments, or dense clips for 3D networks) and a spatial transform. In training each sample
draws its own positions and crop from a generator seeded by (seed, epoch, index), so an epoch is
repeatable; at test time it returns every view of the test protocol: `test_snippets` snippets
(or every clip) times 1 or 10 crops. The shards are opened lazily, once per process, so
datasets work in DataLoader workers (h5py handles never cross a fork), persistent ones included
(`set_epoch` reaches them), and with any sampler, DistributedSampler included.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from flowkit.data import sampling
from flowkit.data.annotations import Annotation, LabelList, load_labels
from flowkit.data.stacking import (
    bidirectional_stack,
    subtract_mean_flow,
    trajectory_stack,
)
from flowkit.data.transforms import Crop, MultiScaleCrop, RandomCrop, apply_crop, eval_views
from flowkit.data.values import flow_values, rgb_values
from flowkit.errors import FlowkitError
from flowkit.flow.quantize import centre_codes, dequantize_flow, quantization_step
from flowkit.store.index import IndexEntry
from flowkit.store.reader import FlowStore, VideoRecord

# ---- modalities: what one snippet is --------------------------------------------------------------


Span = tuple[int, int]  # the positions a sample may read: (first, how many)


class Modality(ABC):
    """One snippet's worth of input: `clip_len` positions read from a video (`read`), then cut
    to one view and laid out for the network (`view`): several views may share one read.

    Positions are counted inside a span: the whole video, or the clip a row labels (`span`).
    """

    clip_len: int = 1
    stride: int = 1

    @abstractmethod
    def positions(self, entry: IndexEntry) -> int:
        """How many positions (frames or flow pairs) the video has."""

    @abstractmethod
    def span(self, entry: IndexEntry, row: Annotation) -> Span:
        """The positions a row's samples read: the whole video, or its clip's."""

    @abstractmethod
    def read(self, video: VideoRecord, start: int, span: Span | None = None) -> np.ndarray:
        """The snippet starting at `start` of `span` (default: the whole video), as (N, H, W, C)."""

    @abstractmethod
    def view(self, snippet: np.ndarray, crop: Crop, video: VideoRecord) -> np.ndarray:
        """One crop of a snippet in the network's layout, values normalised."""

    def check(self, store: FlowStore) -> None:
        """Raise a FlowkitError (one line) if the dataset lacks what this modality reads."""
        return None


def _read_frames(video: VideoRecord, indices: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB."""
    return video.rgb_stack(indices)


def _read_codes(video: VideoRecord, indices: np.ndarray, backward: bool = False,
                warped: bool = False) -> np.ndarray:
    """uint8 (N, H, W, 2) flow codes."""
    return video.flow_stack(indices, backward, warped)


def _channels_first(x: np.ndarray, clip: bool) -> np.ndarray:
    """(N, h, w, C) to (C, N, h, w) for 3D networks, or (N*C, h, w) for 2D ones."""
    if clip:
        return np.ascontiguousarray(x.transpose(3, 0, 1, 2))
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(-1, *x.shape[1:3]))


class RGB(Modality):
    """RGB frames: `length` consecutive frames per snippet for 2D networks, stacked as 3 x
    `length` channels (1 for the spatial stream; L + 1 for TSN's RGB difference, which the TSN
    model differences itself), or, with `clip=True`, a clip of `length` frames `stride` apart for
    3D networks, laid out (3, T, H, W). Clips loop past the end; snippets repeat the last frame."""

    def __init__(self, length: int = 1, stride: int = 1, values: str = "imagenet", clip: bool = False) -> None:
        self.clip_len, self.stride, self.values, self.clip = length, stride, values, clip

    def positions(self, entry: IndexEntry) -> int:
        return entry.frames

    def span(self, entry: IndexEntry, row: Annotation) -> Span:
        return (0, entry.frames) if row.frames is None else (row.offset, row.frames)

    def read(self, video: VideoRecord, start: int, span: Span | None = None) -> np.ndarray:
        first, count = span or (0, video.entry.frames)
        indices = sampling.clip_indices(start, self.clip_len, count, self.stride, loop=self.clip)
        return _read_frames(video, first + indices)

    def view(self, snippet: np.ndarray, crop: Crop, video: VideoRecord) -> np.ndarray:
        return _channels_first(rgb_values(apply_crop(snippet, crop, is_flow=False), self.values), self.clip)


class Flow(Modality):
    """Optical-flow input: `length` consecutive flows.

    `stacking`: "flow" (optical-flow stacking) or "trajectory" (trajectory stacking);
    `mean_subtraction` removes each field's mean; `bidirectional` takes length/2 forward and
    length/2 backward flows around the snippet's middle frame (needs `extract --backward`).
    2D networks get (2L, H, W) with u and v interleaved; `clip=True` gives 3D networks
    (2, T, H, W) with flows `stride` apart, looping past the end. `values`: "pixels" or "unit".
    Short videos repeat their last flow (2D) or loop (3D). `warped` reads TSN's warped flow
    (camera motion removed; needs `extract --warp`) instead of the plain flow.
    """

    def __init__(self, length: int = 10, stacking: str = "flow", mean_subtraction: bool = False,
                 bidirectional: bool = False, values: str = "pixels", clip: bool = False,
                 stride: int = 1, warped: bool = False) -> None:
        if stacking not in ("flow", "trajectory"):
            raise FlowkitError(f"stacking must be 'flow' or 'trajectory', not {stacking!r}")
        if bidirectional and (length % 2 or clip or stacking != "flow"):
            raise FlowkitError("bidirectional stacking needs an even length and flow stacking, 2D")
        if bidirectional and warped:
            raise FlowkitError("warped flow is forward flow only: no bidirectional stacking of it")
        self.clip_len, self.stacking, self.mean_subtraction = length, stacking, mean_subtraction
        self.bidirectional, self.values, self.clip, self.stride = bidirectional, values, clip, stride
        self.warped = warped

    def check(self, store: FlowStore) -> None:
        if self.warped and not (store.settings or {}).get("warp"):
            raise FlowkitError(f"{store.path} has no warped flow: extract it with --warp")

    def positions(self, entry: IndexEntry) -> int:
        return entry.pairs

    def span(self, entry: IndexEntry, row: Annotation) -> Span:
        """A clip of F frames holds the F - 1 flows between them (one at least: a one-frame clip
        gets the flow leaving it, or the video's last)."""
        if row.frames is None:
            return 0, entry.pairs
        first = min(row.offset, entry.pairs - 1)
        return first, max(min(row.frames - 1, entry.pairs - first), 1)

    @property
    def _whole_fields(self) -> bool:
        """Trajectories and mean subtraction need whole fields in pixels before any crop."""
        return self.stacking == "trajectory" or self.mean_subtraction

    def read(self, video: VideoRecord, start: int, span: Span | None = None) -> np.ndarray:
        """uint8 codes (N, H, W, 2), or float32 pixels when whole fields are needed."""
        first, pairs = span or (0, video.entry.pairs)
        if self.bidirectional:
            half = self.clip_len // 2
            forward = first + sampling.clip_indices(start + half, half, pairs, loop=False)
            backward = first + sampling.clip_indices(start, half, pairs, loop=False)
            codes = bidirectional_stack(_read_codes(video, forward), _read_codes(video, backward, backward=True))
        else:
            indices = sampling.clip_indices(start, self.clip_len, pairs, self.stride, loop=self.clip)
            codes = _read_codes(video, first + indices, warped=self.warped)
        if not self._whole_fields:
            return codes  # cropped first, dequantized after: the cheap order
        stack = dequantize_flow(codes, video.bound)
        if self.stacking == "trajectory":
            stack = trajectory_stack(stack)
        if self.mean_subtraction:
            stack = subtract_mean_flow(stack)
        return stack

    def view(self, snippet: np.ndarray, crop: Crop, video: VideoRecord) -> np.ndarray:
        if snippet.dtype == np.uint8:
            # Codes centred on zero motion, so that a flip may negate u; laid out (one copy), then
            # scaled to pixels in place.
            x = _channels_first(apply_crop(snippet, crop, is_flow=True, convert=centre_codes, contiguous=False),
                                self.clip)
            x *= np.float32(quantization_step(video.bound))
        else:
            x = _channels_first(apply_crop(snippet, crop, is_flow=True, contiguous=False), self.clip)
        return flow_values(x, video.bound, self.values)


# ---- the datasets ---------------------------------------------------------------------------------------


class _Store:
    """A FlowStore opened on first use in each process (h5py handles must not cross a fork)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._store: FlowStore | None = None
        self._pid = -1

    def get(self) -> FlowStore:
        if self._store is None or self._pid != os.getpid():
            self._store = FlowStore(self.path)
            self._pid = os.getpid()
        return self._store

    def __getstate__(self) -> dict:
        return {"path": self.path, "_store": None, "_pid": -1}


# ---- labels tied to a dataset's ids: the one place they meet a store --------------------------------


def dataset_labels(path: str | Path, labels: str | Path | None, fmt: str = "auto", split: int = 1,
                   test: str | Path | None = None) -> tuple[LabelList, LabelList]:
    """(train, test) label lists of the dataset at `path`, read by `load_labels` and matched to the
    ids the dataset holds (videos it lacks are skipped with one warning)."""
    with FlowStore(path) as store:
        return load_labels(labels, store.ids, fmt, split, test)


def _annotations(labels: LabelList | list[Annotation], store: FlowStore) -> list[Annotation]:
    """The rows a dataset reads: a LabelList matched to the store's ids (every video must be
    there), or rows already matched (by `dataset_labels`), checked."""
    rows = labels.match(store.ids).rows if isinstance(labels, LabelList) else list(labels)
    missing = [r.video for r in rows if r.video not in store]
    if missing:
        raise FlowkitError(f"{len(missing)} labelled videos are not in {store.path} (first: {missing[0]})")
    if not rows:
        raise FlowkitError("no labelled videos: the split is empty")
    for row in rows:
        frames = store.entries[row.video].frames
        if row.frames is not None and row.offset + row.frames > frames:
            raise FlowkitError(f"{row.video}: the labelled clip (frames {row.offset} to "
                               f"{row.offset + row.frames - 1}) runs past the video's {frames} frames")
    return rows


class ShardDataset(Dataset):
    """One stream: (input, label) samples of `modality` from the labelled videos of a dataset.

    Sampling: `segments` snippets (TSN; 1 for the two-stream paper's single snippet), or, with
    `clips=True`, one dense clip (3D networks). Test mode (`train=False`): `test_snippets` evenly
    spaced snippets (or every non-overlapping clip) times `test_crops` crops (1 or 10), stacked
    on the first axis (ten crops are five when `test_flip` is off). `transform` draws training crops (default: TSN's multi-scale crop for
    snippets, a random crop for clips); `size` is the crop side. A row that labels a clip of a
    longer video (`Annotation.offset`, `frames`) is sampled inside that clip only.
    """

    def __init__(
        self,
        path: str | Path,
        labels: LabelList | list[Annotation],
        modality: Modality,
        *,
        segments: int = 3,
        clips: bool = False,
        train: bool = True,
        transform: MultiScaleCrop | RandomCrop | None = None,
        size: int = 224,
        test_snippets: int = 25,
        test_crops: int = 1,
        test_flip: bool = True,
        seed: int = 0,
    ) -> None:
        self.store = _Store(path)
        store = self.store.get()
        modality.check(store)
        self.rows = _annotations(labels, store)
        self.entries = {r.video: store.entries[r.video] for r in self.rows}
        self.modality, self.segments, self.clips, self.train = modality, segments, clips, train
        self.transform = transform or (RandomCrop(size) if clips else MultiScaleCrop(size))
        self.size, self.test_snippets, self.test_crops = size, test_snippets, test_crops
        self.test_flip = test_flip
        self.seed = seed
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Draw other positions and crops from the next epoch on; call it before iterating the
        epoch's loader (as DistributedSampler.set_epoch).

        The epoch lives in shared memory, not in a plain attribute: persistent DataLoader workers
        keep the copy of the dataset they got at the first epoch, and a shared tensor is the one
        state those copies see change (inherited by forked workers, passed by handle to spawned
        ones). Keeping it in the dataset, rather than in the sampler's indices, keeps every
        sampler (DistributedSampler, the trainer's RankSampler) and `dataset[i]` working as is.
        """
        self._epoch[0] = epoch

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.rows]

    def starts(self, entry: IndexEntry, rng: np.random.Generator | None, span: Span | None = None) -> np.ndarray:
        """Snippet or clip starts in `span` (default: the whole video): training draws with `rng`,
        testing does not."""
        m = self.modality
        length = span[1] if span else m.positions(entry)
        if self.clips:
            if rng is not None:
                return np.array([sampling.random_clip(length, m.clip_len, m.stride, rng)])
            return sampling.all_clips(length, m.clip_len, m.stride)
        if rng is not None:
            return sampling.tsn_segments(length, self.segments, m.clip_len, rng)
        return sampling.evenly_spaced(length, self.test_snippets, m.clip_len)

    def crops(self, entry: IndexEntry, rng: np.random.Generator | None) -> list[Crop]:
        if rng is not None:
            return [self.transform.draw(rng, entry.height, entry.width)]
        return eval_views(entry.height, entry.width, self.size, self.test_crops, self.test_flip)

    def render(self, video: VideoRecord, starts: np.ndarray, crops: list[Crop], span: Span | None = None) -> torch.Tensor:
        """Every snippet at `starts` of `span` under every crop, in the network's layout, stacked."""
        snippets = [self.modality.read(video, int(s), span) for s in starts]
        views = [self.modality.view(snippet, crop, video) for snippet in snippets for crop in crops]
        return torch.from_numpy(np.stack(views))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.rows[index]
        entry = self.entries[row.video]
        rng = self.rng(index) if self.train else None
        video = self.store.get().video(row.video)
        span = self.modality.span(entry, row)
        x = self.render(video, self.starts(entry, rng, span), self.crops(entry, rng), span)
        if self.clips and self.train:
            x = x[0]  # one clip: (C, T, H, W)
        return x, row.label


class TwoStreamDataset(Dataset):
    """(rgb, flow, label) samples taken at the same moments with the same crop.

    Each flow snippet of L flows starting at s is paired with the RGB frame in its middle
    (s + L/2); for 3D clips the RGB clip starts where the flow clip does. Both streams must read
    the same dataset and labels; sampling, crops and test protocol are the flow stream's.
    """

    def __init__(self, rgb: ShardDataset, flow: ShardDataset) -> None:
        if rgb.store.path != flow.store.path or rgb.rows != flow.rows:
            raise FlowkitError("the two streams must read the same dataset and labels")
        self.rgb, self.flow = rgb, flow

    def __len__(self) -> int:
        return len(self.flow)

    def set_epoch(self, epoch: int) -> None:
        self.rgb.set_epoch(epoch)
        self.flow.set_epoch(epoch)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        flow = self.flow
        row = flow.rows[index]
        entry = flow.entries[row.video]
        rng = flow.rng(index) if flow.train else None
        flow_span, rgb_span = flow.modality.span(entry, row), self.rgb.modality.span(entry, row)
        starts = flow.starts(entry, rng, flow_span)
        crops = flow.crops(entry, rng)
        video = flow.store.get().video(row.video)
        middle = 0 if flow.clips else flow.modality.clip_len // 2
        rgb_starts = np.minimum(starts + middle, rgb_span[1] - 1)
        x_rgb = self.rgb.render(video, rgb_starts, crops, rgb_span)
        x_flow = flow.render(video, starts, crops, flow_span)
        if flow.clips and flow.train:
            x_rgb, x_flow = x_rgb[0], x_flow[0]
        return x_rgb, x_flow, row.label
