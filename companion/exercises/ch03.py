"""Checkers for chapter 3's code exercises."""

from __future__ import annotations

import torch
from torch import nn

from companion.diagnostics import deep_mlp, gradient_norms

from ._core import Case, allclose, register


def _batch(n: int, d: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def _norm_cases() -> list[Case]:
    with torch.random.fork_rng():  # seed torch's default init here without touching the caller's random state
        torch.manual_seed(3)
        nested = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Sequential(nn.Linear(5, 5), nn.ReLU()), nn.Linear(5, 3))
    return [
        Case("4-layer sigmoid net", (deep_mlp(4, width=16, seed=0), *_batch(32, 64, 10, 0)),
             hint="one norm per nn.Linear weight, ordered from the input layer to the output layer"),
        Case("20-layer sigmoid net, naive init", (deep_mlp(20, width=16, seed=1), *_batch(64, 64, 10, 1)),
             hint="the first norms are tiny (about 1e-17): compute them in one pass, do not rescale or round"),
        Case("ReLU, He init, residual", (deep_mlp(8, width=16, activation="relu", init="he", residual=True, seed=2),
                                         *_batch(16, 64, 10, 2)),
             hint="find the linear layers with model.modules(), which also looks inside nested blocks"),
        Case("a hand-built stack with a nested block", (nested, *_batch(9, 6, 3, 3)), hidden=True),
        Case("a single linear layer", (deep_mlp(1, in_features=5, out_features=4, seed=4), *_batch(7, 5, 4, 4)),
             hidden=True),
        Case("no linear layers at all", (nn.Sequential(nn.ReLU()), *_batch(3, 4, 2, 5)), raises=ValueError,
             hidden=True, hint="a model without nn.Linear layers should raise ValueError"),
    ]


register(
    "ch03-layer-grad-norms",
    reference=gradient_norms,
    cases=_norm_cases,
    compare=allclose(rtol=1e-4, atol=1e-30),
    hint="loss = F.cross_entropy(model(X), y); differentiate it with respect to each linear layer's weight "
         "and return the Frobenius norms, input layer first",
)


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
        Case("three tensors of different shapes", ([torch.ones(2, 2), torch.full((3,), 2.0), torch.tensor([[-1.0]])], 2.5)),
        Case("all zeros", ([torch.zeros(3), torch.zeros(2, 2)], 1.0), hidden=True,
             hint="a zero gradient has norm 0: return it unchanged, without dividing by zero"),
        Case("norm exactly at the threshold", ([torch.tensor([3.0, 4.0])], 5.0), hidden=True),
        Case("twenty layers' worth", ([torch.randn(8, 8, generator=g) * 100 for _ in range(20)], 5.0), hidden=True),
    ]


register(
    "ch03-clip-global-norm",
    reference=_clip_by_global_norm,
    cases=_clip_cases,
    compare=allclose(rtol=1e-5, atol=1e-7),
    hint="total = sqrt(sum of every squared entry of every tensor); multiply every tensor by min(1, max_norm / total)",
)
