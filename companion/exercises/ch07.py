"""Checkers for chapter 7's code exercises (the Forward-Forward algorithm)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._core import Case, isclose_scalar, register


def _ff_loss(h_pos: torch.Tensor, h_neg: torch.Tensor, theta: float) -> torch.Tensor:
    """A layer's local loss from its activities: (n, d), (m, d), float -> scalar.

    goodness = sum of squares per row; mean over all n + m examples of
    softplus(theta - g_pos) and softplus(g_neg - theta).
    """
    g_pos, g_neg = (h_pos**2).sum(dim=1), (h_neg**2).sum(dim=1)
    return torch.cat([F.softplus(theta - g_pos), F.softplus(g_neg - theta)]).mean()


def _case(name: str, n: int, m: int, d: int, theta: float, scale: float, seed: int, **extra) -> Case:
    g = torch.Generator().manual_seed(seed)
    h_pos = torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64)) * scale
    h_neg = torch.relu(torch.randn(m, d, generator=g, dtype=torch.float64)) * scale
    return Case(name, (h_pos, h_neg, theta), **extra)


def _cases() -> list[Case]:
    return [
        _case("4 positives, 4 negatives, 5 units, theta 2", 4, 4, 5, 2.0, 1.0, seed=0,
              hint="goodness is the SUM of squared activities of each row (not the mean)"),
        _case("8 units, theta 6", 6, 6, 8, 6.0, 1.0, seed=1),
        _case("3 positives but 5 negatives", 3, 5, 4, 3.0, 1.0, seed=2,
              hint="average over all n + m examples together: concatenate the two sets of terms, then take the mean"),
        _case("large goodness (about 400), theta 10", 5, 5, 10, 10.0, 8.0, seed=3,
              hint="-log(sigmoid(z)) overflows when sigmoid rounds to 0 or 1, and so does "
                   "log(1 + exp(z)) once exp(z) overflows: use F.softplus, which is stable"),
        _case("a single example each, theta 0.5", 1, 1, 3, 0.5, 1.0, seed=4),
    ]


def _hidden(rng) -> list[Case]:
    """Fresh shapes, thresholds and scales (up to goodness in the thousands), drawn at grading."""
    cases = []
    for i in range(6):
        n, m, d = (int(v) for v in rng.integers(1, 12, 3))
        theta, scale = float(rng.uniform(0.1, 50)), float(rng.choice([0.5, 1.0, 5.0, 20.0]))
        cases.append(_case(f"drawn case {i + 1}: n={n}, m={m}, d={d}", n, m, d, theta, scale,
                           seed=int(rng.integers(2**31))))
    return cases


register(
    "ch07-ff-loss",
    reference=_ff_loss,
    cases=_cases,
    hidden=_hidden,
    compare=isclose_scalar(rtol=1e-6, atol=1e-9),
    hint="g = (h**2).sum(1); the loss is the mean of softplus(theta - g_pos) and softplus(g_neg - theta) over all examples",
)
