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

Also here: ``StackedFFNet``, k Forward-Forward nets under k seeds (and, if
asked, k learning rates) trained as one batched model; the one-pass linear
read-out; and a backprop network of the same architecture for comparison
(both trained by ``companion.training.fit``). What a step keeps in memory is
measured with ``companion.measure.saved_tensor_bytes``.

Conventions, named (widely copied reimplementations differ on each):

* goodness is the *sum* of squared activities with threshold ``theta`` (10
  here); many reimplementations use the *mean* of squares with theta = 2,
  which is the sum with theta = 2 * width (1000 for 500 units);
* the loss is written with ``F.softplus``; the forms ``-log(sigmoid(z))``
  and ``log(1 + exp(z))`` compute the same function but overflow to inf
  once the goodness is far from theta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from companion.seeds import StackedLinear
from companion.training import fit, generator, mlp, progress as progress_bar

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


@torch.no_grad()
def first_layer_goodness_per_label(net: "FFNet", x: Tensor, num_classes: int = 10, replace: bool = False) -> Tensor:
    """Layer 1's goodness for every candidate label, with one matmul: (n, p) -> (n, num_classes).

    The one-hot code changes the input's length by the same amount for every
    label, so the normalized input for label c is ``[e_c, r] / sqrt(1 + |r|^2)``
    (r: the image without the label pixels) and layer 1's pre-activation is
    ``(W_r r + W[:, c]) / sqrt(1 + |r|^2) + b``: the image part is computed
    once and each label adds one column of W. Equal to
    ``net.goodness_per_label(x, num_classes, replace)[:, :, 0]``.
    """
    x = _check_images(x)
    layer = net.layers[0]
    rest = x[:, num_classes:] if replace else x
    net._check_width(embed_label(x[:1], torch.zeros(1, dtype=torch.long), num_classes, replace))
    scale = 1.0 / (torch.sqrt(rest.pow(2).sum(1, keepdim=True) + 1.0) + 1e-8)           # (n, 1)
    image_part = (rest @ layer.weight[:, num_classes:].T) * scale                        # (n, d1)
    label_part = layer.weight[:, :num_classes].T                                         # (C, d1)
    h = F.relu(image_part[:, None, :] + label_part[None] * scale[:, :, None] + layer.bias)  # (n, C, d1)
    return h.pow(2).sum(-1)


