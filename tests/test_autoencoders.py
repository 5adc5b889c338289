"""companion.autoencoders: shapes, the KL term against closed forms and torch.distributions, the
reparameterization gradient against autograd, training against a written-out reference (one model and
k seeds at once), errors; and chapter 4's checkers."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.autoencoders import VAE, Autoencoder, corrupt, gaussian_kl, reparameterize, train, vae_loss
from companion.exercises import check

torch.set_num_threads(1)


def batch(n=5, d=64, seed=0):
    return torch.rand((n, d), generator=torch.Generator().manual_seed(seed))


# -- shapes -------------------------------------------------------------------

@pytest.mark.parametrize("code_size", [1, 2, 8])
@pytest.mark.parametrize("hidden", [(), (16,), (32, 16)])
def test_autoencoder_shapes(code_size, hidden):
    ae = Autoencoder(n_inputs=20, code_size=code_size, hidden=hidden)
    x = batch(7, 20)
    code = ae.encode(x)
    assert code.shape == (7, code_size)
    out = ae.decode(code)
    assert out.shape == (7, 20)
    assert torch.equal(ae(x), out)
    assert torch.all((out > 0) & (out < 1))  # sigmoid output


def test_vae_shapes():
    vae = VAE(n_inputs=64, latent_size=3, hidden=(32,))
    x = batch(6)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (6, 3)
    x_hat, mu2, logvar2 = vae(x, generator=torch.Generator().manual_seed(0))
    assert x_hat.shape == (6, 64) and torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
    assert vae.decode(torch.zeros(4, 3)).shape == (4, 64)
    assert vae.sample(5, generator=torch.Generator().manual_seed(0)).shape == (5, 64)


def test_same_seed_same_weights_and_global_rng_untouched():
    state = torch.get_rng_state()
    a, b = Autoencoder(seed=3), Autoencoder(seed=3)
    VAE(seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = Autoencoder(seed=4)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_linear_autoencoder_is_affine():
    ae = Autoencoder(10, 3, hidden=(), activation="identity", output="identity", seed=1)
    x, y = batch(4, 10, seed=1), batch(4, 10, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(ae(0.3 * x + 0.7 * y), 0.3 * ae(x) + 0.7 * ae(y))


# -- clear errors ---------------------------------------------------------------

def test_wrong_width_raises_clear_errors():
    ae, vae = Autoencoder(64, 2), VAE(64, 2)
    with pytest.raises(ValueError, match=r"expected x of shape \(n, 64\), got \(3, 5\)"):
        ae.encode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"expected x of shape \(n, 64\), got \(3, 5\)"):
        ae(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"expected code of shape \(n, 2\), got \(4, 3\)"):
        ae.decode(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"expected x of shape \(n, 64\), got \(64,\)"):
        vae.encode(torch.zeros(64))
    with pytest.raises(ValueError, match=r"expected z of shape \(n, 2\), got \(4, 5\)"):
        vae.decode(torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"expected X of shape \(n, 64\), got \(10, 63\)"):
        train(ae, torch.zeros(10, 63), epochs=1)
    stacked = Autoencoder(64, 2, seeds=[0, 1])
    with pytest.raises(ValueError, match=r"\(n, 64\) or \(2, n, 64\), got \(3, 4, 64\)"):
        stacked.encode(torch.zeros(3, 4, 64))


def test_wrong_type_raises_clear_errors():
    import numpy as np

    ae = Autoencoder(64, 2)
    with pytest.raises(TypeError, match="expected x to be a torch.Tensor, got ndarray"):
        ae.encode(np.zeros((3, 64)))
    with pytest.raises(TypeError, match="floating-point"):
        ae.encode(torch.zeros(3, 64, dtype=torch.int64))
    with pytest.raises(TypeError, match="expected an Autoencoder or a VAE, got Linear"):
        train(torch.nn.Linear(64, 64), torch.zeros(3, 64), epochs=1)
    with pytest.raises(ValueError, match="every width"):
        Autoencoder(64, 0)
    with pytest.raises(ValueError, match="activation"):
        Autoencoder(64, 2, activation="swish")
    with pytest.raises(ValueError, match="same shape"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="distinct seeds"):
        VAE(seeds=[1, 1])


# -- the KL term ------------------------------------------------------------------

def test_kl_known_values():
    """KL(N(mu, s^2) || N(0, 1)) = (s^2 + mu^2 - 1 - log s^2) / 2, for hand-picked cases."""
    mu = torch.tensor([[0.0], [2.0], [0.0], [1.0]], dtype=torch.float64)
    var = torch.tensor([[1.0], [1.0], [4.0], [0.25]], dtype=torch.float64)
    expected = torch.tensor([0.0, 2.0, (4 - 1 - math.log(4)) / 2, (0.25 + 1 - 1 - math.log(0.25)) / 2],
                            dtype=torch.float64)
    torch.testing.assert_close(gaussian_kl(mu, var.log()), expected)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 5), k=st.integers(1, 6), seed=st.integers(0, 2**16), scale=st.floats(0.1, 3.0))
def test_kl_matches_torch_distributions(n, k, seed, scale):
    g = torch.Generator().manual_seed(seed)
    mu = scale * torch.randn((n, k), generator=g, dtype=torch.float64)
    logvar = scale * torch.randn((n, k), generator=g, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    reference = torch.distributions.kl_divergence(q, p).sum(dim=1)
    kl = gaussian_kl(mu, logvar)
    assert kl.shape == (n,)
    torch.testing.assert_close(kl, reference)
    assert torch.all(kl >= 0)


def test_kl_matches_monte_carlo():
    mu = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    logvar = torch.tensor([[-1.0, 0.7]], dtype=torch.float64)
    eps = torch.randn((400_000, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * eps
    log_q = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert abs(float((log_q - log_p).mean()) - float(gaussian_kl(mu, logvar)[0])) < 0.01


# -- reparameterization and the loss -------------------------------------------------

def test_reparameterize_gradients_match_autograd_and_formula():
    mu = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([[0.0, -2.0, 1.0]], dtype=torch.float64, requires_grad=True)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(7))
    z.sum().backward()
    eps = torch.randn((1, 3), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(z.detach(), mu.detach() + (0.5 * logvar.detach()).exp() * eps)
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(logvar.grad, 0.5 * (0.5 * logvar.detach()).exp() * eps)


def test_reparameterize_samples_have_the_right_moments():
    mu = torch.full((100_000, 1), 1.5)
    logvar = torch.full((100_000, 1), math.log(0.25))
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert abs(float(z.mean()) - 1.5) < 0.01 and abs(float(z.std()) - 0.5) < 0.01


def test_vae_loss_parts():
    g = torch.Generator().manual_seed(0)
    x = torch.rand((4, 6), generator=g, dtype=torch.float64)
    x_hat = torch.rand((4, 6), generator=g, dtype=torch.float64).clamp(0.05, 0.95)
    mu, logvar = torch.randn((4, 2), generator=g, dtype=torch.float64), torch.randn((4, 2), generator=g, dtype=torch.float64)
    parts = vae_loss(x, x_hat, mu, logvar, beta=2.0)
    bce = -(x * x_hat.log() + (1 - x) * (1 - x_hat).log()).sum(1).mean()
    torch.testing.assert_close(parts.reconstruction, bce)
    torch.testing.assert_close(parts.kl, gaussian_kl(mu, logvar).mean())
    torch.testing.assert_close(parts.total, bce + 2.0 * parts.kl)
    with pytest.raises(ValueError, match=r"same shape \(n, d\), got \(4, 6\) and \(4, 5\)"):
        vae_loss(x, x_hat[:, :5], mu, logvar)


def test_corrupt():
    x = torch.full((200, 50), 0.5)
    masked = corrupt(x, drop=0.3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, torch.full((200, 50), 0.5))  # input untouched
    assert abs(float((masked == 0).float().mean()) - 0.3) < 0.02
    noisy = corrupt(x, noise_std=2.0, generator=torch.Generator().manual_seed(0))
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert torch.equal(corrupt(x), x)
    with pytest.raises(ValueError, match=r"drop to be a number in \[0, 1\), got 1.5"):
        corrupt(x, drop=1.5)


# -- training ----------------------------------------------------------------------

def tiny_digits(n=16):
    from companion.data import digits

    return digits()[0][:n]


def test_autoencoder_loss_decreases_on_a_tiny_batch():
    X = tiny_digits()
    ae = Autoencoder(64, 4, hidden=(32,), seed=0)
    with torch.no_grad():
        before = float(torch.nn.functional.mse_loss(ae(X), X))
    history = train(ae, X, epochs=60, batch_size=16, lr=1e-2)
    assert history["loss"].shape == (60,) and history.step == list(range(1, 61))
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    with torch.no_grad():
        assert float(torch.nn.functional.mse_loss(ae(X), X)) < 0.3 * before


def test_vae_loss_decreases_on_a_tiny_batch():
    X = tiny_digits()
    vae = VAE(64, 2, hidden=(32,), seed=0)
    history = train(vae, X, epochs=60, batch_size=16, lr=1e-2)
    assert set(history.metrics) == {"loss", "reconstruction", "kl"}
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    assert np.all(history["kl"] >= 0)
    np.testing.assert_allclose(history["loss"], history["reconstruction"] + history["kl"], rtol=1e-5)


def _reference_training(model, X, epochs, batch_size, lr, seed, drop=0.0, noise_std=0.0, beta=1.0):
    """The same training written out with torch.optim.Adam: shuffle, corrupt or sample, step."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=g).split(batch_size):
            x = X[idx]
            if isinstance(model, VAE):
                mu, logvar = model.encode(x)
                z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
                x_hat = model.decode(z)
                bce = -(x * x_hat.log() + (1 - x) * (1 - x_hat).log()).sum(1).mean()
                loss = bce + beta * (0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(1)).mean()
            else:
                inputs = x
                if drop:
                    inputs = inputs * (torch.rand(x.shape, generator=g) >= drop)
                if noise_std:
                    inputs = inputs + noise_std * torch.randn(x.shape, generator=g)
                loss = ((model(inputs.clamp(0, 1)) - x) ** 2).mean()  # the clean x is the target
            opt.zero_grad()
            loss.backward()
            opt.step()


