"""Checkers for chapter 5's code exercises."""

from __future__ import annotations

import numpy as np
import torch

from ._core import Case, register


def _count_modes(samples, centers, std):
    """(modes covered, high-quality fraction): the chapter's definition, written out."""
    distance, nearest = torch.cdist(samples.double(), centers.double()).min(dim=1)
    good = distance <= 3 * std
    counts = torch.bincount(nearest[good], minlength=centers.shape[0])
    covered = ((counts > 0) & (counts >= 0.01 * samples.shape[0])).sum()
    return int(covered), float(good.double().mean())


def _ring(n_modes: int, radius: float) -> torch.Tensor:
    angles = 2 * torch.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def _mixture(weights: list[int], centers: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    parts = [centers[k] + std * torch.randn(w, centers.shape[1], generator=g) for k, w in enumerate(weights) if w]
    return torch.cat(parts)


def _on_the_boundary() -> Case:
    """Ten samples exactly 3 std from a centre (distances that are exact in floating point)."""
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    samples = torch.tensor([[1.5, 0.0], [0.0, 1.5], [-1.5, 0.0], [0.0, -1.5], [11.5, 0.0]] * 2 + [[5.0, 5.0]] * 90)
    return Case("samples exactly 3 std from a centre count as high quality", (samples, centers, 0.5),
                hint="high quality means distance <= 3 * std (at most, so the boundary counts)")


def _exactly_one_percent() -> Case:
    ring = _ring(8, 2.0)
    samples = _mixture([990, 10, 0, 0, 0, 0, 0, 0], ring, 0.02, 5)
    return Case("a mode with exactly 1% of the samples is covered", (samples, ring, 0.02),
                hint="a mode is covered when AT LEAST 1% of the samples (>=, not >) are high-quality samples near it")


def _many_bad_samples() -> Case:
    ring = _ring(8, 2.0)
    good = _mixture([100, 5, 0, 0, 0, 0, 0, 0], ring, 0.02, 6)
    far = torch.zeros(900, 2)  # the centre of the ring: 2 away from every mode
    return Case("5 of 1,005 samples at a mode, most samples far from every mode", (torch.cat([good, far]), ring, 0.02),
                hint="the 1% is of ALL n samples, not of the high-quality ones")


def _cases() -> list[Case]:
    ring = _ring(8, 2.0)
    return [
        Case("the true ring, 2,500 samples", (_mixture([313] * 8, ring, 0.02, 0), ring, 0.02),
             hint="return a tuple (modes, fraction): an int and a float"),
        Case("every sample at one mode", (_mixture([2500, 0, 0, 0, 0, 0, 0, 0], ring, 0.02, 1), ring, 0.02)),
        Case("a mode with only 10 of 2,510 samples", (_mixture([2500, 10, 0, 0, 0, 0, 0, 0], ring, 0.02, 2), ring, 0.02),
             hint="a mode counts only if at least 1% of ALL samples are high-quality samples nearest to it"),
        Case("samples too spread out (std 0.1 around each mode)", (_mixture([100] * 8, ring, 0.1, 3), ring, 0.02),
             hint="a sample is high quality when its distance to the nearest centre is <= 3 * std"),
        _on_the_boundary(),
        _exactly_one_percent(),
        _many_bad_samples(),
        Case("4 modes in 5 dimensions", (_mixture([40, 0, 3, 80], torch.eye(4, 5) * 4, 0.5, 4), torch.eye(4, 5) * 4, 0.5),
             hint="work in any dimension d: distances between (n, d) samples and (k, d) centres"),
    ]


def _hidden(rng: np.random.Generator) -> list[Case]:
    cases = []
    for i in range(6):
        k, d = int(rng.integers(2, 10)), int(rng.integers(1, 6))
        centers = torch.tensor(rng.normal(0, 5, size=(k, d)), dtype=torch.float32)
        std = float(rng.uniform(0.05, 0.5))
        weights = rng.integers(0, 60, size=k) * (rng.random(k) < 0.7)
        weights[0] = max(int(weights[0]), 1)
        spread = float(rng.choice([0.5, 1.0, 2.0]))  # samples this many std around their mode
        parts = [centers[j] + spread * std * torch.tensor(rng.normal(size=(int(w), d)), dtype=torch.float32)
                 for j, w in enumerate(weights) if w]
        cases.append(Case(f"drawn mixture {i + 1}: {k} modes in {d}-D", (torch.cat(parts), centers, std)))
    return cases


register(
    "ch05-count-modes",
    reference=_count_modes,
    cases=_cases,
    hidden=_hidden,
    hint="distance to the nearest centre (torch.cdist, then min over centres); high quality means <= 3 * std; "
    "a mode is covered when >= 1% of all samples are high-quality samples nearest to it",
)
