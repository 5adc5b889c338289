"""Tests of companion.policy_gradient against independent references.

The bandit gradient against its closed form and torch.autograd; returns and
advantages against direct Python loops; the learned value against the exact
values of a tiny MDP; the baseline's unbiasedness and variance by Monte Carlo;
the batched environments against gymnasium.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion import policy_gradient as pg

torch.set_num_threads(1)


# ---------------------------------------------------------------- helpers


def _loop_returns(rewards, gamma, mask):
    n, T = rewards.shape
    out = np.zeros((n, T))
    for i in range(n):
        for t in range(T):
            if mask[i, t]:
                out[i, t] = sum(gamma ** (s - t) * rewards[i, s] for s in range(t, T) if mask[i, s])
    return out


def _balancing_policy(beta=1.0):
    """A linear softmax policy on CartPole: push toward where the pole falls, with inverse temperature beta."""
    policy = pg.SoftmaxPolicy([4, 2], [0])
    with torch.no_grad():
        layer = policy.net.layers[0]
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[0, :, 1] = beta * torch.tensor([0.0, 0.5, 1.0, 1.0])
    return policy


class Chain:
    """A tiny MDP: states 0, 1, 2 (one-hot observations); action 1 moves right, 0 stays.

    Reward -0.1 per step, +1 for stepping right from state 2, which ends the episode.
    """

    name, obs_dim, n_actions, max_steps = "chain", 3, 2, 400
    obs_scale = np.ones(3)

    def reset(self, n, rng):
        return np.zeros((n, 1))

    def step(self, state, action):
        s = state[:, 0]
        done = (s == 2) & (action == 1)
        reward = np.where(done, 1.0, -0.1)
        return np.where(action == 1, np.minimum(s + 1, 2), s)[:, None], reward, done

    def observe(self, state):
        return np.eye(3, dtype=np.float32)[state[:, 0].astype(int)]


# ---------------------------------------------------------------- the estimator


def test_reinforce_on_a_bandit_equals_the_analytic_gradient():
    rewards = torch.tensor([1.0, -0.5, 2.0, 0.3])
    theta = torch.tensor([0.2, -0.4, 0.1, 0.5], requires_grad=True)
    p = torch.softmax(theta, 0)
    analytic = (p * (rewards - p @ rewards)).detach()  # dJ/dtheta for J = sum_a p_a r_a
    J = p @ rewards
    (autograd,) = torch.autograd.grad(J, theta)
    assert torch.allclose(analytic, autograd, atol=1e-7)
    # the exact expectation of the estimator: every arm, weighted by its probability
    logp = torch.log_softmax(theta, 0)[:, None]  # (K episodes, 1 step)
    weights = (len(rewards) * p * rewards).detach()[:, None].numpy()
    (exact,) = torch.autograd.grad(-pg.policy_gradient_loss(logp, weights), theta)
    assert torch.allclose(exact, analytic, atol=1e-6)
    # and by sampling: 200,000 pulls, within 4 standard errors on every coordinate
    rng = np.random.default_rng(0)
    arms = rng.choice(4, size=200_000, p=p.detach().numpy())
    logp_samples = torch.log_softmax(theta, 0)[torch.as_tensor(arms)][:, None]
    (sampled,) = torch.autograd.grad(-pg.policy_gradient_loss(logp_samples, rewards[arms][:, None].numpy()), theta)
    onehot = np.eye(4)[arms]
    per_sample = rewards[arms].numpy()[:, None] * (onehot - p.detach().numpy())
    se = per_sample.std(axis=0) / np.sqrt(len(arms))
    assert np.all(np.abs(sampled.numpy() - analytic.numpy()) < 4 * se)


def test_the_surrogate_loss_is_minus_the_masked_sum_over_episodes_and_steps_divided_by_n():
    # an independent double loop: -1/n sum_i sum_t mask * psi * log pi, per seed and summed over
    # seeds; divided by the number of episodes, not by the number of steps
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(2, 3, 5, generator=g, dtype=torch.float64)  # (k, n, T)
    psi = torch.randn(2, 3, 5, generator=g, dtype=torch.float64).numpy()
    mask = (torch.rand(2, 3, 5, generator=g) < 0.7).numpy()
    expected = 0.0
    for k in range(2):
        for i in range(3):
            for t in range(5):
                if mask[k, i, t]:
                    expected -= psi[k, i, t] * float(logp[k, i, t]) / 3
    assert float(pg.policy_gradient_loss(logp, psi, mask)) == pytest.approx(expected, rel=1e-12)
    assert float(pg.policy_gradient_loss(logp, psi, mask, n_episodes=6)) == pytest.approx(expected / 2,
                                                                                          rel=1e-12)


def test_a_baseline_adds_exactly_zero_in_expectation_on_a_bandit():
    theta = torch.tensor([0.3, -1.0, 0.7], requires_grad=True)
    p = torch.softmax(theta, 0).detach()
    logp = torch.log_softmax(theta, 0)[:, None]
    (g,) = torch.autograd.grad(-pg.policy_gradient_loss(logp, (3 * p * 5.0)[:, None].numpy()), theta)
    assert torch.allclose(g, torch.zeros(3), atol=1e-6)  # sum_a p_a * b * grad log p_a = b * grad sum p = 0


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 4), T=st.integers(1, 9), gamma=st.floats(0.0, 1.0), seed=st.integers(0, 10_000))
def test_reward_to_go_and_discounted_returns_match_a_direct_loop(n, T, gamma, seed):
    rng = np.random.default_rng(seed)
    rewards = rng.standard_normal((n, T))
    lengths = rng.integers(1, T + 1, n)
    mask = np.arange(T)[None] < lengths[:, None]
    assert np.allclose(pg.discounted_returns(rewards, gamma, mask), _loop_returns(rewards, gamma, mask))
    assert np.allclose(pg.discounted_returns(rewards, 1.0, mask), _loop_returns(rewards, 1.0, mask))
    total = pg.total_returns(rewards, mask)
    assert np.allclose(total, np.where(mask, (rewards * mask).sum(1, keepdims=True), 0.0))


def test_gae_with_lambda_one_is_the_bootstrapped_return_and_zero_the_td_error():
    rng = np.random.default_rng(1)
    n, T, gamma = 3, 12, 0.9
    r, v, nv = rng.standard_normal((n, T)), rng.standard_normal((n, T)), rng.standard_normal((n, T))
    term = rng.random((n, T)) < 0.15
    done = term | (rng.random((n, T)) < 0.1)
    nv[:, :-1] = np.where(done[:, :-1], nv[:, :-1], v[:, 1:])  # within an episode, V(next state) is the next V
    expected = np.zeros((n, T))
    for i in range(n):
        for t in range(T):
            g, discount, s = 0.0, 1.0, t
            while True:  # sum rewards to the episode's end or the segment's end, then bootstrap
                g += discount * r[i, s]
                if term[i, s]:
                    break
                if done[i, s] or s == T - 1:
                    g += discount * gamma * nv[i, s]
                    break
                discount *= gamma
                s += 1
            expected[i, t] = g - v[i, t]
    assert np.allclose(pg.advantages_gae(r, v, nv, term, done, gamma, 1.0), expected)
    td = r + gamma * (1 - term) * nv - v
    assert np.allclose(pg.advantages_gae(r, v, nv, term, done, gamma, 0.0), td)


def test_the_learned_value_converges_to_the_true_values_of_a_tiny_mdp():
    env, gamma = Chain(), 0.9
    rng = np.random.default_rng(0)
    batch = pg.rollout(env, lambda obs: rng.integers(0, 2, len(obs)), 2000, rng)
    returns = pg.discounted_returns(batch.rewards, gamma, batch.mask)
    critic = pg.ValueNet([3, 16, 1], [0])
    pg.fit_value(critic, batch.obs[batch.mask][None], returns[batch.mask][None], steps=300, lr=0.03)
    # the exact values of the uniform policy: V = (I - gamma P)^-1 r
    P = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 0.5]])
    r = np.array([-0.1, -0.1, 0.5 * -0.1 + 0.5 * 1.0])
    true_v = np.linalg.solve(np.eye(3) - gamma * P, r)
    with torch.no_grad():
        learned = critic(torch.eye(3)[None])[0].numpy()
    assert np.abs(learned - true_v).max() < 0.05, (learned, true_v)


def _cartpole_episode_gradients(policy, n, seed):
    rng = np.random.default_rng(seed)
    batch = pg.rollout(pg.CartPole(), lambda o: policy.sample(o, rng), n, rng)
    n_, T = batch.actions.shape
    scores = pg.score_vectors(policy, batch.obs.reshape(-1, 4), batch.actions.reshape(-1)).reshape(n_, T, -1)
    return batch, scores


def test_a_baseline_leaves_the_expected_gradient_unchanged_and_lowers_its_variance():
    """Monte Carlo on a fixed CartPole policy, 3,000 episodes: the paired difference of two
    estimators has mean zero within 4 standard errors on every coordinate."""
    policy = _balancing_policy(beta=0.5)
    reference, _ = _cartpole_episode_gradients(policy, 2000, seed=1)  # an independent batch for the baseline
    b = pg.time_baseline(pg.discounted_returns(reference.rewards, 1.0, reference.mask), reference.mask)
    batch, scores = _cartpole_episode_gradients(policy, 3000, seed=2)
    rtg = pg.discounted_returns(batch.rewards, 1.0, batch.mask)
    T = rtg.shape[1]
    baseline = np.concatenate([b, np.full(max(0, T - len(b)), b[-1])])[:T]
    g_total = pg.per_episode_gradients(scores, pg.total_returns(batch.rewards, batch.mask), batch.mask)
    g_rtg = pg.per_episode_gradients(scores, rtg, batch.mask)
    g_base = pg.per_episode_gradients(scores, rtg - baseline, batch.mask)
    for a, c in [(g_total, g_rtg), (g_rtg, g_base)]:
        d = a - c
        se = d.std(axis=0) / np.sqrt(len(d))
        assert np.all(np.abs(d.mean(axis=0)) < 4 * se + 1e-9)
    var = {name: g.var(axis=0).sum() for name, g in [("total", g_total), ("rtg", g_rtg), ("base", g_base)]}
    assert var["rtg"] < 0.5 * var["total"] and var["base"] < 0.9 * var["rtg"], var


def test_score_vectors_match_autograd_step_by_step():
    policy = pg.SoftmaxPolicy([4, 5, 2], [3])
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((6, 4)).astype(np.float32)
    actions = rng.integers(0, 2, 6)
    rows = pg.score_vectors(policy, obs, actions)
    for j in range(6):
        policy.zero_grad()
        policy.log_prob(torch.as_tensor(obs[j])[None, None], torch.tensor([[actions[j]]]))[0, 0].backward()
        expected = torch.cat([p.grad.reshape(-1) for p in policy.parameters()])
        assert torch.allclose(rows[j], expected, atol=1e-6)


# ---------------------------------------------------------------- environments and policies


def test_mountain_car_matches_gymnasium_step_for_step():
    env = gym.make("MountainCar-v0").unwrapped
    ours = pg.MountainCar()
    rng = np.random.default_rng(0)
    for seed in range(3):
        env.reset(seed=seed)
        state = np.array(env.state, dtype=np.float64)[None]
        for action in rng.integers(0, 3, 300):
            obs, reward, terminated, _, _ = env.step(int(action))
            state, r, term = ours.step(state, np.array([action]))
            assert np.abs(state[0] - np.array(env.state, dtype=np.float64)).max() < 1e-12
            assert r[0] == reward and bool(term[0]) == terminated
            assert np.array_equal(ours.observe(state)[0], obs)
            if terminated:
                break
    env.close()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "MountainCar-v0"])
def test_batched_rollout_returns_equal_gymnasium_returns(env_id):
    """Greedy policies from gymnasium's own start states: the batched rollout returns what gymnasium returns."""
    env = pg.ENVS[env_id]()
    policy = _balancing_policy(3.0) if env_id == "CartPole-v1" else pg.SoftmaxPolicy([2, 3], [0], env.obs_scale)
    if env_id == "CartPole-v1":
        with torch.no_grad():  # push toward the pole's lean only: falls after 25 to 51 steps
            policy.net.layers[0].weight[0, :, 1] = torch.tensor([0.0, 0.0, 1.0, 0.0])
    else:
        with torch.no_grad():  # push with the velocity: reaches the goal
            layer = policy.net.layers[0]
            layer.weight.zero_(), layer.bias.zero_()
            layer.weight[0, 1, 2], layer.weight[0, 1, 0] = 10.0, -10.0
    starts = []
    for seed in range(6):
        g = gym.make(env_id).unwrapped
        g.reset(seed=seed)
        starts.append(np.array(g.state, dtype=np.float64))
    batch = pg.rollout(env, policy.greedy, 6, np.random.default_rng(0), state=np.stack(starts))
    returns = pg.evaluate_gym(policy.greedy, env_id, episodes=6, seed=0)
    assert np.array_equal(batch.returns, returns), (batch.returns, returns)
    assert len(set(returns.tolist())) > 1  # the episodes differ: the check is not trivial


