"""Checkers for chapter 12's code exercise (Kohonen's batch map, written out).

torch is imported inside the functions, so that loading this module stays
cheap. Hidden cases are drawn from the grader's generator ``rng``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._core import Case, allclose, register

if TYPE_CHECKING:
    import torch


def _batch_som_step(X: "torch.Tensor", W: "torch.Tensor", rows: int, cols: int, radius: float) -> "torch.Tensor":
    """One step of the batch map: w_k = sum_i h_{k c(i)} x_i / sum_i h_{k c(i)}; (K, d).

    X (n, d), W (K = rows * cols, d), unit k at grid position (k // cols, k % cols),
    h = exp(-||r_k - r_c||^2 / (2 radius^2)), and h = [k == c] at radius 0. A unit
    whose weights sum to 0 keeps its vector.
    """
    import torch

    K = rows * cols
    r = torch.arange(K) // cols
    c = torch.arange(K) % cols
    pos = torch.stack([r, c], 1).to(X.dtype)
    bmu = torch.cdist(X, W).argmin(dim=1)  # (n,)
    g2 = ((pos[bmu][:, None, :] - pos[None, :, :]) ** 2).sum(-1)  # (n, K)
    h = (g2 == 0).to(X.dtype) if radius == 0 else torch.exp(-g2 / (2 * radius**2))
    weight = h.sum(0)  # (K,)
    new = (h.T @ X) / weight.clamp_min(1e-300)[:, None]
    return torch.where(weight[:, None] > 0, new, W)


def _problem(n: int, d: int, rows: int, cols: int, radius: float, seed: int, spread_out: bool = False) -> tuple:
    import torch

    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    W = torch.randn(rows * cols, d, generator=g, dtype=torch.float64)
    if spread_out:  # one unit far from every point: it wins nothing
        W[-1] = 100.0
    return X, W, rows, cols, radius


_LLOYD = ("at radius 0 the batch map is Lloyd's update step: each unit moves to the mean of the points it "
          "wins, and a unit that wins none keeps its vector (no NaN from 0 / 0)")
_KERNEL = ("h_{k,c} = exp(-||r_k - r_c||^2 / (2 radius^2)) uses the SQUARED grid distance between unit k and the "
           "winner c; unit k sits at (k // cols, k % cols), row by row")
_NORMALIZE = ("divide by sum_i h_{k c(i)}, unit k's total weight, not by the number of points: the new w_k is a "
              "weighted mean of the data, not a sum")


def _cases() -> list[Case]:
    return [
        Case("radius 0: Lloyd's update step", _problem(12, 3, 2, 2, 0.0, seed=0), hint=_LLOYD),
        Case("radius 0, a unit that wins no point keeps its vector", _problem(10, 2, 1, 4, 0.0, 1, spread_out=True),
             hint=_LLOYD),
        Case("a 3 x 3 map, radius 1", _problem(20, 4, 3, 3, 1.0, seed=2), hint=_KERNEL),
        Case("a 2 x 5 map (rows != cols), radius 0.7", _problem(15, 3, 2, 5, 0.7, seed=3), hint=_KERNEL),
        Case("a 1 x 6 line, radius 2", _problem(9, 2, 1, 6, 2.0, seed=4), hint=_KERNEL),
        Case("one point, a 2 x 3 map, radius 1: every unit moves onto it", _problem(1, 3, 2, 3, 1.0, seed=5),
             hint=_NORMALIZE),
    ]


def _hidden(rng: np.random.Generator) -> list[Case]:
    cases = []
    for i in range(4):
        rows, cols = int(rng.integers(1, 6)), int(rng.integers(2, 6))
        radius = 0.0 if i == 0 else float(rng.uniform(0.3, 3.0))
        n, d = int(rng.integers(1, 40)), int(rng.integers(1, 8))
        cases.append(Case(f"drawn case {i + 1}: {rows} x {cols} map, radius {radius:.2f}",
                          _problem(n, d, rows, cols, radius, seed=int(rng.integers(1 << 30)),
                                   spread_out=bool(rng.integers(2)))))
    return cases


register(
    "ch12-batch-som-step",
    reference=_batch_som_step,
    cases=_cases,
    hidden=_hidden,
    compare=allclose(rtol=1e-7, atol=1e-9),
    hint=_NORMALIZE,
)
