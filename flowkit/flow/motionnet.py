"""MotionNet (Zhu, Lan, Newsam & Hauptmann 2017, "Hidden Two-Stream Convolutional Networks for
Action Recognition"): a U-Net that estimates optical flow from stacked frames, learned without
ground truth.

The layers are those of bryanyzhu/Hidden-Two-Stream `models/multiframe_MotionNet/deploy.prototxt`
(commit 78ec894): twelve 3x3 convolutions in pairs (the first of each pair strided from conv2 on:
64, 128, 256, 512, 512, 1024 channels, leaky ReLU 0.1); a flow prediction (3x3 convolution to
2 x (frames - 1) channels) at conv6 and after each decoder step; each decoder step is a 4x4
stride-2 deconvolution (leaky ReLU) of the previous step, concatenated with the encoder's
feature map of that size and the previous prediction upsampled by its own 4x4 deconvolution,
then a 3x3 "smooth" convolution (no activation). The finest prediction (`flow2`) has half the
input's size. Predictions are flow / 20 in input pixels, the FlowNet convention the reference
keeps; flow k (frame k to frame k + 1) is channels 2k (u, right) and 2k + 1 (v, down).

The unsupervised loss is the reference's `train.prototxt`, per scale (2 ... 6): photometric
Charbonnier ((255 x)^2 + 0.001^2)^0.4 of the LRN-normalised frame minus the next frame warped
back by the flow (pixels warped from outside the frame are left out), smoothness Charbonnier
(x^2 + 0.001^2)^0.3 of the flow's forward differences (in pixels of that scale), both weight 1,
and 1 - SSIM over 8x8 windows at stride 8 (c1 = 1e-4, c2 = 1e-3), weights 0.16 (scale 6) down
to 0.01 (scale 2). Each term is a mean here (Caffe's SSIM layer sums over windows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FLOW_SCALE = 20.0  # predictions are flow / 20 (the reference's `predict_flow2_scale20`)
ENCODER = (64, 128, 256, 512, 512, 1024)  # conv1 ... conv6 (and their _1 twins)
LEVELS = (2, 3, 4, 5, 6)  # flow2 (1/2 of the input) ... flow6 (1/32)
SSIM_WEIGHTS = {6: 0.16, 5: 0.08, 4: 0.04, 3: 0.02, 2: 0.01}
PHOTO_ALPHA, PHOTO_BETA = 0.4, 255.0
SMOOTH_ALPHA = 0.3
EPSILON = 0.001
# The reference's input: BGR 0-255 minus its mean, times 1/255; one gray channel: its mean.
BGR_MEAN = (104.0, 117.0, 123.0)
GRAY_MEAN = 117.0


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)


class MotionNet(nn.Module):
    """`frames` stacked images of `channels` each in, flow between consecutive ones out, at five
    scales. `width` scales every layer's channels (1: the paper's; smaller for tests and speed)."""

    def __init__(self, frames: int = 11, channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if frames < 2 or channels < 1 or width <= 0:
            raise ValueError("MotionNet needs 2 or more frames, 1 or more channels, width > 0")
        self.frames, self.channels, self.width = frames, channels, width
        self.flows = frames - 1
        out = 2 * self.flows
        c = [max(1, round(n * width)) for n in ENCODER]
        self.encoder = nn.ModuleList()
        cin = frames * channels
        for level, cout in enumerate(c, start=1):
            self.encoder.append(nn.Sequential(
                _conv(cin, cout, 1 if level == 1 else 2), nn.LeakyReLU(0.1, inplace=True),
                _conv(cout, cout), nn.LeakyReLU(0.1, inplace=True),
            ))
            cin = cout
        self.predict6 = _conv(c[5], out)
        # Decoder steps 5, 4, 3, 2: deconvolution to the width of that encoder level's half.
        decoded = {5: c[4], 4: c[3] // 2 or 1, 3: c[2] // 2 or 1, 2: c[1] // 2 or 1}
        self.deconv, self.upflow, self.smooth, self.predict = (nn.ModuleDict() for _ in range(4))
        previous = c[5]
        for level in (5, 4, 3, 2):
            skip = c[level - 1]
            width_here = decoded[level]
            self.deconv[str(level)] = nn.Sequential(_deconv(previous, width_here),
                                                    nn.LeakyReLU(0.1, inplace=True))
            self.upflow[str(level)] = _deconv(out, out)
            self.smooth[str(level)] = _conv(skip + width_here + out, width_here)
            self.predict[str(level)] = _conv(width_here, out)
            previous = width_here
        for module in self.modules():  # the reference's "msra" filler, zero biases
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(module.weight, a=0.1)
                nn.init.zeros_(module.bias)
        for predict in (self.predict6, *self.predict.values()):  # start near zero flow
            predict.weight.data.mul_(0.1)

    def forward(self, x: Tensor) -> list[Tensor]:
        """(N, frames x channels, H, W) to [flow2, flow3, ..., flow6], each (N, 2 x flows, h, w)
        in units of 20 input pixels, flow2 of size ceil(H / 2) x ceil(W / 2)."""
        if x.dim() != 4 or x.shape[1] != self.frames * self.channels:
            raise ValueError(f"MotionNet expects (N, {self.frames * self.channels}, H, W): "
                             f"{self.frames} frames of {self.channels} channels, got {tuple(x.shape)}")
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        flow = self.predict6(x)
        predictions = [flow]
        for level in (5, 4, 3, 2):
            skip = skips[level - 1]
            size = skip.shape[-2:]
            up = self.deconv[str(level)](x)[..., : size[0], : size[1]]
            upflow = self.upflow[str(level)](flow)[..., : size[0], : size[1]]
            x = self.smooth[str(level)](torch.cat([skip, up, upflow], dim=1))
            flow = self.predict[str(level)](x)
            predictions.append(flow)
        return predictions[::-1]

    def flow_pixels(self, x: Tensor) -> Tensor:
        """The finest flow upsampled (bilinear) to the input's size, in pixels: (N, flows, 2, H, W)."""
        flow2 = self(x)[0]
        return upsample_flow(flow2, x.shape[-2:])


