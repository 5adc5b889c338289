"""A multilayer perceptron in numpy with backprop written out (chapter 2).

One naming scheme, the chapter's (chapter 2, "The network"): layer 0 is the
input, ``A_0 = X``; ``W_l`` maps layer l to layer l + 1::

    Z_{l+1} = A_l @ W_l (+ b_l)      A_{l+1} = f(Z_{l+1})      delta_l = dLoss/dZ_l

In code, ``weights[l]`` is ``W_l`` with shape (d_l, d_{l+1}), ``biases[l]`` is
``b_l`` with shape (d_{l+1},), and ``cache.activations[l]`` is ``A_l`` with
shape (n, d_l), for a batch of n examples and ``sizes = [d_0, ..., d_L]``.
The loss is the classic half sum of squared errors, 0.5 * sum((A_L - y)**2).

The backward pass is the chain rule applied layer by layer (chapter 2, "The
deltas, layer by layer")::

    delta_L = (A_L - y) * f'(Z_L)                  # shape (n, d_L)
    delta_l = (delta_{l+1} @ W_l.T) * f'(Z_l)      # shape (n, d_l)
    dW_l    = A_l.T @ delta_{l+1}                  # shape (d_l, d_{l+1})

where each f'(Z) is computed from the activation A = f(Z) that the forward
pass cached (sigmoid: A(1 - A), tanh: 1 - A**2, relu: 1 if A > 0).
:func:`train_seeds` trains the same network under several seeds at once
(chapter 2, "Training").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.special import expit

from companion._checks import check_array, check_choice, check_positive


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)), elementwise.

    scipy's ``expit`` computes exactly this in one call instead of four numpy
    operations (and without overflow warnings): on XOR's tiny arrays the
    training loop's time is mostly per-call overhead, so this matters.
    """
    return expit(z)


# name -> (f(z), f'(z) written in terms of a = f(z))
ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "sigmoid": (_sigmoid, lambda a: a * (1.0 - a)),
    "tanh": (np.tanh, lambda a: 1.0 - a * a),
    "relu": (lambda z: np.maximum(z, 0.0), lambda a: (a > 0).astype(a.dtype)),
    "identity": (lambda z: z, lambda a: np.ones_like(a)),
}


def _check_activation(name: str, role: str) -> None:
    check_choice("MLP", role, name, sorted(ACTIVATIONS))


@dataclass
class Cache:
    """What the forward pass keeps for the backward pass (chapter 2, "The deltas, layer by layer").

    ``activations[0]`` is the input, ``activations[-1]`` the output.
    """

    activations: list[np.ndarray] = field(default_factory=list)


