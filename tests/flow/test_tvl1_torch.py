"""flowkit's PyTorch TV-L1: each piece against OpenCV, accuracy against the truth, batching rules."""

import cv2
import numpy as np
import pytest
import torch

from flowkit.devices import resolve_device
from flowkit.errors import FlowkitError
from flowkit.flow.engines import create_engine
from flowkit.flow.flo import read_flo
from flowkit.flow.metrics import endpoint_error
from flowkit.flow.tvl1_torch import (
    TVL1Params,
    TVL1Solver,
    centered_gradient,
    divergence,
    forward_gradient,
    median_blur,
    median_blur_torch,
    resize_bilinear,
    warp_bicubic,
)
from flowkit.synth import Motion, random_texture, render_frames

RNG = np.random.default_rng(0)


def _gray_pair(motion: Motion, width: int = 96, height: int = 72, seed: int = 3):
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in render_frames(motion, 2, width, height, seed)]
    return frames[0], frames[1], motion.flow(width, height)


def _layered_pair(width: int = 112, height: int = 84):
    """A textured square moving over a background moving the other way: occlusion boundaries."""
    background = random_texture(height, width + 8, seed=5)
    square = random_texture(30, 30, seed=6)
    frames, flow = [], np.zeros((height, width, 2), np.float32)
    for t in range(2):
        frame = background[:, 2 * t : 2 * t + width].copy()  # background moves 2 px left
        x, y = 40 + 3 * t, 26 + 2 * t  # the square moves (+3, +2)
        frame[y : y + 30, x : x + 30] = square
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    flow[..., 0] = -2.0
    flow[26:56, 40:70] = (3.0, 2.0)
    return frames[0], frames[1], flow


# ---- the pieces -------------------------------------------------------------------------------


def test_gradients_and_divergence_follow_opencvs_border_rules():
    image = RNG.random((1, 5, 6)).astype(np.float32)
    t = torch.from_numpy(image)
    dx, dy = centered_gradient(t)
    src = image[0]
    assert dx[0, 2, 3] == pytest.approx(0.5 * (src[2, 4] - src[2, 2]))
    assert dx[0, 2, 0] == pytest.approx(0.5 * (src[2, 1] - src[2, 0]))  # one-sided at borders
    assert dy[0, 4, 1] == pytest.approx(0.5 * (src[4, 1] - src[3, 1]))
    fx, fy = forward_gradient(t)
    assert fx[0, 1, 2] == pytest.approx(src[1, 3] - src[1, 2]) and fx[0, 1, 5] == 0
    assert fy[0, 3, 2] == pytest.approx(src[4, 2] - src[3, 2]) and fy[0, 4, 2] == 0
    v1, v2 = torch.from_numpy(image), torch.from_numpy(image[:, ::-1].copy())
    div = divergence(v1, v2)[0].numpy()
    a, b = v1[0].numpy(), v2[0].numpy()
    assert div[2, 3] == pytest.approx(a[2, 3] - a[2, 2] + b[2, 3] - b[1, 3])
    assert div[0, 0] == pytest.approx(a[0, 0] + b[0, 0])  # nothing before the first row/column


def test_bicubic_warp_matches_cv2_remap():
    image = (RNG.random((40, 50)) * 255).astype(np.float32)
    u1 = (RNG.random((40, 50)) * 6 - 3).astype(np.float32)
    u2 = (RNG.random((40, 50)) * 6 - 3).astype(np.float32)
    ys, xs = np.mgrid[0:40, 0:50].astype(np.float32)
    expected = cv2.remap(image, xs + u1, ys + u2, cv2.INTER_CUBIC)
    got = warp_bicubic(torch.from_numpy(image)[None, None], torch.from_numpy(u1)[None],
                       torch.from_numpy(u2)[None])[0, 0].numpy()
    assert np.abs(got - expected).max() < 0.01  # on 0..255 intensities


