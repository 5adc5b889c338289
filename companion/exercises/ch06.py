"""Checkers for chapter 6's code exercises (the Differentiable Neural Computer)."""

from __future__ import annotations

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


def _case(name: str, b: int, n: int, w: int, h: int, seed: int, **extra) -> Case:
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


def _cases() -> list[Case]:
    return [
        _case("one head, 4 slots of width 3", 1, 4, 3, 1, seed=0,
              hint="return shape (batch, heads, slots); the softmax runs over the slots (last axis)"),
        _scaled_case(),
        _case("batch of 2, two heads", 2, 6, 4, 2, seed=1,
              hint="multiply the cosine similarities by the key strength before the softmax"),
        _case("16 slots of width 8, batch 3, three heads", 3, 16, 8, 3, seed=2, hidden=True),
        _case("a single slot", 2, 1, 5, 1, seed=3, hidden=True),
    ]


register(
    "ch06-content-lookup",
    reference=_content_lookup,
    cases=_cases,
    compare=allclose(rtol=1e-5, atol=1e-6),
    hint="cosine similarity between each key and each slot, times the key strength, then a softmax over slots",
)
