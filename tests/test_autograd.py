"""companion.autograd.Value against torch.autograd and known derivatives."""

import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion.autograd import Value, ValueMLP, draw_graph, graph_layout, squared_error, train_value_mlp

finite = st.floats(min_value=-5, max_value=5, allow_nan=False)


def random_expression(seed: int, n_inputs: int = 3, n_ops: int = 12):
    """Build one random expression twice: with Value and with float64 torch tensors.

    Operands are drawn from a pool of all earlier nodes, so nodes are reused
    (the case where gradients from several uses must add up).
    """
    rng = random.Random(seed)
    xs = [rng.uniform(-2, 2) for _ in range(n_inputs)]
    v_in = [Value(x) for x in xs]
    t_in = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    pool = list(zip(v_in, t_in))
    for _ in range(n_ops):
        (va, ta), (vb, tb) = rng.choice(pool), rng.choice(pool)
        c = rng.uniform(0.5, 2.0)
        op = rng.choice(["add", "sub", "mul", "div", "pow", "exp", "log", "tanh", "sigmoid", "relu", "rconst"])
        if op == "add":
            node = (va + vb, ta + tb)
        elif op == "sub":
            node = (va - vb, ta - tb)
        elif op == "mul":
            node = (va * vb, ta * tb)
        elif op == "div":  # keep the denominator away from 0
            node = (va / (vb * vb + 1), ta / (tb * tb + 1))
        elif op == "pow":
            node = (va**2, ta**2) if rng.random() < 0.5 else ((va * va + 1) ** -0.5, (ta * ta + 1) ** -0.5)
        elif op == "exp":
            node = (va.tanh().exp(), ta.tanh().exp())
        elif op == "log":
            node = ((va * va + 1).log(), (ta * ta + 1).log())
        elif op == "tanh":
            node = (va.tanh(), ta.tanh())
        elif op == "sigmoid":
            node = (va.sigmoid(), torch.sigmoid(ta))
        elif op == "relu":
            node = ((va + 0.1).relu(), torch.relu(ta + 0.1))
        else:  # plain numbers on the left
            node = (c - va * c + 1 / (1 + vb * vb), c - ta * c + 1 / (1 + tb * tb))
        pool.append(node)
    v_out = sum((v for v, _ in pool[-4:]), Value(0.0))
    t_out = sum(t for _, t in pool[-4:])
    return v_in, t_in, v_out, t_out


@pytest.mark.parametrize("seed", range(60))
def test_random_expressions_match_torch(seed):
    v_in, t_in, v_out, t_out = random_expression(seed)
    v_out.backward()
    t_out.backward()
    assert v_out.data == pytest.approx(t_out.item(), rel=1e-6, abs=1e-6)
    for v, t in zip(v_in, t_in):
        expected = 0.0 if t.grad is None else t.grad.item()
        assert v.grad == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_polynomial_derivative():
    x = Value(2.0)
    y = x * x + 3 * x  # dy/dx = 2x + 3
    y.backward()
    assert y.data == 10.0 and x.grad == 7.0


def test_node_used_twice_accumulates():
    a = Value(3.0)
    b = a + a  # db/da = 2
    b.backward()
    assert a.grad == 2.0


def test_backward_twice_gives_same_gradients():
    x = Value(1.5)
    y = (x * x).tanh()
    y.backward()
    first = x.grad
    y.backward()
    assert x.grad == first


@given(finite)
def test_unary_derivatives_closed_form(x):
    for fn, dfn in [
        (Value.tanh, lambda x: 1 - math.tanh(x) ** 2),
        (Value.exp, math.exp),
        (Value.sigmoid, lambda x: math.exp(-x) / (1 + math.exp(-x)) ** 2),
    ]:
        v = Value(x)
        fn(v).backward()
        assert v.grad == pytest.approx(dfn(x), rel=1e-9, abs=1e-12)


@given(finite, finite)
def test_numbers_mix_on_either_side(a, b):
    v = Value(a)
    for expr, expected in [(2 * v, 2 * a), (v + 1, a + 1), (1 - v, 1 - a), (v - b, a - b), (b * v, b * a)]:
        assert expr.data == pytest.approx(expected)


def test_reverse_division():
    x = Value(4.0)
    y = 2 / x  # dy/dx = -2 / x^2
    y.backward()
    assert y.data == 0.5 and x.grad == pytest.approx(-2 / 16)


def test_deep_chain_does_not_hit_recursion_limit():
    x = Value(0.5)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.backward()
    assert x.grad == 1.0


@pytest.mark.parametrize("bad", ["3", None, [1.0], True])
def test_non_numeric_operands_raise_type_error(bad):
    with pytest.raises(TypeError, match="expected a Value or a real number"):
        Value(1.0) + bad
    with pytest.raises(TypeError, match="expected a real number"):
        Value(bad)


def test_bad_exponent_and_log_domain():
    with pytest.raises(TypeError, match="exponent"):
        Value(2.0) ** Value(2.0)
    with pytest.raises(ValueError, match="positive"):
        Value(-1.0).log()
    with pytest.raises(ZeroDivisionError):
        Value(1.0) / 0


def test_backward_resets_while_torch_accumulates():
    x, t = Value(1.5), torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    y, u = (x * x).tanh(), (t * t).tanh()
    y.backward()
    y.backward()
    u.backward(retain_graph=True)
    u.backward()
    assert t.grad.item() == pytest.approx(2 * x.grad)


def neuron():
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2 = Value(-3.0, label="w1"), Value(1.0, label="w2")
    b = Value(6.88, label="b")
    o = (x1 * w1 + x2 * w2 + b).tanh()
    return o, (x1, w1, x2, w2, b)


