"""MotionNet: its shapes, its unsupervised loss, a fit that recovers known motion, its weights
file, and the `motionnet` flow engine through `flowkit flow`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from flowkit.cli import EXIT_BAD_INPUT, cli
from flowkit.errors import FlowkitError
from flowkit.flow.engines import create_engine
from flowkit.flow.flo import read_flo
from flowkit.flow.motionnet import MotionNet, normalize_frames, unsupervised_loss, upsample_flow
from flowkit.flow.motionnet_fit import fit_motionnet, load_motionnet, save_motionnet

SHIFT = (2.0, 1.0)  # pixels right and down, frame 0 to frame 1


def shifted_pair(size: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random texture and the same texture moved by SHIFT: uint8 (2, size, size)."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (size + 16, size + 16)).astype(np.float32), (0, 0), 2.0)
    texture = (texture - texture.min()) / (texture.max() - texture.min()) * 255
    move = np.float32([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]]])
    moved = cv2.warpAffine(texture, move, texture.shape[::-1], flags=cv2.INTER_LINEAR)
    crop = (slice(8, 8 + size), slice(8, 8 + size))
    return np.stack([texture[crop], moved[crop]]).round().astype(np.uint8)


def inner_epe(flow: np.ndarray, margin: int = 8) -> float:
    """EPE against SHIFT away from the borders; flow (H, W, 2)."""
    inner = flow[margin:-margin, margin:-margin]
    return float(np.hypot(inner[..., 0] - SHIFT[0], inner[..., 1] - SHIFT[1]).mean())


def test_every_scale_has_the_reference_size_and_channels():
    net = MotionNet(frames=11, channels=3, width=0.125)
    predictions = net(torch.zeros(1, 33, 48, 72))
    assert [tuple(p.shape) for p in predictions] == [
        (1, 20, 24, 36), (1, 20, 12, 18), (1, 20, 6, 9), (1, 20, 3, 5), (1, 20, 2, 3)]
    assert net.flow_pixels(torch.zeros(1, 33, 48, 72)).shape == (1, 10, 2, 48, 72)
    with pytest.raises(ValueError, match=r"expects \(N, 33, H, W\): 11 frames of 3 channels"):
        net(torch.zeros(1, 6, 48, 48))


def test_the_paper_sized_network_has_the_prototxts_parameter_count():
    with torch.device("meta"):
        net = MotionNet(frames=11, channels=3)
    assert sum(p.numel() for p in net.parameters()) == 42_319_860  # see models/hidden_two_stream.py


def test_the_loss_is_lower_for_the_true_flow_than_for_none_or_the_opposite():
    x = normalize_frames(torch.from_numpy(shifted_pair())[None, ..., None])

    def loss_for(u: float, v: float) -> float:
        predictions = []
        for side in (32, 16, 8, 4, 2):  # the five scales of a 64x64 input
            flow = torch.tensor([u, v]).view(1, 2, 1, 1) / 20.0  # the network's units
            predictions.append(flow.expand(1, 2, side, side))
        return float(unsupervised_loss(x, predictions, channels=1)[0])

    true, zero, opposite = loss_for(*SHIFT), loss_for(0, 0), loss_for(-SHIFT[0], -SHIFT[1])
    assert true < 0.7 * zero and zero < opposite


def test_a_few_hundred_unsupervised_steps_recover_a_known_shift():
    pair = shifted_pair()
    net, losses = fit_motionnet(pair[None, ..., None], steps=120, batch_size=1, lr=1e-3,
                                width=0.25, device="cpu")
    with torch.no_grad():
        x = normalize_frames(torch.from_numpy(pair)[None, ..., None])
        flow = upsample_flow(net(x)[0], (64, 64))[0, 0].permute(1, 2, 0).numpy()
    zero = float(np.hypot(*SHIFT))
    assert losses[-1] < 0.5 * losses[0]
    assert inner_epe(flow) < 0.5 * zero, inner_epe(flow)


def test_weights_round_trip_and_a_foreign_file_is_one_line(tmp_path):
    net = MotionNet(frames=2, channels=1, width=0.125).eval()
    save_motionnet(net, tmp_path / "w.pt", steps=0)
    loaded = load_motionnet(tmp_path / "w.pt")
    x = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], net(x)[0])
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(FlowkitError, match="is not a MotionNet weights file") as error:
        load_motionnet(tmp_path / "other.pt")
    assert "\n" not in str(error.value)


def _fitted_pair_model(path: Path) -> Path:
    pair = shifted_pair()
    net, _ = fit_motionnet(pair[None, ..., None], steps=60, batch_size=1, lr=1e-3, width=0.25,
                           device="cpu")
    save_motionnet(net, path)
    return path


def test_flowkit_flow_with_motionnet_weights_writes_a_flo(tmp_path):
    weights = _fitted_pair_model(tmp_path / "motionnet.pt")
    pair = shifted_pair()
    cv2.imwrite(str(tmp_path / "a.png"), pair[0])
    cv2.imwrite(str(tmp_path / "b.png"), pair[1])
    result = CliRunner().invoke(cli, ["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                                      str(tmp_path / "out.flo"), "--algorithm", "motionnet",
                                      "--weights", str(weights), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "motionnet on torch/cpu" in result.output
    flow = read_flo(tmp_path / "out.flo")
    assert flow.shape == (64, 64, 2)
    assert inner_epe(flow) < 0.5 * float(np.hypot(*SHIFT))
    engine = create_engine("motionnet", {"weights": str(weights)}, "torch", "cpu")
    assert np.allclose(engine.calc(pair[0], pair[1]), flow, atol=1e-4)  # the engine, batched or not
    assert len(engine.params["weights_sha256"]) == 64


@pytest.mark.parametrize("weights, needle", [
    (None, "motionnet needs trained weights: --weights FILE"),
    ("missing.pt", "missing.pt do not exist"),
    ("eleven.pt", "is a 11-frame MotionNet; the flow engine needs a pair model"),
])
def test_motionnet_without_fitting_weights_is_a_one_line_error(tmp_path, weights, needle):
    save_motionnet(MotionNet(frames=11, channels=3, width=0.0625), tmp_path / "eleven.pt")
    cv2.imwrite(str(tmp_path / "a.png"), shifted_pair()[0])
    args = ["flow", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "-o", str(tmp_path / "o.flo"),
            "--algorithm", "motionnet"]
    if weights:
        args += ["--weights", str(tmp_path / weights)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == EXIT_BAD_INPUT
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.output
    assert not (tmp_path / "o.flo").exists()
