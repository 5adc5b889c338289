"""Deep MLPs and the size of their gradients, layer by layer (chapter 3).

Three things:

* ``deep_mlp`` builds a fully connected network as an ``nn.Sequential`` with a
  chosen ``depth`` (number of linear layers), ``width``, ``activation``,
  ``init``, ``residual`` connections and ``norm`` layers.
* ``gradient_norms`` computes, for one batch, the gradient norm of every linear
  layer's weight matrix, ordered from input to output, in one call. It works on
  any model whose linear layers are ``nn.Linear`` modules registered in
  input-to-output order (an ``nn.Sequential`` stack, nested or not).
* ``train`` trains such a model with minibatch SGD and records those norms at
  every step, optionally clipping the gradient's global norm.

Shapes: inputs ``X`` are (n, in_features) float tensors, labels ``y`` are (n,)
int64 class indices; gradient norms are float64 numpy arrays of shape
(n_linear_layers,), or (steps, n_linear_layers) when recorded during training.

The initializations draw each weight uniformly from [-b, b] (biases start at 0):

========  ==================================  ======================================
init      bound b                             where it comes from
========  ==================================  ======================================
naive     1 / sqrt(fan_in)                    the "standard" heuristic that Glorot
                                              and Bengio (2010) start from
xavier    sqrt(6 / (fan_in + fan_out))        Glorot and Bengio (2010): keeps the
                                              variance of tanh layers' signals
he        sqrt(6 / fan_in)                    He et al. (2015): twice the variance,
                                              because ReLU zeroes half its inputs
========  ==================================  ======================================

A uniform distribution on [-b, b] has variance b**2 / 3, so xavier's is
2 / (fan_in + fan_out) and he's is 2 / fan_in. ``gain`` multiplies b.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
INITS: tuple[str, ...] = ("naive", "xavier", "he")
NORMS: tuple[str | None, ...] = (None, "batch", "layer")


def _choice(value, accepted, what: str, caller: str) -> None:
    if value not in accepted:
        raise ValueError(f"{caller}: unknown {what} {value!r}; expected one of {list(accepted)}")


def init_bound(init: str, fan_in: int, fan_out: int) -> float:
    """The half-width b of the uniform distribution U[-b, b] that ``init`` draws weights from."""
    _choice(init, INITS, "init", "init_bound")
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"init_bound: expected fan_in, fan_out >= 1, got {fan_in}, {fan_out}")
    if init == "naive":
        return 1.0 / math.sqrt(fan_in)
    if init == "xavier":
        return math.sqrt(6.0 / (fan_in + fan_out))
    return math.sqrt(6.0 / fan_in)


class Residual(nn.Module):
    """``x + block(x)``: the block learns a correction to the identity.

    The gradient reaching ``x`` is the block's gradient plus the incoming
    gradient itself, so it cannot vanish through the block.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def deep_mlp(
    depth: int,
    width: int = 64,
    activation: str = "sigmoid",
    init: str = "naive",
    residual: bool = False,
    norm: str | None = None,
    in_features: int = 64,
    out_features: int = 10,
    gain: float = 1.0,
    seed: int = 0,
) -> nn.Sequential:
    """A fully connected network with ``depth`` linear layers, as an ``nn.Sequential``.

    Layout, from input to output (``[norm]`` only when ``norm`` is given)::

        Linear(in_features, width)                           # linear layer 1
        [norm], act, Linear(width, width)                    # linear layers 2 .. depth-1:
            ... each block wrapped in Residual(...)          #   depth - 2 blocks
                if residual
        [norm], act, Linear(width, out_features)             # linear layer depth: the logits

    Without ``norm`` and ``residual`` this is the plain stack
    ``Linear, act, Linear, act, ..., Linear``. Grouping each activation with
    the linear layer after it makes every block map width to width, so a
    residual block is ``h + Linear(act(h))`` (the "pre-activation" residual
    block), and the skip path carries the gradient around the activation.

    ``depth=1`` is a single linear layer (multinomial logistic regression).

    Args:
        depth: number of linear layers, at least 1.
        width: units in every hidden layer.
        activation: "sigmoid", "tanh" or "relu".
        init: "naive", "xavier" or "he" (see the module docstring); biases start at 0.
        residual: wrap every width-to-width hidden layer as ``x + layer(x)``.
        norm: None, "batch" (``nn.BatchNorm1d``) or "layer" (``nn.LayerNorm``),
            between each hidden linear layer and its activation.
        gain: multiplies the init's bound; above 1 is a "large" init.
        seed: the weights are drawn from ``torch.Generator().manual_seed(seed)``.

    Returns:
        the model, mapping (n, in_features) float32 inputs to (n, out_features) logits.
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"deep_mlp: expected depth to be an int >= 1, got {depth!r}")
    for name, value in [("width", width), ("in_features", in_features), ("out_features", out_features)]:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"deep_mlp: expected {name} to be an int >= 1, got {value!r}")
    _choice(activation, ACTIVATIONS, "activation", "deep_mlp")
    _choice(init, INITS, "init", "deep_mlp")
    _choice(norm, NORMS, "norm", "deep_mlp")
    if not gain > 0:
        raise ValueError(f"deep_mlp: expected gain > 0, got {gain!r}")

    generator = torch.Generator().manual_seed(seed)

    def linear(fan_in: int, fan_out: int) -> nn.Linear:
        layer = nn.Linear(fan_in, fan_out)
        bound = gain * init_bound(init, fan_in, fan_out)
        with torch.no_grad():
            layer.weight.copy_((2 * torch.rand(fan_out, fan_in, generator=generator) - 1) * bound)
            layer.bias.zero_()
        return layer

    def block(fan_out: int) -> list[nn.Module]:
        modules: list[nn.Module] = []
        if norm == "batch":
            modules.append(nn.BatchNorm1d(width))
        elif norm == "layer":
            modules.append(nn.LayerNorm(width))
        return modules + [ACTIVATIONS[activation](), linear(width, fan_out)]

    if depth == 1:
        return nn.Sequential(linear(in_features, out_features))
    layers: list[nn.Module] = [linear(in_features, width)]
    for _ in range(depth - 2):
        layers += [Residual(nn.Sequential(*block(width)))] if residual else block(width)
    layers += block(out_features)
    return nn.Sequential(*layers)


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The model's ``nn.Linear`` modules in registration order (input to output for a stack)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"linear_layers: expected a torch nn.Module, got {type(model).__name__}")
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        kinds = sorted({type(m).__name__ for m in model.modules()})
        raise ValueError(
            f"expected a model with nn.Linear layers, got a {type(model).__name__} with none "
            f"(its modules: {', '.join(kinds)})"
        )
    return layers


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return str(tuple(value.shape))
    package = type(value).__module__.split(".")[0]
    name = type(value).__name__ if package == "builtins" else f"{package} {type(value).__name__}"
    return f"a {name}, not a torch tensor"


def _check_inputs(model: nn.Module, X, caller: str) -> None:
    first = linear_layers(model)[0]
    if not isinstance(X, torch.Tensor) or X.ndim != 2 or X.shape[1] != first.in_features:
        raise ValueError(f"{caller}: expected X, a tensor of shape (n, {first.in_features}), got {_describe(X)}")
    if X.shape[0] == 0:
        raise ValueError(f"{caller}: expected a non-empty batch, got X of shape {tuple(X.shape)}")


def _check_batch(model: nn.Module, X, y, caller: str) -> None:
    """X must fit the model's first linear layer; y must hold one int64 class index per row of X."""
    _check_inputs(model, X, caller)
    if not isinstance(y, torch.Tensor) or y.shape != (X.shape[0],) or y.dtype != torch.int64:
        got = f"{_describe(y)} of dtype {y.dtype}" if isinstance(y, torch.Tensor) else _describe(y)
        raise ValueError(f"{caller}: expected y, an int64 tensor of class indices of shape ({X.shape[0]},), got {got}")


