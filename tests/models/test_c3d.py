"""C3D: mmaction2's tensor layout and parameter count, pool5's padding, its fixed clip extent."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flowkit.data.values import rgb_values
from flowkit.errors import FlowkitError
from flowkit.models import create_model, model_info

# open-mmlab/mmaction2 mmaction/models/backbones/c3d.py (4d6c934): ConvModule(cin, cout) with
# kernel 3x3x3, padding 1, norm_cfg=None, so a biased `conv`.
CONVS = (("conv1a", 3, 64), ("conv2a", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256),
         ("conv4a", 256, 512), ("conv4b", 512, 512), ("conv5a", 512, 512), ("conv5b", 512, 512))  # fmt: skip


def mmaction2_layout(classes: int = 101, out_dim: int = 8192) -> dict[str, tuple[int, ...]]:
    """Key -> shape of mmaction2's `Recognizer3D` state dict for the C3D config
    (configs/_base_/models/c3d_sports1m_pretrained.py): backbone C3D(out_dim), then
    I3DHead(num_classes, in_channels=4096, spatial_type=None), which holds `fc_cls` only."""
    layout: dict[str, tuple[int, ...]] = {}
    for name, cin, cout in CONVS:
        layout[f"backbone.{name}.conv.weight"] = (cout, cin, 3, 3, 3)
        layout[f"backbone.{name}.conv.bias"] = (cout,)
    layout |= {"backbone.fc6.weight": (4096, out_dim), "backbone.fc6.bias": (4096,),
               "backbone.fc7.weight": (4096, 4096), "backbone.fc7.bias": (4096,),
               "cls_head.fc_cls.weight": (classes, 4096), "cls_head.fc_cls.bias": (classes,)}  # fmt: skip
    return layout


def test_layout_and_parameter_count_are_mmaction2s() -> None:
    with torch.device("meta"):
        model = create_model("c3d")
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == mmaction2_layout()
    assert list(state) == list(mmaction2_layout())
    count = sum(math.prod(s) for s in mmaction2_layout().values())
    assert count == 78_409_573  # configs/recognition/c3d/README.md: "78.4M"
    assert sum(p.numel() for p in model.parameters()) == count == model_info("c3d").params


def test_pool5_pads_space_so_a_16x112x112_clip_gives_fc6_8192_values() -> None:
    # 112 -> 56 -> 28 -> 14 -> 7 by pool1-4; pool5 (2, 2, 2) with padding (0, 1, 1): 4, not 3.
    with torch.device("meta"):
        model = create_model("c3d")
        (clip,) = model.example_input(2)
        assert tuple(clip.shape) == (2, 3, 16, 112, 112)
        features = model.backbone.forward_features(clip)
        assert tuple(features.shape) == (2, 512, 1, 4, 4)
        assert model(clip).shape == (2, 101)
    pool1, pool5 = model.backbone.pool1, model.backbone.pool5
    assert (pool1.kernel_size, pool1.stride) == ((1, 2, 2), (1, 2, 2))
    assert (pool5.kernel_size, pool5.stride, pool5.padding) == (2, 2, (0, 1, 1))


def test_a_clip_of_another_extent_is_a_one_line_error() -> None:
    model = create_model("c3d", num_classes=5, size=16).eval()
    with pytest.raises(FlowkitError, match=r"3 channels, 16 frames of 16x16 .*not \(1, 3, 8, 16, 16\)") as error:
        model(torch.randn(1, 3, 8, 16, 16))
    assert "\n" not in str(error.value)
    with pytest.raises(FlowkitError, match="at least 16 frames of 16x16, not 8 of 112x112"):
        create_model("c3d", frames=8)


def test_forward_is_mmaction2s_order() -> None:
    # C3D.forward: pools, flatten, relu(fc6), dropout, relu(fc7); I3DHead: dropout, fc_cls.
    model = create_model("c3d", num_classes=5, in_chans=2, size=16).eval()  # a flow clip
    clip = torch.randn(2, 2, 16, 16, 16)
    b = model.backbone
    with torch.no_grad():
        x = clip
        for name, _, _ in CONVS:
            x = F.relu(getattr(b, name).conv(x))
            pool = {"conv1a": b.pool1, "conv2a": b.pool2, "conv3b": b.pool3, "conv4b": b.pool4,
                    "conv5b": b.pool5}.get(name)  # fmt: skip
            x = pool(x) if pool is not None else x
        x = F.relu(b.fc7(F.relu(b.fc6(x.flatten(1)))))
        assert torch.allclose(model(clip), model.cls_head.fc_cls(x), atol=1e-6)


def test_an_mmaction2_ucf101_checkpoint_loads(tmp_path) -> None:
    # mmengine's checkpoint: {'meta': ..., 'state_dict': Recognizer3D's, ...}; built here for a
    # 16x16 clip (mmaction2's `out_dim=512`) to stay small.
    layout = mmaction2_layout(out_dim=512)
    torch.manual_seed(2)
    state = {k: torch.randn(s) for k, s in layout.items()}
    file = tmp_path / "c3d_ucf101.pth"
    torch.save({"meta": {"epoch": 45}, "state_dict": state}, file)
    model = create_model("c3d", size=16)
    model.load_state_dict(torch.load(file, weights_only=True)["state_dict"])  # strict
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_mmaction_c3d_values_are_its_configs() -> None:
    # data_preprocessor: mean [104, 117, 128], std [1, 1, 1], to_rgb False, on decord's RGB frames.
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    expected = frames.astype(np.float32) - np.array([104, 117, 128], np.float32)
    np.testing.assert_array_equal(rgb_values(frames, "mmaction_c3d"), expected)
    assert model_info("c3d").values == "mmaction_c3d"
