"""Many seeds for the price of one, and the summary a claim over seeds needs.

A claim in this book ("A beats B") must hold over seeds, not on one. Small
networks on a CPU spend most of a step in per-call overhead, so k copies of
one network, each with its own seed, trained as one batched model cost
little more than one copy::

    model = stacked_mlp([64, 32, 10], seeds=range(5))   # 5 networks, one model
    history = fit(model, x, y, epochs=20)               # companion.training.fit
    acc = spread(history.final("eval_accuracy"))        # mean, min, max over seeds
    assert acc.min > 0.9

Seed i of a stacked model starts from exactly the weights ``mlp(sizes,
seed=seeds[i])`` gives, and ``fit`` shuffles its data with ``seeds[i]``, so
seed i trains exactly as it would alone (a test checks this).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from companion._checks import check_choice, check_positive
from companion.training import ACTIVATIONS, activation_module, mlp


class StackedLinear(nn.Module):
    """k linear layers of one shape, one per seed: y[i] = x[i] @ weight[i] + bias[i].

    ``weight`` (k, fan_in, fan_out), ``bias`` (k, 1, fan_out); x (k, n, fan_in)
    or (n, fan_in) (shared by the seeds) -> (k, n, fan_out). The building
    block for batching a chapter's own networks over seeds.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.n_seeds = weight.shape[0]

    @classmethod
    def from_linears(cls, layers: Sequence[nn.Linear]) -> "StackedLinear":
        """Stack k ``nn.Linear`` layers of one shape (their current weights are copied)."""
        weight = torch.stack([layer.weight.detach().T for layer in layers])
        bias = torch.stack([layer.bias.detach()[None, :] for layer in layers])
        return cls(weight.clone(), bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.expand(self.n_seeds, *x.shape)
        return torch.baddbmm(self.bias, x, self.weight)  # (k, n, fan_out)


class StackedMLP(nn.Module):
    """k MLPs of one shape, one per seed, evaluated as batched matrix products.

    ``layers[l]`` is a :class:`StackedLinear`. ``forward`` takes x of shape
    (n, n_inputs) (the same data for every seed) or (k, n, n_inputs) (each
    seed its own batch) and returns (k, n, n_outputs).
    """

    def __init__(self, sizes: Sequence[int], seeds: Sequence[int], activation: str = "relu",
                 init: str = "torch", output: str = "identity") -> None:
        super().__init__()
        self.sizes, self.seeds = list(sizes), [int(s) for s in seeds]
        self.n_seeds = len(self.seeds)
        self.activation, self.init, self.output = activation, init, output
        nets = [mlp(sizes, activation, init, seed=s, output=output) for s in self.seeds]
        per_net = [[m for m in net if isinstance(m, nn.Linear)] for net in nets]
        self.layers = nn.ModuleList(StackedLinear.from_linears([linears[l] for linears in per_net])
                                    for l in range(len(self.sizes) - 1))
        self.hidden_fn = activation_module(activation)
        self.output_fn = activation_module(output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:  # the same batch for every seed
            x = x.expand(self.n_seeds, *x.shape)
        if x.ndim != 3 or x.shape[0] != self.n_seeds or x.shape[-1] != self.sizes[0]:
            raise ValueError(f"StackedMLP: expected x of shape (n, {self.sizes[0]}) or "
                             f"({self.n_seeds}, n, {self.sizes[0]}), got {tuple(x.shape)}")
        h = x
        for l, layer in enumerate(self.layers):
            h = layer(h)
            h = self.output_fn(h) if l == len(self.layers) - 1 else self.hidden_fn(h)
        return h

    def unstack(self, i: int) -> nn.Sequential:
        """Seed i as a plain ``nn.Sequential`` (a copy of its current weights)."""
        net = mlp(self.sizes, self.activation, self.init, seed=self.seeds[i], output=self.output)
        linears = [m for m in net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer, stacked in zip(linears, self.layers):
                layer.weight.copy_(stacked.weight[i].T)
                layer.bias.copy_(stacked.bias[i, 0])
        return net


def stacked_mlp(sizes: Sequence[int], seeds: Iterable[int], activation: str = "relu",
                init: str = "torch", output: str = "identity") -> StackedMLP:
    """k copies of ``mlp(sizes, activation, init)``, one per seed, as one batched model.

    Returns a :class:`StackedMLP` with attributes ``n_seeds`` and ``seeds``
    that ``companion.training.fit`` and ``evaluate`` recognise. Its output
    has shape (k, n, sizes[-1]).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("stacked_mlp: expected at least one seed, got none")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"stacked_mlp: expected distinct seeds, got {seeds}")
    for width in sizes:
        check_positive("stacked_mlp", "every width in sizes", width, integer=True)
    check_choice("stacked_mlp", "activation", activation, ACTIVATIONS)
    return StackedMLP(sizes, seeds, activation, init, output)


@dataclass(frozen=True)
class Spread:
    """A quantity measured over seeds: its values, mean, min and max.

    ``str(spread)`` reads ``0.971 (0.962-0.978)``; ``spread.format("{:.1%}")``
    reads ``97.1% (96.2-97.8%)``. Assert on the aggregate:
    ``assert acc.mean > other.mean and acc.min > 0.9``.
    """

    values: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def min(self) -> float:
        return float(np.min(self.values))

    @property
    def max(self) -> float:
        return float(np.max(self.values))

    @property
    def n(self) -> int:
        return int(self.values.size)

    def format(self, fmt: str = "{:.3g}") -> str:
        """The mean and the range, each formatted with ``fmt``."""
        lo, hi = fmt.format(self.min), fmt.format(self.max)
        if fmt.endswith("%}"):
            lo = lo.rstrip("%")
        return f"{fmt.format(self.mean)} ({lo}-{hi})"

    def __str__(self) -> str:
        return self.format()

    def wins(self, other: "Spread | Sequence[float]") -> int:
        """On how many seeds this quantity is larger than ``other`` (paired by seed)."""
        theirs = other.values if isinstance(other, Spread) else np.asarray(other, dtype=float)
        if theirs.shape != self.values.shape:
            raise ValueError(f"Spread.wins: expected {self.values.shape[0]} paired values, got {theirs.shape}")
        return int(np.sum(self.values > theirs))


def spread(values: Any) -> Spread:
    """Summarize per-seed values (a sequence, array or tensor of shape (k,)) as a :class:`Spread`."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError("spread: expected at least one value, got none")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"spread: expected finite values, got {array}")
    return Spread(array)