def test_graph_layout_is_layered_and_uncrossed():
    o, leaves = neuron()
    pos = graph_layout(o)
    order = o.topological_order()
    assert len(pos) == len(order)
    assert pos[id(o)][0] == max(c for c, _ in pos.values())  # the output is rightmost
    for node in order:
        for parent in node._parents:
            assert pos[id(parent)][0] == pos[id(node)][0] - 1  # a tree: each edge spans one column
    assert [pos[id(v)][1] for v in leaves] == [0, 1, 2, 3, 4]  # inputs in operand order, one row each
    for node in order:
        if node._parents:
            assert pos[id(node)][1] == pytest.approx(sum(pos[id(p)][1] for p in node._parents) / len(node._parents))


def test_graph_layout_shared_node_and_long_chain():
    a = Value(1.0)
    y = a * a + a  # a is shared by two operations
    pos = graph_layout(y)
    assert pos[id(a)][0] == 0 and pos[id(y)][0] == 2
    z = a
    for _ in range(3000):  # no recursion limit
        z = z * 1.0
    assert graph_layout(z)[id(a)][0] == 0


def test_draw_graph_shows_op_and_label_in_each_node():
    import matplotlib

    matplotlib.use("Agg")
    o, _ = neuron()
    o.label = "o"
    o.backward()
    ax = draw_graph(o)
    texts = [t.get_text() for t in ax.texts]
    assert "o = tanh" in texts and "x1" in texts and texts.count("+") == 2 and texts.count("*") == 2
    assert any("grad -1.5" in t for t in texts)
    with pytest.raises(TypeError, match="expected a Value"):
        draw_graph(3.0)


def test_value_mlp_matches_torch_and_learns_xor():
    model = ValueMLP([2, 3, 1], seed=4)
    X, y = [[0, 0], [0, 1], [1, 0], [1, 1]], [[0], [1], [1], [0]]
    loss = squared_error(model, X, y)
    loss.backward()
    params = model.parameters()
    assert len(params) == 2 * 3 + 3 + 3 + 1
    W0 = torch.tensor([[n.w[i].data for n in model.layers[0]] for i in range(2)], dtype=torch.float64, requires_grad=True)
    b0 = torch.tensor([n.b.data for n in model.layers[0]], dtype=torch.float64, requires_grad=True)
    W1 = torch.tensor([[n.w[i].data for n in model.layers[1]] for i in range(3)], dtype=torch.float64, requires_grad=True)
    b1 = torch.tensor([n.b.data for n in model.layers[1]], dtype=torch.float64, requires_grad=True)
    out = torch.sigmoid(torch.tanh(torch.tensor(X, dtype=torch.float64) @ W0 + b0) @ W1 + b1)
    (0.5 * ((out - torch.tensor(y, dtype=torch.float64)) ** 2).sum()).backward()
    assert loss.data == pytest.approx(0.5 * ((out - torch.tensor(y)) ** 2).sum().item())
    expected = [g for n, (w, b) in enumerate(zip((W0, W1), (b0, b1)))
                for j in range(w.shape[1]) for g in [*w.grad[:, j].tolist(), b.grad[j].item()]]
    assert [p.grad for p in params] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    losses = train_value_mlp(ValueMLP([2, 4, 1], seed=0), X, y, steps=300, lr=1.0)
    assert len(losses) == 300 and losses[-1] < 0.05 < losses[0]


def test_train_value_mlp_takes_gradient_steps():
    model = ValueMLP([2, 2, 1], seed=1)
    X, y = [[0.5, -1.0]], [[1.0]]
    before = [p.data for p in model.parameters()]
    loss = squared_error(model, X, y)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    train_value_mlp(model, X, y, steps=1, lr=0.1)
    assert [p.data for p in model.parameters()] == pytest.approx([b - 0.1 * g for b, g in zip(before, grads)])


def test_value_mlp_bad_input():
    with pytest.raises(ValueError, match="activation"):
        ValueMLP([2, 1], activation="softsign")
    with pytest.raises(ValueError, match="at least two"):
        ValueMLP([2])
    with pytest.raises(ValueError, match="an example of 2 inputs, got 3"):
        ValueMLP([2, 1])([1, 2, 3])
    with pytest.raises(ValueError, match="lr"):
        train_value_mlp(ValueMLP([2, 1]), [[0, 0]], [[0]], steps=1, lr=0)


# -- the chapter's exercise checkers ------------------------------------------
def test_power_and_exp_checkers_pass_right_and_name_wrong():
    from companion.exercises import check

    right = check("ch01-power", lambda x, k, up, earlier: earlier + k * x ** (k - 1) * up, include_hidden=True)
    assert right.passed
    no_upstream = check("ch01-power", lambda x, k, up, earlier: earlier + k * x ** (k - 1))
    assert not no_upstream.passed and "out.grad" in no_upstream.message
    overwrite = check("ch01-power", lambda x, k, up, earlier: k * x ** (k - 1) * up)
    assert not overwrite.passed and "+=" in overwrite.message
    wrong_rule = check("ch01-power", lambda x, k, up, earlier: earlier + k * x**k * up)
    assert not wrong_rule.passed and "d(v^k)/dv" in wrong_rule.message
    assert check("ch01-exp", lambda x, up, earlier: earlier + math.exp(x) * up, include_hidden=True).passed
    assert not check("ch01-exp", lambda x, up, earlier: earlier + x * up).passed


def test_derivative_checker_hidden_cases_are_drawn():
    from companion.exercises import get

    exercise = get("ch01-derivative")
    a = [c.name for c in exercise.hidden_cases(np.random.default_rng(1))]
    b = [c.name for c in exercise.hidden_cases(np.random.default_rng(2))]
    assert a != b and a  # drawn afresh from each generator; no fixed hidden case ships