@pytest.mark.parametrize("kind, options", [
    ("ae", {}), ("ae", {"drop": 0.3}), ("ae", {"drop": 0.3, "noise_std": 0.2}), ("vae", {"beta": 2.0}),
])
def test_training_matches_a_written_out_reference(kind, options):
    """A denoising autoencoder that never corrupted its input (or a VAE without its beta) fails here."""
    X = tiny_digits(24)
    make = (lambda: Autoencoder(64, 3, hidden=(16,), seed=2)) if kind == "ae" else (
        lambda: VAE(64, 2, hidden=(16,), seed=2))
    ours, theirs = make(), make()
    train(ours, X, epochs=2, batch_size=10, lr=1e-2, seed=7, **options)
    _reference_training(theirs, X, epochs=2, batch_size=10, lr=1e-2, seed=7, **options)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_denoising_changes_what_is_learned():
    X = tiny_digits(32)
    plain, noisy = Autoencoder(64, 4, hidden=(16,), seed=0), Autoencoder(64, 4, hidden=(16,), seed=0)
    train(plain, X, epochs=3, batch_size=8, seed=5)
    train(noisy, X, epochs=3, batch_size=8, seed=5, drop=0.5)
    assert not torch.equal(plain.encoder[0].weight, noisy.encoder[0].weight)


