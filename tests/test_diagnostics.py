"""companion.diagnostics: deep MLPs on the floor's mlp, per-layer gradient norms and
activation statistics (one seed and many at once), the gradient recorder, and chapter 3's checkers."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from companion.diagnostics import (
    ACTIVATIONS, GradientRecorder, Residual, activation_stats, deep_mlp, deep_mlps, gradient_norms,
    linear_layers, scale_weights_, stack_seeds,
)
from companion.exercises import check
from companion.training import clip_gradients, fit, mlp

torch.set_num_threads(1)


def batch(n=32, d=64, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def manual_norms(model, X, y):
    """The same quantity, computed the long way: backward() and read each Linear's .grad."""
    model.zero_grad()
    F.cross_entropy(model(X), y).backward()
    return np.array([m.weight.grad.norm().item() for m in model.modules() if isinstance(m, nn.Linear)])


# -- the builder --------------------------------------------------------------------

def test_plain_deep_mlp_is_the_floors_mlp():
    for activation, init in [("sigmoid", "torch"), ("tanh", "xavier"), ("relu", "he")]:
        a = deep_mlp(5, width=16, activation=activation, init=init, seed=3)
        b = mlp([64, 16, 16, 16, 16, 10], activation, init, seed=3)
        assert [type(m) for m in a] == [type(m) for m in b]
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_deep_mlp_layout():
    for depth in [1, 2, 3, 7]:
        model = deep_mlp(depth, width=12, n_inputs=5, n_outputs=3)
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


def test_residual_and_norm_nets_draw_the_same_first_layer_as_mlp():
    plain, residual = deep_mlp(6, seed=4), deep_mlp(6, residual=True, norm="layer", seed=4)
    torch.testing.assert_close(plain[0].weight, residual[0].weight)


def test_gain_scales_weights_not_biases():
    base, big = deep_mlp(4, seed=1), deep_mlp(4, gain=2.5, seed=1)
    for a, b in zip(linear_layers(base), linear_layers(big)):
        torch.testing.assert_close(b.weight, 2.5 * a.weight)
        torch.testing.assert_close(b.bias, a.bias)
    with pytest.raises(ValueError, match="gain"):
        scale_weights_(base, 0.0)


@pytest.mark.parametrize("init, variance", [
    ("torch", lambda fi, fo: 1 / (3 * fi)),
    ("xavier", lambda fi, fo: 2 / (fi + fo)),
    ("he", lambda fi, fo: 2 / fi),
])
def test_init_variances(init, variance):
    fan_in, fan_out = 400, 100
    w = deep_mlp(2, width=fan_out, n_inputs=fan_in, init=init)[0].weight
    assert w.var().item() == pytest.approx(variance(fan_in, fan_out), rel=0.03)


@pytest.mark.parametrize("kwargs, words", [
    ({"depth": 0}, ["depth", "> 0", "0"]),
    ({"depth": 2.5}, ["depth", "int"]),
    ({"depth": 3, "width": 0}, ["width"]),
    ({"depth": 3, "activation": "swish"}, ["activation", "'swish'", "sigmoid", "tanh", "relu"]),
    ({"depth": 3, "init": "kaiming"}, ["init", "'kaiming'", "xavier", "he"]),
    ({"depth": 3, "norm": "group"}, ["norm", "'group'", "batch", "layer"]),
    ({"depth": 3, "gain": 0}, ["gain"]),
])
def test_bad_arguments_name_what_is_accepted(kwargs, words):
    with pytest.raises((ValueError, TypeError)) as info:
        deep_mlp(**kwargs)
    for word in words:
        assert word in str(info.value)


# -- gradient norms -----------------------------------------------------------------

@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("options", [{}, {"residual": True}, {"norm": "layer"}, {"norm": "batch", "residual": True}])
def test_gradient_norms_match_manual_autograd(activation, options):
    model = deep_mlp(6, width=16, activation=activation, init="xavier", seed=1, **options).double()
    X, y = batch()
    norms = gradient_norms(model, X.double(), y)
    assert norms.shape == (6,) and norms.dtype == np.float64
    np.testing.assert_allclose(norms, manual_norms(model, X.double(), y), rtol=1e-10)


