"""The Differentiable Neural Computer (chapter 6), after Graves et al. (2016).

A DNC is a neural network (the *controller*, here an LSTM) that reads from and
writes to an external memory matrix. Everything it does to the memory is a
*soft* operation: a weighting over the memory's slots, so the whole machine is
differentiable and trained by backprop.

Sizes used throughout (all tensors are batch-first):

* ``B`` batch, ``N`` memory slots, ``W`` word size (width of one slot),
  ``R`` read heads.
* memory ``(B, N, W)``; usage and precedence ``(B, N)``; temporal link matrix
  ``(B, N, N)``; read weightings ``(B, R, N)``; write weighting ``(B, N)``.

The addressing mechanisms are small pure functions, each one equation of the
paper's Methods section:

* ``content_weighting``: softmax over slots of ``strength * cosine(key, M[i])``;
* ``retention``, ``update_usage``: how used each slot is, after free gates;
* ``allocation_weighting``: the least-used slot first, from sorted usage;
* ``write_weighting``: allocation vs content, under write and allocation gates;
* ``erase_and_add``: ``M <- M * (1 - w e^T) + w v^T``;
* ``update_precedence``, ``update_link``: the order in which slots were written;
* ``directional_weightings``: forward / backward along the links;
* ``read_weighting``, ``read_memory``: mix of backward / content / forward, then read.

``memory_step`` chains them into one time step and ``DNC`` wraps a controller
around it. Bad shapes raise ``ValueError`` naming the expected shape.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Dim = int | str  # a size that must match, or a name for "any size"


def _check(fn: str, name: str, x: object, expected: Sequence[Dim]) -> None:
    """Raise TypeError/ValueError unless ``x`` is a tensor of the expected shape."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: expected {name} to be a torch.Tensor, got {type(x).__name__}")
    shape = tuple(x.shape)
    ok = len(shape) == len(expected) and all(isinstance(e, str) or e == s for e, s in zip(expected, shape))
    if not ok:
        want = ", ".join(str(e) for e in expected)
        raise ValueError(f"{fn}: expected {name} of shape ({want}), got {shape}")


# --------------------------------------------------------------------------- content


def content_weighting(memory: Tensor, keys: Tensor, strengths: Tensor, eps: float = 1e-6) -> Tensor:
    """Content lookup: ``softmax_i(strength * cos(key, M[i]))``.

    Args:
        memory: (B, N, W).
        keys: (B, H, W), one key per head.
        strengths: (B, H), the key strengths beta >= 1 (larger = sharper).

    Returns:
        (B, H, N): for each head a probability distribution over the N slots.
    """
    _check("content_weighting", "memory", memory, ("batch", "N", "W"))
    b, n, w = memory.shape
    _check("content_weighting", "keys", keys, (b, "heads", w))
    _check("content_weighting", "strengths", strengths, (b, keys.shape[1]))
    dots = keys @ memory.transpose(1, 2)  # (B, H, N)
    norms = keys.norm(dim=-1, keepdim=True) * memory.norm(dim=-1).unsqueeze(1)  # (B, H, N)
    similarity = dots / (norms + eps)  # cosines in [-1, 1]
    return torch.softmax(strengths.unsqueeze(-1) * similarity, dim=-1)


# --------------------------------------------------------------------------- usage and allocation


def retention(read_weights: Tensor, free_gates: Tensor) -> Tensor:
    """Memory retention ``psi = prod_r (1 - f_r * w_r)``: how much of each slot is kept.

    Args:
        read_weights: (B, R, N), the previous step's read weightings.
        free_gates: (B, R) in [0, 1]; gate r frees what head r just read.

    Returns:
        (B, N) in [0, 1].
    """
    _check("retention", "read_weights", read_weights, ("batch", "R", "N"))
    b, r, _ = read_weights.shape
    _check("retention", "free_gates", free_gates, (b, r))
    return torch.prod(1 - free_gates.unsqueeze(-1) * read_weights, dim=1)


