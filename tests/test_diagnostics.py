"""companion.diagnostics: deep MLPs, per-layer gradient norms, training with recording and clipping."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from companion.diagnostics import (
    ACTIVATIONS, INITS, Residual, accuracy, deep_mlp, gradient_norms, init_bound, layer_gradient_norms,
    linear_layers, train,
)


def batch(n=32, d=64, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def manual_norms(model, X, y):
    """The same quantity, computed the long way: backward() and read each Linear's .grad."""
    model.zero_grad()
    F.cross_entropy(model(X), y).backward()
    return np.array([m.weight.grad.norm().item() for m in model.modules() if isinstance(m, nn.Linear)])


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("options", [{}, {"residual": True}, {"norm": "layer"}, {"norm": "batch", "residual": True}])
def test_gradient_norms_match_manual_autograd(activation, options):
    model = deep_mlp(6, width=16, activation=activation, init="xavier", seed=1, **options).double()
    X, y = batch()
    X = X.double()
    norms = gradient_norms(model, X, y)
    assert norms.shape == (6,) and norms.dtype == np.float64
    np.testing.assert_allclose(norms, manual_norms(model, X, y), rtol=1e-10)


def test_gradient_norms_on_a_hand_built_stack_are_ordered_input_to_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Sequential(nn.Linear(7, 4), nn.ReLU()), nn.Linear(4, 3))
    X, y = torch.randn(9, 5), torch.tensor([0, 1, 2] * 3)
    norms = gradient_norms(model, X, y)
    expected = manual_norms(model, X, y)
    np.testing.assert_allclose(norms, expected, rtol=1e-5)
    np.testing.assert_allclose(norms[0], model[0].weight.grad.norm().item(), rtol=1e-5)  # input side first
    np.testing.assert_allclose(norms[-1], model[3].weight.grad.norm().item(), rtol=1e-5)


def test_gradient_norms_leave_existing_grads_alone_and_take_a_loss():
    model = deep_mlp(3, width=8, in_features=4, out_features=2)
    X, y = torch.randn(6, 4), torch.tensor([0, 1] * 3)
    assert all(p.grad is None for p in model.parameters())
    gradient_norms(model, X, y)
    assert all(p.grad is None for p in model.parameters())
    def mse(out, target):
        return ((out - F.one_hot(target, 2).float()) ** 2).mean()

    model.zero_grad()
    mse(model(X), y).backward()
    np.testing.assert_allclose(gradient_norms(model, X, y, loss_fn=mse), layer_gradient_norms(model), rtol=1e-6)


def test_tiny_gradients_do_not_underflow():
    """Layer 1 of a 30-layer sigmoid net gets ~1e-26: its squares underflow float32, so norms are taken in float64."""
    X, y = batch(64)
    model = deep_mlp(30)
    norms = gradient_norms(model, X, y)
    exact = gradient_norms(model.double(), X.double(), y)
    assert 0 < norms[0] < 1e-20
    np.testing.assert_allclose(norms, exact, rtol=1e-3)


def test_layer_gradient_norms_needs_a_backward_pass_first():
    with pytest.raises(ValueError, match="backward"):
        layer_gradient_norms(deep_mlp(3))


def test_sigmoid_naive_ratio_shrinks_with_depth():
    X, y = batch(256)
    ratios = []
    for depth in [2, 4, 8, 12, 20]:
        norms = gradient_norms(deep_mlp(depth, activation="sigmoid", init="naive"), X, y)
        ratios.append(norms[0] / norms[-1])
    assert all(a > b for a, b in zip(ratios, ratios[1:])), ratios
    assert ratios[-1] < 1e-4


@pytest.mark.parametrize("options", [{"activation": "relu", "init": "he"}, {"residual": True}])
def test_the_fixes_keep_the_ratio_near_one(options):
    X, y = batch(256)
    norms = gradient_norms(deep_mlp(20, **options), X, y)
    assert 0.1 < norms[0] / norms[-1] < 10


