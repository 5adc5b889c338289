"""Autoencoders: undercomplete, denoising and variational (chapter 4).

Shapes, for a batch of n examples of width d (64 for the 8x8 digits):

* ``Autoencoder.encode``: x (n, d) -> code (n, k); ``decode``: (n, k) -> (n, d)
* ``VAE.encode``: x (n, d) -> (mu, logvar), each (n, k); ``decode``: z (n, k) -> (n, d)
* the VAE's latent is z = mu + exp(logvar / 2) * eps with eps ~ N(0, I)
  (the reparameterization trick, ``reparameterize``)
* ``vae_loss`` is the negative ELBO per example, averaged over the batch:
  reconstruction (binary cross-entropy summed over the d pixels) plus
  KL(q(z|x) || N(0, I)) (summed over the k latent dimensions), in nats.

Many seeds at once: built with ``seeds=[...]``, an ``Autoencoder`` or ``VAE``
is k models of one shape (their encoder and decoder are
``companion.seeds.stacked_mlp``), every output gains a leading seed
dimension (k, n, ...), and ``train`` trains all k in one run, each seed
exactly as it would train alone.

Encoders and decoders are the floor's ``companion.training.mlp`` (PyTorch's
default initialization); pixels are expected in [0, 1] and decoders end in a
sigmoid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from companion._checks import check_choice, check_positive, check_probability, check_tensor
from companion.seeds import stacked_mlp
from companion.training import History, generator, make_optimizer, mlp, progress_range

ACTIVATIONS = ("relu", "tanh", "identity")
OUTPUTS = ("sigmoid", "identity")
DECODER_SEED_OFFSET = 1_000_003
"""The decoder of seed s is drawn with seed s + DECODER_SEED_OFFSET, so it shares no draws with the encoder."""


def _sizes(where: str, n_inputs: int, code_size: int, hidden: Sequence[int]) -> list[int]:
    sizes = [n_inputs, *hidden, code_size]
    for width in sizes:
        check_positive(where, "every width (n_inputs, hidden, code size)", width, integer=True)
    return sizes


def _net(sizes: list[int], activation: str, output: str, seeds: list[int] | None, seed: int) -> nn.Module:
    if seeds is None:
        return mlp(sizes, activation, seed=seed, output=output)
    return stacked_mlp(sizes, seeds, activation, output=output)


def _seed_list(where: str, seeds: Sequence[int] | None) -> list[int] | None:
    if seeds is None:
        return None
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"{where}: expected distinct seeds, got {seeds}")
    return seeds


class _Model(nn.Module):
    n_inputs: int
    seeds: list[int] | None

    def _check(self, where: str, name: str, x: object, width: int) -> None:
        check_tensor(where, name, x, floating=True)
        k = len(self.seeds) if self.seeds is not None else None
        if k is not None and x.ndim == 3:
            if x.shape[0] != k or x.shape[2] != width:
                raise ValueError(f"{where}: expected {name} of shape (n, {width}) or ({k}, n, {width}), "
                                 f"got {tuple(x.shape)}")
            return
        if x.ndim != 2 or x.shape[1] != width:
            raise ValueError(f"{where}: expected {name} of shape (n, {width}), got {tuple(x.shape)}")

    @property
    def n_seeds(self) -> int | None:
        """k for a model of k seeds (``companion.training`` recognises it), None for one model."""
        return None if self.seeds is None else len(self.seeds)


class Autoencoder(_Model):
    """An undercomplete MLP autoencoder: x -> code -> reconstruction.

    Args:
        n_inputs: width d of an input row (64 for the 8x8 digits).
        code_size: width k of the code, the bottleneck (k < d).
        hidden: widths of the encoder's hidden layers; the decoder mirrors them.
            ``hidden=()`` with ``activation="identity"`` and ``output="identity"``
            is a linear autoencoder, which can at best match PCA.
        activation: "relu", "tanh" or "identity", between layers.
        output: the decoder's last nonlinearity, "sigmoid" (pixels in (0, 1)) or "identity".
        seed: the encoder is ``mlp(..., seed=seed)``, the decoder is drawn with
            ``seed + DECODER_SEED_OFFSET``; torch's global generator is untouched.
        seeds: instead of one model, k models (one per seed) in one; every output
            then has a leading dimension k.

    Taught in chapter 4, "An undercomplete autoencoder".
    """

    def __init__(self, n_inputs: int = 64, code_size: int = 2, hidden: Sequence[int] = (128,),
                 activation: str = "relu", output: str = "sigmoid", seed: int = 0,
                 seeds: Sequence[int] | None = None) -> None:
        super().__init__()
        sizes = _sizes("Autoencoder", n_inputs, code_size, hidden)
        check_choice("Autoencoder", "activation", activation, ACTIVATIONS)
        check_choice("Autoencoder", "output", output, OUTPUTS)
        self.n_inputs, self.code_size, self.seeds = n_inputs, code_size, _seed_list("Autoencoder", seeds)
        decoder_seeds = None if self.seeds is None else [s + DECODER_SEED_OFFSET for s in self.seeds]
        self.encoder = _net(sizes, activation, "identity", self.seeds, seed)
        self.decoder = _net(sizes[::-1], activation, output, decoder_seeds, seed + DECODER_SEED_OFFSET)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, n_inputs) -> the code, (n, code_size); (k, n, code_size) for k seeds."""
        self._check("Autoencoder.encode", "x", x, self.n_inputs)
        return self.encoder(x)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """(n, code_size) -> the reconstruction, (n, n_inputs); (k, n, n_inputs) for k seeds."""
        self._check("Autoencoder.decode", "code", code, self.code_size)
        return self.decoder(code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, n_inputs) -> reconstruction (n, n_inputs)."""
        return self.decode(self.encode(x))


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample z ~ N(mu, exp(logvar)) written as a differentiable function of mu and logvar.

    z = mu + exp(logvar / 2) * eps, with eps ~ N(0, I) drawn from ``generator``:
    the randomness sits in eps, so gradients flow to mu and logvar.
    mu, logvar: (..., k) -> z: (..., k). Chapter 4, "The reparameterization trick".
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"reparameterize: expected mu and logvar of the same shape, got {tuple(mu.shape)} "
                         f"and {tuple(logvar.shape)}")
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


class VAE(_Model):
    """A variational autoencoder with a Gaussian encoder and a Bernoulli decoder.

    The encoder gives, for each x, the mean and log-variance of the
    approximate posterior q(z | x) = N(mu, diag(exp(logvar))); the decoder
    gives the pixel probabilities of p(x | z). The prior is p(z) = N(0, I).

    Args:
        n_inputs: width d of an input row.
        latent_size: width k of z.
        hidden: widths of the encoder's hidden layers; the decoder mirrors them.
        activation: "relu", "tanh" or "identity".
        seed, seeds: as for :class:`Autoencoder`.

    Taught in chapter 4, "Variational autoencoders".
    """

    def __init__(self, n_inputs: int = 64, latent_size: int = 2, hidden: Sequence[int] = (128,),
                 activation: str = "relu", seed: int = 0, seeds: Sequence[int] | None = None) -> None:
        super().__init__()
        sizes = _sizes("VAE", n_inputs, latent_size, hidden)
        check_choice("VAE", "activation", activation, ACTIVATIONS)
        self.n_inputs, self.latent_size, self.seeds = n_inputs, latent_size, _seed_list("VAE", seeds)
        decoder_seeds = None if self.seeds is None else [s + DECODER_SEED_OFFSET for s in self.seeds]
        # one head of width 2k: the first k outputs are mu, the last k are logvar
        self.encoder = _net([*sizes[:-1], 2 * latent_size], activation, "identity", self.seeds, seed)
        self.decoder = _net(sizes[::-1], activation, "sigmoid", decoder_seeds, seed + DECODER_SEED_OFFSET)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, n_inputs) -> (mu, logvar), each (n, latent_size) (or (k, n, latent_size))."""
        self._check("VAE.encode", "x", x, self.n_inputs)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_size) -> pixel probabilities, (n, n_inputs) (or (k, n, n_inputs))."""
        self._check("VAE.decode", "z", z, self.latent_size)
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n, n_inputs) -> (reconstruction (n, n_inputs), mu (n, k), logvar (n, k)), z sampled once."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, generator)), mu, logvar

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode n draws from the prior N(0, I): (n, n_inputs) pixel probabilities."""
        check_positive("VAE.sample", "n", n, integer=True)
        shape = (n, self.latent_size) if self.seeds is None else (len(self.seeds), n, self.latent_size)
        return self.decode(torch.randn(shape, generator=generator))


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) for each row, in closed form.

    0.5 * sum_j (exp(logvar_j) + mu_j**2 - 1 - logvar_j), summed over the last
    dimension: (n, k), (n, k) -> (n,); (s, n, k) -> (s, n).
    Derived in chapter 4, "Variational autoencoders".
    """
    if mu.shape != logvar.shape or mu.ndim < 2:
        raise ValueError(f"gaussian_kl: expected mu and logvar of the same shape (n, k), got "
                         f"{tuple(mu.shape)} and {tuple(logvar.shape)}")
    return 0.5 * (logvar.exp() + mu**2 - 1.0 - logvar).sum(dim=-1)


class VAELoss(NamedTuple):
    """The negative ELBO and its two parts, each averaged over the batch (nats per example).

    Scalars for one model; tensors of shape (k,) for k seeds.
    """

    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def vae_loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = 1.0) -> VAELoss:
    """The negative ELBO: E_q[-log p(x | z)] + beta * KL(q(z | x) || p(z)), one sample of z.

    x, x_hat: (n, d) with x in [0, 1] and x_hat the decoder's probabilities;
    mu, logvar: (n, k). The reconstruction term is the binary cross-entropy
    summed over pixels, a normalized log-likelihood only when x is binary.
    beta = 1 gives the ELBO proper. With a leading seed dimension,
    (k, n, d) and (k, n, latent), every part comes back per seed, (k,).
    """
    if x.shape != x_hat.shape or x.ndim not in (2, 3):
        raise ValueError(f"vae_loss: expected x and x_hat of the same shape (n, d), got "
                         f"{tuple(x.shape)} and {tuple(x_hat.shape)}")
    if mu.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"vae_loss: expected mu with {x.shape[-2]} rows (one per example), got {tuple(mu.shape)}")
    reconstruction = F.binary_cross_entropy(x_hat, x, reduction="none").sum(dim=-1).mean(dim=-1)
    kl = gaussian_kl(mu, logvar).mean(dim=-1)
    return VAELoss(reconstruction + beta * kl, reconstruction, kl)


def corrupt(x: torch.Tensor, drop: float = 0.0, noise_std: float = 0.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupt a batch for a denoising autoencoder: zero a random fraction ``drop`` of the
    pixels (masking noise), add Gaussian noise of std ``noise_std``, clip to [0, 1].

    (n, d) -> (n, d). The input is not modified. Chapter 4, "Denoising autoencoders".
    """
    check_probability("corrupt", "drop", drop, open_right=True)
    check_positive("corrupt", "noise_std", noise_std, allow_zero=True)
    out = x
    if drop > 0.0:
        out = out * (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= drop)
    if noise_std > 0.0:
        out = out + noise_std * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return out.clamp(0.0, 1.0)


