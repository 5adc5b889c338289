"""Checkers for chapter 2's code exercises.

``ch02-bias-softmax-backward``: the backward pass of a two-layer network with
bias vectors, a sigmoid hidden layer and a softmax output trained on the mean
cross-entropy. Chapter 2 derives the sigmoid/squared-error case in index
notation ("The deltas, layer by layer"); this one asks the student to carry
the derivation to biases and to softmax with cross-entropy.
"""

from __future__ import annotations

import numpy as np

from ._core import Case, allclose, register

def _backward(X, Y, W0, b0, W1, b1):
    """Gradients of mean_i(-sum_c Y_ic log softmax(Z2)_ic) for Z2 = sigmoid(X W0 + b0) W1 + b1."""
    A1 = 1 / (1 + np.exp(-(X @ W0 + b0)))  # (n, h)
    Z2 = A1 @ W1 + b1  # (n, c)
    Z2 = Z2 - Z2.max(axis=1, keepdims=True)  # softmax is shift-invariant; this avoids overflow
    P = np.exp(Z2) / np.exp(Z2).sum(axis=1, keepdims=True)
    delta2 = (P - Y) / len(X)  # d loss / d Z2 of the *mean* loss
    delta1 = (delta2 @ W1.T) * A1 * (1 - A1)
    return X.T @ delta1, delta1.sum(axis=0), A1.T @ delta2, delta2.sum(axis=0)


def _arrays(rng: np.random.Generator, n: int, d: int, h: int, c: int, scale: float = 1.0):
    X = rng.normal(size=(n, d))
    Y = np.eye(c)[rng.integers(0, c, size=n)]
    W0, b0 = rng.normal(size=(d, h)), rng.normal(size=h)
    W1, b1 = scale * rng.normal(size=(h, c)), scale * rng.normal(size=c)
    return X, Y, W0, b0, W1, b1


def _case(name: str, n: int, d: int, h: int, c: int, seed: int, scale: float = 1.0, hint: str = "") -> Case:
    return Case(name, _arrays(np.random.default_rng(seed), n, d, h, c, scale), hint=hint)


def _cases() -> list[Case]:
    return [
        _case("4 examples, 3 inputs, 5 hidden, 3 classes", 4, 3, 5, 3, seed=0,
              hint="return (dW0, db0, dW1, db1), each with its parameter's shape"),
        _case("8 examples: the loss is the mean over the batch", 8, 2, 4, 2, seed=1,
              hint="the mean over n examples puts a 1/n in delta2 = (P - Y) / n"),
        _case("a single example", 1, 3, 4, 5, seed=2,
              hint="db is delta summed over the batch axis: delta.sum(axis=0), shape (h,) or (c,)"),
        _case("large logits (softmax must not overflow)", 6, 3, 4, 4, seed=3, scale=400.0,
              hint="subtract each row's max logit before exp: softmax does not change"),
    ]


def _hidden(rng: np.random.Generator) -> list[Case]:
    cases = []
    for _ in range(4):
        n, d, h, c = (int(v) for v in rng.integers([1, 1, 1, 2], [20, 8, 10, 11]))
        scale = float(rng.choice([0.1, 1.0, 300.0]))
        cases.append(Case(f"{n} examples, {d} inputs, {h} hidden, {c} classes",
                          _arrays(rng, n, d, h, c, scale)))
    return cases


_close = allclose(rtol=1e-7, atol=1e-10)


def _compare(expected, received) -> bool:
    """Close to the reference, and in float64 (the precision a gradient check needs)."""
    return _close(expected, received) and all(
        getattr(r, "dtype", None) == np.float64 for r in received)


register(
    "ch02-bias-softmax-backward",
    reference=_backward,
    cases=_cases,
    hidden=_hidden,
    compare=_compare,
    hint="delta2 = (softmax(Z2) - Y) / n; delta1 = (delta2 @ W1.T) * A1 * (1 - A1); db = delta.sum(axis=0)",
)
