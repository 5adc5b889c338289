"""The shared training pieces: seeds, minibatches, progress, an MLP builder,
a history type and ``fit``, the one plain supervised loop of the course.

Chapter 3 teaches this loop (minibatches, epochs, momentum and Adam); later
chapters use it for their backprop baselines. Chapters whose loop *is* the
lesson (the GAN, the DNC, Forward-Forward, evolution strategies) keep their
own loops but use the pieces here.

Many seeds at once: ``fit`` also trains a :class:`~companion.seeds.StackedMLP`
(k copies of one network under k seeds, as one batched model); every metric
then comes back per seed. See ``companion.seeds``.

Vocabulary (CONTRIBUTING.md): ``n_inputs`` (input width), ``hidden``
(hidden sizes), ``sizes`` (all widths, input first), ``epochs``/``steps``,
``lr``, ``batch_size``, ``seed`` (an int) or ``generator`` (a
``torch.Generator``/``numpy.random.Generator``), ``progress`` (a bool).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from companion._checks import check_choice, check_positive, check_shape, check_tensor

if TYPE_CHECKING:
    import torch
    from torch import nn

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity", "leaky_relu", "gelu")
"""Activation names that :func:`mlp` accepts (each maps to one ``torch.nn`` module)."""

INITS = ("torch", "xavier", "he", "lecun")
"""Initializations :func:`mlp` accepts; see :func:`init_linear_`."""


def generator(seed: int) -> "torch.Generator":
    """A CPU ``torch.Generator`` seeded with ``seed``: the one way the package seeds torch."""
    import torch

    check_positive("generator", "seed", seed, integer=True, allow_zero=True)
    return torch.Generator().manual_seed(int(seed))


def progress(iterable: Iterable, progress: bool, **tqdm_kwargs: Any) -> Iterable:
    """Wrap ``iterable`` in a ``tqdm.auto`` bar when ``progress`` is True, else return it.

    The one progress convention of the package: functions take
    ``progress: bool`` and pass it here.
    """
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **tqdm_kwargs)


def minibatches(n: int, batch_size: int, generator: "torch.Generator") -> Iterator["torch.Tensor"]:
    """One epoch of shuffled minibatch indices: tensors of shape (batch_size,), the last one shorter.

    Taught in chapter 3, "From XOR to real data".
    """
    import torch

    check_positive("minibatches", "n", n, integer=True)
    check_positive("minibatches", "batch_size", batch_size, integer=True)
    order = torch.randperm(n, generator=generator)
    yield from order.split(batch_size)


def activation_module(name: str) -> "nn.Module":
    """The ``torch.nn`` module for an activation name in :data:`ACTIVATIONS`."""
    from torch import nn

    check_choice("activation_module", "activation", name, ACTIVATIONS)
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
            "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU}[name]()


def init_linear_(layer: "nn.Linear", init: str, generator: "torch.Generator") -> "nn.Linear":
    """Initialize ``layer`` in place from ``generator``; returns it.

    * ``"torch"``: PyTorch's default, W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    * ``"xavier"``: W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)); b = 0 (Glorot & Bengio 2010).
    * ``"he"``: W ~ N(0, 2 / fan_in); b = 0 (He et al. 2015), for ReLU.
    * ``"lecun"``: W ~ N(0, 1 / fan_in); b = 0, for tanh-like units.

    Derived in chapter 3, "The variance argument: Xavier and He".
    """
    import torch

    check_choice("init_linear_", "init", init, INITS)
    fan_out, fan_in = layer.weight.shape
    with torch.no_grad():
        if init == "torch":
            bound = 1.0 / math.sqrt(fan_in)
            layer.weight.uniform_(-bound, bound, generator=generator)
            if layer.bias is not None:
                layer.bias.uniform_(-bound, bound, generator=generator)
            return layer
        if init == "xavier":
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            layer.weight.uniform_(-bound, bound, generator=generator)
        else:
            std = math.sqrt((2.0 if init == "he" else 1.0) / fan_in)
            layer.weight.normal_(0.0, std, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def mlp(sizes: Sequence[int], activation: str = "relu", init: str = "torch",
        seed: int = 0, output: str = "identity", bias: bool = True) -> "nn.Sequential":
    """A multilayer perceptron: Linear, activation, ..., Linear, output activation.

    ``sizes`` are all the widths, input first: ``mlp([64, 32, 10])`` maps
    (n, 64) to (n, 10) through one hidden layer of 32 units. The weights are
    drawn from ``generator(seed)``, layer by layer, so one seed gives one
    network. The builder every chapter module uses.
    """
    from torch import nn
    from torch.nn.utils import skip_init

    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp: expected sizes with at least 2 widths (input and output), got {sizes}")
    for width in sizes:
        check_positive("mlp", "every width in sizes", width, integer=True)
    check_choice("mlp", "activation", activation, ACTIVATIONS)
    check_choice("mlp", "output", output, ACTIVATIONS)
    g = generator(seed)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        # skip_init: nn.Linear would first draw throwaway weights from torch's global generator
        layers.append(init_linear_(skip_init(nn.Linear, fan_in, fan_out, bias=bias), init, g))
        last = i == len(sizes) - 2
        if not last or output != "identity":
            layers.append(activation_module(output if last else activation))
    return nn.Sequential(*layers)


@dataclass
class History:
    """What a training loop recorded: one row per ``log`` call.

    ``step`` holds the x-axis values (epochs or steps); ``metrics[name]``
    one value per row, a float, or an array of shape (k,) for k seeds
    trained at once. ``history["loss"]`` returns an array of shape (rows,)
    or (rows, k).
    """

    step: list[int] = field(default_factory=list)
    metrics: dict[str, list] = field(default_factory=dict)

    def log(self, step: int, **values: Any) -> None:
        """Append one row: ``history.log(epoch, loss=0.3, test_accuracy=0.9)``."""
        self.step.append(int(step))
        for name, value in values.items():
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            column = self.metrics.setdefault(name, [])
            column.extend([float("nan")] * (len(self.step) - 1 - len(column)))
            column.append(np.asarray(value, dtype=np.float64) if np.ndim(value) else float(value))

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.metrics:
            raise KeyError(f"History: no metric {name!r}; recorded: {sorted(self.metrics)}")
        column = self.metrics[name]
        shape = next((np.shape(v) for v in column if np.ndim(v)), ())
        return np.array([np.broadcast_to(np.asarray(v, dtype=np.float64), shape) for v in column])

    def __contains__(self, name: str) -> bool:
        return name in self.metrics

    def final(self, name: str) -> Any:
        """The last recorded value of a metric (a float, or an array of shape (k,))."""
        return self[name][-1]

    def plot(self, *names: str, ax: Any = None, logy: bool = False, label: str = ""):
        """Plot metrics against ``step``; with k seeds, the mean as a line and min-max as a band."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3))
        for name in names or tuple(self.metrics):
            values = self[name]
            text = f"{label} {name}".strip()
            if values.ndim == 1:
                ax.plot(self.step, values, label=text)
            else:
                (line,) = ax.plot(self.step, values.mean(axis=1), label=f"{text} (mean of {values.shape[1]})")
                ax.fill_between(self.step, values.min(axis=1), values.max(axis=1),
                                color=line.get_color(), alpha=0.2, linewidth=0)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.legend()
        return ax

    def table(self, every: int = 1) -> str:
        """The history as a plain-text table (seed columns summarized as mean)."""
        names = list(self.metrics)
        lines = ["step  " + "  ".join(f"{n:>14}" for n in names)]
        for row in range(0, len(self.step), every):
            cells = []
            for n in names:
                value = self[n][row]
                cells.append(f"{float(np.mean(value)):14.4g}")
            lines.append(f"{self.step[row]:<5} " + "  ".join(cells))
        return "\n".join(lines)


