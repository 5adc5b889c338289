"""Chapter 14's cost model: the hand counts against torch's counter, the energy constants,
and a row (or a stated reason) for every rule a chapter module trains."""

import importlib
import inspect

import numpy as np
import pytest
import torch

from companion import bayes, som
from companion import feedback as fb
from companion import forward_forward as ff
from companion import policy_gradient as pg
from companion import scoreboard as sb

SIZES = [7, 5, 4, 3]


def _batch(n=6, d=7, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, n, d, generator=g), torch.randint(0, c, (1, n), generator=g)


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "readout", "dni", "cdni"])
@pytest.mark.parametrize("sizes", [SIZES, [7, 3], [5, 9, 2]])
def test_feedback_rules_count_what_one_step_computes(rule, sizes):
    x, y = _batch(d=sizes[0], c=sizes[-1])
    net = fb.stacked_net(sizes, [0])
    back = fb.feedback_matrices(net, rule)
    sg = fb.synthetic_gradients(net, rule == "cdni") if rule in ("dni", "cdni") else None
    measured = sb.measured_macs(lambda: fb.train_step_updates(net, x, y, rule, back, sg))
    assert measured / x.shape[1] == sb.macs(rule, sizes)


def test_logreg_is_backprop_on_one_layer():
    x, y = _batch()
    net = fb.stacked_net([7, 3], [0])
    measured = sb.measured_macs(lambda: fb.train_step_updates(net, x, y, "bp", [None], None))
    assert measured / 6 == sb.macs("logreg", [7, 3]) == 2 * 21


def test_forward_forward_count():
    nets = ff.StackedFFNet([7, 5, 4], seeds=[0])
    pos, neg = torch.rand(1, 6, 7), torch.rand(1, 6, 7)

    def step():
        a, b = pos, neg
        for layer in range(2):
            a, b, _ = nets.train_step(layer, a, b)

    assert sb.measured_macs(step) / 6 == sb.macs("ff", [7, 5, 4])


def test_bayes_by_backprop_count():
    x, y = _batch()
    nets = bayes.BayesMLP(SIZES, n_seeds=1)
    step = lambda: torch.nn.functional.cross_entropy(nets(x[0])[0], y[0]).backward()  # noqa: E731
    assert sb.measured_macs(step) / 6 == sb.macs("bbb", SIZES)


def test_som_count():
    X = torch.rand(8, 7)
    assert sb.measured_macs(lambda: som.train_som(X, 2, 3, epochs=1, batch_size=8)) / 8 == sb.macs("som", [7, 6])


def test_es_count_forward_part():
    X, y = torch.rand(20, 7), torch.randint(0, 3, (20,))
    sizes, P, b = [7, 4, 3], 6, 5
    measured = sb.measured_macs(lambda: sb.train_es_classifier(sizes, X, y, seeds=[0, 1], generations=1,
                                                                population=P, batch_size=b))
    numpy_part = P * sb.parameter_count(sizes) / b  # es_gradient: noise^T @ fitness, in numpy
    assert measured / (2 * b) == pytest.approx(sb.macs("es", sizes, population=P, batch_size=b) - numpy_part)


def test_reinforce_count_torch_part():
    X, y = torch.rand(16, 7), torch.randint(0, 3, (16,))
    sizes = [7, 5, 3]
    measured = sb.measured_macs(lambda: pg.train_reinforce(sb.DigitsBandit(X, y, n_classes=3), sizes, [0], steps=16,
                                                           episodes=16, weights="time_mean", eval_every=10**6,
                                                           eval_episodes=1))
    assert measured / 16 == sb.macs("reinforce", sizes) - sb.forward_macs(sizes)  # sampling runs in numpy


def test_competitive_count_matches_the_rule():
    # k distances of width d, and one winner moved: k d + d
    assert sb.macs("competitive", [64, 100]) == 64 * 100 + 64


def test_held_words_of_backprop_is_the_forward_cache():
    x, _ = _batch()
    net = fb.stacked_net(SIZES, [0])
    cache = fb.forward(net, x)
    assert sum(a.numel() for a in cache.inputs) / 6 == sb.held_words("bp", SIZES)


def test_energy_model_reproduces_its_constants():
    assert sb.ENERGY_PJ["fp32_mult"] == 3.7 and sb.ENERGY_PJ["dram_32bit"] == 640.0
    assert sb.energy_per_example(1, 0) == pytest.approx((3.7 + 0.9) * 1e-12)
    assert sb.energy_per_example(0, 1, memory="sram") == pytest.approx(5.0e-12)
    assert sb.energy_per_example(0, 1, memory="dram") == pytest.approx(640e-12)
    assert sb.energy_per_example(0, 0, adds=1) == pytest.approx(0.9e-12)
    with pytest.raises(ValueError, match="memory"):
        sb.energy_per_example(1, 1, memory="flash")
    with pytest.raises(ValueError, match="macs"):
        sb.energy_per_example(-1, 1)


