"""Learning with a backward signal but without backprop's requirements (chapter 9).

Backprop's hidden-layer delta (chapter 2) is

    delta_l = (delta_{l+1} @ W_{l+1}.T) * f'(Z_l)

and needs three things: the transposed forward weights (weight transport), the
output error carried down through every layer (a backward pass), and every
layer waiting until that pass reaches it (update locking). The rules here keep
a backward signal but drop one requirement each, written out by hand with
plain tensor algebra (no autograd anywhere in a rule):

* ``"bp"``: backprop, ``delta_l = (delta_{l+1} @ W_{l+1}^T) * f'(Z_l)``;
* ``"fa"``: feedback alignment (Lillicrap et al. 2016), a fixed random
  ``B_{l+1}`` where ``W_{l+1}^T`` was: ``delta_l = (delta_{l+1} @ B_{l+1}) * f'(Z_l)``;
* ``"dfa"``: direct feedback alignment (Nokland 2016), the output error sent
  to every hidden layer through its own fixed random matrix:
  ``delta_l = (e @ D_l) * f'(Z_l)``;
* ``"readout"``: hidden layers never learn (``delta_l = 0``): the untrained
  network with a trained read-out, the baseline every rule must beat;
* ``"dni"`` / ``"cdni"``: decoupled neural interfaces (Jaderberg et al. 2017):
  a linear model per hidden layer predicts dL/dh_l from h_l (``"cdni"``: and
  from the label); the layer updates at once with the prediction, and the
  predictor is regressed on the bootstrapped target that arrives later.

Everything is batched over k seeds (``companion.seeds``): a network of k seeds
holds ``weights[l]`` of shape (k, n_l, n_{l+1}) and ``biases[l]`` of shape
(k, 1, n_{l+1}); inputs are (k, n, n_0) (or (n, n_0), shared by the seeds);
every per-seed metric comes back with shape (k,). Hidden units are tanh, the
output is linear, the loss is the mean softmax cross-entropy over the batch.

Also here: the angle between two updates, the update-locking schedule of
backprop and of DNI on one device per layer, and its timing model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from companion._checks import check_choice, check_positive, check_shape, check_tensor
from companion.training import History, generator, make_optimizer, progress_range

RULES = ("bp", "fa", "dfa", "readout", "dni", "cdni")
"""The learning rules :func:`train` knows (see the module docstring)."""

FEEDBACK_SEED_OFFSET = 1_000_003
"""Feedback matrices of seed s are drawn from ``generator(s + FEEDBACK_SEED_OFFSET)``,
a stream independent of the forward weights of seed s."""


# --------------------------------------------------------------------------- the network


@dataclass
class Net:
    """k tanh MLPs of one shape (one per seed), as stacked weight tensors.

    ``weights[l]``: (k, sizes[l], sizes[l + 1]); ``biases[l]``: (k, 1, sizes[l + 1]).
    Seed i starts from exactly the weights of ``companion.training.mlp(sizes,
    "tanh", init, seed=seeds[i])``. Chapter 9, "Feedback alignment on the digits".
    """

    sizes: list[int]
    seeds: list[int]
    weights: list[Tensor]
    biases: list[Tensor]

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def clone(self) -> "Net":
        return Net(list(self.sizes), list(self.seeds), [w.clone() for w in self.weights],
                   [b.clone() for b in self.biases])


def stacked_net(sizes: Sequence[int], seeds: Sequence[int], init: str = "xavier") -> Net:
    """k tanh networks with widths ``sizes`` (input first), seed i from ``seeds[i]``."""
    from companion.seeds import stacked_mlp

    sizes = [int(s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"stacked_net: expected sizes with at least 2 widths, got {sizes}")
    model = stacked_mlp(sizes, seeds, activation="tanh", init=init)
    weights = [layer.weight.detach().clone() for layer in model.layers]
    biases = [layer.bias.detach().clone() for layer in model.layers]
    return Net(sizes, [int(s) for s in seeds], weights, biases)


@dataclass
class Cache:
    """What the forward pass keeps: ``inputs[l]`` is layer l's input A_l, (k, n, sizes[l]);
    ``hidden[l]`` is tanh(Z_{l+1}) for the hidden layers; ``logits``: (k, n, sizes[-1])."""

    inputs: list[Tensor]
    logits: Tensor

    @property
    def hidden(self) -> list[Tensor]:
        return self.inputs[1:]


def _check_x(fn: str, net: Net, x: object) -> Tensor:
    check_tensor(fn, "x", x, floating=True)
    if x.ndim == 2:
        check_shape(fn, "x", x, (None, net.sizes[0]))
        return x.expand(net.n_seeds, *x.shape)
    check_shape(fn, "x", x, (net.n_seeds, None, net.sizes[0]))
    return x


def _check_y(fn: str, net: Net, y: object, n: int) -> Tensor:
    check_tensor(fn, "y", y)
    if y.is_floating_point():
        raise TypeError(f"{fn}: expected y to hold integer class labels, got {y.dtype}")
    if y.ndim == 1:
        check_shape(fn, "y", y, (n,))
        y = y.expand(net.n_seeds, n)
    else:
        check_shape(fn, "y", y, (net.n_seeds, n))
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= net.sizes[-1]):
        raise ValueError(f"{fn}: expected labels in 0..{net.sizes[-1] - 1}, got {int(y.min())}..{int(y.max())}")
    return y


def forward(net: Net, x: Tensor) -> Cache:
    """A_{l+1} = tanh(A_l @ W_l + b_l) for the hidden layers, logits = A_{L-1} @ W_{L-1} + b_{L-1}.

    x: (n, n_0) or (k, n, n_0). Chapter 9, "Weight transport".
    """
    a = _check_x("forward", net, x)
    inputs = [a]
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        z = torch.baddbmm(b, a, w)  # (k, n, n_{l+1})
        if l == net.n_layers - 1:
            return Cache(inputs, z)
        a = torch.tanh(z)
        inputs.append(a)
    raise AssertionError("unreachable")


def output_error(logits: Tensor, y: Tensor) -> Tensor:
    """e = dL/dlogits for the mean cross-entropy: (softmax(logits) - onehot(y)) / n, (k, n, c)."""
    n, c = logits.shape[1], logits.shape[2]
    onehot = torch.nn.functional.one_hot(y, c).to(logits.dtype)
    return (torch.softmax(logits, dim=-1) - onehot) / n


def loss(net: Net, x: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy per seed, (k,)."""
    logits = forward(net, x).logits
    y = _check_y("loss", net, y, logits.shape[1])
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, y[..., None]).squeeze(-1).mean(dim=1)


