"""Policy gradients: guess and check on actions (chapter 10).

REINFORCE (Williams 1992) and a small synchronous actor-critic (A2C, after
Mnih et al. 2016) in torch, with the rollouts, returns and estimators the
chapter builds, and the loop that trains chapter 8's evolution strategies on
the same environments for the head-to-head. Shapes, for ``k`` seeds trained
together, ``n`` episodes (environments) per seed and ``T`` time steps:

* observations ``obs`` (n, T, obs_dim) float32, actions (n, T) int64,
  rewards (n, T) float64 and ``mask`` (n, T) bool (True while the episode
  runs): a :class:`Trajectories`, what :func:`rollout` returns;
* the weight of each step's score ``psi`` (n, T): the whole return
  (:func:`total_returns`), the reward-to-go (:func:`discounted_returns` with
  ``gamma=1``), either minus a baseline;
* a policy is ``k`` stacked MLPs (:class:`SoftmaxPolicy`), logits (k, m, n_actions).

The surrogate ``policy_gradient_loss`` has, as its gradient, minus the
score-function estimate ``1/n sum_i sum_t psi[i, t] grad log pi(a[i, t] | s[i, t])``.

Environments are batched numpy simulators with three methods, ``reset(n,
rng) -> state``, ``step(state, action) -> (state, reward, terminated)`` and
``observe(state) -> obs``: :class:`CartPole` (the dynamics of
``companion.envs``) and :class:`MountainCar`, each checked against gymnasium
by the tests. :func:`evaluate_gym` runs a policy in gymnasium itself.
"""

from __future__ import annotations

import ast
import copy
import inspect
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from companion import envs
from companion._checks import (check_array, check_choice, check_positive, check_probability, check_shape)
from companion.seeds import stacked_mlp
from companion.training import clip_gradients
from companion.training import progress as progress_bar

# ---------------------------------------------------------------- environments


class BatchedEnv(Protocol):
    """What :func:`rollout` needs of an environment (see the module docstring)."""

    name: str
    obs_dim: int
    n_actions: int
    max_steps: int
    obs_scale: np.ndarray

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def step(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def observe(self, state: np.ndarray) -> np.ndarray: ...


class CartPole:
    """gymnasium's CartPole-v1 over a batch: reward 1 per step (the falling one too), at most 500 steps.

    States (n, 4) float64 = (x, x_dot, theta, theta_dot); the dynamics are
    ``companion.envs.cartpole_step``; observations are the state as float32,
    as gymnasium shows them.
    """

    name, obs_dim, n_actions, max_steps = "CartPole-v1", 4, 2, 500
    obs_scale = np.ones(4)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return envs.cartpole_reset(n, rng)

    def step(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nxt, terminated = envs.cartpole_step(state, action)
        return nxt, np.ones(len(state)), terminated

    def observe(self, state: np.ndarray) -> np.ndarray:
        return state.astype(np.float32)


class MountainCar:
    """gymnasium's MountainCar-v0 over a batch: reward -1 per step until the car is at x >= 0.5; 200 steps.

    States (n, 2) float64 = (position, velocity); actions 0 (push left), 1
    (none), 2 (push right), with gymnasium's formulas, in its order.
    ``obs_scale`` (the observation space's upper bound) is what the policies
    divide observations by, so both inputs are of order 1.
    """

    name, obs_dim, n_actions, max_steps = "MountainCar-v0", 2, 3, 200
    force, gravity, min_position, max_position, max_speed, goal_position = 0.001, 0.0025, -1.2, 0.6, 0.07, 0.5
    obs_scale = np.array([0.6, 0.07])

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.uniform(-0.6, -0.4, n), np.zeros(n)], axis=1)

    def step(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position, velocity = state[:, 0], state[:, 1]
        velocity = velocity + (action - 1) * self.force + np.cos(3 * position) * (-self.gravity)
        velocity = np.clip(velocity, -self.max_speed, self.max_speed)
        position = np.clip(position + velocity, self.min_position, self.max_position)
        velocity = np.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= 0)
        return np.stack([position, velocity], axis=1), np.full(len(state), -1.0), terminated

    def observe(self, state: np.ndarray) -> np.ndarray:
        return state.astype(np.float32)


ENVS: dict[str, Callable[[], Any]] = {"CartPole-v1": CartPole, "MountainCar-v0": MountainCar}


# ---------------------------------------------------------------- rollouts


@dataclass
class Trajectories:
    """A batch of n episodes, padded to the longest, T steps.

    ``obs`` (n, T, obs_dim) float32 (what the policy saw at each step),
    ``actions`` (n, T) int64, ``rewards`` (n, T) float64 (0 after an episode
    ended), ``mask`` (n, T) bool (the step happened), ``terminated`` (n,)
    bool (ended by failure or success, not by the time limit).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    mask: np.ndarray
    terminated: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Steps of each episode, (n,)."""
        return self.mask.sum(axis=1)

    @property
    def returns(self) -> np.ndarray:
        """Undiscounted return of each episode, (n,)."""
        return self.rewards.sum(axis=1)

    @property
    def steps(self) -> int:
        """Environment steps in the batch."""
        return int(self.mask.sum())

    def split(self, k: int) -> list["Trajectories"]:
        """The batch cut into k equal consecutive groups of episodes (one per seed)."""
        n = len(self.actions)
        if n % k:
            raise ValueError(f"Trajectories.split: expected a batch divisible into {k} groups, got {n} episodes")
        m = n // k
        return [Trajectories(*(a[i * m:(i + 1) * m] for a in (self.obs, self.actions, self.rewards, self.mask,
                                                                self.terminated))) for i in range(k)]


