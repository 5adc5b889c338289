"""Hebbian learning and spike-timing-dependent plasticity, written out (chapter 11).

Rate-based rules (chapter 11, "Hebb's rule" to "Competitive learning"), for
inputs x of width d and k output units with weights W (k, d), y = W x:

* Hebb:   dW = lr * y x^T                      (grows without bound)
* Oja:    dw = lr * y (x - y w)                 (k = 1; converges to the unit
  leading eigenvector of E[x x^T])
* Sanger (the generalized Hebbian algorithm):
          dW = lr * (y x^T - LT(y y^T) W)       (LT: lower triangle with the
  diagonal; the rows converge to the top k eigenvectors, in order)
* competitive (winner-take-all): the unit nearest x moves towards it.

Spiking pieces (chapter 11, "Spiking neurons" and "STDP"); time in ms,
voltages in mV, currents in nA, resistance in MOhm (so R I is in mV), rates in
Hz (spikes per second; a rate r fires with probability r dt / 1000 per step):

* ``lif_simulate``: leaky integrate-and-fire neurons, forward Euler, vectorized
  over neurons; ``lif_rate`` its closed-form f-I curve.
* ``poisson_spikes``: Bernoulli-per-step spike trains (T, n).
* ``stdp_window``: the pair-based rule's formula; ``stdp_pair_simulation``
  measures the same window by running the trace equations on spike pairs.
* ``stdp_latency_run``: one LIF neuron learning with STDP over repeated
  trials, vectorized over independent runs (seeds).
* ``repeating_pattern``, ``stdp_pattern_run`` and ``pattern_response``: a spike
  pattern repeated at random times in Poisson noise of the same rate, one LIF
  neuron learning it with STDP (after Masquelier, Guyonneau and Thorpe 2008).
* ``spiking_digits``: a Diehl-and-Cook-style layer (Poisson pixels, excitatory
  LIF units, winner-take-all inhibition, adaptive thresholds, STDP), vectorized
  over runs.

Everything is numpy (float64); seeds are ints turned into numpy generators.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from companion._checks import check_array, check_finite, check_positive

__all__ = [
    "hebb_step", "oja_step", "sanger_step", "train_rule", "angle_to", "competitive_step",
    "train_competitive", "LIF", "lif_simulate", "lif_rate", "poisson_spikes", "STDP", "stdp_window",
    "stdp_pair_simulation", "LatencyRun", "stdp_latency_run", "DigitsRun", "spiking_digits", "spiking_responses",
    "label_units", "predict_labels", "LIF_DEFAULT", "LATENCY_LIF", "DIGITS_LIF", "STDP_DEFAULT",
    "LATENCY_STDP", "DIGITS_STDP", "PatternInput", "repeating_pattern", "PatternRun", "stdp_pattern_run",
    "PatternResponse", "pattern_response", "PATTERN_LIF", "PATTERN_STDP",
]


# --------------------------------------------------------------------------- checks

def _vector_pair(fn: str, w: object, x: object) -> tuple[np.ndarray, np.ndarray]:
    w = check_array(fn, "w", w, shape=("d",))
    x = check_array(fn, "x", x, shape=(w.shape[0],))
    check_finite(fn, "w", w)
    check_finite(fn, "x", x)
    return w, x


def _matrix_pair(fn: str, W: object, x: object) -> tuple[np.ndarray, np.ndarray]:
    W = check_array(fn, "W", W, shape=("k", "d"))
    x = check_array(fn, "x", x, shape=(W.shape[1],))
    check_finite(fn, "W", W)
    check_finite(fn, "x", x)
    return W, x


def _dt(fn: str, dt: object) -> float:
    check_positive(fn, "dt", dt)
    return float(dt)


# --------------------------------------------------------------------------- rate-based rules

def hebb_step(W: np.ndarray, x: np.ndarray, lr: float) -> np.ndarray:
    """One step of Hebb's rule, W + lr * y x^T with y = W x: W (k, d), x (d,) -> (k, d).

    Chapter 11, "Hebb's rule". Nothing bounds it: along the leading
    eigenvector of E[x x^T] the norm grows by a factor (1 + lr lambda_1) per
    step on average.
    """
    W, x = _matrix_pair("hebb_step", W, x)
    check_positive("hebb_step", "lr", lr)
    y = W @ x
    return W + lr * np.outer(y, x)


def oja_step(w: np.ndarray, x: np.ndarray, lr: float) -> np.ndarray:
    """One step of Oja's rule, w + lr * y (x - y w) with y = w . x: w (d,), x (d,) -> (d,).

    Chapter 11, "Oja's rule". Its only stable fixed points are +-the unit
    leading eigenvector of E[x x^T].
    """
    w, x = _vector_pair("oja_step", w, x)
    check_positive("oja_step", "lr", lr)
    y = w @ x
    return w + lr * y * (x - y * w)


def sanger_step(W: np.ndarray, x: np.ndarray, lr: float) -> np.ndarray:
    """One step of Sanger's rule (GHA), W + lr (y x^T - LT(y y^T) W): W (k, d), x (d,) -> (k, d).

    LT keeps the lower triangle with the diagonal, so row i is Oja's rule on the
    input with the first i - 1 rows' projections removed. Chapter 11, "Sanger's rule".
    """
    W, x = _matrix_pair("sanger_step", W, x)
    check_positive("sanger_step", "lr", lr)
    return _sanger(W, x, lr)


def _sanger(W: np.ndarray, x: np.ndarray, lr: float) -> np.ndarray:
    y = W @ x
    return W + lr * (np.outer(y, x) - np.tril(np.outer(y, y)) @ W)


def _hebb(W: np.ndarray, x: np.ndarray, lr: float) -> np.ndarray:
    return W + lr * np.outer(W @ x, x)


def _oja(W: np.ndarray, x: np.ndarray, lr: float) -> np.ndarray:
    # Oja's rule for each row independently (k copies of the one-unit rule)
    y = W @ x
    return W + lr * (np.outer(y, x) - (y * y)[:, None] * W)


_RULES = {"hebb": _hebb, "oja": _oja, "sanger": _sanger}


def train_rule(X: np.ndarray, rule: str, k: int = 1, *, epochs: int = 1, lr: float = 0.01,
               seed: int = 0, record_every: int = 1, W0: np.ndarray | None = None,
               lr_final: float | None = None) -> np.ndarray:
    """Run ``rule`` ("hebb", "oja" or "sanger") online over the rows of X; the weight history.

    X (n, d) is used as given (centre it first for principal components); each
    epoch visits the rows in a fresh random order drawn from ``seed``. The
    starting weights are ``W0`` (k, d) or small Gaussian ones (std 0.1 / sqrt(d)).
    With ``lr_final`` the learning rate falls geometrically from ``lr`` to it.
    With "oja" each of the k rows follows the one-unit rule on its own.

    Returns:
        (n_records, k, d): the weights before the first step and then after
        every ``record_every`` steps. Chapter 11, "Oja's rule".
    """
    fn = "train_rule"
    X = check_array(fn, "X", X, shape=("n", "d"))
    check_finite(fn, "X", X)
    if rule not in _RULES:
        raise ValueError(f"{fn}: expected rule to be one of {list(_RULES)}, got {rule!r}")
    for name, value in (("k", k), ("epochs", epochs), ("record_every", record_every)):
        check_positive(fn, name, value, integer=True)
    check_positive(fn, "lr", lr)
    rng = np.random.default_rng(seed)
    n, d = X.shape
    if W0 is None:
        W = rng.normal(0.0, 0.1 / np.sqrt(d), size=(k, d))
    else:
        W = check_array(fn, "W0", W0, shape=(k, d)).copy()
    step_fn = _RULES[rule]
    history = [W.copy()]
    total = epochs * n
    if lr_final is None:
        rates = np.full(total, float(lr))
    else:
        check_positive(fn, "lr_final", lr_final)
        rates = lr * (lr_final / lr) ** (np.arange(total) / max(total - 1, 1))
    t = 0
    for _ in range(epochs):
        for i in rng.permutation(n):
            W = step_fn(W, X[i], rates[t])
            t += 1
            if t % record_every == 0:
                history.append(W.copy())
    return np.stack(history)


def angle_to(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Angle in degrees between each row of W and the matching row of V, sign ignored (0..90).

    W (..., k, d), V (k, d) -> (..., k). An eigenvector's sign is arbitrary, so
    w and -w both count as angle 0.
    """
    W = np.asarray(W, dtype=np.float64)
    V = check_array("angle_to", "V", V, shape=("k", W.shape[-1]))
    cos = np.abs((W * V).sum(-1)) / (np.linalg.norm(W, axis=-1) * np.linalg.norm(V, axis=-1) + 1e-300)
    return np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))


