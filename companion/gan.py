"""Generative adversarial networks, small enough to read (chapter 5).

A generator G maps noise z (n, latent_dim) to samples (n, data_dim); a
discriminator D maps samples (n, data_dim) to one logit each, (n,): the log-odds
that the sample is real. The two play the minimax game

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]

with D(x) = sigmoid(logit). Everything is written in terms of logits, so that
``log D = -softplus(-logit)`` and ``log(1 - D) = -softplus(logit)`` never
overflow.

* ``make_generator``, ``make_discriminator``: MLP builders.
* ``discriminator_loss``, ``generator_loss``: the two players' losses
  (the generator's either "saturating", log(1 - D(G(z))), or
  "non-saturating", -log D(G(z))).
* ``MinibatchStd``: a layer that lets the discriminator see a whole batch's
  spread (a remedy for mode collapse); ``Pack``, another (PacGAN).
* ``train_step``, ``train_gan``: alternating updates, with a progress bar.
* ``mode_coverage``: how many modes of a mixture a set of samples covers,
  and what fraction of samples lands near some mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

LOSSES = ("saturating", "non-saturating")


def _check_positive_int(name: str, value: object, where: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where}: expected {name} to be a positive int, got {value!r}")


def _check_batch(name: str, x: object, width: int | None, where: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or (width is not None and x.shape[1] != width):
        expected = f"(n, {width})" if width is not None else "(n, d)"
        raise ValueError(f"{where}: expected {name} of shape {expected}, got {tuple(x.shape)}")


class MinibatchStd(nn.Module):
    """Append the batch's average standard deviation as one more feature.

    (n, d) -> (n, d + 1). Every row gets the same extra value: the standard
    deviation of each feature over the batch, averaged over features. A
    discriminator with this layer can tell a batch of near-identical samples
    (a collapsed generator) from a varied one, which a per-sample
    discriminator cannot (Karras et al., 2018, a simplification of Salimans et
    al.'s minibatch discrimination, 2016).
    """

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        _check_batch("h", h, None, "MinibatchStd")
        if h.shape[0] < 2:
            raise ValueError(f"MinibatchStd: expected a batch of at least 2 rows, got {h.shape[0]}")
        centered = h - h.mean(dim=0)
        spread = ((centered * centered).sum(dim=0) / (h.shape[0] - 1)).sqrt().mean()  # torch.std, but faster
        return torch.cat([h, spread.expand(h.shape[0], 1)], dim=1)


class Pack(nn.Module):
    """Concatenate groups of ``m`` samples into one input: (n, d) -> (n // m, m * d).

    A discriminator behind this layer judges ``m`` samples at once (PacGAN,
    Lin et al., 2018): a group drawn from a collapsed generator looks alike,
    a group of real samples does not. n must be a multiple of m.
    """

    def __init__(self, m: int):
        super().__init__()
        _check_positive_int("m", m, "Pack")
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch("x", x, None, "Pack")
        if x.shape[0] % self.m:
            raise ValueError(f"Pack: expected a batch size that is a multiple of {self.m}, got {x.shape[0]}")
        return x.reshape(x.shape[0] // self.m, self.m * x.shape[1])


def _mlp(sizes: list[int], activation: Callable[[], nn.Module], out: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    if out is not None:
        layers.append(out)
    return nn.Sequential(*layers)


def make_generator(latent_dim: int, data_dim: int, hidden: int = 128, depth: int = 2, seed: int = 0,
                   output: nn.Module | None = None) -> nn.Sequential:
    """An MLP generator: z (n, latent_dim) -> x (n, data_dim).

    ``depth`` hidden layers of width ``hidden`` with ReLU, then a linear layer;
    ``output`` is an optional final module (e.g. ``nn.Sigmoid()`` for pixels in [0, 1]).
    Weights are initialized from ``seed``, without touching torch's global random state.
    """
    for name, value in [("latent_dim", latent_dim), ("data_dim", data_dim), ("hidden", hidden), ("depth", depth)]:
        _check_positive_int(name, value, "make_generator")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _mlp([latent_dim] + [hidden] * depth + [data_dim], nn.ReLU, output)


def make_discriminator(data_dim: int, hidden: int = 128, depth: int = 2, seed: int = 0,
                       minibatch_std: bool = False, pack: int = 1) -> nn.Sequential:
    """An MLP discriminator: x (n, data_dim) -> logits (n,).

    ``depth`` hidden layers of width ``hidden`` with LeakyReLU(0.2). With
    ``minibatch_std=True`` a ``MinibatchStd`` layer feeds the batch's spread
    into the last hidden layer. With ``pack=m`` > 1 it judges groups of m
    samples (see ``Pack``) and returns n // m logits.
    """
    for name, value in [("data_dim", data_dim), ("hidden", hidden), ("depth", depth), ("pack", pack)]:
        _check_positive_int(name, value, "make_discriminator")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        body = _mlp([data_dim * pack] + [hidden] * depth, act)
        layers = ([Pack(pack)] if pack > 1 else []) + list(body) + [act()]
        if minibatch_std:
            layers.append(MinibatchStd())
        layers += [nn.Linear(hidden + int(minibatch_std), 1), nn.Flatten(0)]
        return nn.Sequential(*layers)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss, -E[log D(x)] - E[log(1 - D(G(z)))]: binary cross-entropy.

    Args: logits of shape (n,) and (m,). Returns a scalar.
    """
    for name, t in [("real_logits", real_logits), ("fake_logits", fake_logits)]:
        if not isinstance(t, torch.Tensor) or t.ndim != 1:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"discriminator_loss: expected {name} of shape (n,), got {got}")
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "non-saturating") -> torch.Tensor:
    """The generator's loss on D's logits for generated samples, shape (n,) -> scalar.

    * "saturating": E[log(1 - D(G(z)))] = -E[softplus(logit)], the minimax game's own term.
      Its gradient with respect to the logit is -D, which vanishes when D wins (D -> 0).
    * "non-saturating": -E[log D(G(z))] = E[softplus(-logit)]. Its gradient is
      -(1 - D), which is largest when D wins.
    """
    if kind not in LOSSES:
        raise ValueError(f"generator_loss: expected kind in {LOSSES}, got {kind!r}")
    if not isinstance(fake_logits, torch.Tensor) or fake_logits.ndim != 1:
        got = tuple(fake_logits.shape) if isinstance(fake_logits, torch.Tensor) else type(fake_logits).__name__
        raise ValueError(f"generator_loss: expected fake_logits of shape (n,), got {got}")
    if kind == "saturating":
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()