def _losses(model: Autoencoder | VAE, x: torch.Tensor, g: torch.Generator, drop: float,
            noise_std: float, beta: float) -> tuple[torch.Tensor, ...]:
    """One model's losses on its batch x (b, d): (total,) or (total, reconstruction, kl)."""
    if isinstance(model, VAE):
        mu, logvar = model.encode(x)
        return tuple(vae_loss(x, model.decode(reparameterize(mu, logvar, g)), mu, logvar, beta))
    inputs = corrupt(x, drop, noise_std, g) if drop or noise_std else x
    return (F.mse_loss(model(inputs), x),)


def train(model: Autoencoder | VAE, X: torch.Tensor, epochs: int, batch_size: int = 128,
          lr: float = 1e-3, drop: float = 0.0, noise_std: float = 0.0, beta: float = 1.0,
          seed: int = 0, progress: bool = False) -> History:
    """Train with Adam on minibatches of X (n, d); return a History with one row per epoch.

    An ``Autoencoder`` minimizes the mean squared error between its output and
    the clean X; with ``drop`` or ``noise_std`` it sees ``corrupt(x)`` as input
    (a denoising autoencoder). A ``VAE`` minimizes ``vae_loss`` with ``beta``.
    ``generator(seed)`` draws the batch order, the corruption and the VAE's
    samples; for a model of k seeds, seed i draws them from
    ``generator(model.seeds[i])`` (``seed`` is not used), so it trains exactly
    as it would alone.

    The history (rows = epochs 1..epochs) holds ``"loss"`` and, for a VAE,
    ``"reconstruction"`` and ``"kl"``: each epoch's mean over its examples,
    shape (epochs,) or (epochs, k). Chapter 4, "An undercomplete autoencoder".
    """
    if not isinstance(model, (Autoencoder, VAE)):
        raise TypeError(f"train: expected an Autoencoder or a VAE, got {type(model).__name__}")
    model._check("train", "X", X, model.n_inputs)
    if X.ndim != 2:
        raise ValueError(f"train: expected X of shape (n, {model.n_inputs}), got {tuple(X.shape)}")
    check_positive("train", "epochs", epochs, integer=True)
    check_positive("train", "batch_size", batch_size, integer=True)
    check_probability("train", "drop", drop, open_right=True)
    check_positive("train", "noise_std", noise_std, allow_zero=True)
    check_positive("train", "beta", beta, allow_zero=True)
    seeds = model.seeds
    generators = [generator(seed)] if seeds is None else [generator(s) for s in seeds]
    names = ("loss", "reconstruction", "kl") if isinstance(model, VAE) else ("loss",)
    optimizer = make_optimizer(model.parameters(), "adam", lr)
    history = History()
    n = X.shape[0]
    model.train()
    for epoch in progress_range(epochs, progress):
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators])  # (k or 1, n)
        sums = torch.zeros(len(names), len(generators), dtype=torch.float64)
        for start in range(0, n, batch_size):
            idx = orders[:, start:start + batch_size]  # (k or 1, b)
            if seeds is None:
                parts = torch.stack(_losses(model, X[idx[0]], generators[0], drop, noise_std, beta))[:, None]
            else:
                parts = _stacked_losses(model, X[idx], generators, drop, noise_std, beta)  # (parts, k)
            optimizer.zero_grad(set_to_none=True)
            parts[0].sum().backward()
            optimizer.step()
            sums += parts.detach().double() * idx.shape[1]
        means = (sums / n).numpy()
        history.log(epoch + 1, **{name: (m[0] if seeds is None else m) for name, m in zip(names, means)})
    model.eval()
    return history


def _stacked_losses(model: Autoencoder | VAE, x: torch.Tensor, generators: list[torch.Generator],
                    drop: float, noise_std: float, beta: float) -> torch.Tensor:
    """The k seeds' losses on their batches x (k, b, d): (parts, k), each seed's noise from its generator."""
    if isinstance(model, VAE):
        mu, logvar = model.encode(x)
        eps = torch.stack([torch.randn(mu.shape[1:], generator=g, dtype=mu.dtype) for g in generators])
        z = mu + torch.exp(0.5 * logvar) * eps
        return torch.stack(tuple(vae_loss(x, model.decode(z), mu, logvar, beta)))
    if drop or noise_std:
        inputs = torch.stack([corrupt(x[i], drop, noise_std, g) for i, g in enumerate(generators)])
    else:
        inputs = x
    return F.mse_loss(model(inputs), x, reduction="none").reshape(x.shape[0], -1).mean(1)[None]