def update_usage(usage: Tensor, write_weights: Tensor, retention: Tensor) -> Tensor:
    """Usage ``u <- (u + w - u * w) * psi``: writing raises it, freeing lowers it.

    Args:
        usage: (B, N) in [0, 1], the previous usage.
        write_weights: (B, N), the previous step's write weighting.
        retention: (B, N), from ``retention``.

    Returns:
        (B, N), still in [0, 1] (``u + w - u w = 1 - (1 - u)(1 - w)``).
    """
    _check("update_usage", "usage", usage, ("batch", "N"))
    _check("update_usage", "write_weights", write_weights, tuple(usage.shape))
    _check("update_usage", "retention", retention, tuple(usage.shape))
    return (usage + write_weights - usage * write_weights) * retention


def allocation_weighting(usage: Tensor) -> Tensor:
    """Where to write new data: the least-used slots, from sorted usage.

    Sort the slots by usage, ascending (``phi``); then the j-th least-used slot
    gets ``a[phi_j] = (1 - u[phi_j]) * prod_{i<j} u[phi_i]``. A free slot
    (usage 0) takes everything it can; a fully used one (usage 1) gets nothing.

    Args:
        usage: (B, N) in [0, 1].

    Returns:
        (B, N), non-negative, summing to at most 1.
    """
    _check("allocation_weighting", "usage", usage, ("batch", "N"))
    sorted_usage, order = torch.sort(usage, dim=-1)
    before = torch.cumprod(F.pad(sorted_usage[:, :-1], (1, 0), value=1.0), dim=-1)  # prod_{i<j}, exclusive
    sorted_allocation = (1 - sorted_usage) * before
    return torch.zeros_like(usage).scatter(-1, order, sorted_allocation)  # undo the sort


def write_weighting(content: Tensor, allocation: Tensor, write_gate: Tensor, allocation_gate: Tensor) -> Tensor:
    """``w = g_w * (g_a * allocation + (1 - g_a) * content)``.

    Args:
        content: (B, N), the write head's content weighting.
        allocation: (B, N), from ``allocation_weighting``.
        write_gate: (B,) in [0, 1]; 0 means "write nothing this step".
        allocation_gate: (B,) in [0, 1]; 1 means "write to fresh slots", 0 "overwrite by content".

    Returns:
        (B, N), non-negative, summing to at most 1.
    """
    _check("write_weighting", "content", content, ("batch", "N"))
    _check("write_weighting", "allocation", allocation, tuple(content.shape))
    _check("write_weighting", "write_gate", write_gate, (content.shape[0],))
    _check("write_weighting", "allocation_gate", allocation_gate, (content.shape[0],))
    g_a = allocation_gate.unsqueeze(-1)
    return write_gate.unsqueeze(-1) * (g_a * allocation + (1 - g_a) * content)


