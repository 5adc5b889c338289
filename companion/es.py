"""Evolution strategies: guess and check on parameters (chapter 8).

OpenAI-ES (Salimans et al. 2017) in numpy, with the toys and the control task
the chapter trains on, in the order the chapter reads: the toy objectives,
fitness shaping, the estimator, the optimizer, CartPole policies and their
training loop, a genetic algorithm for comparison, and ES at scale (a shared
noise table, workers that exchange only seeds and fitness values). Shapes, for ``d`` parameters and a population of ``n``:

* ``params`` (the centre of the search distribution) has shape (d,)
* ``ask()`` returns candidates ``params + sigma * noise`` of shape (n, d)
* ``tell(fitness)`` takes one fitness per candidate, shape (n,), and moves
  ``params`` along the estimated gradient of the *Gaussian-smoothed* fitness::

      g = 1 / (n * sigma) * sum_i shaped(F)_i * noise_i  -  weight_decay * params

With antithetic (mirrored) sampling the noise comes in pairs ``+eps, -eps``;
with centered-rank shaping ``shaped(F)`` is the fitness's rank mapped
linearly onto [-0.5, 0.5].

The control task is CartPole-v1, batched in numpy by ``companion.envs``, so
one matrix product per step evaluates a whole population of policies
(``evaluate_cartpole``); ``evaluate_gym`` runs the real gymnasium
environment, one episode at a time.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy.stats import rankdata

from companion.envs import MAX_STEPS, cartpole_returns, gym_returns

SHAPINGS = ("centered_rank", "standardize", "none")


# ---------------------------------------------------------------- helpers


def _as_vector(x: object, name: str, who: str) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{who}: expected {name} of shape (d,) with d >= 1, got shape {array.shape}")
    return array


def _check_positive(value: float, name: str, who: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{who}: expected {name} to be a positive number, got {value!r}")


# ---------------------------------------------------------------- toy objectives


def hidden_vector_fitness(W: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The classic toy: ``-||w - target||^2`` for each row of ``W`` (n, d) -> (n,), or (d,) -> scalar."""
    W = np.asarray(W, dtype=np.float64)
    t = _as_vector(target, "target", "hidden_vector_fitness")
    if W.shape[-1:] != t.shape:
        raise ValueError(f"hidden_vector_fitness: expected W of shape (..., {t.size}), got {W.shape}")
    return -np.sum((W - t) ** 2, axis=-1)


def rosenbrock(X: np.ndarray) -> np.ndarray:
    """The Rosenbrock function ``sum 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` of each row, (n, d) -> (n,) or (d,) -> scalar."""
    X = np.asarray(X, dtype=np.float64)
    if X.shape[-1] < 2:
        raise ValueError(f"rosenbrock: expected at least 2 coordinates in the last axis, got shape {X.shape}")
    a, b = X[..., :-1], X[..., 1:]
    return np.sum(100.0 * (b - a**2) ** 2 + (1.0 - a) ** 2, axis=-1)


def rosenbrock_gradient(x: np.ndarray) -> np.ndarray:
    """The closed-form gradient of ``rosenbrock`` at one point, (d,) -> (d,)."""
    x = _as_vector(x, "x", "rosenbrock_gradient")
    if x.size < 2:
        raise ValueError(f"rosenbrock_gradient: expected d >= 2, got shape {x.shape}")
    g = np.zeros_like(x)
    a, b = x[:-1], x[1:]
    g[:-1] += -400.0 * a * (b - a**2) - 2.0 * (1.0 - a)
    g[1:] += 200.0 * (b - a**2)
    return g


# ---------------------------------------------------------------- fitness shaping