def rollout(env: BatchedEnv, act: Callable[[np.ndarray], np.ndarray], n: int, rng: np.random.Generator,
            max_steps: int | None = None, state: np.ndarray | None = None) -> Trajectories:
    """Run n episodes of ``env`` side by side, choosing every action with one ``act`` call per step.

    ``act(obs)`` maps observations (n, obs_dim) to actions (n,) in
    ``range(env.n_actions)``. An environment whose episode has ended is frozen
    (its reward is 0 and its mask False) until the longest episode ends or
    ``max_steps`` (default ``env.max_steps``) is reached. ``state`` (n,
    state_dim), if given, replaces the random start states. Taught in
    chapter 10, "Rollouts over a batch of environments".
    """
    check_positive("rollout", "n", n, integer=True)
    horizon = env.max_steps if max_steps is None else max_steps
    check_positive("rollout", "max_steps", horizon, integer=True)
    if state is None:
        state = env.reset(n, rng)
    else:
        state = check_array("rollout", "state", state, shape=(n, None)).copy()
    alive = np.ones(n, dtype=bool)
    terminated = np.zeros(n, dtype=bool)
    obs_, actions_, rewards_, mask_ = [], [], [], []
    for _ in range(horizon):
        obs = env.observe(state)
        action = np.asarray(act(obs))
        if action.shape != (n,):
            raise ValueError(f"rollout: expected act to return actions of shape ({n},), got {action.shape}")
        nxt, reward, term = env.step(state, action)
        obs_.append(obs)
        actions_.append(action)
        rewards_.append(np.where(alive, reward, 0.0))
        mask_.append(alive.copy())
        state = np.where(alive[:, None], nxt, state)
        terminated |= term & alive
        alive &= ~term
        if not alive.any():
            break
    stack = lambda xs: np.stack(xs, axis=1)  # noqa: E731  (n, T, ...)
    return Trajectories(stack(obs_), stack(actions_).astype(np.int64), stack(rewards_), stack(mask_), terminated)


# ---------------------------------------------------------------- returns and weights


