"""Deep MLPs and what flows through them, layer by layer (chapter 3).

* ``deep_mlp`` builds a deep fully connected network on the floor's
  :func:`companion.training.mlp` and its initializations, with optional
  ``residual`` connections, ``norm`` layers and a ``gain`` on every weight;
  ``deep_mlps`` builds the same network under k seeds as one batched model
  that :func:`companion.training.fit` trains in one run.
* ``gradient_norms`` measures, for one batch, the gradient norm of every
  linear layer's weight matrix, input layer first; ``GradientRecorder``
  records them at every training step (pass it to ``fit(on_backward=...)``).
* ``activation_stats`` measures what flows forward: each hidden layer's
  pre-activation spread, its activations' mean and spread, and the fraction
  of its units that are saturated.

Shapes: inputs ``x`` are (n, n_inputs) float tensors, labels ``y`` (n,)
int64 class indices. For a plain model every per-layer quantity is a float64
array of shape (n_layers,); for k seeds it is (k, n_layers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from companion._checks import check_choice, check_positive, check_tensor
from companion.seeds import StackedLinear
from companion.training import INITS, activation_module, generator, init_linear_, mlp

ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "identity")
"""The activations chapter 3 compares (names as in :func:`companion.training.mlp`)."""

NORMS: tuple[str | None, ...] = (None, "batch", "layer")

__all__ = ["ACTIVATIONS", "INITS", "NORMS", "GradientRecorder", "Residual", "activation_stats",
           "deep_mlp", "deep_mlps", "gradient_norms", "linear_layers", "scale_weights_", "stack_seeds"]


class Residual(nn.Module):
    """``x + block(x)``: the block learns a correction to the identity.

    The gradient reaching ``x`` is the block's gradient plus the incoming
    gradient itself, so it cannot vanish through the block. Chapter 3,
    "Deep sigmoid networks do not learn".
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def deep_mlp(depth: int, width: int = 64, activation: str = "sigmoid", init: str = "torch",
             residual: bool = False, norm: str | None = None, n_inputs: int = 64,
             n_outputs: int = 10, gain: float = 1.0, seed: int = 0) -> nn.Sequential:
    """A fully connected network with ``depth`` linear layers, as an ``nn.Sequential``.

    Layout, from input to output (``[norm]`` only when ``norm`` is given)::

        Linear(n_inputs, width)                        # linear layer 1
        [norm], act, Linear(width, width)              # layers 2 .. depth-1, each block
                                                       #   wrapped in Residual if residual
        [norm], act, Linear(width, n_outputs)          # layer depth: the logits

    Without ``norm`` and ``residual`` this is exactly
    ``companion.training.mlp([n_inputs] + [width] * (depth - 1) + [n_outputs],
    activation, init, seed)``, with every weight then multiplied by ``gain``.
    Grouping each activation with the linear layer after it makes every
    residual block ``h + W act(h)``, so the skip path carries the gradient
    around the activation. The weights are drawn layer by layer from
    ``generator(seed)`` with the floor's ``init`` ("torch", PyTorch's default
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases; "xavier",
    "he", "lecun" with zero biases; see ``companion.training.init_linear_``).

    Returns the model, mapping (n, n_inputs) float32 inputs to (n, n_outputs) logits.
    Taught in chapter 3, "Gradient norms, layer by layer".
    """
    check_positive("deep_mlp", "depth", depth, integer=True)
    for name, value in [("width", width), ("n_inputs", n_inputs), ("n_outputs", n_outputs)]:
        check_positive("deep_mlp", name, value, integer=True)
    check_choice("deep_mlp", "activation", activation, ACTIVATIONS)
    check_choice("deep_mlp", "init", init, INITS)
    check_choice("deep_mlp", "norm", norm, NORMS)
    check_positive("deep_mlp", "gain", gain)
    sizes = [n_inputs] + [width] * (depth - 1) + [n_outputs]
    if not residual and norm is None:
        model = mlp(sizes, activation, init, seed=seed)
    else:
        g = generator(seed)

        def block(fan_out: int) -> list[nn.Module]:
            modules: list[nn.Module] = []
            if norm == "batch":
                modules.append(nn.BatchNorm1d(width))
            elif norm == "layer":
                modules.append(nn.LayerNorm(width))
            return modules + [activation_module(activation), init_linear_(skip_init(nn.Linear, width, fan_out), init, g)]

        layers: list[nn.Module] = [init_linear_(skip_init(nn.Linear, n_inputs, width), init, g)]
        for _ in range(depth - 2):
            layers += [Residual(nn.Sequential(*block(width)))] if residual else block(width)
        if depth > 1:
            layers += block(n_outputs)
        model = nn.Sequential(*layers)
    return scale_weights_(model, gain) if gain != 1.0 else model


