"""What a stream is: training settings turned into the datasets and the model of one stream.

`load_data` opens a dataset with its labels once, before any training; `stream_modality`,
`stream_datasets` and `stream_model` then make, for a stream (`rgb`, `flow`, `rgbdiff` or TSN's
`warped_flow`, flow with the camera motion removed, read from `extract --warp`'s datasets), the
input it reads, its training and test datasets and its network; `view_logits` is how the test
protocol scores a video's views with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from flowkit.data.annotations import Annotation, LabelSource
from flowkit.data.datasets import (
    RGB,
    Flow,
    Modality,
    ShardDataset,
    TwoStreamDataset,
    dataset_labels,
)
from flowkit.data.transforms import MultiScaleCrop, RandomCrop
from flowkit.errors import FlowkitError
from flowkit.models.fusion import TwoStreamFusion
from flowkit.models.registry import create_model, model_info
from flowkit.models.tsn import TSN
from flowkit.models.weights import load_init
from flowkit.training.config import TrainConfig

STREAMS = ("rgb", "flow", "rgbdiff", "warped_flow")
FLOW_STREAMS = ("flow", "warped_flow")  # flow stacks: one network, one input layout, two sources


@dataclass
class LabelledData:
    """A dataset with its classes and its labelled training and test videos."""

    path: Path
    classes: list[str]
    train: list[Annotation]
    test: list[Annotation]


def load_data(data: str | Path, labels: str | Path | None, fmt: str = "auto", split: int = 1,
              test: str | Path | None = None) -> LabelledData:
    """Open the dataset and match its ids to the label lists; errors before any training."""
    train, test_list = dataset_labels(data, labels, fmt, split, test)
    if not train.rows:
        raise FlowkitError("the training split is empty: no labelled video is in the dataset")
    return LabelledData(Path(data), train.classes, train.rows, test_list.rows)


@dataclass(frozen=True)
class DataSource:
    """Where a command's labelled videos come from: a dataset (`--data`) and its labels."""

    data: Path
    labels: LabelSource = field(default_factory=LabelSource)

    def load(self) -> LabelledData:
        return load_data(self.data, self.labels.path, self.labels.format, self.labels.split,
                         self.labels.test_list)


# ---- what a stream is ---------------------------------------------------------------------------------


def stream_modality(config: TrainConfig, stream: str, rgb_values: str | None = None) -> Modality:
    """The input one stream reads: frames or flow, as 2D snippets or 3D clips; RGB values as the
    network's metadata says its weights expect them, unless `rgb_values` (a checkpoint's) says."""
    values = rgb_values or model_info(config.arch if config.clips else config.backbone).values
    if config.clips:
        if stream == "rgb":
            return RGB(length=config.clip_length, stride=config.clip_stride, values=values, clip=True)
        if stream in FLOW_STREAMS:
            return Flow(length=config.clip_length, stride=config.clip_stride, values="unit", clip=True,
                        warped=stream == "warped_flow")
        raise FlowkitError(f"{config.arch} has rgb and flow (or warped_flow) streams, not rgbdiff")
    length = 10 if config.arch == "twostream" and config.flow_length == TrainConfig.flow_length else config.flow_length
    if stream == "rgb":
        return RGB(values=values)
    if stream == "rgbdiff":
        return RGB(length=length + 1, values=values)
    return Flow(length=length, stacking=config.stacking, mean_subtraction=config.mean_subtraction,
                warped=stream == "warped_flow")


def _segments(config: TrainConfig) -> int:
    return 1 if config.arch == "twostream" else config.segments


def stream_datasets(config: TrainConfig, stream: str, data: LabelledData,
                    rgb_values: str | None = None) -> tuple[ShardDataset, ShardDataset | None]:
    """Training and test datasets of one stream (test None when there is no test split)."""
    modality = stream_modality(config, stream, rgb_values)
    train = ShardDataset(data.path, data.train, modality, segments=_segments(config), transform=train_crop(config),
                         clips=config.clips, size=config.crop_size, seed=config.seed)
    return train, test_dataset(config, stream, data, rgb_values) if data.test else None


def test_dataset(config: TrainConfig, stream: str, data: LabelledData,
                 rgb_values: str | None = None) -> ShardDataset:
    """The test split of one stream, every view of a video per item: the run's test protocol."""
    return ShardDataset(data.path, data.test, stream_modality(config, stream, rgb_values), train=False,
                        test_snippets=config.test_snippets, test_crops=config.test_crops, test_flip=config.flip,
                        clips=config.clips, size=config.crop_size, seed=config.seed)