def competitive_step(W: np.ndarray, x: np.ndarray, lr: float) -> tuple[np.ndarray, int]:
    """Winner-take-all: the unit nearest x moves lr of the way towards it. W (k, d), x (d,).

    Returns the new weights (k, d) and the winner's index (ties: the lower
    index). Lateral inhibition silences every other unit, so only the winner
    learns. Chapter 11, "Competitive learning".
    """
    W, x = _matrix_pair("competitive_step", W, x)
    _check_lr("competitive_step", lr)
    winner = int(((W - x) ** 2).sum(1).argmin())
    W = W.copy()
    W[winner] += lr * (x - W[winner])
    return W, winner


def _check_lr(fn: str, lr: object) -> None:
    check_positive(fn, "lr", lr)
    if lr > 1:
        raise ValueError(f"{fn}: expected lr in (0, 1], got {lr!r}")


def train_competitive(X: np.ndarray, k: int, *, epochs: int = 5, lr: tuple[float, float] = (0.5, 0.01),
                      seeds: range | list[int] = (0,)) -> np.ndarray:
    """Online winner-take-all over the rows of X, for several seeds at once: (n_seeds, k, d).

    Each run starts from k distinct rows of X drawn from its seed and visits
    the rows in its own random order; the learning rate falls geometrically
    from ``lr[0]`` to ``lr[1]``. The runs are vectorized: one step moves every
    run's winner. Chapter 11, "Competitive learning".
    """
    fn = "train_competitive"
    X = check_array(fn, "X", X, shape=("n", "d"))
    check_finite(fn, "X", X)
    check_positive(fn, "k", k, integer=True)
    check_positive(fn, "epochs", epochs, integer=True)
    seeds = list(seeds)
    n = X.shape[0]
    if k > n:
        raise ValueError(f"{fn}: expected k <= the number of points ({n}), got {k}")
    rngs = [np.random.default_rng(s) for s in seeds]
    W = np.stack([X[r.choice(n, k, replace=False)] for r in rngs])  # (S, k, d)
    orders = np.stack([np.concatenate([r.permutation(n) for _ in range(epochs)]) for r in rngs], 1)
    steps = orders.shape[0]
    rates = lr[0] * (lr[1] / lr[0]) ** (np.arange(steps) / max(steps - 1, 1))
    runs = np.arange(len(seeds))
    for t in range(steps):
        x = X[orders[t]]  # (S, d)
        winner = ((W - x[:, None, :]) ** 2).sum(-1).argmin(1)  # (S,)
        W[runs, winner] += rates[t] * (x - W[runs, winner])
    return W


