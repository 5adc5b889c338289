"""Tests of companion.es against independent references: closed forms, invariants, gymnasium itself."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from companion.es import (
    LinearPolicy,
    MLPPolicy,
    OpenAIES,
    SimpleGA,
    centered_ranks,
    es_gradient,
    estimate_gradient,
    evaluate_cartpole,
    evaluate_gym,
    hidden_vector_fitness,
    rosenbrock,
    rosenbrock_gradient,
    sample_noise,
    train_cartpole,
)
from companion.gradcheck import numerical_gradient

fitness_vectors = arrays(np.float64, st.integers(2, 40), elements=st.floats(-1e6, 1e6, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(fitness_vectors)
def test_centered_ranks_are_zero_mean_bounded_and_rank_preserving(f):
    r = centered_ranks(f)
    assert abs(r.mean()) < 1e-12
    assert r.min() >= -0.5 and r.max() <= 0.5
    i, j = np.meshgrid(np.arange(f.size), np.arange(f.size))
    assert np.all((f[i] < f[j]) == (r[i] < r[j]))  # same order, ties stay ties
    assert np.all((f[i] == f[j]) == (r[i] == r[j]))


def test_centered_ranks_closed_form_and_invariance_to_monotone_maps():
    np.testing.assert_allclose(centered_ranks([3.0, -1.0, 10.0]), [0.0, -0.5, 0.5])
    f = np.random.default_rng(0).standard_normal(25)
    np.testing.assert_array_equal(centered_ranks(f), centered_ranks(np.exp(3 * f) + 100))


def test_antithetic_pairs_cancel_on_a_constant_fitness():
    noise = sample_noise(np.random.default_rng(0), 20, 7, antithetic=True)
    np.testing.assert_allclose(noise[:10], -noise[10:])
    np.testing.assert_allclose(es_gradient(np.full(20, 123.4), noise, 0.1, "none"), 0.0, atol=1e-12)
    plain = sample_noise(np.random.default_rng(0), 20, 7, antithetic=False)
    assert np.linalg.norm(es_gradient(np.full(20, 123.4), plain, 0.1, "none")) > 1.0  # without mirroring it does not


def test_antithetic_estimate_on_a_linear_function_is_exactly_the_projection():
    """For f(x) = g.x, each pair gives (g.eps) eps exactly, so the estimate is mean(eps eps^T) g."""
    g = np.array([1.0, -2.0, 0.5])
    noise = sample_noise(np.random.default_rng(1), 8, 3, antithetic=True)
    estimate = es_gradient((0.3 + 0.1 * noise) @ g, noise, 0.1, "none")
    half = noise[:4]
    np.testing.assert_allclose(estimate, half.T @ half @ g / 4, rtol=1e-10)


def test_estimate_converges_to_the_true_gradient_with_population():
    x = np.random.default_rng(2).uniform(-1, 1, 6)
    true = rosenbrock_gradient(x)
    estimate = estimate_gradient(lambda X: rosenbrock(X), x, 1e-3, 20_000, np.random.default_rng(3))
    cosine = estimate @ true / np.linalg.norm(estimate) / np.linalg.norm(true)
    assert cosine > 0.99


def test_rosenbrock_gradient_matches_finite_differences():
    x = np.random.default_rng(4).uniform(-1.5, 1.5, 7)
    np.testing.assert_allclose(rosenbrock_gradient(x), numerical_gradient(rosenbrock, x), rtol=1e-5, atol=1e-6)
    assert rosenbrock(np.ones(5)) == 0.0


def test_es_converges_on_the_hidden_vector_quadratic():
    target = np.array([0.5, 0.1, -0.3])
    es = OpenAIES(np.zeros(3), sigma=0.1, lr=0.02, population=50, shaping="standardize", seed=0)
    for _ in range(200):
        es.step(lambda W: hidden_vector_fitness(W, target))
    assert np.sum((es.params - target) ** 2) < 1e-6


def test_es_adam_and_weight_decay():
    target = np.full(4, 2.0)
    es = OpenAIES(np.zeros(4), sigma=0.1, lr=0.05, population=20, shaping="none", optimizer="adam", seed=0)
    for _ in range(300):
        es.step(lambda W: hidden_vector_fitness(W, target))
    np.testing.assert_allclose(es.params, target, atol=0.05)
    # on a flat fitness, antithetic pairs cancel and only the decay acts: params shrink by (1 - lr * wd)
    es = OpenAIES(np.ones(3), sigma=0.1, lr=0.1, population=10, shaping="none", weight_decay=0.5, seed=0)
    es.step(lambda W: np.zeros(len(W)))
    np.testing.assert_allclose(es.params, 0.95 * np.ones(3))


def test_seeds_make_runs_reproducible():
    def run(seed):
        es = OpenAIES(np.zeros(5), sigma=0.1, lr=0.1, population=10, seed=seed)
        for _ in range(5):
            es.step(lambda W: -np.sum(W**2, axis=1) + W[:, 0])
        return es.params

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))
    np.testing.assert_array_equal(evaluate_cartpole(LinearPolicy(), np.ones((3, 5)), 2, seed=5),
                                  evaluate_cartpole(LinearPolicy(), np.ones((3, 5)), 2, seed=5))


def test_simple_ga_keeps_the_elite_and_improves():
    ga = SimpleGA(np.zeros(3), population=20, mutation=0.3, parents=5, elite=1, seed=0)
    target = np.array([1.0, -1.0, 2.0])
    for _ in range(60):
        candidates = ga.ask()
        fitness = hidden_vector_fitness(candidates, target)
        ga.tell(fitness)
        np.testing.assert_array_equal(ga.ask()[0], candidates[np.argmax(fitness)])
    assert np.sum((ga.best - target) ** 2) < 0.05


def test_batched_returns_equal_gymnasium_returns():
    """Same start states, same policies: evaluate_cartpole gives gymnasium's returns exactly."""
    import gymnasium as gym

    policy = LinearPolicy()
    params = np.random.default_rng(1).normal(size=(6, 5))
    params[0] = [0.0, 0.5, 1.0, 1.0, 0.0]  # one that balances for the full 500 steps
    ours = evaluate_cartpole(policy, params, episodes=1, seed=9)[:, 0]
    starts = np.random.default_rng(9).uniform(-0.05, 0.05, size=(6, 4))
    env = gym.make("CartPole-v1")
    for p, start, expected in zip(params, starts, ours):
        env.reset(seed=0)
        env.unwrapped.state = start.copy()
        obs, total, done = start.astype(np.float32), 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(policy.act(p[None], obs[None])[0]))
            total += reward
            done = terminated or truncated
        assert total == expected
    assert ours[0] == 500.0 and ours[1:].min() < 500.0


