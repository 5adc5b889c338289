"""The scoreboard: every learning rule of the course on one task, and what it costs.

This module adds no learning rule; every rule comes from its own chapter's
module. It holds what the comparison itself needs:

- ``RULES``: the rules on the scoreboard, where each comes from and what it
  needs (a global error, weight transport, a backward pass, labels);
- the cost model per training example: multiply-adds (:func:`macs`), checked
  against torch's FLOP counter (:func:`measured_macs`), words held between the
  forward pass and the update (:func:`held_words`), memory traffic
  (:func:`traffic_words`) and update locking (:func:`locking_phases`);
- the energy model (``ENERGY_PJ``, :func:`energy_per_example`), its constants
  named and cited;
- a timing model of one device per layer or per worker (:func:`update_time`);
- two adapters that let chapter modules run on the digits: evolution strategies
  on a classifier (:func:`train_es_classifier`) and a one-step bandit for
  REINFORCE (:class:`DigitsBandit`);
- the table (:func:`markdown_table`).

Taught in chapter 14.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from . import es
from ._checks import check_choice, check_positive, check_tensor
from .feedback import schedule, makespan
from .training import generator, mlp

# --------------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class Rule:
    """One row of the scoreboard: a learning rule and what its update needs.

    ``labels``: "yes" (every update uses the label), "reward" (a scalar saying
    right or wrong), or "to name units" (learning uses none; labels only name
    the units afterwards).
    """

    name: str
    label: str
    chapter: int
    source: str
    global_error: bool
    weight_transport: bool
    backward_pass: bool
    labels: str


RULES: dict[str, Rule] = {r.name: r for r in [
    Rule("logreg", "logistic regression on pixels", 9, "feedback.train('bp', [64, 10])",
         True, False, False, "yes"),
    Rule("readout", "random features + read-out", 9, "feedback.train('readout')",
         True, False, False, "yes"),
    Rule("bp", "backprop", 9, "feedback.train('bp')", True, True, True, "yes"),
    Rule("fa", "feedback alignment", 9, "feedback.train('fa')", True, False, True, "yes"),
    Rule("dfa", "direct feedback alignment", 9, "feedback.train('dfa')", True, False, False, "yes"),
    Rule("dni", "synthetic gradients (DNI)", 9, "feedback.train('dni')", False, True, True, "yes"),
    Rule("cdni", "synthetic gradients, label-conditioned (cDNI)", 9, "feedback.train('cdni')",
         False, True, True, "yes"),
    Rule("ff", "Forward-Forward", 7, "forward_forward.train_ff", False, False, False, "yes"),
    Rule("es", "evolution strategies", 8, "es.OpenAIES", True, False, False, "yes"),
    Rule("reinforce", "REINFORCE on a one-step bandit", 10, "policy_gradient.train_reinforce",
         True, True, True, "reward"),
    Rule("bbb", "Bayes by Backprop", 13, "bayes.train_bbb", True, True, True, "yes"),
    Rule("competitive", "competitive (Hebbian) learning", 11, "hebbian.train_competitive",
         False, False, False, "to name units"),
    Rule("som", "self-organizing map", 12, "som.train_som", False, False, False, "to name units"),
    Rule("stdp", "STDP spiking layer", 11, "hebbian.spiking_digits", False, False, False,
         "to name units"),
]}

# Entry points of chapter modules that train something but have no row, and why.
# tests/test_scoreboard.py fails when a chapter module gains a training function
# that is neither a row's source nor listed here.
NOT_ON_THE_SCOREBOARD: dict[str, str] = {
    "autograd.train_value_mlp": "chapter 1's scalar engine: backprop, too slow for the digits",
    "backprop.train_seeds": "chapter 2's numpy backprop on XOR: the same rule as 'bp'",
    "autoencoders.train": "learns codes, not classes (chapter 4)",
    "dnc.train_copy": "a memory task, not a classifier (chapter 6)",
    "gan.train_step": "learns a generator (chapter 5)",
    "gan.train_gan": "learns a generator (chapter 5)",
    "feedback.train_step_updates": "one step of the feedback rows' own training loop",
    "forward_forward.fit_linear_readout": "the read-out, a part of other rows",
    "forward_forward.train_backprop": "chapter 7's backprop baseline: the same rule as 'bp'",
    "es.train_cartpole": "ES on CartPole; on the digits ES is the 'es' row",
    "es.SimpleGA": "a genetic algorithm, ES's foil in chapter 8; needs the same forward passes as 'es'",
    "es.DistributedES": "the 'es' row, distributed: its timing is in update_time('es')",
    "policy_gradient.fit_value": "the critic of actor-critic, a part of another rule",
    "policy_gradient.train_actor_critic": "needs a state value; a one-step bandit has none to learn",
    "policy_gradient.train_es": "ES on control tasks; on the digits ES is the 'es' row",
    "hebbian.train_rule": "Hebb, Oja and Sanger find principal directions, not classes (chapter 11)",
    "som.kmeans": "Lloyd's batch algorithm, the reference the 'competitive' row converges to",
    "som.online_kmeans": "the same rule as 'competitive', written for chapter 12's check",
}

# --------------------------------------------------------------------------- counting


def forward_macs(sizes: Sequence[int]) -> int:
    """Multiply-adds of one example's forward pass through dense layers of widths ``sizes``."""
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


