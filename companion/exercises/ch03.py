"""Checkers for chapter 3's code exercises.

Hidden cases are drawn from the grader's generator ``rng`` at grading time.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from companion.diagnostics import deep_mlp, gradient_norms

from ._core import Case, allclose, isclose_scalar, register


def _batch(n: int, d: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


# -- ch03-layer-grad-norms -------------------------------------------------------

def _norm_cases() -> list[Case]:
    return [
        Case("4-layer sigmoid net", (deep_mlp(4, width=16, seed=0), *_batch(32, 64, 10, 0)),
             hint="one norm per nn.Linear weight, ordered from the input layer to the output layer"),
        Case("20-layer sigmoid net, default init", (deep_mlp(20, width=16, seed=1), *_batch(64, 64, 10, 1)),
             hint="the first norms are tiny (about 1e-17): compute them in one pass, do not rescale or round"),
        Case("ReLU, He init, residual",
             (deep_mlp(8, width=16, activation="relu", init="he", residual=True, seed=2), *_batch(16, 64, 10, 2)),
             hint="find the linear layers with model.modules(), which also looks inside nested blocks"),
        Case("no linear layers at all", (nn.Sequential(nn.ReLU()), *_batch(3, 4, 2, 5)), raises=ValueError,
             hint="a model without nn.Linear layers should raise ValueError"),
    ]


def _norm_hidden(rng: np.random.Generator) -> list[Case]:
    seed = int(rng.integers(1 << 30))
    depth, width = int(rng.integers(1, 7)), int(rng.integers(3, 12))
    n_inputs, n_classes = int(rng.integers(2, 9)), int(rng.integers(2, 6))
    activation = str(rng.choice(["sigmoid", "tanh", "relu"]))
    with torch.random.fork_rng():  # a hand-built stack with a nested block, torch's default init
        torch.manual_seed(seed)
        nested = nn.Sequential(nn.Linear(n_inputs, width), nn.Tanh(),
                               nn.Sequential(nn.Linear(width, width), nn.ReLU()), nn.Linear(width, n_classes))
    return [
        Case("a drawn deep_mlp", (deep_mlp(depth, width=width, activation=activation, n_inputs=n_inputs,
                                           n_outputs=n_classes, seed=seed),
                                  *_batch(int(rng.integers(1, 40)), n_inputs, n_classes, seed))),
        Case("a hand-built stack with a nested block", (nested, *_batch(9, n_inputs, n_classes, seed + 1))),
    ]


register(
    "ch03-layer-grad-norms",
    reference=gradient_norms,
    cases=_norm_cases,
    hidden=_norm_hidden,
    compare=allclose(rtol=1e-4, atol=1e-30),
    hint="loss = F.cross_entropy(model(X), y); differentiate it with respect to each linear layer's weight "
         "and return the Frobenius norms, input layer first",
)


# -- ch03-clip-global-norm ---------------------------------------------------------

def _clip_by_global_norm(grads, max_norm):
    total = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    scale = min(1.0, max_norm / total) if total > 0 else 1.0
    return [g * scale for g in grads]


def _clip_cases() -> list[Case]:
    g = torch.Generator().manual_seed(8)
    big = [torch.randn(4, 3, generator=g) * 10, torch.randn(3, generator=g) * 10]
    return [
        Case("a large gradient is scaled down", (big, 1.0),
             hint="the global norm is the square root of the sum of squares over all the tensors together"),
        Case("a small gradient is left alone", ([torch.tensor([0.3, -0.4])], 1.0),
             hint="only rescale when the global norm is above max_norm"),
        Case("three tensors of different shapes",
             ([torch.ones(2, 2), torch.full((3,), 2.0), torch.tensor([[-1.0]])], 2.5),
             hint="one factor for all tensors: clipping each tensor on its own changes the direction"),
        Case("all zeros", ([torch.zeros(3), torch.zeros(2, 2)], 1.0),
             hint="a zero gradient has norm 0: return it unchanged, without dividing by zero"),
    ]


def _clip_hidden(rng: np.random.Generator) -> list[Case]:
    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    scale = float(10 ** rng.uniform(-1, 3))
    layers = [torch.randn(int(rng.integers(1, 9)), int(rng.integers(1, 9)), generator=g) * scale
              for _ in range(int(rng.integers(1, 21)))]
    at = torch.randn(int(rng.integers(2, 6)), generator=g)
    return [
        Case("a drawn list of layers", (layers, float(10 ** rng.uniform(-1, 2)))),
        Case("norm exactly at the threshold", ([at], float(at.norm()))),
    ]


register(
    "ch03-clip-global-norm",
    reference=_clip_by_global_norm,
    cases=_clip_cases,
    hidden=_clip_hidden,
    compare=allclose(rtol=1e-5, atol=1e-7),
    hint="total = sqrt(sum of every squared entry of every tensor); multiply every tensor by min(1, max_norm / total)",
)


# -- ch03-init-std: the variance argument, for an activation the page does not derive --------

INIT_ACTIVATIONS = ("linear", "relu", "leaky_relu")


def _init_std(fan_in: int, fan_out: int, activation: str, negative_slope: float = 0.0,
              mode: str = "fan_in") -> float:
    """The std that keeps the signal's variance: sqrt(2 / ((1 + a^2) n)), n = fan_in or fan_out.

    E[f(z)^2] = (1 + a^2) / 2 Var(z) for a leaky ReLU of slope a on a
    symmetric z (forward), E[f'(z)^2] = (1 + a^2) / 2 (backward); the linear
    case is a = 1 and ReLU a = 0.
    """
    if activation not in INIT_ACTIVATIONS:
        raise ValueError(f"init_std: unknown activation {activation!r}")
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init_std: unknown mode {mode!r}")
    a = {"linear": 1.0, "relu": 0.0, "leaky_relu": negative_slope}[activation]
    n = fan_in if mode == "fan_in" else fan_out
    return math.sqrt(2.0 / ((1.0 + a * a) * n))


def _init_cases() -> list[Case]:
    return [
        Case("ReLU, fan-in 64 (He)", (64, 64, "relu"),
             hint="ReLU zeroes half of a symmetric z, so E[relu(z)^2] = Var(z) / 2: n Var(W) = 2; "
                  "return the std sqrt(Var(W)), not the variance"),
        Case("linear units, fan-in 100", (100, 10, "linear"),
             hint="without an activation the condition is n Var(W) = 1; return the std, not the variance"),
        Case("leaky ReLU, slope 0.2, fan-in 50", (50, 20, "leaky_relu", 0.2),
             hint="derive E[f(z)^2] for the leaky ReLU: the negative half is scaled by the slope, "
                  "so its contribution is scaled by slope**2"),
        Case("ReLU, backward condition, fan-out 32", (128, 32, "relu"), {"mode": "fan_out"},
             hint="backwards, each input's delta sums over the fan_out units it feeds"),
        Case("leaky ReLU with slope 1 is linear", (40, 40, "leaky_relu", 1.0),
             hint="a leaky ReLU with slope 1 is the identity: the same answer as 'linear'"),
    ]


def _init_hidden(rng: np.random.Generator) -> list[Case]:
    cases = []
    for i in range(4):
        fan_in, fan_out = int(rng.integers(1, 2000)), int(rng.integers(1, 2000))
        activation = str(rng.choice(["linear", "relu", "leaky_relu"]))
        slope = float(rng.uniform(0, 0.5))
        mode = str(rng.choice(["fan_in", "fan_out"]))
        cases.append(Case(f"drawn case {i + 1}", (fan_in, fan_out, activation, slope), {"mode": mode}))
    return cases


register(
    "ch03-init-std",
    reference=_init_std,
    cases=_init_cases,
    hidden=_init_hidden,
    compare=isclose_scalar(rtol=1e-9, atol=0.0),
    hint="keep Var(z) constant: n Var(W) E[f(z)^2] / Var(z) = 1 forward, n Var(W) E[f'(z)^2] = 1 backward",
)