def hard_wrong_labels(net: "FFNet", x: Tensor, labels: Tensor, num_classes: int = 10, replace: bool = False,
                      generator: torch.Generator | None = None) -> Tensor:
    """Wrong labels the network finds plausible: (n, p), int64 (n,) -> int64 (n,).

    Hinton (2022) draws wrong labels from the whole network's predictions, so
    negatives concentrate on the confusions the network still makes (a 4
    that looks like a 9 gets 9 more often than 1). Here, as a cheap stand-in,
    a wrong label c is drawn with probability proportional to
    ``exp(G_1(x, c))``, G_1 the first layer's goodness (see
    :func:`first_layer_goodness_per_label`); the true label has probability
    0. Goodness differences are large, so once the layer has learned this is
    nearly always the most plausible wrong label.
    """
    x = _check_images(x)
    labels = _check_labels(labels, x.shape[0], _check_num_classes(num_classes))
    scores = first_layer_goodness_per_label(net, x, num_classes, replace)
    scores[torch.arange(len(labels)), labels] = -float("inf")
    probs = torch.softmax(scores - scores.max(1, keepdim=True).values, dim=1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


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


def train_ff(net: "FFNet | StackedFFNet", X: Tensor, y: Tensor, epochs: int, batch_size: int = 50,
             num_classes: int = 10, replace: bool = False, seed: int = 0,
             progress: bool = False, negatives: str = "random") -> FFHistory:
    """Train every layer of ``net`` at once, each on its own loss, on images X (n, p) with labels y (n,).

    Each batch is shown twice, as positive data (true labels) and negative
    data (a fresh random wrong label per image); the batch runs up the stack
    and each layer takes one step of its own optimizer on the detached output
    of the layer below. Only one layer's autograd graph exists at a time.
    ``negatives="hard"`` draws each wrong label with :func:`hard_wrong_labels`
    from the network as it is at that batch (a plain :class:`FFNet` only).

    A :class:`StackedFFNet` trains its k members at once; member i draws its
    shuffles and wrong labels from ``generator(net.seeds[i])`` in the same
    order as ``train_ff(FFNet(..., seed=s), ..., seed=s)`` does alone (``seed``
    is then not used), and the history's entries have shape (k, L).

    Taught in chapter 7, "Training on the digits".
    """
    if negatives not in ("random", "hard"):
        raise ValueError(f"train_ff: expected negatives to be 'random' or 'hard', got {negatives!r}")
    if isinstance(net, StackedFFNet):
        if negatives != "random":
            raise ValueError("train_ff: a StackedFFNet trains with random negatives only; "
                             "train each FFNet alone for negatives='hard'")
        return _train_stacked(net, X, y, epochs, batch_size, num_classes, replace, progress)
    X = _check_images(X, "X")
    y = _check_labels(y, X.shape[0], num_classes, "y")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"train_ff: expected epochs to be a positive int, got {epochs!r}")
    net._check_width(embed_label(X[:1], y[:1], num_classes, replace))
    generator = torch.Generator().manual_seed(seed)
    history = FFHistory()
    epoch_iter = progress_bar(range(epochs), progress, desc="Forward-Forward", mininterval=5)
    n, L = X.shape[0], len(net.layers)
    for _ in epoch_iter:
        sums = torch.zeros(3, L)
        order = torch.randperm(n, generator=generator)
        batches = 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            x_pos = embed_label(X[idx], y[idx], num_classes, replace)
            if negatives == "hard":
                wrong = hard_wrong_labels(net, X[idx], y[idx], num_classes, replace, generator)
            else:
                wrong = wrong_labels(y[idx], num_classes, generator)
            x_neg = embed_label(X[idx], wrong, num_classes, replace)
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
    With a :class:`StackedFFNet` the result is (k, n), one row per member.
    """
    table = net.goodness_per_label(X, num_classes, replace)  # (..., n, C, L)
    if skip_first:
        if table.shape[-1] < 2:
            raise ValueError("predict: skip_first needs at least two layers")
        table = table[..., 1:]
    return table.sum(dim=-1).argmax(dim=-1)


# --------------------------------------------------------------------------- the one-pass linear read-out


@torch.no_grad()
def readout_features(net: FFNet, X: Tensor, num_classes: int = 10, skip_first: bool = False, replace: bool = False) -> Tensor:
    """The normalized activities of the layers for the neutral label, concatenated: (n, p) -> (n, sum d_l).

    With a :class:`StackedFFNet`: (k, n, sum d_l).
    """
    acts = net.activities(neutral_label(_check_images(X), num_classes, replace))
    if skip_first:
        acts = acts[1:]
    return torch.cat([a / (a.norm(dim=-1, keepdim=True) + 1e-8) for a in acts], dim=-1)


def fit_linear_readout(features: Tensor, y: Tensor, num_classes: int = 10, steps: int = 300, lr: float = 0.05,
                       seed: int = 0) -> torch.nn.Linear:
    """A softmax classifier on fixed features (n, k): ``steps`` full-batch Adam steps of ``fit``.

    Nothing flows into the network that made the features. Returns the
    ``nn.Linear(k, num_classes)`` (initialized by ``mlp([k, num_classes], seed=seed)``).
    Taught in chapter 7, "A one-pass linear classifier".
    """
    features = _check_images(features, "features").detach()
    y = _check_labels(y, features.shape[0], num_classes, "y")
    readout = mlp([features.shape[1], num_classes], seed=seed)
    fit(readout, features, y, epochs=steps, batch_size=features.shape[0], lr=lr, seed=seed)
    return readout[0]


# --------------------------------------------------------------------------- backprop on the same architecture


def backprop_net(sizes: Sequence[int], num_classes: int = 10, seed: int = 0) -> torch.nn.Sequential:
    """Linear-ReLU layers of widths ``sizes`` and a linear read-out to ``num_classes`` logits:
    ``companion.training.mlp([*sizes, num_classes], seed=seed)``."""
    if len(sizes) < 2:
        raise ValueError(f"backprop_net: expected at least two sizes, got {list(sizes)}")
    return mlp([*sizes, num_classes], seed=seed)


def train_backprop(model: torch.nn.Module, X: Tensor, y: Tensor, epochs: int, batch_size: int = 50, lr: float = 0.001,
                   num_classes: int = 10, seed: int = 0, progress: bool = False) -> list[float]:
    """Cross-entropy and Adam, end to end (``companion.training.fit``). Returns the mean loss per epoch."""
    X = _check_images(X, "X")
    y = _check_labels(y, X.shape[0], num_classes, "y")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"train_backprop: expected epochs to be a positive int, got {epochs!r}")
    history = fit(model, X, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    return [float(v) for v in history["loss"][1:]]


# --------------------------------------------------------------------------- many seeds at once


class StackedFFNet(torch.nn.Module):
    """k ``FFNet(sizes, theta, lr, seed)`` as one batched model, one member per seed.

    Member i starts from exactly the weights ``FFNet(sizes, theta, lr[i],
    seeds[i])`` draws. Each layer holds a :class:`~companion.seeds.StackedLinear`
    (weight (k, d_in, d_out)); the layer's loss is the sum of the members'
    losses, so each member's gradient is what it would be alone, and Adam,
    written out here because it is elementwise, uses each member's own
    learning rate ``lr[i]``. ``lr`` is one number or one per member, so one
    run can also compare learning rates. Activities have shape (k, n, d).

    Taught in chapter 7, "One seed is not a result".
    """

    def __init__(self, sizes: Sequence[int], seeds: Sequence[int], theta: float = 10.0,
                 lr: float | Sequence[float] = 0.01) -> None:
        super().__init__()
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("StackedFFNet: expected at least one seed, got none")
        self.n_seeds = len(self.seeds)
        lrs = [float(lr)] * self.n_seeds if isinstance(lr, (int, float)) else [float(v) for v in lr]
        if len(lrs) != self.n_seeds or min(lrs) <= 0:
            raise ValueError(f"StackedFFNet: expected lr > 0, one number or {self.n_seeds}, got {lr!r}")
        nets = [FFNet(sizes, theta, 0.01, seed=s) for s in self.seeds]
        self.layers = torch.nn.ModuleList()
        for l in range(len(sizes) - 1):
            weight = torch.stack([net.layers[l].weight.detach().T for net in nets])
            bias = torch.stack([net.layers[l].bias.detach()[None] for net in nets])
            self.layers.append(StackedLinear(weight.clone(), bias.clone()))
        self.theta = float(theta)
        self.lr = torch.tensor(lrs).reshape(-1, 1, 1)
        self._adam = [{"m": torch.zeros_like(p), "v": torch.zeros_like(p), "t": 0}
                      for p in self.parameters()]

    @property
    def in_features(self) -> int:
        return self.layers[0].weight.shape[1]

    def layer_forward(self, l: int, x: Tensor) -> Tensor:
        """Layer l: (k, n, d_in) (or (n, d_in), shared) -> (k, n, d_out); the input is detached."""
        x = x.detach()
        return F.relu(self.layers[l](x / (x.norm(dim=-1, keepdim=True) + 1e-8)))

    @torch.no_grad()
    def activities(self, x: Tensor) -> list[Tensor]:
        """Every layer's activity, (k, n, d_l) each, for input (n, d0) or (k, n, d0)."""
        out = []
        for l in range(len(self.layers)):
            x = self.layer_forward(l, x)
            out.append(x)
        return out

    def _adam_step(self, l: int) -> None:
        b1, b2, eps = 0.9, 0.999, 1e-8
        params = list(self.layers[l].parameters())
        offset = sum(len(list(self.layers[j].parameters())) for j in range(l))
        with torch.no_grad():
            for p, state in zip(params, self._adam[offset:offset + len(params)]):
                state["t"] += 1
                state["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                m_hat = state["m"] / (1 - b1 ** state["t"])
                v_hat = state["v"] / (1 - b2 ** state["t"])
                p.sub_(self.lr * m_hat / (v_hat.sqrt() + eps))
                p.grad = None

    def train_step(self, l: int, x_pos: Tensor, x_neg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One local update of layer l for every member: inputs (k, n, d_in) each.

        Returns the detached outputs (k, n, d_out) and the losses before the update, (k,).
        """
        h = self.layer_forward(l, torch.cat([x_pos, x_neg], dim=1))
        n = x_pos.shape[1]
        g = goodness_stacked(h)
        losses = torch.cat([F.softplus(self.theta - g[:, :n]), F.softplus(g[:, n:] - self.theta)], 1)
        per_member = losses.mean(1)
        per_member.sum().backward()
        self._adam_step(l)
        return h[:, :n].detach(), h[:, n:].detach(), per_member.detach()

    @torch.no_grad()
    def goodness_per_label(self, x: Tensor, num_classes: int = 10, replace: bool = False) -> Tensor:
        """The goodness of every layer for every candidate label: (n, p) -> (k, n, num_classes, L)."""
        x = _check_images(x)
        table = torch.empty(self.n_seeds, x.shape[0], num_classes, len(self.layers))
        for c in range(num_classes):
            embedded = embed_label(x, torch.full((x.shape[0],), c, dtype=torch.long), num_classes, replace)
            if embedded.shape[1] != self.in_features:
                raise ValueError(f"StackedFFNet: expected label-embedded inputs of width "
                                 f"{self.in_features}, got {embedded.shape[1]}")
            for l, h in enumerate(self.activities(embedded)):
                table[:, :, c, l] = goodness_stacked(h)
        return table

    def unstack(self, i: int) -> FFNet:
        """Member i as a plain :class:`FFNet` (a copy of its current weights)."""
        sizes = [self.in_features] + [layer.weight.shape[2] for layer in self.layers]
        net = FFNet(sizes, self.theta, float(self.lr[i]), seed=self.seeds[i])
        with torch.no_grad():
            for layer, stacked in zip(net.layers, self.layers):
                layer.weight.copy_(stacked.weight[i].T)
                layer.bias.copy_(stacked.bias[i, 0])
        return net


def goodness_stacked(h: Tensor) -> Tensor:
    """Sum of squares over the last axis: (k, n, d) -> (k, n)."""
    return h.pow(2).sum(dim=-1)


def _train_stacked(net: StackedFFNet, X: Tensor, y: Tensor, epochs: int, batch_size: int,
                   num_classes: int, replace: bool, progress: bool) -> FFHistory:
    X = _check_images(X, "X")
    y = _check_labels(y, X.shape[0], num_classes, "y")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"train_ff: expected epochs to be a positive int, got {epochs!r}")
    width = embed_label(X[:1], y[:1], num_classes, replace).shape[1]
    if width != net.in_features:
        raise ValueError(f"FFNet: expected label-embedded inputs of width {net.in_features}, got {width}")
    generators = [generator(s) for s in net.seeds]
    history = FFHistory()
    n, k, L = X.shape[0], net.n_seeds, len(net.layers)
    for _ in progress_bar(range(epochs), progress, desc="Forward-Forward", mininterval=5):
        sums = torch.zeros(3, k, L)
        orders = [torch.randperm(n, generator=g) for g in generators]
        batches = 0
        for start in range(0, n, batch_size):
            idx = [o[start:start + batch_size] for o in orders]
            wrong = [wrong_labels(y[i], num_classes, g) for i, g in zip(idx, generators)]
            x_pos = torch.stack([embed_label(X[i], y[i], num_classes, replace) for i in idx])
            x_neg = torch.stack([embed_label(X[i], w, num_classes, replace) for i, w in zip(idx, wrong)])
            for l in range(L):
                x_pos, x_neg, loss = net.train_step(l, x_pos, x_neg)
                sums[0, :, l] += goodness_stacked(x_pos).mean(1)
                sums[1, :, l] += goodness_stacked(x_neg).mean(1)
                sums[2, :, l] += loss
            batches += 1
        history.g_pos.append(sums[0] / batches)
        history.g_neg.append(sums[1] / batches)
        history.loss.append(sums[2] / batches)
    return history