# --------------------------------------------------------------------------- LIF neuron

class LIF(NamedTuple):
    """Leaky integrate-and-fire parameters (ms, mV, MOhm). Chapter 11, "Spiking neurons".

    tau_m dV/dt = -(V - v_rest) + R I; when V reaches v_thresh the neuron
    spikes, V is set to v_reset and held there for t_ref.
    """

    tau_m: float = 20.0
    v_rest: float = -65.0
    v_reset: float = -65.0
    v_thresh: float = -50.0
    R: float = 10.0
    t_ref: float = 2.0


LIF_DEFAULT = LIF()
LATENCY_LIF = LIF(t_ref=5.0)  # the umbrella neuron: a 5 ms refractory period
DIGITS_LIF = LIF(t_ref=0.0)  # the digits layer: winner-take-all already limits spiking to one per step
PATTERN_LIF = LIF(tau_m=10.0, t_ref=0.0)  # the hidden-pattern neuron: a faster membrane, a coincidence detector


def lif_rate(I: np.ndarray, params: LIF = LIF_DEFAULT) -> np.ndarray:
    """The closed-form f-I curve of a LIF neuron under constant current I (nA): rate in Hz.

    With V_inf = v_rest + R I the membrane reaches threshold from reset after
    T = tau_m ln((V_inf - v_reset) / (V_inf - v_thresh)) when V_inf > v_thresh,
    so the rate is 1000 / (t_ref + T); below the rheobase it is 0. Same shape as I.
    """
    I = check_array("lif_rate", "I", I)
    v_inf = params.v_rest + params.R * I
    above = v_inf > params.v_thresh
    safe = np.where(above, v_inf, params.v_thresh + 1.0)
    period = params.t_ref + params.tau_m * np.log((safe - params.v_reset) / (safe - params.v_thresh))
    return np.where(above, 1000.0 / period, 0.0)