def test_cartpole_rewards_and_termination_follow_gymnasium():
    env = pg.CartPole()
    rng = np.random.default_rng(0)
    batch = pg.rollout(env, lambda o: rng.integers(0, 2, len(o)), 50, rng)
    assert np.array_equal(batch.returns, batch.lengths)  # reward 1 per step, the falling step included
    assert batch.terminated.all() and batch.lengths.max() < 500
    assert np.all(np.abs(batch.obs[:, 0]) <= 0.05)  # start states uniform in [-0.05, 0.05]


def test_param_policy_is_the_softmax_policy_acting_greedily():
    for sizes in ([4, 2], [4, 8, 2], [2, 8, 3]):
        scale = np.arange(1, sizes[0] + 1, dtype=float)
        soft = pg.SoftmaxPolicy(sizes, [7], obs_scale=scale)
        flat = pg.ParamPolicy(sizes, obs_scale=scale)
        params = flat.init(7)
        assert params.shape == (flat.n_params,) == (sum(p.numel() for p in soft.parameters()),)
        obs = np.random.default_rng(0).standard_normal((9, sizes[0])).astype(np.float32)
        with torch.no_grad():
            expected = soft.logits(torch.as_tensor(obs)[None])[0].numpy()
        got = flat.logits(np.repeat(params[None], 9, axis=0), obs)
        assert np.allclose(got, expected, atol=1e-5)
        assert np.allclose(soft.numpy_logits(obs), expected, atol=1e-5)
        assert np.array_equal(flat.act(np.repeat(params[None], 9, axis=0), obs), expected.argmax(1))


