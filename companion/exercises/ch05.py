"""Checkers for chapter 5's code exercises."""

from __future__ import annotations

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
        Case("3 modes on a ring of radius 1, 3-D-free", (_mixture([50, 60, 0], _ring(3, 1.0), 0.05, 4), _ring(3, 1.0), 0.05),
             hidden=True),
        Case("a 5-D mixture", (_mixture([40, 0, 3, 80], torch.eye(4, 5) * 4, 0.5, 5), torch.eye(4, 5) * 4, 0.5),
             hidden=True),
    ]


register(
    "ch05-count-modes",
    reference=_count_modes,
    cases=_cases,
    hint="distance to the nearest centre (torch.cdist, then min over centres); high quality means <= 3 * std; "
    "a mode is covered when >= 1% of all samples are high-quality samples nearest to it",
)
