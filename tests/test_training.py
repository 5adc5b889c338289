"""The floor's training pieces: mlp, fit, History, and many seeds at once."""

import numpy as np
import pytest
import torch

from companion.seeds import spread, stacked_mlp
from companion.training import History, clip_gradients, evaluate, fit, minibatches, mlp


def _data(n=120, d=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def test_mlp_shapes_and_seeding():
    net = mlp([5, 7, 3], activation="tanh", init="xavier", seed=1)
    assert net(torch.zeros(4, 5)).shape == (4, 3)
    same = mlp([5, 7, 3], activation="tanh", init="xavier", seed=1)
    other = mlp([5, 7, 3], activation="tanh", init="xavier", seed=2)
    assert torch.equal(net[0].weight, same[0].weight)
    assert not torch.equal(net[0].weight, other[0].weight)


@pytest.mark.parametrize("init,expected_var", [("he", 2 / 400), ("lecun", 1 / 400), ("xavier", 2 / 800)])
def test_init_variances(init, expected_var):
    w = mlp([400, 400, 2], init=init, seed=0)[0].weight
    assert w.var().item() == pytest.approx(expected_var, rel=0.05)
    assert torch.all(mlp([400, 400, 2], init=init)[0].bias == 0)


def test_mlp_leaves_the_global_generator_alone():
    state = torch.get_rng_state()
    mlp([64, 128, 10], seed=3)
    stacked_mlp([5, 8, 3], [0, 1])
    assert torch.equal(torch.get_rng_state(), state)


def test_stacked_mse_loss_is_each_seeds_own():
    x, _ = _data(n=40)
    target = torch.randn(40, 2, generator=torch.Generator().manual_seed(1))
    stacked = stacked_mlp([5, 6, 2], [0, 1])
    h = fit(stacked, x, target, epochs=2, batch_size=16, lr=0.01, loss="mse")
    alone = fit(mlp([5, 6, 2], seed=1), x, target, epochs=2, batch_size=16, lr=0.01, loss="mse", seed=1)
    np.testing.assert_allclose(h["loss"][:, 1], alone["loss"], rtol=1e-5)


def test_on_backward_sees_the_gradient_before_clipping():
    x, y = _data()
    seen = []

    def before(model, step):
        norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
        seen.append(float(norm))
        return {"grad_norm": float(norm)}

    h = fit(mlp([5, 16, 3], seed=0), x, y, epochs=2, batch_size=120, lr=0.01, clip=1e-4, on_backward=before)
    assert len(seen) == 2 and min(seen) > 1e-3  # unclipped: far above the threshold
    assert h["grad_norm"].shape == (3,) and np.isnan(h["grad_norm"][0])


def test_mlp_rejects_bad_sizes():
    with pytest.raises(ValueError, match="mlp: expected sizes with at least 2"):
        mlp([5])
    with pytest.raises(ValueError, match="activation"):
        mlp([5, 3], activation="swish")


def test_minibatches_cover_every_index_once():
    batches = list(minibatches(10, 3, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))


def test_fit_lowers_the_loss_and_records_history():
    x, y = _data()
    net = mlp([5, 16, 3], seed=0)
    history = fit(net, x, y, epochs=30, lr=1e-2, batch_size=32, eval_data=(x, y))
    assert history.step == list(range(31))
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history.final("eval_accuracy") > 0.9


def test_fit_rejects_bad_input():
    x, y = _data()
    with pytest.raises(ValueError, match=r"fit: expected x of shape \(n, n_inputs\)"):
        fit(mlp([5, 3]), x[None], y, epochs=1)
    with pytest.raises(ValueError, match="one entry per row"):
        fit(mlp([5, 3]), x, y[:-1], epochs=1)
    with pytest.raises(ValueError, match="loss"):
        fit(mlp([5, 3]), x, y, epochs=1, loss="hinge")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_stacked_seeds_train_exactly_as_alone(optimizer):
    x, y = _data()
    seeds = [3, 4, 7]
    stacked = stacked_mlp([5, 8, 3], seeds, activation="tanh")
    h_stacked = fit(stacked, x, y, epochs=3, batch_size=25, lr=0.05, optimizer=optimizer, clip=1.0)
    for i, s in enumerate(seeds):
        alone = mlp([5, 8, 3], activation="tanh", seed=s)
        h_alone = fit(alone, x, y, epochs=3, batch_size=25, lr=0.05, optimizer=optimizer, seed=s, clip=1.0)
        np.testing.assert_allclose(h_stacked["loss"][:, i], h_alone["loss"], rtol=1e-5, atol=1e-6)
        for a, b in zip(alone.parameters(), stacked.unstack(i).parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_stacked_evaluate_is_per_seed():
    x, y = _data()
    stacked = stacked_mlp([5, 8, 3], range(4))
    result = evaluate(stacked, x, y)
    assert result["accuracy"].shape == (4,)
    alone = evaluate(mlp([5, 8, 3], seed=2), x, y)
    assert result["accuracy"][2] == pytest.approx(alone["accuracy"])
    with pytest.raises(ValueError, match="StackedMLP: expected x of shape"):
        stacked(torch.zeros(2, 4, 5))


def test_clip_gradients_rescales_only_when_above():
    net = mlp([2, 1], seed=0)
    net[0].weight.grad = torch.tensor([[3.0, 4.0]])
    net[0].bias.grad = torch.tensor([0.0])
    assert clip_gradients(net, 10.0) == pytest.approx(5.0)
    torch.testing.assert_close(net[0].weight.grad, torch.tensor([[3.0, 4.0]]))  # untouched below
    clip_gradients(net, 1.0)
    torch.testing.assert_close(net[0].weight.grad, torch.tensor([[0.6, 0.8]]))


def test_history_pads_and_summarizes():
    h = History()
    h.log(0, loss=1.0)
    h.log(1, loss=0.5, accuracy=np.array([0.9, 0.8]))
    assert h["accuracy"].shape == (2, 2) and np.all(np.isnan(h["accuracy"][0]))
    assert "step" in h.table()
    with pytest.raises(KeyError, match="no metric"):
        h["nope"]


def test_spread():
    s = spread([0.9, 0.95, 1.0])
    assert (s.mean, s.min, s.max, s.n) == (pytest.approx(0.95), 0.9, 1.0, 3)
    assert s.format("{:.1%}") == "95.0% (90.0-100.0%)"
    assert s.wins([0.8, 0.99, 0.99]) == 2
    with pytest.raises(ValueError, match="at least one value"):
        spread([])
