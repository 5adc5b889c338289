"""The Forward-Forward algorithm (Hinton 2022), written out (chapter 7).

A network learns without a backward pass through its layers. Each layer sees
two kinds of input: *positive* data (an image with its correct label embedded
in its first pixels) and *negative* data (the same image with a wrong label).
Each layer has its own objective on its *goodness*, the sum of its squared
activities: above a threshold ``theta`` for positive data, below it for
negative data. A layer's input is detached from the previous layer, so no
gradient crosses a layer boundary, and it is length-normalized, so a layer
cannot just read off the previous layer's goodness.

Shapes, for a batch of n examples, ``num_classes`` = C labels and layer sizes
``sizes = [d0, d1, ..., dL]``:

* images ``x``: (n, p) flattened pixels; labels: int64 (n,)
* label-embedded input: (n, C + p) (prepended) or (n, p) (first C pixels replaced)
* layer l: ``W`` (d_{l+1}, d_l), ``b`` (d_{l+1},); activity (n, d_{l+1}); goodness (n,)
* ``goodness_per_label``: (n, C, L), the goodness of every layer for every candidate label

Also here: the one-pass linear read-out, a backprop network of the same
architecture for comparison, and a meter of the bytes autograd saves for a
backward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from companion.measure import saved_tensor_bytes  # noqa: F401  (chapter 7 still calls ff.saved_tensor_bytes)
import torch.nn.functional as F
from torch import Tensor

# --------------------------------------------------------------------------- checks


def _check_images(x: object, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"expected {name} to be a float tensor of shape (n, pixels), got {x.dtype} of shape {tuple(x.shape)}")
    return x


def _check_labels(labels: object, n: int, num_classes: int, name: str = "labels") -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(labels).__name__}")
    if labels.shape != (n,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"expected {name} to be an int64 tensor of shape ({n},), got {labels.dtype} of shape {tuple(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"expected {name} in 0..{num_classes - 1}, got values from {int(labels.min())} to {int(labels.max())}")
    return labels.long()


def _check_num_classes(num_classes: object) -> int:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"expected num_classes to be an int >= 2, got {num_classes!r}")
    return num_classes


# --------------------------------------------------------------------------- data: positive and negative


def embed_label(x: Tensor, labels: Tensor, num_classes: int = 10, replace: bool = False, value: float = 1.0) -> Tensor:
    """Put a one-hot label in the first ``num_classes`` pixels of each image.

    Args:
        x: (n, p) images, flattened.
        labels: int64 (n,), each in 0..num_classes-1.
        replace: overwrite the first ``num_classes`` pixels, as the paper does
            on MNIST (whose first row is blank border); otherwise prepend them.
        value: the "on" pixel of the one-hot code.

    Returns:
        (n, num_classes + p), or (n, p) with ``replace``.
    """
    x = _check_images(x)
    num_classes = _check_num_classes(num_classes)
    labels = _check_labels(labels, x.shape[0], num_classes)
    if replace and x.shape[1] <= num_classes:
        raise ValueError(f"expected more than {num_classes} pixels to replace the first {num_classes}, got {x.shape[1]}")
    one_hot = F.one_hot(labels, num_classes).to(x.dtype) * value
    return torch.cat([one_hot, x[:, num_classes:] if replace else x], dim=1)


def neutral_label(x: Tensor, num_classes: int = 10, replace: bool = False) -> Tensor:
    """Embed the "neutral" label, 1/num_classes in every label pixel (for the one-pass read-out).

    (n, p) -> (n, num_classes + p), or (n, p) with ``replace``.
    """
    x = _check_images(x)
    num_classes = _check_num_classes(num_classes)
    code = torch.full((x.shape[0], num_classes), 1.0 / num_classes, dtype=x.dtype)
    return torch.cat([code, x[:, num_classes:] if replace else x], dim=1)


def wrong_labels(labels: Tensor, num_classes: int = 10, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random label different from each true label: int64 (n,) -> int64 (n,).

    Adding a random offset in 1..num_classes-1 modulo num_classes never gives
    back the true label and gives each of the other labels with equal chance.
    """
    num_classes = _check_num_classes(num_classes)
    if not isinstance(labels, Tensor) or labels.ndim != 1:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"expected labels to be an int64 tensor of shape (n,), got {shape}")
    labels = _check_labels(labels, labels.shape[0], num_classes)
    offset = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + offset) % num_classes