class MLP:
    """A fully connected network trained by hand-written backprop (chapter 2, "Training").

    Args:
        sizes: layer widths from input to output, e.g. ``[3, 4, 1]``.
        activation: for the hidden layers: "sigmoid", "tanh", "relu" or "identity".
        output_activation: for the last layer (default "sigmoid").
        bias: give each layer a bias vector. The classic XOR network has none
            and folds the bias into the input as a column of ones instead.
        seed: weights start uniform in [-1, 1), drawn from ``default_rng(seed)``.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "sigmoid",
        output_activation: str = "sigmoid",
        bias: bool = False,
        seed: int = 0,
    ) -> None:
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"MLP: expected at least two positive integer layer sizes, got {sizes}")
        for size in sizes:
            check_positive("MLP", "every layer size", size, integer=True)
        _check_activation(activation, "activation")
        _check_activation(output_activation, "output_activation")
        self.sizes = [int(s) for s in sizes]
        self.activation = activation
        self.output_activation = output_activation
        rng = np.random.default_rng(seed)
        self.weights = [rng.uniform(-1.0, 1.0, (m, n)) for m, n in zip(self.sizes[:-1], self.sizes[1:])]
        self.biases = [np.zeros(n) for n in self.sizes[1:]] if bias else None
        self.cache = Cache()
        n_layers = len(self.weights)
        self._f = [ACTIVATIONS[activation if l < n_layers - 1 else output_activation] for l in range(n_layers)]

    # -- parameters as one flat list, for gradient checks and optimizers ----
    @property
    def params(self) -> list[np.ndarray]:
        """[W0, b0, W1, b1, ...] (or [W0, W1, ...] without biases), the arrays themselves."""
        if self.biases is None:
            return list(self.weights)
        return [p for pair in zip(self.weights, self.biases) for p in pair]

    @property
    def param_names(self) -> list[str]:
        if self.biases is None:
            return [f"W{l}" for l in range(len(self.weights))]
        return [name for l in range(len(self.weights)) for name in (f"W{l}", f"b{l}")]

    # -- the three steps ----------------------------------------------------
    def forward(self, X: np.ndarray) -> np.ndarray:
        """(n, sizes[0]) -> (n, sizes[-1]); caches every layer's activation A_l (chapter 2, "Forward pass")."""
        X = check_array("MLP.forward", "X", X, shape=(None, self.sizes[0]))
        return self._forward(X)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        a = X
        acts = [a]
        if self.biases is None:
            for W, (f, _) in zip(self.weights, self._f):
                a = f(a @ W)
                acts.append(a)
        else:
            for W, b, (f, _) in zip(self.weights, self.biases, self._f):
                a = f(a @ W + b)
                acts.append(a)
        self.cache.activations = acts
        return a

    def loss(self, y_pred: np.ndarray, y: np.ndarray) -> float:
        """Half the sum of squared errors (chapter 2, "The error"; its gradient is y_pred - y)."""
        y = self._check_targets(y, np.shape(y_pred))
        return 0.5 * float(np.sum((y_pred - y) ** 2))

    def backward(self, y: np.ndarray) -> list[np.ndarray]:
        """Gradients of the loss for the last ``forward`` batch, aligned with ``params``.

        Chapter 2, "The deltas, layer by layer".
        """
        acts = self.cache.activations
        if not acts:
            raise RuntimeError("MLP.backward: call forward(X) first; there are no cached activations")
        return self._backward(self._check_targets(y, acts[-1].shape))

    def _backward(self, y: np.ndarray) -> list[np.ndarray]:
        acts = self.cache.activations
        has_bias = self.biases is not None
        grads: list[np.ndarray] = []  # filled from the last layer down, reversed at the end
        delta = (acts[-1] - y) * self._f[-1][1](acts[-1])  # dLoss/dz of the last layer
        for l in range(len(self.weights) - 1, -1, -1):
            if has_bias:
                grads.append(delta.sum(axis=0))  # db_l
            grads.append(acts[l].T @ delta)  # dW_l
            if l > 0:  # push delta one layer down: chain rule through W_l, then f'
                delta = (delta @ self.weights[l].T) * self._f[l - 1][1](acts[l])
        grads.reverse()
        return grads

    def step(self, grads: Sequence[np.ndarray], lr: float) -> None:
        """Gradient descent in place: p -= lr * grad for every parameter (chapter 2, "The update")."""
        params = self.params
        if len(grads) != len(params):
            raise ValueError(f"MLP.step: expected {len(params)} gradients ({self.param_names}), got {len(grads)}")
        for p, g in zip(params, grads):
            p -= lr * g

    def train(self, X: np.ndarray, y: np.ndarray, iterations: int, lr: float = 1.0) -> np.ndarray:
        """Full-batch gradient descent (chapter 2, "Training").

        Returns the mean absolute error before each iteration's update, shape (iterations,).
        """
        X = check_array("MLP.train", "X", X, shape=(None, self.sizes[0]))
        y = self._check_targets(y, (len(X), self.sizes[-1]))
        check_positive("MLP.train", "iterations", iterations, integer=True, allow_zero=True)
        # The loop is the hot path: inputs were checked once above, and the
        # outputs are stored and reduced to errors in one call afterwards.
        outputs = np.empty((iterations, *y.shape))
        params = self.params
        for i in range(iterations):
            outputs[i] = self._forward(X)
            grads = self._backward(y)
            if lr != 1.0:
                grads = [lr * g for g in grads]
            for p, g in zip(params, grads):
                p -= g
        return np.abs(outputs - y).mean(axis=(1, 2))

    def _check_targets(self, y: object, shape: tuple[int, ...]) -> np.ndarray:
        return check_array("MLP", "targets y", y, shape=shape)


