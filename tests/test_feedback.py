"""companion.feedback against independent references: autograd, closed forms, invariants, hypothesis."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from companion import feedback as fb
from companion.exercises import check
from companion.training import History, mlp


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _double(net):
    return fb.Net(net.sizes, net.seeds, [w.double() for w in net.weights], [b.double() for b in net.biases])


def _batch(n=9, d=5, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g)


def _autograd(net, x, y):
    """Gradients of each seed's mean cross-entropy by torch.autograd, and n * dL/dh of every hidden layer."""
    grads_w, grads_b, grads_h = [], [], []
    for i in range(net.n_seeds):
        ws = [w[i].clone().requires_grad_() for w in net.weights]
        bs = [b[i, 0].clone().requires_grad_() for b in net.biases]
        a, hs = x, []
        for l, (w, b) in enumerate(zip(ws, bs)):
            z = a @ w + b
            if l < len(ws) - 1:
                a = torch.tanh(z)
                a.retain_grad()
                hs.append(a)
        F.cross_entropy(z, y).backward()
        grads_w.append([w.grad for w in ws])
        grads_b.append([b.grad for b in bs])
        grads_h.append([len(x) * h.grad for h in hs])
    stack = lambda per_seed: [torch.stack([s[l] for s in per_seed]) for l in range(len(per_seed[0]))]  # noqa: E731
    return stack(grads_w), stack(grads_b), stack(grads_h) if grads_h[0] else []


# --------------------------------------------------------------------------- the network


def test_seed_i_is_the_course_mlp_with_seed_i():
    net = fb.stacked_net([5, 7, 3], seeds=[4, 9])
    for i, seed in enumerate([4, 9]):
        linears = [m for m in mlp([5, 7, 3], "tanh", "xavier", seed=seed) if isinstance(m, torch.nn.Linear)]
        for l, layer in enumerate(linears):
            torch.testing.assert_close(net.weights[l][i], layer.weight.detach().T)
            torch.testing.assert_close(net.biases[l][i, 0], layer.bias.detach())


def test_backprop_rule_is_autograd():
    net = _double(fb.stacked_net([5, 8, 6, 4], seeds=[0, 1, 2]))
    x, y = _batch()
    d_w, d_b = fb.rule_updates(net, x, y, "bp")
    ref_w, ref_b, _ = _autograd(net, x, y)
    for mine, ref in zip(d_w + d_b, ref_w + [b[:, None, :] for b in ref_b]):
        torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-14)


def test_feedback_alignment_with_b_equal_w_transpose_is_backprop():
    net = _double(fb.stacked_net([5, 8, 6, 7, 4], seeds=[0, 3]))
    x, y = _batch()
    transport = [None] + [w.transpose(1, 2).clone() for w in net.weights[1:]]
    d_w, d_b = fb.rule_updates(net, x, y, "fa", transport)
    ref_w, ref_b, _ = _autograd(net, x, y)
    for mine, ref in zip(d_w + d_b, ref_w + [b[:, None, :] for b in ref_b]):
        torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-14)
    # and with random B it is not: only the output layer's update is backprop's
    random_w, _ = fb.rule_updates(net, x, y, "fa", fb.feedback_matrices(net, "fa"))
    torch.testing.assert_close(random_w[-1], ref_w[-1])
    assert not torch.allclose(random_w[0], ref_w[0], atol=1e-3)


def test_dfa_one_hidden_layer_with_d_equal_w2_transpose_is_backprop():
    net = _double(fb.stacked_net([5, 8, 4], seeds=[0, 1]))
    x, y = _batch()
    direct = [net.weights[1].transpose(1, 2).clone(), None]
    d_w, d_b = fb.rule_updates(net, x, y, "dfa", direct)
    ref_w, ref_b, _ = _autograd(net, x, y)
    for mine, ref in zip(d_w + d_b, ref_w + [b[:, None, :] for b in ref_b]):
        torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-14)


def test_dfa_sends_the_output_error_to_every_layer_directly():
    net = _double(fb.stacked_net([5, 6, 6, 4], seeds=[0]))
    x, y = _batch()
    feedback = fb.feedback_matrices(net, "dfa")
    cache = fb.forward(net, x)
    e = fb.output_error(cache.logits, y.expand(1, -1))
    ds = fb.deltas(net, cache, e, "dfa", feedback)
    for l in range(2):  # every hidden delta is e @ D_l times tanh', whatever the layers above do
        torch.testing.assert_close(ds[l], (e @ feedback[l]) * (1 - cache.inputs[l + 1] ** 2))


