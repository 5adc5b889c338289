"""companion.dnc: each addressing mechanism against a reference or an invariant, gradcheck, errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from companion import dnc
from companion.data import copy_task
from companion.exercises import check
from companion.measure import count_parameters

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
    model = dnc.DNC(n_inputs=5, n_outputs=3, hidden=16, slots=8, word=4, reads=2, seed=0)
    x = torch.randn(2, 7, 5)
    logits, trace = model(x, trace=True)
    assert logits.shape == (2, 7, 3)
    assert trace["write_weights"].shape == (2, 7, 8) and trace["read_weights"].shape == (2, 7, 2, 8)
    assert trace["usage"].shape == (2, 7, 8) and trace["link"].shape == (2, 8, 8)
    assert ((trace["usage"] >= 0) & (trace["usage"] <= 1)).all()
    big, big_trace = model(x, slots=32, trace=True)
    assert big.shape == (2, 7, 3) and big_trace["memory"].shape == (2, 32, 4)
    same = dnc.DNC(5, 3, hidden=16, slots=32, word=4, reads=2, seed=0)
    assert count_parameters(same) == count_parameters(model)
    torch.testing.assert_close(same(x), big)  # same seed, same weights, whatever the memory size


def test_dnc_learns_from_gradients():
    model = dnc.DNC(7, 6, hidden=16, slots=4, word=4, seed=1)
    x, y = copy_task(4, 2, generator=torch.Generator().manual_seed(0))
    loss = F.binary_cross_entropy_with_logits(model(x)[:, -2:], y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.interface.weight.grad.abs().sum() > 0 and model.gates_rh.grad.abs().sum() > 0


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
    with pytest.raises(ValueError, match=r"expected targets of shape \(batch, L, bits\), got \(2, 2\)"):
        dnc.bit_errors(logits, targets[0])
    with pytest.raises(ValueError, match=r"expected logits of shape \(2, 2, 2\)"):
        dnc.bit_errors(logits[:, :1], targets)
    lstm = dnc.LSTMBaseline(7, 6, hidden=10, seed=0)
    assert lstm(torch.zeros(3, 5, 7)).shape == (3, 5, 6)
    torch.testing.assert_close(dnc.LSTMBaseline(7, 6, hidden=10, seed=0)(torch.ones(1, 2, 7)), lstm(torch.ones(1, 2, 7)))


# --------------------------------------------------------------------------- one memory step, against the paper


def _reference_memory_step(state, iface):
    """Graves et al. (2016), Methods, written as loops over slots for batch row 0 (float64 numpy)."""
    import numpy as np

    M, u, L, p = (t[0].double().numpy() for t in (state.memory, state.usage, state.link, state.precedence))
    wr_prev, ww_prev = state.read_weights[0].double().numpy(), state.write_weights[0].double().numpy()
    f = {k: getattr(iface, k)[0].double().numpy() for k in iface._fields}
    n, w = M.shape
    r = wr_prev.shape[0]

    def cosine_softmax(mem, key, beta):
        sims = np.array([key @ mem[i] / (np.linalg.norm(key) * np.linalg.norm(mem[i]) + 1e-6) for i in range(n)])
        e = np.exp(beta * sims - np.max(beta * sims))
        return e / e.sum()

    psi = np.array([np.prod([1 - f["free_gates"][h] * wr_prev[h, i] for h in range(r)]) for i in range(n)])
    u = (u + ww_prev - u * ww_prev) * psi
    phi = sorted(range(n), key=lambda i: u[i])
    a = np.zeros(n)
    for j, slot in enumerate(phi):
        a[slot] = (1 - u[slot]) * np.prod([u[phi[i]] for i in range(j)])
    cw = cosine_softmax(M, f["write_key"], f["write_strength"])
    ga, gw = f["allocation_gate"], f["write_gate"]
    ww = gw * (ga * a + (1 - ga) * cw)
    M = np.array([[M[i, k] * (1 - ww[i] * f["erase"][k]) + ww[i] * f["add"][k] for k in range(w)] for i in range(n)])
    L = np.array([[0.0 if i == j else (1 - ww[i] - ww[j]) * L[i, j] + ww[i] * p[j] for j in range(n)]
                  for i in range(n)])
    p = (1 - ww.sum()) * p + ww
    reads, wr = [], []
    for h in range(r):
        fwd = np.array([sum(L[i, j] * wr_prev[h, j] for j in range(n)) for i in range(n)])  # written after
        bwd = np.array([sum(L[j, i] * wr_prev[h, j] for j in range(n)) for i in range(n)])  # written before
        c = cosine_softmax(M, f["read_keys"][h], f["read_strengths"][h])
        pi = f["read_modes"][h]  # (backward, content, forward)
        wr.append(pi[0] * bwd + pi[1] * c + pi[2] * fwd)
        reads.append(M.T @ wr[-1])
    return np.array(reads), dict(memory=M, usage=u, link=L, precedence=p, read_weights=np.array(wr), write_weights=ww)


@pytest.mark.parametrize("seed", range(5))
def test_memory_step_matches_the_papers_equations_written_as_loops(seed):
    g = torch.Generator().manual_seed(seed)
    b, n, w, r = 1, 5, 3, 2
    d = dict(dtype=torch.float64)
    state = dnc.MemoryState(torch.randn(b, n, w, generator=g, **d), torch.rand(b, n, generator=g, **d),
                            _weights(g, b, n, n) * (1 - torch.eye(n, **d)), _weights(g, b, n),
                            _weights(g, b, r, n), _weights(g, b, n))
    iface = dnc.split_interface(2 * torch.randn(b, dnc.interface_size(w, r), generator=g, **d), w, r)
    reads, new = dnc.memory_step(state, iface)
    expected_reads, expected = _reference_memory_step(state, iface)
    torch.testing.assert_close(reads[0], torch.tensor(expected_reads))
    for name, value in expected.items():
        torch.testing.assert_close(getattr(new, name)[0], torch.tensor(value), msg=name)


def test_a_forward_read_follows_the_link_and_a_backward_read_goes_back():
    """The chain 1 -> 3 -> 0 in the links, the head on 3: forward mode reads slot 0, backward mode slot 1."""
    n, w = 4, 2
    link = torch.zeros(1, n, n)
    link[0, 3, 1] = link[0, 0, 3] = 1.0  # 3 was written after 1, 0 after 3
    memory = torch.eye(n, w).unsqueeze(0) + torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    state = dnc.MemoryState(memory, torch.ones(1, n), link, torch.zeros(1, n),
                            F.one_hot(torch.tensor([[3]]), n).float(), torch.zeros(1, n))
    raw = torch.zeros(1, dnc.interface_size(w, 1))
    raw[0, -4] = -100.0  # write gate shut: nothing is written this step
    for mode, slot in [(2, 0), (0, 1)]:  # read modes are (backward, content, forward)
        modes = torch.full((3,), -50.0)
        modes[mode] = 50.0
        raw[0, -3:] = modes
        _, new = dnc.memory_step(state, dnc.split_interface(raw, w, 1))
        assert new.read_weights[0, 0].argmax().item() == slot and new.read_weights[0, 0, slot] > 0.99


# --------------------------------------------------------------------------- many DNCs at once, and ablations


def test_stacked_dncs_are_the_seeds_dncs():
    x, _ = copy_task(3, 4, generator=torch.Generator().manual_seed(0))
    seeds = [5, 1, 2]
    stacked = dnc.DNC(7, 6, hidden=16, slots=6, word=4, reads=2, seeds=seeds)
    out = stacked(x)
    assert out.shape == (3, 3, 9, 6) and stacked.n_seeds == 3
    for i, s in enumerate(seeds):
        torch.testing.assert_close(out[i], dnc.DNC(7, 6, hidden=16, slots=6, word=4, reads=2, seed=s)(x))
    assert not hasattr(dnc.DNC(7, 6, seed=0), "n_seeds")


def test_ablations_remove_their_mechanism():
    g = torch.Generator().manual_seed(0)
    iface = dnc.split_interface(torch.randn(4, dnc.interface_size(3, 2), generator=g), 3, 2)
    on, off = torch.ones(4), torch.zeros(4)
    assert torch.equal(dnc.ablate(iface, on, on, on).read_modes, iface.read_modes)
    assert (dnc.ablate(iface, off, on, on).allocation_gate == 0).all()
    assert torch.equal(dnc.ablate(iface, on, off, on).read_modes, torch.tensor([0.0, 1.0, 0.0]).expand(4, 2, 3))
    assert (dnc.ablate(iface, on, on, off).free_gates == 0).all()
    x, _ = copy_task(2, 5, generator=torch.Generator().manual_seed(1))
    names = [(), ("allocation",), ("links",), ("free_gates",)]
    model = dnc.DNC(7, 6, hidden=16, slots=8, word=4, seeds=[0] * 4, ablate=names)
    _, trace = model(x, trace=True)
    gates = trace["allocation_gate"].reshape(4, 2, -1)
    assert (gates[1] == 0).all() and (gates[0] > 0).all()
    modes = trace["read_modes"].reshape(4, 2, x.shape[1], 1, 3)
    assert (modes[2, ..., 1] == 1).all() and (modes[0, ..., 1] < 1).all()
    with pytest.raises(ValueError, match="expected each ablation to be one of"):
        dnc.DNC(7, 6, ablate=("links", "memory"))
    with pytest.raises(ValueError, match="one tuple of ablations per seed"):
        dnc.DNC(7, 6, seeds=[0, 1], ablate=[(), (), ()])


def test_an_ablated_dnc_without_free_gates_never_frees():
    x, _ = copy_task(2, 6, generator=torch.Generator().manual_seed(2))
    model = dnc.DNC(7, 6, hidden=16, slots=8, word=4, seeds=[3, 3], ablate=[(), ("free_gates",)])
    _, trace = model(x, trace=True)
    usage = trace["usage"].reshape(2, 2, x.shape[1], 8)
    assert (usage[1].diff(dim=1) >= -1e-6).all()  # usage never falls without freeing
    assert (usage[0].diff(dim=1) < -1e-4).any()  # with free gates it does


# --------------------------------------------------------------------------- the copy-task loop


def test_train_copy_is_deterministic_lowers_the_loss_and_trains_seeds_as_alone():
    def run(model, clip=10.0):
        return dnc.train_copy(model, 20, lr=2e-2, batch_size=8, max_length=2, clip=clip, eval_every=10,
                              progress=False)

    single = [run(dnc.DNC(7, 6, hidden=8, slots=4, word=4, seed=s)) for s in (0, 1)]
    again = run(dnc.DNC(7, 6, hidden=8, slots=4, word=4, seed=0))
    np.testing.assert_array_equal(single[0]["loss"], again["loss"])
    both = run(dnc.DNC(7, 6, hidden=8, slots=4, word=4, seeds=[0, 1]))
    assert both["loss"].shape == (20, 2)
    for i in range(2):
        np.testing.assert_allclose(both["loss"][:, i], single[i]["loss"], rtol=1e-3, atol=1e-4)
    assert single[0]["loss"][-5:].mean() < single[0]["loss"][:5].mean()
    evals = single[0]["eval_errors"]
    assert np.isfinite(evals[[9, 19]]).all() and np.isnan(evals[0])
    # with a tight clip every step is clipped: each network must still be clipped on its own
    both = run(dnc.DNC(7, 6, hidden=8, slots=4, word=4, seeds=[0, 1]), clip=0.05)
    alone = run(dnc.DNC(7, 6, hidden=8, slots=4, word=4, seed=1), clip=0.05)
    np.testing.assert_allclose(both["loss"][:, 1], alone["loss"], rtol=1e-3, atol=1e-4)


def test_train_copy_clips_each_networks_gradient_on_its_own():
    """A network whose gradient is small must not be scaled down because another one's is large."""
    model = dnc.DNC(7, 6, hidden=8, slots=4, word=2, seeds=[0, 1])
    x, y = copy_task(4, 2, generator=torch.Generator().manual_seed(0))
    logits = model(x)[..., -2:, :]
    loss = F.binary_cross_entropy_with_logits(logits, y.expand_as(logits), reduction="none").mean(dim=(1, 2, 3))
    (loss * torch.tensor([1e4, 1.0])).sum().backward()
    before = model.output.weight.grad[1].clone()
    from companion.training import clip_gradients

    norms = clip_gradients(model, 10.0)
    assert norms[0] > 10 and norms[1] < 10
    torch.testing.assert_close(model.output.weight.grad[1], before)


