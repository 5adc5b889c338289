"""Generative adversarial networks, small enough to read (chapter 5).

A generator G maps noise z (n, latent_dim) to samples (n, data_dim); a
discriminator D maps samples (n, data_dim) to one logit each, (n,): the log-odds
that the sample is real. The two play the minimax game

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]

with D(x) = sigmoid(logit). Everything is written in terms of logits, so that
``log D = -softplus(-logit)`` and ``log(1 - D) = -softplus(logit)`` never
overflow.

* ``make_generator``, ``make_discriminator``: MLP builders (chapter 5, "Training
  a GAN on the ring"). With ``seeds=[...]`` they return k networks, one per
  seed, as one batched model: inputs (k, n, d) or (n, d), outputs (k, n, ...).
* ``discriminator_loss``, ``generator_loss``: the two players' losses
  (the generator's either "saturating", log(1 - D(G(z))), or
  "non-saturating", -log D(G(z))); per seed for batched logits (k, n).
* ``MinibatchStd`` and ``Pack``: two ways to let the discriminator see more
  than one sample at a time, remedies for mode dropping (chapter 5, "Remedies").
* ``train_step``, ``train_gan``: alternating updates, with a progress bar.
* ``mode_coverage``: how many modes of a mixture a set of samples covers,
  and what fraction of samples lands near some mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from companion._checks import check_choice, check_positive, check_probability, check_tensor
from companion.seeds import StackedLinear
from companion import training
from companion.training import History, generator, init_linear_, mlp

LOSSES = ("saturating", "non-saturating")
OUTPUTS = ("identity", "sigmoid")


class MinibatchStd(nn.Module):
    """Append the batch's average standard deviation as one more feature.

    (n, d) -> (n, d + 1), or per seed (k, n, d) -> (k, n, d + 1). Every row
    gets the same extra value: the standard deviation of each feature over the
    batch, averaged over features. A discriminator with this layer can tell a
    batch of near-identical samples from a varied one, which a per-sample
    discriminator cannot (Karras et al., 2018, a simplification of Salimans et
    al.'s minibatch discrimination, 2016). Chapter 5, "Remedies".
    """

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        check_tensor("MinibatchStd", "h", h, floating=True)
        if h.ndim not in (2, 3):
            raise ValueError(f"MinibatchStd: expected h of shape (n, d) or (k, n, d), got {tuple(h.shape)}")
        n = h.shape[-2]
        if n < 2:
            raise ValueError(f"MinibatchStd: expected a batch of at least 2 rows, got {n}")
        centered = h - h.mean(dim=-2, keepdim=True)
        spread = ((centered * centered).sum(dim=-2) / (n - 1)).sqrt().mean(dim=-1)  # torch.std, but faster: (k,) or ()
        return torch.cat([h, spread[..., None, None].expand(*h.shape[:-1], 1)], dim=-1)


class Pack(nn.Module):
    """Concatenate groups of ``m`` samples into one input: (n, d) -> (n // m, m * d).

    Per seed, (k, n, d) -> (k, n // m, m * d). A discriminator behind this
    layer judges ``m`` samples at once (PacGAN, Lin et al., 2018): a group
    drawn from a generator that misses modes is less varied than a group of
    real samples. n must be a multiple of m. Chapter 5, "Remedies".
    """

    def __init__(self, m: int):
        super().__init__()
        check_positive("Pack", "m", m, integer=True)
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("Pack", "x", x)
        if x.ndim not in (2, 3):
            raise ValueError(f"Pack: expected x of shape (n, d) or (k, n, d), got {tuple(x.shape)}")
        n, d = x.shape[-2:]
        if n % self.m:
            raise ValueError(f"Pack: expected a batch size that is a multiple of {self.m}, got {n}")
        return x.reshape(*x.shape[:-2], n // self.m, self.m * d)


class Logit(nn.Module):
    """The discriminator's last step: (..., n, 1) -> (..., n)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(-1)


def _check_sizes(fn: str, **sizes: int) -> None:
    for name, value in sizes.items():
        check_positive(fn, name, value, integer=True)


def stack(nets: Sequence[nn.Sequential], seeds: Sequence[int]) -> nn.Sequential:
    """k networks of one architecture as one batched model, one per seed.

    Every ``nn.Linear`` becomes a :class:`~companion.seeds.StackedLinear`
    holding the k copies; the parameter-free modules (activations,
    ``MinibatchStd``, ``Pack``, ``Logit``) work on (k, n, d) as they are.
    Input (n, d), shared by the seeds, or (k, n, d); output (k, n, ...).
    The result has attributes ``n_seeds`` and ``seeds``.
    """
    if len(nets) != len(seeds) or not nets:
        raise ValueError(f"stack: expected one network per seed, got {len(nets)} networks and {len(seeds)} seeds")
    layers = []
    for position, module in enumerate(nets[0]):
        if isinstance(module, nn.Linear):
            layers.append(StackedLinear.from_linears([net[position] for net in nets]))
        else:
            layers.append(module)
    batched = nn.Sequential(*layers)
    batched.n_seeds, batched.seeds = len(nets), [int(s) for s in seeds]
    return batched


def unstack(batched: nn.Sequential, i: int, template: nn.Sequential) -> nn.Sequential:
    """Seed i of a model made by :func:`stack`, copied into ``template`` (a network of the same architecture)."""
    stacked_layers = [m for m in batched if isinstance(m, StackedLinear)]
    linears = [m for m in template if isinstance(m, nn.Linear)]
    if len(stacked_layers) != len(linears):
        raise ValueError(f"unstack: expected a template with {len(stacked_layers)} linear layers, got {len(linears)}")
    with torch.no_grad():
        for layer, stacked in zip(linears, stacked_layers):
            layer.weight.copy_(stacked.weight[i].T)
            layer.bias.copy_(stacked.bias[i, 0])
    return template


def make_generator(latent_dim: int, data_dim: int, hidden: int = 128, depth: int = 2, seed: int = 0,
                   output: str = "identity", seeds: Sequence[int] | None = None) -> nn.Sequential:
    """An MLP generator: z (n, latent_dim) -> x (n, data_dim).

    ``depth`` hidden layers of width ``hidden`` with ReLU, then a linear layer
    and ``output`` ("identity", or "sigmoid" for pixels in [0, 1]): it is
    ``companion.training.mlp`` with weights drawn from ``seed``. With
    ``seeds=[s1, ..., sk]``: k such generators (seed i exactly
    ``make_generator(..., seed=seeds[i])``) as one batched model,
    z (k, n, latent_dim) -> (k, n, data_dim).
    """
    _check_sizes("make_generator", latent_dim=latent_dim, data_dim=data_dim, hidden=hidden, depth=depth)
    check_choice("make_generator", "output", output, OUTPUTS)
    sizes = [latent_dim] + [hidden] * depth + [data_dim]
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        return stack([make_generator(latent_dim, data_dim, hidden, depth, s, output) for s in seeds], seeds)
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own initialization draws from the global RNG
        return mlp(sizes, "relu", seed=seed, output=output)


def make_discriminator(data_dim: int, hidden: int = 128, depth: int = 2, seed: int = 0,
                       minibatch_std: bool = False, pack: int = 1,
                       seeds: Sequence[int] | None = None) -> nn.Sequential:
    """An MLP discriminator: x (n, data_dim) -> logits (n,).

    ``depth`` hidden layers of width ``hidden`` with LeakyReLU(0.2), weights
    drawn from ``companion.training.generator(seed)``. With
    ``minibatch_std=True`` a ``MinibatchStd`` layer feeds the batch's spread
    into the output layer. With ``pack=m`` > 1 it judges groups of m samples
    (see ``Pack``) and returns n // m logits. With ``seeds=[...]``: one such
    discriminator per seed as one batched model, (k, n, data_dim) -> (k, n // pack).
    """
    _check_sizes("make_discriminator", data_dim=data_dim, hidden=hidden, depth=depth, pack=pack)
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        return stack([make_discriminator(data_dim, hidden, depth, s, minibatch_std, pack) for s in seeds], seeds)
    g = generator(seed)
    layers: list[nn.Module] = [Pack(pack)] if pack > 1 else []
    width = data_dim * pack
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own initialization draws from the global RNG
        for _ in range(depth):
            layers += [init_linear_(nn.Linear(width, hidden), "torch", g), nn.LeakyReLU(0.2)]
            width = hidden
        if minibatch_std:
            layers.append(MinibatchStd())
        layers += [init_linear_(nn.Linear(width + int(minibatch_std), 1), "torch", g), Logit()]
    return nn.Sequential(*layers)


def _check_logits(fn: str, name: str, t: object) -> None:
    check_tensor(fn, name, t, floating=True)
    if t.ndim not in (1, 2):
        raise ValueError(f"{fn}: expected {name} of shape (n,) or (k, n), got {tuple(t.shape)}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss, -E[log D(x)] - E[log(1 - D(G(z)))]: binary cross-entropy.

    Args: logits of shape (n,) and (m,), or (k, n) and (k, m) for k seeds.
    Returns a scalar, or one loss per seed (k,).
    """
    _check_logits("discriminator_loss", "real_logits", real_logits)
    _check_logits("discriminator_loss", "fake_logits", fake_logits)
    return F.softplus(-real_logits).mean(dim=-1) + F.softplus(fake_logits).mean(dim=-1)


def generator_loss(fake_logits: torch.Tensor, kind: str = "non-saturating") -> torch.Tensor:
    """The generator's loss on D's logits for generated samples: (n,) -> scalar, or (k, n) -> (k,).

    * "saturating": E[log(1 - D(G(z)))] = -E[softplus(logit)], the minimax game's own term.
      Its gradient with respect to the logit is -D, which vanishes when D wins (D -> 0).
    * "non-saturating": -E[log D(G(z))] = E[softplus(-logit)]. Its gradient is
      -(1 - D), which is largest when D wins.

    Chapter 5, "Two losses for the generator".
    """
    check_choice("generator_loss", "kind", kind, LOSSES)
    _check_logits("generator_loss", "fake_logits", fake_logits)
    if kind == "saturating":
        return -F.softplus(fake_logits).mean(dim=-1)
    return F.softplus(-fake_logits).mean(dim=-1)


def _n_seeds(model: nn.Module) -> int | None:
    return getattr(model, "n_seeds", None)


def _noise(shape: tuple[int, ...], gens: list[torch.Generator], stacked: bool) -> torch.Tensor:
    """Noise of ``shape`` (n, latent_dim): from one generator, or (k, n, latent_dim), seed i from gens[i]."""
    if not stacked:
        return torch.randn(shape, generator=gens[0])
    return torch.stack([torch.randn(shape, generator=g) for g in gens])


def train_step(G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
               real: torch.Tensor, latent_dim: int, generator: torch.Generator | Sequence[torch.Generator],
               loss: str = "non-saturating", d_steps: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One round of the game: ``d_steps`` discriminator updates, then one generator update.

    Args:
        real: a batch of real samples, (n, data_dim), or (k, n, data_dim) for k seeds.
        generator: the source of the noise z, (n, latent_dim), drawn fresh for
            each update; for k seeds a list of k generators, one per seed.

    Returns the last discriminator loss and the generator loss, detached:
    scalars, or (k,) per seed. With k seeds the losses are summed over seeds
    before ``backward``, so each seed's weights get exactly its own gradient.
    """
    check_tensor("train_step", "real", real, floating=True)
    stacked = real.ndim == 3
    gens = list(generator) if stacked else [generator]
    if stacked and len(gens) != real.shape[0]:
        raise ValueError(f"train_step: expected {real.shape[0]} generators, one per seed, got {len(gens)}")
    shape = (real.shape[-2], latent_dim)
    for _ in range(d_steps):
        with torch.no_grad():
            fake = G(_noise(shape, gens, stacked))
        d_loss = discriminator_loss(D(real), D(fake))
        opt_D.zero_grad(set_to_none=True)
        d_loss.sum().backward()
        opt_D.step()
    g_loss = generator_loss(D(G(_noise(shape, gens, stacked))), loss)
    opt_G.zero_grad(set_to_none=True)
    g_loss.sum().backward()
    opt_G.step()
    return d_loss.detach(), g_loss.detach()


@dataclass
class GANHistory(History):
    """What ``train_gan`` records: ``d_loss`` and ``g_loss`` every step (``h["d_loss"]``:
    (steps,), or (steps, k) for k seeds), and ``snapshots``: step -> samples of G
    from a fixed noise batch, (snapshot_size, data_dim) or (k, snapshot_size, data_dim)."""

    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)


def train_gan(G: nn.Module, D: nn.Module, sample_real: Callable[[int, torch.Generator], torch.Tensor],
              steps: int, latent_dim: int, batch_size: int = 256, lr_g: float = 1e-3, lr_d: float = 1e-3,
              betas: tuple[float, float] = (0.5, 0.999), loss: str = "non-saturating", d_steps: int = 1,
              lr_decay: bool = False, snapshot_at: Sequence[int] = (), snapshot_size: int = 2500,
              seed: int | Sequence[int] = 0,
              on_snapshot: Callable[[int, nn.Module, nn.Module], None] | None = None,
              progress: bool = True) -> GANHistory:
    """Train G and D against each other with Adam for ``steps`` rounds of ``train_step``.

    Args:
        sample_real: ``sample_real(n, generator)`` returns n real samples, (n, data_dim).
        snapshot_at: steps (counted from 1) after which to record ``snapshot_size``
            samples of G, drawn from a fixed noise batch, and call ``on_snapshot(step, G, D)``.
        seed: seeds the ``torch.Generator`` that draws real batches and noise.
            For batched models (``make_generator(..., seeds=...)``) a sequence
            of k seeds: seed i's data and noise come from ``seed[i]`` alone, so
            seed i trains as it would on its own.
        lr_decay: decay both learning rates linearly to zero over the run.

    Returns a ``GANHistory``. G and D are trained in place. Chapter 5, "Training a GAN on the ring".
    """
    _check_sizes("train_gan", steps=steps, batch_size=batch_size, latent_dim=latent_dim, d_steps=d_steps)
    check_choice("train_gan", "loss", loss, LOSSES)
    for name, lr in [("lr_g", lr_g), ("lr_d", lr_d)]:
        check_positive("train_gan", name, lr)
    for beta in betas:
        check_probability("train_gan", "each of betas", beta, open_right=True)
    k = _n_seeds(G)
    if k != _n_seeds(D):
        raise ValueError(f"train_gan: expected G and D batched over the same seeds, got {k} and {_n_seeds(D)}")
    seeds = [int(s) for s in seed] if isinstance(seed, Sequence) else [int(seed)]
    if len(seeds) != (k or 1):
        raise ValueError(f"train_gan: expected {k or 1} seeds (one per batched network), got {len(seeds)}")
    gens = [generator(s) for s in seeds]
    fixed_z = [torch.randn(snapshot_size, latent_dim, generator=generator(s + 1)) for s in seeds]
    fixed = torch.stack(fixed_z) if k else fixed_z[0]
    opt_G = torch.optim.Adam(G.parameters(), lr=lr_g, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=lr_d, betas=betas)
    history = GANHistory()
    wanted = set(snapshot_at)
    bar = training.progress(range(1, steps + 1), progress, desc="GAN", leave=False, mininterval=1.0)
    for step in bar:
        if lr_decay:
            scale = 1.0 - (step - 1) / steps
            opt_G.param_groups[0]["lr"], opt_D.param_groups[0]["lr"] = lr_g * scale, lr_d * scale
        if k:
            real = torch.stack([sample_real(batch_size, g) for g in gens])
            d_loss, g_loss = train_step(G, D, opt_G, opt_D, real, latent_dim, gens, loss, d_steps)
        else:
            real = sample_real(batch_size, gens[0])
            d_loss, g_loss = train_step(G, D, opt_G, opt_D, real, latent_dim, gens[0], loss, d_steps)
        history.log(step, d_loss=d_loss, g_loss=g_loss)
        if step in wanted:
            with torch.no_grad():
                history.snapshots[step] = G(fixed)
            if on_snapshot is not None:
                on_snapshot(step, G, D)
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
    are high-quality samples assigned to it. Chapter 5, "A ring of eight Gaussians".

    Args:
        samples: (n, d). centers: (n_modes, d). std: the modes' standard deviation.

    Returns a ``Coverage`` (modes covered, high-quality fraction, per-mode counts).
    """
    check_tensor("mode_coverage", "samples", samples, shape=(None, "d"))
    check_tensor("mode_coverage", "centers", centers, shape=(None, samples.shape[1]))
    if samples.shape[0] == 0:
        raise ValueError("mode_coverage: expected at least one sample, got (0, d)")
    for name, value in [("std", std), ("k", k)]:
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"mode_coverage: expected a positive finite {name}, got {value!r}")
    check_probability("mode_coverage", "min_fraction", min_fraction)
    distance = torch.cdist(samples.double(), centers.double())  # (n, n_modes)
    nearest_distance, nearest = distance.min(dim=1)
    good = nearest_distance <= k * std
    counts = torch.bincount(nearest[good], minlength=centers.shape[0])
    covered = int(((counts > 0) & (counts >= min_fraction * samples.shape[0])).sum())
    return Coverage(covered, float(good.double().mean()), counts)