LOSSES = ("cross_entropy", "mse")


def _loss_fn(loss: str | Callable) -> Callable:
    import torch.nn.functional as F

    if callable(loss):
        return loss
    check_choice("fit", "loss", loss, LOSSES)
    return F.cross_entropy if loss == "cross_entropy" else F.mse_loss


def make_optimizer(params: Iterable["torch.nn.Parameter"], optimizer: str, lr: float,
                   momentum: float = 0.9, weight_decay: float = 0.0) -> "torch.optim.Optimizer":
    """``"sgd"`` (with ``momentum``) or ``"adam"``: the two optimizers chapter 3 introduces."""
    import torch

    check_choice("make_optimizer", "optimizer", optimizer, ("sgd", "adam"))
    check_positive("make_optimizer", "lr", lr)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def n_seeds(model: Any) -> int | None:
    """k for a model that holds k seeds at once (``companion.seeds``), None for a plain model."""
    return getattr(model, "n_seeds", None)


def evaluate(model: "nn.Module", x: "torch.Tensor", y: "torch.Tensor",
             loss: str | Callable = "cross_entropy") -> dict[str, Any]:
    """Loss (and accuracy, for class labels) of ``model`` on ``(x, y)``, without gradients.

    Returns floats for a plain model, arrays of shape (k,) for k stacked seeds.
    """
    import torch

    loss_fn = _loss_fn(loss)
    k = n_seeds(model)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(x)  # (n, c), or (k, n, c) for k seeds
        if k is None:
            result = {"loss": float(loss_fn(out, y))}
            if not y.is_floating_point():
                result["accuracy"] = float((out.argmax(-1) == y).double().mean())
        else:
            result = {"loss": np.array([float(loss_fn(o, y)) for o in out])}
            if not y.is_floating_point():
                result["accuracy"] = (out.argmax(-1) == y).double().mean(dim=1).numpy()
    model.train(was_training)
    return result


