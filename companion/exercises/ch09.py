"""Checkers for chapter 9's code exercise (direct feedback alignment, written out)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._core import Case, allclose, register


def _dfa_updates(x: torch.Tensor, y: torch.Tensor, weights: list, biases: list, feedbacks: list) -> list:
    """DFA's weight updates for a tanh network with a linear output and the mean cross-entropy.

    x: (n, d_0); y: (n,) int64; weights[l]: (d_l, d_{l+1}); biases[l]: (d_{l+1},);
    feedbacks[l]: (c, d_{l+1}) for each hidden layer l. Returns [dW_l] with the shapes of weights.
    """
    inputs, a = [x], x
    for w, b in zip(weights[:-1], biases[:-1]):
        a = torch.tanh(a @ w + b)
        inputs.append(a)
    logits = a @ weights[-1] + biases[-1]
    e = (torch.softmax(logits, dim=1) - F.one_hot(y, logits.shape[1]).to(x.dtype)) / len(x)  # dL/dlogits
    deltas = [(e @ d) * (1 - h**2) for d, h in zip(feedbacks, inputs[1:])] + [e]
    return [a_l.T @ d_l for a_l, d_l in zip(inputs, deltas)]


def _problem(n: int, widths: list[int], rng: np.random.Generator, transport: bool = False) -> tuple:
    """A random network and batch; with ``transport`` the one feedback matrix is W_2^T (backprop's)."""
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    c = widths[-1]
    x = torch.randn(n, widths[0], generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)
    weights = [torch.randn(a, b, generator=g, dtype=torch.float64) / a**0.5 for a, b in zip(widths, widths[1:])]
    biases = [0.1 * torch.randn(b, generator=g, dtype=torch.float64) for b in widths[1:]]
    if transport:
        feedbacks = [weights[1].T.clone()]
    else:
        feedbacks = [torch.randn(c, d, generator=g, dtype=torch.float64) / c**0.5 for d in widths[1:-1]]
    return x, y, weights, biases, feedbacks


_SIGN_MEAN_SLOPE = ("check three things: the sign (e = softmax(logits) - onehot(y), and the update is h^T @ delta, "
                    "not minus it); the mean loss over the batch (divide e by n, not a sum); and tanh' = 1 - h**2 "
                    "multiplying e @ D_l")
_DIRECT = ("each hidden layer l gets e @ D_l (its own feedback matrix, shape (c, d_l)) straight from the output "
           "error: not the delta of the layer above, and not backprop's transposed weights W^T")


def _cases() -> list[Case]:
    rng = np.random.default_rng(0)
    return [
        Case("one hidden layer with D_1 = W_2^T: must equal backprop's gradient",
             _problem(6, [5, 7, 3], rng, transport=True), hint=_SIGN_MEAN_SLOPE),
        Case("two hidden layers, random feedback", _problem(8, [4, 6, 5, 3], rng), hint=_DIRECT),
        Case("three hidden layers, a batch of 1", _problem(1, [3, 5, 4, 6, 2], rng), hint=_DIRECT),
        Case("wide input, ten classes, a batch of 20", _problem(20, [12, 9, 10], rng), hint=_SIGN_MEAN_SLOPE),
    ]


def _hidden(rng: np.random.Generator) -> list[Case]:
    cases = []
    for i in range(4):
        depth = int(rng.integers(1, 5))
        widths = [int(rng.integers(2, 12))] + [int(rng.integers(2, 10)) for _ in range(depth)] + [int(rng.integers(2, 8))]
        cases.append(Case(f"drawn network {i + 1}: widths {widths}", _problem(int(rng.integers(1, 16)), widths, rng)))
    return cases


register(
    "ch09-dfa-updates",
    reference=_dfa_updates,
    cases=_cases,
    hidden=_hidden,
    compare=allclose(rtol=1e-7, atol=1e-10),
    hint=_DIRECT,
)
