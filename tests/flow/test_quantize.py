import numpy as np
import pytest

from flowkit.errors import FlowkitError
from flowkit.flow.quantize import dequantize_flow, quantization_step, quantize_flow


def test_convention_endpoints_and_zero():
    codes = quantize_flow(np.array([-20.0, -25.0, 0.0, 20.0, 30.0]), bound=20)
    # -bound -> 0, +bound -> 255, clipped beyond; zero sits at 127.5 and rounds half to even.
    assert codes.tolist() == [0, 0, 128, 255, 255]
    assert codes.dtype == np.uint8


def test_round_trip_error_is_at_most_half_a_step():
    rng = np.random.default_rng(0)
    flow = rng.uniform(-20, 20, size=(50, 60, 2)).astype(np.float32)
    back = dequantize_flow(quantize_flow(flow, 20), 20)
    assert back.dtype == np.float32
    assert np.abs(back - flow).max() <= quantization_step(20) / 2 + 1e-5


def test_formula_matches_the_papers_convention():
    flow = np.linspace(-7, 7, 101)
    expected = np.rint((np.clip(flow, -5, 5) + 5) * 255 / 10)
    assert np.array_equal(quantize_flow(flow, 5), expected.astype(np.uint8))
    assert np.allclose(dequantize_flow(np.arange(256, dtype=np.uint8), 5), np.arange(256) * 10 / 255 - 5, atol=1e-5)


def test_bound_must_be_positive():
    with pytest.raises(FlowkitError):
        quantize_flow(np.zeros(3), 0)