def test_deep_mlp_layout():
    for depth in [1, 2, 3, 7]:
        model = deep_mlp(depth, width=12, in_features=5, out_features=3)
        assert isinstance(model, nn.Sequential)
        assert len(linear_layers(model)) == depth
        assert model(torch.randn(4, 5)).shape == (4, 3)
    residual = deep_mlp(5, residual=True, norm="batch")
    assert sum(isinstance(m, Residual) for m in residual.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm1d) for m in residual.modules()) == 4
    plain = deep_mlp(5, activation="tanh")
    assert [type(m).__name__ for m in plain] == ["Linear"] + ["Tanh", "Linear"] * 4


def test_residual_adds_its_input():
    block = nn.Linear(3, 3)
    x = torch.randn(2, 3)
    torch.testing.assert_close(Residual(block)(x), x + block(x))


def test_deep_mlp_is_reproducible_from_its_seed():
    a, b, c = deep_mlp(4, seed=3), deep_mlp(4, seed=3), deep_mlp(4, seed=4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)
    assert not torch.equal(a[0].weight, c[0].weight)


@pytest.mark.parametrize("init, variance", [
    ("naive", lambda fi, fo: 1 / (3 * fi)),
    ("xavier", lambda fi, fo: 2 / (fi + fo)),
    ("he", lambda fi, fo: 2 / fi),
])
def test_init_variances(init, variance):
    fan_in, fan_out = 400, 100
    model = deep_mlp(2, width=fan_out, in_features=fan_in, init=init, gain=1.0)
    w = model[0].weight
    assert w.abs().max() <= init_bound(init, fan_in, fan_out)
    assert w.var().item() == pytest.approx(variance(fan_in, fan_out), rel=0.03)
    assert torch.all(model[0].bias == 0)
    doubled = deep_mlp(2, width=fan_out, in_features=fan_in, init=init, gain=2.0)
    torch.testing.assert_close(doubled[0].weight, 2 * w)


