"""Bayesian deep learning: weights as random variables, and how to tell what a network knows.

Chapter 13 ("Bayesian deep learning"). The pieces, in the chapter's order:

- :func:`tanh_features`, :func:`blr_posterior`, :func:`blr_predictive`: Bayesian linear
  regression on fixed features, with its exact Gaussian posterior and predictive;
- :class:`BayesLinear`, :class:`BayesMLP`, :func:`gaussian_kl`, :func:`train_bbb`:
  Bayes by Backprop (a factorized Gaussian over the weights, trained on the ELBO with
  the reparameterization trick, plain or local), batched over seeds like
  ``companion.seeds``;
- :class:`DropoutMLP`, :func:`sample_predictions`: MC dropout and, with
  ``companion.seeds.stacked_mlp``, deep ensembles;
- :func:`nll`, :func:`expected_calibration_error`, :func:`reliability`,
  :func:`entropy`, :func:`roc_auc`: the metrics of calibration and of
  out-of-distribution detection.

Shapes: k seeds, n examples, d features, c classes, S Monte Carlo samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion._checks import (check_array, check_choice, check_positive, check_probability,
                               check_same_length, check_shape, check_tensor)
from companion.seeds import StackedMLP, stacked_mlp
from companion.training import History, activation_module, generator, progress_range

# ---------------------------------------------------------------- Bayesian linear regression


def tanh_features(x: np.ndarray, n_features: int = 50, scale: float = 2.0, seed: int = 0) -> np.ndarray:
    """Fixed random tanh features of a 1-D input, plus a constant: x (n,) -> (n, n_features + 1).

    Feature j is ``tanh(scale * (a_j * x + b_j))`` with a_j ~ N(0, 1), b_j ~ U(-3, 3),
    drawn once from ``seed``; the last column is 1. Section "An exact answer".
    """
    x = check_array("tanh_features", "x", x, shape=(None,))
    check_positive("tanh_features", "n_features", n_features, integer=True)
    check_positive("tanh_features", "scale", scale)
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n_features)
    b = rng.uniform(-3, 3, size=n_features)
    return np.hstack([np.tanh(scale * (x[:, None] * a + b)), np.ones((len(x), 1))])


def blr_posterior(Phi: np.ndarray, y: np.ndarray, prior_std: float, noise_std: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The exact posterior over w for y = Phi w + noise, w ~ N(0, prior_std^2 I).

    Phi (n, d), y (n,). Returns the posterior mean (d,) and covariance (d, d):
    ``A = Phi^T Phi / noise^2 + I / prior^2``, ``cov = A^-1``,
    ``mean = cov Phi^T y / noise^2``. Section "An exact answer".
    """
    Phi = check_array("blr_posterior", "Phi", Phi, shape=("n", None))
    y = check_array("blr_posterior", "y", y, shape=("n",))
    check_same_length("blr_posterior", ("Phi", "y"), Phi, y)
    check_positive("blr_posterior", "prior_std", prior_std)
    check_positive("blr_posterior", "noise_std", noise_std)
    d = Phi.shape[1]
    precision = Phi.T @ Phi / noise_std**2 + np.eye(d) / prior_std**2
    cov = np.linalg.inv(precision)
    cov = (cov + cov.T) / 2
    mean = np.linalg.solve(precision, Phi.T @ y / noise_std**2)
    return mean, cov