def erase_and_add(memory: Tensor, write_weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """``M <- M * (1 - w e^T) + w v^T``: erase, then add, in proportion to the weighting.

    Args:
        memory: (B, N, W).
        write_weights: (B, N).
        erase: (B, W) in [0, 1], which parts of the word to clear.
        add: (B, W), the write vector.

    Returns:
        (B, N, W), the new memory.
    """
    _check("erase_and_add", "memory", memory, ("batch", "N", "W"))
    b, n, w = memory.shape
    _check("erase_and_add", "write_weights", write_weights, (b, n))
    _check("erase_and_add", "erase", erase, (b, w))
    _check("erase_and_add", "add", add, (b, w))
    ww = write_weights.unsqueeze(-1)  # (B, N, 1)
    return memory * (1 - ww * erase.unsqueeze(1)) + ww * add.unsqueeze(1)


# --------------------------------------------------------------------------- temporal links


def update_precedence(precedence: Tensor, write_weights: Tensor) -> Tensor:
    """``p <- (1 - sum_i w_i) p + w``: where the last write went (sums to at most 1).

    Args:
        precedence: (B, N).
        write_weights: (B, N).

    Returns:
        (B, N).
    """
    _check("update_precedence", "precedence", precedence, ("batch", "N"))
    _check("update_precedence", "write_weights", write_weights, tuple(precedence.shape))
    return (1 - write_weights.sum(-1, keepdim=True)) * precedence + write_weights


def update_link(link: Tensor, precedence: Tensor, write_weights: Tensor) -> Tensor:
    """Temporal link matrix: ``L[i, j] <- (1 - w_i - w_j) L[i, j] + w_i p_j``, zero diagonal.

    ``L[i, j]`` is the degree to which slot i was written right after slot j.
    Use the precedence *before* this step's write (the previous write's slots).

    Args:
        link: (B, N, N).
        precedence: (B, N), the previous precedence weighting.
        write_weights: (B, N), this step's write weighting.

    Returns:
        (B, N, N).
    """
    _check("update_link", "link", link, ("batch", "N", "N"))
    b, n, _ = link.shape
    if link.shape[2] != n:
        raise ValueError(f"update_link: expected link of shape (batch, N, N), got {tuple(link.shape)}")
    _check("update_link", "precedence", precedence, (b, n))
    _check("update_link", "write_weights", write_weights, (b, n))
    w_i = write_weights.unsqueeze(-1)  # (B, N, 1)
    w_j = write_weights.unsqueeze(-2)  # (B, 1, N)
    new = torch.addcmul((1 - w_i - w_j) * link, w_i, precedence.unsqueeze(-2))
    off_diagonal = 1 - torch.eye(n, dtype=link.dtype, device=link.device)
    return new * off_diagonal


def directional_weightings(link: Tensor, read_weights: Tensor) -> tuple[Tensor, Tensor]:
    """Follow the links one step: ``forward = L w``, ``backward = L^T w``.

    Args:
        link: (B, N, N).
        read_weights: (B, R, N), the previous read weightings.

    Returns:
        forward, backward: each (B, R, N). ``forward`` points to the slots written
        right after the ones read last step; ``backward`` to those written right before.
    """
    _check("directional_weightings", "link", link, ("batch", "N", "N"))
    b, n, _ = link.shape
    _check("directional_weightings", "read_weights", read_weights, (b, "R", n))
    forward = read_weights @ link.transpose(1, 2)  # f[r, i] = sum_j L[i, j] w[r, j]
    backward = read_weights @ link  # b[r, j] = sum_i L[i, j] w[r, i]
    return forward, backward


# --------------------------------------------------------------------------- reading


def read_weighting(backward: Tensor, content: Tensor, forward: Tensor, modes: Tensor) -> Tensor:
    """``w_r = pi_1 * backward + pi_2 * content + pi_3 * forward``.

    Args:
        backward, content, forward: (B, R, N).
        modes: (B, R, 3), the read modes: a softmax over (backward, content, forward).

    Returns:
        (B, R, N).
    """
    _check("read_weighting", "content", content, ("batch", "R", "N"))
    _check("read_weighting", "backward", backward, tuple(content.shape))
    _check("read_weighting", "forward", forward, tuple(content.shape))
    _check("read_weighting", "modes", modes, (content.shape[0], content.shape[1], 3))
    return modes[..., 0:1] * backward + modes[..., 1:2] * content + modes[..., 2:3] * forward


def read_memory(memory: Tensor, read_weights: Tensor) -> Tensor:
    """Read vectors ``r = M^T w``: a weighted average of the slots.

    Args:
        memory: (B, N, W).
        read_weights: (B, R, N).

    Returns:
        (B, R, W).
    """
    _check("read_memory", "memory", memory, ("batch", "N", "W"))
    _check("read_memory", "read_weights", read_weights, (memory.shape[0], "R", memory.shape[1]))
    return read_weights @ memory


# --------------------------------------------------------------------------- one memory step


class MemoryState(NamedTuple):
    """Everything the memory carries from one step to the next."""

    memory: Tensor  # (B, N, W)
    usage: Tensor  # (B, N)
    link: Tensor  # (B, N, N)
    precedence: Tensor  # (B, N)
    read_weights: Tensor  # (B, R, N)
    write_weights: Tensor  # (B, N)


class Interface(NamedTuple):
    """What the controller emits each step to drive the memory (after squashing)."""

    read_keys: Tensor  # (B, R, W)
    read_strengths: Tensor  # (B, R), >= 1
    write_key: Tensor  # (B, W)
    write_strength: Tensor  # (B,), >= 1
    erase: Tensor  # (B, W), in [0, 1]
    add: Tensor  # (B, W)
    free_gates: Tensor  # (B, R), in [0, 1]
    allocation_gate: Tensor  # (B,), in [0, 1]
    write_gate: Tensor  # (B,), in [0, 1]
    read_modes: Tensor  # (B, R, 3), rows sum to 1


def initial_state(
    batch: int, slots: int, word: int, reads: int, dtype: torch.dtype = torch.float32
) -> MemoryState:
    """An empty memory: all zeros (no usage, no links, nothing read or written)."""
    for name, value in [("batch", batch), ("slots", slots), ("word", word), ("reads", reads)]:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"initial_state: expected {name} to be a positive int, got {value!r}")
    z = torch.zeros
    return MemoryState(
        memory=z(batch, slots, word, dtype=dtype),
        usage=z(batch, slots, dtype=dtype),
        link=z(batch, slots, slots, dtype=dtype),
        precedence=z(batch, slots, dtype=dtype),
        read_weights=z(batch, reads, slots, dtype=dtype),
        write_weights=z(batch, slots, dtype=dtype),
    )