@pytest.mark.parametrize(("height", "width", "scale"), [(48, 64, 0.8), (37, 51, 0.8), (50, 70, 0.5)])
def test_pyramid_resize_matches_cv2_resize(height, width, scale):
    image = (RNG.random((height, width)) * 255).astype(np.float32)
    expected = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    h, w = expected.shape
    got = resize_bilinear(torch.from_numpy(image)[None], h, w, 1 / scale, 1 / scale)[0].numpy()
    assert np.allclose(got, expected, atol=1e-3)


def test_flow_upsampling_matches_cv2_resize_to_a_size():
    flow = RNG.random((20, 30)).astype(np.float32)
    expected = cv2.resize(flow, (37, 25), interpolation=cv2.INTER_LINEAR)
    got = resize_bilinear(torch.from_numpy(flow)[None], 25, 37, 30 / 37, 20 / 25)[0].numpy()
    assert np.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("size", [3, 5])
def test_median_on_every_device_path_is_opencvs(size):
    u = torch.from_numpy(RNG.random((2, 23, 31)).astype(np.float32))
    expected = np.stack([cv2.medianBlur(plane, size) for plane in u.numpy()])
    assert np.array_equal(median_blur(u, size).numpy(), expected)
    assert np.array_equal(median_blur_torch(u, size).numpy(), expected)  # the GPU path


# ---- accuracy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_pair",
    [
        lambda: _gray_pair(Motion(dx=1.5, dy=-0.75)),
        lambda: _gray_pair(Motion(rotate=2.0, zoom=1.02), 128, 96),
        lambda: _gray_pair(Motion(dx=-4.0, dy=3.0), 128, 96, seed=7),
        _layered_pair,
    ],
    ids=["translation", "rotation+zoom", "large-translation", "occluding-layer"],
)
def test_accuracy_equals_opencvs_on_pairs_with_known_flow(make_pair):
    prev, nxt, truth = make_pair()
    reference = create_engine("tvl1").calc(prev, nxt)
    ours = TVL1Solver().flow(prev, nxt).numpy()
    ours_epe, opencv_epe = endpoint_error(ours, truth), endpoint_error(reference, truth)
    assert ours_epe <= opencv_epe * 1.05 + 0.005, (ours_epe, opencv_epe)
    assert np.linalg.norm(ours - reference, axis=-1).mean() < 0.02


def test_middlebury_accuracy_equals_opencvs(shared_testdata):
    folder = shared_testdata / "flow/middlebury/Dimetrodon"
    prev = cv2.imread(str(folder / "gray/frame10.png"), cv2.IMREAD_GRAYSCALE)
    nxt = cv2.imread(str(folder / "gray/frame11.png"), cv2.IMREAD_GRAYSCALE)
    truth = read_flo(folder / "flow10.flo")
    ours = endpoint_error(TVL1Solver().flow(prev, nxt).numpy(), truth)
    opencv = endpoint_error(create_engine("tvl1").calc(prev, nxt), truth)
    assert ours <= opencv * 1.05, (ours, opencv)


# ---- batching ---------------------------------------------------------------------------------


def test_each_pair_in_a_batch_gets_its_own_result_and_costs_only_its_own_iterations():
    pairs = [_gray_pair(Motion(dx=0.5), seed=1), _gray_pair(Motion(dx=3.0, dy=2.0), seed=2),
             _gray_pair(Motion(rotate=3.0), seed=3)]
    alone, cost = [], 0
    for prev, nxt, _ in pairs:
        solver = TVL1Solver()
        alone.append(solver.flow(prev, nxt).numpy())
        cost += solver.iterations_run
    batched = TVL1Solver()
    together = batched.flow(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])).numpy()
    for i in range(3):
        assert np.allclose(together[i], alone[i], atol=1e-5)
    # A pair that converged early stopped costing work: the batch did exactly the singles' sum.
    assert batched.iterations_run == cost


def test_how_often_convergence_is_checked_does_not_change_results():
    prev, nxt, _ = _gray_pair(Motion(dx=1.0, rotate=1.0))
    every = TVL1Solver(check_every=1).flow(prev, nxt).numpy()
    seldom = TVL1Solver(check_every=7).flow(prev, nxt).numpy()
    assert np.allclose(every, seldom, atol=1e-5)