def centered_ranks(fitness: Sequence[float] | np.ndarray) -> np.ndarray:
    """Replace each fitness by its rank, mapped linearly onto [-0.5, 0.5].

    The worst gets -0.5, the best +0.5; tied values share their average rank.
    The result is zero-mean and preserves the order of the input, whatever the
    scale of the fitness or any outliers in it.

    Args:
        fitness: shape (n,) with n >= 2.

    Returns:
        shape (n,), float64.
    """
    f = np.asarray(fitness, dtype=np.float64)
    if f.ndim != 1 or f.size < 2:
        raise ValueError(f"centered_ranks: expected fitness of shape (n,) with n >= 2, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("centered_ranks: expected finite fitness values, got NaN or inf")
    return (rankdata(f) - 1.0) / (f.size - 1) - 0.5


def shape_fitness(fitness: np.ndarray, shaping: str) -> np.ndarray:
    """Apply one of ``SHAPINGS`` to a fitness vector of shape (n,)."""
    f = np.asarray(fitness, dtype=np.float64)
    if shaping == "centered_rank":
        return centered_ranks(f)
    if shaping == "standardize":
        std = f.std()
        return (f - f.mean()) / std if std > 0 else np.zeros_like(f)
    if shaping == "none":
        return f
    raise ValueError(f"shape_fitness: expected shaping in {SHAPINGS}, got {shaping!r}")


# ---------------------------------------------------------------- the estimator


def sample_noise(rng: np.random.Generator, population: int, dim: int, antithetic: bool = True) -> np.ndarray:
    """Standard normal perturbations of shape (population, dim).

    With ``antithetic`` the first half is ``eps`` and the second ``-eps``, so
    ``population`` must be even.
    """
    if not isinstance(population, int) or population < 1:
        raise ValueError(f"sample_noise: expected population to be a positive int, got {population!r}")
    if antithetic:
        if population % 2:
            raise ValueError(f"sample_noise: antithetic sampling needs an even population, got {population}")
        half = rng.standard_normal((population // 2, dim))
        return np.concatenate([half, -half])
    return rng.standard_normal((population, dim))


def es_gradient(fitness: np.ndarray, noise: np.ndarray, sigma: float, shaping: str = "none") -> np.ndarray:
    """The ES search-gradient estimate from one population.

    Args:
        fitness: shape (n,), the fitness of ``params + sigma * noise[i]``.
        noise: shape (n, d).
        sigma: the perturbation scale.
        shaping: one of ``SHAPINGS``, applied to ``fitness`` first.

    Returns:
        shape (d,): ``shaped(fitness) @ noise / (n * sigma)``, an estimate of the
        gradient of ``E[f(params + sigma * eps)]`` (exactly that, in
        expectation, when ``shaping="none"``).
    """
    noise = np.asarray(noise, dtype=np.float64)
    f = np.asarray(fitness, dtype=np.float64)
    if noise.ndim != 2:
        raise ValueError(f"es_gradient: expected noise of shape (n, d), got {noise.shape}")
    if f.shape != (noise.shape[0],):
        raise ValueError(f"es_gradient: expected fitness of shape ({noise.shape[0]},), got {f.shape}")
    _check_positive(sigma, "sigma", "es_gradient")
    return shape_fitness(f, shaping) @ noise / (noise.shape[0] * sigma)


def estimate_gradient(
    f: Callable[[np.ndarray], np.ndarray],
    params: np.ndarray,
    sigma: float,
    population: int,
    rng: np.random.Generator,
    antithetic: bool = True,
    shaping: str = "none",
) -> np.ndarray:
    """Sample a population around ``params`` (d,), evaluate ``f`` on it (n, d) -> (n,), return the (d,) estimate."""
    theta = _as_vector(params, "params", "estimate_gradient")
    noise = sample_noise(rng, population, theta.size, antithetic)
    return es_gradient(f(theta + sigma * noise), noise, sigma, shaping)


# ---------------------------------------------------------------- the optimizer


class OpenAIES:
    """The OpenAI-ES optimizer with an ``ask``/``tell`` interface.

    Args:
        params: the starting centre, shape (d,).
        sigma: standard deviation of the perturbations.
        lr: learning rate (for SGD, or Adam's step size).
        population: candidates per generation (even, with ``antithetic``).
        antithetic: mirrored sampling, ``+eps`` and ``-eps``.
        shaping: "centered_rank" (OpenAI-ES), "standardize" or "none".
        weight_decay: the update adds ``-weight_decay * params`` to the gradient
            estimate, pulling the parameters toward zero.
        optimizer: "sgd" (``params += lr * g``) or "adam".
        seed: seeds the noise (``numpy.random.default_rng``).

    ``step(f)`` is ``ask``, evaluate, ``tell`` in one call, for an ``f`` that
    maps candidates (n, d) to fitness (n,) (higher is better).
    """

    def __init__(
        self,
        params: np.ndarray,
        sigma: float = 0.1,
        lr: float = 0.01,
        population: int = 50,
        antithetic: bool = True,
        shaping: str = "centered_rank",
        weight_decay: float = 0.0,
        optimizer: str = "sgd",
        seed: int = 0,
    ) -> None:
        self.params = _as_vector(params, "params", "OpenAIES").copy()
        _check_positive(sigma, "sigma", "OpenAIES")
        _check_positive(lr, "lr", "OpenAIES")
        if not isinstance(population, int) or population < 2:
            raise ValueError(f"OpenAIES: expected population to be an int >= 2, got {population!r}")
        if antithetic and population % 2:
            raise ValueError(f"OpenAIES: antithetic sampling needs an even population, got {population}")
        if shaping not in SHAPINGS:
            raise ValueError(f"OpenAIES: expected shaping in {SHAPINGS}, got {shaping!r}")
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"OpenAIES: expected optimizer 'sgd' or 'adam', got {optimizer!r}")
        if weight_decay < 0:
            raise ValueError(f"OpenAIES: expected weight_decay >= 0, got {weight_decay!r}")
        self.sigma, self.lr, self.population = float(sigma), float(lr), population
        self.antithetic, self.shaping, self.weight_decay, self.optimizer = antithetic, shaping, weight_decay, optimizer
        self.rng = np.random.default_rng(seed)
        self.generation = 0
        self._noise: np.ndarray | None = None
        self._m = np.zeros_like(self.params)  # Adam's moment estimates
        self._v = np.zeros_like(self.params)

    def ask(self) -> np.ndarray:
        """Sample this generation's candidates, shape (population, d)."""
        self._noise = sample_noise(self.rng, self.population, self.params.size, self.antithetic)
        return self.params + self.sigma * self._noise

    def tell(self, fitness: np.ndarray) -> np.ndarray:
        """Update ``params`` from the candidates' fitness (population,); returns the step's gradient (d,)."""
        if self._noise is None:
            raise ValueError("OpenAIES.tell: call ask() first, then tell() the fitness of its candidates")
        f = np.asarray(fitness, dtype=np.float64)
        if f.shape != (self.population,):
            raise ValueError(f"OpenAIES.tell: expected fitness of shape ({self.population},), got {f.shape}")
        g = es_gradient(f, self._noise, self.sigma, self.shaping) - self.weight_decay * self.params
        self._noise = None
        self.generation += 1
        if self.optimizer == "sgd":
            self.params = self.params + self.lr * g
        else:  # Adam, ascending
            b1, b2, eps = 0.9, 0.999, 1e-8
            self._m = b1 * self._m + (1 - b1) * g
            self._v = b2 * self._v + (1 - b2) * g * g
            step = self.lr * math.sqrt(1 - b2**self.generation) / (1 - b1**self.generation)
            self.params = self.params + step * self._m / (np.sqrt(self._v) + eps)
        return g

    @property
    def solution(self) -> np.ndarray:
        """What the optimizer proposes now: the centre ``params`` (d,)."""
        return self.params

    def step(self, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """One generation: evaluate ``f`` on ``ask()``'s candidates and ``tell``. Returns the fitness (population,)."""
        fitness = np.asarray(f(self.ask()), dtype=np.float64)
        self.tell(fitness)
        return fitness


# ---------------------------------------------------------------- policies


class LinearPolicy:
    """Push right when ``obs @ w + b > 0``: ``n_params = obs_dim + 1`` parameters (w, then b)."""

    def __init__(self, obs_dim: int = 4) -> None:
        if not isinstance(obs_dim, int) or obs_dim < 1:
            raise ValueError(f"LinearPolicy: expected obs_dim to be a positive int, got {obs_dim!r}")
        self.obs_dim = obs_dim
        self.n_params = obs_dim + 1

    def _check(self, params: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params, obs = np.asarray(params, dtype=np.float64), np.asarray(obs, dtype=np.float64)
        if params.ndim != 2 or params.shape[1] != self.n_params:
            raise ValueError(
                f"{type(self).__name__}.act: expected params of shape (batch, {self.n_params}), got {params.shape}"
            )
        if obs.shape != (params.shape[0], self.obs_dim):
            raise ValueError(
                f"{type(self).__name__}.act: expected obs of shape ({params.shape[0]}, {self.obs_dim}), got {obs.shape}"
            )
        return params, obs

    def act(self, params: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Actions (batch,) in {0, 1} for each row's parameters (batch, n_params) and observation (batch, obs_dim)."""
        return self._act(*self._check(params, obs))

    def _act(self, params: np.ndarray, obs: np.ndarray) -> np.ndarray:  # unchecked, for the hot loop
        return (np.einsum("bi,bi->b", obs, params[:, :-1]) + params[:, -1] > 0).astype(np.int64)


class MLPPolicy(LinearPolicy):
    """A tiny tanh network, obs -> ``hidden`` tanh units -> one output; push right when it is > 0.

    Parameters, flattened in this order: W1 (obs_dim, hidden), b1 (hidden,), w2 (hidden,), b2 (1,).
    """

    def __init__(self, obs_dim: int = 4, hidden: int = 8) -> None:
        super().__init__(obs_dim)
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"MLPPolicy: expected hidden to be a positive int, got {hidden!r}")
        self.hidden = hidden
        self.n_params = obs_dim * hidden + 2 * hidden + 1

    def _act(self, params: np.ndarray, obs: np.ndarray) -> np.ndarray:
        d, h = self.obs_dim, self.hidden
        W1 = params[:, : d * h].reshape(-1, d, h)
        b1, w2, b2 = params[:, d * h : d * h + h], params[:, d * h + h : -1], params[:, -1]
        hidden = np.tanh(np.einsum("bi,bih->bh", obs, W1) + b1)
        return (np.einsum("bh,bh->b", hidden, w2) + b2 > 0).astype(np.int64)


def _check_population(policy: LinearPolicy, params: np.ndarray, who: str) -> np.ndarray:
    if not isinstance(policy, LinearPolicy):
        raise TypeError(f"{who}: expected a LinearPolicy or MLPPolicy, got {type(policy).__name__}")
    params = np.asarray(params, dtype=np.float64)
    if params.ndim == 1:
        params = params[None]
    if params.ndim != 2 or params.shape[1] != policy.n_params:
        raise ValueError(
            f"{who}: expected params of shape (population, {policy.n_params}) for {type(policy).__name__}, "
            f"got {params.shape}"
        )
    return params


def evaluate_cartpole(
    policy: LinearPolicy,
    params: np.ndarray,
    episodes: int = 1,
    seed: int = 0,
    max_steps: int = MAX_STEPS,
) -> np.ndarray:
    """Returns of every candidate on CartPole-v1, all episodes run as one batch.

    Each of the ``population * episodes`` environments starts from its own
    random state; at every step one batched ``policy.act`` chooses all actions
    and one ``cartpole_step`` moves all environments. An episode earns 1 per
    step, the falling step included, up to ``max_steps`` (500, as in v1).

    Args:
        params: (population, n_params), or (n_params,) for one candidate.
        episodes: episodes per candidate.
        seed: seeds the start states.

    Returns:
        returns of shape (population, episodes).
    """
    params = _check_population(policy, params, "evaluate_cartpole")
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"evaluate_cartpole: expected episodes to be a positive int, got {episodes!r}")
    return cartpole_returns(policy._act, params, episodes, seed, max_steps)


def evaluate_gym(
    policy: LinearPolicy,
    params: np.ndarray,
    env_id: str = "CartPole-v1",
    episodes: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """Returns (episodes,) of one candidate (n_params,) in the real gymnasium environment, one step at a time."""
    params = _check_population(policy, params, "evaluate_gym")
    if params.shape[0] != 1:
        raise ValueError(f"evaluate_gym: expected the params of one candidate, shape ({policy.n_params},), got {params.shape}")
    try:
        return gym_returns(policy._act, params[0], env_id, episodes, seed, policy.obs_dim)
    except ValueError as err:
        raise ValueError(str(err).replace("gym_returns", "evaluate_gym")) from None


class CartPoleRun:
    """What ``train_cartpole`` records for each optimizer.

    Attributes:
        eval_returns: list per optimizer of the solution's mean return over the
            evaluation episodes, one entry per generation (entry g is after g updates).
        population_returns: list per optimizer of the candidates' mean return per generation.
        solved_at: per optimizer, the number of generations after which the
            solution first scored ``target`` on every evaluation episode, or None.
        episodes: per optimizer, training episodes used (population x generations run).
    """

    def __init__(self, n: int) -> None:
        self.eval_returns: list[list[float]] = [[] for _ in range(n)]
        self.population_returns: list[list[float]] = [[] for _ in range(n)]
        self.solved_at: list[int | None] = [None] * n
        self.episodes: list[int] = [0] * n


def train_cartpole(
    policy: LinearPolicy,
    optimizers: Sequence[OpenAIES | SimpleGA],
    max_generations: int = 100,
    eval_episodes: int = 10,
    target: float = 500.0,
    seed: int = 0,
    progress: Callable[[int, CartPoleRun], None] | None = None,
) -> CartPoleRun:
    """Train several optimizers (e.g. one per seed) on CartPole-v1 in lockstep.

    Each generation, every optimizer not yet solved asks for its candidates;
    all candidates, and each optimizer's current ``solution`` repeated
    ``eval_episodes`` times, run as one batch through ``evaluate_cartpole``
    (one episode each, every environment from its own start state). Each
    optimizer is told its candidates' returns and stops once its solution
    scores ``target`` on every evaluation episode.

    ``progress(generation, run)`` is called after every generation, if given.
    """
    if not optimizers:
        raise ValueError("train_cartpole: expected at least one optimizer, got none")
    for opt in optimizers:
        if opt.solution.shape != (policy.n_params,):
            raise ValueError(
                f"train_cartpole: expected optimizers over {policy.n_params} parameters for "
                f"{type(policy).__name__}, got one over {opt.solution.shape}"
            )
    run = CartPoleRun(len(optimizers))
    for generation in range(max_generations + 1):
        active = [i for i, s in enumerate(run.solved_at) if s is None]
        if not active:
            break
        candidates = [optimizers[i].ask() for i in active] if generation < max_generations else []
        solutions = [np.repeat(optimizers[i].solution[None], eval_episodes, axis=0) for i in active]
        returns = evaluate_cartpole(policy, np.concatenate(candidates + solutions), 1, seed * 1_000_003 + generation)[:, 0]
        sizes = np.cumsum([len(c) for c in candidates + solutions])[:-1]
        chunks = np.split(returns, sizes)
        for k, i in enumerate(active):
            score = float(chunks[len(candidates) + k].mean())
            run.eval_returns[i].append(score)
            if np.all(chunks[len(candidates) + k] >= target):
                run.solved_at[i] = generation
            elif candidates:
                optimizers[i].tell(chunks[k])
                run.population_returns[i].append(float(chunks[k].mean()))
                run.episodes[i] += len(chunks[k])
        if progress is not None:
            progress(generation, run)
    return run


# ---------------------------------------------------------------- a genetic algorithm, for comparison


class SimpleGA:
    """A simple genetic algorithm with the same ``ask``/``tell`` interface.

    Each generation keeps the ``elite`` best candidates unchanged; every other
    child takes each parameter from one of two parents drawn from the best
    ``parents`` (uniform crossover) and adds Gaussian mutation of scale
    ``mutation``. ``best`` is the best candidate seen in the last ``tell``.
    """

    def __init__(
        self,
        params: np.ndarray,
        population: int = 50,
        mutation: float = 0.1,
        parents: int = 10,
        elite: int = 1,
        seed: int = 0,
    ) -> None:
        theta = _as_vector(params, "params", "SimpleGA")
        if not isinstance(population, int) or population < 2:
            raise ValueError(f"SimpleGA: expected population to be an int >= 2, got {population!r}")
        if not 1 <= parents <= population or not 0 <= elite <= parents:
            raise ValueError(f"SimpleGA: expected 0 <= elite <= parents <= population, got {elite}, {parents}, {population}")
        _check_positive(mutation, "mutation", "SimpleGA")
        self.population, self.mutation, self.parents, self.elite = population, float(mutation), parents, elite
        self.rng = np.random.default_rng(seed)
        self._candidates = theta + self.mutation * self.rng.standard_normal((population, theta.size))
        self.best = theta.copy()

    @property
    def solution(self) -> np.ndarray:
        """What the optimizer proposes now: the best candidate of the last generation (d,)."""
        return self.best

    def ask(self) -> np.ndarray:
        """This generation's candidates, shape (population, d)."""
        return self._candidates.copy()

    def tell(self, fitness: np.ndarray) -> None:
        """Select, cross over and mutate, given the candidates' fitness (population,)."""
        f = np.asarray(fitness, dtype=np.float64)
        if f.shape != (self.population,):
            raise ValueError(f"SimpleGA.tell: expected fitness of shape ({self.population},), got {f.shape}")
        order = np.argsort(-f, kind="stable")
        top = self._candidates[order[: self.parents]]
        self.best = top[0].copy()
        n_children = self.population - self.elite
        mothers = top[self.rng.integers(0, self.parents, n_children)]
        fathers = top[self.rng.integers(0, self.parents, n_children)]
        mask = self.rng.random(mothers.shape) < 0.5
        children = np.where(mask, mothers, fathers) + self.mutation * self.rng.standard_normal(mothers.shape)
        self._candidates = np.concatenate([top[: self.elite], children])


# ---------------------------------------------------------------- ES at scale: seeds and scalars only


class NoiseTable:
    """A block of standard-normal numbers every process builds from one seed.

    ``get(i, dim)`` is the perturbation that starts at index ``i``: rows
    ``noise[i : i + dim]``. Two processes that built the table from the same
    ``seed`` agree on every perturbation, so a perturbation travels as one
    integer, not as ``dim`` floats (Salimans et al. 2017, section 2.1).
    ``size`` float32 values take ``4 * size`` bytes in each process.
    """

    def __init__(self, size: int = 2**22, seed: int = 0) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"NoiseTable: expected size to be a positive int, got {size!r}")
        self.size, self.seed = size, seed
        self.noise = np.random.default_rng(seed).standard_normal(size, dtype=np.float32)

    def sample_index(self, rng: np.random.Generator, dim: int, count: int) -> np.ndarray:
        """``count`` start indices (int64) of perturbations of length ``dim``."""
        if dim > self.size:
            raise ValueError(f"NoiseTable.sample_index: expected dim <= table size {self.size}, got {dim}")
        return rng.integers(0, self.size - dim + 1, count)

    def get(self, index: int, dim: int) -> np.ndarray:
        """The perturbation (dim,) float64 that starts at ``index``."""
        return self.noise[index:index + dim].astype(np.float64)


class _Update:
    """One generation's update as it travels: noise indices (m,) and shaped weights (2m,)."""

    __slots__ = ("indices", "weights")

    def __init__(self, indices: np.ndarray, weights: np.ndarray) -> None:
        self.indices, self.weights = indices, weights


class _Replica:
    """The parameters and optimizer state one process keeps, updated from seeds and scalars."""

    def __init__(self, params: np.ndarray, sigma: float, lr: float, weight_decay: float,
                 optimizer: str, table: NoiseTable) -> None:
        self.opt = OpenAIES(params, sigma=sigma, lr=lr, population=2, shaping="none",
                            weight_decay=weight_decay, optimizer=optimizer)
        self.table = table
        self.generation = 0

    def noise(self, indices: np.ndarray) -> np.ndarray:
        """Antithetic noise (2m, d) for m indices: +eps_i then -eps_i."""
        d = self.opt.params.size
        half = np.stack([self.table.get(int(i), d) for i in indices]) if len(indices) else np.zeros((0, d))
        return np.concatenate([half, -half])

    def apply(self, update: _Update) -> None:
        """The same OpenAI-ES step every replica takes, from indices and shaped fitness alone."""
        noise = self.noise(update.indices)
        self.opt.population = len(noise)
        self.opt._noise = noise
        self.opt.tell(update.weights)
        self.generation += 1


_WORKER: dict = {}


def _worker_init(params: np.ndarray, sigma: float, lr: float, weight_decay: float, optimizer: str,
                 table_size: int, table_seed: int, fitness: Callable[[np.ndarray], np.ndarray]) -> None:
    import os

    _WORKER.clear()
    _WORKER.update(replica=_Replica(params, sigma, lr, weight_decay, optimizer,
                                    NoiseTable(table_size, table_seed)),
                   fitness=fitness, pid=os.getpid())


def _worker_evaluate(task: tuple[int, list[_Update], np.ndarray]) -> tuple[int, int, np.ndarray]:
    """A worker's job: catch up on the updates it missed, then evaluate its perturbations.

    ``task`` is ``(first, updates, indices)``: the updates of generations
    ``first, first + 1, ...`` and m noise indices. Returns ``(pid, generation,
    fitness (2m,))``, the fitness of ``params + sigma * eps`` then of ``params - sigma * eps``.
    """
    first, updates, indices = task
    replica = _WORKER["replica"]
    if replica.generation < first:
        raise RuntimeError(f"ES worker {_WORKER['pid']} is at generation {replica.generation} "
                           f"but was sent updates from generation {first}")
    for update in updates[replica.generation - first:]:
        replica.apply(update)
    candidates = replica.opt.params + replica.opt.sigma * replica.noise(indices)
    fitness = np.asarray(_WORKER["fitness"](candidates), dtype=np.float64)
    return _WORKER["pid"], replica.generation, fitness


class SerialPool:
    """A stand-in for ``multiprocessing.Pool`` that runs the tasks here, in order (for tests)."""

    n_workers = 1

    def __init__(self, processes: int = 1, initializer: Callable | None = None, initargs: tuple = ()) -> None:
        self._state: dict = {}
        saved = dict(_WORKER)
        if initializer is not None:
            initializer(*initargs)
        self._state = dict(_WORKER)
        _WORKER.clear()
        _WORKER.update(saved)

    def map(self, fn: Callable, tasks: Sequence) -> list:
        saved = dict(_WORKER)
        _WORKER.clear()
        _WORKER.update(self._state)
        try:
            return [fn(t) for t in tasks]
        finally:
            self._state = dict(_WORKER)
            _WORKER.clear()
            _WORKER.update(saved)

    def __enter__(self) -> "SerialPool":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class DistributedES:
    """OpenAI-ES over a process pool, exchanging only seeds and fitness values (chapter 8, "ES at scale").

    Every process (the master and each worker) builds the same
    :class:`NoiseTable` from ``table_seed`` and keeps its own copy of the
    parameters. Each generation the master sends every task a handful of
    noise *indices* and the updates its worker may have missed (indices and
    shaped fitness of earlier generations: scalars); the worker returns one
    fitness per perturbation; the master ranks them and every process applies
    the same update to its own copy. No parameter vector ever travels after
    the start. ``pool_factory(processes, initializer=..., initargs=...)`` is
    ``multiprocessing.get_context(...).Pool``, :class:`SerialPool`, or any
    drop-in such as ``ray.util.multiprocessing.Pool``.

    ``bytes_sent`` / ``bytes_received`` count the pickled tasks and results
    per generation (what a pool actually transmits, up to framing).
    """

    def __init__(self, params: np.ndarray, fitness: Callable[[np.ndarray], np.ndarray],
                 pool_factory: Callable = SerialPool, processes: int = 2, population: int = 50,
                 sigma: float = 0.1, lr: float = 0.01, weight_decay: float = 0.0,
                 optimizer: str = "sgd", table_size: int = 2**20, table_seed: int = 0,
                 seed: int = 0) -> None:
        theta = _as_vector(params, "params", "DistributedES")
        if not isinstance(population, int) or population < 2 or population % 2:
            raise ValueError(f"DistributedES: expected an even population >= 2, got {population!r}")
        if not isinstance(processes, int) or processes < 1:
            raise ValueError(f"DistributedES: expected processes to be a positive int, got {processes!r}")
        self.population, self.processes, self.fitness = population, processes, fitness
        self.table = NoiseTable(table_size, table_seed)
        self.replica = _Replica(theta, sigma, lr, weight_decay, optimizer, self.table)
        self.rng = np.random.default_rng(seed)
        self.log: list[_Update] = []
        self.worker_generation: dict[int, int] = {}
        self.bytes_sent: list[int] = []
        self.bytes_received: list[int] = []
        initargs = (theta, sigma, lr, weight_decay, optimizer, table_size, table_seed, fitness)
        self.pool = pool_factory(processes, initializer=_worker_init, initargs=initargs)

    @property
    def params(self) -> np.ndarray:
        """The master's copy of the centre (d,); every worker holds the same numbers."""
        return self.replica.opt.params

    def step(self) -> np.ndarray:
        """One generation. Returns the fitness of the population (population,), +eps half first."""
        import pickle

        d = self.params.size
        indices = self.table.sample_index(self.rng, d, self.population // 2)
        chunks = np.array_split(indices, self.processes)
        # a worker we have not heard from may be at generation 0; the others at least where they were
        first = min(self.worker_generation.values(), default=0)
        if len(self.worker_generation) < getattr(self.pool, "n_workers", self.processes):
            first = 0
        tasks = [(first, self.log[first:], chunk) for chunk in chunks]
        self.bytes_sent.append(sum(len(pickle.dumps(t)) for t in tasks))
        results = self.pool.map(_worker_evaluate, tasks)
        self.bytes_received.append(sum(len(pickle.dumps(r)) for r in results))
        generation = len(self.log)
        for pid, worker_gen, _ in results:
            if worker_gen != generation:
                raise RuntimeError(f"DistributedES: worker {pid} evaluated generation {worker_gen}, "
                                   f"expected {generation}")
            self.worker_generation[pid] = worker_gen
        plus = np.concatenate([f[: len(f) // 2] for _, _, f in results])
        minus = np.concatenate([f[len(f) // 2:] for _, _, f in results])
        fitness = np.concatenate([plus, minus])
        update = _Update(indices, centered_ranks(fitness))
        self.replica.apply(update)
        self.log.append(update)
        return fitness

    def parameter_protocol_bytes(self) -> int:
        """Bytes per generation if the master sent each candidate's parameter vector instead.

        The pickled (population, d) float64 candidates, split over the tasks as
        above, plus the same fitness values back.
        """
        import pickle

        candidates = np.zeros((self.population, self.params.size))
        sent = sum(len(pickle.dumps(c)) for c in np.array_split(candidates, self.processes))
        return sent + (self.bytes_received[-1] if self.bytes_received else 0)

    def close(self) -> None:
        close = getattr(self.pool, "close", None)
        if close is not None:
            close()
            getattr(self.pool, "join", lambda: None)()


class CartPoleFitness:
    """A picklable fitness for process pools: mean CartPole-v1 return of each candidate row.

    ``CartPoleFitness(policy, episodes, seed)(params (n, n_params)) -> (n,)``.
    """

    def __init__(self, policy: LinearPolicy, episodes: int = 1, seed: int = 0) -> None:
        self.policy, self.episodes, self.seed = policy, episodes, seed

    def __call__(self, params: np.ndarray) -> np.ndarray:
        return evaluate_cartpole(self.policy, params, self.episodes, self.seed).mean(axis=1)
