"""Checkers for chapter 2's code exercises."""

from __future__ import annotations

import numpy as np

from ._core import Case, allclose, register


def _xor_backward(X, y, W0, W1):
    A1 = 1 / (1 + np.exp(-(X @ W0)))
    A2 = 1 / (1 + np.exp(-(A1 @ W1)))
    delta2 = (A2 - y) * A2 * (1 - A2)
    delta1 = (delta2 @ W1.T) * A1 * (1 - A1)
    return X.T @ delta1, A1.T @ delta2


def _case(name: str, n: int, d: int, h: int, seed: int, **extra) -> Case:
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.integers(0, 2, size=(n, d - 1)).astype(float), np.ones((n, 1))])
    y = rng.integers(0, 2, size=(n, 1)).astype(float)
    W0, W1 = rng.uniform(-1, 1, size=(d, h)), rng.uniform(-1, 1, size=(h, 1))
    return Case(name, (X, y, W0, W1), **extra)


def _cases() -> list[Case]:
    return [
        _case("XOR, 4 hidden units", 4, 3, 4, seed=0,
              hint="return (dW0, dW1) in that order, with the shapes of W0 and W1"),
        _case("XOR, 2 hidden units", 4, 3, 2, seed=1),
        _case("8 examples, 6 hidden units", 8, 3, 6, seed=2,
              hint="sum over the batch with a matrix product (X.T @ delta1); do not average"),
        _case("a single example", 1, 3, 4, seed=3, hidden=True),
        _case("5 inputs, 16 examples, 3 hidden units", 16, 5, 3, seed=4, hidden=True),
    ]


register(
    "ch02-xor-backward",
    reference=_xor_backward,
    cases=_cases,
    compare=allclose(rtol=1e-7, atol=1e-10),
    hint="delta2 = (A2 - y) * A2 * (1 - A2); delta1 = (delta2 @ W1.T) * A1 * (1 - A1)",
)
