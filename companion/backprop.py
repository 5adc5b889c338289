"""A multilayer perceptron in numpy with backprop written out (chapter 2).

Shapes, for a batch of n examples and layer sizes ``sizes = [d0, d1, ..., dL]``:

* ``weights[l]`` has shape (d_l, d_{l+1}); ``biases[l]`` has shape (d_{l+1},)
* ``cache.activations[l]`` has shape (n, d_l); entry 0 is the input X
* the loss is the classic half sum of squared errors, 0.5 * sum((a_L - y)**2)

The backward pass is the chain rule applied layer by layer::

    delta_L = (a_L - y) * f'(a_L)                 # dLoss/dz_L, shape (n, d_L)
    delta_l = (delta_{l+1} @ W_l.T) * f'(a_l)     # dLoss/dz_l, shape (n, d_l)
    dW_l    = a_l.T @ delta_{l+1}                 # shape (d_l, d_{l+1})

where each f' is computed from the activation a = f(z) that the forward pass
cached (sigmoid: a(1 - a), tanh: 1 - a**2, relu: 1 if a > 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.special import expit


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
    if name not in ACTIVATIONS:
        raise ValueError(f"MLP: unknown {role} {name!r}; expected one of {sorted(ACTIVATIONS)}")


@dataclass
class Cache:
    """What the forward pass keeps for the backward pass.

    ``activations[0]`` is the input, ``activations[-1]`` the output.
    """

    activations: list[np.ndarray] = field(default_factory=list)


class MLP:
    """A fully connected network trained by hand-written backprop.

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
        if len(sizes) < 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in sizes):
            raise ValueError(f"MLP: expected at least two positive integer layer sizes, got {sizes}")
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
        """(n, sizes[0]) -> (n, sizes[-1]); caches every layer's activation."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"MLP.forward: expected X of shape (n, {self.sizes[0]}), got {X.shape}")
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
        """Half the sum of squared errors (the classic loss; its gradient is y_pred - y)."""
        y = self._check_targets(y, np.shape(y_pred))
        return 0.5 * float(np.sum((y_pred - y) ** 2))

    def backward(self, y: np.ndarray) -> list[np.ndarray]:
        """Gradients of the loss for the last ``forward`` batch, aligned with ``params``."""
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
        """Gradient descent in place: p -= lr * grad for every parameter."""
        params = self.params
        if len(grads) != len(params):
            raise ValueError(f"MLP.step: expected {len(params)} gradients ({self.param_names}), got {len(grads)}")
        for p, g in zip(params, grads):
            p -= lr * g

    def train(self, X: np.ndarray, y: np.ndarray, iterations: int, lr: float = 1.0) -> np.ndarray:
        """Full-batch gradient descent.

        Returns the mean absolute error before each iteration's update, shape (iterations,).
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"MLP.train: expected X of shape (n, {self.sizes[0]}), got {X.shape}")
        y = self._check_targets(y, (len(X), self.sizes[-1]))
        if iterations < 0:
            raise ValueError(f"MLP.train: expected iterations >= 0, got {iterations}")
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
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"MLP: expected numeric targets y, got {type(y).__name__}") from err
        if y.shape != tuple(shape):
            raise ValueError(f"MLP: expected targets y of shape {tuple(shape)}, got {y.shape}")
        return y
