"""TV-L1 optical flow in PyTorch: OpenCV's DualTVL1OpticalFlow, step for step, batched, any device.

The algorithm is the duality-based TV-L1 of Zach, Pock & Bischof (2007) with the improvements of
Wedel et al. (2009), as OpenCV-contrib implements it: a pyramid built by bilinear downscaling
(`scale_step`), per scale `warps` warpings of the second image (bicubic, zero outside), each
followed by up to `outer_iterations` x `inner_iterations` iterations of the thresholding step,
the primal update and the dual update, a median filter of the flow before each outer iteration,
and a stop once the squared update summed over the image falls to `epsilon^2 * pixels`.

`variant="cudaoptflow"` takes the steps of OpenCV-contrib's CUDA implementation instead
(`cuda::OpticalFlowDual_TVL1`, cudaoptflow/src/tvl1flow.cpp and cuda/tvl1flow.cu), the one
denseflow and TSN's dense_flow call with its defaults (preset `denseflow`). It differs from the
CPU one in more than defaults:

1. No median filter, and one loop of `iterations` (300) per warp, not outer x inner (10 x 30).
2. The stopping test runs on odd iterations only, and after a test that failed it is skipped
   until the update summed so far would have fallen below the threshold (the failed error minus
   `epsilon^2 * pixels` per iteration since): more iterations than the CPU's test after each one.
3. Warping samples the Catmull-Rom cubic (a = -0.5, weights normalised by their sum) with
   clamp-to-edge texture reads; the CPU's cv::remap INTER_CUBIC uses a = -0.75 and zero outside.
4. Resizing (the pyramid and the flow's upsampling) is cuda::resize INTER_LINEAR, which maps an
   output pixel x to x * (source size / output size), without cv::resize's half-pixel centring:
   the CUDA pyramid is shifted by up to half a pixel towards the origin.
5. The same centred image gradients, backward-difference divergence, forward-difference dual
   step, thresholding and per-scale reset of the dual variables (identical formulas).
   (The CUDA object also keeps a pyramid cut short by a small frame for the frames after it;
   flowkit's variant does not copy that, as every frame of a video has one size.)

Many pairs run in one call. Each pair stops on its own rule: a pair that has converged is frozen
(its values stop changing) and is dropped from the working batch at the next check, so it costs
no more work and its result does not depend on its batch-mates. Only `gamma = 0` (OpenCV's
default, no illumination term) is implemented.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from flowkit.errors import FlowkitError
from flowkit.flow import compile_cache
from flowkit.flow.tvl1_params import VARIANTS, TVL1Params

_FLOAT_EPS = float(np.finfo(np.float32).eps)
MIN_SCALE_SIZE = 16  # OpenCV stops building the pyramid below 16 pixels


# ---- the pieces, each as OpenCV computes it ---------------------------------------------------


def centered_gradient(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences / 2, one-sided at the borders (replicate padding), of (B, H, W)."""
    padded = F.pad(image[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    dx = 0.5 * (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2])
    dy = 0.5 * (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])
    return dx, dy


def forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of (B, H, W), zero in the last column (dx) and row (dy)."""
    dx = torch.diff(u, dim=-1, append=u[..., -1:])
    dy = torch.diff(u, dim=-2, append=u[..., -1:, :])
    return dx, dy


def divergence(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence of (v1, v2), taking values before the first row/column as 0."""
    v1x = torch.diff(v1, dim=-1, prepend=torch.zeros_like(v1[..., :1]))
    v2y = torch.diff(v2, dim=-2, prepend=torch.zeros_like(v2[..., :1, :]))
    return v1x + v2y


def resize_bilinear(image: torch.Tensor, height: int, width: int, scale_x: float, scale_y: float,
                    centred: bool = True) -> torch.Tensor:
    """cv2.resize INTER_LINEAR of (B, H, W): source x = (x + 0.5) * scale_x - 0.5, clamped; or,
    `centred=False`, cv2.cuda.resize's source x = x * scale_x."""
    b, h, w = image.shape
    device, dtype = image.device, image.dtype
    half = 0.5 if centred else 0.0
    xs = ((torch.arange(width, device=device, dtype=dtype) + half) * scale_x - half).clamp(0, w - 1)
    ys = ((torch.arange(height, device=device, dtype=dtype) + half) * scale_y - half).clamp(0, h - 1)
    grid = torch.stack(torch.meshgrid(
        xs * (2.0 / max(w - 1, 1)) - 1, ys * (2.0 / max(h - 1, 1)) - 1, indexing="xy"), dim=-1)
    out = F.grid_sample(image[:, None], grid.expand(b, height, width, 2), mode="bilinear",
                        padding_mode="border", align_corners=True)
    return out[:, 0]