def upsample_flow(flow2: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """A prediction (N, 2F, h, w) in units of 20 input pixels to pixel flow (N, F, 2, H, W)."""
    n, c, _, _ = flow2.shape
    up = F.interpolate(flow2, size=tuple(size), mode="bilinear", align_corners=False)
    return (up * FLOW_SCALE).view(n, c // 2, 2, *up.shape[-2:])


def normalize_frames(frames: Tensor) -> Tensor:
    """uint8 frames (N, T, H, W, C), BGR or one gray channel, to MotionNet's input
    (N, T x C, H, W): the reference's mean subtracted, times 1/255."""
    n, t, h, w, c = frames.shape
    mean = torch.tensor(BGR_MEAN if c == 3 else (GRAY_MEAN,) * c, device=frames.device)
    x = (frames.float() - mean) / 255.0
    return x.permute(0, 1, 4, 2, 3).reshape(n, t * c, h, w)


# ---- the unsupervised loss ----------------------------------------------------------------------


def charbonnier(x: Tensor, alpha: float, beta: float = 1.0) -> Tensor:
    """((beta x)^2 + epsilon^2)^alpha, elementwise (the reference's CharbonnierLoss)."""
    return ((beta * x) ** 2 + EPSILON**2) ** alpha


def warp(image: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """`image` (N, C, h, w) sampled at x + flow (flow (N, 2, h, w) in pixels): the next frame
    warped back to the first; and the mask (N, 1, h, w) of pixels whose sample lies inside."""
    h, w = image.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, device=image.device, dtype=image.dtype),
                            torch.arange(w, device=image.device, dtype=image.dtype), indexing="ij")
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return warped, inside.unsqueeze(1).to(image.dtype)


def ssim_loss(a: Tensor, b: Tensor, window: int = 8, c1: float = 1e-4, c2: float = 1e-3) -> Tensor:
    """Mean of 1 - SSIM over `window` x `window` windows at stride `window` (the reference's)."""
    k = max(1, min(window, a.shape[-1], a.shape[-2]))
    mu_a, mu_b = F.avg_pool2d(a, k, k), F.avg_pool2d(b, k, k)
    var_a = F.avg_pool2d(a * a, k, k) - mu_a**2
    var_b = F.avg_pool2d(b * b, k, k) - mu_b**2
    cov = F.avg_pool2d(a * b, k, k) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return (1 - ssim).mean()


def unsupervised_loss(x: Tensor, predictions: list[Tensor], channels: int) -> tuple[Tensor, dict[str, float]]:
    """The multi-scale loss of MotionNet's `predictions` on its input `x` (N, T x C, H, W), no
    ground truth; and its three terms summed over the scales, as floats."""
    n, _, height, width = x.shape
    frames = x.shape[1] // channels
    images = F.local_response_norm(
        x.view(n * frames, channels, height, width), 9, alpha=1.0, beta=0.7, k=1.0)
    total = x.new_zeros(())
    terms = {"photometric": 0.0, "smoothness": 0.0, "ssim": 0.0}
    for level, prediction in zip(LEVELS, predictions, strict=True):
        h, w = prediction.shape[-2:]
        small = F.adaptive_avg_pool2d(images, (h, w)).view(n, frames, channels, h, w)
        scale = prediction.new_tensor([w / width, h / height]).view(1, 1, 2, 1, 1)
        flow = prediction.view(n, frames - 1, 2, h, w) * FLOW_SCALE * scale
        flat = flow.reshape(-1, 2, h, w)
        first = small[:, :-1].reshape(-1, channels, h, w)
        warped, inside = warp(small[:, 1:].reshape(-1, channels, h, w), flat)
        photo = (charbonnier(first - warped, PHOTO_ALPHA, PHOTO_BETA) * inside).sum()
        photo = photo / (inside.sum() * channels).clamp(min=1)
        smooth = x.new_zeros(())
        if w > 1:
            smooth = smooth + charbonnier(flat[..., :, 1:] - flat[..., :, :-1], SMOOTH_ALPHA).mean()
        if h > 1:
            smooth = smooth + charbonnier(flat[..., 1:, :] - flat[..., :-1, :], SMOOTH_ALPHA).mean()
        structural = ssim_loss(warped * inside, first * inside)
        total = total + photo + smooth + SSIM_WEIGHTS[level] * structural
        terms["photometric"] += float(photo.detach())
        terms["smoothness"] += float(smooth.detach())
        terms["ssim"] += float(structural.detach())
    return total, terms