def accuracy(net: Net, x: Tensor, y: Tensor) -> Tensor:
    """Share of correct predictions per seed, (k,)."""
    logits = forward(net, x).logits
    y = _check_y("accuracy", net, y, logits.shape[1])
    return (logits.argmax(-1) == y).double().mean(dim=1)


# --------------------------------------------------------------------------- feedback and the deltas


def feedback_matrices(net: Net, rule: str, scale: float = 1.0) -> list[Tensor | None]:
    """The fixed random matrices a rule sends the error through (drawn once, never trained).

    ``"fa"``: one per layer above the first, ``B[l]`` (k, sizes[l + 1], sizes[l]) in
    place of ``W[l]^T`` (``B[0]`` is None). ``"dfa"``: one per hidden layer,
    ``D[l]`` (k, sizes[-1], sizes[l + 1]) from the output error to layer l's
    output (the last entry is None: the output layer gets e itself). Entries are
    uniform in +-scale * sqrt(3 / rows), so each column of feedback has the size a
    forward weight of the same fan has. Other rules get a list of None.
    Chapter 9, "Feedback alignment".
    """
    check_choice("feedback_matrices", "rule", rule, RULES)
    check_positive("feedback_matrices", "scale", scale)
    out: list[Tensor | None] = [None] * net.n_layers
    if rule not in ("fa", "dfa"):
        return out
    gens = [generator(s + FEEDBACK_SEED_OFFSET) for s in net.seeds]
    for l in range(net.n_layers):
        if rule == "fa" and l == 0 or rule == "dfa" and l == net.n_layers - 1:
            continue
        rows = net.sizes[l + 1] if rule == "fa" else net.sizes[-1]
        cols = net.sizes[l] if rule == "fa" else net.sizes[l + 1]
        bound = scale * math.sqrt(3.0 / rows)
        draws = [(torch.rand(rows, cols, generator=g, dtype=torch.float64) * 2 - 1) * bound for g in gens]
        out[l] = torch.stack(draws).to(net.weights[0].dtype)
    return out