class _SeedBatchNorm(nn.Module):
    """Batch norm for k seeds at once: each seed's units normalized over its own batch.

    x (k, n, width): the k * width columns of the (n, k * width) view are
    ``nn.BatchNorm1d``'s channels, so every seed keeps its own statistics and
    affine parameters.
    """

    def __init__(self, layers: list[nn.BatchNorm1d]):
        super().__init__()
        self.k, self.width = len(layers), layers[0].num_features
        self.norm = nn.BatchNorm1d(self.k * self.width)
        with torch.no_grad():
            self.norm.weight.copy_(torch.cat([m.weight for m in layers]))
            self.norm.bias.copy_(torch.cat([m.bias for m in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, n, w = x.shape
        return self.norm(x.permute(1, 0, 2).reshape(n, k * w)).reshape(n, k, w).permute(1, 0, 2)


class _SeedLayerNorm(nn.Module):
    """Layer norm for k seeds at once, with per-seed affine parameters (k, 1, width)."""

    def __init__(self, layers: list[nn.LayerNorm]):
        super().__init__()
        self.width, self.eps = layers[0].normalized_shape[0], layers[0].eps
        self.weight = nn.Parameter(torch.stack([m.weight.detach()[None] for m in layers]).clone())
        self.bias = nn.Parameter(torch.stack([m.bias.detach()[None] for m in layers]).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.width,), eps=self.eps) * self.weight + self.bias


class StackedNet(nn.Sequential):
    """k copies of one ``nn.Sequential``, one per seed, as one batched model.

    Input (n, n_inputs) (shared by the seeds) or (k, n, n_inputs); output
    (k, n, n_outputs). Has ``n_seeds`` and ``seeds``, so ``fit`` and
    ``evaluate`` return per-seed metrics. Built by :func:`stack_seeds`.
    """

    n_seeds: int
    seeds: list[int]


def _stack_module(modules: list[nn.Module]) -> nn.Module:
    first = modules[0]
    if isinstance(first, nn.Linear):
        return StackedLinear.from_linears(modules)
    if isinstance(first, nn.BatchNorm1d):
        return _SeedBatchNorm(modules)
    if isinstance(first, nn.LayerNorm):
        return _SeedLayerNorm(modules)
    if isinstance(first, Residual):
        return Residual(_stack_module([m.block for m in modules]))
    if isinstance(first, nn.Sequential):
        return nn.Sequential(*(_stack_module([m[i] for m in modules]) for i in range(len(first))))
    if any(True for _ in first.parameters()):
        raise TypeError(f"stack_seeds: cannot stack a {type(first).__name__} with parameters")
    return first  # an activation: elementwise, the same for every seed


def stack_seeds(nets: list[nn.Sequential], seeds: Iterable[int]) -> StackedNet:
    """Stack k networks of one architecture (their current weights) as one batched model.

    Seed i of the result computes exactly what ``nets[i]`` computes, on
    inputs of shape (k, n, n_inputs). Linear layers become
    ``companion.seeds.StackedLinear``; batch and layer norm keep per-seed
    statistics and parameters; activations are shared.
    """
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(nets) or not nets:
        raise ValueError(f"stack_seeds: expected one seed per network, got {len(seeds)} seeds "
                         f"for {len(nets)} networks")
    model = StackedNet(*(_stack_module([net[i] for net in nets]) for i in range(len(nets[0]))))
    model.n_seeds, model.seeds = len(nets), seeds
    return model


def deep_mlps(depth: int, seeds: Iterable[int] = range(5), **options: Any) -> StackedNet:
    """``deep_mlp(depth, seed=s, **options)`` for every seed in ``seeds``, as one batched model.

    Seed i starts from exactly the weights of ``deep_mlp(depth, seed=seeds[i],
    **options)``; ``companion.training.fit`` trains all of them in one run
    and returns per-seed metrics. Taught in chapter 3 ("Many seeds at once").
    """
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"deep_mlps: expected distinct seeds, got {seeds}")
    return stack_seeds([deep_mlp(depth, seed=s, **options) for s in seeds], seeds)


def linear_layers(model: nn.Module) -> list[nn.Module]:
    """The model's linear layers (``nn.Linear`` or ``StackedLinear``) in registration order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"linear_layers: expected a torch nn.Module, got {type(model).__name__}")
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, StackedLinear))]
    if not layers:
        kinds = sorted({type(m).__name__ for m in model.modules()})
        raise ValueError(f"linear_layers: expected a model with nn.Linear layers, got a "
                         f"{type(model).__name__} with none (its modules: {', '.join(kinds)})")
    return layers


def scale_weights_(model: nn.Module, gain: float) -> nn.Module:
    """Multiply every linear layer's weight (not its bias) by ``gain``, in place; returns the model."""
    check_positive("scale_weights_", "gain", gain)
    with torch.no_grad():
        for layer in linear_layers(model):
            layer.weight.mul_(gain)
    return model


def _n_seeds(model: nn.Module) -> int | None:
    return getattr(model, "n_seeds", None)


def _norms(grads: list[torch.Tensor], k: int | None) -> np.ndarray:
    """float64 norms (squares of 1e-20 underflow in float32): (layers,) or (k, layers)."""
    if k is None:
        return torch.stack([g.double().norm() for g in grads]).numpy()
    return torch.stack([g.double().reshape(k, -1).norm(dim=1) for g in grads], dim=1).numpy()


def _check_batch(fn: str, model: nn.Module, x: Any, y: Any) -> None:
    first = linear_layers(model)[0]
    n_inputs = first.in_features if isinstance(first, nn.Linear) else first.weight.shape[1]
    check_tensor(fn, "x", x, (None, n_inputs), floating=True)
    if x.shape[0] == 0:
        raise ValueError(f"{fn}: expected a non-empty batch, got x of shape {tuple(x.shape)}")
    if y is not None:
        check_tensor(fn, "y", y, (x.shape[0],))
        if y.dtype != torch.int64:
            raise TypeError(f"{fn}: expected y to hold int64 class indices, got {y.dtype}")


def _mean_loss(model: nn.Module, out: torch.Tensor, y: torch.Tensor,
               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    if _n_seeds(model) is None:
        return loss_fn(out, y)
    return sum(loss_fn(o, y) for o in out)  # each seed's gradient is its own mean loss's


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
                   ) -> np.ndarray:
    """The Frobenius norm of dLoss/dW for every linear layer's weight W, for one batch.

    One forward pass on ``x`` (n, n_inputs) and the gradient of
    ``loss_fn(model(x), y)`` (default: mean cross-entropy with int64 labels
    ``y`` (n,); any other ``loss_fn`` gets ``y`` as it is). Norms are taken
    in float64, so gradients of 1e-20 do not underflow. The parameters'
    ``.grad`` are left untouched (``torch.autograd.grad``); a batch-norm
    model in training mode does update its running statistics.

    Returns float64 (n_layers,), input layer first; (k, n_layers) for k seeds.
    Taught in chapter 3, "Gradient norms, layer by layer".
    """
    _check_batch("gradient_norms", model, x, y if loss_fn is F.cross_entropy else None)
    weights = [layer.weight for layer in linear_layers(model)]
    loss = _mean_loss(model, model(x), y, loss_fn)
    return _norms(list(torch.autograd.grad(loss, weights)), _n_seeds(model))


class GradientRecorder:
    """Record every linear layer's gradient norm at every step of ``fit``.

    Pass it as ``fit(..., on_backward=recorder)``: it runs after ``backward``
    and before clipping, so it sees the raw gradient. After training,
    ``recorder.norms`` is (steps, n_layers) (or (steps, k, n_layers)) and
    ``recorder.total`` is the global norm over all parameters, (steps,) or
    (steps, k), the quantity gradient clipping compares with its threshold.
    Taught in chapter 3, "Gradient clipping".
    """

    def __init__(self) -> None:
        self._norms: list[np.ndarray] = []
        self._total: list[np.ndarray] = []

    def __call__(self, model: nn.Module, step: int) -> None:
        k = _n_seeds(model)
        layers = linear_layers(model)
        if any(layer.weight.grad is None for layer in layers):
            raise ValueError("GradientRecorder: a linear layer has no .grad; call it after backward()")
        self._norms.append(_norms([layer.weight.grad for layer in layers], k))
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        self._total.append(np.sqrt((_norms(grads, k) ** 2).sum(axis=-1)))

    @property
    def norms(self) -> np.ndarray:
        return np.array(self._norms)

    @property
    def total(self) -> np.ndarray:
        return np.array(self._total)


_SLOPE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Sigmoid": lambda z, a: a * (1 - a),
    "Tanh": lambda z, a: 1 - a**2,
    "ReLU": lambda z, a: (z > 0).to(z.dtype),
    "Identity": lambda z, a: torch.ones_like(z),
}
_PEAK = {"Sigmoid": 0.25, "Tanh": 1.0, "ReLU": 1.0, "Identity": 1.0}