def test_sampling_follows_the_softmax():
    policy = pg.SoftmaxPolicy([2, 3], [0])
    obs = np.tile(np.array([[0.3, -0.2]], dtype=np.float32), (60_000, 1))
    actions = policy.sample(obs, np.random.default_rng(0))
    with torch.no_grad():
        p = torch.softmax(policy.logits(torch.as_tensor(obs[:1])[None]), -1)[0, 0].numpy()
    freq = np.bincount(actions, minlength=3) / len(actions)
    assert np.abs(freq - p).max() < 4 * np.sqrt(0.25 / len(actions))


# ---------------------------------------------------------------- training loops


def test_reinforce_with_a_value_baseline_learns_cartpole():
    run, policy = pg.train_reinforce(pg.CartPole(), [4, 8, 2], [0, 1], steps=30_000, episodes=8, lr=0.02,
                                     weights="value", eval_every=5)
    first = np.array([r[0] for r in run.returns])
    last = np.array([r[-1] for r in run.returns])
    assert np.all(last > 150) and np.all(last > 3 * first)
    assert all(s[-1] >= 30_000 for s in run.steps) and all(np.all(np.diff(c) >= 0) for c in run.cpu)


def test_actor_critic_and_es_loops_improve_on_cartpole():
    from companion.es import OpenAIES  # the tests may use chapter 8's optimizer; the module does not

    run, _, _ = pg.train_actor_critic(pg.CartPole(), [4, 8, 2], [0, 1], steps=20_000, n_envs=8, n_steps=32,
                                      lr=0.01, normalize=True, clip=1.0, eval_every=10)
    assert np.all(np.array([r.max() for r in run.returns]) > 100)
    policy = pg.ParamPolicy([4, 2])
    opts = [OpenAIES(np.zeros(policy.n_params), sigma=0.3, lr=0.3, population=20, seed=s) for s in range(2)]
    es_run = pg.train_es(pg.CartPole(), policy, opts, steps=20_000)
    assert all(r.max() > 100 for r in es_run.returns)
    assert all(s[-1] >= 20_000 for s in es_run.steps)


