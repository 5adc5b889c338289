"""Checkers for chapter 1's code exercises."""

from __future__ import annotations

import math

from ._core import Case, isclose_scalar, register


def _derivative(f, x, h=1e-5):
    return (f(x + h) - f(x - h)) / (2 * h)


def _derivative_cases() -> list[Case]:
    return [
        Case("x**3 at x = 2", (lambda x: x**3, 2.0), hint="the exact answer is 12; the central difference is within 1e-9 of it"),
        Case("sin at x = 1", (math.sin, 1.0)),
        Case("exp at x = 0 with h = 1e-3", (math.exp, 0.0), {"h": 1e-3},
             hint="use the step h you are given: (f(x + h) - f(x - h)) / (2h)"),
        Case("a line at x = -4", (lambda x: 3 * x - 1, -4.0), hidden=True),
        Case("tanh at x = 0.5 with h = 1e-2", (math.tanh, 0.5), {"h": 1e-2}, hidden=True),
        Case("h = 0 raises ValueError", (math.sin, 1.0), {"h": 0.0}, raises=ValueError,
             hint="check the step first: if not h > 0: raise ValueError(...)"),
        Case("h < 0 raises ValueError", (math.sin, 1.0), {"h": -1e-3}, raises=ValueError, hidden=True),
    ]


register(
    "ch01-derivative",
    reference=_derivative,
    cases=_derivative_cases,
    compare=isclose_scalar(rtol=1e-9, atol=1e-12),
    hint="the central difference is (f(x + h) - f(x - h)) / (2 * h)",
)