def deltas(net: Net, cache: Cache, e: Tensor, rule: str, feedback: Sequence[Tensor | None]) -> list[Tensor]:
    """The delta of every layer, bottom first: ``deltas[l]`` is (k, n, sizes[l + 1]).

    ``deltas[-1] = e``; below it, for a hidden layer l with f'(Z) = 1 - A^2 (tanh):

    * bp:  (deltas[l + 1] @ W[l + 1]^T) * f'
    * fa:  (deltas[l + 1] @ B[l + 1])   * f'
    * dfa: (e @ D[l])                   * f'
    * readout: 0

    Chapter 9, "Weight transport" and "Feedback alignment".
    """
    check_choice("deltas", "rule", rule, ("bp", "fa", "dfa", "readout"))
    if rule in ("fa", "dfa"):
        _check_feedback("deltas", net, rule, feedback)
    out: list[Tensor] = [e]
    for l in range(net.n_layers - 2, -1, -1):
        slope = 1 - cache.inputs[l + 1] ** 2  # tanh'(Z) from the stored activation
        if rule == "bp":
            back = out[0] @ net.weights[l + 1].transpose(1, 2)  # weight transport: W^T
        elif rule == "fa":
            back = out[0] @ feedback[l + 1]  # B where W^T was
        elif rule == "dfa":
            back = e @ feedback[l]  # straight from the output error
        else:
            back = torch.zeros_like(slope)
        out.insert(0, back * slope)
    return out


def _check_feedback(fn: str, net: Net, rule: str, feedback: Sequence[Tensor | None]) -> None:
    """Feedback matrices of the shapes :func:`feedback_matrices` gives for ``rule``, or a clear error."""
    k = net.n_seeds
    if rule == "fa":
        shapes = [None] + [(k, net.sizes[l + 1], net.sizes[l]) for l in range(1, net.n_layers)]
    else:
        shapes = [(k, net.sizes[-1], net.sizes[l + 1]) for l in range(net.n_layers - 1)] + [None]
    got = [None if f is None else tuple(getattr(f, "shape", ())) for f in feedback]
    if len(got) != len(shapes) or any(s is not None and g != s for s, g in zip(shapes, got)):
        raise ValueError(f"{fn}: expected {rule!r} feedback matrices of shapes {shapes} "
                         f"(None where a layer has none), got {got}")


def weight_updates(cache: Cache, layer_deltas: Sequence[Tensor],
                   frozen: int = 0) -> tuple[list[Tensor], list[Tensor]]:
    """dW_l = A_l^T @ delta_l, (k, sizes[l], sizes[l + 1]); db_l = sum over the batch of delta_l, (k, 1, ...).

    With the deltas of ``"bp"`` these are the gradients of the mean loss. The
    bottom ``frozen`` layers (the read-out rule's: every layer but the last) get
    zeros without spending a product on them, as chapter 14 counts.
    """
    d_w = [a.transpose(1, 2) @ d if l >= frozen else a.new_zeros(a.shape[0], a.shape[2], d.shape[2])
           for l, (a, d) in enumerate(zip(cache.inputs, layer_deltas))]
    d_b = [d.sum(dim=1, keepdim=True) for d in layer_deltas]
    return d_w, d_b


