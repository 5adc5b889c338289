"""companion.backprop.MLP: gradients against finite differences and torch, training, errors."""

import numpy as np
import pytest
import torch

from companion.backprop import MLP, train_seeds
from companion.data import add_bias_column, xor
from companion.gradcheck import numerical_gradient, relative_error


def flat_loss(mlp, X, y, index):
    """Loss as a function of one parameter array (for finite differences)."""

    def f(p):
        saved = mlp.params[index].copy()
        mlp.params[index][...] = p
        loss = mlp.loss(mlp.forward(X), y)
        mlp.params[index][...] = saved
        return loss

    return f


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("bias", [False, True])
def test_backward_matches_finite_differences(activation, bias):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5, 3)), rng.uniform(size=(5, 2))
    mlp = MLP([3, 4, 3, 2], activation=activation, bias=bias, seed=1)
    mlp.forward(X)
    grads = mlp.backward(y)
    assert [g.shape for g in grads] == [p.shape for p in mlp.params]
    for i, (p, g) in enumerate(zip(mlp.params, grads)):
        numeric = numerical_gradient(flat_loss(mlp, X, y, i), p)
        assert relative_error(g, numeric).max() < 1e-6, mlp.param_names[i]


def test_backward_matches_torch_autograd():
    X, y = xor()
    X = add_bias_column(X)
    mlp = MLP([3, 4, 1], seed=3)
    mlp.forward(X)
    grads = mlp.backward(y)
    W = [torch.tensor(w, requires_grad=True) for w in mlp.weights]
    out = torch.sigmoid(torch.sigmoid(torch.tensor(X) @ W[0]) @ W[1])
    (0.5 * ((out - torch.tensor(y)) ** 2).sum()).backward()
    for g, w in zip(grads, W):
        np.testing.assert_allclose(g, w.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_cache_holds_every_activation():
    mlp = MLP([3, 4, 1])
    X = add_bias_column(xor()[0])
    out = mlp.forward(X)
    shapes = [a.shape for a in mlp.cache.activations]
    assert shapes == [(4, 3), (4, 4), (4, 1)]
    assert mlp.cache.activations[-1] is out


def test_train_learns_xor():
    X, y = xor()
    mlp = MLP([3, 4, 1], seed=0)
    errors = mlp.train(add_bias_column(X), y, iterations=20_000, lr=1.0)
    assert errors.shape == (20_000,)
    assert errors[-1] < 0.02 < errors[0]
    np.testing.assert_array_equal(mlp.forward(add_bias_column(X)).round(), y)


def test_train_equals_forward_backward_step_loop():
    X, y = add_bias_column(xor()[0]), xor()[1]
    a, b = MLP([3, 5, 1], bias=True, seed=2), MLP([3, 5, 1], bias=True, seed=2)
    a.train(X, y, iterations=50, lr=0.5)
    for _ in range(50):
        b.forward(X)
        b.step(b.backward(y), lr=0.5)
    for p, q in zip(a.params, b.params):
        np.testing.assert_allclose(p, q)


def test_bad_input_messages():
    mlp = MLP([3, 4, 1])
    with pytest.raises(ValueError, match=r"expected X of shape \(n, 3\), got \(4, 2\)"):
        mlp.forward(np.zeros((4, 2)))
    with pytest.raises(RuntimeError, match="call forward"):
        MLP([3, 4, 1]).backward(np.zeros((4, 1)))
    mlp.forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"expected targets y of shape \(4, 1\), got \(4,\)"):
        mlp.backward(np.zeros(4))
    with pytest.raises(TypeError, match="targets y to be an array of numbers"):
        mlp.backward([["a"], ["b"], ["c"], ["d"]])
    with pytest.raises(ValueError, match="expected activation to be one of"):
        MLP([3, 1], activation="softsign")
    with pytest.raises(ValueError, match="at least two positive integer layer sizes"):
        MLP([3])
    with pytest.raises(ValueError, match="every layer size"):
        MLP([3, 0, 1])
    with pytest.raises(ValueError, match=r"expected 2 gradients"):
        mlp.step([np.zeros((3, 4))], lr=1.0)
    with pytest.raises(ValueError, match=r"MLP.train: expected X of shape \(n, 3\)"):
        mlp.train(np.zeros((4, 2)), np.zeros((4, 1)), 1)


