"""yjxiong/tsn-pytorch's BN-Inception, written the way it is written there, for the weights tests.

tsn-pytorch builds its BN-Inception (`models.py`: `getattr(tf_model_zoo, "BNInception")()`) from
the submodule yjxiong/tensorflow-model-zoo.torch, branch `tsn-pytorch` (commit 9788c67, the one
tsn-pytorch pins): `bninception/bn_inception.yaml` lists the Caffe layers, `pytorch_load.py` makes
one attribute per layer id (`setattr(self, id, module)`, so the state dict is named by the ids)
and runs them in the yaml's order on a dict of named blobs, and `layer_factory.py` makes the
modules: `nn.Conv2d(..., bias=True)` (pytorch_load passes `conv_bias=True`), `nn.BatchNorm2d`
(momentum 0.1), in-place ReLU, Caffe pooling as `nn.MaxPool2d` / `nn.AvgPool2d` with
`ceil_mode=True`, and `nn.Linear` on the flattened blob. The layer list below follows the yaml:
every convolution `<id>` is followed by BN `<id>_bn` and a ReLU; blocks are
`<block>_1x1`, `_3x3_reduce`, `_3x3`, `_double_3x3_reduce`, `_double_3x3_1`, `_double_3x3_2`,
`_pool`, `_pool_proj`, concatenated in that order into `<block>_output` (stride-2 blocks 3c and
4e have no 1x1 branch, a 3x3/2 max pool with no padding, and no projection). Checked layer by
layer against the yaml when written: 69 convolutions, 69 BN layers, 1 classifier.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# (id, num_output, kernel_size, stride, pad), as the yaml's stem.
STEM = [
    ("conv1_7x7_s2", 64, 7, 2, 3),
    ("pool1_3x3_s2", None, 3, 2, 0),  # Pooling, mode max
    ("conv2_3x3_reduce", 64, 1, 1, 0),
    ("conv2_3x3", 192, 3, 1, 1),
    ("pool2_3x3_s2", None, 3, 2, 0),
]
# block: 1x1, 3x3_reduce, 3x3, double_3x3_reduce, double_3x3 (both), pool mode, pool_proj, stride
BLOCKS = [
    ("inception_3a", 64, 64, 64, 64, 96, "ave", 32, 1),
    ("inception_3b", 64, 64, 96, 64, 96, "ave", 64, 1),
    ("inception_3c", 0, 128, 160, 64, 96, "max", 0, 2),
    ("inception_4a", 224, 64, 96, 96, 128, "ave", 128, 1),
    ("inception_4b", 192, 96, 128, 96, 128, "ave", 128, 1),
    ("inception_4c", 160, 128, 160, 128, 160, "ave", 128, 1),
    ("inception_4d", 96, 128, 192, 160, 192, "ave", 128, 1),
    ("inception_4e", 0, 128, 192, 192, 256, "max", 0, 2),
    ("inception_5a", 352, 192, 320, 160, 224, "ave", 128, 1),
    ("inception_5b", 352, 192, 320, 192, 224, "max", 128, 1),
]


class TsnPytorchBNInception(nn.Module):
    """The yaml's layers as attributes named by their ids, run on a dict of named blobs."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        self.ops: list[tuple[str, str, list[str]]] = []  # (layer id, output blob, input blobs)
        self.channels = {"data": in_chans}

        def conv(name: str, source: str, out: int, k: int, stride: int = 1, pad: int = 0) -> str:
            setattr(self, name, nn.Conv2d(self.channels[source], out, k, stride, pad, bias=True))
            self.ops.append((name, name, [source]))
            setattr(self, f"{name}_bn", nn.BatchNorm2d(out, momentum=0.1))
            self.ops.append((f"{name}_bn", f"{name}_bn", [name]))
            setattr(self, f"{name}_relu", nn.ReLU(inplace=True))
            self.ops.append((f"{name}_relu", f"{name}_bn", [f"{name}_bn"]))
            self.channels[name] = self.channels[f"{name}_bn"] = out
            return f"{name}_bn"

        def pool(name: str, source: str, mode: str, k: int, stride: int, pad: int) -> str:
            kind = nn.MaxPool2d if mode == "max" else nn.AvgPool2d
            setattr(self, name, kind(k, stride, pad, ceil_mode=True))
            self.ops.append((name, name, [source]))
            self.channels[name] = self.channels[source]
            return name

        blob = "data"
        for name, out, k, stride, pad in STEM:
            if out is None:
                blob = pool(name, blob, "max", k, stride, pad)
            else:
                blob = conv(name, blob, out, k, stride, pad)
        for block, c1, c3r, c3, cdr, cd, mode, proj, stride in BLOCKS:
            parts = []
            if c1:
                parts.append(conv(f"{block}_1x1", blob, c1, 1))
            reduced = conv(f"{block}_3x3_reduce", blob, c3r, 1)
            parts.append(conv(f"{block}_3x3", reduced, c3, 3, stride, 1))
            reduced = conv(f"{block}_double_3x3_reduce", blob, cdr, 1)
            middle = conv(f"{block}_double_3x3_1", reduced, cd, 3, 1, 1)
            parts.append(conv(f"{block}_double_3x3_2", middle, cd, 3, stride, 1))
            if stride == 2:
                parts.append(pool(f"{block}_pool", blob, "max", 3, 2, 0))
            else:
                pooled = pool(f"{block}_pool", blob, mode, 3, 1, 1)
                parts.append(conv(f"{block}_pool_proj", pooled, proj, 1))
            blob = f"{block}_output"
            self.ops.append(("Concat", blob, parts))
            self.channels[blob] = sum(self.channels[p] for p in parts)
        blob = pool("global_pool", blob, "ave", 7, 1, 0)
        self.fc = nn.Linear(self.channels[blob], num_classes)  # id `fc`, blob `fc_action`
        self.ops.append(("fc", "fc_action", [blob]))

    def forward(self, x: Tensor) -> Tensor:
        blobs = {"data": x}
        for layer, out, inputs in self.ops:
            if layer == "Concat":
                blobs[out] = torch.cat([blobs[name] for name in inputs], 1)
            elif layer == "fc":
                source = blobs[inputs[0]]
                blobs[out] = self.fc(source.view(source.size(0), -1))
            else:
                blobs[out] = getattr(self, layer)(blobs[inputs[0]])
        return blobs["fc_action"]