def parameter_count(sizes: Sequence[int]) -> int:
    """Weights and biases of dense layers of widths ``sizes``."""
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def macs(rule: str, sizes: Sequence[int], *, population: int = 0, batch_size: int = 1,
         events: float = 0.0, post_spikes: float = 0.0) -> float:
    """Multiply-adds of one training example's share of one update, counted by hand.

    Only products of two numbers count (matrix products, and for STDP the
    weight changes); elementwise work (tanh, softmax, Adam) grows with the
    widths, not their products, and is left out. ``sizes``: the network's widths,
    input first; for competitive learning and the SOM [n_inputs, units]. F is
    :func:`forward_macs`, s_i the widths, c the classes:

    - logreg: F + F (the weight gradient A^T e; no delta below the only layer)
    - bp, fa: F + F (weight gradients) + F - s_0 s_1 (deltas sent down through
      W^T or B; the input's delta is not needed)
    - dfa: 2F + c * sum of hidden widths (e @ D_l for each hidden layer)
    - readout: F + s_{L-1} c (only the last layer learns)
    - dni: 3F - s_0 s_1 + 2 sum h^2 (each predictor's prediction and its
      update; the targets are the deltas sent down, F - s_0 s_1)
    - cdni: dni + 2c * sum h (the label's one-hot times C, and C's update)
    - ff: 4F (each layer: positive and negative pass, and their weight gradients;
      inputs are detached, so no delta is sent down)
    - es: population * F (each candidate's forward pass) + population * d /
      batch_size (the gradient estimate, noise^T @ fitness, shared by the batch)
    - reinforce: 4F - s_0 s_1 (a forward pass to sample the action, and
      backprop's 3F - s_0 s_1 on log pi)
    - bbb: 6F - 2 s_0 s_1 (local reparameterization: x @ mu and x^2 @ sigma^2 per
      layer, each with its weight gradient and, above the first layer, its delta)
    - competitive: k d (distances to every unit) + d (move the winner)
    - som: 2 k d (distances, and every unit moved by its neighbourhood weight)
    - stdp: ``events`` (depression on each presynaptic spike, at each of the
      units it reaches) + ``post_spikes`` * d (potentiation on each output spike)

    Chapter 14, "The cost, counted".
    """
    check_choice("macs", "rule", rule, list(RULES))
    s = [int(v) for v in sizes]
    if len(s) < 2 or min(s) < 1:
        raise ValueError(f"macs: expected sizes of at least two positive widths, got {list(sizes)}")
    F, c, hidden = forward_macs(s), s[-1], s[1:-1]
    first = s[0] * s[1]
    if rule == "logreg":
        return 2.0 * F
    if rule in ("bp", "fa"):
        return 3.0 * F - first
    if rule == "dfa":
        return 2.0 * F + c * sum(hidden)
    if rule == "readout":
        return float(F + s[-2] * c)
    if rule in ("dni", "cdni"):
        extra = 2 * c * sum(hidden) if rule == "cdni" else 0
        return 3.0 * F - first + 2 * sum(h * h for h in hidden) + extra
    if rule == "ff":
        return 4.0 * F
    if rule == "es":
        check_positive("macs", "population", population, integer=True)
        check_positive("macs", "batch_size", batch_size, integer=True)
        return population * F + population * parameter_count(s) / batch_size
    if rule == "reinforce":
        return 4.0 * F - first
    if rule == "bbb":
        return 6.0 * F - 2 * first
    d, k = s[0], s[1]
    if rule == "competitive":
        return float(k * d + d)
    if rule == "som":
        return 2.0 * k * d
    return float(events + post_spikes * d)  # stdp