def train_crop(config: TrainConfig) -> MultiScaleCrop | RandomCrop:
    """The training crop: TSN's multi-scale crop for 2D networks, a random crop for 3D ones (I3D's)."""
    flip = 0.5 if config.flip else 0.0
    if config.clips:
        return RandomCrop(config.crop_size, flip=flip)
    return MultiScaleCrop(config.crop_size, flip=flip)


def stream_model(config: TrainConfig, stream: str, num_classes: int) -> nn.Module:
    """The network of one stream, untrained (TSN or the two-stream paper's 2D network, or a 3D
    clip network such as I3D)."""
    settings = config.stream(stream)
    if config.clips:
        return create_model(config.arch, num_classes, **config.model_options(stream))
    modality = stream_modality(config, stream)
    length = modality.clip_len - 1 if stream == "rgbdiff" else modality.clip_len
    # Warped flow is flow to the network: the same input layout, dropout and initialisation.
    return create_model("tsn", num_classes, backbone=config.backbone,
                        modality="flow" if stream in FLOW_STREAMS else stream,
                        num_segments=_segments(config), snippet_length=None if stream == "rgb" else length,
                        consensus=config.consensus, dropout=settings.dropout, partial_bn=config.partial_bn)


def view_logits(model: nn.Module, views: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Logits of every test view of one video, for one stream's network."""
    if isinstance(model, TSN):
        return model.backbone(views[0])  # each view alone: TSN averages snippet scores at test time
    return model(*views)


def fusion_snippets(config: TrainConfig) -> int:
    """Test snippets of a mid-level fusion: whole groups of `fusion_frames` time steps."""
    t = config.fusion_frames
    return max(t, config.test_snippets // t * t)


def fusion_datasets(config: TrainConfig, data: LabelledData) -> tuple[TwoStreamDataset, TwoStreamDataset | None]:
    """Training and test datasets of a mid-level fusion: RGB and flow of the same time steps."""
    rgb_mod, flow_mod = stream_modality(config, "rgb"), stream_modality(config, "flow")
    common = {"size": config.crop_size, "seed": config.seed, "segments": config.fusion_frames,
              "transform": train_crop(config)}
    train = TwoStreamDataset(ShardDataset(data.path, data.train, rgb_mod, **common),
                             ShardDataset(data.path, data.train, flow_mod, **common))
    return train, fusion_test_dataset(config, data) if data.test else None


def fusion_test_dataset(config: TrainConfig, data: LabelledData) -> TwoStreamDataset:
    """The test split of a mid-level fusion: RGB and flow of the same test snippets, one crop."""
    common = {"train": False, "test_snippets": fusion_snippets(config), "test_crops": 1,
              "test_flip": config.flip, "size": config.crop_size, "seed": config.seed}
    return TwoStreamDataset(ShardDataset(data.path, data.test, stream_modality(config, "rgb"), **common),
                            ShardDataset(data.path, data.test, stream_modality(config, "flow"), **common))


def fusion_model(config: TrainConfig, num_classes: int, with_init: bool = False) -> TwoStreamFusion:
    """The two towers of a mid-level fusion (Feichtenhofer et al. 2016), each started from its
    stream's `init` checkpoint with `with_init` (before the fusion replaces their classifiers)."""
    flow_length = stream_modality(config, "flow").clip_len
    spatial = create_model(config.backbone, num_classes, in_chans=3, dropout=config.rgb.dropout)
    temporal = create_model(config.backbone, num_classes, in_chans=2 * flow_length, dropout=config.flow.dropout)
    for tower, init in ((spatial, config.rgb.init), (temporal, config.flow.init)):
        if with_init and init:
            load_init(tower, init)
    return TwoStreamFusion(spatial, temporal, fusion=config.fusion,
                           temporal_fusion="average" if config.fusion == "bilinear" else "conv3d")


def fusion_view_logits(time_steps: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor]:
    """Test views of a mid-level fusion, grouped `time_steps` snippets at a time; the fused and the
    temporal tower's softmax averaged, as the paper does at test time."""

    def logits(model: nn.Module, views: tuple[torch.Tensor, ...]) -> torch.Tensor:
        rgb, flow = views
        fused, temporal = model(rgb.view(-1, time_steps, *rgb.shape[1:]),
                                flow.view(-1, time_steps, *flow.shape[1:]))
        return ((fused.softmax(-1) + temporal.softmax(-1)) / 2).log()

    return logits


def video_ids(dataset: ShardDataset | TwoStreamDataset) -> list[str]:
    """The ids of a dataset's videos, in its order (the order of its test scores)."""
    rows = dataset.flow.rows if isinstance(dataset, TwoStreamDataset) else dataset.rows
    return [r.video for r in rows]
