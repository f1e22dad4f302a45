"""What the numbers fed to a network mean: one home for each normalisation.

RGB: `imagenet` (0..1, then ImageNet mean/std per channel, RGB order: torchvision's
pretraining), `unit` ([-1, 1], I3D's and TF-slim's) or `caffe` (BGR order, 0..255, minus the
per-channel mean [104, 117, 128], no std: TSN's BN-Inception weights, as tsn-pytorch's `main.py`
feeds them with `Stack(roll=True)`, `ToTorchFormatTensor(div=False)` and `models.py`'s
`input_mean`), `hara_kinetics` (0..1, then the Kinetics mean/std of kenshohara/3D-ResNets-PyTorch
`mean.py`, RGB: its `main.py` default `--mean_dataset kinetics --value_scale 1`), `mmaction_c3d`
(RGB order, 0..255, minus [104, 117, 128], std 1: mmaction2's
`configs/_base_/models/c3d_sports1m_pretrained.py` `data_preprocessor`, on decord's RGB frames with
`to_rgb=False`), `kinetics` (0..1, then the Kinetics-400 mean/std of torchvision's video
weights, `torchvision/transforms/_presets.py` `VideoClassification`) or `x3d` (0..1, then mean
0.45, std 0.225 on every channel: pytorchvideo's X3D, `pytorchvideo/transforms/
transforms_factory.py` `video_mean`/`video_std`). Each network's metadata (`flowkit.models.model_info(name).values`) names the one
its weights expect. Flow: `pixels` (displacements as dequantized) or `unit` (divided by the
bound, so [-1, 1], I3D's).
"""

from __future__ import annotations

import numpy as np

from flowkit.errors import FlowkitError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
CAFFE_BGR_MEAN = np.array([104.0, 117.0, 128.0], np.float32)  # B, G, R
HARA_KINETICS_MEAN = np.array([0.4345, 0.4051, 0.3775], np.float32)
HARA_KINETICS_STD = np.array([0.2768, 0.2713, 0.2737], np.float32)
MMACTION_C3D_MEAN = np.array([104.0, 117.0, 128.0], np.float32)  # R, G, B
KINETICS_MEAN = np.array([0.43216, 0.394666, 0.37645], np.float32)
KINETICS_STD = np.array([0.22803, 0.22145, 0.216989], np.float32)
X3D_MEAN, X3D_STD = np.float32(0.45), np.float32(0.225)
RGB_VALUES = ("imagenet", "unit", "caffe", "hara_kinetics", "mmaction_c3d", "kinetics", "x3d")
FLOW_VALUES = ("pixels", "unit")


def rgb_values(frames: np.ndarray, mode: str = "imagenet") -> np.ndarray:
    """uint8 RGB (..., 3) to float32 network input (a new array: the arithmetic runs in place on
    it, the same operations in the same order as the formulas say)."""
    x = frames.astype(np.float32)
    if mode in ("imagenet", "hara_kinetics", "kinetics", "x3d"):
        mean, std = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "hara_kinetics": (HARA_KINETICS_MEAN, HARA_KINETICS_STD),
                     "kinetics": (KINETICS_MEAN, KINETICS_STD), "x3d": (X3D_MEAN, X3D_STD)}[mode]
        x /= 255.0  # (x / 255 - mean) / std
        x -= mean
        x /= std
        return x
    if mode == "unit":
        x /= 127.5  # x / 127.5 - 1
        x -= 1.0
        return x
    if mode == "caffe":
        return x[..., ::-1] - CAFFE_BGR_MEAN
    if mode == "mmaction_c3d":
        x -= MMACTION_C3D_MEAN
        return x
    raise FlowkitError(f"RGB values must be one of {', '.join(RGB_VALUES)}, not {mode!r}")


def flow_values(flow: np.ndarray, bound: float, mode: str = "pixels") -> np.ndarray:
    """Displacements in pixels to network input: as they are, or divided by the bound."""
    if mode == "pixels":
        return flow.astype(np.float32, copy=False)
    if mode == "unit":
        return (flow / np.float32(bound)).astype(np.float32, copy=False)
    raise FlowkitError(f"flow values must be one of {', '.join(FLOW_VALUES)}, not {mode!r}")