def test_the_loops_keep_each_seeds_best_evaluated_parameters():
    from companion.es import OpenAIES

    class Logged(OpenAIES):  # remembers the centre after every update: what each evaluation saw
        def tell(self, fitness):
            g = super().tell(fitness)
            self.history.append(self.params.copy())
            return g

    policy = pg.ParamPolicy([4, 2])
    opts = [Logged(np.zeros(policy.n_params), sigma=0.3, lr=0.3, population=10, seed=s) for s in range(2)]
    for o in opts:
        o.history = [o.params.copy()]
    run = pg.train_es(pg.CartPole(), policy, opts, steps=5_000, eval_episodes=3)
    for i, o in enumerate(opts):
        assert len(o.history) == len(run.returns[i])
        assert np.array_equal(run.extra["best_solutions"][i], o.history[int(np.argmax(run.returns[i]))])
    # for torch policies: the best policy holds each seed's snapshot in that seed's slot
    soft = pg.SoftmaxPolicy([4, 3, 2], [0, 1, 2])
    record = pg._Recorder(3, target=500.0)
    record.log(np.zeros(3), np.array([[1.0], [5.0], [2.0]]), pg._snapshot(soft))
    with torch.no_grad():
        for p in soft.parameters():
            p.add_(1.0)
    record.log(np.ones(3), np.array([[3.0], [4.0], [2.0]]), pg._snapshot(soft))
    best = pg._best_policy(soft, record)
    for p_best, p_now in zip(best.parameters(), soft.parameters()):
        assert torch.equal(p_best[0], p_now[0]) and torch.allclose(p_best[1], p_now[1] - 1.0)
        assert torch.allclose(p_best[2], p_now[2] - 1.0)  # a tie is not an improvement


