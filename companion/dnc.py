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

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from companion import training
from companion._checks import check_choice, check_positive, check_tensor
from companion.data import copy_task
from companion.seeds import StackedLinear

def _check(fn: str, name: str, x: object, expected: tuple) -> None:
    """Raise TypeError/ValueError unless ``x`` is a tensor of the expected shape (names match any size)."""
    check_tensor(fn, name, x, shape=expected)


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
        check_positive("initial_state", name, value, integer=True)
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


# --------------------------------------------------------------------------- ablations

ABLATIONS = ("allocation", "links", "free_gates")
"""Mechanisms a DNC can be built without (chapter 6, "Which mechanism does the work"):

* ``"allocation"``: the allocation gate is held at 0, so every write goes where the
  write key's content lookup points;
* ``"links"``: the read modes are held at (0, 1, 0), so every read is a content lookup;
* ``"free_gates"``: the free gates are held at 0, so no slot is ever freed.
"""


def ablate(interface: Interface, allocation: Tensor, links: Tensor, free_gates: Tensor) -> Interface:
    """Switch mechanisms off per batch row: each mask (B,) is 1 to keep a mechanism, 0 to remove it."""
    modes = interface.read_modes
    content_only = torch.zeros_like(modes)
    content_only[..., 1] = 1.0
    keep = links[:, None, None]
    return interface._replace(
        allocation_gate=interface.allocation_gate * allocation,
        read_modes=keep * modes + (1 - keep) * content_only,
        free_gates=interface.free_gates * free_gates[:, None],
    )


# --------------------------------------------------------------------------- the model