def test_readout_trains_only_the_last_layer():
    net = _double(fb.stacked_net([5, 6, 4], seeds=[0]))
    x, y = _batch()
    d_w, _ = fb.rule_updates(net, x, y, "readout")
    ref_w, _, _ = _autograd(net, x, y)
    assert torch.count_nonzero(d_w[0]) == 0
    torch.testing.assert_close(d_w[1], ref_w[1])


def test_feedback_matrices_are_per_seed_fixed_and_of_the_right_shapes():
    net = fb.stacked_net([5, 7, 6, 3], seeds=[0, 1])
    fa = fb.feedback_matrices(net, "fa")
    assert fa[0] is None and fa[1].shape == (2, 6, 7) and fa[2].shape == (2, 3, 6)
    dfa = fb.feedback_matrices(net, "dfa")
    assert dfa[0].shape == (2, 3, 7) and dfa[1].shape == (2, 3, 6) and dfa[2] is None
    again = fb.feedback_matrices(fb.stacked_net([5, 7, 6, 3], seeds=[1]), "fa")
    torch.testing.assert_close(again[1][0], fa[1][1])  # seed 1's B does not depend on the other seeds
    assert fb.feedback_matrices(net, "bp") == [None, None, None]


# --------------------------------------------------------------------------- angles


def test_angle_matches_the_closed_form_and_its_invariants():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, 5, generator=g), torch.randn(4, 3, 5, generator=g)
    an, bn = a.reshape(4, -1).numpy().astype(float), b.reshape(4, -1).numpy().astype(float)
    expected = np.degrees(np.arccos((an * bn).sum(1) / np.linalg.norm(an, axis=1) / np.linalg.norm(bn, axis=1)))
    np.testing.assert_allclose(fb.angle(a, b).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(fb.angle(3 * a, 0.5 * b).numpy(), expected, rtol=1e-6)  # scale does not matter
    np.testing.assert_allclose(fb.angle(a, a).numpy(), 0, atol=1e-3)
    np.testing.assert_allclose(fb.angle(a, -a).numpy(), 180, atol=1e-3)
    assert torch.isnan(fb.angle(torch.zeros(1, 3), torch.ones(1, 3))).all()


@settings(max_examples=25, deadline=None)
@given(d=st.integers(100, 3000), seed=st.integers(0, 10_000))
def test_random_directions_are_90_degrees_apart_in_expectation(d, seed):
    """cos of two random Gaussian directions has mean 0 and variance 1/d, so the angle averages 90 degrees."""
    g = torch.Generator().manual_seed(seed)
    k = 200
    angles = fb.angle(torch.randn(k, d, generator=g, dtype=torch.float64),
                      torch.randn(k, d, generator=g, dtype=torch.float64))
    sd_one = math.degrees(1 / math.sqrt(d))  # the angle's standard deviation, near 90 degrees
    assert abs(angles.mean().item() - 90) < 5 * sd_one / math.sqrt(k)
    assert abs(angles.std().item() - sd_one) < 0.25 * sd_one


@settings(max_examples=15, deadline=None)
@given(widths=st.lists(st.integers(20, 60), min_size=2, max_size=3), seed=st.integers(0, 1_000))
def test_feedback_alignment_starts_at_90_degrees_in_expectation(widths, seed):
    """At initialization W and the independent random B^T point in unrelated directions."""
    seeds = range(seed, seed + 40)
    net = fb.stacked_net([10, *widths, 5], seeds=seeds)
    feedback = fb.feedback_matrices(net, "fa")
    for l, a in enumerate(fb.alignment_angles(net, feedback)):
        if a is None:
            continue
        sd_one = math.degrees(1 / math.sqrt(net.weights[l][0].numel()))
        assert abs(a.mean().item() - 90) < 5 * sd_one / math.sqrt(len(seeds)), (l, a.mean())


def test_update_angles_are_zero_for_backprop_and_the_output_layer():
    net = fb.stacked_net([5, 8, 6, 4], seeds=[0, 1])
    x, y = _batch(d=5)
    x = x.float()
    for rule in ("bp", "fa", "dfa"):
        angles = fb.update_angles(net, x, y, rule, fb.feedback_matrices(net, rule))
        assert angles[-1].abs().max() < 1e-2
        if rule == "bp":
            assert max(a.abs().max() for a in angles) < 1e-2
        else:
            assert angles[0].min() > 30  # random feedback at initialization: far from the gradient


# --------------------------------------------------------------------------- synthetic gradients


def test_a_synthetic_gradient_that_outputs_the_true_gradient_reproduces_backprop():
    net = _double(fb.stacked_net([5, 8, 6, 7, 4], seeds=[0, 1]))
    x, y = _batch()
    ref_w, ref_b, ref_h = _autograd(net, x, y)  # the oracle's gradients come from autograd, not from the module

    def oracle(l, h, labels):
        return ref_h[l]

    step = fb.decoupled_step(net, x, y, oracle)
    for mine, ref in zip(step.d_weights + step.d_biases, ref_w + [b[:, None, :] for b in ref_b]):
        torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-14)
    for target, ref in zip(step.targets, ref_h):  # with a perfect predictor the bootstrapped targets are true too
        torch.testing.assert_close(target, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fb.true_hidden_gradients(net, x, y)[0], ref_h[0])