def interface_size(word: int, reads: int) -> int:
    """Length of the raw interface vector: R*W + 2W (keys, add) + R + 1 (strengths) + W + R + 2 (gates) + 3R (modes)."""
    return reads * word + 2 * word + reads + 1 + word + reads + 2 + 3 * reads


def split_interface(vector: Tensor, word: int, reads: int) -> Interface:
    """Cut the controller's raw interface vector into its parts and squash each.

    Layout: ``[read keys (R*W) | write key (W) | add (W) | strengths (R + 1) |
    erase (W) | free gates (R) | allocation gate | write gate | read modes (3R)]``.
    Strengths go through ``oneplus(x) = 1 + softplus(x)``, erase and gates
    through a sigmoid, read modes through a softmax (one call per block).

    Args:
        vector: (B, interface_size(word, reads)).
    """
    size = interface_size(word, reads)
    _check("split_interface", "vector", vector, ("batch", size))
    b, r, w = vector.shape[0], reads, word
    raw_keys, key_w, add, raw_strengths, raw_gates, raw_modes = torch.split(
        vector, [r * w, w, w, r + 1, w + r + 2, 3 * r], dim=-1
    )
    strengths = 1 + F.softplus(raw_strengths)
    gates = torch.sigmoid(raw_gates)
    return Interface(
        read_keys=raw_keys.reshape(b, r, w),
        read_strengths=strengths[:, :r],
        write_key=key_w,
        write_strength=strengths[:, r],
        erase=gates[:, :w],
        add=add,
        free_gates=gates[:, w : w + r],
        allocation_gate=gates[:, w + r],
        write_gate=gates[:, w + r + 1],
        read_modes=torch.softmax(raw_modes.reshape(b, r, 3), dim=-1),
    )


def memory_step(state: MemoryState, interface: Interface) -> tuple[Tensor, MemoryState]:
    """One time step of the memory, in the paper's order: free, allocate, write, link, read.

    Returns:
        read_vectors (B, R, W) and the new ``MemoryState``.
    """
    psi = retention(state.read_weights, interface.free_gates)
    usage = update_usage(state.usage, state.write_weights, psi)
    write_content = content_weighting(
        state.memory, interface.write_key.unsqueeze(1), interface.write_strength.unsqueeze(1)
    )[:, 0]
    write_weights = write_weighting(
        write_content, allocation_weighting(usage), interface.write_gate, interface.allocation_gate
    )
    memory = erase_and_add(state.memory, write_weights, interface.erase, interface.add)
    link = update_link(state.link, state.precedence, write_weights)
    precedence = update_precedence(state.precedence, write_weights)
    forward, backward = directional_weightings(link, state.read_weights)
    read_content = content_weighting(memory, interface.read_keys, interface.read_strengths)
    read_weights = read_weighting(backward, read_content, forward, interface.read_modes)
    new_state = MemoryState(memory, usage, link, precedence, read_weights, write_weights)
    return read_memory(memory, read_weights), new_state


# --------------------------------------------------------------------------- the model


