"""Numerical gradients by central differences, and a gradient check.

Taught in chapter 1 ("How small should the step be?", "Partial derivatives
and the gradient") and put to work in chapter 2 ("Gradient checks in
practice"). The central difference (f(x + h) - f(x - h)) / 2h has a
truncation error of order h**2 and a round-off error of order eps / h, so in
float64 a step near 1e-5 to 1e-6 balances the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from companion._checks import check_array, check_positive


def _as_float64_array(x: object, name: str) -> np.ndarray:
    arr = check_array(name, "x", x).copy()  # a copy: we perturb it in place
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {arr.shape}")
    return arr


def numerical_gradient(f: Callable[[np.ndarray], float], x: object, h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of a scalar function of an array (chapter 1, "Partial derivatives and the gradient").

    Costs two evaluations of ``f`` per entry of ``x``: check on a few
    examples and a small network (chapter 2, "Gradient checks in practice").

    Args:
        f: maps an array of the shape of ``x`` to a scalar.
        x: the point, any shape (converted to float64).
        h: the step.

    Returns:
        An array of the shape of ``x``: entry i is (f(x + h e_i) - f(x - h e_i)) / 2h.
    """
    check_positive("numerical_gradient", "the step h", h)
    x = _as_float64_array(x, "numerical_gradient")
    grad = np.empty_like(x)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)
    for i in range(flat_x.size):
        original = flat_x[i]
        flat_x[i] = original + h
        f_plus = float(f(x))
        flat_x[i] = original - h
        f_minus = float(f(x))
        flat_x[i] = original
        flat_g[i] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(a: object, b: object, floor: float = 1e-12) -> np.ndarray:
    """Elementwise |a - b| / max(|a|, |b|, floor) (chapter 2, "Gradient checks in practice").

    Relative, so the verdict does not depend on the gradient's scale; the
    floor keeps two (near-)zero entries from dividing 0 by 0. In float64 with
    a central difference: below about 1e-7 is right, around 1e-4 and above is
    suspicious (or a kink, or float32), near 1 is a bug.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"relative_error: expected arrays of the same shape, got {a.shape} and {b.shape}")
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)


@dataclass(frozen=True)
class GradCheck:
    """The result of ``check_gradient`` (chapter 1, "Partial derivatives and the gradient")."""

    max_relative_error: float
    numerical: np.ndarray
    analytic: np.ndarray
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_relative_error < self.tolerance

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return f"gradient check {verdict}: max relative error {self.max_relative_error:.2e} (tolerance {self.tolerance:.0e})"


def check_gradient(
    f: Callable[[np.ndarray], float],
    grad_f: Callable[[np.ndarray], np.ndarray],
    x: object,
    h: float = 1e-6,
    tolerance: float = 1e-6,
) -> GradCheck:
    """Compare an analytic gradient ``grad_f(x)`` with the central difference of ``f``.

    Chapter 1, "Partial derivatives and the gradient"; chapter 2, "Checking
    the gradients".

    Returns a ``GradCheck`` holding both gradients and the max relative error.
    """
    x = _as_float64_array(x, "check_gradient")
    analytic = np.asarray(grad_f(x.copy()), dtype=np.float64)
    if analytic.shape != x.shape:
        raise ValueError(f"check_gradient: expected grad_f to return shape {x.shape}, got {analytic.shape}")
    numerical = numerical_gradient(f, x, h)
    err = float(relative_error(analytic, numerical).max())
    return GradCheck(err, numerical, analytic, tolerance)