def test_the_top_target_is_the_true_gradient_whatever_the_predictor():
    net = _double(fb.stacked_net([5, 8, 6, 4], seeds=[0]))
    x, y = _batch()
    _, _, ref_h = _autograd(net, x, y)
    step = fb.decoupled_step(net, x, y, lambda l, h, labels: torch.ones_like(h))
    torch.testing.assert_close(step.targets[-1], ref_h[-1])
    assert not torch.allclose(step.targets[0], ref_h[0])  # below the top, the target is bootstrapped


@pytest.mark.parametrize("conditioned", [False, True])
def test_synthetic_updates_are_the_gradient_of_the_regression_loss(conditioned):
    net = _double(fb.stacked_net([5, 8, 6, 4], seeds=[0, 1]))
    x, y = _batch()
    zero = fb.synthetic_gradients(net, conditioned)
    torch.manual_seed(1)
    sg = fb.SyntheticGradients(conditioned, [torch.randn_like(w.double()) * 0.1 for w in zero.weights],
                               [None if c is None else torch.randn_like(c.double()) for c in zero.label_weights],
                               [torch.randn_like(b.double()) for b in zero.biases])
    step = fb.decoupled_step(net, x, y, sg)
    mine = fb.synthetic_updates(sg, step, y.expand(2, -1))
    params = [p.clone().requires_grad_() for p in sg.parameters()]
    leaf = fb.SyntheticGradients(conditioned, params[:2], params[2:4] if conditioned else [None, None], params[-2:])
    total = sum(0.5 * ((leaf(l, h, y.expand(2, -1)) - t) ** 2).sum(-1).mean(1).sum()
                for l, (h, t) in enumerate(zip(step.cache.hidden, step.targets)))
    total.backward()
    for m, p in zip(mine, params):
        torch.testing.assert_close(m, p.grad, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- training


def _tiny_run(rule):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    run = fb.train(rule, [6, 16, 16, 3], x, y, seeds=[0, 1, 2], epochs=200, batch_size=32, lr=1e-2)
    return fb.loss(fb.stacked_net([6, 16, 16, 3], [0, 1, 2]), x, y), fb.loss(run.net, x, y)


@pytest.mark.parametrize("rule", [r for r in fb.RULES if r != "readout"])
def test_every_rule_reduces_the_loss_on_a_tiny_batch_and_its_hidden_layers_help(rule):
    before, after = _tiny_run(rule)
    assert (after < 0.7 * before).all(), (rule, before, after)
    _, readout = _tiny_run("readout")  # only the last layer learns: every rule must do better
    assert (after < readout).all(), (rule, after, readout)


def test_seeds_train_independently_in_one_batch():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    for rule in ("fa", "cdni"):
        both = fb.train(rule, [6, 8, 8, 3], x, y, seeds=[5, 6], epochs=3, batch_size=8, lr=1e-2)
        alone = fb.train(rule, [6, 8, 8, 3], x, y, seeds=[6], epochs=3, batch_size=8, lr=1e-2)
        for w_both, w_alone in zip(both.net.weights, alone.net.weights):
            torch.testing.assert_close(w_both[1], w_alone[0], rtol=1e-5, atol=1e-6)


def test_train_accepts_custom_feedback_and_transport_makes_it_backprop():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    start = fb.stacked_net([6, 8, 8, 3], seeds=[0, 1])
    transport = [None] + [w.transpose(1, 2).clone() for w in start.weights[1:]]
    run = fb.train("fa", [6, 8, 8, 3], x, y, seeds=[0, 1], epochs=1, batch_size=40, lr=1e-2,
                   feedback=transport)
    bp = fb.train("bp", [6, 8, 8, 3], x, y, seeds=[0, 1], epochs=1, batch_size=40, lr=1e-2)
    for a, b in zip(run.net.weights, bp.net.weights):  # one full-batch step: B = W^T is backprop
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="expected feedback matrices of shapes"):
        fb.train("fa", [6, 8, 8, 3], x, y, seeds=[0, 1], epochs=1, feedback=transport[:2])
    with pytest.raises(ValueError, match="for rule 'fa' or 'dfa'"):
        fb.train("bp", [6, 8, 8, 3], x, y, seeds=[0, 1], epochs=1, feedback=transport)


