"""Checkers for chapter 4's code exercises (autoencoders).

torch is imported inside the functions, so that loading this module stays
cheap. Hidden cases are drawn from the grader's generator ``rng``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._core import Case, allclose, register

if TYPE_CHECKING:
    import torch


# -- ch04-kl-diagonal: KL between two diagonal Gaussians (the page derives only p = N(0, I)) --

def _kl_diagonal(mu_q: "torch.Tensor", logvar_q: "torch.Tensor", mu_p: "torch.Tensor",
                 logvar_p: "torch.Tensor") -> "torch.Tensor":
    """KL(N(mu_q, diag e^logvar_q) || N(mu_p, diag e^logvar_p)) per row: (n, k) x 4 -> (n,)."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0).sum(dim=1)


def _t(values, rows: int = 1) -> "torch.Tensor":
    import torch

    return torch.tensor(values, dtype=torch.float64).reshape(rows, -1)


def _kl_cases() -> list[Case]:
    import torch

    g = torch.Generator().manual_seed(0)
    mu_q, lv_q, mu_p, lv_p = (torch.randn((5, 3), generator=g, dtype=torch.float64) for _ in range(4))
    zeros = torch.zeros((3, 2), dtype=torch.float64)
    return [
        Case("q equals p, 3 rows", (mu_q[:3, :2], lv_q[:3, :2], mu_q[:3, :2], lv_q[:3, :2]),
             hint="KL(q || q) = 0 for every row: return one value per row, shape (n,)"),
        Case("the order matters: q wider than p", (zeros[:1, :1], zeros[:1, :1], zeros[:1, :1], _t([math.log(0.25)])),
             hint="KL is not symmetric: KL(q || p) averages log q - log p under q; did you swap q and p?"),
        Case("equal variances, different means", (_t([1.0]), _t([math.log(4.0)]), _t([-1.0]), _t([math.log(4.0)])),
             hint="with equal variances the KL is (mu_q - mu_p)**2 / (2 var_p): the mean gap is "
                  "measured in units of p's variance"),
        Case("same mean, q narrower than p", (zeros[:1, :1], _t([math.log(0.25)]), zeros[:1, :1], zeros[:1, :1]),
             hint="KL(N(0, s^2) || N(0, 1)) = (s^2 - 1 - log s^2) / 2; the expectation is taken under q"),
        Case("p is the prior N(0, I)", (mu_q, lv_q, torch.zeros_like(mu_q), torch.zeros_like(lv_q)),
             hint="with mu_p = 0 and logvar_p = 0 your formula must reduce to the page's "
                  "0.5 * sum(exp(logvar) + mu**2 - 1 - logvar)"),
        Case("5 rows, 3 dimensions, all different", (mu_q, lv_q, mu_p, lv_p),
             hint="sum over the latent dimensions (dim=1), one value per row"),
    ]


def _kl_hidden(rng: np.random.Generator) -> list[Case]:
    import torch

    cases = []
    for i in range(3):
        n, k = int(rng.integers(1, 12)), int(rng.integers(1, 9))
        scale = float(rng.uniform(0.1, 3.0))
        args = tuple(torch.from_numpy(scale * rng.standard_normal((n, k))) for _ in range(4))
        cases.append(Case(f"drawn case {i + 1}: {n} rows, {k} dimensions", args))
    return cases


register(
    "ch04-kl-diagonal",
    reference=_kl_diagonal,
    cases=_kl_cases,
    hidden=_kl_hidden,
    compare=allclose(rtol=1e-9, atol=1e-12),
    hint="KL = 0.5 * sum_j (logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)**2) / exp(logvar_p) - 1)",
)


# -- ch04-pca-reconstruct ---------------------------------------------------------------

def _pca_reconstruct(X_train: "torch.Tensor", X: "torch.Tensor", k: int) -> "torch.Tensor":
    import torch

    mean = X_train.mean(dim=0)
    _, _, Vt = torch.linalg.svd(X_train - mean, full_matrices=False)
    V = Vt[:k].T
    return (X - mean) @ V @ V.T + mean


def _pca_case(name: str, n: int, d: int, m: int, k: int, seed: int, **extra) -> Case:
    import torch

    g = torch.Generator().manual_seed(seed)
    # correlated data with a nonzero mean, so centring and the choice of directions both matter
    mixing = torch.randn((d, d), generator=g, dtype=torch.float64)
    X_train = torch.randn((n, d), generator=g, dtype=torch.float64) @ mixing + 3.0
    X = torch.randn((m, d), generator=g, dtype=torch.float64) @ mixing + 3.0
    return Case(name, (X_train, X, k), **extra)


def _pca_cases() -> list[Case]:
    return [
        _pca_case("20 points in 3-D, 1 component", 20, 3, 5, 1, seed=0,
                  hint="centre with the training mean, project on the top k right singular vectors, add the mean back"),
        _pca_case("50 points in 6-D, 2 components", 50, 6, 7, 2, seed=1,
                  hint="project on the top k directions (the first rows of Vt), not the last ones"),
        _pca_case("all components: exact reconstruction", 30, 4, 3, 4, seed=2,
                  hint="with k = d the projection is the identity, so the output must equal X"),
    ]


def _pca_hidden(rng: np.random.Generator) -> list[Case]:
    cases = []
    for i in range(2):
        d = int(rng.integers(2, 12))
        cases.append(_pca_case(f"drawn case {i + 1}", int(rng.integers(d + 2, 120)), d, int(rng.integers(1, 10)),
                               int(rng.integers(1, d + 1)), seed=int(rng.integers(1 << 30))))
    return cases


register(
    "ch04-pca-reconstruct",
    reference=_pca_reconstruct,
    cases=_pca_cases,
    hidden=_pca_hidden,
    compare=allclose(rtol=1e-7, atol=1e-8),
    hint="rows of Vt from torch.linalg.svd(X_train - mean) are the principal directions",
)
