"""companion.bayes against independent references: least squares, Gaussian conditioning,
torch.distributions, scikit-learn, closed forms and invariants."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from companion import bayes as B
from companion.exercises import check
from companion.seeds import stacked_mlp


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _regression(n=30, d=5, seed=0):
    rng = np.random.default_rng(seed)
    Phi = rng.normal(size=(n, d)) + rng.normal(size=(n, 1))
    return Phi, Phi @ rng.normal(size=d) + 0.2 * rng.normal(size=n)


# ---------------------------------------------------------------- Bayesian linear regression

def test_flat_prior_posterior_mean_is_least_squares_and_covariance_is_noise_times_inverse_gram():
    Phi, y = _regression()
    mean, cov = B.blr_posterior(Phi, y, prior_std=1e6, noise_std=0.3)
    lstsq = np.linalg.lstsq(Phi, y, rcond=None)[0]
    np.testing.assert_allclose(mean, lstsq, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(cov, 0.09 * np.linalg.inv(Phi.T @ Phi), rtol=1e-6, atol=1e-10)


def test_flat_prior_with_fewer_data_than_features_gives_the_minimum_norm_solution():
    Phi, y = _regression(n=6, d=9, seed=3)
    mean, _ = B.blr_posterior(Phi, y, prior_std=1e3, noise_std=0.3)
    np.testing.assert_allclose(mean, np.linalg.pinv(Phi) @ y, rtol=1e-5, atol=1e-6)


def test_posterior_equals_direct_gaussian_conditioning_of_the_joint():
    # joint of (w, y): w ~ N(0, a^2 I), y = Phi w + e; condition w on y with the Schur complement
    Phi, y = _regression(n=8, d=4, seed=1)
    a, s = 0.7, 0.4
    Sww = a**2 * np.eye(4)
    Swy = a**2 * Phi.T
    Syy = a**2 * Phi @ Phi.T + s**2 * np.eye(8)
    mean_direct = Swy @ np.linalg.solve(Syy, y)
    cov_direct = Sww - Swy @ np.linalg.solve(Syy, Swy.T)
    mean, cov = B.blr_posterior(Phi, y, a, s)
    np.testing.assert_allclose(mean, mean_direct, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(cov, cov_direct, rtol=1e-9, atol=1e-10)


def test_predictive_matches_samples_of_the_posterior_and_adds_the_noise():
    Phi, y = _regression(seed=2)
    mean, cov = B.blr_posterior(Phi, y, 1.0, 0.5)
    grid = np.random.default_rng(3).normal(size=(6, 5))
    m, v = B.blr_predictive(grid, mean, cov)
    w = np.random.default_rng(4).multivariate_normal(mean, cov, size=200_000)
    f = w @ grid.T
    np.testing.assert_allclose(m, f.mean(0), atol=0.01)
    np.testing.assert_allclose(v, f.var(0), rtol=0.02)
    _, v_noisy = B.blr_predictive(grid, mean, cov, noise_std=0.5)
    np.testing.assert_allclose(v_noisy, v + 0.25)


def test_predictive_variance_grows_away_from_the_data():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-2, -0.7, 20), rng.uniform(0.7, 2, 20)])
    y = np.sin(2 * x)
    mean, cov = B.blr_posterior(B.tanh_features(x), y, 1.0, 0.1)
    _, v = B.blr_predictive(B.tanh_features(np.array([0.0, 1.3])), mean, cov)
    assert v[0] > 10 * v[1]


def test_features_are_fixed_by_the_seed_and_end_in_a_constant():
    x = np.linspace(-1, 1, 5)
    a, b = B.tanh_features(x, 7, seed=3), B.tanh_features(x, 7, seed=3)
    assert a.shape == (5, 8) and np.array_equal(a, b) and np.all(a[:, -1] == 1)
    assert not np.array_equal(a, B.tanh_features(x, 7, seed=4))


def test_bad_inputs_are_named():
    Phi, y = _regression()
    with pytest.raises(ValueError, match="blr_posterior: expected prior_std to be a number > 0, got 0"):
        B.blr_posterior(Phi, y, 0, 1.0)
    with pytest.raises(ValueError, match="noise_std"):
        B.blr_posterior(Phi, y, 1.0, -1.0)
    with pytest.raises(ValueError, match="blr_posterior: expected Phi and y to have the same length, got 30 and 29"):
        B.blr_posterior(Phi, y[:-1], 1.0, 1.0)
    with pytest.raises(ValueError, match="BayesLinear: expected prior_std"):
        B.BayesLinear(3, 2, prior_std=-1.0)
    with pytest.raises(ValueError, match="gaussian_kl: expected prior_std"):
        B.gaussian_kl(torch.zeros(2), torch.ones(2), 0.0)
    with pytest.raises(ValueError, match="sum to 1"):
        B.expected_calibration_error(np.array([[0.5, 0.4]]), np.array([0]))
    with pytest.raises(ValueError, match="sum to 1"):
        B.entropy(np.array([[1.2, -0.2]]))
    with pytest.raises(ValueError, match="expected probs and labels to have the same length, got 2 and 3"):
        B.nll(np.full((2, 2), 0.5), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="labels in 0..1"):
        B.reliability(np.full((2, 2), 0.5), np.array([0, 2]))
    with pytest.raises(ValueError, match="at least one positive"):
        B.roc_auc(np.array([0.1, 0.2]), np.array([False, False]))
    with pytest.raises(ValueError, match="BayesLinear: expected x of shape"):
        B.BayesLinear(3, 2)(torch.zeros(4, 5))


# ---------------------------------------------------------------- Bayes by Backprop

def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64)
    sigma = torch.rand(4, 3, generator=g, dtype=torch.float64) + 0.1
    ours = B.gaussian_kl(mu, sigma, 0.7)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, sigma),
                                            torch.distributions.Normal(torch.zeros_like(mu), 0.7))
    torch.testing.assert_close(ours, ref)
    layer = B.BayesLinear(3, 2, n_seeds=2, prior_std=0.7, init_std=0.3)
    q_w = torch.distributions.Normal(layer.weight_mu, layer.weight_sigma)
    q_b = torch.distributions.Normal(layer.bias_mu, layer.bias_sigma)
    p = torch.distributions.Normal(0.0, 0.7)
    expected = (torch.distributions.kl_divergence(q_w, p).sum((1, 2))
                + torch.distributions.kl_divergence(q_b, p).sum((1, 2)))
    torch.testing.assert_close(layer.kl(), expected)


@pytest.mark.parametrize("local", [True, False])
def test_zero_weight_variance_is_a_deterministic_layer(local):
    layer = B.BayesLinear(4, 3, n_seeds=2, local=local, seed=1)
    with torch.no_grad():
        layer.weight_rho.fill_(-1e4)
        layer.bias_rho.fill_(-1e4)
        layer.bias_mu.normal_()
    x = torch.randn(5, 4)
    expected = x @ layer.weight_mu.detach() + layer.bias_mu.detach()
    samples = B.sample_predictions(layer, x, 20)
    torch.testing.assert_close(samples, expected.expand(20, -1, -1, -1), atol=1e-6, rtol=1e-6)
    assert samples.var(0).max() < 1e-10


@pytest.mark.parametrize("local", [True, False])
def test_sampled_outputs_have_the_moments_of_the_weight_distribution(local):
    torch.manual_seed(0)
    layer = B.BayesLinear(3, 2, n_seeds=1, init_std=0.5, local=local, seed=2)
    x = torch.tensor([[1.0, -2.0, 0.5]])
    out = B.sample_predictions(layer, x, 4_000)[:, 0, 0]  # (S, 2)
    mean = (x @ layer.weight_mu[0] + layer.bias_mu[0]).detach()[0]
    var = ((x**2) @ layer.weight_sigma[0] ** 2 + layer.bias_sigma[0] ** 2).detach()[0]
    torch.testing.assert_close(out.mean(0), mean, atol=4 * float(var.max().sqrt()) / 4_000**0.5, rtol=0)
    torch.testing.assert_close(out.var(0), var, rtol=0.1, atol=0)


def test_plain_reparameterization_shares_one_weight_sample_across_the_batch():
    layer = B.BayesLinear(1, 1, init_std=1.0, bias=False, local=False)
    out = layer(torch.tensor([[1.0], [2.0], [3.0]]))[0, :, 0]
    torch.testing.assert_close(out / torch.tensor([1.0, 2.0, 3.0]), out[:1].expand(3))


def test_bayes_mlp_local_switches_every_layer_and_plain_passes_are_whole_functions():
    net = B.BayesMLP([1, 6, 1], n_seeds=2, init_std=0.5, seed=3)
    x = torch.ones(5, 1)  # five copies of one input
    assert net.local
    assert B.sample_predictions(net, x, 3)[..., 0].std(-1).min() > 0  # local: a draw per row
    net.local = False
    assert not any(layer.local for layer in net.layers) and not net.local
    out = B.sample_predictions(net, x, 3)[..., 0]  # (3, 2, 5)
    torch.testing.assert_close(out, out[..., :1].expand_as(out))  # plain: one function per pass
    assert out.std(0).min() > 0


def test_gradient_reaches_the_variance_through_the_sample():
    layer = B.BayesLinear(2, 1, init_std=0.2, bias=False, local=False)
    layer(torch.ones(1, 2)).sum().backward()
    assert layer.weight_rho.grad.abs().sum() > 0


def test_bbb_on_linear_regression_finds_the_mean_field_optimum():
    # for a Gaussian posterior with precision A the best factorized q has the exact mean and 1 / A_ii
    Phi, y = _regression(n=40, d=3, seed=5)
    mean, cov = B.blr_posterior(Phi, y, 1.0, 0.5)
    layer = B.BayesLinear(3, 1, n_seeds=2, bias=False, prior_std=1.0, seed=0)
    x, t = torch.tensor(Phi, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    B.train_bbb(layer, x, t, epochs=800, lr=3e-2, noise_std=0.5)
    B.train_bbb(layer, x, t, epochs=800, lr=3e-3, noise_std=0.5)
    precision = np.linalg.inv(cov)
    np.testing.assert_allclose(layer.weight_mu.detach()[:, :, 0].numpy(), np.tile(mean, (2, 1)), atol=0.03)
    np.testing.assert_allclose(layer.weight_sigma.detach()[:, :, 0].numpy() ** 2,
                               np.tile(1 / np.diag(precision), (2, 1)), rtol=0.15)


def test_train_bbb_logs_the_two_parts_of_the_loss():
    layer = B.BayesMLP([2, 4, 3], n_seeds=3)
    x, y = torch.randn(10, 2), torch.randint(0, 3, (10,))
    h = B.train_bbb(layer, x, y, epochs=2, batch_size=4, loss="cross_entropy")
    np.testing.assert_allclose(h["loss"], h["nll"] + h["kl"], rtol=1e-5)
    assert h["loss"].shape == (2, 3)


def test_dropout_mlp_starts_as_stacked_mlp_and_mc_samples_differ():
    torch.manual_seed(0)
    net, ref = B.DropoutMLP([3, 8, 2], seeds=[0, 1], p=0.5), stacked_mlp([3, 8, 2], seeds=[0, 1])
    x = torch.randn(4, 3)
    net.eval()
    torch.testing.assert_close(net(x), ref(x))
    samples = B.sample_predictions(net, x, 5)
    assert samples.shape == (5, 2, 4, 2) and samples.var(0).max() > 0
    assert not net.training
    torch.testing.assert_close(B.sample_predictions(net, x, 5, seed=3), B.sample_predictions(net, x, 5, seed=3))


def test_shared_dropout_mask_makes_one_pass_one_function_with_the_same_mean():
    net = B.DropoutMLP([3, 16, 2], seeds=[0, 1], p=0.5, shared_mask=True)
    x = torch.randn(1, 3).expand(4, 3)  # four copies of one input
    out = B.sample_predictions(net, x, 2000, seed=1)  # (S, 2, 4, 2)
    torch.testing.assert_close(out, out[:, :, :1].expand_as(out))
    net.shared_mask = False
    per_row = B.sample_predictions(net, x, 2000, seed=1)
    assert (per_row[:, :, 0] - per_row[:, :, 1]).abs().max() > 0  # a mask per row
    net.eval()
    with torch.no_grad():
        expected = net(x)[:, 0]
    for samples in (out, per_row):  # the same marginal either way: inverted dropout's mean
        torch.testing.assert_close(samples[:, :, 0].mean(0), expected,
                                   atol=5 * float(samples[:, :, 0].std(0).max()) / 2000**0.5, rtol=0)


# ---------------------------------------------------------------- calibration and OOD

def test_ece_of_known_cases():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    # bins: (0.8, 0.9] holds two at 0.9 with accuracy 1/2; (0.6, 0.7] holds 0.7 correct; (0.5, 0.6] holds 0.6 correct
    expected = 2 / 4 * abs(0.5 - 0.9) + 1 / 4 * abs(1 - 0.7) + 1 / 4 * abs(1 - 0.6)
    assert B.expected_calibration_error(probs, labels) == pytest.approx(expected)
    conf, acc, counts = B.reliability(probs, labels)
    assert counts.tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 2, 0]
    assert np.isnan(conf[0]) and acc[8] == 0.5
    assert B.expected_calibration_error(np.eye(3), np.arange(3)) == 0.0
    assert B.expected_calibration_error(np.eye(3), np.array([1, 2, 0])) == 1.0


def test_a_perfectly_calibrated_predictor_has_ece_near_zero():
    rng = np.random.default_rng(0)
    n, c = 200_000, 4
    probs = rng.dirichlet(np.ones(c), size=n)
    labels = (rng.random(n)[:, None] > probs.cumsum(1)).sum(1)  # a label drawn from each row
    assert B.expected_calibration_error(probs, labels) < 0.005
    overconfident = probs**3 / (probs**3).sum(1, keepdims=True)
    assert B.expected_calibration_error(overconfident, labels) > 0.1


def test_nll_and_entropy_closed_forms():
    probs = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(B.entropy(probs), [np.log(4), 0.0], atol=1e-9)
    assert B.nll(probs, np.array([2, 0])) == pytest.approx(np.log(4) / 2)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=40), st.integers(0, 2**31))
def test_roc_auc_matches_sklearn_with_ties(scores, seed):
    labels = np.random.default_rng(seed).random(len(scores)) < 0.5
    if labels.all() or not labels.any():
        labels[0] = not labels[0]
    scores = np.array(scores, dtype=float)
    assert B.roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_roc_auc_extremes():
    assert B.roc_auc(np.array([0.0, 1.0]), np.array([False, True])) == 1.0
    assert B.roc_auc(np.array([0.0, 1.0]), np.array([True, False])) == 0.0
    assert B.roc_auc(np.ones(4), np.array([True, False, True, False])) == 0.5


# ---------------------------------------------------------------- the exercise checker

def _solution(Phi, y, prior_std, noise_std):
    A = Phi.T @ Phi / noise_std**2 + np.eye(Phi.shape[1]) / prior_std**2
    return np.linalg.solve(A, Phi.T @ y / noise_std**2), 1 / np.diag(A)


def test_checker_accepts_a_correct_solution_and_rejects_typical_bugs():
    assert check("ch13-mean-field", _solution, include_hidden=True).passed

    def covariance_diagonal(Phi, y, prior_std, noise_std):  # the marginal variance, not mean-field's
        mean, cov = B.blr_posterior(Phi, y, prior_std, noise_std)
        return mean, np.diag(cov)

    def unsquared(Phi, y, prior_std, noise_std):
        A = Phi.T @ Phi / noise_std + np.eye(Phi.shape[1]) / prior_std
        return np.linalg.solve(A, Phi.T @ y / noise_std), 1 / np.diag(A)

    def least_squares_mean(Phi, y, prior_std, noise_std):
        return np.linalg.lstsq(Phi, y, rcond=None)[0], _solution(Phi, y, prior_std, noise_std)[1]

    for wrong in (covariance_diagonal, unsquared, least_squares_mean):
        result = check("ch13-mean-field", wrong)
        assert not result.passed, wrong.__name__
        assert "1 / A_ii" in result.message
    # on orthonormal features mean-field is exact, so the first case cannot tell the diagonals apart
    assert check("ch13-mean-field", covariance_diagonal).results[0].passed
