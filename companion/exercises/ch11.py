"""Checkers for chapter 11's code exercise (the all-to-all pair-based STDP sum, written out).

Hidden cases are drawn from the grader's generator ``rng``.
"""

from __future__ import annotations

import numpy as np

from ._core import Case, allclose, register


def _stdp_all_pairs(pre, post, a_plus, a_minus, tau_plus, tau_minus):
    """Total weight change of one synapse under pair-based STDP summed over ALL pre-post pairs.

    pre, post: 1-D arrays of spike times in ms. For every pair, s = t_post - t_pre;
    s > 0 adds a_plus exp(-s / tau_plus), s < 0 adds -a_minus exp(s / tau_minus),
    s == 0 adds a_plus - a_minus. No bounds. Returns a float.
    """
    pre = np.asarray(pre, dtype=np.float64).reshape(-1)
    post = np.asarray(post, dtype=np.float64).reshape(-1)
    s = post[None, :] - pre[:, None]  # (n_pre, n_post)
    pos = a_plus * np.exp(-np.abs(s) / tau_plus)
    neg = -a_minus * np.exp(-np.abs(s) / tau_minus)
    return float(np.where(s > 0, pos, np.where(s < 0, neg, pos + neg)).sum())


_SIGN = ("s = t_post - t_pre: a presynaptic spike BEFORE the postsynaptic one (s > 0) potentiates with "
         "a_plus exp(-s / tau_plus); after it (s < 0) depresses with a_minus exp(s / tau_minus)")
_TAUS = "potentiation decays with tau_plus, depression with tau_minus: check you have not swapped the two"
_SIGN = _SIGN + "; " + _TAUS
_ALL = ("sum over EVERY pair (i, j) of presynaptic spike i and postsynaptic spike j, not only the nearest "
        "neighbours: what the traces compute")
_EMPTY = "a train with no spikes has no pairs: the change is 0.0"


def _cases() -> list[Case]:
    p = (0.01, 0.0105, 16.8, 33.7)
    return [
        Case("one pair, pre 10 ms before post", (np.array([0.0]), np.array([10.0]), *p), hint=_SIGN),
        Case("one pair, pre 10 ms after post", (np.array([10.0]), np.array([0.0]), *p), hint=_SIGN),
        Case("different time constants (5 ms and 50 ms), pre before post", (np.array([0.0]), np.array([8.0]),
                                                                            0.01, 0.01, 5.0, 50.0), hint=_TAUS),
        Case("different time constants (5 ms and 50 ms), post before pre", (np.array([8.0]), np.array([0.0]),
                                                                            0.01, 0.01, 5.0, 50.0), hint=_TAUS),
        Case("three pre and two post spikes: all six pairs", (np.array([0.0, 4.0, 25.0]), np.array([5.0, 20.0]), *p),
             hint=_ALL),
        Case("a pre and a post spike at the same time", (np.array([3.0]), np.array([3.0]), *p),
             hint="s = 0 counts both terms: a_plus - a_minus"),
        Case("no postsynaptic spikes", (np.array([1.0, 2.0]), np.array([]), *p), hint=_EMPTY),
    ]


def _hidden(rng: np.random.Generator) -> list[Case]:
    cases = []
    for i in range(5):
        pre = np.sort(rng.uniform(0, 200, int(rng.integers(1, 12))))
        post = np.sort(rng.uniform(0, 200, int(rng.integers(1, 12))))
        params = (float(rng.uniform(0.001, 0.05)), float(rng.uniform(0.001, 0.05)),
                  float(rng.uniform(5, 40)), float(rng.uniform(5, 60)))
        cases.append(Case(f"drawn case {i + 1}: {len(pre)} pre and {len(post)} post spikes", (pre, post, *params),
                          hint=_ALL))
    return cases


register(
    "ch11-stdp-all-pairs",
    reference=_stdp_all_pairs,
    cases=_cases,
    hidden=_hidden,
    compare=allclose(rtol=1e-7, atol=1e-12),
    hint=_ALL,
)
