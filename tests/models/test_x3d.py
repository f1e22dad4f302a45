"""X3D: pytorchvideo's state-dict layout and parameter counts for XS, S, M, L, its expansion rules,
the time resolution it keeps, and the values its weights expect."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from flowkit.data.values import rgb_values
from flowkit.models import create_model, model_info
from flowkit.models.x3d import SqueezeExcitation

# pytorchvideo/models/hub/x3d.py (facebookresearch/pytorchvideo, commit f3142bb): the settings
# each hub builder passes to create_x3d (input_clip_length, input_crop_size, depth_factor).
HUB = {"x3d_xs": (4, 160, 2.2), "x3d_s": (13, 160, 2.2), "x3d_m": (16, 224, 2.2),
       "x3d_l": (16, 312, 5.0)}
# pytorchvideo's model zoo table (docs/source/model_zoo.md), in millions.
ZOO_MILLIONS = {"x3d_xs": 3.79, "x3d_s": 3.79, "x3d_m": 3.79, "x3d_l": 6.15}


def pytorchvideo_round_width(width, multiplier, min_width=8, divisor=8):
    # pytorchvideo/layers/utils.py round_width (ceil=False), written out.
    width *= multiplier
    width_out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    return int(width_out + divisor if width_out < 0.9 * width else width_out)


def pytorchvideo_x3d_shapes(depth_factor: float, num_classes: int = 400) -> dict:
    """Key -> shape of `create_x3d(depth_factor=...)`'s state dict, by create_x3d's rules (defaults:
    stem_dim_in 12, width_factor 2.0, bottleneck_factor 2.25, se_ratio 0.0625 in blocks 1, 3, 5..,
    stage depths [1, 2, 5, 3], head_dim_out 2048, head_bn_lin5_on False)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def norm(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    stem = pytorchvideo_round_width(12, 2.0)
    # create_x3d_stem: Conv2plus1d(conv_t=the 1x3x3 conv, conv_xy=the depthwise 5x1x1 conv)
    shapes["blocks.0.conv.conv_t.weight"] = (stem, 3, 1, 3, 3)
    shapes["blocks.0.conv.conv_xy.weight"] = (stem, 1, 5, 1, 1)
    norm("blocks.0.norm", stem)
    dims = [12]
    for _ in range(3):
        dims.append(pytorchvideo_round_width(dims[-1], 2.0, divisor=8))
    dim_in = stem
    for stage, (base_dim, base_depth) in enumerate(zip(dims, [1, 2, 5, 3], strict=True), 1):
        dim_out = pytorchvideo_round_width(base_dim, 2.0)
        dim_inner = int(2.25 * dim_out)
        for idx in range(math.ceil(depth_factor * base_depth)):  # round_repeats
            block = f"blocks.{stage}.res_blocks.{idx}"
            cin = dim_in if idx == 0 else dim_out
            if cin != dim_out or idx == 0:  # stride (1, 2, 2) in the first block
                shapes[f"{block}.branch1_conv.weight"] = (dim_out, cin, 1, 1, 1)
            if cin != dim_out:
                norm(f"{block}.branch1_norm", dim_out)
            shapes[f"{block}.branch2.conv_a.weight"] = (dim_inner, cin, 1, 1, 1)
            norm(f"{block}.branch2.norm_a", dim_inner)
            shapes[f"{block}.branch2.conv_b.weight"] = (dim_inner, 1, 3, 3, 3)
            norm(f"{block}.branch2.norm_b.0", dim_inner)
            if (idx + 1) % 2:  # fvcore SqueezeExcitation(is_3d=True): block 0 and 2 are convs
                reduced = pytorchvideo_round_width(dim_inner, 0.0625)
                shapes[f"{block}.branch2.norm_b.1.block.0.weight"] = (reduced, dim_inner, 1, 1, 1)
                shapes[f"{block}.branch2.norm_b.1.block.0.bias"] = (reduced,)
                shapes[f"{block}.branch2.norm_b.1.block.2.weight"] = (dim_inner, reduced, 1, 1, 1)
                shapes[f"{block}.branch2.norm_b.1.block.2.bias"] = (dim_inner,)
            shapes[f"{block}.branch2.conv_c.weight"] = (dim_out, dim_inner, 1, 1, 1)
            norm(f"{block}.branch2.norm_c", dim_out)
        dim_in = dim_out
    shapes["blocks.5.pool.pre_conv.weight"] = (dim_inner, dim_out, 1, 1, 1)
    norm("blocks.5.pool.pre_norm", dim_inner)
    shapes["blocks.5.pool.post_conv.weight"] = (2048, dim_inner, 1, 1, 1)
    shapes["blocks.5.proj.weight"] = (num_classes, 2048)
    shapes["blocks.5.proj.bias"] = (num_classes,)
    return shapes


def trainable(shapes: dict) -> int:
    return sum(
        torch.Size(s).numel() for k, s in shapes.items()
        if "running" not in k and "num_batches" not in k
    )


@pytest.mark.parametrize("name", list(HUB))
def test_parameter_count_and_layout_are_pytorchvideos(name: str) -> None:
    frames, size, depth_factor = HUB[name]
    shapes = pytorchvideo_x3d_shapes(depth_factor)
    with torch.device("meta"):
        model = create_model(name)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    count = sum(p.numel() for p in model.parameters())
    assert count == trainable(shapes) == model_info(name).params
    assert round(count / 1e6, 2) == ZOO_MILLIONS[name]
    info = model_info(name)
    assert (info.frames, info.size, info.values) == (frames, size, "x3d")


def test_a_pytorchvideo_state_dict_loads_every_tensor_in_its_place() -> None:
    shapes = pytorchvideo_x3d_shapes(2.2, num_classes=7)
    state = {k: torch.full(s, float(i)) if s else torch.tensor(i)
             for i, (k, s) in enumerate(shapes.items())}
    model = create_model("x3d_xs", num_classes=7)
    model.load_state_dict(state)  # strict
    assert torch.equal(model.blocks[0].conv.conv_xy.weight, state["blocks.0.conv.conv_xy.weight"])
    block = model.blocks[4].res_blocks[6].branch2
    assert torch.equal(block.norm_b[1].block[2].bias,
                       state["blocks.4.res_blocks.6.branch2.norm_b.1.block.2.bias"])
    assert torch.equal(model.blocks[5].proj.weight, state["blocks.5.proj.weight"])


def test_expansion_depths_widths_and_se_every_other_block() -> None:
    with torch.device("meta"):
        m, large = create_model("x3d_m"), create_model("x3d_l")
    assert [len(m.blocks[i].res_blocks) for i in range(1, 5)] == [3, 5, 11, 7]
    assert [len(large.blocks[i].res_blocks) for i in range(1, 5)] == [5, 10, 25, 15]
    assert [m.blocks[i].res_blocks[0].branch2.conv_c.out_channels for i in range(1, 5)] == [
        24, 48, 96, 192]
    for i in range(1, 5):
        gated = [isinstance(b.branch2.norm_b[1], SqueezeExcitation) for b in m.blocks[i].res_blocks]
        assert gated == [j % 2 == 0 for j in range(len(gated))]
    convs = [c for c in m.modules() if isinstance(c, nn.Conv3d) and c.kernel_size == (3, 3, 3)]
    assert all(c.groups == c.in_channels == c.out_channels for c in convs)  # depthwise


@pytest.mark.parametrize("name", list(HUB))
def test_time_is_never_strided_and_the_head_pools_the_whole_map(name: str) -> None:
    frames, size, _ = HUB[name]
    with torch.device("meta"):
        model = create_model(name)
        (clip,) = model.example_input(1)
        assert clip.shape == (1, 3, frames, size, size)
        features = model.forward_features(clip)
        assert features.shape == (1, 192, frames, math.ceil(size / 32), math.ceil(size / 32))
        assert model.blocks[5].pool_kernel == tuple(features.shape[2:])
        assert model(clip).shape == (1, 400)


def test_head_on_a_larger_map_averages_the_projections_of_each_window() -> None:
    model = create_model("x3d_xs", num_classes=3).eval()
    head = model.blocks[5]
    features = torch.randn(1, 192, 5, 5, 5)  # one more frame than the 4x5x5 window
    with torch.no_grad():
        p = head.pool
        x = p.pre_act(p.pre_norm(p.pre_conv(features)))
        windows = [x[:, :, t : t + 4].mean(dim=(2, 3, 4), keepdim=True) for t in range(2)]
        logits = [head.proj(p.post_act(p.post_conv(w)).flatten(1)) for w in windows]
        torch.testing.assert_close(head(features), (logits[0] + logits[1]) / 2)


def test_x3d_values_are_pytorchvideos() -> None:
    # pytorchvideo/transforms/transforms_factory.py: video_mean 0.45, video_std 0.225, on 0..1.
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    expected = (frames / 255.0 - 0.45) / 0.225
    np.testing.assert_allclose(rgb_values(frames, "x3d"), expected, rtol=1e-5, atol=1e-5)


def test_a_flow_stream_takes_two_channels() -> None:
    model = create_model("x3d_xs", num_classes=5, in_chans=2).eval()
    assert model.blocks[0].conv.conv_t.in_channels == 2
    (clip,) = model.example_input(1, 32, 4)
    with torch.no_grad():
        assert model(clip).shape == (1, 5)
