"""Checkers for chapter 1's code exercises.

* ``ch01-derivative``: the central difference (section "The derivative as a limit").
* ``ch01-power`` and ``ch01-exp``: the step a ``_backward`` takes for
  ``v ** k`` and ``exp(v)`` (section "A reverse-mode engine in one screen"),
  as a function of plain numbers, ``backward_through_power(x, k, upstream,
  earlier)``: ``v.grad`` after the node's backward step, given ``v.data = x``,
  the node's ``out.grad = upstream`` and what ``v.grad`` held before. One
  visible case per requirement: the derived local derivative, the factor
  ``out.grad``, and accumulation (``+=``).
"""

from __future__ import annotations

import math

import numpy as np

from ._core import Case, isclose_scalar, register


def _derivative(f, x, h=1e-5):
    return (f(x + h) - f(x - h)) / (2 * h)


def _derivative_cases() -> list[Case]:
    return [
        Case("x**3 at x = 2", (lambda x: x**3, 2.0),
             hint="the exact answer is 12; the central difference is within 1e-9 of it"),
        Case("sin at x = 1", (math.sin, 1.0)),
        Case("exp at x = 0 with h = 1e-3", (math.exp, 0.0), {"h": 1e-3},
             hint="use the step h you are given: (f(x + h) - f(x - h)) / (2h)"),
        Case("h = 0 raises ValueError", (math.sin, 1.0), {"h": 0.0}, raises=ValueError,
             hint="check the step first: if not h > 0: raise ValueError(...)"),
    ]


def _derivative_hidden(rng: np.random.Generator) -> list[Case]:
    a, b, x = (float(v) for v in rng.uniform(-3, 3, size=3))
    h = float(10.0 ** rng.uniform(-4, -2))
    return [
        Case(f"a line at x = {x:.3g}", (lambda t: a * t + b, x)),
        Case(f"tanh at x = {x:.3g} with h = {h:.2g}", (math.tanh, x), {"h": h}),
        Case("h < 0 raises ValueError", (math.sin, x), {"h": -h}, raises=ValueError),
    ]


register(
    "ch01-derivative",
    reference=_derivative,
    cases=_derivative_cases,
    hidden=_derivative_hidden,
    compare=isclose_scalar(rtol=1e-9, atol=1e-12),
    hint="the central difference is (f(x + h) - f(x - h)) / (2 * h)",
)


# -- the backward step of v ** k and exp(v) ----------------------------------
def _backward_through_power(x, k, upstream, earlier):
    return earlier + k * x ** (k - 1) * upstream


def _backward_through_exp(x, upstream, earlier):
    return earlier + math.exp(x) * upstream


def _power_cases() -> list[Case]:
    return [
        Case("v ** 3 at v = 2, out.grad = 1, v.grad = 0", (2.0, 3.0, 1.0, 0.0),
             hint="derive d(v^k)/dv first: at v = 2, k = 3 it is 12"),
        Case("v ** 2 at v = -1.5, out.grad = 2.5", (-1.5, 2.0, 2.5, 0.0),
             hint="chain rule: multiply the local derivative by out.grad, the upstream gradient"),
        Case("v ** 3 at v = 0.5, v.grad already 0.7 (v is used elsewhere)", (0.5, 3.0, 1.0, 0.7),
             hint="add to what v.grad holds (+=): the other uses of v already put their share there"),
        Case("v ** -1 at v = 4", (4.0, -1.0, 1.3, 0.2), hint="the rule holds for negative k too"),
        Case("v ** 0.5 at v = 9", (9.0, 0.5, -0.8, 0.4), hint="and for fractional k"),
    ]


def _power_hidden(rng: np.random.Generator) -> list[Case]:
    cases = []
    for _ in range(4):
        k = float(rng.choice([-2.0, -0.5, 1.5, 2.0, 3.0, 4.0]))
        x = float(rng.uniform(0.3, 3.0))
        upstream, earlier = (float(u) for u in rng.uniform(-2, 2, size=2))
        cases.append(Case(f"v ** {k:g} at v = {x:.3g}", (x, k, upstream, earlier)))
    return cases


register(
    "ch01-power",
    reference=_backward_through_power,
    cases=_power_cases,
    hidden=_power_hidden,
    compare=isclose_scalar(rtol=1e-9, atol=1e-12),
    hint="v.grad after the node's _backward: what it held, plus (local derivative) * out.grad",
)


def _exp_cases() -> list[Case]:
    return [
        Case("exp(v) at v = 0, out.grad = 1, v.grad = 0", (0.0, 1.0, 0.0),
             hint="derive d(e^v)/dv first"),
        Case("exp(v) at v = 1, out.grad = -2", (1.0, -2.0, 0.0),
             hint="chain rule: multiply the local derivative by out.grad"),
        Case("exp(v) at v = -0.7, v.grad already 0.3", (-0.7, 1.5, 0.3),
             hint="add to what v.grad holds (+=)"),
    ]


def _exp_hidden(rng: np.random.Generator) -> list[Case]:
    return [Case(f"exp(v) at v = {x:.3g}", (float(x), float(u), float(e)))
            for x, u, e in rng.uniform(-2, 2, size=(3, 3))]


register(
    "ch01-exp",
    reference=_backward_through_exp,
    cases=_exp_cases,
    hidden=_exp_hidden,
    compare=isclose_scalar(rtol=1e-9, atol=1e-12),
    hint="v.grad after the node's _backward: what it held, plus (local derivative) * out.grad",
)