@dataclass
class SeedRun:
    """What :func:`train_seeds` returns: per-seed errors, saved activations, final weights.

    ``errors``: (iterations, k), the mean absolute error before each update;
    ``snapshots``: {iteration: [A_0, ..., A_L]}, each A_l of shape (k, n, d_l);
    ``weights``: [W_0, ..., W_{L-1}], each (k, d_l, d_{l+1}), after training.
    """

    errors: np.ndarray
    snapshots: dict[int, list[np.ndarray]]
    weights: list[np.ndarray]
    activations: list[tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]]

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Every seed's output for ``X`` (n, d_0): shape (k, n, d_L)."""
        X = check_array("SeedRun.forward", "X", X, shape=(None, self.weights[0].shape[1]))
        a = np.broadcast_to(X, (len(self.weights[0]), *X.shape))
        for W, (f, _) in zip(self.weights, self.activations):
            a = f(a @ W)
        return a


def train_seeds(sizes: Sequence[int], seeds: Sequence[int], X: np.ndarray, y: np.ndarray,
                iterations: int, lr: float = 1.0, activation: str = "sigmoid",
                snapshots: Sequence[int] = ()) -> SeedRun:
    """Train ``MLP(sizes, activation, seed=s)`` (no biases) for every seed in one batched loop.

    Chapter 2, "Training". Seed i starts from exactly the weights of
    ``MLP(sizes, activation=activation, seed=seeds[i])`` and takes the same
    full-batch steps; the k copies are stacked, weights (k, d_l, d_{l+1}), so
    one ``np.matmul`` does every seed's layer at once and k seeds cost little
    more than one (the arrays are tiny: per-call overhead dominates).

    Args:
        X: (n, sizes[0]); y: (n, sizes[-1]).
        snapshots: iterations at which to keep every layer's activations.

    Returns:
        a :class:`SeedRun`: errors (iterations, k), the activations saved at
        the iterations in ``snapshots``, and the trained weights.
    """
    nets = [MLP(sizes, activation=activation, seed=int(s)) for s in seeds]
    if not nets:
        raise ValueError("train_seeds: expected at least one seed, got none")
    X = check_array("train_seeds", "X", X, shape=(None, nets[0].sizes[0]))
    y = check_array("train_seeds", "y", y, shape=(len(X), nets[0].sizes[-1]))
    check_positive("train_seeds", "iterations", iterations, integer=True, allow_zero=True)
    check_positive("train_seeds", "lr", lr)
    weights = [np.stack(Ws) for Ws in zip(*(net.weights for net in nets))]  # W_l: (k, d_l, d_{l+1})
    fs = nets[0]._f
    keep = set(int(t) for t in snapshots)
    saved: dict[int, list[np.ndarray]] = {}
    outputs = np.empty((iterations, len(nets), *y.shape))
    for i in range(iterations):
        acts = [np.broadcast_to(X, (len(nets), *X.shape))]
        for W, (f, _) in zip(weights, fs):
            acts.append(f(acts[-1] @ W))
        outputs[i] = acts[-1]
        if i in keep:
            saved[i] = [a.copy() for a in acts]
        delta = (acts[-1] - y) * fs[-1][1](acts[-1])
        for l in range(len(weights) - 1, -1, -1):
            grad = acts[l].transpose(0, 2, 1) @ delta
            if l > 0:
                delta = (delta @ weights[l].transpose(0, 2, 1)) * fs[l - 1][1](acts[l])
            weights[l] -= lr * grad
    return SeedRun(np.abs(outputs - y).mean(axis=(2, 3)), saved, weights, fs)
