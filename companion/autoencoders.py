"""Autoencoders: undercomplete, denoising and variational (chapter 4).

Shapes, for a batch of n examples of width d (64 for the 8x8 digits):

* ``Autoencoder.encode``: x (n, d) -> code (n, k); ``decode``: (n, k) -> (n, d)
* ``VAE.encode``: x (n, d) -> (mu, logvar), each (n, k); ``decode``: z (n, k) -> (n, d)
* the VAE's latent is z = mu + exp(logvar / 2) * eps with eps ~ N(0, I)
  (the reparameterization trick, ``reparameterize``)
* ``vae_loss`` is the negative ELBO per example, averaged over the batch:
  reconstruction (binary cross-entropy summed over the d pixels) plus
  KL(q(z|x) || N(0, I)) (summed over the k latent dimensions), in nats.

Pixels are expected in [0, 1]; decoders end in a sigmoid.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}


def _check_batch(x: object, width: int, name: str, where: str) -> None:
    """Raise a clear error unless x is a float tensor of shape (n, width)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"{where}: expected {name} of shape (n, {width}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{where}: expected a floating-point {name}, got dtype {x.dtype}")


def _check_sizes(n_inputs: int, code_size: int, hidden: Sequence[int], where: str) -> list[int]:
    sizes = [n_inputs, *hidden, code_size]
    if not all(isinstance(s, int) and s > 0 for s in sizes):
        raise ValueError(f"{where}: expected positive integer sizes, got n_inputs={n_inputs}, "
                         f"hidden={tuple(hidden)}, code/latent size={code_size}")
    return sizes


def mlp(sizes: Sequence[int], activation: str = "relu", output: str = "identity") -> nn.Sequential:
    """Linear layers of the given widths, ``activation`` between them, ``output`` after the last.

    ``mlp([64, 128, 2])`` maps (n, 64) -> (n, 2). ``output`` is "identity" or "sigmoid".
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"mlp: unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
    if output not in ("identity", "sigmoid"):
        raise ValueError(f"mlp: unknown output {output!r}; expected 'identity' or 'sigmoid'")
    layers: list[nn.Module] = []
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(m, n))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    if output == "sigmoid":
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """An undercomplete MLP autoencoder: x -> code -> reconstruction.

    Args:
        n_inputs: width d of an input row (64 for the 8x8 digits).
        code_size: width k of the code, the bottleneck (k < d).
        hidden: widths of the encoder's hidden layers; the decoder mirrors them.
            ``hidden=()`` with ``activation="identity"`` and ``output="identity"``
            is a linear autoencoder, which can at best match PCA.
        activation: "relu", "tanh" or "identity", between layers.
        output: the decoder's last nonlinearity, "sigmoid" (pixels in (0, 1)) or "identity".
        seed: seeds the initial weights, without touching torch's global generator.
    """

    def __init__(
        self,
        n_inputs: int = 64,
        code_size: int = 2,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
        output: str = "sigmoid",
        seed: int = 0,
    ) -> None:
        super().__init__()
        sizes = _check_sizes(n_inputs, code_size, hidden, "Autoencoder")
        self.n_inputs, self.code_size = n_inputs, code_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = mlp(sizes, activation)
            self.decoder = mlp(sizes[::-1], activation, output)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, n_inputs) -> the code, (n, code_size)."""
        _check_batch(x, self.n_inputs, "x", "Autoencoder.encode")
        return self.encoder(x)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """(n, code_size) -> the reconstruction, (n, n_inputs)."""
        _check_batch(code, self.code_size, "code", "Autoencoder.decode")
        return self.decoder(code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, n_inputs) -> reconstruction (n, n_inputs)."""
        return self.decode(self.encode(x))


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample z ~ N(mu, exp(logvar)) written as a differentiable function of mu and logvar.

    z = mu + exp(logvar / 2) * eps, with eps ~ N(0, I) drawn from ``generator``:
    the randomness sits in eps, so gradients flow to mu and logvar.
    mu, logvar: (n, k) -> z: (n, k).
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"reparameterize: expected mu and logvar of the same shape, got {tuple(mu.shape)} "
                         f"and {tuple(logvar.shape)}")
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


class VAE(nn.Module):
    """A variational autoencoder with a Gaussian encoder and a Bernoulli decoder.

    The encoder gives, for each x, the mean and log-variance of q(z | x) =
    N(mu, diag(exp(logvar))); the decoder gives the pixel probabilities of p(x | z).

    Args:
        n_inputs: width d of an input row.
        latent_size: width k of z.
        hidden: widths of the encoder's hidden layers; the decoder mirrors them.
        activation: "relu", "tanh" or "identity".
        seed: seeds the initial weights, without touching torch's global generator.
    """

    def __init__(
        self,
        n_inputs: int = 64,
        latent_size: int = 2,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
        seed: int = 0,
    ) -> None:
        super().__init__()
        sizes = _check_sizes(n_inputs, latent_size, hidden, "VAE")
        self.n_inputs, self.latent_size = n_inputs, latent_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # one head of width 2k: the first k outputs are mu, the last k are logvar
            self.encoder = mlp([*sizes[:-1], 2 * latent_size], activation)
            self.decoder = mlp(sizes[::-1], activation, "sigmoid")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, n_inputs) -> (mu, logvar), each (n, latent_size)."""
        _check_batch(x, self.n_inputs, "x", "VAE.encode")
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_size) -> pixel probabilities, (n, n_inputs)."""
        _check_batch(z, self.latent_size, "z", "VAE.decode")
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n, n_inputs) -> (reconstruction (n, n_inputs), mu (n, k), logvar (n, k)), z sampled once."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, generator)), mu, logvar

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode n draws from the prior N(0, I): (n, n_inputs) pixel probabilities."""
        return self.decode(torch.randn((n, self.latent_size), generator=generator))


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) for each row, in closed form.

    0.5 * sum_j (exp(logvar_j) + mu_j**2 - 1 - logvar_j).  (n, k), (n, k) -> (n,).
    """
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(f"gaussian_kl: expected mu and logvar of the same shape (n, k), got "
                         f"{tuple(mu.shape)} and {tuple(logvar.shape)}")
    return 0.5 * (logvar.exp() + mu**2 - 1.0 - logvar).sum(dim=1)


class VAELoss(NamedTuple):
    """The negative ELBO and its two parts, each averaged over the batch (nats per example)."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def vae_loss(
    x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0
) -> VAELoss:
    """The negative ELBO: E_q[-log p(x | z)] + beta * KL(q(z | x) || p(z)), one sample of z.

    x, x_hat: (n, d) with x in [0, 1] and x_hat the decoder's probabilities;
    mu, logvar: (n, k). The reconstruction term is the binary cross-entropy
    summed over pixels. beta = 1 gives the ELBO proper.
    """
    if x.shape != x_hat.shape or x.ndim != 2:
        raise ValueError(f"vae_loss: expected x and x_hat of the same shape (n, d), got "
                         f"{tuple(x.shape)} and {tuple(x_hat.shape)}")
    if mu.shape[0] != x.shape[0]:
        raise ValueError(f"vae_loss: expected mu with {x.shape[0]} rows (one per example), got {tuple(mu.shape)}")
    reconstruction = F.binary_cross_entropy(x_hat, x, reduction="none").sum(dim=1).mean()
    kl = gaussian_kl(mu, logvar).mean()
    return VAELoss(reconstruction + beta * kl, reconstruction, kl)