def test_evaluate_copy_counts_the_errors_of_a_perfect_and_a_silent_model():
    class Echo(torch.nn.Module):  # outputs the true answer: the input shifted by length + 1 steps
        def forward(self, x):
            length = (x.shape[1] - 1) // 2
            out = torch.zeros(x.shape[0], x.shape[1], 6)
            out[:, -length:] = 20 * (x[:, :length, :6] - 0.5)
            return out

    assert dnc.evaluate_copy(Echo(), 5) == 0.0
    silent = dnc.evaluate_copy(lambda x: -torch.ones(x.shape[0], x.shape[1], 6), 5, batch_size=256)
    assert abs(silent - 15) < 1.5  # half of the 30 bits are ones


def test_the_lstm_baselines_ship_with_the_package():
    from importlib.resources import files

    assert files("companion").joinpath("checkpoints", "lstm_copy.pt").is_file()
    models, info = dnc.load_lstm_baselines()
    assert len(models) == len(info["seeds"]) >= 5 and info["model"] == "lstm"
    assert all(dnc.evaluate_copy(m, 8) < 2 for m in models)  # they fit the training lengths


def test_select_copies_members_out_of_a_stacked_module():
    x, _ = copy_task(2, 3, generator=torch.Generator().manual_seed(0))
    stacked = dnc.DNC(7, 6, hidden=8, slots=4, word=2, seeds=[0, 1, 2], ablate=[(), ("links",), ()])
    with torch.no_grad():
        stacked.output.bias.add_(torch.arange(3.0)[:, None, None])  # make the members differ after init
    out = stacked(x)
    torch.testing.assert_close(stacked.select([2, 1])(x), out[[2, 1]])
    plain = stacked.select([1], stacked=False)
    assert plain.ablate == [("links",)] and not plain.stacked
    torch.testing.assert_close(plain(x), out[1])