def gradient_norms(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> np.ndarray:
    """The Frobenius norm of dLoss/dW for every linear layer's weight W, for one batch.

    Runs one forward pass on ``X`` (n, in_features) and differentiates
    ``loss_fn(model(X), y)`` (default: mean cross-entropy, ``y`` int64 class
    indices of shape (n,); any other ``loss_fn`` gets ``y`` as it is).
    Norms are computed in float64, so gradients of 1e-20 do not underflow.
    The parameters' ``.grad`` fields are left untouched (it uses
    ``torch.autograd.grad``); a batch-norm model in training mode does update
    its running statistics, as any forward pass would.

    Returns:
        float64 array of shape (n_linear_layers,), ordered from input to output.
    """
    if loss_fn is F.cross_entropy:
        _check_batch(model, X, y, "gradient_norms")
    else:  # a custom loss decides what its targets look like
        _check_inputs(model, X, "gradient_norms")
    weights = [layer.weight for layer in linear_layers(model)]
    loss = loss_fn(model(X), y)
    grads = torch.autograd.grad(loss, weights)
    return torch.stack([g.double().norm() for g in grads]).numpy()  # float64: squares of 1e-20 underflow in float32


def layer_gradient_norms(model: nn.Module) -> np.ndarray:
    """The norms of the ``.grad`` already stored on each linear layer's weight (after ``loss.backward()``).

    For use inside your own training loop. Returns a float64 array of shape
    (n_linear_layers,), ordered from input to output.
    """
    layers = linear_layers(model)
    missing = [i for i, layer in enumerate(layers) if layer.weight.grad is None]
    if missing:
        raise ValueError(f"layer_gradient_norms: linear layers {missing} have no .grad yet; call loss.backward() first")
    return torch.stack([layer.weight.grad.double().norm() for layer in layers]).numpy()


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of the rows of ``X`` (n, in_features) whose arg-max logit is ``y`` (n,); eval mode."""
    _check_batch(model, X, y, "accuracy")
    was_training = model.training
    model.eval()
    try:
        return float((model(X).argmax(dim=1) == y).float().mean())
    finally:
        model.train(was_training)


@dataclass
class History:
    """What ``train`` recorded.

    Attributes:
        loss: (steps,) training loss of each minibatch (NaN after a divergence).
        grad_norms: (steps, n_linear_layers) weight-gradient norms at each step,
            input to output, measured before any clipping.
        test_accuracy: (epochs,) accuracy on the test set after each epoch
            (empty if no test set was given).
        diverged: the loss became inf or NaN, and training stopped there.
    """

    loss: np.ndarray
    grad_norms: np.ndarray
    test_accuracy: np.ndarray
    diverged: bool


def train(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    epochs: int = 10,
    lr: float = 0.1,
    batch_size: int = 64,
    momentum: float = 0.9,
    clip: float | None = None,
    seed: int = 0,
) -> History:
    """Minibatch SGD on cross-entropy, recording every linear layer's gradient norm at every step.

    Args:
        X, y: training inputs (n, in_features) and labels (n,).
        X_test, y_test: if given, accuracy on them is recorded after each epoch.
        epochs: passes over the training set, each in a fresh random order.
        lr, momentum: SGD with momentum, the update of ``torch.optim.SGD``:
            ``v = momentum * v + grad; p -= lr * v``.
        batch_size: examples per step (at most n). Each epoch takes n // batch_size
            full batches; the few examples left over are skipped for that epoch
            (a different few each time), so no step sees a tiny batch.
        clip: if given, rescale the gradient so its global norm (all
            parameters together) is at most ``clip`` before each step, as
            ``torch.nn.utils.clip_grad_norm_`` does.
        seed: seeds the ``torch.Generator`` that shuffles the batches.

    Returns:
        a ``History``. The model is trained in place.
    """
    _check_batch(model, X, y, "train")
    if (X_test is None) != (y_test is None):
        raise ValueError("train: expected both X_test and y_test, or neither")
    if X_test is not None:
        _check_batch(model, X_test, y_test, "train")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"train: expected epochs to be an int >= 1, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"train: expected batch_size to be an int >= 1, got {batch_size!r}")
    if not lr > 0 or not 0 <= momentum < 1:
        raise ValueError(f"train: expected lr > 0 and 0 <= momentum < 1, got lr={lr!r}, momentum={momentum!r}")
    if clip is not None and not clip > 0:
        raise ValueError(f"train: expected clip > 0 or None, got {clip!r}")

    weights = [layer.weight for layer in linear_layers(model)]
    params = [p for p in model.parameters() if p.requires_grad]
    velocity = [torch.zeros_like(p) for p in params]
    weight_slots = [next(i for i, p in enumerate(params) if p is w) for w in weights]
    generator = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    batch_size = min(batch_size, n)
    steps_per_epoch = n // batch_size
    losses = torch.full((epochs * steps_per_epoch,), float("nan"))
    norms = torch.full((epochs * steps_per_epoch, len(weights)), float("nan"), dtype=torch.float64)
    test_accuracy: list[float] = []
    diverged = False
    step = 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)[: steps_per_epoch * batch_size]
        for batch in order.split(batch_size):
            loss = F.cross_entropy(model(X[batch]), y[batch])
            if not torch.isfinite(loss):
                diverged = True
                break
            grads = torch.autograd.grad(loss, params)
            losses[step] = loss.detach()
            norms[step] = torch.stack([grads[i].double().norm() for i in weight_slots])
            if clip is not None:  # rescale all gradients together so their global norm is <= clip
                total = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
                grads = [g * min(1.0, clip / (float(total) + 1e-6)) for g in grads]
            with torch.no_grad():  # for every parameter p: v = momentum * v + g; p -= lr * v
                torch._foreach_mul_(velocity, momentum)  # one call for all parameters, not a Python loop
                torch._foreach_add_(velocity, grads)
                torch._foreach_add_(params, velocity, alpha=-lr)
            step += 1
        if X_test is not None:
            test_accuracy.append(accuracy(model, X_test, y_test))
        if diverged:
            break
    return History(losses.double().numpy(), norms.numpy(), np.array(test_accuracy), diverged)