def test_gradient_norms_on_a_hand_built_stack_are_ordered_input_to_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Sequential(nn.Linear(7, 4), nn.ReLU()), nn.Linear(4, 3))
    X, y = torch.randn(9, 5), torch.tensor([0, 1, 2] * 3)
    norms = gradient_norms(model, X, y)
    np.testing.assert_allclose(norms, manual_norms(model, X, y), rtol=1e-5)
    np.testing.assert_allclose(norms[0], model[0].weight.grad.norm().item(), rtol=1e-5)  # input side first


def test_gradient_norms_leave_grads_alone_and_take_a_loss():
    model = deep_mlp(3, width=8, n_inputs=4, n_outputs=2)
    X, y = torch.randn(6, 4), torch.tensor([0, 1] * 3)
    gradient_norms(model, X, y)
    assert all(p.grad is None for p in model.parameters())

    def mse(out, target):
        return ((out - F.one_hot(target, 2).float()) ** 2).mean()

    mse(model(X), y).backward()
    expected = np.array([layer.weight.grad.norm().item() for layer in linear_layers(model)])
    np.testing.assert_allclose(gradient_norms(model, X, y, loss_fn=mse), expected, rtol=1e-6)


def test_tiny_gradients_do_not_underflow():
    """Layer 1 of a 30-layer sigmoid net gets ~1e-24: its squares underflow float32, so norms are taken in float64."""
    X, y = batch(64)
    model = deep_mlp(30)
    norms = gradient_norms(model, X, y)
    exact = gradient_norms(model.double(), X.double(), y)
    assert 0 < norms[0] < 1e-20
    np.testing.assert_allclose(norms, exact, rtol=1e-3)


def test_sigmoid_ratio_follows_the_predicted_factor():
    """PyTorch's default init: the gradient shrinks by about 1/(4 sqrt 3) per layer (chapter 3)."""
    X, y = batch(256)
    norms = gradient_norms(deep_mlp(20), X, y)
    factor = (norms[0] / norms[-1]) ** (1 / 19)
    assert factor == pytest.approx(1 / (4 * math.sqrt(3)), rel=0.1)


@pytest.mark.parametrize("options", [{"activation": "relu", "init": "he"}, {"residual": True}])
def test_the_fixes_keep_the_ratio_near_one(options):
    X, y = batch(256)
    norms = gradient_norms(deep_mlp(20, **options), X, y)
    assert 0.1 < norms[0] / norms[-1] < 10


def test_relu_homogeneity_keeps_the_profile_shape():
    X, y = batch(128)
    a = gradient_norms(deep_mlp(10, activation="relu", init="he", gain=1.5), X, y)
    b = gradient_norms(deep_mlp(10, activation="relu", init="he", gain=3.0), X, y)
    np.testing.assert_allclose(a / a[-1], b / b[-1], rtol=1e-3)


@pytest.mark.parametrize("X, y, match", [
    (torch.randn(5, 3), torch.zeros(5, dtype=torch.long), r"x of shape \(n, 64\), got \(5, 3\)"),
    (np.zeros((5, 64)), torch.zeros(5, dtype=torch.long), "torch.Tensor, got ndarray"),
    (torch.randn(0, 64), torch.zeros(0, dtype=torch.long), "non-empty"),
    (torch.randn(5, 64), torch.zeros(4, dtype=torch.long), r"y of shape \(5,\), got \(4,\)"),
    (torch.randn(5, 64), torch.zeros(5), "int64"),
])
def test_bad_batches_are_clear_errors(X, y, match):
    with pytest.raises((ValueError, TypeError), match=match):
        gradient_norms(deep_mlp(3), X, y)