def train_step(G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
               real: torch.Tensor, latent_dim: int, generator: torch.Generator, loss: str = "non-saturating",
               d_steps: int = 1) -> tuple[float, float]:
    """One round of the game: ``d_steps`` discriminator updates, then one generator update.

    Args:
        real: a batch of real samples, (n, data_dim).
        generator: the source of the noise z, (n, latent_dim), drawn fresh for each update.

    Returns the last discriminator loss and the generator loss, as floats.
    """
    _check_batch("real", real, None, "train_step")
    n = real.shape[0]
    for _ in range(d_steps):
        with torch.no_grad():
            fake = G(torch.randn(n, latent_dim, generator=generator))
        d_loss = discriminator_loss(D(real), D(fake))
        opt_D.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_D.step()
    g_loss = generator_loss(D(G(torch.randn(n, latent_dim, generator=generator))), loss)
    opt_G.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_G.step()
    return d_loss.item(), g_loss.item()


@dataclass
class GANHistory:
    """What ``train_gan`` records: losses per iteration, and snapshots."""

    d_loss: list[float] = field(default_factory=list)
    g_loss: list[float] = field(default_factory=list)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # iteration -> samples (n_snapshot, data_dim)


def train_gan(G: nn.Module, D: nn.Module, sample_real: Callable[[int, torch.Generator], torch.Tensor],
              iterations: int, latent_dim: int, batch_size: int = 256, lr_g: float = 1e-3, lr_d: float = 1e-3,
              betas: tuple[float, float] = (0.5, 0.999), loss: str = "non-saturating", d_steps: int = 1,
              lr_decay: bool = False, snapshot_at: tuple[int, ...] = (), snapshot_size: int = 2500, seed: int = 0,
              on_snapshot: Callable[[int, nn.Module, nn.Module], None] | None = None,
              progress: bool = True) -> GANHistory:
    """Train G and D against each other with Adam for ``iterations`` rounds of ``train_step``.

    Args:
        sample_real: ``sample_real(n, generator)`` returns n real samples, (n, data_dim).
        snapshot_at: iterations (counted from 1) after which to record ``snapshot_size``
            samples of G, drawn from a fixed noise batch, and call ``on_snapshot(it, G, D)``.
        lr_decay: decay both learning rates linearly to zero over the run (it
            lets the generator settle into sharp modes instead of jittering around them).
        seed: seeds the ``torch.Generator`` that draws real batches and noise.

    Returns a ``GANHistory``. G and D are trained in place.
    """
    _check_positive_int("iterations", iterations, "train_gan")
    _check_positive_int("batch_size", batch_size, "train_gan")
    if loss not in LOSSES:
        raise ValueError(f"train_gan: expected loss in {LOSSES}, got {loss!r}")
    gen = torch.Generator().manual_seed(seed)
    fixed_z = torch.randn(snapshot_size, latent_dim, generator=torch.Generator().manual_seed(seed + 1))
    opt_G = torch.optim.Adam(G.parameters(), lr=lr_g, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=lr_d, betas=betas)
    history = GANHistory()
    wanted = set(snapshot_at)
    for it in tqdm(range(1, iterations + 1), desc="GAN", disable=not progress, leave=False, mininterval=1.0):
        if lr_decay:
            scale = 1.0 - (it - 1) / iterations
            opt_G.param_groups[0]["lr"], opt_D.param_groups[0]["lr"] = lr_g * scale, lr_d * scale
        d_loss, g_loss = train_step(G, D, opt_G, opt_D, sample_real(batch_size, gen), latent_dim, gen, loss, d_steps)
        history.d_loss.append(d_loss)
        history.g_loss.append(g_loss)
        if it in wanted:
            with torch.no_grad():
                history.snapshots[it] = G(fixed_z)
            if on_snapshot is not None:
                on_snapshot(it, G, D)
    return history


