"""The networks: 2D spatial and temporal streams, TSN, two-stream I3D, late and mid-level fusion.

Plain PyTorch modules (this package imports torch only). Build any of them by name with
`create_model`; `list_models()` names them all.
"""

from .backbone import STAGES, Backbone
from .bninception import BNInception, bninception
from .fusion import (
    TSN_WEIGHTS,
    LinearScoreFusion,
    SpatialFusion,
    TwoStreamFusion,
    late_fusion,
    two_stream_fusion,
)
from .i3d import I3D, InceptionV1, TwoStreamI3D, i3d, i3d_two_stream, inception_v1, load_pytorch_i3d
from .inflate import inflate_state_dict, inflate_weight
from .init import cross_modality_init, cross_modality_weight, partial_bn
from .registry import create_model, list_models
from .resnet import ResNet, resnet18, resnet18_3d, resnet50, resnet50_3d
from .tsn import TSN, SegmentConsensus, tsn

__all__ = [
    "I3D",
    "STAGES",
    "TSN",
    "TSN_WEIGHTS",
    "BNInception",
    "Backbone",
    "InceptionV1",
    "LinearScoreFusion",
    "ResNet",
    "SegmentConsensus",
    "SpatialFusion",
    "TwoStreamFusion",
    "TwoStreamI3D",
    "bninception",
    "create_model",
    "cross_modality_init",
    "cross_modality_weight",
    "i3d",
    "i3d_two_stream",
    "inception_v1",
    "inflate_state_dict",
    "inflate_weight",
    "late_fusion",
    "list_models",
    "load_pytorch_i3d",
    "partial_bn",
    "resnet18",
    "resnet18_3d",
    "resnet50",
    "resnet50_3d",
    "tsn",
    "two_stream_fusion",
]