def blr_predictive(Phi: np.ndarray, mean: np.ndarray, cov: np.ndarray, noise_std: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean (m,) and variance (m,) at the rows of Phi (m, d) for w ~ N(mean, cov).

    ``var = diag(Phi cov Phi^T) + noise_std^2``; ``noise_std=0`` gives the variance of
    the function alone (what the weights' uncertainty contributes). Section "An exact answer".
    """
    Phi = check_array("blr_predictive", "Phi", Phi, shape=(None, "d"))
    mean = check_array("blr_predictive", "mean", mean, shape=("d",))
    cov = check_array("blr_predictive", "cov", cov, shape=("d", "d"))
    check_shape("blr_predictive", "mean", mean, (Phi.shape[1],))
    check_positive("blr_predictive", "noise_std", noise_std, allow_zero=True)
    return Phi @ mean, np.einsum("md,de,me->m", Phi, cov, Phi) + noise_std**2


# ---------------------------------------------------------------- Bayes by Backprop


def gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor, prior_std: float) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, prior_std^2)) elementwise, any shape -> the same shape.

    ``log(prior/sigma) + (sigma^2 + mu^2) / (2 prior^2) - 1/2``. Section "Bayes by Backprop".
    """
    check_positive("gaussian_kl", "prior_std", prior_std)
    return (math.log(prior_std) - torch.log(sigma) + (sigma**2 + mu**2) / (2 * prior_std**2) - 0.5)


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class BayesLinear(nn.Module):
    """k factorized-Gaussian linear layers (one per seed): each weight is N(mu, softplus(rho)^2).

    Parameters ``weight_mu``, ``weight_rho`` (k, n_inputs, n_outputs), ``bias_mu``,
    ``bias_rho`` (k, 1, n_outputs) (no bias with ``bias=False``). The prior is
    N(0, prior_std^2) on every weight and bias. ``forward(x)`` takes x (n, n_inputs)
    (shared by the seeds) or (k, n, n_inputs) and returns (k, n, n_outputs):

    - ``local=True`` (local reparameterization, Kingma et al. 2015): the pre-activation of
      each example is drawn from its exact Gaussian, mean ``x @ mu``, variance
      ``x^2 @ sigma^2``, independently per example;
    - ``local=False`` (plain reparameterization, Blundell et al. 2015): one weight matrix
      ``mu + sigma * eps`` per seed per call, shared by the batch (a whole function sample).

    ``sample=False`` uses the means. Section "Bayes by Backprop".
    """

    def __init__(self, n_inputs: int, n_outputs: int, n_seeds: int = 1, prior_std: float = 1.0,
                 init_std: float = 1e-3, bias: bool = True, local: bool = True, seed: int = 0) -> None:
        super().__init__()
        check_positive("BayesLinear", "n_inputs", n_inputs, integer=True)
        check_positive("BayesLinear", "n_outputs", n_outputs, integer=True)
        check_positive("BayesLinear", "n_seeds", n_seeds, integer=True)
        check_positive("BayesLinear", "prior_std", prior_std)
        check_positive("BayesLinear", "init_std", init_std)
        self.n_inputs, self.n_outputs, self.n_seeds = n_inputs, n_outputs, n_seeds
        self.prior_std, self.local = float(prior_std), local
        g = generator(seed)
        bound = 1 / math.sqrt(n_inputs)
        self.weight_mu = nn.Parameter((torch.rand(n_seeds, n_inputs, n_outputs, generator=g) * 2 - 1) * bound)
        self.weight_rho = nn.Parameter(torch.full((n_seeds, n_inputs, n_outputs), _inverse_softplus(init_std)))
        if bias:
            self.bias_mu = nn.Parameter(torch.zeros(n_seeds, 1, n_outputs))
            self.bias_rho = nn.Parameter(torch.full((n_seeds, 1, n_outputs), _inverse_softplus(init_std)))
        else:
            self.bias_mu = self.bias_rho = None
        self._generator = g

    @property
    def weight_sigma(self) -> torch.Tensor:
        return F.softplus(self.weight_rho)

    @property
    def bias_sigma(self) -> torch.Tensor | None:
        return None if self.bias_rho is None else F.softplus(self.bias_rho)

    def kl(self) -> torch.Tensor:
        """KL(q || prior) of each seed's weights and biases, summed: (k,)."""
        total = gaussian_kl(self.weight_mu, self.weight_sigma, self.prior_std).sum((1, 2))
        if self.bias_mu is not None:
            total = total + gaussian_kl(self.bias_mu, self.bias_sigma, self.prior_std).sum((1, 2))
        return total

    def forward(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        if x.ndim == 2:
            x = x.expand(self.n_seeds, *x.shape)
        if x.ndim != 3 or x.shape[0] != self.n_seeds or x.shape[-1] != self.n_inputs:
            raise ValueError(f"BayesLinear: expected x of shape (n, {self.n_inputs}) or "
                             f"({self.n_seeds}, n, {self.n_inputs}), got {tuple(x.shape)}")
        bias_mu = 0 if self.bias_mu is None else self.bias_mu
        if not sample:
            return x @ self.weight_mu + bias_mu
        if self.local:
            mean = x @ self.weight_mu + bias_mu
            var = (x**2) @ self.weight_sigma**2
            if self.bias_mu is not None:
                var = var + self.bias_sigma**2
            eps = torch.randn(mean.shape, generator=self._generator, dtype=mean.dtype)
            return mean + torch.sqrt(var.clamp_min(1e-30)) * eps
        eps = torch.randn(self.weight_mu.shape, generator=self._generator, dtype=x.dtype)
        out = x @ (self.weight_mu + self.weight_sigma * eps)
        if self.bias_mu is not None:
            eps_b = torch.randn(self.bias_mu.shape, generator=self._generator, dtype=x.dtype)
            out = out + self.bias_mu + self.bias_sigma * eps_b
        return out


class BayesMLP(nn.Module):
    """k Bayesian MLPs of widths ``sizes`` (one per seed), :class:`BayesLinear` layers.

    ``forward(x)`` (n, sizes[0]) -> (k, n, sizes[-1]), a fresh sample of the weights
    (or of the pre-activations, ``local=True``) on each call; ``kl()`` -> (k,).
    Section "A Bayesian network with a hidden layer".
    """

    def __init__(self, sizes: Sequence[int], n_seeds: int = 1, prior_std: float = 1.0,
                 activation: str = "tanh", init_std: float = 1e-3, local: bool = True,
                 seed: int = 0) -> None:
        super().__init__()
        self.sizes, self.n_seeds = list(sizes), n_seeds
        self.layers = nn.ModuleList(
            BayesLinear(a, b, n_seeds, prior_std, init_std, local=local, seed=seed + 1000 * i)
            for i, (a, b) in enumerate(zip(self.sizes, self.sizes[1:])))
        self.hidden_fn = activation_module(activation)

    @property
    def local(self) -> bool:
        """Whether the layers draw pre-activations (True) or whole weight matrices (False).

        Setting it sets every layer's ``local``: ``False`` makes one forward pass one
        function, the same weights for every row of the batch (for drawing functions);
        ``True`` is the better choice for training (less gradient variance).
        """
        return all(layer.local for layer in self.layers)

    @local.setter
    def local(self, value: bool) -> None:
        for layer in self.layers:
            layer.local = bool(value)

    def kl(self) -> torch.Tensor:
        return sum(layer.kl() for layer in self.layers)

    def forward(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h, sample=sample)
            if i < len(self.layers) - 1:
                h = self.hidden_fn(h)
        return h


def _nll_terms(out: torch.Tensor, y: torch.Tensor, loss: str, noise_std: float) -> torch.Tensor:
    """Per-seed mean negative log-likelihood of a batch: out (k, b, c), y (b,) or (k, b) -> (k,)."""
    k, b = out.shape[:2]
    if y.ndim == 1:
        y = y.expand(k, b)
    if loss == "cross_entropy":
        return F.cross_entropy(out.reshape(k * b, -1), y.reshape(k * b), reduction="none").reshape(k, b).mean(1)
    residual = out.reshape(k, b) - y.reshape(k, b)
    return (0.5 * residual**2 / noise_std**2).mean(1) + 0.5 * math.log(2 * math.pi * noise_std**2)


def train_bbb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float = 1e-2,
              batch_size: int | None = None, loss: str = "gaussian", noise_std: float = 1.0,
              kl_weight: float = 1.0, seed: int = 0, progress: bool = False) -> History:
    """Bayes by Backprop: minimize the negative ELBO per datum with Adam; return a History.

    model: :class:`BayesLinear` or :class:`BayesMLP` of k seeds; x (n, n_inputs); y (n,)
    real targets (``loss="gaussian"``, likelihood N(f(x), noise_std^2)) or class labels
    (``loss="cross_entropy"``). The loss per datum is
    ``E_q[-log p(y | x, w)]`` (one sample per example per step) ``+ kl_weight * KL(q || p) / n``,
    summed over seeds so that each seed's gradient is its own. Minimizing it minimizes
    KL(q || p(w | D)). The KL to the Gaussian prior is in closed form
    (:func:`gaussian_kl`); Blundell et al. 2015 estimate it by Monte Carlo instead, with a
    scale-mixture prior. ``batch_size=None``: the
    full batch. The history logs ``loss``, ``nll`` and ``kl`` per epoch, each (rows, k).
    Section "Bayes by Backprop".
    """
    check_tensor("train_bbb", "x", x, shape=("n", None), floating=True)
    check_tensor("train_bbb", "y", y)
    check_same_length("train_bbb", ("x", "y"), x, y)
    check_positive("train_bbb", "epochs", epochs, integer=True, allow_zero=True)
    check_choice("train_bbb", "loss", loss, ["gaussian", "cross_entropy"])
    check_positive("train_bbb", "noise_std", noise_std)
    n = len(x)
    batch_size = n if batch_size is None else batch_size
    check_positive("train_bbb", "batch_size", batch_size, integer=True)
    g = generator(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = History()
    for epoch in progress_range(epochs, progress):
        order = torch.randperm(n, generator=g) if batch_size < n else torch.arange(n)
        rows = []
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            nll_k = _nll_terms(model(x[idx]), y[idx], loss, noise_std)
            kl_k = model.kl() / n
            total = nll_k + kl_weight * kl_k
            opt.zero_grad()
            total.sum().backward()
            opt.step()
            rows.append(torch.stack([total.detach(), nll_k.detach(), kl_k.detach()]))
        mean = torch.stack(rows).mean(0).numpy()
        history.log(epoch + 1, loss=mean[0], nll=mean[1], kl=mean[2])
    return history


# ---------------------------------------------------------------- MC dropout and ensembles


class DropoutMLP(StackedMLP):
    """k MLPs (one per seed, initialized exactly as ``stacked_mlp``) with dropout after each hidden layer.

    Dropout with probability ``p`` is on in ``train()`` mode; :func:`sample_predictions`
    keeps it on at test time (MC dropout, Gal & Ghahramani 2016). Trains with
    ``companion.training.fit``. ``shared_mask=False`` (as in training) draws a mask per
    example, so one pass gives independent draws at different inputs (right for each
    input's predictive); ``shared_mask=True`` draws one mask per seed per pass, the same
    for every row of the batch, so one pass is one function (for drawing functions).
    ``forward(x)``: x (n, sizes[0]) or (k, n, sizes[0]) -> (k, n, sizes[-1]).
    Section "A Bayesian network with a hidden layer, MC dropout and ensembles".
    """

    def __init__(self, sizes: Sequence[int], seeds: Iterable[int], p: float = 0.1,
                 activation: str = "relu", init: str = "torch", shared_mask: bool = False) -> None:
        check_probability("DropoutMLP", "p", p, open_right=True)
        base = stacked_mlp(sizes, seeds, activation, init)
        super().__init__(base.sizes, base.seeds, activation, init)
        self.p, self.shared_mask = float(p), bool(shared_mask)

    def _dropout(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return h
        if not self.shared_mask:
            return F.dropout(h, self.p, True)
        keep = torch.rand(h.shape[0], 1, h.shape[2], dtype=h.dtype) >= self.p  # (k, 1, width)
        return h * keep / (1 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.expand(self.n_seeds, *x.shape)
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self._dropout(self.hidden_fn(h))
        return h


def sample_predictions(model: nn.Module, x: torch.Tensor, n_samples: int, seed: int = 0) -> torch.Tensor:
    """S stochastic forward passes without gradients: (S, k, n, out).

    For :class:`BayesLinear`/:class:`BayesMLP` each pass samples the weights; for
    :class:`DropoutMLP` dropout stays on (MC dropout). Seeds torch's global generator
    (dropout draws from it) and restores its state afterwards. Whether one pass is one
    function depends on the model: ``local=False`` for Bayes by Backprop,
    ``shared_mask=True`` for dropout. Section "A Bayesian network with a hidden layer,
    MC dropout and ensembles".
    """
    check_positive("sample_predictions", "n_samples", n_samples, integer=True)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    was_training = model.training
    model.train(True)
    try:
        with torch.no_grad():
            return torch.stack([model(x) for _ in range(n_samples)])
    finally:
        model.train(was_training)
        torch.random.set_rng_state(state)


# ---------------------------------------------------------------- calibration and OOD


def _check_probs(fn: str, probs: np.ndarray, labels: np.ndarray | None = None) -> tuple:
    probs = check_array(fn, "probs", probs, shape=(None, None))
    if np.any(probs < 0) or not np.allclose(probs.sum(1), 1.0, atol=1e-4):
        bad = int(np.argmax(np.abs(probs.sum(1) - 1) + (probs < 0).any(1)))
        raise ValueError(f"{fn}: expected probs with non-negative rows that sum to 1, "
                         f"got row {bad} summing to {probs[bad].sum():.4g}")
    if labels is None:
        return probs, None
    labels = check_array(fn, "labels", labels, shape=(None,), dtype=np.int64)
    check_same_length(fn, ("probs", "labels"), probs, labels)
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"{fn}: expected labels in 0..{probs.shape[1] - 1}, "
                         f"got values from {labels.min()} to {labels.max()}")
    return probs, labels


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood (nats) of the labels (n,) under predictive probs (n, c).

    Section "Calibration on the digits".
    """
    probs, labels = _check_probs("nll", probs, labels)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability diagram data: per confidence bin, mean confidence, accuracy and count.

    probs (n, c), labels (n,). The confidence is the top probability; bins are
    ``n_bins`` equal intervals of [0, 1], right-closed ((0.9, 1.0] is the last).
    Returns three (n_bins,) arrays; an empty bin has NaN confidence and accuracy.
    Section "Calibration on the digits".
    """
    probs, labels = _check_probs("reliability", probs, labels)
    check_positive("reliability", "n_bins", n_bins, integer=True)
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        conf = np.bincount(bins, confidence, n_bins) / counts
        acc = np.bincount(bins, correct.astype(float), n_bins) / counts
    return conf, acc, counts


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """ECE (Guo et al. 2017): sum over bins of (count / n) * |accuracy - mean confidence|.

    probs (n, c), labels (n,); bins as in :func:`reliability`. Section "Calibration on the digits".
    """
    conf, acc, counts = reliability(probs, labels, n_bins)
    keep = counts > 0
    return float(np.sum(counts[keep] / counts.sum() * np.abs(acc[keep] - conf[keep])))


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each predictive distribution: probs (n, c) -> (n,).

    Section "Knowing what it doesn't know".
    """
    probs, _ = _check_probs("entropy", probs)
    return -np.sum(probs * np.log(np.clip(probs, 1e-12, None)), axis=1)


def roc_auc(scores: np.ndarray, is_positive: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a
    random negative, ties counting one half (the Mann-Whitney statistic).

    scores (n,) real, is_positive (n,) bools, with at least one of each.
    Section "Knowing what it doesn't know".
    """
    scores = check_array("roc_auc", "scores", scores, shape=(None,))
    is_positive = check_array("roc_auc", "is_positive", is_positive, shape=(None,), dtype=bool)
    check_same_length("roc_auc", ("scores", "is_positive"), scores, is_positive)
    n_pos, n_neg = int(is_positive.sum()), int((~is_positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc: expected at least one positive and one negative, "
                         f"got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    # average rank (1-based) within each group of tied scores
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for s, c in zip(start, counts):
        ranks[order[s:s + c]] = s + (c + 1) / 2
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
