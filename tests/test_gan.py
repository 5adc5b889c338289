"""Tests of companion.gan and the ring data against independent references:
closed forms, torch.autograd, torch's own BCE, invariants."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.data import ring_centers, ring_of_gaussians
from companion.exercises import check
from companion.gan import (
    MinibatchStd,
    Pack,
    discriminator_loss,
    generator_loss,
    make_discriminator,
    make_generator,
    mode_coverage,
    train_gan,
    train_step,
    unstack,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---- the ring of Gaussians -------------------------------------------------------------------


def test_ring_centers_closed_form():
    c = ring_centers(8, 2.0)
    assert c.shape == (8, 2)
    np.testing.assert_allclose(c.norm(dim=1).numpy(), 2.0, rtol=1e-6)
    np.testing.assert_allclose(c[2].numpy(), [0.0, 2.0], atol=1e-6)  # angle 2*pi*2/8 = pi/2
    angles = torch.atan2(c[:, 1], c[:, 0]).numpy() % (2 * np.pi)
    np.testing.assert_allclose(angles, 2 * np.pi * np.arange(8) / 8, atol=1e-6)


def test_ring_of_gaussians_statistics_and_determinism():
    x = ring_of_gaussians(20_000, generator=_gen(1))
    assert x.shape == (20_000, 2) and x.dtype == torch.float32
    nearest = torch.cdist(x, ring_centers()).min(dim=1)
    residual = x - ring_centers()[nearest.indices]
    assert abs(residual.std().item() - 0.02) < 0.001  # each mode's spread is std
    counts = torch.bincount(nearest.indices, minlength=8).double() / 20_000
    assert torch.all((counts - 1 / 8).abs() < 0.01)  # modes equally likely (0.01 is 4 binomial std)
    torch.testing.assert_close(ring_of_gaussians(50, generator=_gen(3)), ring_of_gaussians(50, generator=_gen(3)))


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=2.5), dict(n=10, std=-1.0), dict(n=10, n_modes=0)])
def test_ring_of_gaussians_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="expected"):
        ring_of_gaussians(**kwargs)


# ---- mode_coverage ---------------------------------------------------------------------------


def test_mode_coverage_on_the_true_ring_finds_all_modes():
    cov = mode_coverage(ring_of_gaussians(2500, generator=_gen(0)), ring_centers(), std=0.02)
    assert cov.modes == 8 and cov.n_modes == 8
    assert cov.high_quality > 0.97


def test_mode_coverage_high_quality_fraction_matches_the_rayleigh_closed_form():
    # in 2-D the distance to the centre is Rayleigh: P(r <= 3 std) = 1 - exp(-9/2)
    cov = mode_coverage(ring_of_gaussians(100_000, generator=_gen(2)), ring_centers(), std=0.02)
    assert abs(cov.high_quality - (1 - math.exp(-4.5))) < 0.002


def test_mode_coverage_on_one_mode_finds_one():
    one = ring_centers()[3] + 0.02 * torch.randn(2500, 2, generator=_gen(0))
    cov = mode_coverage(one, ring_centers(), std=0.02)
    assert cov.modes == 1
    assert cov.counts.argmax().item() == 3 and cov.counts.sum().item() == int(round(cov.high_quality * 2500))


def test_mode_coverage_counts_rule_exactly():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    # 3 at mode 0 (inside), 1 at mode 1 (inside), 1 just outside mode 2, 5 far away
    samples = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, -0.29], [10.0, 0.2], [0.0, 10.31]] + [[5.0, 5.0]] * 5)
    cov = mode_coverage(samples, centers, std=0.1, min_fraction=0.1)
    assert cov.counts.tolist() == [3, 1, 0]
    assert cov.modes == 2 and cov.high_quality == pytest.approx(0.4)
    assert mode_coverage(samples, centers, std=0.1, min_fraction=0.2).modes == 1  # 1 of 10 is < 20%


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.1, 10.0))
def test_mode_coverage_is_invariant_to_rotating_and_scaling_everything(seed, scale):
    g = _gen(seed)
    samples, centers = torch.randn(300, 2, generator=g), torch.randn(5, 2, generator=g)
    angle = torch.rand(1, generator=g).item() * 2 * math.pi
    R = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    a = mode_coverage(samples, centers, std=0.3)
    b = mode_coverage(scale * samples @ R.T, scale * centers @ R.T, std=0.3 * scale)
    # equal up to samples sitting on a boundary within float rounding
    assert (a.counts - b.counts).abs().sum().item() <= 2
    assert abs(a.high_quality - b.high_quality) <= 2 / 300


@pytest.mark.parametrize(
    "samples, centers, std, message",
    [
        (torch.zeros(3, 5), torch.zeros(8, 2), 0.1, r"centers of shape \(n, 5\), got \(8, 2\)"),
        (torch.zeros(5), torch.zeros(8, 2), 0.1, r"samples of shape \(n, d\), got \(5,\)"),
        (torch.zeros(5, 2), torch.zeros(8, 2), 0.0, "positive finite std"),
    ],
)
def test_mode_coverage_rejects_bad_input(samples, centers, std, message):
    with pytest.raises(ValueError, match=message):
        mode_coverage(samples, centers, std)
    with pytest.raises(TypeError, match="torch.Tensor, got ndarray"):
        mode_coverage(np.zeros((3, 2)), centers, 0.1)


# ---- the losses ------------------------------------------------------------------------------


def test_discriminator_loss_is_binary_cross_entropy():
    g = _gen(4)
    real, fake = 3 * torch.randn(7, generator=g), 3 * torch.randn(5, generator=g)
    expected = F.binary_cross_entropy(torch.sigmoid(real), torch.ones(7)) + F.binary_cross_entropy(
        torch.sigmoid(fake), torch.zeros(5)
    )
    torch.testing.assert_close(discriminator_loss(real, fake), expected)


def test_generator_losses_closed_forms_and_gradients():
    logits = torch.linspace(-8, 8, 33, dtype=torch.float64, requires_grad=True)
    d = torch.sigmoid(logits.detach())
    sat = generator_loss(logits, "saturating")
    torch.testing.assert_close(sat, torch.log(1 - d).mean())
    (g_sat,) = torch.autograd.grad(sat, logits)
    nonsat = generator_loss(logits, "non-saturating")
    torch.testing.assert_close(nonsat, -torch.log(d).mean())
    (g_non,) = torch.autograd.grad(nonsat, logits)
    n = logits.numel()
    torch.testing.assert_close(g_sat, -d / n)  # vanishes as D(G(z)) -> 0
    torch.testing.assert_close(g_non, -(1 - d) / n)  # tends to -1/n as D(G(z)) -> 0
    # both push the logit the same way, and their ratio is the odds D / (1 - D)
    assert torch.all(g_sat < 0) and torch.all(g_non < 0)


def test_losses_stay_finite_for_extreme_logits():
    logits = torch.tensor([-1e4, 1e4], requires_grad=True)
    for value in [discriminator_loss(logits, logits), generator_loss(logits, "saturating"), generator_loss(logits)]:
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.isfinite(value) and torch.all(torch.isfinite(grad))


def test_losses_reject_bad_input():
    with pytest.raises(ValueError, match=r"fake_logits of shape \(n,\) or \(k, n\), got \(4, 1, 1\)"):
        generator_loss(torch.zeros(4, 1, 1))
    with pytest.raises(ValueError, match="expected kind to be one of"):
        generator_loss(torch.zeros(4), "wasserstein")
    with pytest.raises(ValueError, match=r"real_logits of shape \(n,\) or \(k, n\), got \(2, 2, 2\)"):
        discriminator_loss(torch.zeros(2, 2, 2), torch.zeros(2))
    with pytest.raises(TypeError, match="floating-point tensor"):
        generator_loss(torch.zeros(4, dtype=torch.long))


def test_losses_per_seed_are_the_rows_losses():
    g = _gen(5)
    real, fake = 3 * torch.randn(3, 7, generator=g), 3 * torch.randn(3, 5, generator=g)
    per_seed = discriminator_loss(real, fake)
    assert per_seed.shape == (3,)
    for i in range(3):
        torch.testing.assert_close(per_seed[i], discriminator_loss(real[i], fake[i]))
        for kind in ("saturating", "non-saturating"):
            torch.testing.assert_close(generator_loss(fake, kind)[i], generator_loss(fake[i], kind))


# ---- the networks ----------------------------------------------------------------------------


def test_builders_shapes_and_seeds():
    G = make_generator(3, 2, hidden=16, seed=5)
    D = make_discriminator(2, hidden=16, seed=5)
    assert G(torch.zeros(10, 3)).shape == (10, 2)
    assert D(torch.zeros(10, 2)).shape == (10,)
    same = make_generator(3, 2, hidden=16, seed=5)
    for a, b in zip(G.parameters(), same.parameters()):
        torch.testing.assert_close(a, b)
    other = make_generator(3, 2, hidden=16, seed=6)
    assert not torch.equal(next(G.parameters()), next(other.parameters()))
    Dm = make_discriminator(2, hidden=16, minibatch_std=True)
    assert Dm(torch.zeros(10, 2)).shape == (10,)
    torch.manual_seed(0)
    make_generator(2, 2)
    make_discriminator(2)
    after = torch.randn(1)
    torch.manual_seed(0)
    torch.testing.assert_close(after, torch.randn(1))  # builders do not touch the global RNG


def test_builders_reject_bad_sizes():
    with pytest.raises(ValueError, match="make_generator: expected latent_dim to be an int > 0, got 0"):
        make_generator(0, 2)
    with pytest.raises(TypeError, match="make_discriminator: expected hidden to be an int > 0, got 2.5"):
        make_discriminator(2, hidden=2.5)
    with pytest.raises(ValueError, match="expected output to be one of"):
        make_generator(2, 2, output="tanh")


def test_minibatch_std_feature():
    h = torch.randn(6, 4, generator=_gen(0))
    out = MinibatchStd()(h)
    assert out.shape == (6, 5)
    torch.testing.assert_close(out[:, :4], h)
    torch.testing.assert_close(out[:, 4], torch.full((6,), float(np.std(h.numpy(), axis=0, ddof=1).mean())))
    assert torch.all(MinibatchStd()(torch.ones(6, 4))[:, 4] == 0)  # a collapsed batch has no spread
    hk = torch.randn(3, 6, 4, generator=_gen(1)) * torch.tensor([1.0, 5.0, 0.1])[:, None, None]
    per_seed = MinibatchStd()(hk)  # each seed's spread over its own batch, not over the seeds
    assert per_seed.shape == (3, 6, 5)
    for i in range(3):
        torch.testing.assert_close(per_seed[i], MinibatchStd()(hk[i]))
    with pytest.raises(ValueError, match="at least 2 rows, got 1"):
        MinibatchStd()(torch.zeros(1, 4))


def test_pack_groups_consecutive_samples():
    x = torch.arange(12.0).reshape(6, 2)
    torch.testing.assert_close(Pack(3)(x), torch.tensor([[0.0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]))
    D = make_discriminator(2, hidden=8, pack=4)
    assert D(torch.zeros(12, 2)).shape == (3,)
    with pytest.raises(ValueError, match="multiple of 4, got 10"):
        D(torch.zeros(10, 2))
    with pytest.raises(ValueError, match="pack to be an int > 0, got 0"):
        make_discriminator(2, pack=0)
    # per seed: (k, n, d) -> (k, n // m, m * d), each seed's rows grouped on their own
    xk = torch.arange(24.0).reshape(2, 6, 2)
    torch.testing.assert_close(Pack(3)(xk)[1], Pack(3)(xk[1]))


# ---- training --------------------------------------------------------------------------------


def test_train_step_updates_both_players_in_the_right_direction():
    G, D = make_generator(2, 2, hidden=32, seed=0), make_discriminator(2, hidden=32, seed=1)
    opt_G, opt_D = torch.optim.SGD(G.parameters(), lr=0.05), torch.optim.SGD(D.parameters(), lr=0.05)
    real = ring_of_gaussians(256, generator=_gen(0))
    z = torch.randn(256, 2, generator=_gen(1))
    d_before = discriminator_loss(D(real), D(G(z))).item()
    g_params = [p.clone() for p in G.parameters()]
    # with the generator frozen (lr 0), D steps must lower D's loss on these batches
    frozen_G = torch.optim.SGD(G.parameters(), lr=0.0)
    for _ in range(20):
        train_step(G, D, frozen_G, opt_D, real, 2, _gen(1))
    assert discriminator_loss(D(real), D(G(z))).item() < d_before
    for a, b in zip(g_params, G.parameters()):
        torch.testing.assert_close(a, b)
    # with D frozen, a G step on the same noise must lower G's loss
    g_before = generator_loss(D(G(z))).item()
    train_step(G, D, opt_G, torch.optim.SGD(D.parameters(), lr=0.0), real, 2, _gen(1))
    assert generator_loss(D(G(z))).item() < g_before


def test_train_gan_is_deterministic_and_records_history():
    def run():
        G, D = make_generator(2, 2, hidden=16, seed=0), make_discriminator(2, hidden=16, seed=1)
        h = train_gan(G, D, lambda n, g: ring_of_gaussians(n, generator=g), steps=20, latent_dim=2,
                      batch_size=32, snapshot_at=(10, 20), snapshot_size=100, seed=3, lr_decay=True, progress=False)
        return h

    a, b = run(), run()
    assert a["d_loss"].shape == a["g_loss"].shape == (20,) and a.step == list(range(1, 21))
    assert sorted(a.snapshots) == [10, 20] and a.snapshots[20].shape == (100, 2)
    np.testing.assert_array_equal(a["d_loss"], b["d_loss"])
    torch.testing.assert_close(a.snapshots[20], b.snapshots[20])
    with pytest.raises(ValueError, match="expected loss to be one of"):
        train_gan(make_generator(2, 2), make_discriminator(2), lambda n, g: ring_of_gaussians(n, generator=g),
                  steps=1, latent_dim=2, loss="hinge", progress=False)


def test_stacked_networks_are_the_seeds_networks():
    seeds = [4, 0, 7]
    z = torch.randn(3, 10, 2, generator=_gen(0))
    for kwargs in [dict(), dict(minibatch_std=True), dict(pack=2)]:
        D = make_discriminator(2, hidden=8, depth=2, seeds=seeds, **kwargs)
        assert D.n_seeds == 3 and D.seeds == seeds
        logits = D(z)
        assert logits.shape == (3, 10 // kwargs.get("pack", 1))
        for i, s in enumerate(seeds):
            torch.testing.assert_close(logits[i], make_discriminator(2, hidden=8, depth=2, seed=s, **kwargs)(z[i]))
    G = make_generator(2, 3, hidden=8, depth=3, seeds=seeds, output="sigmoid")
    out = G(z)
    assert out.shape == (3, 10, 3)
    for i, s in enumerate(seeds):
        single = make_generator(2, 3, hidden=8, depth=3, seed=s, output="sigmoid")
        torch.testing.assert_close(out[i], single(z[i]))
        torch.testing.assert_close(unstack(G, i, make_generator(2, 3, hidden=8, depth=3, seed=99,
                                                                output="sigmoid"))(z[i]), single(z[i]))


@pytest.mark.parametrize("kwargs", [dict(), dict(minibatch_std=True), dict(pack=2)])
def test_seeds_trained_together_train_as_they_would_alone(kwargs):
    """k seeds in one batched model: seed i's losses and samples are those of seed i trained on its own."""
    sample = lambda n, g: ring_of_gaussians(n, generator=g)  # noqa: E731
    seeds = [0, 1, 2]
    common = dict(steps=15, latent_dim=2, batch_size=32, snapshot_at=(15,), snapshot_size=50,
                  lr_g=2e-3, lr_d=2e-3, progress=False)
    G = make_generator(2, 2, hidden=16, seeds=seeds)
    D = make_discriminator(2, hidden=16, seeds=[10 + s for s in seeds], **kwargs)
    together = train_gan(G, D, sample, seed=seeds, **common)
    assert together["d_loss"].shape == (15, 3)
    for i, s in enumerate(seeds):
        alone = train_gan(make_generator(2, 2, hidden=16, seed=s), make_discriminator(2, hidden=16, seed=10 + s, **kwargs),
                          sample, seed=s, **common)
        np.testing.assert_allclose(together["d_loss"][:, i], alone["d_loss"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(together["g_loss"][:, i], alone["g_loss"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(together.snapshots[15][i], alone.snapshots[15], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="expected 3 seeds"):
        train_gan(G, D, sample, seed=0, **common)


def test_lr_decay_lowers_the_step_size_to_zero():
    """With lr_decay the last step's learning rate is lr / steps: a one-step run moves the weights less."""
    sample = lambda n, g: ring_of_gaussians(n, generator=g)  # noqa: E731

    def moved(steps, decay):
        G = make_generator(2, 2, hidden=8, seed=0)
        before = [p.detach().clone() for p in G.parameters()]
        train_gan(G, make_discriminator(2, hidden=8, seed=1), sample, steps=steps, latent_dim=2, batch_size=16,
                  lr_decay=decay, progress=False)
        return sum((p.detach() - b).abs().sum().item() for p, b in zip(G.parameters(), before))

    assert moved(1, True) == pytest.approx(moved(1, False))  # the first step has the full rate
    assert moved(2, True) < moved(2, False)


# ---- the exercise checker --------------------------------------------------------------------


def _reference_count_modes(samples, centers, std):
    cov = mode_coverage(samples, centers, std)
    return cov.modes, cov.high_quality


def test_exercise_checker_accepts_the_reference_and_rejects_a_wrong_function():
    assert check("ch05-count-modes", _reference_count_modes, include_hidden=True).passed

    def no_threshold(samples, centers, std):  # forgets the 1% rule: any one sample covers a mode
        d = torch.cdist(samples, centers).min(dim=1)
        good = d.values <= 3 * std
        return int(torch.unique(d.indices[good]).numel()), float(good.float().mean())

    result = check("ch05-count-modes", no_threshold, include_hidden=True)
    assert not result.passed
    assert "expected" in result.message and "Hint" in result.message


# ---- the larger-budget ring runs (scripts/ring_gan_budget.py) ---------------------------------


def _load_budget_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "ring_gan_budget.py"
    spec = importlib.util.spec_from_file_location("ring_gan_budget", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ring_budget_script_runs_each_seed_as_it_would_alone(tmp_path):
    script = _load_budget_script()
    assert script.seed_list("0-3") == [0, 1, 2, 3] and script.seed_list("2,7") == [2, 7]
    with pytest.raises(Exception, match="expected '0-9'"):
        script.seed_list("zero")
    small = ["--steps", "16", "--batch-size", "16", "--depth", "1", "--settings", "plain,minibatch std"]
    both = script.main(small + ["--seeds", "0-5", "--json", str(tmp_path / "out.json")])
    alone = script.main(small + ["--seeds", "5"])
    assert set(both["runs"]) == {"plain", "minibatch std"} and (tmp_path / "out.json").exists()
    for setting, run in both["runs"].items():
        assert run["seeds"] == [0, 1, 2, 3, 4, 5] and len(run["modes"]) == 8 and len(run["high_quality"]) == 6
        # seed 5 trains in a second batch of its own, and exactly as it does alone
        assert run["modes"]["16"][5] == alone["runs"][setting]["modes"]["16"][0]
        assert run["high_quality"][5] == alone["runs"][setting]["high_quality"][0]
    with pytest.raises(SystemExit):
        script.main(small[:-2] + ["--settings", "wgan"])


def test_chapter_5_quotes_the_stored_larger_budget_runs():
    """Chapter 5's larger-budget table and its reading are those of scripts/results/ring_gan_budget.json."""
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    stored = json.loads((root / "scripts" / "results" / "ring_gan_budget.json").read_text())
    assert (stored["steps"], stored["batch_size"], stored["depth"], stored["hidden"], stored["threads"]) == \
        (3000, 512, 3, 128, 1)  # what the chapter says was run
    runs = stored["runs"]
    assert list(runs) == ["plain", "minibatch std", "PacGAN (m = 2)"]
    assert all(r["seeds"] == list(range(15)) for r in runs.values())
    text = " ".join((root / "book" / "05-gans.md").read_text().split())
    modes = {k: np.array(r["modes"]["3000"]) for k, r in runs.items()}
    for (name, run), row in zip(runs.items(), ["plain GAN", "minibatch std", "PacGAN, $m = 2$"]):
        m, q = modes[name], np.array(run["high_quality"])
        assert (f"| {row} | {', '.join(str(x) for x in m)} | {m.mean():.1f} | {(m == 8).sum()} of 15 | "
                f"{q.mean():.1%} ({q.min():.1%} to {q.max():.1%}) |") in text
    cpu = [r["cpu_s"] for r in runs.values()]
    assert f"That takes {min(cpu):.0f} to {max(cpu):.0f} CPU-seconds per setting" in text
    plain, mbstd, pac = modes.values()
    first, later = slice(0, 10), slice(10, 15)
    assert (f"the minibatch layer seems to win: {mbstd[first].mean():.1f} modes against "
            f"{plain[first].mean():.1f}") in text
    assert f"Seeds 10-14 reverse it, {mbstd[later].mean():.1f} against {plain[later].mean():.1f}" in text
    assert mbstd[first].mean() > plain[first].mean() and mbstd[later].mean() < plain[later].mean()
    def standard_error(x):  # of the mean over seeds
        return x.std(ddof=1) / np.sqrt(x.size)

    d = mbstd - plain
    assert (f"covers more modes than the plain GAN on {(d > 0).sum()} seeds, as many on {(d == 0).sum()}, "
            f"fewer on {(d < 0).sum()}") in text
    se = standard_error(d)
    assert f"run from {d.min():+d} to {d.max():+d} modes, and their mean, {d.mean():+.1f}, is smaller " \
           f"than its own standard error, {se:.1f}" in text
    assert abs(d.mean()) < se  # "within its standard error": no measurable gain
    # the exercise's solution types the same lists in
    solution = text[text.index("{solution-start} ch05-ex-budget"):]
    for name, var in [("plain", "plain"), ("minibatch std", "mbstd")]:
        listed = re.search(rf"{var} = np\.array\(\[([\d, ]+)\]\)", solution).group(1)
        assert [int(x) for x in listed.split(",")] == list(modes[name]), name
    assert list(np.flatnonzero(plain[first] <= 3)) == [0, 5] and (mbstd[[0, 5]] == 8).all()
    assert (plain[[11, 12]] == 8).all() and (mbstd[[11, 12]] == 3).all()
    f = d[first]
    se_first = standard_error(f)
    assert (f"at ten seeds the gain looked like {f.mean():+.1f} modes, though still only "
            f"{f.mean() / se_first:.1f} standard errors; five more seeds cut it to {d.mean():+.1f}") in text
    pac_q, plain_q = (np.array(runs[k]["high_quality"]) for k in ["PacGAN (m = 2)", "plain"])
    dp, dq = pac - plain, 100 * (pac_q - plain_q)
    se_p, se_q = standard_error(dp), standard_error(dq)
    assert (f"PacGAN covers more modes ({pac.mean():.1f} on average, all eight on {(pac == 8).sum()} seeds; "
            f"{dp.mean():+.1f} ± {se_p:.1f} per seed, just short of two standard errors) but with clearly "
            f"the fewest good samples, {pac_q.mean():.1%} against {plain_q.mean():.1%} "
            f"(−{-dq.mean():.0f} ± {se_q:.0f} points per seed), and on seed {pac_q.argmin()} only "
            f"{pac_q.min():.1%}") in text
    assert 1.5 < dp.mean() / se_p < 2 and dq.mean() / se_q < -3  # "just short of two", "clearly"
    assert pac.mean() > plain.mean() and pac_q.mean() < min(
        np.mean(runs[k]["high_quality"]) for k in ["plain", "minibatch std"])
    # coverage needs 1% of the samples per mode, so 8% on the modes can cover all eight
    assert (f"PacGAN's seed 0 covers all eight with only {pac_q[0]:.1%} of its samples on them") in text
    assert pac[0] == 8
    solution_text = solution.split("```{solution-end}")[0]
    assert f"within one standard error of zero ({abs(d.mean()) / se:.2f} of one)" in solution_text
    assert f"about {round((2 * d.std(ddof=1) / d.mean()) ** 2, -1):.0f}," in solution_text