def fit(model: "nn.Module", x: "torch.Tensor", y: "torch.Tensor", *, epochs: int,
        batch_size: int = 64, lr: float = 1e-3, optimizer: str = "adam", momentum: float = 0.9,
        weight_decay: float = 0.0, loss: str | Callable = "cross_entropy", seed: int = 0,
        eval_data: tuple["torch.Tensor", "torch.Tensor"] | None = None,
        clip: float | None = None, progress: bool = False,
        on_step: Callable[["nn.Module", int], dict[str, Any] | None] | None = None,
        on_backward: Callable[["nn.Module", int], dict[str, Any] | None] | None = None) -> History:
    """Train ``model`` on ``(x, y)`` with minibatches for ``epochs`` epochs; return a :class:`History`.

    x: (n, n_inputs); y: (n,) class labels (long) for ``"cross_entropy"`` or
    (n, n_outputs) targets for ``"mse"``. Each epoch draws a fresh shuffle
    from ``generator(seed)``. The history has one row per epoch (row 0 is
    before training): ``loss`` (training loss), and with ``eval_data``
    ``eval_loss`` and ``eval_accuracy``. ``clip`` rescales the gradient to
    at most that global norm. ``on_step(model, step)`` runs after every
    update (after ``backward``, before the gradients are cleared) and may
    return values to log per epoch (their mean over the epoch's steps).
    ``on_backward(model, step)`` runs after ``backward`` and before clipping
    and the update, so it sees the raw gradient (the place to measure it);
    what it returns is logged the same way.

    With a stacked model of k seeds (``companion.seeds.stacked_mlp``) every
    seed gets its own shuffle, from ``generator(model.seeds[i])`` (``seed`` is
    then not used); the loss is the sum of the seeds' mean losses, so each
    seed's gradient is exactly what it would be alone, and every metric comes
    back with shape (rows, k). ``clip`` is then applied per seed.

    Taught in chapter 3, "From XOR to real data".
    """
    import torch

    check_positive("fit", "epochs", epochs, integer=True, allow_zero=True)
    check_positive("fit", "batch_size", batch_size, integer=True)
    check_tensor("fit", "x", x, floating=True)
    check_tensor("fit", "y", y)
    if x.ndim != 2:
        raise ValueError(f"fit: expected x of shape (n, n_inputs), got {tuple(x.shape)}")
    if len(y) != len(x):
        raise ValueError(f"fit: expected y with one entry per row of x ({len(x)}), got {tuple(y.shape)}")
    if clip is not None:
        check_positive("fit", "clip", clip)
    loss_fn = _loss_fn(loss)
    k = n_seeds(model)
    generators = [generator(seed)] if k is None else [generator(s) for s in model.seeds]
    opt = make_optimizer(model.parameters(), optimizer, lr, momentum, weight_decay)
    history = History()

    def record(epoch: int, train_loss: Any, extra: dict[str, list]) -> None:
        values: dict[str, Any] = {"loss": train_loss}
        values.update({name: np.mean(v, axis=0) for name, v in extra.items()})
        if eval_data is not None:
            result = evaluate(model, *eval_data, loss=loss)
            values.update({f"eval_{name}": v for name, v in result.items()})
        history.log(epoch, **values)

    record(0, evaluate(model, x, y, loss=loss)["loss"], {})
    step = 0
    for epoch in progress_range(epochs, progress):
        orders = torch.stack([torch.randperm(len(x), generator=g) for g in generators])  # (k or 1, n)
        losses, extra = [], {}
        for start in range(0, len(x), batch_size):
            if k is None:
                idx = orders[0, start:start + batch_size]
                batch_loss = loss_fn(model(x[idx]), y[idx])
                total = batch_loss
            else:
                idx = orders[:, start:start + batch_size]  # (k, b)
                per_seed = _per_seed_loss(loss, loss_fn, model(x[idx]), y[idx])  # (k,)
                batch_loss, total = per_seed.detach(), per_seed.sum()
            opt.zero_grad()
            total.backward()
            if on_backward is not None:
                for name, value in (on_backward(model, step + 1) or {}).items():
                    extra.setdefault(name, []).append(value)
            if clip is not None:
                clip_gradients(model, clip)
            opt.step()
            step += 1
            if on_step is not None:
                for name, value in (on_step(model, step) or {}).items():
                    extra.setdefault(name, []).append(value)
            losses.append(batch_loss.detach())
        record(epoch + 1, torch.stack(losses).mean(0), extra)
    return history


