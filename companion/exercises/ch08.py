"""Checkers for chapter 8's code exercises."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from ._core import Case, allclose, register


def _centered_ranks(fitness):
    f = np.asarray(fitness, dtype=np.float64)
    return (rankdata(f) - 1.0) / (f.size - 1) - 0.5


def _cases() -> list[Case]:
    rng = np.random.default_rng(8)
    return [
        Case("three values", (np.array([3.0, -1.0, 10.0]),),
             hint="the worst gets -0.5, the best +0.5, evenly spaced in between"),
        Case("already sorted", (np.arange(5.0),)),
        Case("huge and tiny values", (np.array([1e9, -1e-9, 0.0, 7.0]),),
             hint="only the order of the fitness matters, not its scale"),
        Case("twenty random values", (rng.standard_normal(20),)),
        Case("ties share their average rank", (np.array([1.0, 2.0, 2.0, 3.0]),),
             hint="tied values get the mean of the ranks they occupy (scipy.stats.rankdata does "
                  "this; argsort of argsort gives ties different ranks)"),
        Case("two values", (np.array([5.0, -5.0]),)),
        Case("a list, not an array", ([0.3, 0.1, 0.2],)),
    ]


def _hidden(rng) -> list[Case]:
    """Fresh populations drawn at grading: continuous values, and returns with many ties."""
    cases = []
    for i in range(4):
        n = int(rng.integers(2, 60))
        cases.append(Case(f"drawn fitness {i + 1} ({n} values)", (rng.normal(0, 10, n),)))
        cases.append(Case(f"drawn CartPole-like returns {i + 1} ({n} values, ties)",
                          (rng.choice([9.0, 10.0, 200.0, 500.0], n),)))
    return cases


register(
    "ch08-centered-ranks",
    reference=_centered_ranks,
    cases=_cases,
    hidden=_hidden,
    compare=allclose(rtol=1e-9, atol=1e-12),
    hint="rank the fitness from 0 (worst) to n - 1 (best), divide by n - 1 and subtract 0.5",
)