def corrupt(x: torch.Tensor, drop: float = 0.0, noise_std: float = 0.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupt a batch for a denoising autoencoder: zero a random fraction ``drop`` of the
    pixels (masking noise), add Gaussian noise of std ``noise_std``, clip to [0, 1].

    (n, d) -> (n, d). The input is not modified.
    """
    if not 0.0 <= drop < 1.0:
        raise ValueError(f"corrupt: expected 0 <= drop < 1, got {drop}")
    if noise_std < 0.0:
        raise ValueError(f"corrupt: expected noise_std >= 0, got {noise_std}")
    out = x
    if drop > 0.0:
        out = out * (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= drop)
    if noise_std > 0.0:
        out = out + noise_std * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return out.clamp(0.0, 1.0)


def _adam(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam; the fused version where this torch has it (one kernel per step: about 30% faster here)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # torch < 2.4 has no fused Adam on the CPU
        return torch.optim.Adam(params, lr=lr)


def train(
    model: Autoencoder | VAE,
    X: torch.Tensor,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    drop: float = 0.0,
    noise_std: float = 0.0,
    beta: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    milestones: int = 0,
) -> dict[str, list[float]]:
    """Train with Adam on minibatches of X (n, d); return the per-epoch mean losses.

    An ``Autoencoder`` minimizes the mean squared error between its output and
    the clean X; with ``drop`` or ``noise_std`` it sees ``corrupt(x)`` as input
    (a denoising autoencoder). A ``VAE`` minimizes ``vae_loss`` with ``beta``.
    ``seed`` fixes the batch order, the corruption and the VAE's samples.

    Returns ``{"loss": [...]}`` for an Autoencoder, and for a VAE also
    ``"reconstruction"`` and ``"kl"``: one value per epoch. Shows a tqdm bar if
    ``progress``, and prints ``milestones`` evenly spaced lines.
    """
    if not isinstance(model, (Autoencoder, VAE)):
        raise TypeError(f"train: expected an Autoencoder or a VAE, got {type(model).__name__}")
    _check_batch(X, model.n_inputs, "X", "train")
    if not (isinstance(epochs, int) and epochs > 0 and isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f"train: expected positive integer epochs and batch_size, got {epochs} and {batch_size}")
    is_vae = isinstance(model, VAE)
    keys = ["loss", "reconstruction", "kl"] if is_vae else ["loss"]
    history: dict[str, list[float]] = {key: [] for key in keys}
    generator = torch.Generator().manual_seed(seed)
    optimizer = _adam(list(model.parameters()), lr)
    n = X.shape[0]
    report = {round(epochs * (i + 1) / milestones) for i in range(milestones)} if milestones else set()
    model.train()
    bar = tqdm(range(1, epochs + 1), desc=type(model).__name__, disable=not progress, leave=False)
    for epoch in bar:
        sums = torch.zeros(len(keys))
        for batch in torch.randperm(n, generator=generator).split(batch_size):
            x = X[batch]
            if is_vae:
                parts = vae_loss(x, *model(x, generator), beta=beta)
                loss = parts.total
                sums += torch.stack(parts).detach() * len(batch)
            else:
                inputs = corrupt(x, drop, noise_std, generator) if drop or noise_std else x
                loss = F.mse_loss(model(inputs), x)
                sums += loss.detach() * len(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        for key, value in zip(keys, (sums / n).tolist()):
            history[key].append(value)
        bar.set_postfix(loss=f"{history['loss'][-1]:.4g}", refresh=False)
        if epoch in report:
            parts_text = "".join(f", {key} {history[key][-1]:.4g}" for key in keys[1:])
            print(f"epoch {epoch:>4}: loss {history['loss'][-1]:.4g}{parts_text}")
    model.eval()
    return history
