"""Checkers for chapter 13's code exercise (the best factorized Gaussian for a Gaussian posterior)."""

from __future__ import annotations

import numpy as np

from ._core import Case, allclose, register


def _mean_field_optimum(Phi: np.ndarray, y: np.ndarray, prior_std: float, noise_std: float) -> tuple:
    """The factorized Gaussian q = N(m, diag v) that maximizes the ELBO of Bayesian linear regression.

    Phi (n, d), y (n,). With precision A = Phi^T Phi / noise^2 + I / prior^2 the posterior is
    N(A^-1 Phi^T y / noise^2, A^-1); the best factorized q has the same mean and v_i = 1 / A_ii.
    Returns (m (d,), v (d,)).
    """
    Phi, y = np.asarray(Phi, dtype=float), np.asarray(y, dtype=float)
    precision = Phi.T @ Phi / noise_std**2 + np.eye(Phi.shape[1]) / prior_std**2
    return np.linalg.solve(precision, Phi.T @ y / noise_std**2), 1.0 / np.diag(precision)


_HINT = ("the ELBO of q = N(m, diag v) is -1/2 (m - mu)^T A (m - mu) - 1/2 sum_i A_ii v_i + 1/2 sum_i log v_i "
         "+ const, with A the posterior precision: set its derivatives to zero. The mean is the exact "
         "posterior mean; the variance is 1 / A_ii (the precision's diagonal), not the posterior "
         "covariance's diagonal (A^-1)_ii. A holds 1 / prior_std**2 and 1 / noise_std**2, squared")


def _problem(n: int, d: int, rng: np.random.Generator, correlated: bool = True) -> tuple:
    Phi = rng.normal(size=(n, d))
    if correlated:
        Phi = Phi + rng.normal(size=(n, 1))  # a shared component: the features are correlated
    y = Phi @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    return Phi, y, float(rng.uniform(0.5, 2.0)), float(rng.uniform(0.2, 1.0))


def _cases() -> list[Case]:
    rng = np.random.default_rng(13)
    orthogonal = np.vstack([np.eye(3), np.eye(3)])  # uncorrelated features: mean-field is exact
    return [
        Case("orthonormal features (mean-field is exact here)", (orthogonal, np.array([1.0, -2, 0.5, 1, 0, 0.5]),
                                                                1.0, 0.5), hint=_HINT),
        Case("correlated features", _problem(20, 4, rng), hint=_HINT),
        Case("more features than data", _problem(3, 6, rng), hint=_HINT),
        Case("a single feature", _problem(10, 1, rng, correlated=False), hint=_HINT),
    ]


def _hidden(rng: np.random.Generator) -> list[Case]:
    cases = []
    for i in range(4):
        n, d = int(rng.integers(1, 30)), int(rng.integers(1, 8))
        cases.append(Case(f"drawn problem {i + 1}: n={n}, d={d}", _problem(n, d, rng)))
    return cases


register(
    "ch13-mean-field",
    reference=_mean_field_optimum,
    cases=_cases,
    hidden=_hidden,
    compare=allclose(rtol=1e-6, atol=1e-9),
    hint=_HINT,
)
