"""The torch TV-L1's `cudaoptflow` variant (preset `denseflow`): each step where OpenCV-contrib's
CUDA implementation (cudaoptflow/src/tvl1flow.cpp, cuda/tvl1flow.cu, cudawarping's resize.cu)
differs from the CPU one, pinned by an input on which the two rules give different answers."""

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from flowkit.cli import cli
from flowkit.errors import FlowkitError
from flowkit.flow.engines import create_engine, recorded_params, resolve_params
from flowkit.flow.flo import read_flo
from flowkit.flow.metrics import endpoint_error
from flowkit.flow.tvl1_torch import (
    TVL1Params,
    TVL1Solver,
    resize_bilinear,
    tvl1_iterations,
    warp_bicubic,
    warp_bicubic_clamped,
)
from flowkit.synth import Motion, render_frames

CUDA_STEPS = TVL1Params(variant="cudaoptflow", outer_iterations=1, inner_iterations=300, median_filtering=1)


def _pair(motion: Motion, seed: int, width: int = 80, height: int = 64):
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in render_frames(motion, 2, width, height, seed)]
    return frames[0], frames[1]


def test_cuda_warp_is_catmull_rom_which_reproduces_quadratics():
    """tvl1.cu's bicubicCoeff is the a = -0.5 cubic, exact on quadratics; cv::remap's a = -0.75 is not."""
    xs = torch.arange(16, dtype=torch.float32)
    image = (xs[None, :] ** 2).expand(12, 16)[None, None].contiguous()
    shift = torch.full((1, 12, 16), 0.3)
    zero = torch.zeros_like(shift)
    cuda = warp_bicubic_clamped(image, shift, zero)[0, 0]
    cpu = warp_bicubic(image, shift, zero)[0, 0]
    truth = (xs + 0.3) ** 2
    interior = slice(2, 13)
    assert torch.allclose(cuda[5, interior], truth[interior], atol=1e-3)
    assert (cpu[5, interior] - truth[interior]).abs().max() > 0.01


def test_cuda_warp_reads_clamp_to_edge_where_the_cpu_reads_zero():
    image = torch.full((1, 1, 8, 8), 100.0)
    out_of_frame = torch.full((1, 8, 8), -20.0)  # every sample 20 px left of the frame
    zero = torch.zeros_like(out_of_frame)
    assert torch.allclose(warp_bicubic_clamped(image, out_of_frame, zero), image)
    assert warp_bicubic(image, out_of_frame, zero).abs().max() == 0


def test_cuda_resize_maps_x_to_x_times_scale_without_half_pixel_centring():
    ramp = torch.arange(20, dtype=torch.float32).expand(10, 20)[None].contiguous()
    cuda = resize_bilinear(ramp, 8, 16, 1.25, 1.25, centred=False)[0, 3]
    centred = resize_bilinear(ramp, 8, 16, 1.25, 1.25)[0, 3]
    assert torch.allclose(cuda[:15], torch.arange(15) * 1.25)  # resize.cu: src_x = dst_x * fx
    assert torch.allclose(centred[1:15], (torch.arange(1, 15) + 0.5) * 1.25 - 0.5)


def _still_state(batch: int = 1, size: int = 12):
    """Iteration inputs whose update is zero from the start: converged at the first test."""
    zeros = [torch.zeros(batch, size, size) for _ in range(10)]
    return zeros, torch.zeros(batch, dtype=torch.bool), torch.zeros(batch)


@pytest.mark.parametrize("gated, frozen_after", [(False, 1), (True, 2)])
def test_cuda_tests_convergence_on_odd_iterations_only(gated, frozen_after):
    """A pair converged from the start stops after iteration 0 on the CPU, after iteration 1 (the
    first odd one, `n & 0x1` in tvl1flow.cpp) in the CUDA implementation."""
    for count in (1, 2):
        state, frozen, last = _still_state()
        odd = torch.arange(count) % 2 == 1
        *_, frozen, last = tvl1_iterations(*state, frozen, last, odd, 0.045, 0.3, 0.83, 0.01, count, gated)
        assert bool(frozen[0]) == (count >= frozen_after)


