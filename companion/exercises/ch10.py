"""Checkers for chapter 10's code exercises (policy gradients)."""

from __future__ import annotations

import numpy as np

from ._core import Case, allclose, register


def _stream_returns(rewards, dones, gamma):
    """Discounted returns (T,) in a stream of episodes from one environment that restarts at once.

    ``dones[t]`` is True at the last step of an episode; the return at t sums
    ``gamma**(s - t) * rewards[s]`` from t to the end of t's own episode (for
    the last, unfinished episode: to the end of the stream).
    """
    r = np.asarray(rewards, dtype=np.float64)
    d = np.asarray(dones, dtype=bool)
    out = np.zeros_like(r)
    running = 0.0
    for t in range(len(r) - 1, -1, -1):
        running = r[t] + gamma * (0.0 if d[t] else running)
        out[t] = running
    return out


def _cases() -> list[Case]:
    return [
        Case("one episode, gamma 0.5", (np.array([1.0, 1.0, 1.0]), np.array([False, False, True]), 0.5),
             hint="work backward from the last step: G[t] = r[t] + gamma * G[t + 1]; a done step's return is "
                  "its own reward, and the steps before it in its episode build on it"),
        Case("two episodes in one stream", (np.array([1.0, 2.0, 3.0, 4.0]), np.array([False, True, False, True]), 0.9),
             hint="a return stops at its own episode's last step: the next episode's rewards are not part of it "
                  "(G[t] = r[t] at a done step)"),
        Case("gamma 0: each return is its own reward", (np.array([0.5, -1.0, 2.0]), np.array([False, True, False]), 0.0)),
        Case("gamma 1: the reward-to-go", (np.ones(5), np.array([False, False, True, False, False]), 1.0),
             hint="with gamma = 1 the return is the number of steps left in the episode, this step included"),
        Case("the last episode is unfinished", (np.array([1.0, 0.0, 0.0, 1.0]), np.zeros(4, dtype=bool), 0.5),
             hint="without a done step the sum runs to the end of the stream"),
        Case("a single step", (np.array([3.0]), np.array([True]), 0.9)),
        Case("lists, not arrays", ([1.0, -2.0, 0.5], [True, False, True], 0.8),
             hint="convert the inputs with np.asarray"),
    ]


def _hidden(rng: np.random.Generator) -> list[Case]:
    cases = []
    for i in range(6):
        T = int(rng.integers(2, 40))
        rewards = rng.standard_normal(T)
        dones = rng.random(T) < rng.uniform(0.05, 0.4)
        gamma = float(rng.choice([rng.uniform(0.0, 1.0), 0.99, 1.0]))
        cases.append(Case(f"drawn stream {i + 1}: {T} steps, gamma {gamma:.3g}", (rewards, dones, gamma)))
    return cases


register(
    "ch10-stream-returns",
    reference=_stream_returns,
    cases=_cases,
    hidden=_hidden,
    compare=allclose(rtol=1e-9, atol=1e-12),
    hint="loop t from the last step to the first: G = r[t] + gamma * G, with G reset to 0 "
         "(no future) when dones[t] is True",
)
