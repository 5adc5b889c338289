"""Measurement: what the chapters count and time.

Parameter counts, the bytes autograd keeps for the backward pass, and CPU
time. Chapters report wall-clock times but never assert on them (they vary
with the machine); a claim about cost is asserted on counts, bytes, or a
ratio of CPU times measured in one process (:func:`cpu_time_ratio`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters (scalars) of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def cpu_time(fn: Callable[[], object], repeat: int = 1) -> float:
    """The best CPU time (seconds, this process and its threads) of ``repeat`` calls of ``fn()``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def cpu_time_ratio(slow: Callable[[], object], fast: Callable[[], object], repeat: int = 3) -> float:
    """CPU time of ``slow()`` over that of ``fast()``, best of ``repeat`` alternating calls each.

    CPU time of one process does not count other jobs on the machine, so the
    ratio is steadier than a wall-clock ratio; still report it, don't bet a
    tight threshold on it.
    """
    slow_best = fast_best = float("inf")
    for _ in range(repeat):
        slow_best = min(slow_best, cpu_time(slow))
        fast_best = min(fast_best, cpu_time(fast))
    return slow_best / max(fast_best, 1e-9)


def wall_time(fn: Callable[[], object], repeat: int = 1) -> float:
    """The best wall-clock time (seconds) of ``repeat`` calls: for reporting, never for asserting."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def saved_tensor_bytes(build_loss: Callable[[], Tensor], exclude: Sequence[Tensor] = ()) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``build_loss()`` runs.

    Counts memory, not tensors: several saved views of one buffer (an
    activation and its two halves, say) count the bytes they cover once, and
    a slice of a larger tensor counts only its own bytes. Leaves out
    ``exclude`` and views of it (pass the parameters: they exist anyway,
    whatever the learning rule). This is the activation memory one backward
    pass needs.
    """
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    spans: dict[int, list[tuple[int, int]]] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage().data_ptr()
        if storage not in excluded and t.numel() > 0:  # views of a parameter (W.T) count as the parameter
            size = t.element_size()
            extent = 1 + sum((n - 1) * abs(st) for n, st in zip(t.shape, t.stride()))
            start = t.storage_offset() * size
            spans.setdefault(storage, []).append((start, start + extent * size))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        build_loss()
    total = 0
    for intervals in spans.values():  # the length of the union of each buffer's saved byte ranges
        end = -1
        for lo, hi in sorted(intervals):
            total += max(0, hi - max(lo, end))
            end = max(end, hi)
    return total