class DNC(nn.Module):
    """An LSTM controller with an external memory of ``slots`` x ``word`` and ``reads`` read heads.

    Each step the controller sees the input and the previous step's read
    vectors, emits an interface vector that drives ``memory_step``, and the
    output combines its hidden state with what was just read.

    The number of slots is not a parameter of the network: ``forward`` takes
    a ``slots`` argument, so a DNC trained with 16 slots can run with 128.

    Args:
        input_size, output_size: widths of x_t and y_t.
        hidden_size: LSTM controller width.
        slots, word, reads: default memory size N, word size W, read heads R.
        seed: initial weights are drawn under ``torch.manual_seed(seed)`` in a forked RNG.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_size: int = 64,
        slots: int = 16,
        word: int = 8,
        reads: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.input_size, self.output_size, self.hidden_size = input_size, output_size, hidden_size
        self.slots, self.word, self.reads = slots, word, reads
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # LSTM gates from x_t (precomputed for all steps) and from [r_{t-1}, h_{t-1}]
            self.gates_x = nn.Linear(input_size, 4 * hidden_size)
            self.gates_rh = nn.Linear(reads * word + hidden_size, 4 * hidden_size, bias=False)
            self.interface = nn.Linear(hidden_size, interface_size(word, reads))
            self.output = nn.Linear(hidden_size + reads * word, output_size)

    def forward(self, x: Tensor, slots: int | None = None, trace: bool = False) -> Tensor | tuple[Tensor, dict]:
        """Run over a sequence.

        Args:
            x: (B, T, input_size).
            slots: memory size for this run (default: ``self.slots``).
            trace: also return a dict of per-step tensors for pictures:
                ``write_weights`` (B, T, N), ``read_weights`` (B, T, R, N),
                ``usage`` (B, T, N), ``read_modes`` (B, T, R, 3),
                ``write_gate`` and ``allocation_gate`` (B, T), and the final
                ``link`` (B, N, N) and ``memory`` (B, N, W).

        Returns:
            logits (B, T, output_size) [and the trace].
        """
        _check("DNC.forward", "x", x, ("batch", "T", self.input_size))
        b, steps, _ = x.shape
        n = self.slots if slots is None else slots
        state = initial_state(b, n, self.word, self.reads, dtype=x.dtype)
        h = c = x.new_zeros(b, self.hidden_size)
        reads = x.new_zeros(b, self.reads * self.word)
        gx = self.gates_x(x)  # (B, T, 4H), one matrix product for all steps
        hs, rs, records = [], [], []
        for t in range(steps):
            gates = gx[:, t] + self.gates_rh(torch.cat([reads, h], dim=-1))
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            iface = split_interface(self.interface(h), self.word, self.reads)
            read_vectors, state = memory_step(state, iface)
            reads = read_vectors.reshape(b, -1)
            hs.append(h)
            rs.append(reads)
            if trace:
                records.append((state.write_weights, state.read_weights, state.usage, iface.read_modes,
                                iface.write_gate, iface.allocation_gate))
        logits = self.output(torch.cat([torch.stack(hs, 1), torch.stack(rs, 1)], dim=-1))
        if not trace:
            return logits
        names = ["write_weights", "read_weights", "usage", "read_modes", "write_gate", "allocation_gate"]
        out = {name: torch.stack([r[k] for r in records], 1).detach() for k, name in enumerate(names)}
        out["link"], out["memory"] = state.link.detach(), state.memory.detach()
        return logits, out


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class LSTMBaseline(nn.Module):
    """A plain LSTM with a linear read-out: everything it remembers lives in its state.

    Args:
        input_size, output_size, hidden_size: widths.
        seed: initial weights are drawn under ``torch.manual_seed(seed)`` in a forked RNG.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 72, seed: int = 0) -> None:
        super().__init__()
        self.input_size = input_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
            self.output = nn.Linear(hidden_size, output_size)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, input_size) -> logits (B, T, output_size)."""
        _check("LSTMBaseline.forward", "x", x, ("batch", "T", self.input_size))
        return self.output(self.lstm(x)[0])


def bit_errors(logits: Tensor, targets: Tensor) -> Tensor:
    """Wrong bits per sequence when each output is thresholded at probability 1/2.

    Args:
        logits: (B, L, bits), the model's outputs on the recall steps.
        targets: (B, L, bits) of 0s and 1s.

    Returns:
        (B,) float: the number of wrong bits in each sequence.
    """
    _check("bit_errors", "logits", logits, ("batch", "L", "bits"))
    _check("bit_errors", "targets", targets, tuple(logits.shape))
    return ((logits > 0).to(targets.dtype) != targets).sum(dim=(1, 2)).float()
