"""Other projects' training checkpoints through `load_init` (SlowFast / pytorchvideo `.pyth`,
Hara's `main.py` and CVPR2018 `train.py` files), and flow (2-channel) 3D networks from RGB weights
by cross-modality initialisation of every stem."""

from __future__ import annotations

import pytest
import torch
from test_hara_resnet import hara_layout
from test_slowfast import pytorchvideo_slowfast_shapes
from test_x3d import pytorchvideo_x3d_shapes
from torch import nn

from flowkit.errors import FlowkitError
from flowkit.models import create_model, cross_modality_weight, init_from_state, load_init
from flowkit.models.registry import clip_networks, model_info


def random_state(shapes: dict) -> dict[str, torch.Tensor]:
    """A state dict of the peer's keys and shapes, every tensor random (counters: integers)."""
    generator = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=generator) if s else torch.tensor(7)
            for k, s in shapes.items()}  # fmt: skip


def an_optimizer_state() -> dict:
    """`optimizer.state_dict()` of the SGD both peers train with (one stand-in parameter)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    return optimizer.state_dict()


def assert_loaded(model: nn.Module, source: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() >= {k for k in source if not k.endswith("num_batches_tracked")}
    for key, value in source.items():
        assert torch.equal(state[key], value), key


# ---- SlowFast's and pytorchvideo's .pyth -------------------------------------------------------


def slowfast_pyth(path, state: dict) -> None:
    """A checkpoint as facebookresearch/SlowFast `slowfast/utils/checkpoint.py` `save_checkpoint`
    writes it (commit 287ec00): {"epoch", "model_state", "optimizer_state", "cfg": cfg.dump()};
    pytorchvideo's hub (`pytorchvideo/models/hub/x3d.py`, `slowfast.py`, commit f3142bb) reads
    its `checkpoint["model_state"]`."""
    cfg = "MODEL:\n  ARCH: x3d\n  NUM_CLASSES: 400\nTRAIN:\n  DATASET: kinetics\n"  # a YAML str
    checkpoint = {"epoch": 300, "model_state": state, "optimizer_state": an_optimizer_state(),
                  "cfg": cfg}  # fmt: skip
    torch.save(checkpoint, path)


PYTORCHVIDEO = {  # the peer's key -> shape tables (test_x3d.py, test_slowfast.py)
    "x3d_xs": lambda: pytorchvideo_x3d_shapes(2.2),
    "slowfast_r50": pytorchvideo_slowfast_shapes,
}


@pytest.mark.parametrize("name", PYTORCHVIDEO)
def test_a_pytorchvideo_pyth_file_loads_every_tensor(tmp_path, name) -> None:
    source = random_state(PYTORCHVIDEO[name]())
    slowfast_pyth(tmp_path / f"{name.upper()}.pyth", source)
    model = create_model(name)
    load_init(model, tmp_path / f"{name.upper()}.pyth")
    assert_loaded(model, source)


# ---- Hara's 3D ResNets ---------------------------------------------------------------------------


def test_a_hara_main_py_checkpoint_loads_every_tensor(tmp_path) -> None:
    # kenshohara/3D-ResNets-PyTorch main.py `save_checkpoint` (commit 540a0ea): the model is
    # wrapped in DataParallel, but it saves `model.module.state_dict()` (no `module.` prefix), with
    # the optimizer and the scheduler (opts.py's default: MultiStepLR at 50, 100, 150).
    source = random_state(hara_layout(18, "B"))
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [50, 100, 150])
    torch.save({"epoch": 200, "arch": "resnet-18", "state_dict": source,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
               tmp_path / "r3d18_K_200ep.pth")  # fmt: skip
    model = create_model("hara_r3d_18")
    load_init(model, tmp_path / "r3d18_K_200ep.pth")
    assert_loaded(model, source)


def test_a_hara_cvpr2018_checkpoint_loads_without_its_dataparallel_prefix(tmp_path) -> None:
    # The CVPR2018 branch (commit d9847ea): model.py wraps the model in nn.DataParallel and
    # train.py saves {"epoch", "arch", "state_dict": model.state_dict(), "optimizer"}, so every
    # key starts with `module.`; resnet-18-kinetics.pth is shortcut A and, saved before PyTorch
    # 0.4.1, has no BN batch counters.
    source = {k: v for k, v in random_state(hara_layout(18, "A")).items()
              if not k.endswith("num_batches_tracked")}  # fmt: skip
    state = {f"module.{k}": v for k, v in source.items()}
    checkpoint = {"epoch": 201, "arch": "resnet-18", "state_dict": state,
                  "optimizer": an_optimizer_state()}  # fmt: skip
    torch.save(checkpoint, tmp_path / "resnet-18-kinetics.pth")
    model = create_model("hara_r3d_18", shortcut="A")
    load_init(model, tmp_path / "resnet-18-kinetics.pth")
    assert_loaded(model, source)
    # The same file for a shortcut-B model: one line naming what differs, the model untouched.
    other = create_model("hara_r3d_18")
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(FlowkitError) as error:
        load_init(other, tmp_path / "resnet-18-kinetics.pth")
    assert str(error.value) == (
        f"--init {tmp_path / 'resnet-18-kinetics.pth'} does not fit hara_r3d_18: "
        "keys 15 missing (first layer2.0.downsample.0.weight)"
    )
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())


def test_tensors_of_other_shapes_are_named_in_one_line(tmp_path) -> None:
    source = random_state(pytorchvideo_x3d_shapes(2.2, num_classes=400))
    source["blocks.1.res_blocks.0.branch2.conv_b.weight"] = torch.zeros(54, 1, 5, 3, 3)
    slowfast_pyth(tmp_path / "X3D_XS.pyth", source)
    with pytest.raises(FlowkitError) as error:
        load_init(create_model("x3d_xs"), tmp_path / "X3D_XS.pyth")
    assert str(error.value) == (
        f"--init {tmp_path / 'X3D_XS.pyth'} does not fit x3d_xs: 1 tensors of other shapes "
        "(blocks.1.res_blocks.0.branch2.conv_b.weight: checkpoint (54, 1, 5, 3, 3), "
        "model (54, 1, 3, 3, 3))"
    )


# ---- flow networks from RGB weights --------------------------------------------------------------


# hidden_two_stream computes its own flow from RGB: it takes 3 channels only.
@pytest.mark.parametrize("name", [n for n in clip_networks() if n != "hidden_two_stream"])
def test_the_metadata_names_every_convolution_that_takes_the_input(name: str) -> None:
    # At 5 input channels (no inner convolution has 5), the convolutions that take 5 are the stems
    # cross-modality initialisation converts: one, or SlowFast's two (Slow and Fast pathways).
    with torch.device("meta"):
        model = create_model(name, in_chans=5)
    takes_input = [n for n, m in model.named_modules()
                   if isinstance(m, nn.Conv2d | nn.Conv3d) and m.in_channels == 5]  # fmt: skip
    assert tuple(takes_input) == model_info(name).stems


@pytest.mark.parametrize("name", ["i3d", "s3d", "x3d_xs", "mc3_18", "convnet_lstm"])
def test_a_flow_clip_network_starts_from_rgb_weights(name: str) -> None:
    rgb = create_model(name, num_classes=4).state_dict()
    model = create_model(name, num_classes=4, in_chans=2)
    init_from_state(model, rgb)
    (stem,) = model_info(name).stems
    state = model.state_dict()
    assert torch.equal(state[f"{stem}.weight"], cross_modality_weight(rgb[f"{stem}.weight"], 2))
    assert all(torch.equal(v, rgb[k]) for k, v in state.items() if k != f"{stem}.weight")


def test_a_flow_slowfast_starts_both_stems_from_rgb_weights() -> None:
    rgb = random_state(pytorchvideo_slowfast_shapes(num_classes=400))
    model = create_model("slowfast_r50", num_classes=5, in_chans=2)
    classifier = model.blocks[6].proj.weight.clone()
    init_from_state(model, rgb)
    stems = model_info("slowfast_r50").stems
    assert len(stems) == 2
    state = model.state_dict()
    for key, value in rgb.items():
        if key.removesuffix(".weight") in stems:  # averaged over RGB, repeated for x and y
            assert torch.equal(state[key], cross_modality_weight(value, 2)), key
            assert state[key].shape[1] == 2
        elif key.startswith("blocks.6.proj."):
            assert key != "blocks.6.proj.weight" or torch.equal(state[key], classifier)
        else:
            assert torch.equal(state[key], value), key
    (clip,) = model.example_input(1, 32, 8)
    with torch.no_grad():
        assert model.eval()(clip).shape == (1, 5)