@pytest.mark.parametrize("kind, options", [("ae", {}), ("ae", {"drop": 0.3, "noise_std": 0.1}), ("vae", {})])
def test_stacked_seeds_train_exactly_as_alone(kind, options):
    X = tiny_digits(30)
    seeds = [3, 8]
    cls = Autoencoder if kind == "ae" else VAE
    stacked = cls(64, 2, hidden=(16,), seeds=seeds)
    h = train(stacked, X, epochs=2, batch_size=12, lr=1e-2, **options)
    assert h["loss"].shape == (2, 2)
    for i, s in enumerate(seeds):
        alone = cls(64, 2, hidden=(16,), seed=s)
        h1 = train(alone, X, epochs=2, batch_size=12, lr=1e-2, seed=s, **options)
        np.testing.assert_allclose(h["loss"][:, i], h1["loss"], rtol=1e-4)
        with torch.no_grad():
            out = stacked.encode(X)[i] if kind == "ae" else stacked.encode(X)[0][i]
            ref = alone.encode(X) if kind == "ae" else alone.encode(X)[0]
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_stacked_models_start_from_the_single_models_weights():
    stacked, single = Autoencoder(64, 2, seeds=[4, 5]), Autoencoder(64, 2, seed=5)
    x = tiny_digits(6)
    with torch.no_grad():
        torch.testing.assert_close(stacked(x)[1], single(x))
    assert VAE(64, 2, seeds=[0, 1]).sample(3, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 64)