def test_run_on_grid_takes_the_last_evaluation_before_each_point():
    run = pg.Run([np.array([0, 10, 20])], [np.array([0.0, 1.0, 2.0])], [np.array([5.0, 6.0, 7.0])], [None])
    assert np.array_equal(run.on_grid([0, 5, 10, 25]), [[5.0, 5.0, 6.0, 7.0]])
    assert np.array_equal(run.on_grid([1.5], x="cpu"), [[6.0]])
    run.walls = [np.array([0.0, 3.0, 6.0])]
    assert np.array_equal(run.on_grid([4.0], x="wall"), [[6.0]])


def test_code_lines_skip_docstrings_comments_and_blank_lines():
    def f(x):
        """A docstring
        over two lines."""
        # a comment

        return x + 1

    assert pg.code_lines(f) == 2


# ---------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors():
    policy = pg.SoftmaxPolicy([4, 8, 2], [0, 1])
    with pytest.raises(ValueError, match=r"expected obs of shape \(2, n, 4\), got \(2, 5, 3\)"):
        policy.logits(torch.zeros(2, 5, 3))  # wrong observation width
    with pytest.raises(ValueError, match=r"expected obs of shape \(k \* m, 4\) with k = 2, got \(6, 3\)"):
        policy.sample(np.zeros((6, 3), dtype=np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"rollout: expected n to be an int > 0, got 0"):
        pg.rollout(pg.CartPole(), lambda o: np.zeros(len(o), int), 0, np.random.default_rng(0))  # empty batch
    with pytest.raises(ValueError, match=r"discounted_returns: expected rewards of shape \(n, T\) with n, T >= 1, "
                                         r"got \(0, 5\)"):
        pg.discounted_returns(np.zeros((0, 5)))
    with pytest.raises(ValueError, match=r"expected rewards of shape \(n, T\).*got \(5,\)"):
        pg.discounted_returns(np.zeros(5), 0.9)  # rewards of the wrong shape
    with pytest.raises(ValueError, match=r"expected mask of shape \(2, 5\) \(the rewards' shape\), got \(2, 4\)"):
        pg.total_returns(np.zeros((2, 5)), np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"gamma to be a number in \[0, 1\], got 1.5"):
        pg.discounted_returns(np.zeros((2, 5)), 1.5)
    with pytest.raises(ValueError, match=r"policy_gradient_loss: expected weights of shape \(3, 4\), got \(3, 5\)"):
        pg.policy_gradient_loss(torch.zeros(3, 4), np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"expected log_probs as a tensor of shape \(n, T\) or \(k, n, T\)"):
        pg.policy_gradient_loss(torch.zeros(0, 4), np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"expected act to return actions of shape \(3,\), got \(2,\)"):
        pg.rollout(pg.CartPole(), lambda o: np.zeros(2, int), 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"expected sizes from 2 observations to 3 actions for MountainCar-v0"):
        pg.train_reinforce(pg.MountainCar(), [4, 8, 2], [0], steps=10)
    with pytest.raises(ValueError, match=r"train_reinforce: expected weights to be one of"):
        pg.train_reinforce(pg.CartPole(), [4, 2], [0], steps=10, weights="baseline")
    with pytest.raises(ValueError, match=r"ValueNet: expected sizes ending in 1"):
        pg.ValueNet([4, 8, 2], [0])
    with pytest.raises(ValueError, match=r"ParamPolicy.logits: expected params of shape \(n, 10\), got \(3, 9\)"):
        pg.ParamPolicy([4, 2]).logits(np.zeros((3, 9)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"score_vectors: expected a policy with one seed, got 2"):
        pg.score_vectors(policy, np.zeros((3, 4)), np.zeros(3, int))
    with pytest.raises(ValueError, match=r"train_es: expected at least one optimizer, got none"):
        pg.train_es(pg.CartPole(), pg.ParamPolicy([4, 2]), [], steps=10)


# ---------------------------------------------------------------- the exercise checker


def test_ch10_checker_accepts_the_reference_and_explains_wrong_answers():
    from companion.exercises import check

    def stream_returns(rewards, dones, gamma):
        rewards, dones = np.asarray(rewards, float), np.asarray(dones, bool)
        out = pg.discounted_returns(rewards[None], gamma)[0]  # correct only within one episode...
        G = 0.0
        for t in range(len(rewards) - 1, -1, -1):  # ... so do it by hand
            G = rewards[t] + gamma * (0.0 if dones[t] else G)
            out[t] = G
        return out

    assert check("ch10-stream-returns", stream_returns, include_hidden=True).passed

    def no_reset(rewards, dones, gamma):  # lets the next episode's rewards leak in
        return pg.discounted_returns(np.asarray(rewards, float)[None], gamma)[0]

    result = check("ch10-stream-returns", no_reset)
    assert not result.passed and "two episodes" in result.message and "next episode" in result.message

    def forward(rewards, dones, gamma):  # accumulates from the first step on
        out, G = np.zeros(len(rewards)), 0.0
        for t, r in enumerate(rewards):
            G = r + gamma * G
            out[t] = G
        return out

    result = check("ch10-stream-returns", forward)
    assert not result.passed and "reverse order" in result.message

    def only_visible(rewards, dones, gamma):  # right on the visible cases, wrong for gamma 0.99
        return stream_returns(rewards, dones, 0.9 if gamma == 0.99 else gamma)

    assert check("ch10-stream-returns", only_visible).passed
    assert not check("ch10-stream-returns", only_visible, include_hidden=True).passed