def rule_updates(net: Net, x: Tensor, y: Tensor, rule: str,
                 feedback: Sequence[Tensor | None] | None = None) -> tuple[list[Tensor], list[Tensor]]:
    """One batch's updates (dW, db) under ``rule`` in bp/fa/dfa/readout: the whole rule in one call.

    x: (n, sizes[0]) or (k, n, sizes[0]) float; y: (n,) or (k, n) int64 labels;
    ``feedback``: as :func:`feedback_matrices` gives (its default). Returns
    ``dW[l]`` (k, sizes[l], sizes[l + 1]) and ``db[l]`` (k, 1, sizes[l + 1]), the
    direction of steepest ascent (for "bp": the gradient of the mean loss).
    Chapter 9, "Feedback alignment on the digits".
    """
    check_choice("rule_updates", "rule", rule, ("bp", "fa", "dfa", "readout"))
    if feedback is None:
        feedback = feedback_matrices(net, rule)
    cache = forward(net, x)
    y = _check_y("rule_updates", net, y, cache.logits.shape[1])
    e = output_error(cache.logits, y)
    return weight_updates(cache, deltas(net, cache, e, rule, feedback), _frozen(net, rule))


def _frozen(net: Net, rule: str) -> int:
    """How many bottom layers the rule never updates: all but the read-out for "readout"."""
    return net.n_layers - 1 if rule == "readout" else 0


# --------------------------------------------------------------------------- angles


