"""companion.gradcheck against closed-form gradients."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from companion.gradcheck import check_gradient, numerical_gradient, relative_error


@settings(max_examples=50)
@given(arrays(np.float64, st.integers(1, 6), elements=st.floats(-3, 3)))
def test_numerical_gradient_of_quadratic_form(x):
    A = np.diag(np.arange(1.0, len(x) + 1))
    grad = numerical_gradient(lambda v: v @ A @ v, x)
    np.testing.assert_allclose(grad, 2 * A @ x, rtol=1e-6, atol=1e-6)


def test_shape_is_kept_and_input_not_modified():
    x = np.arange(6.0).reshape(2, 3)
    before = x.copy()
    grad = numerical_gradient(lambda m: np.sum(np.sin(m)), x)
    assert grad.shape == (2, 3)
    np.testing.assert_allclose(grad, np.cos(x), rtol=1e-8)
    np.testing.assert_array_equal(x, before)


def test_check_gradient_passes_for_correct_and_fails_for_wrong():
    x = np.array([0.3, -1.2, 2.0])
    good = check_gradient(lambda v: np.sum(v**3), lambda v: 3 * v**2, x)
    bad = check_gradient(lambda v: np.sum(v**3), lambda v: 2 * v**2, x)
    assert good.passed and good.max_relative_error < 1e-8
    assert not bad.passed and bad.max_relative_error > 0.1
    assert "FAILED" in str(bad)


def test_bad_input():
    with pytest.raises(ValueError, match="h > 0"):
        numerical_gradient(np.sum, np.ones(2), h=0)
    with pytest.raises(ValueError, match="non-empty"):
        numerical_gradient(np.sum, [])
    with pytest.raises(TypeError, match="array of real numbers"):
        numerical_gradient(np.sum, ["a", object()])
    with pytest.raises(ValueError, match=r"expected grad_f to return shape \(3,\), got \(2,\)"):
        check_gradient(np.sum, lambda v: v[:2], np.ones(3))
    with pytest.raises(ValueError, match="same shape"):
        relative_error(np.ones(2), np.ones(3))