def test_train_logs_the_measurements_the_chapter_plots():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    run = fb.train("fa", [6, 8, 8, 3], x, y, seeds=[0, 1], epochs=2, batch_size=16, lr=1e-2,
                   eval_data=(x, y), log_every=2)
    h = run.history
    assert h.step == [0, 2, 4, 6, 8] and h["angle_0"].shape == (5, 2) and "alignment_1" in h
    assert 80 < h["alignment_1"][0].mean() < 100
    run = fb.train("dni", [6, 8, 8, 3], x, y, seeds=[0], epochs=1, batch_size=16, lr=1e-2)
    assert "cosine_0" in run.history and np.isnan(run.history["cosine_0"][0]).all()  # zero predictions at first


def test_steps_to_target():
    h = History()
    for step, acc in [(0, [0.1, 0.2]), (10, [0.5, 0.95]), (20, [0.91, 0.97])]:
        h.log(step, eval_accuracy=np.array(acc))
    np.testing.assert_array_equal(fb.steps_to_target(h, 0.9), [20, 10])
    np.testing.assert_array_equal(fb.steps_to_target(h, 0.99), [np.inf, np.inf])


# --------------------------------------------------------------------------- update locking


def _no_overlap(tasks):
    for device in {t.device for t in tasks}:
        mine = sorted((t for t in tasks if t.device == device), key=lambda t: t.start)
        assert all(a.end <= b.start + 1e-12 for a, b in zip(mine, mine[1:]))


@pytest.mark.parametrize("layers,batches", [(1, 1), (3, 2), (4, 5)])
def test_backprop_schedule_is_fully_serial(layers, batches):
    tasks = fb.schedule("bp", layers, batches, t_forward=1.0, t_backward=2.0)
    _no_overlap(tasks)
    assert fb.makespan(tasks) == pytest.approx(batches * layers * 3.0)
    busy = sum(t.end - t.start for t in tasks)
    assert busy / (layers * fb.makespan(tasks)) == pytest.approx(1 / layers)  # each device idles (L-1)/L


def test_dni_schedule_pipelines_and_respects_forward_locking():
    L, N, tf, tb, ts = 4, 50, 1.0, 2.0, 0.5
    tasks = fb.schedule("dni", L, N, tf, tb, ts)
    _no_overlap(tasks)
    end = {(t.kind, t.device, t.batch): t.end for t in tasks}
    start = {(t.kind, t.device, t.batch): t.start for t in tasks}
    for l in range(1, L):
        for b in range(N):
            assert start[("forward", l, b)] >= end[("forward", l - 1, b)]  # still forward locked
    for l in range(L - 1):
        for b in range(N):
            assert start[("train_sg", l, b)] >= end[("update", l + 1, b)]
            assert start[("update", l, b)] == end[("forward", l, b)]  # never waits for the layers above
    per_batch = tf + tb + 2 * ts  # the busiest device's work per batch
    assert fb.makespan(tasks) <= (L - 1) * tf + N * per_batch + 2 * per_batch
    assert fb.makespan(tasks) >= N * per_batch
    assert fb.pipeline_speedup(L, tf, tb, ts) == pytest.approx(L * (tf + tb) / per_batch, rel=0.02)
    assert fb.pipeline_speedup(1, tf, tb, ts) == pytest.approx(1.0)


# --------------------------------------------------------------------------- bad input


