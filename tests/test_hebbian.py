"""Tests of companion.hebbian against independent references (numpy.linalg.eigh, closed forms)."""

import numpy as np
import pytest

from companion import hebbian as h


def _gaussian(d, n, seed, spread=(3.0, 0.3)):
    """n samples of a zero-mean Gaussian (random covariance, separated eigenvalues), and their second moment."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    eig = np.geomspace(spread[0], spread[1], d)
    C = (Q * eig) @ Q.T
    X = rng.multivariate_normal(np.zeros(d), C, size=n)
    return X, X.T @ X / n  # the rules see the sample second moment, so compare with its eigenvectors


@pytest.mark.parametrize("seed", range(4))
def test_oja_converges_to_leading_eigenvector(seed):
    X, C = _gaussian(6, 3000, seed)
    W = h.train_rule(X, "oja", 1, epochs=3, lr=0.01, lr_final=0.0005, seed=seed, record_every=1000)
    _, V = np.linalg.eigh(C)
    assert h.angle_to(W[-1], V[:, -1:].T)[0] < 3.0
    assert abs(np.linalg.norm(W[-1]) - 1.0) < 0.02  # a unit vector


def test_oja_fixed_point_is_stationary():
    # at w = the unit leading eigenvector of C the expected update C w - (w^T C w) w vanishes
    rng = np.random.default_rng(0)
    A = rng.normal(size=(5, 5))
    C = A @ A.T
    _, V = np.linalg.eigh(C)
    w = V[:, -1]
    assert np.allclose(C @ w - (w @ C @ w) * w, 0.0, atol=1e-10)
    # and the expected step, averaged exactly over samples of a sample set with covariance C, is zero
    L = np.linalg.cholesky(C)
    Z = rng.normal(size=(4000, 5))
    Z = (Z - Z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(Z.T, bias=True))).T
    X = Z @ L.T  # sample covariance exactly C
    steps = np.stack([h.oja_step(w, x, 1.0) - w for x in X])
    assert np.allclose(steps.mean(0), 0.0, atol=1e-8)


@pytest.mark.parametrize("seed", range(3))
def test_sanger_rows_converge_to_top_k_eigenvectors(seed):
    X, C = _gaussian(6, 4000, seed)
    W = h.train_rule(X, "sanger", 3, epochs=4, lr=0.01, lr_final=0.0005, seed=seed, record_every=4000)
    _, V = np.linalg.eigh(C)
    top = V[:, ::-1][:, :3].T
    assert np.all(h.angle_to(W[-1], top) < 5.0)
    assert np.abs(W[-1] @ W[-1].T - np.eye(3)).max() < 0.1  # orthonormal rows


def test_sanger_step_formula():
    rng = np.random.default_rng(1)
    W, x = rng.normal(size=(3, 4)), rng.normal(size=4)
    y = W @ x
    expected = W.copy()
    for i in range(3):  # row i: Oja on x minus the projections of rows 0..i-1 (and i's own term)
        residual = x - sum(y[j] * W[j] for j in range(i + 1))
        expected[i] = W[i] + 0.1 * y[i] * residual
    assert np.allclose(h.sanger_step(W, x, 0.1), expected)


def test_hebb_grows_without_bound():
    X, _ = _gaussian(4, 2000, 0)
    W = h.train_rule(X, "hebb", 1, epochs=1, lr=0.005, record_every=500)
    norms = np.linalg.norm(W[:, 0], axis=1)
    assert np.all(np.diff(norms) > 0) and norms[-1] > 100 * norms[0]


def test_competitive_moves_only_the_winner():
    W = np.array([[0.0, 0.0], [1.0, 1.0]])
    new, winner = h.competitive_step(W, np.array([0.9, 0.8]), 0.5)
    assert winner == 1
    assert np.allclose(new[0], W[0]) and np.allclose(new[1], [0.95, 0.9])


def test_competitive_ends_near_a_lloyd_fixed_point():
    # with a learning rate falling to ~0, each unit sits at the mean of the points it wins (k-means' fixed point)
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    X = np.concatenate([c + 0.5 * rng.normal(size=(100, 2)) for c in centres])
    W = h.train_competitive(X, 4, epochs=20, lr=(0.3, 0.001), seeds=range(3))
    for run in W:
        win = ((X[:, None] - run[None]) ** 2).sum(-1).argmin(1)
        for k in np.unique(win):
            assert np.linalg.norm(run[k] - X[win == k].mean(0)) < 0.1


def test_lif_rate_matches_closed_form():
    """The stated tolerance: 3% (or 1 Hz) above rheobase at dt = 0.1 ms over 2 s; silent below."""
    I = np.linspace(0.0, 5.0, 26)
    spikes, _ = h.lif_simulate(I, 2000.0, dt=0.1)
    rate = spikes.sum(0) / 2.0
    ref = h.lif_rate(I)
    assert np.all(np.abs(rate - ref) <= np.maximum(0.03 * ref, 1.0))
    assert np.all(rate[h.LIF().R * I < 14.9] == 0)


def test_lif_subthreshold_matches_exponential():
    # below threshold, V(t) = v_rest + R I (1 - exp(-t / tau)); Euler at dt = 0.01 ms is close
    spikes, V = h.lif_simulate(np.array([1.0]), 50.0, dt=0.01, record_v=True)
    t = np.arange(1, V.shape[0] + 1) * 0.01
    assert not spikes.any()
    assert np.allclose(V[:, 0], -65.0 + 10.0 * (1 - np.exp(-t / 20.0)), atol=0.01)


def test_poisson_rate_and_errors():
    s = h.poisson_spikes(np.array([0.0, 20.0, 100.0]), 20000.0, dt=1.0, seed=0)
    assert s.shape == (20000, 3)
    rates = s.mean(0) * 1000.0
    assert rates[0] == 0 and abs(rates[1] - 20) < 3 and abs(rates[2] - 100) < 6
    with pytest.raises(ValueError, match=r"poisson_spikes: expected rates in \[0, 1/dt\]"):
        h.poisson_spikes(np.array([2000.0]), 10.0, dt=1.0)
    with pytest.raises(ValueError, match="rates in"):
        h.poisson_spikes(np.array([-1.0]), 10.0)
    with pytest.raises(ValueError, match="poisson_spikes: expected dt"):
        h.poisson_spikes(np.array([1.0]), 10.0, dt=-0.5)


def test_stdp_simulated_window_matches_formula():
    rule = h.STDP()
    d = np.arange(-80.0, 80.5, 0.5)
    measured = h.stdp_pair_simulation(d, dt=0.5, rule=rule)
    expected = rule.a_plus * np.exp(-d / rule.tau_plus) * (d > 0) - rule.a_minus * np.exp(d / rule.tau_minus) * (d < 0)
    expected[d == 0] = rule.a_plus - rule.a_minus
    assert np.allclose(measured, expected, atol=1e-12)
    assert np.allclose(h.stdp_window(d, rule), expected)
    assert np.all(measured[d > 0] > 0) and np.all(measured[d < 0] < 0)


def test_weights_stay_in_bounds():
    run = h.stdp_latency_run(trials=60, seeds=range(2), w0=0.9, rule=h.STDP(a_plus=0.2, a_minus=0.2))
    assert run.weights.min() >= 0.0 and run.weights.max() <= 1.0
    assert np.any(run.weights == 1.0) and np.any(run.weights == 0.0)  # the bounds were reached and held


def test_early_input_wins_and_latency_falls():
    run = h.stdp_latency_run(trials=150, seeds=range(2))
    final = run.weights[-1]
    assert np.all(final[:, 0] >= final[:, 1:].max(1) - 0.05)  # the earliest input ends at (or near) the top
    assert np.all(final[:, -5:].max(1) < 0.05)  # the latest inputs are pruned
    assert np.all(np.nanmean(run.latency[-20:], 0) < np.nanmean(run.latency[:10], 0) - 2.0)


def test_spiking_digits_bounds_and_shapes():
    rng = np.random.default_rng(0)
    X = rng.random((12, 16))
    run = h.spiking_digits(X, 5, seeds=range(2), steps=10)
    assert run.weights.shape == (2, 5, 16) and run.theta.shape == (2, 5)
    assert run.weights.min() >= 0.0 and run.weights.max() <= 1.0
    counts = h.spiking_responses(X, run, steps=10)
    assert counts.shape == (2, 12, 5) and counts.sum(-1).max() <= 10  # winner-take-all: one spike per step
    labels = h.label_units(counts, np.arange(12) % 3, 3)
    assert labels.shape == (2, 5) and h.predict_labels(counts, labels, 3).shape == (2, 12)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="lif_simulate: expected dt to be a number > 0"):
        h.lif_simulate(np.array([1.0]), 10.0, dt=-0.1)
    with pytest.raises(ValueError, match=r"lif_simulate: expected I of shape \(n,\) or \(T, n\)"):
        h.lif_simulate(np.ones((3, 2)), 10.0, dt=0.1)
    with pytest.raises(ValueError, match=r"oja_step: expected x of shape \(4,\), got \(3,\)"):
        h.oja_step(np.ones(4), np.ones(3), 0.1)
    with pytest.raises(ValueError, match=r"sanger_step: expected x of shape \(5,\)"):
        h.sanger_step(np.ones((2, 5)), np.ones(4), 0.1)
    with pytest.raises(ValueError, match="train_rule: expected rule"):
        h.train_rule(np.ones((3, 2)), "hebbian")
    with pytest.raises(ValueError, match="spiking_digits: expected X in"):
        h.spiking_digits(np.full((3, 4), 2.0), 2)
    with pytest.raises(ValueError, match=r"spiking_digits: expected max_rate in \[0, 1/dt\]"):
        h.spiking_digits(np.ones((3, 4)), 2, max_rate=5000.0)
    with pytest.raises(ValueError, match="stdp_pair_simulation: expected dt"):
        h.stdp_pair_simulation(np.array([1.0]), dt=0.0)


# --------------------------------------------------------------------------- the exercise's checker

def _loops(pre, post, ap, am, tp, tm):
    total = 0.0
    for a in pre:
        for b in post:
            s = b - a
            total += ap * np.exp(-s / tp) if s > 0 else (-am * np.exp(s / tm) if s < 0 else ap - am)
    return total


def test_checker_accepts_a_correct_solution_and_names_typical_bugs():
    from companion.exercises import check

    assert check("ch11-stdp-all-pairs", _loops, include_hidden=True).passed
    # the trace simulation is a correct solution too (on a grid, far from the weight bounds)
    def traces(pre, post, ap, am, tp, tm):
        rule = h.STDP(ap, am, tp, tm, 1e9)
        return sum(float(h.stdp_pair_simulation(np.array([b - a]), dt=0.5, rule=rule, w0=1.0)[0])
                   for a in pre for b in post)
    assert abs(traces([0.0, 4.0], [5.0, 20.0], 0.01, 0.0105, 16.8, 33.7)
               - _loops([0.0, 4.0], [5.0, 20.0], 0.01, 0.0105, 16.8, 33.7)) < 1e-12

    def flipped(pre, post, ap, am, tp, tm):
        return _loops(post, pre, ap, am, tp, tm)

    def swapped_taus(pre, post, ap, am, tp, tm):
        return _loops(pre, post, ap, am, tm, tp)

    def nearest(pre, post, ap, am, tp, tm):  # only the nearest pre spike of each post spike
        if len(pre) == 0 or len(post) == 0:
            return 0.0
        return sum(_loops([min(pre, key=lambda a: abs(b - a))], [b], ap, am, tp, tm) for b in post)

    for wrong, words in [(flipped, "t_post - t_pre"), (swapped_taus, "swapped"), (nearest, "EVERY pair")]:
        result = check("ch11-stdp-all-pairs", wrong)
        assert not result.passed, wrong.__name__
        assert words in result.message, (wrong.__name__, result.message)


# --------------------------------------------------------------------------- a pattern hidden in noise

def _slots(inp):
    return inp.spikes.reshape(len(inp.in_pattern), inp.slot_steps, -1)


def test_repeating_pattern_keeps_rates_equal():
    inp = h.repeating_pattern(400, 60_000.0, rate=10.0, seed=3)
    slots = _slots(inp)
    shown, p = inp.in_pattern, 10.0 / 1000
    assert inp.n_pattern == 200 and not np.any(shown[1:] & shown[:-1])  # never two presentations in a row
    assert abs(shown.mean() - 0.25) < 0.03  # about a quarter of the time
    blocks = slots[shown][:, :, :200]
    assert np.all(blocks == blocks[0])  # one frozen block, replayed exactly
    assert np.all(blocks.sum((1, 2)) == round(200 * 50 * p))  # its spike count is the noise's expected count
    # the rate inside the pattern equals the rate outside it, for pattern and noise afferents
    for cols in (slice(0, 200), slice(200, 400)):
        inside, outside = slots[shown][:, :, cols].mean(), slots[~shown][:, :, cols].mean()
        assert abs(inside / p - 1) < 0.03 and abs(outside / p - 1) < 0.03
    fresh = h.repeating_pattern(400, 60_000.0, rate=10.0, repeat=False, seed=3)
    fresh_blocks = _slots(fresh)[fresh.in_pattern][:, :, :200]
    assert not np.all(fresh_blocks == fresh_blocks[0])  # the control: a new block every time
    assert np.all(fresh_blocks.sum((1, 2)) == round(200 * 50 * p))
    with pytest.raises(ValueError, match=r"repeating_pattern: expected share in \(0, 0.5\)"):
        h.repeating_pattern(10, 1000.0, share=0.6)
    with pytest.raises(ValueError, match="repeating_pattern: expected n_pattern <= n_afferents"):
        h.repeating_pattern(10, 1000.0, n_pattern=20)


def _dense_pattern_run(inputs, learn, w0, psp, params, rule):
    """Reference: the same neuron stepped densely through ``_stdp_step``, as the umbrella run does."""
    U = np.stack([inp.spikes for inp in inputs], 1).astype(float)  # (T, S, n)
    T, S, n = U.shape
    w, x, y = np.full((S, n), w0), np.zeros((S, n)), np.zeros((S, 1))
    V = np.full(S, params.v_rest)
    dp, dq = np.exp(-1 / rule.tau_plus), np.exp(-1 / rule.tau_minus)
    post = np.zeros((T, S), bool)
    for t in range(T):
        V = V + (params.v_rest - V) / params.tau_m + psp * (U[t] * w).sum(1)
        fired = V >= params.v_thresh
        V = np.where(fired, params.v_reset, V)
        post[t] = fired
        w_new, x, y = h._stdp_step(w, x, y, U[t], fired[:, None].astype(float), dp, dq, rule)
        w = np.where(np.asarray(learn)[:, None], w_new, w)
    return w, post


def test_event_driven_pattern_run_matches_dense_trace_code():
    inputs = [h.repeating_pattern(60, 3000.0, rate=40.0, seed=s) for s in range(3)]
    learn = [True, True, False]
    run = h.stdp_pattern_run(inputs, learn=learn, psp=1.5)
    w, post = _dense_pattern_run(inputs, learn, 0.5, 1.5, h.PATTERN_LIF, h.PATTERN_STDP)
    assert post.any() and np.array_equal(run.post, post)
    assert np.allclose(run.weights[-1], w, atol=1e-12)
    assert run.weights.shape == (4, 3, 60) and np.all(run.weights[:, 2] == 0.5)  # the frozen run stays put
    assert run.weights.min() >= 0 and run.weights.max() <= 1


def _share_in_pattern(rule, seeds, duration=30_000.0):
    inputs = [h.repeating_pattern(seed=s, duration=duration) for s in seeds]
    run = h.stdp_pattern_run(inputs, rule=rule)
    shares = []
    for k, inp in enumerate(inputs):
        counts = h.pattern_response(run.post[:, k], inp).counts[-100:]  # the last 5 s
        shown = inp.in_pattern[-100:]
        shares.append(counts[shown].sum() / max(counts.sum(), 1))
    return np.array(shares)


def test_stdp_finds_the_hidden_pattern_and_not_without_it():
    """Fails if STDP is switched off or its window is flipped (pre-before-post depressing)."""
    chance = 0.25
    assert _share_in_pattern(h.PATTERN_STDP, [0, 1, 3]).mean() > 0.6
    off = h.STDP(a_plus=0.0, a_minus=0.0)
    flipped = h.PATTERN_STDP._replace(a_plus=-h.PATTERN_STDP.a_minus, a_minus=-h.PATTERN_STDP.a_plus)
    for rule in (off, flipped):
        assert np.all(np.abs(_share_in_pattern(rule, [0, 1], 10_000.0) - chance) < 0.1)


def test_pattern_response_latency():
    inp = h.repeating_pattern(4, 1000.0, seed=0)
    post = np.zeros(inp.spikes.shape[0], bool)
    first = np.flatnonzero(inp.in_pattern)[0]
    post[first * 50 + 7] = True  # 7 ms after the first onset
    resp = h.pattern_response(post, inp)
    assert resp.latency[0] == 7.0 and np.all(np.isnan(resp.latency[1:]))
    assert resp.counts.sum() == 1 and resp.counts[first] == 1
    with pytest.raises(ValueError, match="pattern_response: expected post of shape"):
        h.pattern_response(post[:-1], inp)