@pytest.mark.parametrize("kwargs, words", [
    ({"depth": 0}, ["depth", ">= 1", "0"]),
    ({"depth": -3}, ["depth", ">= 1"]),
    ({"depth": 2.5}, ["depth", "int"]),
    ({"depth": 3, "width": 0}, ["width", ">= 1"]),
    ({"depth": 3, "activation": "swish"}, ["activation", "'swish'", "sigmoid", "tanh", "relu"]),
    ({"depth": 3, "init": "kaiming"}, ["init", "'kaiming'", "naive", "xavier", "he"]),
    ({"depth": 3, "norm": "group"}, ["norm", "'group'", "batch", "layer"]),
    ({"depth": 3, "gain": 0}, ["gain"]),
])
def test_bad_arguments_name_what_is_accepted(kwargs, words):
    with pytest.raises(ValueError) as info:
        deep_mlp(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_init_bound_rejects_unknown_names():
    with pytest.raises(ValueError, match="naive"):
        init_bound("orthogonal", 3, 3)
    assert init_bound("he", 6, 1) == pytest.approx(1.0)
    assert set(INITS) == {"naive", "xavier", "he"}


def test_a_model_without_linear_layers_is_a_clear_error():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())
    with pytest.raises(ValueError, match=r"nn\.Linear.*Conv1d"):
        gradient_norms(model, torch.randn(4, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="nn.Module"):
        linear_layers([nn.Linear(2, 2)])


@pytest.mark.parametrize("X, y, match", [
    (torch.randn(5, 3), torch.zeros(5, dtype=torch.long), r"\(n, 64\), got \(5, 3\)"),
    (torch.randn(64), torch.zeros(1, dtype=torch.long), r"\(n, 64\), got \(64,\)"),
    (np.zeros((5, 64)), torch.zeros(5, dtype=torch.long), "got a numpy ndarray, not a torch tensor"),
    (torch.randn(0, 64), torch.zeros(0, dtype=torch.long), "non-empty"),
    (torch.randn(5, 64), torch.zeros(4, dtype=torch.long), r"y, an int64 tensor .* shape \(5,\), got \(4,\)"),
    (torch.randn(5, 64), torch.zeros(5), r"int64 .* got \(5,\) of dtype torch.float32"),
    (torch.randn(5, 64), [0, 1, 2, 3, 4], "got a list, not a torch tensor"),
])
def test_bad_batches_are_clear_errors(X, y, match):
    with pytest.raises(ValueError, match=match):
        gradient_norms(deep_mlp(3), X, y)


def reference_sgd(model, X, y, epochs, lr, batch_size, momentum, clip, seed):
    """The same training with torch.optim.SGD and torch.nn.utils.clip_grad_norm_."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(X.shape[0], generator=generator)
        for idx in order[: len(order) // batch_size * batch_size].split(batch_size):
            optimizer.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()


@pytest.mark.parametrize("clip", [None, 0.05])
def test_train_is_torch_sgd_with_momentum_and_clipping(clip):
    X, y = batch(50)
    ours, theirs = deep_mlp(4, width=16, activation="tanh", seed=2), deep_mlp(4, width=16, activation="tanh", seed=2)
    history = train(ours, X, y, epochs=2, lr=0.1, batch_size=16, momentum=0.9, clip=clip, seed=5)
    reference_sgd(theirs, X, y, epochs=2, lr=0.1, batch_size=16, momentum=0.9, clip=clip, seed=5)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert history.loss.shape == (6,) and history.grad_norms.shape == (6, 4)  # 50 // 16 = 3 steps an epoch
    assert history.test_accuracy.shape == (0,) and not history.diverged


def test_train_records_norms_before_clipping_and_learns():
    X, y = batch(64, d=8, classes=2)
    y = (X[:, 0] > 0.5).long()  # a linearly separable rule
    model = deep_mlp(3, width=16, in_features=8, out_features=2, activation="relu", init="he")
    first = gradient_norms(model, X, y)
    history = train(model, X, y, X, y, epochs=60, lr=0.1, batch_size=64, clip=1e-3)
    np.testing.assert_allclose(history.grad_norms[0], first, rtol=1e-5)  # step 0: full batch, before clipping
    assert history.grad_norms[0].max() > 1e-3
    history = train(model, X, y, X, y, epochs=100, lr=0.5, batch_size=64)
    assert history.test_accuracy[-1] > 0.9 and history.loss[-1] < history.loss[0]


def test_train_stops_when_the_loss_blows_up():
    X, y = batch(64)
    model = deep_mlp(12, activation="relu", init="he", gain=3.0)
    history = train(model, X, y, X, y, epochs=5, lr=1.0, batch_size=16)
    assert history.diverged
    assert np.isnan(history.loss[-1]) and np.isfinite(history.loss[0])
    assert len(history.test_accuracy) <= 5


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"lr": -1.0}, "lr"),
    ({"momentum": 1.0}, "momentum"), ({"clip": 0.0}, "clip"),
])
def test_train_rejects_bad_settings(kwargs, match):
    X, y = batch(8)
    with pytest.raises(ValueError, match=match):
        train(deep_mlp(2), X, y, **kwargs)
    with pytest.raises(ValueError, match="both"):
        train(deep_mlp(2), X, y, X_test=X)


def test_accuracy_uses_eval_mode_and_restores_it():
    model = deep_mlp(3, norm="batch")
    X, y = batch(20)
    model.train()
    expected = (model.eval()(X).argmax(1) == y).float().mean().item()
    model.train()
    assert accuracy(model, X, y) == pytest.approx(expected)
    assert model.training


@settings(max_examples=25, deadline=None)
@given(depth=st.integers(1, 8), width=st.integers(1, 9), activation=st.sampled_from(sorted(ACTIVATIONS)),
       init=st.sampled_from(INITS), residual=st.booleans(), n=st.integers(1, 5))
def test_one_norm_per_linear_layer_for_any_shape(depth, width, activation, init, residual, n):
    model = deep_mlp(depth, width=width, activation=activation, init=init, residual=residual, in_features=3,
                     out_features=2)
    X, y = torch.randn(n, 3, dtype=torch.float64), torch.zeros(n, dtype=torch.long)
    norms = gradient_norms(model.double(), X, y)
    assert norms.shape == (depth,) and np.all(norms >= 0) and np.all(np.isfinite(norms))
    np.testing.assert_allclose(norms, manual_norms(model, X, y), rtol=1e-9, atol=1e-300)