def _per_seed_loss(loss: str | Callable, loss_fn: Callable, out: "torch.Tensor",
                   target: "torch.Tensor") -> "torch.Tensor":
    """Each seed's mean loss, shape (k,), for outputs (k, b, c) and targets (k, b) or (k, b, c).

    The built-in losses are computed for all seeds in one call (one call per
    seed would cost as much as the network's own layers at these sizes).
    """
    import torch
    import torch.nn.functional as F

    k, b = out.shape[:2]
    if loss == "cross_entropy":
        return F.cross_entropy(out.reshape(k * b, -1), target.reshape(k * b),
                               reduction="none").reshape(k, b).mean(1)
    if loss == "mse":
        return F.mse_loss(out, target, reduction="none").reshape(k, -1).mean(1)
    return torch.stack([loss_fn(out[i], target[i]) for i in range(k)])


def progress_range(n: int, enabled: bool) -> Iterable[int]:
    """``range(n)`` with a progress bar when ``enabled``."""
    return progress(range(n), enabled, leave=False)


def clip_gradients(model: "nn.Module", max_norm: float) -> Any:
    """Rescale the gradient to global norm at most ``max_norm`` (per seed for stacked models).

    Returns the norm before clipping (a float, or a tensor of shape (k,)).
    Taught in chapter 3, "Gradient clipping".
    """
    import torch

    params = [p for p in model.parameters() if p.grad is not None]
    k = n_seeds(model)
    if k is None:
        norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
        scale = torch.clamp(max_norm / (norm + 1e-12), max=1.0)
        for p in params:
            p.grad.mul_(scale)
        return float(norm)
    # stacked parameters have the seed as their first dimension
    norm = torch.sqrt(sum((p.grad ** 2).reshape(k, -1).sum(1) for p in params))  # (k,)
    scale = torch.clamp(max_norm / (norm + 1e-12), max=1.0)
    for p in params:
        p.grad.mul_(scale.reshape(k, *([1] * (p.grad.ndim - 1))))
    return norm


def check_inputs(fn: str, model: "nn.Module", x: Any, n_inputs: int) -> None:
    """Check that ``x`` is a float tensor of shape (n, n_inputs) for ``model``."""
    check_tensor(fn, "x", x, floating=True)
    check_shape(fn, "x", x, (None, n_inputs))