def test_training_is_seeded():
    X = tiny_digits()
    runs = [train(Autoencoder(64, 4, hidden=(16,), seed=0), X, epochs=4, batch_size=8, drop=0.3, noise_std=0.1,
                  seed=5) for _ in range(2)]
    np.testing.assert_array_equal(runs[0]["loss"], runs[1]["loss"])


# -- chapter 4's exercise checkers ------------------------------------------------

def kl_diagonal(mu_q, logvar_q, mu_p, logvar_p):
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1).sum(dim=1)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 4), k=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_kl_diagonal_reference_matches_torch_distributions(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    mu_q, lv_q, mu_p, lv_p = (torch.randn((n, k), generator=g, dtype=torch.float64) for _ in range(4))
    q = torch.distributions.Normal(mu_q, (0.5 * lv_q).exp())
    p = torch.distributions.Normal(mu_p, (0.5 * lv_p).exp())
    torch.testing.assert_close(kl_diagonal(mu_q, lv_q, mu_p, lv_p), torch.distributions.kl_divergence(q, p).sum(1))


def test_kl_checker_accepts_a_correct_solution_with_drawn_hidden_cases():
    assert check("ch04-kl-diagonal", kl_diagonal, include_hidden=True).passed


@pytest.mark.parametrize("wrong, words", [
    (lambda mq, lq, mp, lp: kl_diagonal(mp, lp, mq, lq), "swap q and p"),  # KL(p || q)
    (lambda mq, lq, mp, lp: 0.5 * (lq.exp() + mq**2 - 1 - lq).sum(1), "KL(q || q) = 0"),  # ignores p
    (lambda mq, lq, mp, lp: 2 * kl_diagonal(mq, lq, mp, lp), "constant factor"),  # forgot the 1/2
    (lambda mq, lq, mp, lp: kl_diagonal(mq, lq, mp, lp)[:, None], "wrong shape"),
    (lambda mq, lq, mp, lp: kl_diagonal(mq.float(), lq.float(), mp.float(), lp.float()), "dtype float32"),
    (lambda mq, lq, mp, lp: -kl_diagonal(mq, lq, mp, lp), "sign is flipped"),
])
def test_kl_checker_names_the_bug(wrong, words):
    result = check("ch04-kl-diagonal", wrong)
    assert not result.passed and words in result.message, result.message


def test_pca_checker_accepts_the_reference_and_explains_a_wrong_answer():
    def pca_reconstruct(X_train, X, k):
        m = X_train.mean(0)
        V = torch.linalg.svd(X_train - m, full_matrices=False)[2][:k].T
        return (X - m) @ V @ V.T + m

    assert check("ch04-pca-reconstruct", pca_reconstruct, include_hidden=True).passed

    def uncentred(X_train, X, k):
        V = torch.linalg.svd(X_train, full_matrices=False)[2][:k].T
        return X @ V @ V.T

    result = check("ch04-pca-reconstruct", uncentred)
    assert not result.passed and "centre with the training mean" in result.message
