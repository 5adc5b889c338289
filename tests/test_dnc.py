"""companion.dnc: each addressing mechanism against a reference or an invariant, gradcheck, errors."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from companion import dnc
from companion.data import copy_task
from companion.exercises import check

SETTINGS = settings(max_examples=40, deadline=None)


def _weights(g: torch.Generator, *shape: int, dtype=torch.float64) -> torch.Tensor:
    """Random non-negative weightings over the last axis, summing to at most 1."""
    raw = torch.rand(*shape, generator=g, dtype=dtype)
    total = torch.rand(*shape[:-1], 1, generator=g, dtype=dtype)  # total mass in [0, 1)
    return raw / raw.sum(-1, keepdim=True) * total


sizes = st.tuples(st.integers(1, 4), st.integers(2, 9), st.integers(1, 6), st.integers(1, 3), st.integers(0, 10_000))


# --------------------------------------------------------------------------- content


def test_content_weighting_matches_a_loop_over_slots():
    g = torch.Generator().manual_seed(0)
    memory = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    keys = torch.randn(2, 2, 3, generator=g, dtype=torch.float64)
    strengths = 1 + 5 * torch.rand(2, 2, generator=g, dtype=torch.float64)
    got = dnc.content_weighting(memory, keys, strengths)
    for b in range(2):
        for h in range(2):
            sims = torch.stack([F.cosine_similarity(keys[b, h], memory[b, i], dim=0) for i in range(5)])
            torch.testing.assert_close(got[b, h], torch.softmax(strengths[b, h] * sims, dim=0), rtol=1e-5, atol=1e-6)


@SETTINGS
@given(sizes)
def test_content_weighting_is_a_softmax_over_slots(size):
    b, n, w, h, seed = size
    g = torch.Generator().manual_seed(seed)
    weights = dnc.content_weighting(
        torch.randn(b, n, w, generator=g), torch.randn(b, h, w, generator=g), 1 + 10 * torch.rand(b, h, generator=g)
    )
    assert weights.shape == (b, h, n)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(b, h))


def test_a_strong_key_picks_the_most_similar_slot():
    memory = torch.tensor([[[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]])
    key = torch.tensor([[[0.1, 2.0, 0.0]]])  # closest in angle to slot 1
    sharp = dnc.content_weighting(memory, key, torch.tensor([[100.0]]))
    flat = dnc.content_weighting(memory, key, torch.tensor([[1.0]]))
    assert sharp[0, 0].argmax() == 1 and sharp[0, 0, 1] > 0.99
    assert flat[0, 0].max() < 0.5


# --------------------------------------------------------------------------- usage and allocation


@SETTINGS
@given(sizes)
def test_usage_stays_in_unit_interval(size):
    b, n, _, r, seed = size
    g = torch.Generator().manual_seed(seed)
    usage = torch.rand(b, n, generator=g, dtype=torch.float64)
    for _ in range(5):
        psi = dnc.retention(_weights(g, b, r, n), torch.rand(b, r, generator=g, dtype=torch.float64))
        assert ((psi >= 0) & (psi <= 1)).all()
        usage = dnc.update_usage(usage, _weights(g, b, n), psi)
        assert ((usage >= 0) & (usage <= 1)).all()


def test_usage_rises_with_writes_and_falls_when_freed():
    usage = torch.tensor([[0.0, 0.5, 1.0]])
    written = dnc.update_usage(usage, torch.tensor([[1.0, 0.0, 0.0]]), torch.ones(1, 3))
    torch.testing.assert_close(written, torch.tensor([[1.0, 0.5, 1.0]]))
    psi = dnc.retention(torch.tensor([[[0.0, 0.0, 1.0]]]), torch.tensor([[1.0]]))  # free what head 0 read
    torch.testing.assert_close(dnc.update_usage(written, torch.zeros(1, 3), psi), torch.tensor([[1.0, 0.5, 0.0]]))


def _allocation_reference(usage: list[float]) -> list[float]:
    order = sorted(range(len(usage)), key=lambda i: usage[i])
    out, before = [0.0] * len(usage), 1.0
    for j in order:
        out[j] = (1 - usage[j]) * before
        before *= usage[j]
    return out


def test_allocation_matches_the_formula_by_hand():
    usage = torch.tensor([[0.9, 0.2, 1.0, 0.5]], dtype=torch.float64)
    expected = torch.tensor([_allocation_reference(usage[0].tolist())], dtype=torch.float64)
    torch.testing.assert_close(dnc.allocation_weighting(usage), expected)
    # by hand: 0.8 to slot 1 (least used), 0.2 * 0.5 to slot 3, 0.2 * 0.5 * 0.1 to slot 0, nothing to slot 2
    torch.testing.assert_close(expected, torch.tensor([[0.01, 0.8, 0.0, 0.1]], dtype=torch.float64))


@SETTINGS
@given(sizes)
def test_allocation_prefers_the_least_used_slot_and_skips_full_ones(size):
    b, n, _, _, seed = size
    g = torch.Generator().manual_seed(seed)
    usage = torch.rand(b, n, generator=g, dtype=torch.float64)
    usage[:, 0] = 1.0  # slot 0 is full
    allocation = dnc.allocation_weighting(usage)
    assert (allocation >= 0).all() and (allocation.sum(-1) <= 1 + 1e-12).all()
    assert (allocation[:, 0] == 0).all()
    if n > 1:
        assert (allocation.argmax(-1) == usage.argmin(-1)).all()
    for row_usage, row in zip(usage, allocation):
        torch.testing.assert_close(row, torch.tensor(_allocation_reference(row_usage.tolist()), dtype=torch.float64))


@SETTINGS
@given(sizes)
def test_write_weighting_is_non_negative_and_sums_to_at_most_one(size):
    b, n, _, _, seed = size
    g = torch.Generator().manual_seed(seed)
    content = torch.softmax(torch.randn(b, n, generator=g), -1)
    allocation = dnc.allocation_weighting(torch.rand(b, n, generator=g))
    w = dnc.write_weighting(content, allocation, torch.rand(b, generator=g), torch.rand(b, generator=g))
    assert (w >= 0).all() and (w.sum(-1) <= 1 + 1e-6).all()


def test_write_gates_choose_between_allocation_and_content():
    content, allocation = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    one, zero = torch.ones(1), torch.zeros(1)
    torch.testing.assert_close(dnc.write_weighting(content, allocation, one, one), allocation)
    torch.testing.assert_close(dnc.write_weighting(content, allocation, one, zero), content)
    torch.testing.assert_close(dnc.write_weighting(content, allocation, zero, one), torch.zeros(1, 2))


def test_erase_and_add_matches_a_loop():
    g = torch.Generator().manual_seed(1)
    memory = torch.randn(2, 4, 3, generator=g)
    w, e, v = _weights(g, 2, 4, dtype=torch.float32), torch.rand(2, 3, generator=g), torch.randn(2, 3, generator=g)
    got = dnc.erase_and_add(memory, w, e, v)
    for b in range(2):
        for i in range(4):
            torch.testing.assert_close(got[b, i], memory[b, i] * (1 - w[b, i] * e[b]) + w[b, i] * v[b])
    # a full write with a full erase replaces the slot
    one_hot = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    out = dnc.erase_and_add(memory[:1], one_hot, torch.ones(1, 3), v[:1])
    torch.testing.assert_close(out[0, 1], v[0])
    torch.testing.assert_close(out[0, [0, 2, 3]], memory[0, [0, 2, 3]])


# --------------------------------------------------------------------------- temporal links


@SETTINGS
@given(sizes)
def test_link_and_precedence_invariants_over_many_writes(size):
    b, n, _, _, seed = size
    g = torch.Generator().manual_seed(seed)
    link = torch.zeros(b, n, n, dtype=torch.float64)
    precedence = torch.zeros(b, n, dtype=torch.float64)
    for _ in range(6):
        w = _weights(g, b, n)
        link = dnc.update_link(link, precedence, w)
        precedence = dnc.update_precedence(precedence, w)
        assert (torch.diagonal(link, dim1=1, dim2=2) == 0).all()
        assert (link >= -1e-12).all()
        assert (link.sum(-1) <= 1 + 1e-9).all() and (link.sum(-2) <= 1 + 1e-9).all()
        assert (precedence >= 0).all() and (precedence.sum(-1) <= 1 + 1e-9).all()


def test_after_writing_a_b_c_forward_from_a_points_to_b():
    n, (a, b, c) = 6, (4, 0, 3)
    link, precedence = torch.zeros(1, n, n), torch.zeros(1, n)
    for slot in (a, b, c):
        w = F.one_hot(torch.tensor([slot]), n).float()
        link = dnc.update_link(link, precedence, w)
        precedence = dnc.update_precedence(precedence, w)
    at = lambda slot: F.one_hot(torch.tensor([[slot]]), n).float()  # noqa: E731  (1, 1, N)
    forward, backward = dnc.directional_weightings(link, at(a))
    torch.testing.assert_close(forward, at(b))
    torch.testing.assert_close(backward, torch.zeros(1, 1, n))  # nothing was written before A
    forward, backward = dnc.directional_weightings(link, at(c))
    torch.testing.assert_close(backward, at(b))
    torch.testing.assert_close(forward, torch.zeros(1, 1, n))  # nothing after C
    torch.testing.assert_close(precedence, at(c)[0])


# --------------------------------------------------------------------------- reading


@SETTINGS
@given(sizes)
def test_read_weighting_is_non_negative_and_sums_to_at_most_one(size):
    b, n, _, r, seed = size
    g = torch.Generator().manual_seed(seed)
    modes = torch.softmax(torch.randn(b, r, 3, generator=g), -1)
    w = dnc.read_weighting(_weights(g, b, r, n), _weights(g, b, r, n), _weights(g, b, r, n), modes)
    assert (w >= 0).all() and (w.sum(-1) <= 1 + 1e-9).all()


def test_read_memory_is_a_weighted_sum_of_slots():
    g = torch.Generator().manual_seed(2)
    memory, w = torch.randn(2, 5, 3, generator=g), _weights(g, 2, 2, 5, dtype=torch.float32)
    got = dnc.read_memory(memory, w)
    torch.testing.assert_close(got[1, 0], sum(w[1, 0, i] * memory[1, i] for i in range(5)))


# --------------------------------------------------------------------------- a whole step


def test_split_interface_ranges():
    word, reads = 4, 2
    iface = dnc.split_interface(10 * torch.randn(3, dnc.interface_size(word, reads)), word, reads)
    assert iface.read_keys.shape == (3, reads, word) and iface.read_modes.shape == (3, reads, 3)
    assert (iface.read_strengths >= 1).all() and (iface.write_strength >= 1).all()
    for gate in (iface.erase, iface.free_gates, iface.allocation_gate, iface.write_gate):
        assert ((gate >= 0) & (gate <= 1)).all()
    torch.testing.assert_close(iface.read_modes.sum(-1), torch.ones(3, reads))


def test_gradcheck_through_one_memory_step():
    b, n, w, r = 1, 4, 3, 2
    g = torch.Generator().manual_seed(3)
    d = dict(dtype=torch.float64)
    memory = torch.randn(b, n, w, generator=g, **d).requires_grad_()
    usage = (0.05 + 0.9 * torch.rand(b, n, generator=g, **d)).requires_grad_()  # distinct, no sort ties
    link0 = _weights(g, b, n, n) * (1 - torch.eye(n, **d))
    link = link0.requires_grad_()
    precedence = _weights(g, b, n).requires_grad_()
    read_weights = _weights(g, b, r, n).requires_grad_()
    write_weights = _weights(g, b, n).requires_grad_()
    raw = torch.randn(b, dnc.interface_size(w, r), generator=g, **d).requires_grad_()

    def step(memory, usage, link, precedence, read_weights, write_weights, raw):
        state = dnc.MemoryState(memory, usage, link, precedence, read_weights, write_weights)
        reads, new = dnc.memory_step(state, dnc.split_interface(raw, w, r))
        return (reads, *new)

    inputs = (memory, usage, link, precedence, read_weights, write_weights, raw)
    assert torch.autograd.gradcheck(step, inputs, eps=1e-6, atol=1e-5)


def test_dnc_shapes_trace_and_memory_size_is_not_a_parameter():
    model = dnc.DNC(input_size=5, output_size=3, hidden_size=16, slots=8, word=4, reads=2, seed=0)
    x = torch.randn(2, 7, 5)
    logits, trace = model(x, trace=True)
    assert logits.shape == (2, 7, 3)
    assert trace["write_weights"].shape == (2, 7, 8) and trace["read_weights"].shape == (2, 7, 2, 8)
    assert trace["usage"].shape == (2, 7, 8) and trace["link"].shape == (2, 8, 8)
    assert ((trace["usage"] >= 0) & (trace["usage"] <= 1)).all()
    big, big_trace = model(x, slots=32, trace=True)
    assert big.shape == (2, 7, 3) and big_trace["memory"].shape == (2, 32, 4)
    same = dnc.DNC(5, 3, hidden_size=16, slots=32, word=4, reads=2, seed=0)
    assert dnc.count_parameters(same) == dnc.count_parameters(model)
    torch.testing.assert_close(same(x), big)  # same seed, same weights, whatever the memory size


def test_dnc_learns_from_gradients():
    model = dnc.DNC(7, 6, hidden_size=16, slots=4, word=4, seed=1)
    x, y = copy_task(4, 2, generator=torch.Generator().manual_seed(0))
    loss = F.binary_cross_entropy_with_logits(model(x)[:, -2:], y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.interface.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: dnc.content_weighting(torch.zeros(16, 8), torch.zeros(1, 1, 8), torch.ones(1, 1)),
         r"expected memory of shape \(batch, N, W\), got \(16, 8\)"),
        (lambda: dnc.content_weighting(torch.zeros(4, 16, 8), torch.zeros(4, 1, 6), torch.ones(4, 1)),
         r"expected keys of shape \(4, heads, 8\), got \(4, 1, 6\)"),
        (lambda: dnc.allocation_weighting(torch.zeros(16)), r"expected usage of shape \(batch, N\), got \(16,\)"),
        (lambda: dnc.update_link(torch.zeros(2, 4, 4), torch.zeros(2, 5), torch.zeros(2, 4)),
         r"expected precedence of shape \(2, 4\), got \(2, 5\)"),
        (lambda: dnc.erase_and_add(torch.zeros(2, 4, 3), torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(3)),
         r"expected add of shape \(2, 3\), got \(3,\)"),
        (lambda: dnc.read_weighting(*[torch.zeros(1, 1, 4)] * 3, torch.zeros(1, 1, 2)),
         r"expected modes of shape \(1, 1, 3\), got \(1, 1, 2\)"),
        (lambda: dnc.split_interface(torch.zeros(2, 5), word=4, reads=1), r"expected vector of shape \(batch, 24\), got \(2, 5\)"),
        (lambda: dnc.DNC(7, 6)(torch.zeros(2, 3, 5)), r"expected x of shape \(batch, T, 7\), got \(2, 3, 5\)"),
        (lambda: copy_task(4, 0), r"expected length to be a positive int"),
    ],
)
def test_wrong_shapes_raise_value_error_naming_the_expected_shape(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_non_tensor_raises_type_error():
    with pytest.raises(TypeError, match="expected usage to be a torch.Tensor, got list"):
        dnc.allocation_weighting([[0.1, 0.2]])


# --------------------------------------------------------------------------- data and exercises


def test_copy_task_layout():
    x, y = copy_task(3, 4, bits=6, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 9, 7) and y.shape == (3, 4, 6)
    torch.testing.assert_close(x[:, :4, :6], y)
    assert (x[:, 4, 6] == 1).all() and x[:, 4, :6].sum() == 0 and x[:, :4, 6].sum() == 0
    assert x[:, 5:].sum() == 0
    x2, _ = copy_task(3, 4, bits=6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, x2)


def test_content_lookup_exercise_accepts_the_reference_and_rejects_a_wrong_answer():
    assert check("ch06-content-lookup", dnc.content_weighting, include_hidden=True).passed

    def dot_product_lookup(memory, keys, strengths):  # forgets to normalize
        return torch.softmax(strengths.unsqueeze(-1) * (keys @ memory.transpose(1, 2)), dim=-1)

    result = check("ch06-content-lookup", dot_product_lookup)
    assert not result.passed
    assert "First failure, case 'one head, 4 slots of width 3'" in result.message
    assert "expected array" in result.message and "received array" in result.message and "Hint:" in result.message


def test_bit_errors_and_lstm_baseline():
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]]])
    logits = torch.tensor([[[2.0, -1.0], [-3.0, 0.5]], [[-1.0, 1.0], [1.0, 1.0]]])
    torch.testing.assert_close(dnc.bit_errors(logits, targets), torch.tensor([0.0, 3.0]))
    with pytest.raises(ValueError, match=r"expected targets of shape \(2, 2, 2\), got \(2, 2\)"):
        dnc.bit_errors(logits, targets[0])
    lstm = dnc.LSTMBaseline(7, 6, hidden_size=10, seed=0)
    assert lstm(torch.zeros(3, 5, 7)).shape == (3, 5, 6)
    torch.testing.assert_close(dnc.LSTMBaseline(7, 6, hidden_size=10, seed=0)(torch.ones(1, 2, 7)), lstm(torch.ones(1, 2, 7)))