def test_train_seeds_equals_one_mlp_per_seed():
    X, y = add_bias_column(xor()[0]), xor()[1]
    run = train_seeds([3, 4, 1], [0, 5, 7], X, y, iterations=300, lr=0.7, snapshots=[0, 299])
    errors, saved = run.errors, run.snapshots
    assert errors.shape == (300, 3) and sorted(saved) == [0, 299]
    for i, seed in enumerate([0, 5, 7]):
        mlp = MLP([3, 4, 1], seed=seed)
        first = mlp.forward(X).copy()
        np.testing.assert_allclose(saved[0][-1][i], first, rtol=1e-12)
        np.testing.assert_allclose(errors[:, i], mlp.train(X, y, iterations=300, lr=0.7), rtol=1e-10, atol=1e-14)
        again = MLP([3, 4, 1], seed=seed)
        again.train(X, y, iterations=299, lr=0.7)
        again.forward(X)
        np.testing.assert_allclose(saved[299][1][i], again.cache.activations[1], rtol=1e-10)
        mlp.train(X, y, iterations=0)
        np.testing.assert_allclose(run.forward(X)[i], mlp.forward(X), rtol=1e-10)
    assert [a.shape for a in saved[0]] == [(3, 4, 3), (3, 4, 4), (3, 4, 1)]


def test_train_seeds_bad_input():
    X, y = add_bias_column(xor()[0]), xor()[1]
    with pytest.raises(ValueError, match=r"train_seeds: expected X of shape \(n, 3\), got \(4, 2\)"):
        train_seeds([3, 4, 1], [0], xor()[0], y, 10)
    with pytest.raises(ValueError, match="at least one seed"):
        train_seeds([3, 4, 1], [], X, y, 10)
    with pytest.raises(ValueError, match="lr"):
        train_seeds([3, 4, 1], [0], X, y, 10, lr=0)


# -- the chapter's exercise checker ---------------------------------------------
def test_bias_softmax_checker_matches_torch_and_names_bugs():
    from companion.exercises import check, get
    from companion.exercises.ch02 import _backward

    exercise = get("ch02-bias-softmax-backward")
    for case in exercise.cases() + exercise.hidden_cases(np.random.default_rng(3)):
        X, Y, W0, b0, W1, b1 = case.args
        params = [torch.tensor(p, requires_grad=True) for p in (W0, b0, W1, b1)]
        logits = torch.sigmoid(torch.tensor(X) @ params[0] + params[1]) @ params[2] + params[3]
        torch.nn.functional.cross_entropy(logits, torch.tensor(Y.argmax(axis=1))).backward()
        for g, p in zip(_backward(*case.args), params):
            np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-8, atol=1e-12)
    assert check("ch02-bias-softmax-backward", _backward, include_hidden=True).passed
    summed = check("ch02-bias-softmax-backward", lambda *a: tuple(len(a[0]) * g for g in _backward(*a)))
    assert not summed.passed and "constant factor" in summed.message
    f32 = check("ch02-bias-softmax-backward", lambda *a: tuple(g.astype(np.float32) for g in _backward(*a)))
    assert not f32.passed

    def naive(X, Y, W0, b0, W1, b1):
        A1 = 1 / (1 + np.exp(-(X @ W0 + b0)))
        E = np.exp(A1 @ W1 + b1)
        d2 = (E / E.sum(axis=1, keepdims=True) - Y) / len(X)
        d1 = (d2 @ W1.T) * A1 * (1 - A1)
        return X.T @ d1, d1.sum(axis=0), A1.T @ d2, d2.sum(axis=0)

    with np.errstate(all="ignore"):
        overflow = check("ch02-bias-softmax-backward", naive)
    assert not overflow.passed and "large logits" in overflow.message and "max logit" in overflow.message
