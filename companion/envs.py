"""Environments batched over many copies, in numpy (chapter 8, and the RL chapter).

``cartpole_step`` is gymnasium's ``CartPoleEnv`` dynamics (CartPole-v1)
written for a batch of ``n`` environments: one call moves all of them, with
the same formulas in the same order, so the same floating-point results
(``tests/test_envs.py`` checks it against gymnasium step for step). A
population of policies is then evaluated with one matrix product per time
step instead of ``n`` Python-level ``env.step`` calls.

Three levels, pick the one you need:

* ``cartpole_reset(n, rng)`` and ``cartpole_step(state, action)``: the raw
  dynamics, states (n, 4) = (x, x_dot, theta, theta_dot).
* ``CartPoleBatch(n, seed)``: a gymnasium-like object, ``reset() -> obs``
  and ``step(action) -> (obs, reward, terminated, truncated)``, for loops that
  need every observation (policy gradients). Finished environments stay
  finished (reward 0) until the next ``reset``.
* ``cartpole_returns(act, params, episodes, seed)``: the return of every
  row of ``params`` under a batched ``act(params, obs) -> action``, with
  finished environments dropped from the batch as they fall; and
  ``gym_returns`` for the same policy in the real gymnasium environment.

Nothing here imports a chapter module.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from companion._checks import check_array, check_positive

GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
THETA_LIMIT, X_LIMIT, MAX_STEPS = 12 * 2 * math.pi / 360, 2.4, 500
OBS_DIM, N_ACTIONS = 4, 2
_TOTAL_MASS, _POLE_MASS_LENGTH = MASS_CART + MASS_POLE, MASS_POLE * HALF_LENGTH

Act = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""A batched policy: ``act(params (b, p), obs (b, 4) float32) -> actions (b,)`` in {0, 1}."""


def cartpole_reset(n: int, rng: np.random.Generator) -> np.ndarray:
    """Start states of ``n`` environments, uniform in [-0.05, 0.05) as in gymnasium.

    Returns float64 (n, 4), rows (x, x_dot, theta, theta_dot).
    """
    check_positive("cartpole_reset", "n", n, integer=True)
    return rng.uniform(-0.05, 0.05, size=(n, OBS_DIM))