def test_a_model_without_linear_layers_is_a_clear_error():
    with pytest.raises(ValueError, match=r"nn\.Linear.*Conv1d"):
        gradient_norms(nn.Sequential(nn.Conv1d(1, 2, 3)), torch.randn(4, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="nn.Module"):
        linear_layers([nn.Linear(2, 2)])


# -- many seeds at once --------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"residual": True}, {"norm": "batch"}, {"norm": "layer", "residual": True}])
def test_stacked_seeds_compute_exactly_what_each_seed_does_alone(options):
    X, y = batch(40)
    seeds = [2, 5, 9]
    stacked = deep_mlps(6, seeds, width=16, activation="tanh", init="xavier", **options)
    alone = [deep_mlp(6, width=16, activation="tanh", init="xavier", seed=s, **options) for s in seeds]
    out = stacked(X)
    assert out.shape == (3, 40, 10)
    for i, net in enumerate(alone):
        torch.testing.assert_close(out[i], net(X), rtol=1e-5, atol=1e-6)
    norms = gradient_norms(stacked, X, y)
    assert norms.shape == (3, 6)
    np.testing.assert_allclose(norms, [gradient_norms(net, X, y) for net in alone], rtol=1e-4)


def test_stacked_seeds_train_with_fit_exactly_as_alone():
    X, y = batch(60)
    stacked = deep_mlps(4, [0, 1], width=8, activation="relu", init="he", norm="batch")
    h = fit(stacked, X, y, epochs=2, batch_size=20, lr=0.05, optimizer="sgd")
    for i in range(2):
        net = deep_mlp(4, width=8, activation="relu", init="he", norm="batch", seed=i)
        h1 = fit(net, X, y, epochs=2, batch_size=20, lr=0.05, optimizer="sgd", seed=i)
        np.testing.assert_allclose(h["loss"][:, i], h1["loss"], rtol=1e-4)


def test_stack_seeds_checks_its_arguments():
    with pytest.raises(ValueError, match="one seed per network"):
        stack_seeds([deep_mlp(2)], [0, 1])
    with pytest.raises(ValueError, match="distinct"):
        deep_mlps(3, [1, 1])


# -- what flows forward --------------------------------------------------------------

def test_activation_stats_against_a_hand_computation():
    X, _ = batch(50, d=6)
    model = deep_mlp(3, width=5, n_inputs=6, n_outputs=2, activation="sigmoid", gain=8.0, seed=0)
    stats = activation_stats(model, X)
    z1 = model[0](X)
    a1 = torch.sigmoid(z1)
    z2 = model[2](a1)
    a2 = torch.sigmoid(z2)
    expected_sat = [float((a * (1 - a) < 0.025).double().mean()) for a in (a1, a2)]
    assert stats["pre_std"].shape == (2,)
    np.testing.assert_allclose(stats["pre_std"], [z1.std().item(), z2.std().item()], rtol=1e-5)
    np.testing.assert_allclose(stats["mean"], [a1.mean().item(), a2.mean().item()], rtol=1e-5)
    np.testing.assert_allclose(stats["saturated"], expected_sat)
    assert 0 < stats["saturated"].max() < 1


def test_relu_with_he_keeps_the_forward_spread_and_zeroes_half():
    X, _ = batch(512)
    stats = activation_stats(deep_mlp(15, width=256, activation="relu", init="he"), X)
    assert stats["saturated"] == pytest.approx(np.full(14, 0.5), abs=0.06)
    assert 0.5 < stats["pre_std"][-1] / stats["pre_std"][1] < 2  # xavier: about 2**-6.5


def test_activation_stats_per_seed_and_restores_training_mode():
    X, _ = batch(30)
    stacked = deep_mlps(5, [0, 3], norm="batch", activation="tanh")
    stacked.train()
    stats = activation_stats(stacked, X)
    assert stats["std"].shape == (2, 4) and stacked.training
    single = deep_mlp(5, norm="batch", activation="tanh", seed=3)
    np.testing.assert_allclose(stats["std"][1], activation_stats(single, X)["std"], rtol=1e-4)


# -- recording during training --------------------------------------------------------

def test_recorder_sees_the_gradient_before_clipping():
    X, y = batch(64)
    recorder = GradientRecorder()
    model = deep_mlp(4, activation="relu", init="he", gain=2.0)
    first = gradient_norms(model, X, y)
    fit(model, X, y, epochs=2, batch_size=64, lr=0.01, optimizer="sgd", clip=1e-3, on_backward=recorder)
    assert recorder.norms.shape == (2, 4) and recorder.total.shape == (2,)
    np.testing.assert_allclose(recorder.norms[0], first, rtol=1e-5)  # step 1: full batch, raw gradient
    assert recorder.total[0] > 1.0 > 1e-3  # far above the threshold it was clipped to


def test_clipping_rescales_only_long_gradients():
    """A clip that always rescales would shrink this short gradient: it must be left alone."""
    model = deep_mlp(2, width=3, n_inputs=2, n_outputs=2)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.01)
    before = [p.grad.clone() for p in model.parameters()]
    norm = clip_gradients(model, 5.0)
    assert norm < 5.0
    for p, b in zip(model.parameters(), before):
        torch.testing.assert_close(p.grad, b)
    clip_gradients(model, norm / 2)
    for p, b in zip(model.parameters(), before):
        torch.testing.assert_close(p.grad, b / 2)