def test_mlp_policy_matches_a_loop():
    policy = MLPPolicy(obs_dim=4, hidden=3)
    rng = np.random.default_rng(2)
    params, obs = rng.standard_normal((5, policy.n_params)), rng.standard_normal((5, 4))
    expected = []
    for p, o in zip(params, obs):
        W1, b1, w2, b2 = p[:12].reshape(4, 3), p[12:15], p[15:18], p[18]
        expected.append(int(np.tanh(o @ W1 + b1) @ w2 + b2 > 0))
    np.testing.assert_array_equal(policy.act(params, obs), expected)


def test_train_cartpole_solves_with_a_linear_policy():
    optimizers = [OpenAIES(np.zeros(5), sigma=0.3, lr=0.3, population=50, seed=s) for s in range(2)]
    run = train_cartpole(LinearPolicy(), optimizers, max_generations=100, seed=0)
    assert all(g is not None for g in run.solved_at)
    assert all(r[-1] == 500.0 for r in run.eval_returns)
    assert evaluate_gym(LinearPolicy(), optimizers[0].solution, episodes=3).min() == 500.0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"expected params of shape \(population, 5\).*got \(3, 4\)"):
        evaluate_cartpole(LinearPolicy(), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"expected params of shape \(batch, 49\)"):
        MLPPolicy().act(np.zeros((2, 5)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="unknown environment 'CartPole-v99'"):
        evaluate_gym(LinearPolicy(), np.zeros(5), env_id="CartPole-v99")
    with pytest.raises(ValueError, match=r"policy expects \(4,\) observations"):
        evaluate_gym(LinearPolicy(), np.zeros(5), env_id="Acrobot-v1")
    with pytest.raises(TypeError, match="expected a LinearPolicy"):
        evaluate_cartpole("linear", np.zeros((1, 5)))
    with pytest.raises(ValueError, match="even population"):
        OpenAIES(np.zeros(3), population=7)
    with pytest.raises(ValueError, match=r"expected fitness of shape \(10,\), got \(9,\)"):
        es = OpenAIES(np.zeros(3), population=10)
        es.ask()
        es.tell(np.zeros(9))
    with pytest.raises(ValueError, match="n >= 2"):
        centered_ranks([1.0])
    with pytest.raises(ValueError, match="shaping"):
        OpenAIES(np.zeros(3), shaping="ranks")
    with pytest.raises(ValueError, match=r"expected W of shape \(\.\.\., 3\)"):
        hidden_vector_fitness(np.zeros((2, 4)), np.zeros(3))


def test_ch08_checker_accepts_the_reference_and_explains_a_wrong_answer():
    from companion.exercises import check

    assert check("ch08-centered-ranks", centered_ranks, include_hidden=True).passed

    def argsort_ranks(f):  # forgets to subtract 0.5 and ignores ties
        f = np.asarray(f, dtype=float)
        return np.argsort(np.argsort(f)) / (f.size - 1)

    result = check("ch08-centered-ranks", argsort_ranks)
    assert not result.passed
    assert "three values" in result.message and "expected" in result.message and "Hint" in result.message

    def no_ties(f):  # right on distinct values, wrong on ties: a visible case catches it
        f = np.asarray(f, dtype=float)
        return np.argsort(np.argsort(f)) / (f.size - 1) - 0.5

    result = check("ch08-centered-ranks", no_ties)
    assert not result.passed and "ties share their average rank" in result.message
    assert "argsort" in result.message
    from companion.exercises._core import get

    drawn = get("ch08-centered-ranks").hidden_cases(np.random.default_rng(1))
    assert len(drawn) >= 4
    assert any(len(np.unique(c.args[0])) < len(c.args[0]) for c in drawn)  # draws include ties


def test_adam_step_matches_torch_adam_maximizing():
    import torch

    rng = np.random.default_rng(0)
    es = OpenAIES(rng.standard_normal(6), sigma=0.1, lr=0.05, population=10, shaping="none",
                  optimizer="adam", seed=1)
    theta = torch.tensor(es.params.copy(), requires_grad=True)
    adam = torch.optim.Adam([theta], lr=0.05, betas=(0.9, 0.999), eps=1e-8, maximize=True)
    for _ in range(5):
        fitness = rng.standard_normal(10)
        es.ask()
        g = es.tell(fitness)  # the gradient estimate the step ascends
        theta.grad = torch.tensor(g)
        adam.step()
        np.testing.assert_allclose(es.params, theta.detach().numpy(), rtol=1e-6, atol=1e-7)


def test_simple_ga_children_mix_both_parents():
    """Uniform crossover: each child's coordinates come from two parents, some from each."""
    parents = np.array([np.full(40, 1.0), np.full(40, 2.0)])
    ga = SimpleGA(np.zeros(40), population=4, mutation=1e-9, parents=2, elite=0, seed=0)
    ga._candidates = np.concatenate([parents, np.zeros((2, 40))])
    ga.tell(np.array([1.0, 0.9, 0.0, 0.0]))
    children = ga.ask()
    mixed = 0
    for child in children:
        from_one, from_two = np.isclose(child, 1.0), np.isclose(child, 2.0)
        assert np.all(from_one | from_two)  # every coordinate from one of the parents
        mixed += bool(from_one.any() and from_two.any())
    assert mixed >= 1  # at least one child mixes the two (not a copy of one parent)


def test_distributed_es_exchanges_only_scalars_and_matches_across_pools():
    import multiprocessing

    from companion.es import CartPoleFitness, DistributedES, SerialPool

    policy = MLPPolicy(hidden=8)
    runs = {}
    for name, factory in [("serial", SerialPool), ("processes", multiprocessing.get_context("fork").Pool)]:
        es = DistributedES(np.zeros(policy.n_params), CartPoleFitness(policy), factory, processes=2,
                           population=20, sigma=0.3, lr=0.3, seed=3, table_size=10_000)
        for _ in range(4):
            es.step()
        runs[name] = (es.params.copy(), list(es.bytes_sent), es.parameter_protocol_bytes())
        es.close()
    np.testing.assert_array_equal(runs["serial"][0], runs["processes"][0])  # same numbers everywhere
    sent = runs["serial"][1]
    assert sent[-1] == sent[-2] == sent[-3]  # steady state: only the last generation's update travels
    # with processes a busy worker may miss a generation and catch up, still far below parameters
    assert max(runs["processes"][1][1:]) < runs["processes"][2] / 3


def test_distributed_update_is_the_openai_es_update():
    """From indices and ranks alone, a replica takes exactly OpenAIES's step on the same noise."""
    from companion.es import DistributedES, SerialPool

    es = DistributedES(np.zeros(3), lambda W: hidden_vector_fitness(W, np.ones(3)), SerialPool,
                       processes=1, population=6, sigma=0.1, lr=0.5, seed=0, table_size=100)
    before = es.params.copy()
    fitness = es.step()
    indices = es.log[-1].indices
    half = np.stack([es.table.get(int(i), 3) for i in indices])
    noise = np.concatenate([half, -half])
    np.testing.assert_allclose(fitness, hidden_vector_fitness(before + 0.1 * noise, np.ones(3)))
    expected = before + 0.5 * es_gradient(fitness, noise, 0.1, "centered_rank")
    np.testing.assert_allclose(es.params, expected)


def test_distributed_es_runs_unchanged_on_rays_pool():
    """The `distributed` extra: Ray's Pool is a drop-in (requirements.txt installs Ray, so this always runs)."""
    import ray
    from ray.util.multiprocessing import Pool as RayPool

    from companion.es import CartPoleFitness, DistributedES, SerialPool

    policy = MLPPolicy(hidden=8)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        params = []
        for factory in (SerialPool, RayPool):
            es = DistributedES(np.zeros(policy.n_params), CartPoleFitness(policy), factory,
                               processes=2, population=20, sigma=0.3, lr=0.3, seed=3,
                               table_size=10_000)
            for _ in range(3):
                es.step()
            params.append(es.params.copy())
            es.close()
        np.testing.assert_array_equal(params[0], params[1])
    finally:
        ray.shutdown()