@torch.no_grad()
def activation_stats(model: nn.Module, x: torch.Tensor, saturation: float = 0.1) -> dict[str, np.ndarray]:
    """What flows forward through every hidden activation, for one batch ``x`` (n, n_inputs).

    Returns a dict of float64 arrays of shape (n_hidden,) (or (k, n_hidden)
    for k seeds), one entry per activation module, input side first:

    * ``"pre_std"``: the standard deviation of the pre-activations z;
    * ``"mean"``, ``"std"``: the mean and standard deviation of the activations f(z);
    * ``"saturated"``: the fraction of units whose slope f'(z) is below
      ``saturation`` times the activation's peak slope (the sigmoid's 1/4,
      tanh's and ReLU's 1): a saturated unit passes almost no gradient back.
      For ReLU it is the fraction of units that output 0.

    The model runs in eval mode (batch norm uses its running statistics) and
    is restored. Taught in chapter 3, "What flows forward".
    """
    _check_batch("activation_stats", model, x, None)
    k = _n_seeds(model)
    rows: list[tuple[float | torch.Tensor, ...]] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        z, a = inputs[0].double(), output.double()
        name = type(module).__name__
        low = (_SLOPE[name](z, a) < saturation * _PEAK[name]).double()
        dims = (1, 2) if k is not None else None

        def stat(t: torch.Tensor, fn: str) -> torch.Tensor:
            if dims is None:
                return getattr(t, fn)()
            return getattr(t.reshape(k, -1), fn)(dim=1)

        rows.append((stat(z, "std"), stat(a, "mean"), stat(a, "std"), stat(low, "mean")))

    handles = [m.register_forward_hook(hook) for m in model.modules() if type(m).__name__ in _SLOPE]
    if not handles:
        raise ValueError("activation_stats: expected a model with Sigmoid, Tanh, ReLU or Identity modules")
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    names = ("pre_std", "mean", "std", "saturated")
    return {name: torch.stack([torch.as_tensor(r[i]) for r in rows], dim=-1).numpy()
            for i, name in enumerate(names)}
