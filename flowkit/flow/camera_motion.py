"""Camera motion between two frames: a homography from matched features, and the second frame
warped onto the first, for TSN's warped optical flow (Wang et al. 2016, §3.2).

The flow of the first frame against the warped second is the motion *relative to the camera*:
a pan, tilt or zoom over a scene that is roughly a plane (or far away) is a homography, so what
remains after warping is what moves in the scene. As dense_flow's `extract_warp_gpu` (TSN's
extractor, after iDT, Wang & Schmid 2013) does it:

- features of each frame are matched to the previous frame's, a match only between points at
  most `max_shift` apart (dense_flow: 25 px at 340x256; here a tenth of the frame's longer side);
- `cv2.findHomography` with RANSAC and a 1 px reprojection threshold (dense_flow's) estimates
  the homography H taking points of the first frame to the second;
- the second frame is resampled at H x for every pixel x of the first (dense_flow warps by
  H^-1 in its convention, the same map); pixels whose source lies outside the second frame
  (within a 5 px margin) are copied from the first frame, so they get zero flow instead of
  the motion of a black border.

Where this differs from dense_flow: SIFT (in OpenCV's main modules) instead of SURF (Hessian
200, in the non-free contrib), with Lowe's ratio test (0.75) instead of the plain best match;
dense_flow also adds up to 1000 corners displaced by the plain flow to the matches, which this
does not (the homography comes before the flow, from the frames alone); dense_flow needs more
than 50 matches and 25 inliers, this `min_matches` and `min_inliers` (fewer, as it has no flow
matches), and also refuses a degenerate homography (see `plausible`). dense_flow's matches go
through a human mask, as in iDT, but dense_flow's mask is all ones (it has no detector), and
flowkit has none either: matches on people or any moving object are left to RANSAC, which
keeps the dominant (background) motion when the background fills most of the frame.

When no homography can be trusted (too few matches or inliers, a degenerate one), the identity
is used: the warped flow of that pair is the plain flow. `CameraMotion.estimate` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

IDENTITY = np.eye(3)
BORDER_MARGIN = 5  # px: dense_flow's margin, inside which a warped pixel counts as outside


@dataclass(frozen=True)
class Features:
    """Keypoint positions (N, 2) float32 (x, y) and their descriptors (N, D) of one frame."""

    points: np.ndarray
    descriptors: np.ndarray | None

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class Estimate:
    """A homography (3x3, first frame's points to the second's) and whether it was found
    (False: the identity, after too few matches or inliers, or a degenerate fit)."""

    homography: np.ndarray
    found: bool
    matches: int = 0
    inliers: int = 0


class CameraMotion:
    """Homographies between grayscale uint8 frames from SIFT matches and RANSAC (one job:
    camera motion; flow is computed elsewhere, by the caller's engine)."""

    def __init__(self, max_features: int = 1000, ratio: float = 0.75, max_shift: float = 0.1,
                 ransac_threshold: float = 1.0, min_matches: int = 20, min_inliers: int = 12) -> None:
        self.ratio, self.max_shift = ratio, max_shift
        self.ransac_threshold = ransac_threshold
        self.min_matches, self.min_inliers = min_matches, min_inliers
        self._sift = cv2.SIFT_create(nfeatures=max_features)
        self._matcher = cv2.BFMatcher(cv2.NORM_L2)

    def features(self, gray: np.ndarray) -> Features:
        """SIFT keypoints and descriptors of one frame (compute once per frame, reuse per pair)."""
        keypoints, descriptors = self._sift.detectAndCompute(gray, None)
        points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
        return Features(points, descriptors)

    def matches(self, first: Features, second: Features, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Matched points (M, 2) of the first and second frames: ratio test, then at most
        `max_shift` x the frame's longer side apart."""
        if len(first) < 2 or len(second) < 2 or first.descriptors is None or second.descriptors is None:
            return np.empty((0, 2), np.float32), np.empty((0, 2), np.float32)
        pairs = self._matcher.knnMatch(first.descriptors, second.descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        a = np.array([first.points[m.queryIdx] for m in good], np.float32).reshape(-1, 2)
        b = np.array([second.points[m.trainIdx] for m in good], np.float32).reshape(-1, 2)
        near = np.abs(b - a).max(axis=1) <= self.max_shift * max(shape) if len(a) else np.zeros(0, bool)
        return a[near], b[near]

    def estimate(self, first: Features, second: Features, shape: tuple[int, int]) -> Estimate:
        """The homography from the first frame to the second (`shape`: their (H, W)), or the
        identity with `found` False when it cannot be trusted."""
        a, b = self.matches(first, second, shape)
        if len(a) < max(self.min_matches, 4):
            return Estimate(IDENTITY, False, len(a))
        homography, mask = cv2.findHomography(a, b, cv2.RANSAC, self.ransac_threshold)
        inliers = int(mask.sum()) if mask is not None else 0
        if homography is None or inliers < self.min_inliers or not plausible(homography, shape):
            return Estimate(IDENTITY, False, len(a), inliers)
        return Estimate(homography, True, len(a), inliers)


def plausible(homography: np.ndarray, shape: tuple[int, int]) -> bool:
    """Whether a homography can be a camera's motion between two nearby frames: finite, not
    mirrored or collapsed (its linear part scales area by 1/2..2), and no corner of the frame
    moved by more than a quarter of its diagonal."""
    h = np.asarray(homography, np.float64)
    if not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        return False
    h = h / h[2, 2]
    if not 0.5 <= np.linalg.det(h[:2, :2]) <= 2.0:
        return False
    height, width = shape
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], np.float64)
    mapped = cv2.perspectiveTransform(corners[None], h)[0]
    return bool(np.all(np.isfinite(mapped))) and float(
        np.abs(mapped - corners).max()) <= 0.25 * np.hypot(width, height)


def warp_onto_first(first: np.ndarray, second: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """The second frame seen from the first's camera: pixel x is second(H x), bilinear; pixels
    whose H x falls outside the second frame (less `BORDER_MARGIN`) are the first frame's."""
    height, width = first.shape[:2]
    warped = cv2.warpPerspective(second, homography, (width, height),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    source = cv2.perspectiveTransform(np.stack([xs, ys], -1).reshape(1, -1, 2), homography)[0]
    sx, sy = source[:, 0].reshape(height, width), source[:, 1].reshape(height, width)
    inside = ((sx > BORDER_MARGIN) & (sx < width - 1 - BORDER_MARGIN)
              & (sy > BORDER_MARGIN) & (sy < height - 1 - BORDER_MARGIN))
    return np.where(inside, warped, first)