# --------------------------------------------------------------------------- goodness and the local loss


def normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale each row to unit length: (n, d) -> (n, d). Only the direction goes on to the next layer."""
    return x / (x.norm(dim=1, keepdim=True) + eps)


def goodness(h: Tensor) -> Tensor:
    """Sum of squared activities of each row: (n, d) -> (n,)."""
    return h.pow(2).sum(dim=1)


def logistic_loss(g_pos: Tensor, g_neg: Tensor, theta: float) -> Tensor:
    """The paper's objective, written literally: p(positive) = sigmoid(goodness - theta).

    Minus the mean log-likelihood of calling positives positive and negatives
    negative, ``-log p(g_pos) - log(1 - p(g_neg))``, averaged over the 2n
    examples. (n,), (n,) -> scalar. Numerically fragile: once
    ``sigmoid`` rounds to exactly 0 or 1 it returns inf. Use ``softplus_loss``.
    """
    p_pos, p_neg = torch.sigmoid(g_pos - theta), torch.sigmoid(g_neg - theta)
    return -(torch.log(p_pos).sum() + torch.log(1 - p_neg).sum()) / (g_pos.numel() + g_neg.numel())


def softplus_loss(g_pos: Tensor, g_neg: Tensor, theta: float) -> Tensor:
    """The same objective in the form most reimplementations use.

    ``softplus(theta - g_pos)`` and ``softplus(g_neg - theta)``, averaged over
    the 2n examples. Since ``-log sigmoid(z) = softplus(-z)`` and
    ``-log(1 - sigmoid(z)) = softplus(z)`` this equals ``logistic_loss``, but
    never overflows. (n,), (n,) -> scalar.
    """
    return torch.cat([F.softplus(theta - g_pos), F.softplus(g_neg - theta)]).mean()


# --------------------------------------------------------------------------- a layer, a network


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


class FFLayer(torch.nn.Module):
    """One Forward-Forward layer: ``relu(normalize(x) @ W.T + b)`` with its own loss and optimizer.

    Args:
        in_features, out_features: d_in and d_out.
        theta: the goodness threshold.
        lr: the learning rate of the layer's own Adam optimizer.
        generator: draws the initial weights, uniform in +-1/sqrt(d_in)
            (PyTorch's default for ``nn.Linear``).
    """

    def __init__(self, in_features: int, out_features: int, theta: float = 10.0, lr: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, value in [("in_features", in_features), ("out_features", out_features)]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"FFLayer: expected {name} to be a positive int, got {value!r}")
        generator = generator or torch.Generator().manual_seed(0)
        bound = 1 / math.sqrt(in_features)
        self.weight = torch.nn.Parameter(_uniform((out_features, in_features), bound, generator))
        self.bias = torch.nn.Parameter(_uniform((out_features,), bound, generator))
        self.theta = float(theta)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr, fused=True)

    def forward(self, x: Tensor) -> Tensor:
        """(n, d_in) -> (n, d_out). The input is detached: no gradient flows back out of this layer."""
        if x.ndim != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"FFLayer: expected x of shape (n, {self.weight.shape[1]}), got {tuple(x.shape)}")
        return F.relu(F.linear(normalize(x.detach()), self.weight, self.bias))

    def loss(self, h_pos: Tensor, h_neg: Tensor) -> Tensor:
        """The layer's local objective on its activities for positive (n, d_out) and negative (m, d_out) data."""
        return softplus_loss(goodness(h_pos), goodness(h_neg), self.theta)

    def train_step(self, x_pos: Tensor, x_neg: Tensor) -> tuple[Tensor, Tensor, float]:
        """One update of this layer alone, on positive (n, d_in) and negative (n, d_in) inputs.

        Returns the layer's outputs for both (detached, (n, d_out) each: the
        next layer's inputs) and the loss before the update.
        """
        h = self(torch.cat([x_pos, x_neg]))
        h_pos, h_neg = h[: len(x_pos)], h[len(x_pos):]
        loss = self.loss(h_pos, h_neg)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return h_pos.detach(), h_neg.detach(), float(loss.detach())


class FFNet(torch.nn.Module):
    """A stack of ``FFLayer``s. ``sizes = [d0, d1, ..., dL]``: d0 is the label-embedded input width."""

    def __init__(self, sizes: Sequence[int], theta: float = 10.0, lr: float = 0.01, seed: int = 0) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"FFNet: expected at least two sizes (input and one layer), got {list(sizes)}")
        generator = torch.Generator().manual_seed(seed)
        self.layers = torch.nn.ModuleList(FFLayer(a, b, theta, lr, generator) for a, b in zip(sizes[:-1], sizes[1:]))

    @property
    def in_features(self) -> int:
        return self.layers[0].weight.shape[1]

    @torch.no_grad()
    def activities(self, x: Tensor) -> list[Tensor]:
        """Every layer's activity for input (n, d0): a list of L tensors (n, d_l)."""
        out = []
        for layer in self.layers:
            x = layer(x)
            out.append(x)
        return out

    @torch.no_grad()
    def goodness_per_label(self, x: Tensor, num_classes: int = 10, replace: bool = False) -> Tensor:
        """Run images (n, p) once with each label: the goodness of every layer, (n, num_classes, L)."""
        x = _check_images(x)
        table = torch.empty(x.shape[0], num_classes, len(self.layers))
        for c in range(num_classes):
            embedded = embed_label(x, torch.full((x.shape[0],), c, dtype=torch.long), num_classes, replace)
            self._check_width(embedded)
            for l, h in enumerate(self.activities(embedded)):
                table[:, c, l] = goodness(h)
        return table

    def _check_width(self, embedded: Tensor) -> None:
        if embedded.shape[1] != self.in_features:
            raise ValueError(f"FFNet: expected label-embedded inputs of width {self.in_features}, got {embedded.shape[1]}")