def angle(a: Tensor, b: Tensor) -> Tensor:
    """The angle in degrees between a[i] and b[i] (each flattened), for every seed i: (k, ...) -> (k,).

    0 means the same direction, 90 orthogonal, 180 opposite. A zero vector has no
    direction: its angle is NaN.
    """
    check_tensor("angle", "a", a, floating=True)
    check_tensor("angle", "b", b, floating=True)
    if a.shape != b.shape:
        raise ValueError(f"angle: expected a and b of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return torch.rad2deg(torch.arccos(cosine(a, b).clamp(-1, 1)))


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of a[i] and b[i], each flattened: (k, ...) -> (k,) (NaN for a zero vector)."""
    a64, b64 = a.reshape(len(a), -1).double(), b.reshape(len(b), -1).double()
    norms = a64.norm(dim=1) * b64.norm(dim=1)
    return torch.where(norms > 0, (a64 * b64).sum(1) / norms, torch.full_like(norms, float("nan")))


def update_angles(net: Net, x: Tensor, y: Tensor, rule: str, feedback: Sequence[Tensor | None]) -> list[Tensor]:
    """Angle (degrees) between the rule's dW_l and backprop's gradient, per layer: a list of (k,).

    x: (n, sizes[0]) or (k, n, sizes[0]); y: (n,) or (k, n) labels; ``rule`` in
    bp/fa/dfa/readout with its ``feedback`` (from :func:`feedback_matrices`, or
    any matrices of those shapes). Chapter 9, "The angle to the true gradient".
    """
    cache = forward(net, x)
    e = output_error(cache.logits, _check_y("update_angles", net, y, cache.logits.shape[1]))
    mine, _ = weight_updates(cache, deltas(net, cache, e, rule, feedback))
    true, _ = weight_updates(cache, deltas(net, cache, e, "bp", feedback))
    return [angle(m, t) for m, t in zip(mine, true)]


def alignment_angles(net: Net, feedback: Sequence[Tensor | None]) -> list[Tensor | None]:
    """Feedback alignment's W_l vs B_l^T, in degrees per seed (None where a layer has no B)."""
    return [None if b is None else angle(w, b.transpose(1, 2)) for w, b in zip(net.weights, feedback)]


# --------------------------------------------------------------------------- synthetic gradients


@dataclass
class SyntheticGradients:
    """A linear synthetic-gradient model per hidden layer, k seeds at once.

    For hidden layer l (output width d = sizes[l + 1]):
    ``g_hat = h @ A[l] + onehot(y) @ C[l] + c[l]``, (k, n, d), a prediction of
    n * dL/dh_l, the gradient of each example's own loss. A: (k, d, d),
    C: (k, n_classes, d) (only when ``conditioned``), c: (k, 1, d). All start at
    zero, so the first predictions are zero (Jaderberg et al. 2017 zero the
    last layer of their synthetic-gradient models). Chapter 9, "Synthetic gradients".
    """

    conditioned: bool
    weights: list[Tensor]
    label_weights: list[Tensor | None]
    biases: list[Tensor]

    def __call__(self, l: int, h: Tensor, y: Tensor) -> Tensor:
        g_hat = torch.baddbmm(self.biases[l], h, self.weights[l])
        if self.conditioned:
            onehot = torch.nn.functional.one_hot(y, self.label_weights[l].shape[1]).to(h.dtype)
            g_hat = g_hat + onehot @ self.label_weights[l]
        return g_hat

    def parameters(self) -> list[Tensor]:
        extra = [c for c in self.label_weights if c is not None]
        return [*self.weights, *extra, *self.biases]


def synthetic_gradients(net: Net, conditioned: bool = False) -> SyntheticGradients:
    """Zero-initialized :class:`SyntheticGradients` for every hidden layer of ``net``."""
    k, c, dtype = net.n_seeds, net.sizes[-1], net.weights[0].dtype
    widths = net.sizes[1:-1]
    return SyntheticGradients(
        conditioned,
        [torch.zeros(k, d, d, dtype=dtype) for d in widths],
        [torch.zeros(k, c, d, dtype=dtype) if conditioned else None for d in widths],
        [torch.zeros(k, 1, d, dtype=dtype) for d in widths],
    )


Predictor = Callable[[int, Tensor, Tensor], Tensor]


@dataclass
class DecoupledStep:
    """What one decoupled step computed: the layers' updates, the synthetic
    gradients used (``predicted[l]``, (k, n, d_l) per hidden layer, scaled as n * dL/dh),
    and the targets that arrived for them (``targets[l]``, same shape)."""

    d_weights: list[Tensor]
    d_biases: list[Tensor]
    predicted: list[Tensor]
    targets: list[Tensor]
    cache: Cache = field(repr=False)


def decoupled_step(net: Net, x: Tensor, y: Tensor, synthetic: Predictor) -> DecoupledStep:
    """The DNI updates of every layer for one batch, every hidden layer decoupled.

    Each hidden layer l, as soon as its output h_l exists, asks its predictor
    for g_hat_l ~ n * dL/dh_l and updates with delta_l = (g_hat_l / n) * f'(Z_l);
    it does not wait for anything above it. The output layer uses the true error
    e. The target for g_hat_l, computed by the layer above when its own delta is
    known, is n * delta_{l+1} @ W_{l+1}^T: the true gradient for the top hidden
    layer, a bootstrapped one (built from the next predictor) below it.
    ``synthetic(l, h, y)`` is any predictor (a :class:`SyntheticGradients`, or a
    test's oracle). Chapter 9, "Synthetic gradients".
    """
    cache = forward(net, x)
    n = cache.logits.shape[1]
    y = _check_y("decoupled_step", net, y, n)
    e = output_error(cache.logits, y)
    hidden = cache.hidden
    predicted = [synthetic(l, h, y) for l, h in enumerate(hidden)]
    layer_deltas = [(g / n) * (1 - h**2) for g, h in zip(predicted, hidden)] + [e]
    d_w, d_b = weight_updates(cache, layer_deltas)
    targets = [n * layer_deltas[l + 1] @ net.weights[l + 1].transpose(1, 2) for l in range(len(hidden))]
    return DecoupledStep(d_w, d_b, predicted, targets, cache)


def synthetic_updates(sg: SyntheticGradients, step: DecoupledStep, y: Tensor) -> list[Tensor]:
    """Gradients of each predictor's regression loss 0.5 * mean_i ||g_hat_i - target_i||^2.

    Returned in the order of ``sg.parameters()``: dA_l = h^T (g_hat - t) / n,
    dC_l = onehot^T (g_hat - t) / n, dc_l = sum_i (g_hat - t) / n. The target is a
    constant (no gradient flows through it).
    """
    n = y.shape[-1]
    hidden = step.cache.hidden
    if y.ndim == 1:
        y = y.expand(len(hidden[0]), n)
    errors = [(p - t) / n for p, t in zip(step.predicted, step.targets)]
    d_a = [h.transpose(1, 2) @ r for h, r in zip(hidden, errors)]
    d_c = []
    if sg.conditioned:
        for r, c in zip(errors, sg.label_weights):
            onehot = torch.nn.functional.one_hot(y, c.shape[1]).to(r.dtype)
            d_c.append(onehot.transpose(1, 2) @ r)
    d_bias = [r.sum(dim=1, keepdim=True) for r in errors]
    return [*d_a, *d_c, *d_bias]


def true_hidden_gradients(net: Net, x: Tensor, y: Tensor) -> list[Tensor]:
    """n * dL/dh_l for every hidden layer (by backprop): what a perfect synthetic gradient predicts."""
    cache = forward(net, x)
    n = cache.logits.shape[1]
    e = output_error(cache.logits, _check_y("true_hidden_gradients", net, y, n))
    ds = deltas(net, cache, e, "bp", [None] * net.n_layers)
    return [n * ds[l + 1] @ net.weights[l + 1].transpose(1, 2) for l in range(net.n_layers - 1)]


# --------------------------------------------------------------------------- training


@dataclass
class Run:
    """A trained rule: the final network, its history, and what the rule kept."""

    rule: str
    net: Net
    history: History
    feedback: list[Tensor | None]
    synthetic: SyntheticGradients | None = None


def train(rule: str, sizes: Sequence[int], x: Tensor, y: Tensor, *, seeds: Sequence[int],
          epochs: int, batch_size: int = 64, lr: float = 1e-3, optimizer: str = "adam",
          sg_lr: float | None = None, eval_data: tuple[Tensor, Tensor] | None = None,
          log_every: int | None = None, probe: tuple[Tensor, Tensor] | None = None,
          init: str = "xavier", feedback_scale: float = 1.0,
          feedback: Sequence[Tensor | None] | None = None, progress: bool = False) -> Run:
    """Train k = len(seeds) networks with widths ``sizes`` under ``rule``; return a :class:`Run`.

    x: (n, sizes[0]) float; y: (n,) int64 labels. Each seed shuffles the data
    with ``generator(seed)`` every epoch, as ``companion.training.fit`` does.
    The rule computes every update by hand; ``optimizer`` ("sgd" with momentum
    0.9 or "adam", from ``companion.training.make_optimizer``) only applies it.
    DNI's predictors are trained with the same optimizer kind at ``sg_lr``
    (default ``lr``). ``feedback`` replaces the random matrices of "fa"/"dfa"
    (shapes as :func:`feedback_matrices` gives; build them from
    ``stacked_net(sizes, seeds)``, which holds the weights training starts from).

    The history logs, every ``log_every`` steps (default: once per epoch) and
    before training: ``loss`` (mean training loss since the last row),
    ``eval_accuracy``/``eval_loss`` with ``eval_data``, and on the ``probe``
    batch (default: the first 256 training examples): ``angle_<l>``, the angle
    between the rule's dW_l and the true gradient; for FA ``alignment_<l>``
    (W_l vs B_l^T); for DNI ``cosine_<l>``, the cosine between the synthetic
    and the true gradient of hidden layer l. Every value has shape (k,).
    Chapter 9, "The scoreboard".
    """
    check_choice("train", "rule", rule, RULES)
    check_positive("train", "epochs", epochs, integer=True, allow_zero=True)
    check_positive("train", "batch_size", batch_size, integer=True)
    check_positive("train", "lr", lr)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("train: expected at least one seed, got none")
    net = stacked_net(sizes, seeds, init)
    check_tensor("train", "x", x, shape=(None, net.sizes[0]), floating=True)
    y_k = _check_y("train", net, y, len(x))
    if eval_data is not None:
        check_tensor("train", "eval_data[0]", eval_data[0], shape=(None, net.sizes[0]), floating=True)
        _check_y("train", net, eval_data[1], len(eval_data[0]))
    if log_every is not None:
        check_positive("train", "log_every", log_every, integer=True)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    log_every = log_every or steps_per_epoch
    probe = probe if probe is not None else (x[:256], y[:256])
    if feedback is not None:
        if rule not in ("fa", "dfa"):
            raise ValueError(f"train: feedback matrices are for rule 'fa' or 'dfa', got rule {rule!r}")
        expected = feedback_matrices(net, rule)
        if len(feedback) != len(expected) or any(
                (f is None) != (e is None) or (e is not None and tuple(f.shape) != tuple(e.shape))
                for f, e in zip(feedback, expected)):
            shapes = [None if e is None else tuple(e.shape) for e in expected]
            got = [None if f is None else tuple(getattr(f, "shape", ())) for f in feedback]
            raise ValueError(f"train: expected feedback matrices of shapes {shapes}, got {got}")
        feedback = [None if f is None else f.to(net.weights[0].dtype) for f in feedback]
    elif rule in ("fa", "dfa"):
        feedback = feedback_matrices(net, rule, feedback_scale)
    else:
        feedback = [None] * net.n_layers
    sg = synthetic_gradients(net, conditioned=rule == "cdni") if rule in ("dni", "cdni") else None
    params = [*net.weights, *net.biases]
    opt = make_optimizer(params, optimizer, lr)
    sg_opt = make_optimizer(sg.parameters(), optimizer, sg_lr or lr) if sg is not None else None
    history = History()
    gens = [generator(s) for s in seeds]
    losses: list[Tensor] = []

    def record(step: int) -> None:
        values: dict[str, object] = {}
        values["loss"] = torch.stack(losses).mean(0) if losses else loss(net, x, y)
        if eval_data is not None:
            logits = forward(net, eval_data[0]).logits
            labels = eval_data[1].expand(net.n_seeds, -1)
            logp = torch.log_softmax(logits, dim=-1)
            values["eval_loss"] = -logp.gather(-1, labels[..., None]).squeeze(-1).mean(dim=1)
            values["eval_accuracy"] = (logits.argmax(-1) == labels).double().mean(dim=1)
        px, py = probe
        if rule in ("bp", "fa", "dfa", "readout"):
            for l, a in enumerate(update_angles(net, px, py, rule, feedback)):
                values[f"angle_{l}"] = a
        if rule == "fa":
            for l, a in enumerate(alignment_angles(net, feedback)):
                if a is not None:
                    values[f"alignment_{l}"] = a
        if sg is not None:
            step_ = decoupled_step(net, px, py, sg)
            true = true_hidden_gradients(net, px, py)
            bp_w, _ = rule_updates(net, px, py, "bp")
            for l, (p, t) in enumerate(zip(step_.predicted, true)):
                values[f"cosine_{l}"] = cosine(p, t)
            for l, (m, t) in enumerate(zip(step_.d_weights, bp_w)):
                values[f"angle_{l}"] = angle(m, t)
        history.log(step, **values)
        losses.clear()

    record(0)
    step = 0
    for _ in progress_range(epochs, progress):
        orders = torch.stack([torch.randperm(len(x), generator=g) for g in gens])  # (k, n)
        for start in range(0, len(x), batch_size):
            idx = orders[:, start:start + batch_size]  # (k, b)
            xb, yb = x[idx], torch.gather(y_k, 1, idx)
            d_w, d_b, sg_grads, logits = train_step_updates(net, xb, yb, rule, feedback, sg)
            if sg is not None:
                for p, g in zip(sg.parameters(), sg_grads):
                    p.grad = g
                sg_opt.step()
            for p, g in zip(params, [*d_w, *d_b]):
                p.grad = g
            opt.step()
            logp = torch.log_softmax(logits, dim=-1)
            losses.append(-logp.gather(-1, yb[..., None]).squeeze(-1).mean(dim=1))
            step += 1
            if step % log_every == 0:
                record(step)
    if step % log_every:
        record(step)
    return Run(rule, net, history, list(feedback), sg)


def train_step_updates(net: Net, x: Tensor, y: Tensor, rule: str, feedback: Sequence[Tensor | None],
                       sg: SyntheticGradients | None = None) -> tuple[list[Tensor], list[Tensor], list[Tensor], Tensor]:
    """All one training step of :func:`train` computes before the optimizer applies it.

    x: (k, b, sizes[0]), y: (k, b). Returns (dW, db, the predictors' gradients
    (empty without ``sg``), logits (k, b, sizes[-1])). Chapter 14 counts its
    multiply-adds per rule.
    """
    if sg is None:
        cache = forward(net, x)
        e = output_error(cache.logits, y)
        d_w, d_b = weight_updates(cache, deltas(net, cache, e, rule, feedback), _frozen(net, rule))
        return d_w, d_b, [], cache.logits
    step = decoupled_step(net, x, y, sg)
    return step.d_weights, step.d_biases, synthetic_updates(sg, step, y), step.cache.logits


def steps_to_target(history: History, target: float, metric: str = "eval_accuracy") -> np.ndarray:
    """Per seed, the first logged step at which ``metric`` reached ``target`` (inf if never): (k,)."""
    values = history[metric]  # (rows, k)
    if values.ndim == 1:
        values = values[:, None]
    steps = np.asarray(history.step, dtype=float)
    reached = values >= target
    first = np.where(reached.any(0), steps[np.argmax(reached, axis=0)], np.inf)
    return first


# --------------------------------------------------------------------------- update locking


@dataclass(frozen=True)
class Task:
    """One block of work in a schedule: ``kind`` on ``device`` for ``batch``, from ``start`` to ``end``.

    kinds: "forward", "backward" (backprop: the layer's backward pass and update),
    "update" (DNI: predict the synthetic gradient, backward through the own layer,
    update), "train_sg" (DNI: regress the predictor on the target that arrived).
    """

    device: int
    batch: int
    kind: str
    start: float
    end: float


def schedule(method: str, n_layers: int, n_batches: int, t_forward: float = 1.0,
             t_backward: float = 2.0, t_synthetic: float = 0.5) -> list[Task]:
    """When each layer works, one layer per device, under backprop or DNI: a timing *model*.

    Each task starts as soon as its device is free and its inputs exist.
    Backprop: F_l(b) needs F_{l-1}(b) and, since layer l must have updated,
    B_l(b-1); B_l(b) needs B_{l+1}(b) (or F_L(b) at the top). DNI: F_l(b) needs
    F_{l-1}(b); U_l(b) (t_synthetic + t_backward) needs only F_l(b) (the top
    layer's uses the true error, and takes t_backward); the predictor's training
    T_l(b) (t_synthetic) needs U_{l+1}(b), which sends the target down, and runs
    on device l after U_l(b + 1). Communication is free. Chapter 9, "Update locking".
    """
    check_choice("schedule", "method", method, ("bp", "dni"))
    check_positive("schedule", "n_layers", n_layers, integer=True)
    check_positive("schedule", "n_batches", n_batches, integer=True)
    for name, value in (("t_forward", t_forward), ("t_backward", t_backward)):
        check_positive("schedule", name, value)
    check_positive("schedule", "t_synthetic", t_synthetic, allow_zero=True)
    L = n_layers
    done: dict[tuple[str, int, int], float] = {}
    free = [0.0] * L
    tasks: list[Task] = []

    def run(kind: str, l: int, b: int, duration: float, *needs: tuple[str, int, int]) -> None:
        start = max([free[l], *(done[n] for n in needs if n in done)])
        end = start + duration
        done[(kind, l, b)] = end
        free[l] = end
        tasks.append(Task(l, b, kind, start, end))

    for b in range(n_batches):
        if method == "bp":
            for l in range(L):
                run("forward", l, b, t_forward, ("forward", l - 1, b), ("backward", l, b - 1))
            for l in range(L - 1, -1, -1):
                run("backward", l, b, t_backward, ("backward", l + 1, b), ("forward", l, b))
        else:
            for l in range(L):
                run("forward", l, b, t_forward, ("forward", l - 1, b))
                top = l == L - 1
                run("update", l, b, t_backward + (0.0 if top else t_synthetic), ("forward", l, b))
                if b > 0 and not top:
                    run("train_sg", l, b - 1, t_synthetic, ("update", l + 1, b - 1))
    if method == "dni":
        for l in range(L - 1):
            run("train_sg", l, n_batches - 1, t_synthetic, ("update", l + 1, n_batches - 1))
    return sorted(tasks, key=lambda t: (t.start, t.device))


def makespan(tasks: Sequence[Task]) -> float:
    """When the last task of a schedule ends."""
    return max(t.end for t in tasks)


def pipeline_speedup(n_layers: int, t_forward: float, t_backward: float, t_synthetic: float,
                     n_batches: int = 1000) -> float:
    """The model's speed-up of DNI over backprop with one device per layer: makespan ratio."""
    bp = makespan(schedule("bp", n_layers, n_batches, t_forward, t_backward, t_synthetic))
    dni = makespan(schedule("dni", n_layers, n_batches, t_forward, t_backward, t_synthetic))
    return bp / dni