@dataclass(frozen=True)
class Coverage:
    """The result of ``mode_coverage``.

    modes: how many modes received at least ``min_fraction`` of the samples.
    high_quality: the fraction of samples within ``k`` std of some mode.
    counts: samples assigned to each mode (nearest centre, within ``k`` std), shape (n_modes,).
    """

    modes: int
    high_quality: float
    counts: torch.Tensor

    @property
    def n_modes(self) -> int:
        return int(self.counts.numel())


def mode_coverage(samples: torch.Tensor, centers: torch.Tensor, std: float, k: float = 3.0,
                  min_fraction: float = 0.01) -> Coverage:
    """Measure how well samples cover a mixture of isotropic Gaussians.

    A sample is *high quality* when it lies within ``k * std`` of its nearest
    centre; a mode is *covered* when at least ``min_fraction`` of all samples
    are high-quality samples assigned to it.

    Args:
        samples: (n, d). centers: (n_modes, d). std: the modes' standard deviation.

    Returns a ``Coverage`` (modes covered, high-quality fraction, per-mode counts).
    """
    _check_batch("samples", samples, None, "mode_coverage")
    _check_batch("centers", centers, samples.shape[1], "mode_coverage")
    if samples.shape[0] == 0:
        raise ValueError("mode_coverage: expected at least one sample, got (0, d)")
    for name, value in [("std", std), ("k", k)]:
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"mode_coverage: expected a positive finite {name}, got {value!r}")
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"mode_coverage: expected 0 <= min_fraction <= 1, got {min_fraction!r}")
    distance = torch.cdist(samples.double(), centers.double())  # (n, n_modes)
    nearest_distance, nearest = distance.min(dim=1)
    good = nearest_distance <= k * std
    counts = torch.bincount(nearest[good], minlength=centers.shape[0])
    covered = int(((counts > 0) & (counts >= min_fraction * samples.shape[0])).sum())
    return Coverage(covered, float(good.double().mean()), counts)
