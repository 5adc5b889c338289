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
    with pytest.raises(ValueError, match="the step h"):
        numerical_gradient(np.sum, np.ones(2), h=0)
    with pytest.raises(ValueError, match="non-empty"):
        numerical_gradient(np.sum, [])
    with pytest.raises(TypeError, match="array of numbers"):
        numerical_gradient(np.sum, ["a", object()])
    with pytest.raises(ValueError, match=r"expected grad_f to return shape \(3,\), got \(2,\)"):
        check_gradient(np.sum, lambda v: v[:2], np.ones(3))
    with pytest.raises(ValueError, match="same shape"):
        relative_error(np.ones(2), np.ones(3))


def test_relative_error_is_scale_free_and_floored():
    a = np.array([1.0, 2e-3, 0.0])
    b = a * (1 + 1e-6)
    np.testing.assert_allclose(relative_error(a, b), [1e-6 / (1 + 1e-6)] * 2 + [0.0], rtol=1e-6)
    np.testing.assert_allclose(relative_error(1e6 * a, 1e6 * b), relative_error(a, b), rtol=1e-9)
    assert relative_error(0.0, 1e-13) == pytest.approx(0.1)  # the floor, 1e-12, keeps 0/0 away


def test_step_size_matters():
    # round-off: a tiny step is worse than the default; truncation: a large one too
    f, x = lambda v: float(np.sum(np.sin(v))), np.array([1.0])
    err = [abs(numerical_gradient(f, x, h)[0] - np.cos(1.0)) for h in (1e-12, 1e-6, 1e-1)]
    assert err[1] < err[0] / 100 and err[1] < err[2] / 100


def test_relative_error_is_symmetric_and_bounded_by_one():
    a, b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 0.0, 2.0])
    np.testing.assert_array_equal(relative_error(a, b), relative_error(b, a))
    np.testing.assert_allclose(relative_error(a, b), [1.0, 1.0, 2.0])  # |a - b| / max(|a|, |b|)


def test_numerical_gradient_perturbs_one_entry_at_a_time():
    x = np.array([0.3, -0.7, 1.1, 0.5])
    w = np.array([1.0, 2.0, -1.5, 0.5])
    seen = []

    def f(v):
        seen.append(v.copy())
        return float(np.exp(v @ w))

    grad = numerical_gradient(f, x, h=1e-6)
    for v in seen:  # every evaluation moves exactly one entry, by h, from x itself
        moved = np.flatnonzero(v != x)
        assert len(moved) == 1 and abs(abs(v - x)[moved[0]] - 1e-6) < 1e-15
    np.testing.assert_allclose(grad, w * np.exp(x @ w), rtol=1e-8)
