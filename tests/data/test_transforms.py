import numpy as np
import pytest

from flowkit.data.transforms import (
    Crop,
    MultiScaleCrop,
    RandomCrop,
    apply_crop,
    eval_views,
    ten_crops,
)
from flowkit.errors import FlowkitError


def test_flipping_flow_mirrors_and_negates_u_only():
    flow = np.zeros((2, 4, 6, 2), np.float32)
    flow[..., 0] = np.arange(6)  # u grows to the right
    flow[..., 1] = 5.0
    out = apply_crop(flow, Crop(0, 0, 4, 6, (4, 6), flip=True), is_flow=True)
    assert out[0, 0].tolist() == [[-5.0, 5.0], [-4.0, 5.0], [-3.0, 5.0], [-2.0, 5.0], [-1.0, 5.0], [0.0, 5.0]]
    rgb = np.arange(6, dtype=np.uint8)[None, None, :, None].repeat(3, axis=3)
    mirrored = apply_crop(rgb, Crop(0, 0, 1, 6, (1, 6), flip=True), is_flow=False)
    assert mirrored[0, 0, :, 0].tolist() == [5, 4, 3, 2, 1, 0]  # RGB is only mirrored


def test_multiscale_crop_sizes_positions_and_determinism():
    transform = MultiScaleCrop(size=112, scales=(1, 0.875, 0.75, 0.66))
    sides = {int(128 * s) for s in (1, 0.875, 0.75, 0.66)}
    crops = [transform.draw(np.random.default_rng(i), 128, 170) for i in range(300)]
    for crop in crops:
        assert crop.height in sides and crop.width in sides and crop.size == (112, 112)
        assert crop.top + crop.height <= 128 and crop.left + crop.width <= 170
    corners = {(c.top == 0, c.left == 0) for c in crops}
    assert len(corners) == 4 and any(c.flip for c in crops) and not all(c.flip for c in crops)
    assert transform.draw(np.random.default_rng(7), 128, 170) == transform.draw(np.random.default_rng(7), 128, 170)
    frames = np.random.default_rng(0).integers(0, 255, (3, 128, 170, 3), dtype=np.uint8)
    out = apply_crop(frames, crops[0], is_flow=False)
    assert out.shape == (3, 112, 112, 3)


def test_crop_applies_identically_to_every_frame():
    frames = np.stack([np.full((20, 30, 2), i, np.float32) for i in range(4)])
    frames[:, 5, 7] = 99  # the same marker in every frame
    crop = RandomCrop(10, flip=0.0).draw(np.random.default_rng(3), 20, 30)
    out = apply_crop(frames, crop, is_flow=True)
    marked = [set(zip(*np.nonzero(out[i, ..., 0] == 99), strict=True)) for i in range(4)]
    assert all(m == marked[0] for m in marked)


def test_ten_crops_are_corners_centre_and_their_mirrors():
    image = np.arange(8 * 10, dtype=np.float32).reshape(1, 8, 10, 1)
    views = [apply_crop(image, crop, is_flow=False) for crop in ten_crops(8, 10, size=4)]
    assert len(views) == 10
    assert views[0][0, 0, 0, 0] == 0 and views[1][0, 0, -1, 0] == 9  # top-left, top-right
    assert views[3][0, -1, -1, 0] == 79 and views[4][0, 0, 0, 0] == 2 * 10 + 3  # bottom-right, centre
    for plain, mirrored in zip(views[:5], views[5:], strict=True):
        assert np.array_equal(plain[:, :, ::-1], mirrored)
    assert len(eval_views(8, 10, 4, crops=1)) == 1
    assert not any(c.flip for c in eval_views(8, 10, 4, crops=10, flip=False))
    assert len(eval_views(8, 10, 4, crops=10, flip=False)) == 5
    with pytest.raises(FlowkitError):
        eval_views(8, 10, 4, crops=3)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("size", [(10, 10), (7, 9)])
def test_a_crop_is_the_per_frame_formula_and_a_view_when_asked(flip, size):
    """Each frame cropped, resized by cv2 alone and mirrored (u negated): what apply_crop gives,
    contiguous or as a view, and the input left untouched."""
    import cv2

    frames = np.random.default_rng(1).normal(size=(3, 12, 14, 2)).astype(np.float32)
    before = frames.copy()
    crop = Crop(1, 2, 10, 10, size, flip=flip)
    expected = []
    for frame in frames:
        region = frame[1:11, 2:12]
        if size != (10, 10):
            region = cv2.resize(region, size[::-1], interpolation=cv2.INTER_LINEAR)
        if flip:
            region = region[:, ::-1] * np.array([-1, 1], np.float32)
        expected.append(region)
    for contiguous in (True, False):
        out = apply_crop(frames, crop, is_flow=True, contiguous=contiguous)
        np.testing.assert_array_equal(out, np.stack(expected))
        assert out.flags.c_contiguous or not contiguous
    np.testing.assert_array_equal(frames, before)