def test_after_a_failed_test_cuda_waits_until_the_error_could_have_fallen():
    """prevError's rule: a failed test at error E skips tests until E - k * eps^2 * N < eps^2 * N."""
    state, frozen, last = _still_state()
    scaled_epsilon = 0.01**2 * 12 * 12
    last = torch.tensor([5.5 * scaled_epsilon])  # as if the last test had failed at 5.5 thresholds
    odd = torch.arange(7) % 2 == 1
    for count, expected in ((5, False), (6, True)):  # below one threshold after 5 iterations: n=5 tests
        *_, done, _ = tvl1_iterations(*state, frozen.clone(), last.clone(), odd, 0.045, 0.3, 0.83, 0.01,
                                      count, True)
        assert bool(done[0]) is expected


def test_cuda_variant_batches_give_each_pair_its_singles_result():
    pairs = [_pair(Motion(dx=0.5), 1), _pair(Motion(dx=2.0, dy=1.0), 2), _pair(Motion(rotate=3.0), 3)]
    alone, cost = [], 0
    for prev, nxt in pairs:
        solver = TVL1Solver(CUDA_STEPS)
        alone.append(solver.flow(prev, nxt).numpy())
        cost += solver.iterations_run
    batched = TVL1Solver(CUDA_STEPS)
    together = batched.flow(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])).numpy()
    for i in range(3):
        assert np.allclose(together[i], alone[i], atol=1e-5)
    assert batched.iterations_run == cost


def test_denseflow_preset_is_the_cuda_defaults_and_recovers_middlebury(shared_testdata):
    params = resolve_params("tvl1", preset="denseflow")
    # cudaoptflow.hpp, OpticalFlowDual_TVL1::create(): tau 0.25, lambda 0.15, theta 0.3, 5 scales,
    # 5 warps, epsilon 0.01, 300 iterations, scale step 0.8, gamma 0; no median filter.
    assert (params["tau"], params["lambda"], params["theta"], params["nscales"], params["warps"],
            params["epsilon"], params["scale_step"], params["gamma"]) == (0.25, 0.15, 0.3, 5, 5, 0.01, 0.8, 0.0)
    assert params["outer_iterations"] * params["inner_iterations"] == 300 and params["median_filtering"] == 1
    folder = shared_testdata / "flow/middlebury/RubberWhale"
    prev = cv2.imread(str(folder / "gray/frame10.png"), cv2.IMREAD_GRAYSCALE)[:160, :240]
    nxt = cv2.imread(str(folder / "gray/frame11.png"), cv2.IMREAD_GRAYSCALE)[:160, :240]
    truth = read_flo(folder / "flow10.flo")[:160, :240]
    engine = create_engine("tvl1", backend="torch", device="cpu", preset="denseflow", compile=False)
    flow = engine.calc(prev, nxt)
    default = create_engine("tvl1", backend="torch", device="cpu", compile=False).calc(prev, nxt)
    assert endpoint_error(flow, truth) < 0.5 * endpoint_error(np.zeros_like(truth), truth)
    assert np.abs(flow - default).mean() > 1e-3  # other steps, other numbers


def test_datasets_record_the_variant_only_when_it_is_not_the_default():
    """Datasets made before `variant` existed still match the default settings on resume."""
    assert "variant" not in recorded_params("tvl1")
    assert recorded_params("tvl1", preset="denseflow")["variant"] == "cudaoptflow"


def test_denseflow_preset_on_opencv_and_bad_variants_are_one_line_errors(tmp_path):
    with pytest.raises(FlowkitError, match="torch engine's"):
        create_engine("tvl1", backend="opencv", preset="denseflow")
    with pytest.raises(FlowkitError, match="variant must be one of optflow, cudaoptflow"):
        create_engine("tvl1", {"variant": "cuda"}, backend="torch", device="cpu")
    frame = np.zeros((32, 32), np.uint8)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), frame)
    result = CliRunner().invoke(cli, ["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                                      str(tmp_path / "f.flo"), "--engine", "opencv", "--preset", "denseflow"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    result = CliRunner().invoke(cli, ["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                                      str(tmp_path / "f.flo"), "--preset", "tsn"])
    assert result.exit_code == 2 and "denseflow" in result.output
