"""companion.autograd.Value against torch.autograd and known derivatives."""

import math
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion.autograd import Value

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