class DNC(nn.Module):
    """An LSTM controller with an external memory of ``slots`` x ``word`` and ``reads`` read heads.

    Each step the controller sees the input and the previous step's read
    vectors, emits an interface vector that drives ``memory_step``, and the
    output combines its hidden state with what was just read.

    The number of slots is not a parameter of the network: ``forward`` takes
    a ``slots`` argument, so a DNC trained with 16 slots can run with 128.

    Many DNCs at once: with ``seeds=[s1, ..., sk]`` the module holds k DNCs
    (DNC i starts from exactly the weights ``DNC(..., seed=seeds[i])`` has)
    and runs them as one: the controllers' matrix products are batched over
    the k networks and the k memories are one memory batch of k * B rows.
    ``ablate`` then gives each of the k networks its own mechanisms to remove
    (one tuple of names from ``ABLATIONS`` per network). Chapter 6,
    "Which mechanism does the work".

    Args:
        n_inputs, n_outputs: widths of x_t and y_t.
        hidden: LSTM controller width.
        slots, word, reads: default memory size N, word size W, read heads R.
        seed: initial weights are drawn under ``torch.manual_seed(seed)`` in a forked RNG.
        seeds: k seeds for k networks in one module (then ``seed`` is ignored).
        ablate: names from ``ABLATIONS`` (one network), or one tuple per seed.
    """

    def __init__(self, n_inputs: int, n_outputs: int, hidden: int = 64, slots: int = 16, word: int = 8,
                 reads: int = 1, seed: int = 0, seeds: Sequence[int] | None = None,
                 ablate: Sequence[str] | Sequence[Sequence[str]] = ()) -> None:
        super().__init__()
        for name, value in [("n_inputs", n_inputs), ("n_outputs", n_outputs), ("hidden", hidden),
                            ("slots", slots), ("word", word), ("reads", reads)]:
            check_positive("DNC", name, value, integer=True)
        self.n_inputs, self.n_outputs, self.hidden = n_inputs, n_outputs, hidden
        self.slots, self.word, self.reads = slots, word, reads
        self.stacked = seeds is not None
        self.seeds = [int(s) for s in seeds] if self.stacked else [int(seed)]
        k = len(self.seeds)
        if k == 0:
            raise ValueError("DNC: expected at least one seed, got none")
        if self.stacked:
            self.n_seeds = k  # what companion.training.clip_gradients looks for
        per_net = [tuple(ablate)] * k if not ablate or isinstance(ablate[0], str) else [tuple(a) for a in ablate]
        if len(per_net) != k:
            raise ValueError(f"DNC: expected one tuple of ablations per seed ({k}), got {len(per_net)}")
        for names in per_net:
            for name in names:
                check_choice("DNC", "each ablation", name, ABLATIONS)
        self.ablate = per_net
        masks = torch.tensor([[float(m not in names) for m in ABLATIONS] for names in per_net])  # (k, 3)
        self.register_buffer("keep", masks, persistent=False)

        nets = []
        for s in self.seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                # LSTM gates from x_t (computed for all steps at once) and from [r_{t-1}, h_{t-1}]
                nets.append((nn.Linear(n_inputs, 4 * hidden),
                             nn.Linear(reads * word + hidden, 4 * hidden, bias=False),
                             nn.Linear(hidden, interface_size(word, reads)),
                             nn.Linear(hidden + reads * word, n_outputs)))
        self.gates_x = StackedLinear.from_linears([n[0] for n in nets])  # weight (k, n_inputs, 4H)
        self.gates_rh = nn.Parameter(torch.stack([n[1].weight.detach().T for n in nets]).clone())  # (k, RW+H, 4H)
        self.interface = StackedLinear.from_linears([n[2] for n in nets])  # (k, H, interface size)
        self.output = StackedLinear.from_linears([n[3] for n in nets])  # (k, H + RW, n_outputs)

    def select(self, members: Sequence[int], stacked: bool = True) -> "DNC":
        """Networks ``members`` of this module as a new module (a copy of their current weights).

        ``stacked=False`` with one member gives a plain DNC (logits (B, T, n_outputs)).
        """
        members = [int(i) for i in members]
        if not stacked and len(members) != 1:
            raise ValueError(f"DNC.select: expected one member for a plain DNC, got {len(members)}")
        config = (self.n_inputs, self.n_outputs, self.hidden, self.slots, self.word, self.reads)
        ablations = [self.ablate[i] for i in members]
        if stacked:
            new = DNC(*config, seeds=[self.seeds[i] for i in members], ablate=ablations)
        else:
            new = DNC(*config, seed=self.seeds[members[0]], ablate=ablations[0])
        with torch.no_grad():
            for mine, theirs in zip(self.parameters(), new.parameters()):
                theirs.copy_(mine[members])
        return new

    def forward(self, x: Tensor, slots: int | None = None, trace: bool = False) -> Tensor | tuple[Tensor, dict]:
        """Run over a sequence.

        Args:
            x: (B, T, n_inputs), the same for every network of a stacked module.
            slots: memory size for this run (default: ``self.slots``).
            trace: also return a dict of per-step tensors for pictures:
                ``write_weights`` (B, T, N), ``read_weights`` (B, T, R, N),
                ``usage`` (B, T, N), ``read_modes`` (B, T, R, 3),
                ``write_gate`` and ``allocation_gate`` (B, T), and the final
                ``link`` (B, N, N) and ``memory`` (B, N, W). For k stacked
                networks the batch axis is k * B (network-major).

        Returns:
            logits (B, T, n_outputs), or (k, B, T, n_outputs) for a stacked module [and the trace].
        """
        _check("DNC.forward", "x", x, ("batch", "T", self.n_inputs))
        b, steps, _ = x.shape
        k = len(self.seeds)
        n = self.slots if slots is None else slots
        check_positive("DNC.forward", "slots", n, integer=True)
        state = initial_state(k * b, n, self.word, self.reads, dtype=x.dtype)
        keep = self.keep.repeat_interleave(b, dim=0)  # (k * B, 3)
        h = c = x.new_zeros(k, b, self.hidden)
        reads = x.new_zeros(k, b, self.reads * self.word)
        gx = self.gates_x(x.reshape(b * steps, -1)).reshape(k, b, steps, -1)  # one product for all steps
        hs, rs, records = [], [], []
        for t in range(steps):
            gates = gx[:, :, t] + torch.bmm(torch.cat([reads, h], dim=-1), self.gates_rh)  # (k, B, 4H)
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            iface = split_interface(self.interface(h).reshape(k * b, -1), self.word, self.reads)
            if not bool(keep.all()):
                iface = ablate(iface, keep[:, 0], keep[:, 1], keep[:, 2])
            read_vectors, state = memory_step(state, iface)
            reads = read_vectors.reshape(k, b, -1)
            hs.append(h)
            rs.append(reads)
            if trace:
                records.append((state.write_weights, state.read_weights, state.usage, iface.read_modes,
                                iface.write_gate, iface.allocation_gate))
        features = torch.cat([torch.stack(hs, 2), torch.stack(rs, 2)], dim=-1)  # (k, B, T, H + RW)
        logits = self.output(features.reshape(k, b * steps, -1)).reshape(k, b, steps, -1)
        if not self.stacked:
            logits = logits[0]
        if not trace:
            return logits
        names = ["write_weights", "read_weights", "usage", "read_modes", "write_gate", "allocation_gate"]
        out = {name: torch.stack([r[j] for r in records], 1).detach() for j, name in enumerate(names)}
        out["link"], out["memory"] = state.link.detach(), state.memory.detach()
        return logits, out


