"""SlowFast R50: pytorchvideo's state-dict layout and parameter count, the lateral connections'
time stride, the Slow clip taken from the Fast one, and the two-clip input pytorchvideo takes."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from flowkit.errors import FlowkitError
from flowkit.models import create_model, model_info
from flowkit.models.registry import accepts, clip_networks
from flowkit.models.slowfast import slow_frames

# pytorchvideo's model zoo table (docs/source/model_zoo.md, facebookresearch/pytorchvideo commit
# f3142bb): SlowFast R50 8x8, 34.57M parameters.
ZOO_MILLIONS = 34.57


def pytorchvideo_slowfast_shapes(num_classes: int = 400, in_chans: int = 3) -> dict:
    """Key -> shape of `create_slowfast(model_depth=50, slowfast_fusion_conv_kernel_size=(7, 1,
    1))`'s state dict (what `pytorchvideo/models/hub/slowfast.py` `slowfast_r50` builds), by the
    rules of `pytorchvideo/models/slowfast.py` (commit f3142bb): blocks.0 the two stems in
    `MultiPathWayWithFuse`, blocks.1-4 the stages, `FastToSlowFusionBuilder` after stages 0..3
    (Identity after res5), blocks.5 `PoolConcatPathway`, blocks.6 `create_res_basic_head`."""
    shapes: dict[str, tuple[int, ...]] = {}
    reduction, fusion_ratio = 8, 2  # slowfast_channel_reduction_ratio, ..._conv_channel_fusion_ratio

    def norm(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    def fusion(block: int, fusion_dim_in: int) -> None:
        conv_dim_in = fusion_dim_in // reduction
        prefix = f"blocks.{block}.multipathway_fusion"
        shapes[f"{prefix}.conv_fast_to_slow.weight"] = (conv_dim_in * fusion_ratio, conv_dim_in,
                                                        7, 1, 1)
        norm(f"{prefix}.norm", conv_dim_in * fusion_ratio)

    # create_res_basic_stem: conv (no bias), norm; stem_dim_outs (64, 8), kernels 1x7x7, 5x7x7
    for pathway, (dim_out, kernel) in enumerate(((64, (1, 7, 7)), (8, (5, 7, 7)))):
        shapes[f"blocks.0.multipathway_blocks.{pathway}.conv.weight"] = (dim_out, in_chans, *kernel)
        norm(f"blocks.0.multipathway_blocks.{pathway}.norm", dim_out)
    fusion(0, 64)
    conv_a_t = (((1, 1, 3, 3)), (3, 3, 3, 3))  # stage_conv_a_kernel_sizes' time extents
    spatial_strides = (1, 2, 2, 2)
    stage_dim_in, stage_dim_out = 64, 256
    for idx, depth in enumerate((3, 4, 6, 3)):  # _MODEL_STAGE_DEPTH[50]
        dims_in = [stage_dim_in + stage_dim_in * fusion_ratio // reduction,
                   stage_dim_in // reduction]
        dims_inner = [stage_dim_out // 4, stage_dim_out // 4 // reduction]
        dims_out = [stage_dim_out, stage_dim_out // reduction]
        for pathway in range(2):
            for ind in range(depth):  # create_res_stage -> create_res_block
                block = f"blocks.{idx + 1}.multipathway_blocks.{pathway}.res_blocks.{ind}"
                dim_in = dims_in[pathway] if ind == 0 else dims_out[pathway]
                stride = spatial_strides[idx] if ind == 0 else 1
                if dim_in != dims_out[pathway] or stride != 1:
                    shapes[f"{block}.branch1_conv.weight"] = (dims_out[pathway], dim_in, 1, 1, 1)
                    norm(f"{block}.branch1_norm", dims_out[pathway])
                inner = dims_inner[pathway]
                t = conv_a_t[pathway][idx]
                shapes[f"{block}.branch2.conv_a.weight"] = (inner, dim_in, t, 1, 1)
                norm(f"{block}.branch2.norm_a", inner)
                shapes[f"{block}.branch2.conv_b.weight"] = (inner, inner, 1, 3, 3)
                norm(f"{block}.branch2.norm_b", inner)
                shapes[f"{block}.branch2.conv_c.weight"] = (dims_out[pathway], inner, 1, 1, 1)
                norm(f"{block}.branch2.norm_c", dims_out[pathway])
        if idx < 3:  # max_stage_idx = len(stage_depths) - 1 = 3: stage_idx idx + 1
            fusion(idx + 1, stage_dim_out)
        stage_dim_in, stage_dim_out = stage_dim_out, stage_dim_out * 2
    head_in_features = stage_dim_in + stage_dim_in // reduction
    shapes["blocks.6.proj.weight"] = (num_classes, head_in_features)
    shapes["blocks.6.proj.bias"] = (num_classes,)
    return shapes


def trainable(shapes: dict) -> int:
    return sum(
        torch.Size(s).numel() for k, s in shapes.items()
        if "running" not in k and "num_batches" not in k
    )


def test_parameter_count_and_layout_are_pytorchvideos() -> None:
    shapes = pytorchvideo_slowfast_shapes()
    with torch.device("meta"):
        model = create_model("slowfast_r50")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    count = sum(p.numel() for p in model.parameters())
    assert count == trainable(shapes) == model_info("slowfast_r50").params
    assert round(count / 1e6, 2) == ZOO_MILLIONS
    info = model_info("slowfast_r50")
    assert (info.frames, info.size, info.values, info.channels) == (32, 224, "x3d", (3,))


def test_a_pytorchvideo_state_dict_loads_every_tensor_in_its_place() -> None:
    shapes = pytorchvideo_slowfast_shapes(num_classes=7, in_chans=2)
    state = {k: torch.full(s, float(i)) if s else torch.tensor(i)
             for i, (k, s) in enumerate(shapes.items())}
    model = create_model("slowfast_r50", num_classes=7, in_chans=2)
    model.load_state_dict(state)  # strict
    fuse = model.blocks[2].multipathway_fusion.conv_fast_to_slow
    assert torch.equal(fuse.weight, state["blocks.2.multipathway_fusion.conv_fast_to_slow.weight"])
    fast_block = model.blocks[4].multipathway_blocks[1].res_blocks[2].branch2
    assert torch.equal(fast_block.norm_c.running_var,
                       state["blocks.4.multipathway_blocks.1.res_blocks.2.branch2.norm_c.running_var"])
    assert torch.equal(model.blocks[6].proj.bias, state["blocks.6.proj.bias"])


def test_full_size_pathways_keep_their_frames_and_fusion_matches_fast_to_slow_time() -> None:
    with torch.device("meta"):
        model = create_model("slowfast_r50")
        (clip,) = model.example_input(1)
        assert clip.shape == (1, 3, 32, 224, 224)
        slow, fast = model.forward_features(clip)
        assert slow.shape == (1, 2048, 8, 7, 7) and fast.shape == (1, 256, 32, 7, 7)
        assert model.blocks[5].kernels == ((8, 7, 7), (32, 7, 7))
        assert model(clip).shape == (1, 400)
    # Each lateral connection maps the Fast map's 32 frames to the Slow map's 8 and adds
    # 2 x the Fast channels to the Slow ones: 64 + 16 after the stem, 256 + 64 after res2, ...
    slow_inputs = [model.blocks[i].multipathway_blocks[0].res_blocks[0].branch2.conv_a.in_channels
                   for i in range(1, 5)]
    assert slow_inputs == [80, 320, 640, 1280]
    for i in range(4):
        conv = model.blocks[i].multipathway_fusion.conv_fast_to_slow
        assert (conv.kernel_size, conv.stride, conv.padding) == ((7, 1, 1), (4, 1, 1), (3, 0, 0))
    assert model.blocks[4].multipathway_fusion is None
    slow_time = [model.blocks[i].multipathway_blocks[0].res_blocks[0].branch2.conv_a.kernel_size[0]
                 for i in range(1, 5)]
    assert slow_time == [1, 1, 3, 3]  # temporal convolutions in res4 and res5 only


def test_one_clip_is_the_fast_pathway_and_the_slow_one_is_packed_from_it() -> None:
    # pytorchvideo_trainer/datamodule/transforms.py: the Slow clip is index_select of
    # linspace(0, T - 1, T // alpha).long() of the Fast clip, alpha 4.
    clip = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(1, 2, 16, 3, 3)
    assert slow_frames(clip)[0, 0, :, 0, 0].tolist() == [0.0, 5.0, 10.0, 15.0]
    model = create_model("slowfast_r50", num_classes=3, in_chans=2).eval()
    (fast,) = model.example_input(1, 32, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(fast), model([slow_frames(fast), fast]))
        other_slow = torch.randn(1, 2, 2, 32, 32)
        assert not torch.allclose(model([other_slow, fast]), model(fast))  # Slow input counts


def test_a_clip_of_frames_not_a_multiple_of_alpha_is_a_one_line_error() -> None:
    model = create_model("slowfast_r50", num_classes=3)
    with pytest.raises(FlowkitError, match="multiple of 4 frames"):
        model(torch.randn(1, 3, 10, 32, 32))


def test_head_on_a_larger_map_averages_the_projections_of_each_window() -> None:
    model = create_model("slowfast_r50", num_classes=3).eval()
    pools, head = model.blocks[5], model.blocks[6]
    slow, fast = torch.randn(1, 2048, 8, 8, 7), torch.randn(1, 256, 32, 8, 7)  # 256 px high
    with torch.no_grad():
        logits = [
            head.proj(torch.cat([slow[:, :, :, y : y + 7].mean(dim=(2, 3, 4)),
                                 fast[:, :, :, y : y + 7].mean(dim=(2, 3, 4))], 1))
            for y in range(2)
        ]
        torch.testing.assert_close(head(pools([slow, fast])), (logits[0] + logits[1]) / 2)


def test_multiply_accumulates_at_the_zoos_crop_are_the_zoos() -> None:
    # docs/source/model_zoo.md: SlowFast R50 8x8, "65.71 x 3 x 10" GFLOPs, fvcore's count
    # (multiply-accumulates) of one 32x256x256 view (the zoo's test crop is 256).
    with torch.device("meta"):
        model = create_model("slowfast_r50").eval()
        (clip,) = model.example_input(1, 256, 32)
        with FlopCounterMode(display=False) as counter:
            model(clip)
    assert round(counter.get_total_flops() / 2 / 1e9, 2) == 65.71


def test_it_is_a_clip_network_flowkit_trains_with_its_dropout() -> None:
    assert "slowfast_r50" in clip_networks()  # --arch slowfast_r50
    assert accepts("slowfast_r50", "dropout")
    with torch.device("meta"):
        model = create_model("slowfast_r50", dropout=0.3)
    assert model.blocks[6].dropout.p == 0.3