# --------------------------------------------------------------------------- training and prediction


@dataclass
class FFHistory:
    """Per-epoch means over the training batches; each list holds one (L,) tensor per epoch."""

    g_pos: list[Tensor] = field(default_factory=list)
    g_neg: list[Tensor] = field(default_factory=list)
    loss: list[Tensor] = field(default_factory=list)

    def stacked(self, name: str) -> Tensor:
        """(epochs, L)."""
        return torch.stack(getattr(self, name))


def train_ff(net: FFNet, X: Tensor, y: Tensor, epochs: int, batch_size: int = 50, num_classes: int = 10,
             replace: bool = False, seed: int = 0, progress: Callable | None = None) -> FFHistory:
    """Train every layer of ``net`` at once, each on its own loss, on images X (n, p) with labels y (n,).

    Each batch is shown twice, as positive data (true labels) and negative
    data (a fresh random wrong label per image); the batch runs up the stack
    and each layer takes one step of its own optimizer on the detached output
    of the layer below. Only one layer's autograd graph exists at a time.

    Args:
        progress: optional wrapper of the epoch iterator (e.g. ``tqdm.auto.tqdm``).
    """
    X = _check_images(X, "X")
    y = _check_labels(y, X.shape[0], num_classes, "y")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"train_ff: expected epochs to be a positive int, got {epochs!r}")
    net._check_width(embed_label(X[:1], y[:1], num_classes, replace))
    generator = torch.Generator().manual_seed(seed)
    history = FFHistory()
    epoch_iter = progress(range(epochs)) if progress else range(epochs)
    n, L = X.shape[0], len(net.layers)
    for _ in epoch_iter:
        sums = torch.zeros(3, L)
        order = torch.randperm(n, generator=generator)
        batches = 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            x_pos = embed_label(X[idx], y[idx], num_classes, replace)
            x_neg = embed_label(X[idx], wrong_labels(y[idx], num_classes, generator), num_classes, replace)
            for l, layer in enumerate(net.layers):
                x_pos, x_neg, loss = layer.train_step(x_pos, x_neg)
                sums[0, l] += goodness(x_pos).mean()
                sums[1, l] += goodness(x_neg).mean()
                sums[2, l] += loss
            batches += 1
        history.g_pos.append(sums[0] / batches)
        history.g_neg.append(sums[1] / batches)
        history.loss.append(sums[2] / batches)
    return history