def test_bad_input_gets_a_clear_error():
    net = fb.stacked_net([5, 6, 3], seeds=[0, 1])
    x, y = _batch(n=4, d=5, c=3)
    x = x.float()
    with pytest.raises(ValueError, match=r"forward: expected x of shape \(n, 5\), got \(4, 2\)"):
        fb.forward(net, x[:, :2])
    with pytest.raises(ValueError, match=r"expected x of shape \(2, n, 5\)"):
        fb.forward(net, x.expand(3, 4, 5))
    with pytest.raises(TypeError, match="floating-point"):
        fb.forward(net, x.long())
    with pytest.raises(ValueError, match="rule to be one of"):
        fb.rule_updates(net, x, y, "hebb")
    with pytest.raises(ValueError, match=r"labels in 0\.\.2, got 0\.\.7"):
        fb.rule_updates(net, x, torch.tensor([0, 1, 2, 7]), "bp")
    with pytest.raises(TypeError, match="integer class labels"):
        fb.loss(net, x, y.float())
    with pytest.raises(ValueError, match=r"expected y of shape \(4,\)"):
        fb.accuracy(net, x, y[:3])
    with pytest.raises(ValueError, match="one shape"):
        fb.angle(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="method to be one of"):
        fb.schedule("pipeline", 3, 2)
    with pytest.raises(ValueError, match="n_layers to be an int > 0"):
        fb.schedule("bp", 0, 2)
    with pytest.raises(ValueError, match="epochs"):
        fb.train("fa", [5, 6, 3], x, y, seeds=[0], epochs=-1)
    with pytest.raises(ValueError, match="at least one seed"):
        fb.train("fa", [5, 6, 3], x, y, seeds=[], epochs=1)
    with pytest.raises(ValueError, match=r"train: expected x of shape \(n, 5\)"):
        fb.train("fa", [5, 6, 3], x[:, :4], y, seeds=[0], epochs=1)
    # feedback matrices missing or of the wrong shape, as in the chapter's exercise
    with pytest.raises(ValueError, match=r"expected 'fa' feedback matrices of shapes"):
        fb.update_angles(net, x, y, "fa", [None, None])
    with pytest.raises(ValueError, match=r"expected 'dfa' feedback matrices of shapes"):
        fb.rule_updates(net, x, y, "dfa", [torch.ones(2, 6, 3), None])


# --------------------------------------------------------------------------- the exercise's checker


def _dfa_solution(x, y, weights, biases, feedbacks):
    hs, a = [x], x
    for w, b in zip(weights[:-1], biases[:-1]):
        a = torch.tanh(a @ w + b)
        hs.append(a)
    logits = a @ weights[-1] + biases[-1]
    e = (torch.softmax(logits, 1) - F.one_hot(y, logits.shape[1]).to(x.dtype)) / len(x)
    ds = [(e @ d) * (1 - h**2) for d, h in zip(feedbacks, hs[1:])] + [e]
    return [h.T @ d for h, d in zip(hs, ds)]


def test_checker_accepts_a_correct_solution_and_names_typical_bugs():
    assert check("ch09-dfa-updates", _dfa_solution, include_hidden=True).passed

    def transported(x, y, weights, biases, feedbacks):  # backprop's W^T instead of the feedback matrices
        hs, a = [x], x
        for w, b in zip(weights[:-1], biases[:-1]):
            a = torch.tanh(a @ w + b)
            hs.append(a)
        logits = a @ weights[-1] + biases[-1]
        d = (torch.softmax(logits, 1) - F.one_hot(y, logits.shape[1]).to(x.dtype)) / len(x)
        ds = [d]
        for w, h in zip(reversed(weights[1:]), reversed(hs[1:])):
            d = (d @ w.T) * (1 - h**2)
            ds.insert(0, d)
        return [h.T @ d for h, d in zip(hs, ds)]

    def summed(*args):
        n = len(args[0])
        return [n * u for u in _dfa_solution(*args)]

    def no_slope(x, y, weights, biases, feedbacks):
        hs, a = [x], x
        for w, b in zip(weights[:-1], biases[:-1]):
            a = torch.tanh(a @ w + b)
            hs.append(a)
        logits = a @ weights[-1] + biases[-1]
        e = (torch.softmax(logits, 1) - F.one_hot(y, logits.shape[1]).to(x.dtype)) / len(x)
        return [h.T @ d for h, d in zip(hs, [e @ d for d in feedbacks] + [e])]

    def flipped(*args):
        return [-u for u in _dfa_solution(*args)]

    for wrong, words in [(transported, "D_l"), (summed, "mean"), (no_slope, "1 - h"), (flipped, "sign")]:
        result = check("ch09-dfa-updates", wrong)
        assert not result.passed, wrong.__name__
        assert words in result.message, (wrong.__name__, result.message)