def test_parameters_reach_the_solver():
    prev, nxt, _ = _gray_pair(Motion(dx=2.0))
    coarse = TVL1Solver(TVL1Params(nscales=1, warps=1, outer_iterations=1)).flow(prev, nxt)
    assert not torch.allclose(coarse, TVL1Solver().flow(prev, nxt))


def test_compiled_solver_matches_eager_and_marks_the_cache_warm():
    from flowkit.flow import compile_cache

    compile_cache._marker().unlink(missing_ok=True)
    prev, nxt, _ = _gray_pair(Motion(dx=1.0, dy=0.5), 64, 48)
    eager = TVL1Solver().flow(prev, nxt).numpy()
    assert not compile_cache.tvl1_is_warm()  # an eager run compiles nothing
    compiled = TVL1Solver(compile=True).flow(prev, nxt).numpy()
    assert np.abs(compiled - eager).max() < 0.05
    assert compile_cache.tvl1_is_warm()  # the next small job may compile too


# ---- the engine ---------------------------------------------------------------------------------


def test_engine_computes_single_pairs_and_batches_alike():
    engine = create_engine("tvl1", backend="torch", device="cpu", compile=False)
    assert (engine.backend, engine.device, engine.batch_size) == ("torch", "cpu", 1)
    pairs = [_gray_pair(Motion(dx=1.0), seed=s) for s in (1, 2)]
    single = [engine.calc(p[0], p[1]) for p in pairs]
    batch = engine.calc_batch([p[0] for p in pairs], [p[1] for p in pairs])
    assert single[0].shape == (72, 96, 2) and single[0].dtype == np.float32
    for a, b in zip(single, batch, strict=True):
        assert np.allclose(a, b, atol=1e-5)


def test_engine_runs_on_its_own_thread_count_and_restores_the_processs():
    engine = create_engine("tvl1", backend="torch", device="cpu", compile=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with engine._own_threads():
            assert torch.get_num_threads() == 1  # one thread per engine unless told more
        engine.set_threads(2)
        with engine._own_threads():
            assert torch.get_num_threads() == 2
        engine.set_threads(1)
        engine.calc(*_gray_pair(Motion(dx=1.0))[:2])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_engine_settings_errors_are_one_line():
    with pytest.raises(FlowkitError, match="no illumination term"):
        create_engine("tvl1", {"gamma": "0.1"}, backend="torch")
    with pytest.raises(FlowkitError, match="median_filtering must be"):
        create_engine("tvl1", {"median_filtering": 7}, backend="torch")
    with pytest.raises(FlowkitError, match="unknown device"):
        resolve_device("tpu:0")
    if not torch.cuda.is_available():
        with pytest.raises(FlowkitError, match="CUDA is not available"):
            create_engine("tvl1", backend="torch", device="cuda")
    with pytest.raises(FlowkitError, match="runs on the CPU only"):
        create_engine("dis", device="cuda")
    with pytest.raises(FlowkitError, match="presets are for tvl1"):
        create_engine("farneback", preset="fast")


def test_deeper_presets_recover_motion_the_default_pyramid_misses():
    prev, nxt, truth = _gray_pair(Motion(dx=10.0, dy=-5.0), 160, 120, seed=11)
    default = endpoint_error(create_engine("tvl1", backend="torch", compile=False).calc(prev, nxt), truth)
    for preset in ("fast", "accurate"):
        engine = create_engine("tvl1", preset=preset, backend="torch", compile=False)
        assert endpoint_error(engine.calc(prev, nxt), truth) < min(1.0, default / 4), preset


def test_presets_set_parameters_and_explicit_ones_win():
    fast = create_engine("tvl1", preset="fast", backend="torch", compile=False)
    assert fast.params["warps"] < 5 and fast.params["outer_iterations"] < 10
    tuned = create_engine("tvl1", {"warps": "4"}, preset="fast")
    assert tuned.params["warps"] == 4
    accurate = create_engine("tvl1", preset="accurate")
    assert accurate.params["nscales"] > 5