def predict(net: FFNet, X: Tensor, num_classes: int = 10, skip_first: bool = False, replace: bool = False) -> Tensor:
    """The label whose embedding gives the highest goodness, accumulated over layers: (n, p) -> int64 (n,).

    ``skip_first`` leaves the first layer out of the sum, as the paper does
    for deeper networks. Costs ``num_classes`` forward passes.
    """
    table = net.goodness_per_label(X, num_classes, replace)
    if skip_first:
        if table.shape[2] < 2:
            raise ValueError("predict: skip_first needs at least two layers")
        table = table[:, :, 1:]
    return table.sum(dim=2).argmax(dim=1)


# --------------------------------------------------------------------------- the one-pass linear read-out


@torch.no_grad()
def readout_features(net: FFNet, X: Tensor, num_classes: int = 10, skip_first: bool = False, replace: bool = False) -> Tensor:
    """The normalized activities of the layers for the neutral label, concatenated: (n, p) -> (n, sum d_l)."""
    acts = net.activities(neutral_label(_check_images(X), num_classes, replace))
    if skip_first:
        acts = acts[1:]
    return torch.cat([normalize(a) for a in acts], dim=1)


def fit_linear_readout(features: Tensor, y: Tensor, num_classes: int = 10, steps: int = 300, lr: float = 0.05,
                       seed: int = 0) -> torch.nn.Linear:
    """A softmax classifier on fixed features (n, k), full batch with Adam. Nothing flows into the net."""
    features = _check_images(features, "features").detach()
    y = _check_labels(y, features.shape[0], num_classes, "y")
    generator = torch.Generator().manual_seed(seed)
    readout = torch.nn.Linear(features.shape[1], num_classes)
    with torch.no_grad():
        bound = 1 / math.sqrt(features.shape[1])
        readout.weight.copy_(_uniform(tuple(readout.weight.shape), bound, generator))
        readout.bias.zero_()
    optimizer = torch.optim.Adam(readout.parameters(), lr=lr, fused=True)
    for _ in range(steps):
        loss = F.cross_entropy(readout(features), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return readout


# --------------------------------------------------------------------------- backprop on the same architecture


def backprop_net(sizes: Sequence[int], num_classes: int = 10, seed: int = 0) -> torch.nn.Sequential:
    """Linear-ReLU layers of widths ``sizes`` and a linear read-out to ``num_classes`` logits, seeded."""
    if len(sizes) < 2:
        raise ValueError(f"backprop_net: expected at least two sizes, got {list(sizes)}")
    generator = torch.Generator().manual_seed(seed)
    modules: list[torch.nn.Module] = []
    widths = [*sizes, num_classes]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        linear = torch.nn.Linear(a, b)
        with torch.no_grad():
            linear.weight.copy_(_uniform((b, a), 1 / math.sqrt(a), generator))
            linear.bias.copy_(_uniform((b,), 1 / math.sqrt(a), generator))
        modules.append(linear)
        if i < len(widths) - 2:
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules)


def train_backprop(model: torch.nn.Module, X: Tensor, y: Tensor, epochs: int, batch_size: int = 50, lr: float = 0.01,
                   num_classes: int = 10, seed: int = 0, progress: Callable | None = None) -> list[float]:
    """Cross-entropy and Adam, end to end, same batches as ``train_ff``. Returns the mean loss per epoch."""
    X = _check_images(X, "X")
    y = _check_labels(y, X.shape[0], num_classes, "y")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"train_backprop: expected epochs to be a positive int, got {epochs!r}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    losses = []
    epoch_iter = progress(range(epochs)) if progress else range(epochs)
    for _ in epoch_iter:
        order = torch.randperm(X.shape[0], generator=generator)
        total, batches = 0.0, 0
        for start in range(0, X.shape[0], batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
        losses.append(total / batches)
    return losses