def lif_simulate(I: np.ndarray, duration: float, dt: float = 0.1, params: LIF = LIF_DEFAULT,
                 record_v: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Simulate n LIF neurons step by step (forward Euler) for ``duration`` ms.

    I: constant currents (n,) in nA, or a current for every step (T, n) with
    T = round(duration / dt). The update of step t is
    V += dt / tau_m * (v_rest - V + R I_t), skipped while refractory; a neuron
    whose V reaches v_thresh spikes and is reset.

    Returns:
        spikes: bool (T, n); V: (T, n) in mV (after reset) if ``record_v`` else None.
        Chapter 11, "Spiking neurons".
    """
    fn = "lif_simulate"
    dt = _dt(fn, dt)
    check_positive(fn, "duration", duration)
    steps = int(round(duration / dt))
    I = check_array(fn, "I", I)
    if I.ndim == 1:
        I = np.broadcast_to(I, (steps, I.shape[0]))
    elif I.ndim != 2 or I.shape[0] != steps:
        raise ValueError(f"{fn}: expected I of shape (n,) or (T, n) with T = {steps}, got {I.shape}")
    check_finite(fn, "I", I)
    n = I.shape[1]
    V = np.full(n, params.v_rest)
    refractory = np.zeros(n)
    spikes = np.zeros((steps, n), dtype=bool)
    trace = np.zeros((steps, n)) if record_v else None
    a = dt / params.tau_m
    for t in range(steps):
        active = refractory <= 0
        V = np.where(active, V + a * (params.v_rest - V + params.R * I[t]), V)
        fired = V >= params.v_thresh
        V = np.where(fired, params.v_reset, V)
        refractory = np.where(fired, params.t_ref, refractory - dt)
        spikes[t] = fired
        if record_v:
            trace[t] = V
    return spikes, trace


def poisson_spikes(rates: np.ndarray, duration: float, dt: float = 1.0, seed: int = 0,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Poisson spike trains: bool (T, *rates.shape), T = round(duration / dt).

    rates in Hz, each in [0, 1000 / dt] (a step of dt ms can hold at most one
    spike); each step spikes with probability rate * dt / 1000, independently.
    Chapter 11, "Spiking neurons".
    """
    fn = "poisson_spikes"
    dt = _dt(fn, dt)
    check_positive(fn, "duration", duration)
    rates = check_array(fn, "rates", rates)
    check_finite(fn, "rates", rates)
    if rates.size and (rates.min() < 0 or rates.max() > 1000.0 / dt):
        raise ValueError(f"{fn}: expected rates in [0, 1/dt] = [0, {1000.0 / dt:g}] Hz for dt = {dt:g} ms, "
                         f"got values in [{rates.min():g}, {rates.max():g}]")
    rng = np.random.default_rng(seed) if rng is None else rng
    steps = int(round(duration / dt))
    return rng.random((steps, *rates.shape)) < rates * dt / 1000.0


# --------------------------------------------------------------------------- STDP

class STDP(NamedTuple):
    """Pair-based STDP with exponential traces (ms). Chapter 11, "STDP".

    A presynaptic trace x decays with tau_plus and jumps by 1 at each
    presynaptic spike; a postsynaptic trace y decays with tau_minus and jumps by
    1 at each postsynaptic spike. At a postsynaptic spike w += a_plus * x; at a
    presynaptic spike w -= a_minus * y; w stays in [0, w_max].
    """

    a_plus: float = 0.01
    a_minus: float = 0.0105
    tau_plus: float = 16.8
    tau_minus: float = 33.7
    w_max: float = 1.0


STDP_DEFAULT = STDP()  # Song, Miller and Abbott's a_minus / a_plus = 1.05; Bi and Poo's time constants
LATENCY_STDP = STDP(a_minus=0.008)  # slightly potentiation-dominated, so the neuron keeps firing
DIGITS_STDP = STDP(0.02, 0.004, 10.0, 10.0, 1.0)  # as Diehl and Cook: weak depression, normalized weights
# the hidden pattern: Bi and Poo's time constants, depression's area 1.3 times potentiation's (a_- tau_- / a_+ tau_+)
PATTERN_STDP = STDP(a_plus=0.03, a_minus=0.0195)


def stdp_window(delta_t: np.ndarray, rule: STDP = STDP_DEFAULT) -> np.ndarray:
    """The rule's weight change for one spike pair, delta_t = t_post - t_pre in ms.

    a_plus exp(-delta_t / tau_plus) for delta_t > 0 (pre before post:
    potentiation), -a_minus exp(delta_t / tau_minus) for delta_t < 0, and
    a_plus - a_minus at 0 (both updates in one step). Same shape as delta_t.
    """
    dt_ = check_array("stdp_window", "delta_t", delta_t)
    pos = rule.a_plus * np.exp(-np.abs(dt_) / rule.tau_plus)
    neg = -rule.a_minus * np.exp(-np.abs(dt_) / rule.tau_minus)
    return np.where(dt_ > 0, pos, np.where(dt_ < 0, neg, pos + neg))


def _stdp_step(w, x_pre, y_post, pre, post, decay_pre, decay_post, rule):
    """One step of the trace equations. pre (..., n_in) and post (..., 1) bool; returns (w, x, y).

    Order within a step: traces decay, spikes bump them, then the depression of
    this step's presynaptic spikes (with the post trace) and the potentiation
    of this step's postsynaptic spikes (with the pre trace), so a pair in the
    same step gives a_plus - a_minus.
    """
    x_pre = x_pre * decay_pre + pre
    y_post = y_post * decay_post + post
    w = w - rule.a_minus * pre * (y_post - post) + rule.a_plus * post * (x_pre - pre)
    w = w - rule.a_minus * pre * post + rule.a_plus * post * pre
    return np.clip(w, 0.0, rule.w_max), x_pre, y_post


def stdp_pair_simulation(delta_t: np.ndarray, dt: float = 0.5, rule: STDP = STDP_DEFAULT,
                         w0: float = 0.5) -> np.ndarray:
    """Measure the STDP window by simulation: one pre and one post spike per synapse.

    Each entry of delta_t (ms, t_post - t_pre, rounded to the grid of dt) is
    its own synapse starting at weight ``w0``; all run at once through the same
    trace equations the learning simulations use. Returns the weight changes,
    same shape as delta_t. Chapter 11, "STDP".
    """
    fn = "stdp_pair_simulation"
    dt = _dt(fn, dt)
    d = check_array(fn, "delta_t", delta_t, shape=("n",))
    lag = np.round(d / dt).astype(int)
    margin = int(np.abs(lag).max()) + 2
    t_pre = margin - np.minimum(lag, 0)
    t_post = t_pre + lag
    steps = int(max(t_pre.max(), t_post.max())) + 2
    w = np.full(d.shape, float(w0))
    x = np.zeros_like(w)
    y = np.zeros_like(w)
    dp, dq = np.exp(-dt / rule.tau_plus), np.exp(-dt / rule.tau_minus)
    for t in range(steps):
        pre = (t_pre == t).astype(float)
        post = (t_post == t).astype(float)
        w, x, y = _stdp_step(w, x, y, pre, post, dp, dq, rule)
    return w - w0


class LatencyRun(NamedTuple):
    """What ``stdp_latency_run`` records: weights (trials + 1, runs, n_in); latency (trials, runs) in ms
    (NaN when the neuron stayed silent in a trial); input_times (n_in,) mean firing time of each input."""

    weights: np.ndarray
    latency: np.ndarray
    input_times: np.ndarray


def stdp_latency_run(n_inputs: int = 20, trials: int = 300, *, seeds: range | list[int] = range(5),
                     trial_ms: float = 50.0, dt: float = 0.5, early: float = 5.0, window: tuple = (10.0, 40.0),
                     jitter: float = 1.0, p_noise: float = 0.3, w0: float = 0.3, psp: float = 5.0,
                     sequence: bool = True, params: LIF = LATENCY_LIF,
                     rule: STDP = LATENCY_STDP) -> LatencyRun:
    """The umbrella example: one LIF neuron, STDP, one input that reliably fires first.

    In each trial of ``trial_ms``, input 0 fires at ``early`` ms and the others
    once each at times spread evenly over ``window`` (input i later than input
    i - 1), every time +- ``jitter`` ms (Gaussian); with ``sequence=False`` the
    others fire at times drawn uniformly from ``window`` instead;
    each input also adds Poisson noise spikes with probability ``p_noise`` per
    trial. An input spike raises V by ``psp`` * w mV (a delta synapse). Weights
    start at ``w0`` and learn with ``rule``; V and the traces reset between
    trials. Independent runs (one per seed) are vectorized.

    Returns a :class:`LatencyRun`. Chapter 11, "The umbrella".
    """
    fn = "stdp_latency_run"
    dt = _dt(fn, dt)
    check_positive(fn, "n_inputs", n_inputs, integer=True)
    check_positive(fn, "trials", trials, integer=True)
    seeds = list(seeds)
    S, steps = len(seeds), int(round(trial_ms / dt))
    rngs = [np.random.default_rng(s) for s in seeds]
    w = np.full((S, n_inputs), float(w0))
    dp, dq = np.exp(-dt / rule.tau_plus), np.exp(-dt / rule.tau_minus)
    a = dt / params.tau_m
    others = np.linspace(window[0], window[1], n_inputs - 1)
    weights = [w.copy()]
    latency = np.full((trials, S), np.nan)
    for trial in range(trials):
        times = np.stack([np.concatenate([[early], others]) + jitter * r.standard_normal(n_inputs)
                          if sequence else
                          np.concatenate([[early + jitter * r.standard_normal()], r.uniform(*window, n_inputs - 1)])
                          for r in rngs])  # (S, n_in)
        pre_all = np.zeros((steps, S, n_inputs))
        idx = np.clip(np.round(times / dt).astype(int), 0, steps - 1)
        runs, inputs = np.meshgrid(np.arange(S), np.arange(n_inputs), indexing="ij")
        pre_all[idx, runs, inputs] = 1.0
        noise = np.stack([r.random((steps, n_inputs)) < p_noise / steps for r in rngs], 1)
        pre_all = np.maximum(pre_all, noise)
        V = np.full(S, params.v_rest)
        refr = np.zeros(S)
        x = np.zeros((S, n_inputs))
        y = np.zeros((S, 1))
        first = np.full(S, np.nan)
        for t in range(steps):
            pre = pre_all[t]
            active = refr <= 0
            V = np.where(active, V + a * (params.v_rest - V) + psp * (pre * w).sum(1), V)
            fired = V >= params.v_thresh
            V = np.where(fired, params.v_reset, V)
            refr = np.where(fired, params.t_ref, refr - dt)
            first = np.where(fired & np.isnan(first), t * dt, first)
            w, x, y = _stdp_step(w, x, y, pre, fired[:, None].astype(float), dp, dq, rule)
        latency[trial] = first
        weights.append(w.copy())
    input_times = np.concatenate([[early], others if sequence else np.full(n_inputs - 1, np.mean(window))])
    return LatencyRun(np.stack(weights), latency, input_times)


# --------------------------------------------------------------------------- spiking digits

class DigitsRun(NamedTuple):
    """What ``spiking_digits`` returns: weights (runs, units, 64), thresholds theta (runs, units) in mV,
    and the number of synaptic events (input spikes times units they reach) per training image (runs,)."""

    weights: np.ndarray
    theta: np.ndarray
    events_per_image: np.ndarray


def _run_layer(X, W, theta, rngs, steps, dt, max_rate, psp, params, rule, learn, theta_plus):
    """Present each image for ``steps`` steps to every run; returns spike counts (runs, n, units)."""
    S, K, d = W.shape
    n = X.shape[0]
    counts = np.zeros((S, n, K))
    events = np.zeros(S)
    a = dt / params.tau_m
    dp, dq = np.exp(-dt / rule.tau_plus), np.exp(-dt / rule.tau_minus)
    p = X * max_rate * dt / 1000.0  # (n, d)
    runs = np.arange(S)
    for i in range(n):
        V = np.full((S, K), params.v_rest)
        x = np.zeros((S, 1, d))
        y = np.zeros((S, K, 1))
        draws = np.stack([r.random((steps, d)) for r in rngs], 1) < p[i]  # (steps, S, d)
        for t in range(steps):
            pre = draws[t].astype(float)  # (S, d)
            events += pre.sum(1) * K
            V = V + a * (params.v_rest - V) + psp * np.einsum("skd,sd->sk", W, pre)
            over = V - (params.v_thresh + theta)
            # winner-take-all: at most the one most depolarized unit spikes; it inhibits the rest
            winner = over.argmax(1)
            fired = over[runs, winner] >= 0
            if fired.any():
                post = np.zeros((S, K))
                post[runs[fired], winner[fired]] = 1.0
                V = np.where(fired[:, None], params.v_reset, V)
                counts[:, i] += post
                if learn:
                    theta = theta + theta_plus * post
            else:
                post = np.zeros((S, K))
            if learn:
                x = x * dp + pre[:, None, :]
                y = y * dq + post[:, :, None]
                W = W + rule.a_plus * post[:, :, None] * x - rule.a_minus * pre[:, None, :] * y
                np.clip(W, 0.0, rule.w_max, out=W)
        if learn:
            # synaptic normalization (as in Diehl and Cook): each unit's weights keep a fixed sum
            W = W * (W.shape[2] * 0.1 / W.sum(2, keepdims=True).clip(1e-12))
            np.clip(W, 0.0, rule.w_max, out=W)
    return counts, W, theta, events / max(n, 1)


def spiking_digits(X: np.ndarray, units: int = 40, *, seeds: range | list[int] = range(5), steps: int = 40,
                   dt: float = 1.0, max_rate: float = 200.0, psp: float = 4.0, theta_plus: float = 0.2,
                   params: LIF = DIGITS_LIF, rule: STDP = DIGITS_STDP,
                   ) -> DigitsRun:
    """Train a winner-take-all layer of LIF units with STDP on images, without labels.

    Each image (rows of X in [0, 1], width d) is shown for ``steps`` steps of
    ``dt`` ms as Poisson spike trains with rate pixel * ``max_rate`` Hz. Unit k's
    membrane gets psp * W[k] . (input spikes); at most one unit spikes per step
    (the one furthest above its threshold v_thresh + theta_k: lateral inhibition
    in its strongest form), and its threshold rises by ``theta_plus`` mV
    (adaptive thresholds stop one unit from winning everything). STDP with
    traces updates the weights, then each unit's weights are rescaled to sum to
    0.1 d. Runs (one per seed) are vectorized.

    Returns a :class:`DigitsRun`. Chapter 11, "Unsupervised digits".
    """
    fn = "spiking_digits"
    X = check_array(fn, "X", X, shape=("n", "d"))
    if X.min() < 0 or X.max() > 1:
        raise ValueError(f"{fn}: expected X in [0, 1], got values in [{X.min():g}, {X.max():g}]")
    dt = _dt(fn, dt)
    check_positive(fn, "units", units, integer=True)
    check_positive(fn, "steps", steps, integer=True)
    if max_rate < 0 or max_rate > 1000.0 / dt:
        raise ValueError(f"{fn}: expected max_rate in [0, 1/dt] = [0, {1000.0 / dt:g}] Hz, got {max_rate!r}")
    seeds = list(seeds)
    rngs = [np.random.default_rng(s) for s in seeds]
    d = X.shape[1]
    W = np.stack([r.uniform(0.0, 0.2, (units, d)) for r in rngs])
    theta = np.zeros((len(seeds), units))
    order = np.random.default_rng(seeds[0]).permutation(X.shape[0])
    _, W, theta, events = _run_layer(X[order], W, theta, rngs, steps, dt, max_rate, psp, params, rule, True,
                                     theta_plus)
    return DigitsRun(W, theta, events)


def spiking_responses(X: np.ndarray, run: DigitsRun, *, seed: int = 0, steps: int = 40, dt: float = 1.0,
                      max_rate: float = 200.0, psp: float = 4.0,
                      params: LIF = DIGITS_LIF) -> np.ndarray:
    """Spike counts of a trained layer, learning off: X (n, d) -> (runs, n, units).

    Same presentation as ``spiking_digits`` (pass the same settings); the
    thresholds stay at the learned theta. Chapter 11, "Unsupervised digits".
    """
    fn = "spiking_responses"
    X = check_array(fn, "X", X, shape=("n", run.weights.shape[2]))
    dt = _dt(fn, dt)
    rngs = [np.random.default_rng([seed, i]) for i in range(run.weights.shape[0])]
    counts, *_ = _run_layer(X, run.weights, run.theta, rngs, steps, dt, max_rate, psp, params, STDP(), False, 0.0)
    return counts


def label_units(counts: np.ndarray, y: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Label each unit with the class it responds to most (mean spikes per image of that class).

    counts (runs, n, units) spike counts, y (n,) ints -> (runs, units) labels.
    """
    y = np.asarray(y)
    onehot = np.eye(n_classes)[y]  # (n, C)
    per_class = np.einsum("snk,nc->skc", counts, onehot) / onehot.sum(0).clip(1)
    return per_class.argmax(-1)


def predict_labels(counts: np.ndarray, labels: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Predict each image's class: the class whose units spiked most on average. -> (runs, n)."""
    onehot = np.eye(n_classes)[labels]  # (runs, units, C)
    per_class = np.einsum("snk,skc->snc", counts, onehot) / onehot.sum(1, keepdims=True).clip(1)
    return per_class.argmax(-1)


# --------------------------------------------------------------------------- a pattern hidden in noise

class PatternInput(NamedTuple):
    """What ``repeating_pattern`` returns. spikes: bool (T, n_afferents), one row per step of dt ms;
    in_pattern: bool (n_slots,), whether slot k (steps k * slot_steps to (k + 1) * slot_steps) carries the
    pattern; afferents 0 .. n_pattern - 1 carry it."""

    spikes: np.ndarray
    in_pattern: np.ndarray
    slot_steps: int
    n_pattern: int
    dt: float


def repeating_pattern(n_afferents: int = 1000, duration: float = 40_000.0, *, rate: float = 5.0,
                      pattern_ms: float = 50.0, share: float = 0.25, n_pattern: int | None = None,
                      repeat: bool = True, dt: float = 1.0, seed: int = 0) -> PatternInput:
    """Poisson spike trains with one spike pattern repeated at random times, at the same rate.

    Time is cut into slots of ``pattern_ms``; each slot carries the pattern with
    probability share / (1 - share) unless the slot before it did, so about
    ``share`` of the time is pattern. Every afferent fires as a Bernoulli
    process of ``rate`` Hz (probability rate dt / 1000 per step) everywhere;
    in a pattern slot the first ``n_pattern`` afferents (default half) replay
    one frozen block of spikes instead, drawn as exactly
    round(n_pattern * slot_steps * rate dt / 1000) spikes placed uniformly at
    random in the block, so every step of every afferent still spikes with
    probability rate dt / 1000 and the pattern's spike count is the noise's
    expected count: the rates cannot tell pattern from noise. With
    ``repeat=False`` each presentation is a fresh block drawn the same way (the
    control with nothing to find). Returns a :class:`PatternInput`.
    Chapter 11, "A pattern hidden in noise".
    """
    fn = "repeating_pattern"
    dt = _dt(fn, dt)
    check_positive(fn, "n_afferents", n_afferents, integer=True)
    check_positive(fn, "duration", duration)
    check_positive(fn, "pattern_ms", pattern_ms)
    n_pattern = n_afferents // 2 if n_pattern is None else n_pattern
    check_positive(fn, "n_pattern", n_pattern, integer=True)
    if n_pattern > n_afferents:
        raise ValueError(f"{fn}: expected n_pattern <= n_afferents = {n_afferents}, got {n_pattern}")
    if not 0 < share < 0.5:
        raise ValueError(f"{fn}: expected share in (0, 0.5) (slots cannot follow each other), got {share!r}")
    if rate < 0 or rate > 1000.0 / dt:
        raise ValueError(f"{fn}: expected rate in [0, 1/dt] = [0, {1000.0 / dt:g}] Hz, got {rate!r}")
    rng = np.random.default_rng(seed)
    slot_steps = int(round(pattern_ms / dt))
    n_slots = int(duration // pattern_ms)
    if n_slots < 1:
        raise ValueError(f"{fn}: expected duration >= pattern_ms = {pattern_ms:g} ms, got {duration!r}")
    draws = rng.random(n_slots) < share / (1.0 - share)
    in_pattern = np.zeros(n_slots, dtype=bool)
    for k in range(n_slots):  # no two pattern slots in a row
        in_pattern[k] = draws[k] and not (k and in_pattern[k - 1])
    p = rate * dt / 1000.0
    spikes = np.zeros((n_slots * slot_steps, n_afferents), dtype=bool)
    if p > 0:  # a Bernoulli trial per (step, afferent): geometric gaps between successes, over the flat array
        flat = spikes.reshape(-1)
        gaps = rng.geometric(p, size=int(flat.size * p + 6 * np.sqrt(flat.size * p) + 10))
        hits = np.cumsum(gaps) - 1
        while hits[-1] < flat.size:  # (practically never) draw more
            hits = np.concatenate([hits, hits[-1] + np.cumsum(rng.geometric(p, size=hits.size))])
        flat[hits[hits < flat.size]] = True
    count = int(round(n_pattern * slot_steps * p))

    def block() -> np.ndarray:
        flat = np.zeros(slot_steps * n_pattern, dtype=bool)
        flat[rng.choice(flat.size, count, replace=False)] = True
        return flat.reshape(slot_steps, n_pattern)

    frozen = block()
    for k in np.flatnonzero(in_pattern):
        spikes[k * slot_steps:(k + 1) * slot_steps, :n_pattern] = frozen if repeat else block()
    return PatternInput(spikes, in_pattern, slot_steps, n_pattern, dt)


class PatternRun(NamedTuple):
    """What ``stdp_pattern_run`` returns: weights (records, runs, n_afferents), before the first step and after
    every second of simulated time; post: bool (T, runs), the neuron's spikes."""

    weights: np.ndarray
    post: np.ndarray


def stdp_pattern_run(inputs: list[PatternInput], *, learn: bool | list[bool] = True, w0: float = 0.5,
                     psp: float = 0.8, params: LIF = PATTERN_LIF, rule: STDP = PATTERN_STDP) -> PatternRun:
    """One LIF neuron per input, all afferents through delta synapses, learning with pair-based STDP.

    Run r reads ``inputs[r]`` (all of one shape); an input spike raises V by
    ``psp`` * w mV. Weights start at ``w0`` and, in the runs where ``learn``
    is true, follow the chapter's all-to-all trace rule exactly as
    ``_stdp_step`` writes it (after both traces jump, w += a_plus x at a
    postsynaptic spike and w -= a_minus y at a presynaptic one, clipped to
    [0, rule.w_max]); in the others they stay at w0 (the control without
    plasticity). Event-driven: a step touches only the synapses that spiked,
    and the presynaptic traces are decayed lazily, when a postsynaptic spike
    reads them. Runs are vectorized. Returns a :class:`PatternRun`.
    Chapter 11, "A pattern hidden in noise".
    """
    fn = "stdp_pattern_run"
    if not inputs:
        raise ValueError(f"{fn}: expected at least one input, got none")
    (T, n), dt = inputs[0].spikes.shape, inputs[0].dt
    for i, inp in enumerate(inputs):
        if inp.spikes.shape != (T, n) or inp.dt != dt:
            raise ValueError(f"{fn}: expected every input of shape {(T, n)} and dt {dt:g}, "
                             f"got {inp.spikes.shape} and dt {inp.dt:g} for input {i}")
    S = len(inputs)
    learn = np.broadcast_to(np.asarray(learn, dtype=bool), (S,))
    # every input spike as (step, run, afferent), in time order
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    steps_, runs_, afferents_ = [], [], []
    for r, inp in enumerate(inputs):
        t_r, i_r = found.setdefault(id(inp), np.nonzero(inp.spikes))
        steps_.append(t_r)
        runs_.append(np.full(t_r.shape, r))
        afferents_.append(i_r)
    order = np.argsort(np.concatenate(steps_), kind="stable")
    ev_step = np.concatenate(steps_)[order]
    ev_run, ev_aff = np.concatenate(runs_)[order], np.concatenate(afferents_)[order]
    bounds = np.searchsorted(ev_step, np.arange(T + 1))
    w = np.full((S, n), float(w0))
    x, x_time = np.zeros((S, n)), np.zeros((S, n))  # presynaptic traces, and the step each was last updated
    y = np.zeros(S)  # the postsynaptic trace
    V = np.full(S, params.v_rest)
    refr = np.zeros(S)
    dp, dq = np.exp(-dt / rule.tau_plus), np.exp(-dt / rule.tau_minus)
    a = dt / params.tau_m
    per_record = int(round(1000.0 / dt))
    weights, post = [w.copy()], np.zeros((T, S), dtype=bool)
    for t in range(T):
        s_ev, i_ev = ev_run[bounds[t]:bounds[t + 1]], ev_aff[bounds[t]:bounds[t + 1]]
        active = refr <= 0
        drive = np.bincount(s_ev, weights=w[s_ev, i_ev], minlength=S)  # sum of w over this step's spikes
        V = np.where(active, V + a * (params.v_rest - V) + psp * drive, V)
        fired = V >= params.v_thresh
        V = np.where(fired, params.v_reset, V)
        refr = np.where(fired, params.t_ref, refr - dt)
        post[t] = fired
        # the traces jump (x lazily: decay since its last update, then + 1)
        x[s_ev, i_ev] = x[s_ev, i_ev] * dp ** (t - x_time[s_ev, i_ev]) + 1.0
        x_time[s_ev, i_ev] = t
        y = y * dq + fired
        if not learn.any():
            continue
        keep = learn[s_ev]
        s_d, i_d = s_ev[keep], i_ev[keep]
        w[s_d, i_d] -= rule.a_minus * y[s_d]  # depression at each presynaptic spike
        for s_p in np.flatnonzero(fired & learn):  # potentiation at a postsynaptic spike
            x[s_p] *= dp ** (t - x_time[s_p])
            x_time[s_p] = t
            w[s_p] += rule.a_plus * x[s_p]
            np.clip(w[s_p], 0.0, rule.w_max, out=w[s_p])
        w[s_d, i_d] = np.clip(w[s_d, i_d], 0.0, rule.w_max)
        if (t + 1) % per_record == 0:
            weights.append(w.copy())
    return PatternRun(np.stack(weights), post)


class PatternResponse(NamedTuple):
    """What ``pattern_response`` returns for one run: counts (n_slots,) spikes per slot; latency
    (n_presentations,) ms from each pattern onset to the first spike in its slot (NaN if none)."""

    counts: np.ndarray
    latency: np.ndarray


def pattern_response(post: np.ndarray, inp: PatternInput) -> PatternResponse:
    """The neuron's spikes per slot and its latency in each pattern presentation: post (T,) bool.

    Chapter 11, "A pattern hidden in noise".
    """
    n_slots, L = inp.in_pattern.shape[0], inp.slot_steps
    post = check_array("pattern_response", "post", post, shape=(n_slots * L,), dtype=bool)
    per_slot = post.reshape(n_slots, L)
    shown = per_slot[inp.in_pattern]
    first = np.where(shown.any(1), shown.argmax(1) * inp.dt, np.nan)
    return PatternResponse(per_slot.sum(1), first)