class LSTMBaseline(nn.Module):
    """A plain LSTM with a linear read-out: everything it remembers lives in its state.

    Args:
        n_inputs, n_outputs, hidden: widths.
        seed: initial weights are drawn under ``torch.manual_seed(seed)`` in a forked RNG.
    """

    def __init__(self, n_inputs: int, n_outputs: int, hidden: int = 72, seed: int = 0) -> None:
        super().__init__()
        self.n_inputs = n_inputs
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.lstm = nn.LSTM(n_inputs, hidden, batch_first=True)
            self.output = nn.Linear(hidden, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, n_inputs) -> logits (B, T, n_outputs)."""
        _check("LSTMBaseline.forward", "x", x, ("batch", "T", self.n_inputs))
        return self.output(self.lstm(x)[0])


def bit_errors(logits: Tensor, targets: Tensor) -> Tensor:
    """Wrong bits per sequence when each output is thresholded at probability 1/2.

    Args:
        logits: (B, L, bits), the model's outputs on the recall steps (or (k, B, L, bits)).
        targets: (B, L, bits) of 0s and 1s.

    Returns:
        (B,) float: the number of wrong bits in each sequence (or (k, B)).
    """
    check_tensor("bit_errors", "logits", logits)
    _check("bit_errors", "targets", targets, ("batch", "L", "bits"))
    if tuple(logits.shape[-3:]) != tuple(targets.shape) or logits.ndim not in (3, 4):
        raise ValueError(f"bit_errors: expected logits of shape {tuple(targets.shape)} or (k, "
                         f"{', '.join(map(str, targets.shape))}), got {tuple(logits.shape)}")
    return ((logits > 0).to(targets.dtype) != targets).sum(dim=(-2, -1)).float()


# --------------------------------------------------------------------------- the copy task


def evaluate_copy(model: nn.Module, length: int, batch_size: int = 64, bits: int = 6, seed: int = 1000,
                  slots: int | None = None) -> float | np.ndarray:
    """Mean bit errors per sequence on a fixed test batch of one length (drawn from ``seed + length``).

    ``slots`` runs a DNC with another memory size. Returns a float, or an
    array (k,) for a stacked DNC. Chapter 6, "The copy task".
    """
    check_positive("evaluate_copy", "length", length, integer=True)
    x, y = copy_task(batch_size, length, bits=bits, generator=training.generator(seed + length))
    with torch.no_grad():
        logits = model(x) if slots is None else model(x, slots=slots)
    errors = bit_errors(logits[..., -length:, :], y).mean(dim=-1)
    return errors.numpy() if errors.ndim else float(errors)


SCHEDULES = ("constant", "cosine")


def train_copy(model: nn.Module, steps: int, lr: float = 1e-2, batch_size: int = 16, max_length: int = 8,
               bits: int = 6, seed: int = 0, clip: float = 10.0, schedule: str = "constant",
               eval_every: int = 50, log_every: int | None = None, progress: bool = True,
               name: str = "model") -> training.History:
    """Adam on the copy task: the loop chapter 6 and ``scripts/train_dnc.py`` train with.

    Each step draws one length uniformly from 1..``max_length`` and a batch of
    ``batch_size`` sequences of that length from ``training.generator(seed)``
    (so every batch is one set of tensor operations, without padding); the
    loss is binary cross-entropy on the recall steps. Gradients are clipped to
    norm ``clip`` (per network for a stacked DNC, whose k losses are summed so
    each network gets exactly its own gradient). ``schedule="cosine"`` decays
    the learning rate from ``lr`` to ``lr / 100``.

    Every ``eval_every`` steps it records ``eval_errors``, the bit errors per
    sequence at ``max_length`` on a fixed batch of 32; ``log_every`` prints a
    milestone line.

    Returns a ``History`` with ``loss`` every step ((steps,) or (steps, k))
    and ``eval_errors`` at the evaluation steps (NaN elsewhere).
    Chapter 6, "The copy task".
    """
    for what, value in [("steps", steps), ("batch_size", batch_size), ("max_length", max_length),
                        ("bits", bits), ("eval_every", eval_every)]:
        check_positive("train_copy", what, value, integer=True)
    check_positive("train_copy", "lr", lr)
    check_choice("train_copy", "schedule", schedule, SCHEDULES)
    gen = training.generator(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = training.History()
    bar = training.progress(range(1, steps + 1), progress, desc=name, mininterval=5)
    for step in bar:
        if schedule == "cosine":
            optimizer.param_groups[0]["lr"] = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps)))
        length = int(torch.randint(1, max_length + 1, (1,), generator=gen))
        x, y = copy_task(batch_size, length, bits=bits, generator=gen)
        logits = model(x)[..., -length:, :]
        losses = F.binary_cross_entropy_with_logits(logits, y.expand_as(logits), reduction="none")
        loss = losses.mean(dim=(-3, -2, -1))  # () or (k,)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        training.clip_gradients(model, clip)
        optimizer.step()
        if step % eval_every == 0:
            errors = evaluate_copy(model, max_length, batch_size=32, bits=bits)
            history.log(step, loss=loss.detach(), eval_errors=errors)
            if log_every and step % log_every == 0:
                print(f"{name} step {step}: loss {np.mean(loss.detach().numpy()):.3f}, bit errors per "
                      f"sequence at length {max_length}: {np.round(errors, 2)}", flush=True)
        else:
            history.log(step, loss=loss.detach())
    return history


# --------------------------------------------------------------------------- the shipped LSTM baselines


def load_lstm_baselines() -> tuple[list[LSTMBaseline], dict]:
    """The long-trained LSTM baselines of chapter 6, one per seed, shipped with the package.

    Read from ``companion/checkpoints/lstm_copy.pt`` with ``importlib.resources``
    (so a notebook finds them without the repository beside it); made by
    ``scripts/train_dnc.py``. Returns the models (in eval mode) and the
    checkpoint's record of how they were trained (``steps``, ``lr``, ``seeds``).
    """
    from importlib.resources import files

    resource = files("companion").joinpath("checkpoints", "lstm_copy.pt")
    with resource.open("rb") as f:
        saved = torch.load(f, weights_only=True)
    models = []
    for state in saved["state_dicts"]:
        model = LSTMBaseline(state["lstm.weight_ih_l0"].shape[1], state["output.weight"].shape[0],
                             hidden=state["output.weight"].shape[1])
        model.load_state_dict(state)
        models.append(model.eval())
    info = {key: value for key, value in saved.items() if key != "state_dicts"}
    return models, info