def test_recorder_per_seed_shapes_and_its_error():
    X, y = batch(40)
    recorder = GradientRecorder()
    fit(deep_mlps(3, [0, 1, 2]), X, y, epochs=1, batch_size=20, lr=0.01, optimizer="sgd", on_backward=recorder)
    assert recorder.norms.shape == (2, 3, 3) and recorder.total.shape == (2, 3)
    with pytest.raises(ValueError, match="backward"):
        GradientRecorder()(deep_mlp(2), 1)


@settings(max_examples=25, deadline=None)
@given(depth=st.integers(1, 8), width=st.integers(1, 9), activation=st.sampled_from(sorted(ACTIVATIONS)),
       init=st.sampled_from(["torch", "xavier", "he", "lecun"]), residual=st.booleans(), n=st.integers(1, 5))
def test_one_norm_per_linear_layer_for_any_shape(depth, width, activation, init, residual, n):
    model = deep_mlp(depth, width=width, activation=activation, init=init, residual=residual, n_inputs=3,
                     n_outputs=2).double()
    X, y = torch.randn(n, 3, dtype=torch.float64), torch.zeros(n, dtype=torch.long)
    norms = gradient_norms(model, X, y)
    assert norms.shape == (depth,) and np.all(np.isfinite(norms))
    np.testing.assert_allclose(norms, manual_norms(model, X, y), rtol=1e-9, atol=1e-300)


# -- chapter 3's checkers --------------------------------------------------------------

def _init_std(fan_in, fan_out, activation, negative_slope=0.0, mode="fan_in"):
    a = {"linear": 1.0, "relu": 0.0, "leaky_relu": negative_slope}[activation]
    return math.sqrt(2.0 / ((1 + a * a) * (fan_in if mode == "fan_in" else fan_out)))


def test_init_std_checker_accepts_a_correct_solution_with_drawn_hidden_cases():
    assert check("ch03-init-std", _init_std, include_hidden=True).passed


@pytest.mark.parametrize("wrong, words", [
    (lambda fi, fo, act, a=0.0, mode="fan_in": _init_std(fi, fo, act, a, mode) ** 2, "not the variance"),
    (lambda fi, fo, act, a=0.0, mode="fan_in": math.sqrt(2 / fi) if act != "linear" else math.sqrt(1 / fi),
     "slope**2"),  # ignores the leaky slope
    (lambda fi, fo, act, a=0.0, mode="fan_in": _init_std(fi, fo, act, a, "fan_in"), "fan_out"),
])
def test_init_std_checker_names_the_bug(wrong, words):
    result = check("ch03-init-std", wrong)
    assert not result.passed and words in result.message


@pytest.mark.parametrize("wrong, words", [
    (lambda *args, **kwargs: _init_std(*args, **kwargs) / 2, "constant factor of 0.5"),
    (lambda *args, **kwargs: -_init_std(*args, **kwargs), "sign is flipped"),
])
def test_init_std_checker_diagnoses_factor_and_sign(wrong, words):
    result = check("ch03-init-std", wrong)
    assert not result.passed and "ReLU, fan-in 64" in result.message and words in result.message


def test_grad_norm_checker():
    assert check("ch03-layer-grad-norms", gradient_norms, include_hidden=True).passed

    def reversed_norms(model, X, y):
        return gradient_norms(model, X, y)[::-1].copy()

    result = check("ch03-layer-grad-norms", reversed_norms)
    assert not result.passed and "input layer to the output layer" in result.message


def test_clip_checker_fails_a_clip_that_always_rescales():
    def always(grads, max_norm):
        total = torch.sqrt(sum((g**2).sum() for g in grads))
        return [g * max_norm / total for g in grads]

    def correct(grads, max_norm):
        total = torch.sqrt(sum((g**2).sum() for g in grads)).item()
        return [g * (min(1.0, max_norm / total) if total > 0 else 1.0) for g in grads]

    assert check("ch03-clip-global-norm", correct, include_hidden=True).passed
    result = check("ch03-clip-global-norm", always)
    assert not result.passed and "only rescale when the global norm is above" in result.message