def warp_bicubic(images: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """cv2.remap INTER_CUBIC (zero outside) of (B, C, H, W) images at x + u1, y + u2."""
    h, w = images.shape[-2:]
    ys, xs = torch.meshgrid(
        torch.arange(h, device=u1.device, dtype=u1.dtype),
        torch.arange(w, device=u1.device, dtype=u1.dtype), indexing="ij")
    grid = torch.stack([(xs + u1) * (2.0 / (w - 1)) - 1, (ys + u2) * (2.0 / (h - 1)) - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


def _catmull_rom(t: torch.Tensor) -> list[torch.Tensor]:
    """The a = -0.5 cubic's weights of the taps at offsets -1, 0, 1, 2 from floor(x), t = x - floor(x)."""
    return [((-0.5 * t + 1.0) * t - 0.5) * t,
            (1.5 * t - 2.5) * t * t + 1.0,
            ((-1.5 * t + 2.0) * t + 0.5) * t,
            (0.5 * t - 0.5) * t * t]


def warp_bicubic_clamped(images: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """cudaoptflow's warp of (B, C, H, W) images at x + u1, y + u2: the Catmull-Rom cubic over
    4 x 4 texels read clamp-to-edge, divided by the weights' sum (tvl1flow.cu, warpBackwardKernel)."""
    b, c, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=u1.device, dtype=u1.dtype),
                            torch.arange(w, device=u1.device, dtype=u1.dtype), indexing="ij")
    x, y = xs + u1, ys + u2
    x0, y0 = torch.floor(x), torch.floor(y)
    wx, wy = _catmull_rom(x - x0), _catmull_rom(y - y0)
    cols = [(x0 + k).clamp(0, w - 1).long() for k in (-1, 0, 1, 2)]
    rows = [(y0 + k).clamp(0, h - 1).long() * w for k in (-1, 0, 1, 2)]
    flat = images.reshape(b, c, h * w)
    out = torch.zeros_like(images)
    for row, weight_y in zip(rows, wy, strict=True):
        line = torch.zeros_like(images)
        for col, weight_x in zip(cols, wx, strict=True):
            index = (row + col).reshape(b, 1, h * w).expand(b, c, h * w)
            line += weight_x[:, None] * flat.gather(2, index).reshape(b, c, h, w)
        out += weight_y[:, None] * line
    return out / (sum(wx) * sum(wy))[:, None]


def median_blur(u: torch.Tensor, size: int) -> torch.Tensor:
    """cv2.medianBlur (size 3 or 5, replicated borders) of each (H, W) slice of (B, H, W)."""
    if u.device.type == "cpu":  # OpenCV's own median: exact, and 100x faster than unfold + median
        data = u.contiguous().numpy()
        return torch.from_numpy(np.stack([cv2.medianBlur(plane, size) for plane in data]))
    return median_blur_torch(u, size)


def median_blur_torch(u: torch.Tensor, size: int) -> torch.Tensor:
    """The same median in torch, for devices OpenCV cannot reach."""
    r = size // 2
    padded = F.pad(u[:, None], (r, r, r, r), mode="replicate")
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # (B, 1, H, W, size, size)
    return windows.reshape(*u.shape, size * size).median(dim=-1).values


def tvl1_iterations(
    u1: torch.Tensor, u2: torch.Tensor, p11: torch.Tensor, p12: torch.Tensor,
    p21: torch.Tensor, p22: torch.Tensor, i1wx: torch.Tensor, i1wy: torch.Tensor,
    grad: torch.Tensor, rho_c: torch.Tensor, frozen: torch.Tensor, last_error: torch.Tensor,
    odd: torch.Tensor, l_t: float, theta: float, taut: float, epsilon: float, count: int,
    gated: bool = False,
) -> tuple[torch.Tensor, ...]:
    """`count` inner iterations of (B, H, W) tensors, each pair freezing once it has converged.

    A pair is frozen after the iteration whose squared update, summed over the image, falls to
    `epsilon^2 * H * W`, exactly where OpenCV stops it; frozen pairs keep their values, so running
    several iterations per call gives the same result as checking after every one. `gated`: the
    test runs as cudaoptflow's does, on the iterations `odd` marks, once `last_error` (per pair,
    lowered by the threshold each iteration without a test) has fallen below the threshold.
    Returns the new (u1, u2, p11, p12, p21, p22), the frozen mask and `last_error`.
    """
    # From the shape, not passed in: a float argument would make torch.compile specialise on
    # its value, and the scales' different sizes would then each need a new compilation.
    scaled_epsilon = epsilon * epsilon * u1.shape[-1] * u1.shape[-2]
    for i in range(count):
        # Thresholding step: v = u + d * grad(I1w), in three cases of the residual rho.
        rho = rho_c + i1wx * u1 + i1wy * u2
        bound = l_t * grad
        fi = torch.where(grad > _FLOAT_EPS, -rho / torch.clamp(grad, min=_FLOAT_EPS), 0.0)
        d = torch.where(rho < -bound, l_t, torch.where(rho > bound, -l_t, fi))
        # Primal step.
        new_u1 = u1 + d * i1wx + theta * divergence(p11, p12)
        new_u2 = u2 + d * i1wy + theta * divergence(p21, p22)
        error = ((new_u1 - u1) ** 2 + (new_u2 - u2) ** 2).sum(dim=(-2, -1))
        # Dual step.
        u1x, u1y = forward_gradient(new_u1)
        u2x, u2y = forward_gradient(new_u2)
        ng1 = 1.0 + taut * torch.sqrt(u1x * u1x + u1y * u1y)
        ng2 = 1.0 + taut * torch.sqrt(u2x * u2x + u2y * u2y)
        keep = frozen[:, None, None]
        u1, u2 = torch.where(keep, u1, new_u1), torch.where(keep, u2, new_u2)
        p11 = torch.where(keep, p11, (p11 + taut * u1x) / ng1)
        p12 = torch.where(keep, p12, (p12 + taut * u1y) / ng1)
        p21 = torch.where(keep, p21, (p21 + taut * u2x) / ng2)
        p22 = torch.where(keep, p22, (p22 + taut * u2y) / ng2)
        if gated:
            tested = odd[i] & (last_error < scaled_epsilon)
            frozen = frozen | (tested & (error <= scaled_epsilon))
            last_error = torch.where(tested, error, last_error - scaled_epsilon)
        else:
            frozen = frozen | (error <= scaled_epsilon)
    return u1, u2, p11, p12, p21, p22, frozen, last_error


# ---- the solver --------------------------------------------------------------------------------


class TVL1Solver:
    """Batched TV-L1 on one device; `flow(prev, nxt)` takes (B, H, W) images in 0..255.

    `compile` fuses the inner iterations with torch.compile (about 3x faster on CPU; the first
    call in a process pays the compilation). `check_every` is how many inner iterations run
    between looks at which pairs converged (each look is a sync and a call from Python);
    results do not depend on it, only the work converged pairs waste until the next look.
    """

    def __init__(
        self,
        params: TVL1Params | None = None,
        device: str | torch.device = "cpu",
        compile: bool = False,
        check_every: int | None = None,
    ) -> None:
        params = params or TVL1Params()
        if params.median_filtering not in (0, 1, 3, 5):
            raise FlowkitError("median_filtering must be 1 (off), 3 or 5, as in OpenCV")
        if params.variant not in VARIANTS:
            raise FlowkitError(f"variant must be one of {', '.join(VARIANTS)}, not {params.variant!r}")
        self.params = params
        self.cuda_steps = params.variant == "cudaoptflow"
        self.device = torch.device(device)
        self.check_every = check_every or (5 if self.device.type == "cpu" else 10)
        self._iterations: Callable[..., tuple[torch.Tensor, ...]] = tvl1_iterations
        self.compiled = compile
        if compile:
            compile_cache.use_cache_dir()
            # A few variants get compiled (one pair or many; small or large scales); more than
            # dynamo's default limit of 8 would silently fall back to eager for the rest.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            self._iterations = torch.compile(tvl1_iterations, dynamic=True)
        self.iterations_run = 0  # inner iterations summed over pairs: the real cost
        self._marked_warm = False

    @torch.no_grad()
    def flow(self, prev: torch.Tensor | np.ndarray, nxt: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Flow from `prev` to `nxt`, (B, H, W) (or (H, W)) intensities: (B, H, W, 2) float32."""
        i0 = torch.as_tensor(prev, device=self.device).to(torch.float32)
        i1 = torch.as_tensor(nxt, device=self.device).to(torch.float32)
        single = i0.ndim == 2
        if single:
            i0, i1 = i0[None], i1[None]
        if i0.shape != i1.shape or i0.ndim != 3:
            raise FlowkitError(f"frames must be two (B, H, W) or (H, W) arrays of one shape, got {i0.shape}, {i1.shape}")
        pyramid = self._pyramid(i0, i1)
        h, w = pyramid[-1][0].shape[-2:]
        u1 = torch.zeros(i0.shape[0], h, w, device=self.device)
        u2 = torch.zeros_like(u1)
        for level in range(len(pyramid) - 1, -1, -1):
            l0, l1 = pyramid[level]
            u1, u2 = self._one_scale(l0, l1, u1, u2)
            if level == 0:
                break
            # Upsample to the next finer scale (cv2.resize to a given size) and rescale.
            fh, fw = pyramid[level - 1][0].shape[-2:]
            sx, sy = u1.shape[-1] / fw, u1.shape[-2] / fh
            centred = not self.cuda_steps
            u1 = resize_bilinear(u1, fh, fw, sx, sy, centred) / self.params.scale_step
            u2 = resize_bilinear(u2, fh, fw, sx, sy, centred) / self.params.scale_step
        flow = torch.stack([u1, u2], dim=-1)
        if self.compiled and not self._marked_warm:
            compile_cache.mark_tvl1_warm()
            self._marked_warm = True
        return flow[0] if single else flow

    def _pyramid(self, i0: torch.Tensor, i1: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        step = self.params.scale_step
        levels = [(i0, i1)]
        for _ in range(1, self.params.nscales):
            h, w = levels[-1][0].shape[-2:]
            nh, nw = round(h * step), round(w * step)
            if nh < MIN_SCALE_SIZE or nw < MIN_SCALE_SIZE:
                break
            levels.append(tuple(resize_bilinear(x, nh, nw, 1 / step, 1 / step, not self.cuda_steps)
                                for x in levels[-1]))
        return levels

    def _one_scale(self, i0: torch.Tensor, i1: torch.Tensor, u1: torch.Tensor,
                   u2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        batch, h, w = i0.shape
        l_t, taut = p.lambda_ * p.theta, p.tau / p.theta
        i1x, i1y = centered_gradient(i1)
        # p11, p12, p21, p22, reset at each scale; separate contiguous tensors, like all the
        # iteration's inputs, so that torch.compile sees one memory layout and compiles once.
        duals = [torch.zeros(batch, h, w, device=i0.device) for _ in range(4)]
        sources = torch.stack([i1, i1x, i1y], dim=1)
        warp = warp_bicubic_clamped if self.cuda_steps else warp_bicubic
        for _ in range(p.warps):
            warped = warp(sources, u1, u2)
            i1w, i1wx, i1wy = (warped[:, c].contiguous() for c in range(3))
            grad = i1wx * i1wx + i1wy * i1wy
            rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
            u1, u2, duals = self._iterate(u1, u2, duals, i1wx, i1wy, grad, rho_c, l_t, taut)
        return u1, u2

    def _iterate(self, u1, u2, duals, i1wx, i1wy, grad, rho_c, l_t, taut):
        """The outer and inner iterations of one warp, each pair stopping on its own error."""
        p = self.params
        u1, u2, duals = u1.clone(), u2.clone(), [d.clone() for d in duals]
        active = torch.arange(u1.shape[0], device=u1.device)  # pairs still iterating
        # Working copies of the active pairs; the last: cudaoptflow's error at its last test.
        state = [u1, u2, *duals, i1wx, i1wy, grad, rho_c, torch.zeros(u1.shape[0], device=u1.device)]
        done = 0  # iterations run in this warp: cudaoptflow tests on odd ones
        for _ in range(p.outer_iterations):
            if active.numel() == 0:
                break
            if p.median_filtering > 1:
                state[0] = median_blur(state[0], p.median_filtering).to(u1.device)
                state[1] = median_blur(state[1], p.median_filtering).to(u1.device)
            done_inner = 0
            while done_inner < p.inner_iterations and active.numel():
                count = min(self.check_every, p.inner_iterations - done_inner)
                frozen = torch.zeros(active.numel(), dtype=torch.bool, device=u1.device)
                odd = (torch.arange(done, done + count, device=u1.device) % 2) == 1
                *state[:6], frozen, state[10] = self._iterations(
                    *state[:10], frozen, state[10], odd, l_t, p.theta, taut, p.epsilon, count,
                    self.cuda_steps)
                self.iterations_run += int(active.numel()) * count
                done_inner += count
                done += count
                if bool(frozen.any()):
                    # Converged pairs leave: their values go home, the rest keep iterating.
                    finished, keep = active[frozen], ~frozen
                    for full, work in zip((u1, u2, *duals), state[:6], strict=True):
                        full[finished] = work[frozen]
                    active = active[keep]
                    state = [t[keep] for t in state]
        for full, work in zip((u1, u2, *duals), state[:6], strict=True):
            full[active] = work
        return u1, u2, duals