def cartpole_step(state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Euler step of gymnasium's CartPole-v1 dynamics for a batch.

    Args:
        state: (n, 4) float64, rows (x, x_dot, theta, theta_dot).
        action: (n,) of 0 (push left) or 1 (push right).

    Returns:
        (next_state (n, 4), terminated (n,) bool), with the same formulas, in
        the same order (so the same floating-point results), and thresholds as
        ``gymnasium.envs.classic_control.CartPoleEnv.step``.
    """
    x, x_dot, theta, theta_dot = state.T
    cos, sin = np.cos(theta), np.sin(theta)
    force = (2.0 * FORCE) * action - FORCE  # +10 for action 1, -10 for action 0
    temp = (force + _POLE_MASS_LENGTH * np.square(theta_dot) * sin) / _TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (
        HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * np.square(cos) / _TOTAL_MASS))
    x_acc = temp - _POLE_MASS_LENGTH * theta_acc * cos / _TOTAL_MASS
    nxt = np.empty_like(state)
    nxt[:, 0] = x + TAU * x_dot
    nxt[:, 1] = x_dot + TAU * x_acc
    nxt[:, 2] = theta + TAU * theta_dot
    nxt[:, 3] = theta_dot + TAU * theta_acc
    terminated = (np.abs(nxt[:, 0]) > X_LIMIT) | (np.abs(nxt[:, 2]) > THETA_LIMIT)
    return nxt, terminated


class CartPoleBatch:
    """``n`` CartPole-v1 environments stepped together, gymnasium style.

    ``reset()`` returns observations (n, 4) float32; ``step(action (n,))``
    returns ``(obs (n, 4) float32, reward (n,), terminated (n,) bool,
    truncated (n,) bool)``. An environment earns reward 1 per step, the
    falling step included, is truncated after ``max_steps``, and once done
    stays done (reward 0, state frozen) until the next ``reset``; ``done``
    (n,) says which.
    """

    def __init__(self, n: int, seed: int = 0, max_steps: int = MAX_STEPS) -> None:
        check_positive("CartPoleBatch", "n", n, integer=True)
        check_positive("CartPoleBatch", "max_steps", max_steps, integer=True)
        self.n, self.max_steps = n, max_steps
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros((n, OBS_DIM))
        self.done = np.ones(n, dtype=bool)
        self.t = 0

    def reset(self) -> np.ndarray:
        self.state = cartpole_reset(self.n, self.rng)
        self.done = np.zeros(self.n, dtype=bool)
        self.t = 0
        return self.state.astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        action = check_array("CartPoleBatch.step", "action", action, (self.n,), dtype=np.int64)
        running = ~self.done
        nxt, terminated = cartpole_step(self.state, action)
        self.state = np.where(running[:, None], nxt, self.state)
        reward = running.astype(np.float64)
        terminated = terminated & running
        self.t += 1
        truncated = running & ~terminated & (self.t >= self.max_steps)
        self.done = self.done | terminated | truncated
        return self.state.astype(np.float32), reward, terminated, truncated


def cartpole_returns(act: Act, params: np.ndarray, episodes: int = 1, seed: int = 0,
                     max_steps: int = MAX_STEPS) -> np.ndarray:
    """Returns of every row of ``params`` on CartPole-v1, all episodes run as one batch.

    Each of the ``population * episodes`` environments starts from its own
    random state (drawn from ``numpy.random.default_rng(seed)``); at every
    step one call ``act(rows, obs)`` chooses the actions of the environments
    still running and one ``cartpole_step`` moves them. An episode earns 1
    per step, the falling step included, up to ``max_steps`` (500, as in v1).

    Args:
        act: batched policy, ``(params (b, p), obs (b, 4) float32) -> (b,)``.
        params: (population, p).
        episodes: episodes per row.

    Returns:
        float64 (population, episodes).
    """
    params = check_array("cartpole_returns", "params", params, (None, None))
    check_positive("cartpole_returns", "episodes", episodes, integer=True)
    check_positive("cartpole_returns", "max_steps", max_steps, integer=True)
    n = params.shape[0] * episodes
    batch_params = np.repeat(params, episodes, axis=0)
    state = cartpole_reset(n, np.random.default_rng(seed))
    running = np.arange(n)  # the environments still running; the arrays hold only their rows
    returns = np.full(n, float(max_steps))
    for t in range(max_steps):
        obs = state.astype(np.float32)  # what gymnasium shows the agent
        state, terminated = cartpole_step(state, act(batch_params, obs))
        if terminated.any():
            returns[running[terminated]] = t + 1
            keep = ~terminated
            running, state, batch_params = running[keep], state[keep], batch_params[keep]
            if running.size == 0:
                break
    return returns.reshape(params.shape[0], episodes)


def gym_returns(act: Act, params: np.ndarray, env_id: str = "CartPole-v1", episodes: int = 1,
                seed: int = 0, obs_dim: int = OBS_DIM) -> np.ndarray:
    """Returns (episodes,) of one parameter vector (p,) in the real gymnasium environment.

    Episode ``e`` starts from ``env.reset(seed=seed + e)``; one ``env.step``
    per time step, so this is the slow, trusted reference for
    :func:`cartpole_returns`. ``env_id`` may name any gymnasium environment
    with ``obs_dim`` observations and two actions.
    """
    import gymnasium as gym

    params = check_array("gym_returns", "params", params, (None,))
    check_positive("gym_returns", "episodes", episodes, integer=True)
    try:
        env = gym.make(env_id)
    except gym.error.Error as err:
        raise ValueError(f"gym_returns: unknown environment {env_id!r}; expected a gymnasium id "
                         f"such as 'CartPole-v1' ({err})") from None
    if env.observation_space.shape != (obs_dim,) or getattr(env.action_space, "n", None) != 2:
        space = (env.observation_space.shape, env.action_space)
        env.close()
        raise ValueError(f"gym_returns: {env_id} has observations of shape {space[0]} and action "
                         f"space {space[1]}; the policy expects ({obs_dim},) observations and "
                         "2 actions")
    returns = np.zeros(episodes)
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        done = False
        while not done:
            action = int(act(params[None], obs[None])[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[e] += reward
            done = terminated or truncated
    env.close()
    return returns