def measured_macs(step: Callable[[], object]) -> float:
    """Multiply-adds of the matrix products ``step()`` runs, as torch's FLOP counter sees them.

    torch counts a matrix product of (n, a) and (a, b) as 2nab floating-point
    operations; this returns half that. numpy work is not seen.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops() / 2


def held_words(rule: str, sizes: Sequence[int]) -> int:
    """Numbers one example keeps between its forward pass and the update that reads them.

    The memory that waits: backprop's family keeps every layer's input until
    the error comes back down (sum of s_0..s_{L-1}); the local rules keep one
    layer's input and output until that layer's own update; ES keeps nothing
    of the example but the fitness scalars. For competitive learning, the SOM
    and STDP ``sizes`` is [n_inputs, units]. Chapter 14, "The cost, counted".
    """
    check_choice("held_words", "rule", rule, list(RULES))
    s = [int(v) for v in sizes]
    inputs = sum(s[:-1])
    one_layer = max(a + b for a, b in zip(s, s[1:]))
    table = {
        "logreg": s[0], "readout": s[-2], "bp": inputs, "fa": inputs, "dfa": inputs,
        "reinforce": inputs, "bbb": 2 * inputs,  # x and x^2 for the variance's weight gradient
        "dni": one_layer, "cdni": one_layer, "ff": 2 * one_layer,  # positive and negative
        "es": 0, "competitive": s[0] + 1, "som": s[0] + s[1], "stdp": s[0] + s[1],  # traces
    }
    return table[rule]


ADAM_TOUCHES = 8  # per trained parameter and update: write g; read p, g, m, v; write p, m, v


def parameter_traffic(rule: str, sizes: Sequence[int], population: int = 0) -> int:
    """Numbers one update reads or writes of the weights and optimizer state (per minibatch).

    Every weight is read once for the forward pass; the rules that send the error
    down read the matrices it goes through (W^T for backprop and for DNI's
    targets, B for FA, D for DFA); DNI reads its predictors twice (predict,
    update); every trained number costs Adam's ``ADAM_TOUCHES``. ES reads each
    candidate's weights (``population`` times the network); Bayes by Backprop
    has a mean and a spread per weight. For competitive learning, the SOM and
    STDP see :func:`traffic_words`. Chapter 14, "An energy model".
    """
    check_choice("parameter_traffic", "rule", rule, list(RULES))
    s = [int(v) for v in sizes]
    P, c, hidden = parameter_count(s), s[-1], s[1:-1]
    sent_down = forward_macs(s) - s[0] * s[1]  # the weights above the first layer
    predictors = sum(h * h + h for h in hidden) + (c * sum(hidden) if rule == "cdni" else 0)
    reads = {
        "logreg": P, "readout": P, "bp": P + sent_down, "fa": P + sent_down,
        "dfa": P + c * sum(hidden), "dni": P + sent_down + 2 * predictors,
        "cdni": P + sent_down + 2 * predictors, "ff": P, "es": population * P,
        "reinforce": 2 * P + sent_down,  # a sampling pass and a scoring pass
        "bbb": 2 * (P + sent_down),
    }
    trained = {"readout": s[-2] * c + c, "dni": P + predictors, "cdni": P + predictors,
               "bbb": 2 * P}.get(rule, P)
    if rule not in reads:
        raise ValueError(f"parameter_traffic: {rule!r} is an online rule; use traffic_words")
    return reads[rule] + ADAM_TOUCHES * trained


def traffic_words(rule: str, sizes: Sequence[int], *, batch_size: int, population: int = 0,
                  events: float = 0.0, post_spikes: float = 0.0) -> float:
    """Numbers moved to or from memory per training example: a lower-bound *model*.

    2 * :func:`held_words` (each held number written once, read once) plus the
    :func:`parameter_traffic` of one update shared by its minibatch. The
    online rules have batch_size 1: competitive learning reads every unit (k d)
    and writes the winner (d) for every example; STDP reads one weight per
    synaptic event and writes one per weight change. The SOM reads every unit
    twice and writes it once per minibatch (3 k d / batch_size).
    """
    check_positive("traffic_words", "batch_size", batch_size, integer=True)
    s = [int(v) for v in sizes]
    held = 2 * held_words(rule, s)
    if rule == "competitive":
        return held + s[1] * s[0] + s[0]
    if rule == "som":  # minibatch updates: read every unit for the distances, read and write in the update
        return held + 3 * s[1] * s[0] / batch_size
    if rule == "stdp":
        return held + 2 * events + 2 * post_spikes * s[0]
    return held + parameter_traffic(rule, s, population) / batch_size


def locking_phases(rule: str, n_layers: int) -> int:
    """Update locking: sequential steps between the first layer's forward step and its update.

    One step is one layer's forward step, backward step or local update. Backprop
    (and everything that runs it): the L - 1 forward steps above, then L backward
    steps: 2L - 1. DFA: the L - 1 forward steps above, then the update: L. ES:
    the rest of every candidate's forward pass, then the exchange of scalars: L.
    The read-out learns only its top layer, right after its forward step: 1.
    DNI, Forward-Forward and the one-layer rules update a layer right after its
    own forward step: 1 (Forward-Forward's layers still wait for the layers
    below, as every feedforward network does). STDP updates during the forward
    pass: 1. Chapter 14, "What each rule needs".
    """
    check_choice("locking_phases", "rule", rule, list(RULES))
    check_positive("locking_phases", "n_layers", n_layers, integer=True)
    L = n_layers
    if rule in ("bp", "fa", "reinforce", "bbb", "logreg"):
        return 2 * L - 1
    if rule in ("dfa", "es"):
        return L
    return 1


# --------------------------------------------------------------------------- energy

# Energy per operation in a 45 nm process at 0.9 V (Horowitz 2014, ISSCC keynote,
# "Computing's energy problem"), per 32-bit word as Han et al. 2015 (Fig. 1) tabulate
# them: picojoules.
ENERGY_PJ: dict[str, float] = {
    "int32_add": 0.1,
    "fp32_add": 0.9,
    "int32_mult": 3.1,
    "fp32_mult": 3.7,
    "sram_32bit": 5.0,    # an 8 KB on-chip SRAM read
    "dram_32bit": 640.0,  # an off-chip DRAM access
}
BRAIN_WATTS = 20.0  # the lecture's figure for the human brain


def energy_per_example(macs: float, words: float, adds: float = 0.0, memory: str = "sram") -> float:
    """Joules per training example: macs * (fp32 mult + add) + adds * add + words * one access.

    ``memory``: "sram" (every word on chip, the lower bound) or "dram" (every
    word off chip, the upper bound). A model: real chips reuse operands in
    registers and caches, and sit between the two. Chapter 14, "An energy model".
    """
    check_choice("energy_per_example", "memory", memory, ["sram", "dram"])
    for name, value in (("macs", macs), ("words", words), ("adds", adds)):
        check_positive("energy_per_example", name, value, allow_zero=True)
    per_mac = ENERGY_PJ["fp32_mult"] + ENERGY_PJ["fp32_add"]
    access = ENERGY_PJ[f"{memory}_32bit"]
    return (macs * per_mac + adds * ENERGY_PJ["fp32_add"] + words * access) * 1e-12


# --------------------------------------------------------------------------- parallel hardware


def update_time(rule: str, n_layers: int, devices: int, *, t_forward: float = 1.0,
                t_backward: float = 2.0, t_synthetic: float = 0.5, population: int = 100,
                n_batches: int = 200) -> float:
    """Time per minibatch update in a *timing model*, in units of one layer's forward step.

    - bp, dni: one device per layer (``devices`` must equal ``n_layers``), the
      schedules of chapter 9 (:func:`companion.feedback.schedule`), steady state over
      ``n_batches``: backprop's update locking lets only one layer work at a time;
    - ff: one device per layer, each layer's positive and negative pass
      (2 t_forward) then its local update (t_backward), pipelined like DNI's;
    - es: ``population`` candidates spread over ``devices`` workers, each a
      whole forward pass (n_layers * t_forward); exchanging one scalar per
      candidate is free here, as chapter 8's shared noise table makes it nearly so;
    - one device (``devices=1``) runs any rule's work in sequence.

    Communication of activations between devices is free in this model.
    """
    check_choice("update_time", "rule", rule, ["bp", "dni", "ff", "es"])
    check_positive("update_time", "n_layers", n_layers, integer=True)
    check_positive("update_time", "devices", devices, integer=True)
    L = n_layers
    if rule == "es":
        return math.ceil(population / devices) * L * t_forward
    if devices == 1:
        per_layer = {"bp": t_forward + t_backward, "dni": t_forward + t_backward + 2 * t_synthetic,
                     "ff": 2 * t_forward + t_backward}[rule]
        return L * per_layer
    if devices != L:
        raise ValueError(f"update_time: expected 1 device or one per layer ({L}) for {rule!r}, got {devices}")
    if rule == "ff":
        return 2 * t_forward + t_backward  # each device: its layer's passes and update, pipelined
    tasks = schedule(rule, L, n_batches, t_forward, t_backward, t_synthetic)
    warm = schedule(rule, L, n_batches // 2, t_forward, t_backward, t_synthetic)
    return (makespan(tasks) - makespan(warm)) / (n_batches - n_batches // 2)


# --------------------------------------------------------------------------- adapters


def flat_parameters(sizes: Sequence[int], seed: int) -> np.ndarray:
    """The starting weights of ``mlp(sizes, "tanh", seed=seed)`` as one vector, (d,), layer by layer
    (W_l as (n_in, n_out) row-major, then b_l): the layout :func:`es_logits` reads."""
    parts = []
    for layer in mlp(sizes, activation="tanh", seed=seed):
        if hasattr(layer, "weight"):
            parts += [layer.weight.detach().T.reshape(-1), layer.bias.detach()]
    return torch.cat(parts).double().numpy()


def es_logits(theta: Tensor, sizes: Sequence[int], x: Tensor) -> Tensor:
    """Logits of m flat parameter vectors: theta (m, d), x (m, n, sizes[0]) -> (m, n, sizes[-1]).

    Hidden layers use tanh; one batched matrix product per layer for all m.
    """
    m = theta.shape[0]
    h, i = x, 0
    for l, (a, b) in enumerate(zip(sizes, sizes[1:])):
        W = theta[:, i:i + a * b].reshape(m, a, b)
        bias = theta[:, i + a * b:i + a * b + b].reshape(m, 1, b)
        i += a * b + b
        h = torch.baddbmm(bias, h, W)
        if l < len(sizes) - 2:
            h = torch.tanh(h)
    return h


@dataclass
class ESRun:
    """What :func:`train_es_classifier` returns: the centres (k, d) and the final test accuracy (k,)
    if test data were given."""

    solutions: np.ndarray
    accuracy: np.ndarray | None


def train_es_classifier(sizes: Sequence[int], x: Tensor, y: Tensor, *, seeds: Sequence[int],
                        generations: int, population: int = 100, sigma: float = 0.05,
                        lr: float = 0.03, batch_size: int = 256,
                        eval_data: tuple[Tensor, Tensor] | None = None) -> ESRun:
    """Evolution strategies (chapter 8's :class:`companion.es.OpenAIES`, Adam, centered ranks)
    on a tanh classifier of widths ``sizes``; the fitness is minus the mean
    cross-entropy on a minibatch of ``batch_size`` examples drawn per generation.

    x: (n, sizes[0]) float, y: (n,) labels. The k seeds' candidates are scored
    in one batched forward pass. Chapter 14, "Every rule on one task".
    """
    check_tensor("train_es_classifier", "x", x, shape=(None, sizes[0]), floating=True)
    check_positive("train_es_classifier", "generations", generations, integer=True)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("train_es_classifier: expected at least one seed, got none")
    opts = [es.OpenAIES(flat_parameters(sizes, s), sigma=sigma, lr=lr, population=population,
                        optimizer="adam", seed=s) for s in seeds]
    gens = [generator(s) for s in seeds]
    xf = x.float()
    for _ in range(generations):
        idx = torch.stack([torch.randint(len(x), (batch_size,), generator=g) for g in gens])  # (k, b)
        candidates = torch.from_numpy(np.concatenate([o.ask() for o in opts])).float()  # (k P, d)
        xb = xf[idx].repeat_interleave(population, dim=0)  # (k P, b, n_0)
        yb = y[idx].repeat_interleave(population, dim=0)  # (k P, b)
        with torch.no_grad():
            logp = torch.log_softmax(es_logits(candidates, sizes, xb), dim=-1)
            fitness = logp.gather(-1, yb[..., None])[..., 0].mean(1).double().numpy()
        for j, o in enumerate(opts):
            o.tell(fitness[j * population:(j + 1) * population])
    solutions = np.stack([o.solution for o in opts])
    accuracy = None
    if eval_data is not None:
        xt, yt = eval_data
        with torch.no_grad():
            logits = es_logits(torch.from_numpy(solutions).float(), sizes,
                               xt.float().expand(len(seeds), *xt.shape))
        accuracy = (logits.argmax(-1) == yt).double().mean(1).numpy()
    return ESRun(solutions, accuracy)


class DigitsBandit:
    """Classification as a one-step episode, for chapter 10's ``train_reinforce``.

    A state is the index of an image; the observation is the image; the
    action is a label; the reward is 1 if it is the image's label, else 0; the
    episode ends there. The learner sees right or wrong, never the label.
    """

    max_steps = 1

    def __init__(self, x: Tensor, y: Tensor, n_classes: int = 10) -> None:
        check_tensor("DigitsBandit", "x", x, shape=("n", None), floating=True)
        self.x, self.y = x.numpy().astype(np.float32), y.numpy()
        self.name, self.obs_dim, self.n_actions = "digits bandit", x.shape[1], n_classes
        self.obs_scale = np.ones(self.obs_dim)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(len(self.x), size=(n, 1)).astype(np.float64)

    def step(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        reward = (self.y[state[:, 0].astype(np.int64)] == action).astype(np.float64)
        return state, reward, np.ones(len(state), dtype=bool)

    def observe(self, state: np.ndarray) -> np.ndarray:
        return self.x[state[:, 0].astype(np.int64)]


# --------------------------------------------------------------------------- the table


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (what ``IPython.display.Markdown`` shows) from a header and rows of cells."""
    widths = len(header)
    for r in rows:
        if len(r) != widths:
            raise ValueError(f"markdown_table: expected rows of {widths} cells, got {len(r)}: {list(r)}")
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * widths]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
