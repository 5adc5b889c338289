"""Checker for chapter 14's code exercise (the GPipe pipeline's time for one minibatch)."""

from __future__ import annotations

import numpy as np

from ._core import Case, allclose, register


def _gpipe_time(n_layers: int, micro_batches: int, t_forward: float, t_backward: float) -> float:
    """(M + L - 1) (t_f + t_b): a forward wave, then a backward wave, each M + L - 1 slots long."""
    return (micro_batches + n_layers - 1) * (t_forward + t_backward)


_FILL = ("the pipeline fills and drains: the last of M micro-batches leaves the last of L stages "
         "at slot M + L - 1, once forward and once backward")
_ONE = "with one micro-batch nothing overlaps: L forward steps, then L backward steps"


def _cases() -> list[Case]:
    return [
        Case("one micro-batch: L (t_f + t_b)", (4, 1, 1.0, 2.0), hint=_ONE),
        Case("one stage: M (t_f + t_b)", (1, 8, 1.0, 2.0), hint=_FILL),
        Case("4 stages, 8 micro-batches", (4, 8, 1.0, 2.0), hint=_FILL),
        Case("forward and backward times differ (t_b = 3 t_f)", (3, 5, 0.5, 1.5), hint=_FILL),
    ]


def _hidden(rng: np.random.Generator) -> list[Case]:
    return [Case(f"drawn case {i + 1}", (int(rng.integers(1, 17)), int(rng.integers(1, 65)),
                                         float(rng.uniform(0.1, 3.0)), float(rng.uniform(0.1, 6.0))),
                 hint=_FILL) for i in range(4)]


register(
    "ch14-gpipe-time",
    reference=_gpipe_time,
    cases=_cases,
    hidden=_hidden,
    compare=allclose(rtol=1e-9, atol=1e-12),
    hint=_FILL,
)
