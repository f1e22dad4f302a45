"""Reading flowkit shards into PyTorch: label lists, sampling, stacking, transforms, datasets."""

from flowkit.data.annotations import (
    Annotation,
    AnnotationError,
    LabelList,
    from_folders,
    read_csv,
    read_file_list,
    read_hmdb51,
    read_kinetics_csv,
    read_ucf101,
)
from flowkit.data.datasets import RGB, Flow, ShardDataset, TwoStreamDataset
from flowkit.data.transforms import MultiScaleCrop, RandomCrop

__all__ = [
    "RGB",
    "Annotation",
    "AnnotationError",
    "Flow",
    "LabelList",
    "MultiScaleCrop",
    "RandomCrop",
    "ShardDataset",
    "TwoStreamDataset",
    "from_folders",
    "read_csv",
    "read_file_list",
    "read_hmdb51",
    "read_kinetics_csv",
    "read_ucf101",
]
