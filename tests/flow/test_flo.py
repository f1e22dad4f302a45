import numpy as np
import pytest

from flowkit.errors import FlowkitError
from flowkit.flow.flo import read_flo, write_flo
from flowkit.flow.metrics import angular_error, endpoint_error, known_mask


def test_write_read_round_trip(tmp_path):
    flow = np.random.default_rng(1).normal(size=(7, 9, 2)).astype(np.float32)
    write_flo(tmp_path / "a.flo", flow)
    data = (tmp_path / "a.flo").read_bytes()
    assert len(data) == 12 + 7 * 9 * 8
    assert np.array_equal(read_flo(tmp_path / "a.flo"), flow)


def test_bad_magic_and_truncation_are_clear_errors(tmp_path):
    (tmp_path / "bad.flo").write_bytes(b"not a flow file at all")
    with pytest.raises(FlowkitError, match=r"not a \.flo file"):
        read_flo(tmp_path / "bad.flo")
    write_flo(tmp_path / "t.flo", np.zeros((4, 4, 2), np.float32))
    (tmp_path / "t.flo").write_bytes((tmp_path / "t.flo").read_bytes()[:-8])
    with pytest.raises(FlowkitError, match="damaged"):
        read_flo(tmp_path / "t.flo")


def test_middlebury_ground_truth_reads_with_unknown_pixels(shared_testdata):
    gt = read_flo(shared_testdata / "flow/middlebury/RubberWhale/flow10.flo")
    assert gt.shape == (388, 584, 2)
    unknown = 1 - known_mask(gt).mean()
    assert 0.01 < unknown < 0.03  # the README's 1.6 %


def test_errors_ignore_unknown_pixels_and_measure_distance():
    gt = np.zeros((2, 2, 2), np.float32)
    gt[0, 0] = 1e10
    est = np.zeros_like(gt)
    est[..., 0] = 3.0
    est[..., 1] = 4.0
    assert endpoint_error(est, gt) == pytest.approx(5.0)
    assert angular_error(gt * 0, gt) == pytest.approx(0.0)
    assert angular_error(est, gt) > 0
