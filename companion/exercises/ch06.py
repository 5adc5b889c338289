"""Checkers for chapter 6's code exercises (the Differentiable Neural Computer)."""

from __future__ import annotations

import numpy as np
import torch

from ._core import Case, allclose, register


def _content_lookup(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """softmax over slots of strength * cosine(key, slot); (B, N, W), (B, H, W), (B, H) -> (B, H, N)."""
    b, n, _ = memory.shape
    h = keys.shape[1]
    out = torch.empty(b, h, n, dtype=memory.dtype)
    for i in range(b):
        for j in range(h):
            cosine = torch.nn.functional.cosine_similarity(keys[i, j].unsqueeze(0), memory[i], dim=-1, eps=1e-8)
            out[i, j] = torch.softmax(strengths[i, j] * cosine, dim=0)
    return out


def _random(name: str, b: int, n: int, w: int, h: int, seed: int, **extra) -> Case:
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(b, n, w, generator=g, dtype=torch.float64)
    keys = torch.randn(b, h, w, generator=g, dtype=torch.float64)
    strengths = 1 + 9 * torch.rand(b, h, generator=g, dtype=torch.float64)
    return Case(name, (memory, keys, strengths), **extra)


def _scaled_case() -> Case:
    """A key that is a scaled copy of slot 2: cosine ignores length, so slot 2 must win."""
    memory = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [3.0, 3.0, 0.0]]], dtype=torch.float64)
    keys = torch.tensor([[[0.1, 0.1, 0.1]]], dtype=torch.float64)
    return Case("the key is slot 2 scaled down", (memory, keys, torch.tensor([[20.0]], dtype=torch.float64)),
                hint="use the cosine, not the dot product: a long slot must not win just by being long")


def _empty_memory_case() -> Case:
    """The DNC's initial state: every slot is zero, so every cosine must be 0 and the weighting uniform."""
    keys = torch.tensor([[[0.5, -1.0, 2.0, 0.0]], [[1.0, 1.0, 1.0, 1.0]]], dtype=torch.float64)
    return Case("an all-zero memory (the DNC's initial state)",
                (torch.zeros(2, 5, 4, dtype=torch.float64), keys, torch.tensor([[3.0], [50.0]], dtype=torch.float64)),
                hint="an all-zero slot has norm 0: divide by (norm of key * norm of slot + a small epsilon) so its "
                "cosine is 0, not 0/0 = nan; the weighting over an empty memory is then uniform")


def _one_zero_slot_case() -> Case:
    memory = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [-1.0, 0.5]]], dtype=torch.float64)
    keys = torch.tensor([[[1.0, 1.0]]], dtype=torch.float64)
    return Case("one empty slot among written ones", (memory, keys, torch.tensor([[5.0]], dtype=torch.float64)),
                hint="an empty (all-zero) slot gets cosine 0: add a small epsilon to the norms")


def _strong_key_case() -> Case:
    g = torch.Generator().manual_seed(4)
    memory = torch.randn(1, 6, 3, generator=g, dtype=torch.float64)
    keys = memory[:, 2:3] + 0.01 * torch.randn(1, 1, 3, generator=g, dtype=torch.float64)
    return Case("a very strong key (strength 1000)", (memory, keys, torch.tensor([[1000.0]], dtype=torch.float64)),
                hint="exp(1000) overflows: use torch.softmax (or subtract the maximum before exp)")


def _cases() -> list[Case]:
    return [
        _random("one head, 4 slots of width 3", 1, 4, 3, 1, seed=0,
                hint="return shape (batch, heads, slots); the softmax runs over the slots (last axis)"),
        _scaled_case(),
        _random("batch of 2, two heads", 2, 6, 4, 2, seed=1,
                hint="multiply the cosine similarities by the key strength before the softmax"),
        _empty_memory_case(),
        _one_zero_slot_case(),
        _strong_key_case(),
    ]


COMPARE = allclose(rtol=1e-5, atol=1e-6)
# Epsilons a correct answer may add to the product of the norms: the chapter's solution adds
# 1e-6; 3e-6 covers adding 1e-6 to each norm (norms are at least 1 here).
EPSILONS = (1e-8, 1e-6, 3e-6)


def _rows(rng: np.random.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Rows in random directions with norms between 1 and 3: a written slot or a key, never nearly empty."""
    x = rng.normal(size=shape)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return torch.tensor(x * rng.uniform(1.0, 3.0, size=shape[:-1] + (1,)))


def _with_eps(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor, eps: float) -> torch.Tensor:
    dots = keys @ memory.transpose(1, 2)
    norms = keys.norm(dim=-1, keepdim=True) * memory.norm(dim=-1).unsqueeze(1)
    return torch.softmax(strengths.unsqueeze(-1) * dots / (norms + eps), dim=-1)


def _well_posed(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor) -> bool:
    """Whether every epsilon in EPSILONS gives the reference's answer (within COMPARE's tolerance).

    A slot or key of tiny norm, times a large strength, makes the weighting depend
    on the epsilon a correct answer adds: such a case does not test the exercise.
    """
    expected = _content_lookup(memory, keys, strengths)
    return all(COMPARE(expected, _with_eps(memory, keys, strengths, eps)) for eps in EPSILONS)


def _hidden(rng: np.random.Generator) -> list[Case]:
    """Six drawn cases: random shapes (width 1 included), some empty slots, strengths 1 + Exp(10).

    Written slots and keys have norms in [1, 3] (a normal draw in width 1 or 2 is
    often nearly zero, and its cosine then depends on the epsilon); a draw whose
    answer still depends on the epsilon is drawn again.
    """
    cases = []
    while len(cases) < 6:
        b, n, w, h = (int(rng.integers(1, 5)), int(rng.integers(1, 20)), int(rng.integers(1, 10)),
                      int(rng.integers(1, 4)))
        memory = _rows(rng, (b, n, w))
        memory[torch.tensor(rng.random((b, n)) < 0.2)] = 0.0  # some empty slots
        keys = _rows(rng, (b, h, w))
        strengths = torch.tensor(1 + rng.exponential(10.0, size=(b, h)))
        if not _well_posed(memory, keys, strengths):
            continue
        cases.append(Case(f"drawn case {len(cases) + 1}: batch {b}, {n} slots of width {w}, {h} heads",
                          (memory, keys, strengths)))
    return cases


register(
    "ch06-content-lookup",
    reference=_content_lookup,
    cases=_cases,
    hidden=_hidden,
    compare=COMPARE,
    hint="cosine similarity between each key and each slot, times the key strength, then a softmax over slots",
)
