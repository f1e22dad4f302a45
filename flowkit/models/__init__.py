"""The networks: 2D streams, TSN, two-stream I3D and its paper's baselines, S3D, X3D, SlowFast,
T3D, Hara's 3D ResNets, C3D, video ResNets, hidden two-stream, late and mid-level fusion.

Plain PyTorch modules (this package imports torch only). Build any of them by name with
`create_model`; `list_models()` names them all and `model_info(name)` says what each expects.
"""

# Importing a model module registers its builders: this order is list_models()'s.
# isort: off
from .resnet import ResNet, resnet18, resnet50, resnet18_3d, resnet50_3d
from .bninception import BNInception, bninception
from .tiny import TinyNet, tiny
from .i3d import I3D, InceptionV1, TwoStreamI3D, i3d, i3d_two_stream, inception_v1
from .video_resnet import VideoResNet, mc3_18, r2plus1d_18, r2plus1d_34, r3d_18
from .tsn import TSN, SegmentConsensus, tsn
from .s3d import S3D, s3d, s3d_g
from .x3d import X3D, x3d_l, x3d_m, x3d_s, x3d_xs
from .slowfast import SlowFast, slowfast_r50
from .fusion import (
    TSN_WEIGHTS,
    LinearScoreFusion,
    SpatialFusion,
    TwoStreamFusion,
    late_fusion,
    two_stream_fusion,
)
from .hara_resnet import HaraResNet, hara_r3d_18, hara_r3d_34, hara_r3d_50, hara_r3d_101
from .c3d import C3D, c3d
from .t3d import T3D, t3d
from .quo_vadis_baselines import (
    ConvNetLSTM,
    Fused3D,
    PaperConvNet3D,
    convnet_lstm,
    i3d_paper_3d_convnet,
    i3d_paper_3d_fused,
)
from .hidden_two_stream import HiddenTwoStream, hidden_two_stream
# isort: on
from .backbone import STAGES, Backbone
from .init import partial_bn
from .registry import (
    ModelInfo,
    create_model,
    info_of,
    list_models,
    model_info,
    register_model,
    reset_classifier,
)
from .weights import (
    cross_modality_init,
    cross_modality_weight,
    inflate_state_dict,
    inflate_weight,
    init_from_state,
    load_init,
    load_pytorch_i3d,
)

__all__ = [
    "C3D",
    "I3D",
    "S3D",
    "STAGES",
    "T3D",
    "TSN",
    "TSN_WEIGHTS",
    "X3D",
    "BNInception",
    "Backbone",
    "ConvNetLSTM",
    "Fused3D",
    "HaraResNet",
    "HiddenTwoStream",
    "InceptionV1",
    "LinearScoreFusion",
    "ModelInfo",
    "PaperConvNet3D",
    "ResNet",
    "SegmentConsensus",
    "SlowFast",
    "SpatialFusion",
    "TinyNet",
    "TwoStreamFusion",
    "TwoStreamI3D",
    "VideoResNet",
    "bninception",
    "c3d",
    "convnet_lstm",
    "create_model",
    "cross_modality_init",
    "cross_modality_weight",
    "hara_r3d_18",
    "hara_r3d_34",
    "hara_r3d_50",
    "hara_r3d_101",
    "hidden_two_stream",
    "i3d",
    "i3d_paper_3d_convnet",
    "i3d_paper_3d_fused",
    "i3d_two_stream",
    "inception_v1",
    "inflate_state_dict",
    "inflate_weight",
    "info_of",
    "init_from_state",
    "late_fusion",
    "list_models",
    "load_init",
    "load_pytorch_i3d",
    "mc3_18",
    "model_info",
    "partial_bn",
    "r2plus1d_18",
    "r2plus1d_34",
    "r3d_18",
    "register_model",
    "reset_classifier",
    "resnet18",
    "resnet18_3d",
    "resnet50",
    "resnet50_3d",
    "s3d",
    "s3d_g",
    "slowfast_r50",
    "t3d",
    "tiny",
    "tsn",
    "two_stream_fusion",
    "x3d_l",
    "x3d_m",
    "x3d_s",
    "x3d_xs",
]