def _check_rewards(fn: str, rewards: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    r = check_array(fn, "rewards", rewards)
    if r.ndim != 2 or r.size == 0:
        raise ValueError(f"{fn}: expected rewards of shape (n, T) with n, T >= 1, got {r.shape}")
    if mask is None:
        return r, np.ones(r.shape, dtype=bool)
    m = check_array(fn, "mask", mask, dtype=bool)
    if m.shape != r.shape:
        raise ValueError(f"{fn}: expected mask of shape {r.shape} (the rewards' shape), got {m.shape}")
    return r, m


def discounted_returns(rewards: Any, gamma: float = 1.0, mask: Any = None) -> np.ndarray:
    """Return from each step on: ``G[i, t] = sum_{s >= t} gamma^(s - t) rewards[i, s]``.

    With ``gamma=1`` this is the reward-to-go. Steps where ``mask`` is False
    (after the episode ended) get 0 and add nothing.

    Args:
        rewards: (n, T).
        gamma: the discount, in [0, 1].
        mask: (n, T) bool, or None for all steps.

    Returns:
        (n, T) float64. Taught in chapter 10, "Credit assignment in time".
    """
    r, m = _check_rewards("discounted_returns", rewards, mask)
    check_probability("discounted_returns", "gamma", gamma)
    r = np.where(m, r, 0.0)
    out = np.zeros_like(r)
    running = np.zeros(len(r))
    for t in range(r.shape[1] - 1, -1, -1):
        running = r[:, t] + gamma * running
        out[:, t] = running
    return np.where(m, out, 0.0)


def total_returns(rewards: Any, mask: Any = None) -> np.ndarray:
    """The whole episode's return at every step it ran, (n, T): plain REINFORCE's weight."""
    r, m = _check_rewards("total_returns", rewards, mask)
    return np.where(m, np.where(m, r, 0.0).sum(axis=1, keepdims=True), 0.0)


def time_baseline(returns: Any, mask: Any = None) -> np.ndarray:
    """The mean over the batch of ``returns`` (n, T) at each time step (over the episodes still running), (T,)."""
    g, m = _check_rewards("time_baseline", returns, mask)
    return (g * m).sum(axis=0) / np.maximum(m.sum(axis=0), 1)


def advantages_gae(rewards: Any, values: Any, next_values: Any, terminated: Any, done: Any,
                   gamma: float = 0.99, lam: float = 0.95) -> np.ndarray:
    """Generalized advantage estimates for segments of n environments, T steps each, (n, T).

    ``delta[t] = r[t] + gamma * (1 - terminated[t]) * next_values[t] - values[t]`` and
    ``A[t] = delta[t] + gamma * lam * (1 - done[t]) * A[t + 1]``, where
    ``done`` marks the last step of an episode (terminated or cut by the time
    limit) and ``next_values`` is V of the state after step t (before any reset).
    ``lam=1`` gives the n-step bootstrapped return minus V (Mnih et al. 2016),
    ``lam=0`` the one-step TD error. Taught in chapter 10, "An actor-critic".
    """
    r, _ = _check_rewards("advantages_gae", rewards, None)
    arrays = {}
    for name, a in (("values", values), ("next_values", next_values), ("terminated", terminated), ("done", done)):
        arrays[name] = check_array("advantages_gae", name, a, shape=r.shape)
    check_probability("advantages_gae", "gamma", gamma)
    check_probability("advantages_gae", "lam", lam)
    v, nv, term, dn = arrays["values"], arrays["next_values"], arrays["terminated"], arrays["done"]
    delta = r + gamma * (1.0 - term) * nv - v
    adv = np.zeros_like(r)
    running = np.zeros(len(r))
    for t in range(r.shape[1] - 1, -1, -1):
        running = delta[:, t] + gamma * lam * (1.0 - dn[:, t]) * running
        adv[:, t] = running
    return adv


# ---------------------------------------------------------------- policies


class SoftmaxPolicy(nn.Module):
    """k stacked tanh MLP policies, one per seed: obs / obs_scale -> logits over n_actions.

    ``sizes`` are all widths, observation width first and ``n_actions`` last
    (``[4, 2]`` is a linear policy). ``logits(obs)`` takes (k, m, obs_dim)
    and returns (k, m, n_actions). ``sample`` draws actions from the softmax
    (guess and check on actions); ``greedy`` takes the argmax. Taught in
    chapter 10, "REINFORCE on CartPole".
    """

    def __init__(self, sizes: Sequence[int], seeds: Sequence[int], obs_scale: Any = None) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.net = stacked_mlp(self.sizes, seeds, "tanh")
        self.n_seeds = self.net.n_seeds
        scale = np.ones(self.sizes[0]) if obs_scale is None else check_array("SoftmaxPolicy", "obs_scale",
                                                                             obs_scale, shape=(self.sizes[0],))
        self.register_buffer("obs_scale", torch.as_tensor(scale, dtype=torch.float32))

    def _obs(self, fn: str, obs: Any) -> torch.Tensor:
        x = torch.as_tensor(obs, dtype=torch.float32)
        if x.ndim == 2:  # (k * m, obs_dim), seed-major, as rollout hands it over
            if x.shape[1] != self.sizes[0] or x.shape[0] % self.n_seeds:
                raise ValueError(f"{fn}: expected obs of shape (k * m, {self.sizes[0]}) with k = {self.n_seeds}, "
                                 f"got {tuple(x.shape)}")
            x = x.reshape(self.n_seeds, -1, self.sizes[0])
        check_shape(fn, "obs", x, (self.n_seeds, None, self.sizes[0]))
        return x / self.obs_scale

    def logits(self, obs: Any) -> torch.Tensor:
        """Logits (k, m, n_actions) for observations (k, m, obs_dim) or (k * m, obs_dim)."""
        return self.net(self._obs("SoftmaxPolicy.logits", obs))

    def log_prob(self, obs: Any, actions: Any) -> torch.Tensor:
        """log pi(a | s), (k, m), for obs (k, m, obs_dim) and actions (k, m)."""
        logp = torch.log_softmax(self.logits(obs), dim=-1)
        a = torch.as_tensor(actions, dtype=torch.int64)
        check_shape("SoftmaxPolicy.log_prob", "actions", a, tuple(logp.shape[:2]))
        return logp.gather(-1, a[..., None])[..., 0]

    def numpy_logits(self, obs: np.ndarray) -> np.ndarray:
        """``logits`` in numpy, no autograd, for the rollout's hot loop: obs (k * m, obs_dim) -> (k * m, n_actions)."""
        h = np.asarray(obs, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != self.sizes[0] or h.shape[0] % self.n_seeds:
            raise ValueError(f"SoftmaxPolicy: expected obs of shape (k * m, {self.sizes[0]}) with k = {self.n_seeds}, "
                             f"got {h.shape}")
        h = h.reshape(self.n_seeds, -1, self.sizes[0]) / self.obs_scale.numpy()
        layers = self.net.layers
        for i, layer in enumerate(layers):
            h = h @ layer.weight.detach().numpy() + layer.bias.detach().numpy()  # (k, m, fan_out)
            if i < len(layers) - 1:
                h = np.tanh(h)
        return h.reshape(-1, self.sizes[-1])

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Actions (k * m,) drawn from the softmax for obs (k * m, obs_dim), with numpy's ``rng``."""
        z = self.numpy_logits(obs).astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        c = np.cumsum(p, axis=1)
        u = rng.random(len(p)) * c[:, -1]
        return np.minimum((c < u[:, None]).sum(axis=1), self.sizes[-1] - 1)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """The most probable action (k * m,) for obs (k * m, obs_dim)."""
        return self.numpy_logits(obs).argmax(axis=1)


class ValueNet(nn.Module):
    """k stacked critics V(s), one per seed: obs (k, m, obs_dim) -> values (k, m)."""

    def __init__(self, sizes: Sequence[int], seeds: Sequence[int], obs_scale: Any = None) -> None:
        super().__init__()
        if list(sizes)[-1] != 1:
            raise ValueError(f"ValueNet: expected sizes ending in 1 (one value per state), got {list(sizes)}")
        self.sizes = list(sizes)
        self.net = stacked_mlp(self.sizes, seeds, "tanh")
        self.n_seeds = self.net.n_seeds
        scale = np.ones(self.sizes[0]) if obs_scale is None else np.asarray(obs_scale, dtype=np.float64)
        self.register_buffer("obs_scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, obs: Any) -> torch.Tensor:
        x = torch.as_tensor(obs, dtype=torch.float32)
        check_shape("ValueNet", "obs", x, (self.n_seeds, None, self.sizes[0]))
        return self.net(x / self.obs_scale)[..., 0]


def fit_value(critic: ValueNet, obs: Any, targets: Any, mask: Any = None, *, steps: int = 5,
              lr: float = 0.01, batch_size: int | None = None, seed: int = 0,
              optimizer: torch.optim.Optimizer | None = None) -> float:
    """Regress V(s) onto ``targets`` (returns from each step on): ``steps`` Adam steps on the masked squared error.

    obs (k, m, obs_dim), targets and mask (k, m). With ``batch_size`` each
    step uses a fresh random subset of that many of the m states (drawn with
    ``seed``); without, all of them. Pass ``optimizer`` to keep Adam's state
    from call to call (as training does); returns the last loss. Taught in
    chapter 10, "Measuring the variance".
    """
    x = torch.as_tensor(obs, dtype=torch.float32)
    check_shape("fit_value", "obs", x, (critic.n_seeds, None, critic.sizes[0]))
    g = torch.as_tensor(check_array("fit_value", "targets", targets, shape=tuple(x.shape[:2])), dtype=torch.float32)
    m = torch.ones(g.shape, dtype=torch.bool) if mask is None else torch.as_tensor(
        check_array("fit_value", "mask", mask, shape=tuple(x.shape[:2]), dtype=bool))
    check_positive("fit_value", "steps", steps, integer=True)
    if batch_size is not None:
        check_positive("fit_value", "batch_size", batch_size, integer=True)
    opt = optimizer if optimizer is not None else torch.optim.Adam(critic.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        xb, gb, mb = x, g, m
        if batch_size is not None and batch_size < x.shape[1]:
            idx = torch.randint(0, x.shape[1], (batch_size,), generator=gen)
            xb, gb, mb = x[:, idx], g[:, idx], m[:, idx]
        opt.zero_grad()
        loss = torch.where(mb, (critic(xb) - gb) ** 2, 0.0).sum() / mb.sum().clamp(min=1)
        loss.backward()
        opt.step()
    return float(loss.detach())


# ---------------------------------------------------------------- the estimator


def policy_gradient_loss(log_probs: torch.Tensor, weights: Any, mask: Any = None,
                         n_episodes: int | None = None) -> torch.Tensor:
    """The surrogate whose gradient is minus the score-function (REINFORCE) estimate.

    ``-1/n sum_i sum_t mask[i, t] * weights[i, t] * log_probs[i, t]``, summed
    over seeds when there is a leading seed axis; the weights are constants
    (no gradient flows through them).

    Args:
        log_probs: (n, T) or (k, n, T) tensor, log pi(a_t | s_t) of the actions taken.
        weights: psi, the same shape: total return, reward-to-go, advantage...
        mask: the same shape, bool, or None.
        n_episodes: n, what the sum is divided by; default ``log_probs.shape[-2]``
            (give it when the steps of several episodes share one axis).

    Returns:
        a scalar tensor. Taught in chapter 10, "One identity, two places to put the noise".
    """
    if not isinstance(log_probs, torch.Tensor) or log_probs.ndim not in (2, 3) or log_probs.numel() == 0:
        raise ValueError(f"policy_gradient_loss: expected log_probs as a tensor of shape (n, T) or (k, n, T), "
                         f"got {getattr(log_probs, 'shape', type(log_probs).__name__)}")
    shape = tuple(log_probs.shape)
    w = torch.as_tensor(check_array("policy_gradient_loss", "weights", weights, shape=shape),
                        dtype=log_probs.dtype)
    m = torch.ones(shape, dtype=torch.bool) if mask is None else torch.as_tensor(
        check_array("policy_gradient_loss", "mask", mask, shape=shape, dtype=bool))
    n = shape[-2] if n_episodes is None else n_episodes
    return -(torch.where(m, w * log_probs, torch.zeros(())).sum()) / n


def score_vectors(policy: SoftmaxPolicy, obs: Any, actions: Any) -> torch.Tensor:
    """grad_theta log pi(a | s) for every step, one row each: (m, n_params), for a one-seed policy.

    obs (m, obs_dim), actions (m,). ``torch.func`` takes the m gradients in
    one vectorized call; the row is ordered like ``policy.parameters()``,
    each flattened. Taught in chapter 10, "Measuring the variance".
    """
    from torch.func import grad, vmap

    if policy.n_seeds != 1:
        raise ValueError(f"score_vectors: expected a policy with one seed, got {policy.n_seeds}")
    x = torch.as_tensor(obs, dtype=torch.float32)
    check_shape("score_vectors", "obs", x, (None, policy.sizes[0]))
    a = torch.as_tensor(actions, dtype=torch.int64)
    check_shape("score_vectors", "actions", a, (x.shape[0],))
    params = tuple(p.detach()[0] for p in policy.parameters())  # W (in, out), b (1, out), layer by layer

    def logp(ps: tuple[torch.Tensor, ...], o: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        h = o / policy.obs_scale
        for i in range(0, len(ps), 2):
            h = h @ ps[i] + ps[i + 1][0]
            if i < len(ps) - 2:
                h = torch.tanh(h)
        return (torch.log_softmax(h, dim=-1) * act).sum()  # act one-hot: no data-dependent indexing

    onehot = torch.nn.functional.one_hot(a, policy.sizes[-1]).float()
    grads = vmap(grad(logp), in_dims=(None, 0, 0))(params, x, onehot)
    return torch.cat([g.reshape(len(x), -1) for g in grads], dim=1)


def per_episode_gradients(scores: torch.Tensor, weights: Any, mask: Any) -> np.ndarray:
    """Each episode's estimate ``sum_t psi[i, t] * score[i, t]``, (n, n_params).

    ``scores`` (n, T, n_params) from :func:`score_vectors`, ``weights`` and
    ``mask`` (n, T). Their mean over episodes is the batch estimate; their
    spread is the variance the chapter measures.
    """
    s = scores.detach().double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores, float)
    if s.ndim != 3:
        raise ValueError(f"per_episode_gradients: expected scores of shape (n, T, n_params), got {s.shape}")
    w = check_array("per_episode_gradients", "weights", weights, shape=s.shape[:2])
    m = check_array("per_episode_gradients", "mask", mask, shape=s.shape[:2], dtype=bool)
    return np.einsum("nt,ntp->np", np.where(m, w, 0.0), s)


# ---------------------------------------------------------------- training runs


@dataclass
class Run:
    """What a training loop records, per seed.

    ``steps[i]``, ``cpu[i]`` and ``returns[i]`` are arrays, one entry per
    evaluation: training environment steps used so far, training CPU seconds
    so far (the batch's CPU time shared equally among its seeds), and the mean
    return of the evaluation episodes. ``solved_at[i]`` is the number of
    training steps at the first evaluation whose mean return reached ``target``
    (on CartPole, 500: every episode perfect), or None. ``walls[i]`` is like
    ``cpu[i]`` in wall-clock seconds (for reporting only: it counts the time
    other jobs on the machine take); ``wall`` is the whole run's wall-clock
    time, evaluations included. ``extra["best_policy"]`` (RL) is a copy of the
    policy with each seed at its best evaluation, ``extra["best_solutions"]``
    (ES) the best centres (k, n_params). ``extra["train_returns"]`` lists, per iteration, the returns of the
    training episodes, (k, episodes per seed).
    """

    steps: list[np.ndarray]
    cpu: list[np.ndarray]
    returns: list[np.ndarray]
    solved_at: list[int | None]
    wall: float = 0.0
    extra: dict = field(default_factory=dict)
    walls: list[np.ndarray] = field(default_factory=list)

    def on_grid(self, grid: Any, x: str = "steps") -> np.ndarray:
        """Each seed's evaluation return at the points of ``grid`` (the last evaluation at or before), (k, g)."""
        check_choice("Run.on_grid", "x", x, ["steps", "cpu", "wall"])
        grid = np.asarray(grid, dtype=float)
        out = np.empty((len(self.returns), len(grid)))
        axis = {"steps": self.steps, "cpu": self.cpu, "wall": self.walls}[x]
        for i, (xs, ys) in enumerate(zip(axis, self.returns)):
            idx = np.searchsorted(xs, grid, side="right") - 1
            out[i] = np.where(idx >= 0, ys[np.maximum(idx, 0)], np.nan)
        return out


class _Recorder:
    def __init__(self, k: int, target: float) -> None:
        self.k, self.target = k, target
        self.steps, self.cpu, self.returns = [[] for _ in range(k)], [[] for _ in range(k)], [[] for _ in range(k)]
        self.solved_at: list[int | None] = [None] * k
        self.train_returns: list[np.ndarray] = []
        self.walls: list[list[float]] = [[] for _ in range(k)]
        self.cpu_total = self.wall_total = 0.0
        self._start = (0.0, 0.0)
        self.best = np.full(k, -np.inf)
        self.best_params: list[Any] = [None] * k

    def begin(self) -> None:
        """Start timing a stretch of training (evaluation is not timed)."""
        self._start = (time.process_time(), time.perf_counter())

    def end(self) -> None:
        self.cpu_total += time.process_time() - self._start[0]
        self.wall_total += time.perf_counter() - self._start[1]

    def log_training(self, returns: np.ndarray) -> None:
        self.train_returns.append(np.asarray(returns, dtype=np.float64))

    def log(self, steps: np.ndarray, eval_returns: np.ndarray, snapshot: Callable[[int], Any]) -> None:
        """Record one evaluation; ``snapshot(i)`` copies seed i's parameters when it is its best so far."""
        for i in range(self.k):
            if eval_returns[i].mean() > self.best[i]:
                self.best[i] = eval_returns[i].mean()
                self.best_params[i] = snapshot(i)
            self.steps[i].append(int(steps[i]))
            self.cpu[i].append(self.cpu_total / self.k)
            self.walls[i].append(self.wall_total / self.k)
            self.returns[i].append(float(eval_returns[i].mean()))
            if self.solved_at[i] is None and eval_returns[i].mean() >= self.target:
                self.solved_at[i] = int(steps[i])

    def run(self, wall: float, **extra: Any) -> Run:
        arr = lambda xs: [np.asarray(x) for x in xs]  # noqa: E731
        extra.setdefault("train_returns", self.train_returns)
        return Run(arr(self.steps), arr(self.cpu), arr(self.returns), self.solved_at, wall, extra,
                   arr(self.walls))


def _check_env(fn: str, env: Any, sizes: Sequence[int]) -> None:
    for attr in ("reset", "step", "observe", "obs_dim", "n_actions", "max_steps"):
        if not hasattr(env, attr):
            raise TypeError(f"{fn}: expected a batched environment (CartPole(), MountainCar()), got "
                            f"{type(env).__name__} without {attr!r}")
    if sizes[0] != env.obs_dim or sizes[-1] != env.n_actions:
        raise ValueError(f"{fn}: expected sizes from {env.obs_dim} observations to {env.n_actions} actions "
                         f"for {env.name}, got {list(sizes)}")


def evaluate_policy(env: BatchedEnv, act: Callable[[np.ndarray], np.ndarray], k: int, episodes: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Returns (k, episodes) of k policies (seed-major actions from ``act``) on the batched ``env``."""
    return rollout(env, act, k * episodes, rng).returns.reshape(k, episodes)


def _snapshot(policy: SoftmaxPolicy) -> Callable[[int], list[torch.Tensor]]:
    return lambda i: [p.detach()[i].clone() for p in policy.parameters()]


def _best_policy(policy: SoftmaxPolicy, record: _Recorder) -> SoftmaxPolicy:
    """A copy of ``policy`` in which each seed has the parameters of its best evaluation."""
    best = copy.deepcopy(policy)
    with torch.no_grad():
        for i, params in enumerate(record.best_params):
            for p, q in zip(best.parameters(), params):
                p[i] = q
    return best


def _compact(batch: Trajectories, psi: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """The steps that happened, seed by seed, padded to the longest seed: (k, L, obs_dim), (k, L), (k, L), (k, L)."""
    masks = batch.mask.reshape(k, -1)
    L = int(masks.sum(axis=1).max())
    obs = np.zeros((k, L, batch.obs.shape[-1]), dtype=np.float32)
    actions = np.zeros((k, L), dtype=np.int64)
    psi_c, valid = np.zeros((k, L)), np.zeros((k, L), dtype=bool)
    flat_obs, flat_a, flat_psi = batch.obs.reshape(k, -1, batch.obs.shape[-1]), batch.actions.reshape(k, -1), psi.reshape(k, -1)
    for i in range(k):
        c = int(masks[i].sum())
        obs[i, :c], actions[i, :c], psi_c[i, :c], valid[i, :c] = flat_obs[i][masks[i]], flat_a[i][masks[i]], flat_psi[i][masks[i]], True
    return torch.from_numpy(obs), torch.from_numpy(actions), psi_c, valid


def train_reinforce(env: BatchedEnv, sizes: Sequence[int], seeds: Sequence[int], *, steps: int,
                    episodes: int = 16, lr: float = 0.01, weights: str = "value", gamma: float = 1.0,
                    value_lr: float = 0.01, value_iters: int = 5, eval_every: int = 2, eval_episodes: int = 10,
                    target: float | None = None, progress: bool = False) -> tuple[Run, SoftmaxPolicy]:
    """REINFORCE on ``env``, k = len(seeds) policies trained together until each used ``steps`` env steps.

    Every iteration each seed runs ``episodes`` full episodes with its softmax
    policy, weighs each step's score by ``weights``:

    * ``"total"``: the episode's return (Williams 1992 as written);
    * ``"reward_to_go"``: the discounted return from that step on;
    * ``"time_mean"``: reward-to-go minus its batch mean at that time step;
    * ``"value"``: reward-to-go minus a learned V(s) (REINFORCE with a value
      baseline; V is regressed onto the reward-to-go for ``value_iters`` Adam steps),

    and takes one Adam step on :func:`policy_gradient_loss`. Every
    ``eval_every`` iterations the greedy policy plays ``eval_episodes``
    episodes (not counted as training steps). Returns the :class:`Run` and the policy.
    Taught in chapter 10, "REINFORCE on CartPole".
    """
    _check_env("train_reinforce", env, sizes)
    check_choice("train_reinforce", "weights", weights, ["total", "reward_to_go", "time_mean", "value"])
    for name, value in (("steps", steps), ("episodes", episodes), ("eval_every", eval_every),
                        ("eval_episodes", eval_episodes)):
        check_positive("train_reinforce", name, value, integer=True)
    seeds = list(seeds)
    k = len(seeds)
    target = env.max_steps if target is None else target
    policy = SoftmaxPolicy(sizes, seeds, obs_scale=env.obs_scale)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    critic = ValueNet([sizes[0], 16, 1], [s + 10_000 for s in seeds], obs_scale=env.obs_scale)
    value_opt = torch.optim.Adam(critic.parameters(), lr=value_lr)
    rng = np.random.default_rng([seeds[0], 10])
    eval_rng = np.random.default_rng([seeds[0], 11])
    record = _Recorder(k, target)
    used = np.zeros(k, dtype=np.int64)
    start_wall, it = time.perf_counter(), 0
    record.log(used, evaluate_policy(env, policy.greedy, k, eval_episodes, eval_rng), _snapshot(policy))
    bar = progress_bar(iter(int, 1), progress, desc=f"REINFORCE ({weights})", leave=False)
    for _ in bar:
        if used.min() >= steps:
            break
        record.begin()
        batch = rollout(env, lambda o: policy.sample(o, rng), k * episodes, rng)
        used += batch.mask.reshape(k, -1).sum(axis=1)
        record.log_training(batch.returns.reshape(k, episodes))
        if weights == "total":
            psi = total_returns(batch.rewards, batch.mask)
        else:
            psi = discounted_returns(batch.rewards, gamma, batch.mask)
        if weights == "time_mean":
            psi = np.concatenate([p - time_baseline(p, m) for p, m in zip(np.split(psi, k), np.split(batch.mask, k))])
        obs, actions, psi_c, valid = _compact(batch, psi, k)  # (k, L, obs_dim), (k, L), (k, L), (k, L)
        if weights == "value":
            returns_to_go = psi_c
            with torch.no_grad():
                psi_c = psi_c - critic(obs).double().numpy()  # the advantage, with V before this batch
            fit_value(critic, obs, returns_to_go, valid, steps=value_iters, optimizer=value_opt)
        logp = policy.log_prob(obs, actions)  # (k, L)
        opt.zero_grad()
        policy_gradient_loss(logp, psi_c, valid, n_episodes=episodes).backward()
        opt.step()
        record.end()
        it += 1
        if it % eval_every == 0 or used.min() >= steps:
            record.log(used, evaluate_policy(env, policy.greedy, k, eval_episodes, eval_rng), _snapshot(policy))
    return record.run(time.perf_counter() - start_wall, best_policy=_best_policy(policy, record)), policy


def train_actor_critic(env: BatchedEnv, sizes: Sequence[int], seeds: Sequence[int], *, steps: int,
                       n_envs: int = 16, n_steps: int = 16, lr: float = 0.003, gamma: float = 0.99,
                       lam: float = 0.95, value_coef: float = 0.5, entropy_coef: float = 0.0,
                       clip: float | None = None, normalize: bool = False, eval_every: int = 20, eval_episodes: int = 10, target: float | None = None,
                       progress: bool = False) -> tuple[Run, SoftmaxPolicy, ValueNet]:
    """A synchronous advantage actor-critic (A2C), k = len(seeds) agents trained together.

    Each agent runs ``n_envs`` environments continuously (an episode that
    ends restarts at once) and updates every ``n_steps`` steps, mid-episode:
    the critic V(s) (one hidden layer of 32 tanh units) bootstraps the returns,
    advantages are :func:`advantages_gae`, and one Adam step minimizes
    ``policy_gradient_loss(advantages) + value_coef * (V - target)^2 - entropy_coef * entropy``.
    With ``normalize`` the advantages are standardized per seed and segment
    before the policy loss (not the critic's targets); with ``clip`` each
    seed's policy and critic gradients are clipped to that norm
    (``companion.training.clip_gradients``).
    Returns the :class:`Run`, the policy and the critic. Taught in chapter 10, "An actor-critic".
    """
    _check_env("train_actor_critic", env, sizes)
    for name, value in (("steps", steps), ("n_envs", n_envs), ("n_steps", n_steps), ("eval_every", eval_every),
                        ("eval_episodes", eval_episodes)):
        check_positive("train_actor_critic", name, value, integer=True)
    seeds = list(seeds)
    k = len(seeds)
    target = env.max_steps if target is None else target
    policy = SoftmaxPolicy(sizes, seeds, obs_scale=env.obs_scale)
    critic = ValueNet([sizes[0], 16, 1], [s + 10_000 for s in seeds], obs_scale=env.obs_scale)
    opt = torch.optim.Adam(list(policy.parameters()) + list(critic.parameters()), lr=lr)
    rng = np.random.default_rng([seeds[0], 20])
    eval_rng = np.random.default_rng([seeds[0], 21])
    record = _Recorder(k, target)
    N = k * n_envs
    state, t_in_episode = env.reset(N, rng), np.zeros(N, dtype=np.int64)
    used, start_wall, it = np.zeros(k, dtype=np.int64), time.perf_counter(), 0
    record.log(used, evaluate_policy(env, policy.greedy, k, eval_episodes, eval_rng), _snapshot(policy))
    bar = progress_bar(iter(int, 1), progress, desc="actor-critic", leave=False)
    for _ in bar:
        if used.min() >= steps:
            break
        record.begin()
        obs_, act_, rew_, next_obs_, term_, done_ = [], [], [], [], [], []
        for _ in range(n_steps):
            obs = env.observe(state)
            action = policy.sample(obs, rng)
            nxt, reward, term = env.step(state, action)
            t_in_episode += 1
            done = term | (t_in_episode >= env.max_steps)
            obs_.append(obs), act_.append(action), rew_.append(reward)
            next_obs_.append(env.observe(nxt)), term_.append(term), done_.append(done)
            if done.any():
                nxt[done] = env.reset(int(done.sum()), rng)
                t_in_episode[done] = 0
            state = nxt
        st = lambda xs, dtype=None: np.stack(xs, axis=1) if dtype is None else np.stack(xs, axis=1).astype(dtype)  # noqa: E731
        obs_b, next_b = st(obs_).reshape(k, n_envs * n_steps, -1), st(next_obs_).reshape(k, n_envs * n_steps, -1)
        with torch.no_grad():
            next_v = critic(next_b).reshape(N, n_steps).double().numpy()
        v = critic(obs_b)  # (k, n_envs * n_steps), with gradient
        adv = advantages_gae(st(rew_), v.detach().reshape(N, n_steps).double().numpy(), next_v,
                             st(term_, float), st(done_, float), gamma, lam)
        returns_target = torch.as_tensor(adv.reshape(k, -1), dtype=torch.float32) + v.detach()
        if normalize:
            a = adv.reshape(k, -1)
            adv = ((a - a.mean(axis=1, keepdims=True)) / (a.std(axis=1, keepdims=True) + 1e-8)).reshape(adv.shape)
        logits = policy.logits(obs_b)
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, torch.as_tensor(st(act_, np.int64).reshape(k, -1))[..., None])[..., 0]
        entropy = -(logp_all.exp() * logp_all).sum(-1).mean(-1).sum()
        loss = (policy_gradient_loss(logp.reshape(k, n_envs, n_steps), adv.reshape(k, n_envs, n_steps)) / n_steps
                + value_coef * ((v - returns_target) ** 2).mean(-1).sum() - entropy_coef * entropy)
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            clip_gradients(policy, clip)
            clip_gradients(critic, clip)
        opt.step()
        used += n_envs * n_steps
        record.end()
        it += 1
        if it % eval_every == 0 or used.min() >= steps:
            record.log(used, evaluate_policy(env, policy.greedy, k, eval_episodes, eval_rng), _snapshot(policy))
    return (record.run(time.perf_counter() - start_wall, best_policy=_best_policy(policy, record)),
            policy, critic)


# ---------------------------------------------------------------- ES on the same environments


class ParamPolicy:
    """The same MLP as :class:`SoftmaxPolicy`, acting greedily, for a batch of flat parameter vectors.

    ``sizes`` as for :class:`SoftmaxPolicy`; parameters flattened layer by
    layer, W (fan_in, fan_out) row-major then b (fan_out,). ``act(params,
    obs)`` maps params (m, n_params) and obs (m, obs_dim) to actions (m,):
    the argmax of the logits, so all exploration comes from perturbing the
    parameters (chapter 8's ES). ``init(seed)`` draws torch's default
    initialization, as :class:`SoftmaxPolicy` does. Taught in chapter 10,
    "Head to head with evolution strategies".
    """

    def __init__(self, sizes: Sequence[int], obs_scale: Any = None) -> None:
        self.sizes = list(sizes)
        self.shapes = [(a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        self.n_params = sum(a * b + b for a, b in self.shapes)
        self.obs_scale = np.ones(self.sizes[0]) if obs_scale is None else np.asarray(obs_scale, dtype=np.float64)

    def init(self, seed: int) -> np.ndarray:
        """Flat parameters (n_params,) equal to ``SoftmaxPolicy(sizes, [seed])``'s."""
        net = SoftmaxPolicy(self.sizes, [seed]).net
        return np.concatenate([np.concatenate([layer.weight.detach()[0].numpy().ravel(),
                                               layer.bias.detach()[0, 0].numpy()]) for layer in net.layers])

    def logits(self, params: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Logits (m, n_actions) for params (m, n_params) and obs (m, obs_dim)."""
        params = check_array("ParamPolicy.logits", "params", params, shape=(None, self.n_params))
        h = check_array("ParamPolicy.logits", "obs", obs, shape=(len(params), self.sizes[0])) / self.obs_scale
        i = 0
        for layer, (a, b) in enumerate(self.shapes):
            W = params[:, i:i + a * b].reshape(-1, a, b)
            bias = params[:, i + a * b:i + a * b + b]
            i += a * b + b
            h = np.einsum("mi,mio->mo", h, W) + bias
            if layer < len(self.shapes) - 1:
                h = np.tanh(h)
        return h

    def act(self, params: np.ndarray, obs: np.ndarray) -> np.ndarray:
        return self.logits(params, obs).argmax(axis=1)


def train_es(env: BatchedEnv, policy: ParamPolicy, optimizers: Sequence[Any], *, steps: int,
             eval_episodes: int = 10, target: float | None = None, seed: int = 0,
             progress: bool = False) -> Run:
    """Evolution strategies on ``env``: every optimizer (one per seed) until it used ``steps`` env steps.

    ``optimizers`` have chapter 8's ``ask``/``tell``/``solution`` interface
    (``companion.es.OpenAIES``). Each generation every candidate of every
    seed plays one episode, all in one batched :func:`rollout`; its return is
    its fitness. After each generation each seed's ``solution`` plays
    ``eval_episodes`` episodes (not counted as training steps). Taught in
    chapter 10, "Head to head with evolution strategies".
    """
    if not optimizers:
        raise ValueError("train_es: expected at least one optimizer, got none")
    check_positive("train_es", "steps", steps, integer=True)
    k = len(optimizers)
    target = env.max_steps if target is None else target
    rng = np.random.default_rng([seed, 30])
    eval_rng = np.random.default_rng([seed, 31])
    record = _Recorder(k, target)
    used, start_wall = np.zeros(k, dtype=np.int64), time.perf_counter()

    def evaluate_solutions() -> np.ndarray:
        centres = np.repeat(np.stack([o.solution for o in optimizers]), eval_episodes, axis=0)
        return rollout(env, lambda o: policy.act(centres, o), len(centres), eval_rng).returns.reshape(k, -1)

    record.log(used, evaluate_solutions(), lambda i: optimizers[i].solution.copy())
    bar = progress_bar(iter(int, 1), progress, desc="ES", leave=False)
    for _ in bar:
        if used.min() >= steps:
            break
        record.begin()
        candidates = [o.ask() for o in optimizers]
        population = len(candidates[0])
        flat = np.concatenate(candidates)
        batch = rollout(env, lambda o, flat=flat: policy.act(flat, o), len(flat), rng)
        fitness = batch.returns.reshape(k, population)
        record.log_training(fitness)
        for o, f in zip(optimizers, fitness):
            o.tell(f)
        used += batch.mask.reshape(k, population, -1).sum(axis=(1, 2))
        record.end()
        record.log(used, evaluate_solutions(), lambda i: optimizers[i].solution.copy())
    return record.run(time.perf_counter() - start_wall, best_solutions=np.stack(record.best_params))


# ---------------------------------------------------------------- gymnasium itself


def evaluate_gym(act: Callable[[np.ndarray], np.ndarray], env_id: str = "CartPole-v1", episodes: int = 10,
                 seed: int = 0) -> np.ndarray:
    """Returns (episodes,) of a policy in the real gymnasium environment, all episodes side by side.

    ``act`` maps observations (episodes, obs_dim) to actions (episodes,).
    The episodes run in ``gymnasium``'s synchronous vector environment, one
    ``env.step`` per time step for all of them, seeded ``seed, seed + 1, ...``;
    each episode's first ending counts. Taught in chapter 10, "The trained
    policies in gymnasium".
    """
    import gymnasium as gym

    check_positive("evaluate_gym", "episodes", episodes, integer=True)
    envs_ = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
    obs, _ = envs_.reset(seed=[seed + i for i in range(episodes)])
    returns, alive = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while alive.any():
        obs, reward, terminated, truncated, _ = envs_.step(np.asarray(act(obs)))
        returns += np.where(alive, reward, 0.0)
        alive &= ~(terminated | truncated)
    envs_.close()
    return returns


# ---------------------------------------------------------------- lines of code


def code_lines(*objects: Any) -> int:
    """Lines of code of functions or classes: no blank lines, comments or docstrings."""
    total = 0
    for obj in objects:
        source = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(source)
        doc_lines: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.body:
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                        and isinstance(first.value.value, str):
                    doc_lines.update(range(first.lineno, first.end_lineno + 1))
        for number, line in enumerate(source.splitlines(), start=1):
            stripped = line.strip()
            if stripped and not stripped.startswith("#") and number not in doc_lines:
                total += 1
    return total