def test_traffic_falls_with_the_batch_for_minibatch_rules():
    small, large = (sb.traffic_words("bp", SIZES, batch_size=b) for b in (1, 1000))
    assert small > large > 2 * sb.held_words("bp", SIZES)


def test_update_time_model():
    assert sb.update_time("bp", 3, 3) == pytest.approx(sb.update_time("bp", 3, 1))  # locked
    assert sb.update_time("dni", 3, 3) < sb.update_time("dni", 3, 1) / 2
    assert sb.update_time("es", 3, 50, population=50) == 3.0
    with pytest.raises(ValueError, match="one per layer"):
        sb.update_time("bp", 3, 2)


def test_digits_bandit_rewards_the_right_label():
    X, y = torch.rand(4, 3), torch.tensor([0, 1, 2, 1])
    env = sb.DigitsBandit(X, y, n_classes=3)
    state = np.arange(4, dtype=float)[:, None]
    _, reward, done = env.step(state, np.array([0, 0, 2, 1]))
    assert reward.tolist() == [1.0, 0.0, 1.0, 1.0] and done.all()
    assert np.allclose(env.observe(state), X.numpy())


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="rule"):
        sb.macs("hebb", SIZES)
    with pytest.raises(ValueError, match="sizes"):
        sb.macs("bp", [7])
    with pytest.raises(ValueError, match="population"):
        sb.macs("es", SIZES)
    with pytest.raises(ValueError, match="at least one seed"):
        sb.train_es_classifier([7, 3], torch.rand(4, 7), torch.zeros(4, dtype=torch.long), seeds=[], generations=1)
    with pytest.raises(ValueError, match="rows of 2 cells"):
        sb.markdown_table(["a", "b"], [[1]])


CHAPTER_MODULES = ["autograd", "backprop", "autoencoders", "gan", "dnc", "forward_forward", "es", "feedback",
                   "policy_gradient", "hebbian", "som", "bayes"]


def _training_entry_points():
    """Every public function named train*/fit*/*kmeans and every ask/tell optimizer of the chapter modules."""
    found = set()
    for name in CHAPTER_MODULES:
        module = importlib.import_module(f"companion.{name}")
        for attr, obj in vars(module).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) and (attr.startswith(("train", "fit")) or attr.endswith("kmeans")):
                found.add(f"{name}.{attr}")
            if inspect.isclass(obj) and (hasattr(obj, "tell") or attr == "DistributedES"):
                found.add(f"{name}.{attr}")
    found.add("hebbian.spiking_digits")
    return found


def test_every_rule_a_chapter_trains_has_a_row_or_a_reason():
    sources = {r.source.split("(")[0] for r in sb.RULES.values()}
    missing = _training_entry_points() - sources - set(sb.NOT_ON_THE_SCOREBOARD)
    assert not missing, f"add a scoreboard row or a reason in NOT_ON_THE_SCOREBOARD for {sorted(missing)}"


def test_every_feedback_rule_has_a_row():
    assert set(fb.RULES) <= set(sb.RULES)


def test_reasons_name_real_entry_points():
    stale = set(sb.NOT_ON_THE_SCOREBOARD) - _training_entry_points()
    assert not stale, f"NOT_ON_THE_SCOREBOARD lists entry points that no longer exist: {sorted(stale)}"


def test_parameter_traffic_counts_what_each_rule_reads_and_trains():
    P = sb.parameter_count(SIZES)
    above_first = sb.forward_macs(SIZES) - 7 * 5
    assert sb.parameter_traffic("bp", SIZES) == P + above_first + sb.ADAM_TOUCHES * P
    assert sb.parameter_traffic("dfa", SIZES) == P + 3 * (5 + 4) + sb.ADAM_TOUCHES * P
    assert sb.parameter_traffic("readout", SIZES) == P + sb.ADAM_TOUCHES * (4 * 3 + 3)  # only the top learns
    assert sb.parameter_traffic("es", SIZES, population=10) == 10 * P + sb.ADAM_TOUCHES * P
    with pytest.raises(ValueError, match="online"):
        sb.parameter_traffic("stdp", SIZES)


def test_update_locking():
    assert [sb.locking_phases(r, 3) for r in ("bp", "dfa", "dni", "ff", "es")] == [5, 3, 1, 1, 3]
    assert sb.locking_phases("logreg", 1) == 1
