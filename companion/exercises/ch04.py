"""Checkers for chapter 4's code exercises (autoencoders).

torch is imported inside the functions, so that importing the exercise
registry (which imports every chapter's checkers) stays cheap for the numpy
chapters.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._core import Case, allclose, register

if TYPE_CHECKING:
    import torch


def _gaussian_kl(mu: "torch.Tensor", logvar: "torch.Tensor") -> "torch.Tensor":
    return 0.5 * (logvar.exp() + mu**2 - 1.0 - logvar).sum(dim=1)


def _kl_case(name: str, n: int, k: int, seed: int, **extra) -> Case:
    import torch

    g = torch.Generator().manual_seed(seed)
    mu = torch.randn((n, k), generator=g, dtype=torch.float64)
    logvar = torch.randn((n, k), generator=g, dtype=torch.float64)
    return Case(name, (mu, logvar), **extra)


def _kl_cases() -> list[Case]:
    import torch

    zeros = torch.zeros((3, 2), dtype=torch.float64)
    return [
        Case("q is the prior itself (mu = 0, logvar = 0), 3 rows", (zeros, zeros),
             hint="KL(p || p) = 0: return one value per row, shape (n,), and check that every term "
                  "cancels when mu = 0 and logvar = 0"),
        Case("unit variance, mean 2", (torch.full((1, 1), 2.0, dtype=torch.float64), torch.zeros((1, 1), dtype=torch.float64)),
             hint="with variance 1 the KL is mu**2 / 2"),
        Case("variance 4, mean 0", (torch.zeros((1, 1), dtype=torch.float64),
                                    torch.full((1, 1), math.log(4.0), dtype=torch.float64)),
             hint="logvar is the log of the variance: the variance is exp(logvar), not logvar"),
        _kl_case("5 rows, 3 latent dimensions", 5, 3, seed=0,
                 hint="sum over the latent dimensions (dim=1), one value per row: shape (n,)"),
        _kl_case("one row, 10 latent dimensions", 1, 10, seed=1, hidden=True),
        _kl_case("64 rows, 2 latent dimensions", 64, 2, seed=2, hidden=True),
    ]


register(
    "ch04-gaussian-kl",
    reference=_gaussian_kl,
    cases=_kl_cases,
    compare=allclose(rtol=1e-9, atol=1e-12),
    hint="KL = 0.5 * sum_j (exp(logvar_j) + mu_j**2 - 1 - logvar_j), summed over dim=1",
)


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
        _pca_case("50 points in 6-D, 2 components", 50, 6, 7, 2, seed=1),
        _pca_case("all components: exact reconstruction", 30, 4, 3, 4, seed=2,
                  hint="with k = d the projection is the identity, so the output must equal X"),
        _pca_case("40 points in 10-D, 3 components", 40, 10, 6, 3, seed=3, hidden=True),
        _pca_case("100 points in 8-D, 5 components", 100, 8, 1, 5, seed=4, hidden=True),
    ]


register(
    "ch04-pca-reconstruct",
    reference=_pca_reconstruct,
    cases=_pca_cases,
    compare=allclose(rtol=1e-7, atol=1e-8),
    hint="rows of Vt from torch.linalg.svd(X_train - mean) are the principal directions",
)
