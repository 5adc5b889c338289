"""Tests of companion.envs against gymnasium's CartPole-v1 itself."""

import gymnasium as gym
import numpy as np
import pytest

from companion.envs import (
    MAX_STEPS,
    CartPoleBatch,
    cartpole_reset,
    cartpole_returns,
    cartpole_step,
    gym_returns,
)


def linear_act(params, obs):
    return (np.einsum("bi,bi->b", obs, params[:, :4]) + params[:, 4] > 0).astype(np.int64)


def test_batched_cartpole_matches_gymnasium_step_for_step():
    rng = np.random.default_rng(0)
    env = gym.make("CartPole-v1").unwrapped
    for episode in range(5):
        env.reset(seed=episode)
        state = np.array(env.state, dtype=np.float64)[None]
        for _ in range(200):
            if episode < 3:
                action = int(rng.integers(0, 2))
            else:
                action = int(state[0, 2] + 0.3 * state[0, 3] > 0)
            _, _, terminated, _, _ = env.step(action)
            state, ours = cartpole_step(state, np.array([action]))
            np.testing.assert_array_equal(state[0], env.state)  # bit for bit
            assert bool(ours[0]) == terminated
            if terminated:
                break


def test_a_batch_steps_each_row_as_gymnasium_would_alone():
    """Rows of one batch do not interact: row i of a batched step is the step of row i alone."""
    rng = np.random.default_rng(3)
    state = rng.uniform(-0.2, 0.2, (7, 4))
    action = rng.integers(0, 2, 7)
    nxt, term = cartpole_step(state, action)
    for i in range(7):
        alone, t = cartpole_step(state[i:i + 1], action[i:i + 1])
        np.testing.assert_array_equal(nxt[i], alone[0])
        assert term[i] == t[0]


def test_reset_draws_gymnasiums_start_distribution():
    starts = cartpole_reset(5, np.random.default_rng(9))
    assert starts.shape == (5, 4) and np.all(np.abs(starts) <= 0.05)
    env = gym.make("CartPole-v1").unwrapped
    env.np_random = np.random.default_rng(9)  # the same generator gymnasium's reset draws from
    env.reset()
    np.testing.assert_array_equal(starts[0], env.state)


def test_batched_returns_equal_gymnasium_returns():
    """Same start states, same policies: cartpole_returns gives gymnasium's returns exactly."""
    params = np.random.default_rng(1).normal(size=(6, 5))
    params[0] = [0.0, 0.5, 1.0, 1.0, 0.0]  # one that balances for the full 500 steps
    ours = cartpole_returns(linear_act, params, episodes=1, seed=9)[:, 0]
    starts = np.random.default_rng(9).uniform(-0.05, 0.05, size=(6, 4))
    env = gym.make("CartPole-v1")
    for p, start, expected in zip(params, starts, ours):
        env.reset(seed=0)
        env.unwrapped.state = start.copy()
        obs, total, done = start.astype(np.float32), 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(linear_act(p[None], obs[None])[0]))
            total += reward
            done = terminated or truncated
        assert total == expected
    assert ours[0] == MAX_STEPS and ours[1:].min() < MAX_STEPS


def test_gym_returns_runs_the_real_environment():
    good, bad = np.array([0.0, 0.5, 1.0, 1.0, 0.0]), np.zeros(5)
    assert gym_returns(linear_act, good, episodes=2, seed=3).tolist() == [500.0, 500.0]
    assert gym_returns(linear_act, bad, episodes=1, seed=3)[0] < 20


def test_episodes_and_seeds():
    params = np.random.default_rng(2).normal(size=(3, 5))
    a = cartpole_returns(linear_act, params, episodes=4, seed=5)
    assert a.shape == (3, 4)
    np.testing.assert_array_equal(a, cartpole_returns(linear_act, params, episodes=4, seed=5))
    assert cartpole_returns(linear_act, params, 1, seed=0, max_steps=7).max() <= 7


def test_cartpole_batch_agrees_with_cartpole_returns():
    params = np.random.default_rng(4).normal(size=(8, 5))
    params[0] = [0.0, 0.5, 1.0, 1.0, 0.0]
    env = CartPoleBatch(8, seed=11)
    obs, total = env.reset(), np.zeros(8)
    while not env.done.all():
        obs, reward, terminated, truncated, = env.step(linear_act(params, obs))
        total += reward
        assert not np.any(terminated & truncated)
    assert env.t == MAX_STEPS  # the balancing row ran to the end and was truncated
    np.testing.assert_array_equal(total, cartpole_returns(linear_act, params, 1, seed=11)[:, 0])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="expected n to be an int > 0"):
        cartpole_reset(0, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"expected action of shape \(3,\), got \(2,\)"):
        env = CartPoleBatch(3)
        env.reset()
        env.step(np.zeros(2))
    with pytest.raises(ValueError, match="unknown environment 'CartPole-v99'"):
        gym_returns(linear_act, np.zeros(5), env_id="CartPole-v99")
    with pytest.raises(ValueError, match=r"policy expects \(4,\) observations"):
        gym_returns(linear_act, np.zeros(5), env_id="Acrobot-v1")
