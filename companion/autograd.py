"""A scalar reverse-mode automatic differentiation engine (chapter 1).

Taught in chapter 1, "A reverse-mode engine in one screen"; the design (and
the neuron example) follows Karpathy's micrograd. Every ``Value`` holds a number (``data``), the derivative of the final output
with respect to it (``grad``, filled in by ``backward``), and how it was made:
its parents and a small function that applies the chain rule locally.

    >>> x = Value(2.0)
    >>> y = x * x + 3 * x        # dy/dx = 2x + 3
    >>> y.backward()
    >>> x.grad
    7.0

``backward`` visits the graph in reverse topological order, so a node used
several times receives the sum of the gradients of all its uses.

Also here: :func:`draw_graph` (chapter 1, "Computational graphs") and a tiny
multilayer perceptron made of ``Value``s, :class:`ValueMLP` with
:func:`train_value_mlp` (chapter 1, "The engine learns XOR").
"""

from __future__ import annotations

import math
from numbers import Real
from typing import TYPE_CHECKING, Callable, Iterable, Sequence, Union

from companion._checks import check_choice, check_positive

if TYPE_CHECKING:
    import random

    import matplotlib.axes

Number = Union[int, float]


def _as_value(other: object, op: str) -> "Value":
    """Wrap a plain number as a constant Value; reject anything else clearly."""
    if isinstance(other, Value):
        return other
    if isinstance(other, Real) and not isinstance(other, bool):
        return Value(float(other))
    raise TypeError(
        f"Value {op}: expected a Value or a real number, got {type(other).__name__} ({other!r})"
    )


class Value:
    """A scalar node in a computational graph (chapter 1, "A reverse-mode engine in one screen").

    Args:
        data: the number this node holds.
        _parents: the nodes this one was computed from (set by the operators).
        _op: a label for the operation, used when drawing the graph.
    """

    __slots__ = ("data", "grad", "_parents", "_backward", "_op", "label")

    def __init__(
        self,
        data: Number,
        _parents: Iterable["Value"] = (),
        _op: str = "",
        label: str = "",
    ) -> None:
        if isinstance(data, bool) or not isinstance(data, Real):
            raise TypeError(f"Value: expected a real number, got {type(data).__name__} ({data!r})")
        self.data = float(data)
        self.grad = 0.0
        self._parents = tuple(_parents)
        self._backward: Callable[[], None] = lambda: None
        self._op = _op
        self.label = label

    def __repr__(self) -> str:
        name = f"{self.label}: " if self.label else ""
        return f"Value({name}data={self.data:.6g}, grad={self.grad:.6g})"

    # -- binary operations -------------------------------------------------
    def __add__(self, other: object) -> "Value":
        other = _as_value(other, "+")
        out = Value(self.data + other.data, (self, other), "+")

        def _backward() -> None:
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: object) -> "Value":
        other = _as_value(other, "*")
        out = Value(self.data * other.data, (self, other), "*")

        def _backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, exponent: object) -> "Value":
        if isinstance(exponent, bool) or not isinstance(exponent, Real):
            raise TypeError(
                f"Value **: expected an int or float exponent, got {type(exponent).__name__} ({exponent!r})"
            )
        k = float(exponent)
        out = Value(self.data**k, (self,), f"**{k:g}")

        def _backward() -> None:
            self.grad += k * self.data ** (k - 1) * out.grad

        out._backward = _backward
        return out

    def __neg__(self) -> "Value":
        return self * -1.0

    def __sub__(self, other: object) -> "Value":
        return self + (-_as_value(other, "-"))

    def __truediv__(self, other: object) -> "Value":
        other = _as_value(other, "/")
        if other.data == 0.0:
            raise ZeroDivisionError("Value /: division by a Value holding 0")
        return self * other**-1

    # plain number on the left: 2 * v, 1 - v, 1 / v
    def __radd__(self, other: object) -> "Value":
        return self + other

    def __rmul__(self, other: object) -> "Value":
        return self * other

    def __rsub__(self, other: object) -> "Value":
        return _as_value(other, "-") - self

    def __rtruediv__(self, other: object) -> "Value":
        return _as_value(other, "/") / self

    # -- unary functions ---------------------------------------------------
    def _unary(self, value: float, local_grad: float, op: str) -> "Value":
        """A node whose derivative with respect to ``self`` is ``local_grad``."""
        out = Value(value, (self,), op)

        def _backward() -> None:
            self.grad += local_grad * out.grad

        out._backward = _backward
        return out

    def exp(self) -> "Value":
        e = math.exp(self.data)
        return self._unary(e, e, "exp")

    def log(self) -> "Value":
        if self.data <= 0.0:
            raise ValueError(f"Value.log: expected a positive number, got {self.data}")
        return self._unary(math.log(self.data), 1.0 / self.data, "log")

    def tanh(self) -> "Value":
        t = math.tanh(self.data)
        return self._unary(t, 1.0 - t * t, "tanh")

    def sigmoid(self) -> "Value":
        # the two branches avoid overflow in exp for large |x|
        if self.data >= 0:
            s = 1.0 / (1.0 + math.exp(-self.data))
        else:
            e = math.exp(self.data)
            s = e / (1.0 + e)
        return self._unary(s, s * (1.0 - s), "sigmoid")

    def relu(self) -> "Value":
        positive = self.data > 0
        return self._unary(self.data if positive else 0.0, 1.0 if positive else 0.0, "relu")

    # -- reverse mode ------------------------------------------------------
    def topological_order(self) -> list["Value"]:
        """Every node this one depends on, each after all of its parents (chapter 1, "A reverse-mode engine in one screen")."""
        order: list[Value] = []
        seen: set[int] = set()
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:  # iterative DFS: deep graphs do not hit the recursion limit
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if id(p) not in seen)
        return order

    def backward(self) -> None:
        """Fill ``grad`` of every node in the graph with d(self)/d(node) (chapter 1, "A reverse-mode engine in one screen").

        Each call starts from zero, so calling it twice gives the same grads
        (PyTorch, by contrast, *adds* to ``.grad`` on every ``backward()``;
        chapter 1, "Checking the engine against PyTorch"). Within one call a
        node used several times sums its uses' gradients.
        """
        order = self.topological_order()
        for node in order:
            node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            node._backward()


# -- drawing the graph (chapter 1, "Computational graphs") ------------------
def graph_layout(root: Value) -> dict[int, tuple[int, float]]:
    """Layered positions ``{id(node): (column, row)}`` for :func:`draw_graph`.

    A node's column is set by the longest path from it to ``root`` (the root
    is rightmost, every arrow points right). Rows come from a depth-first walk
    from the root: each input gets the next free row, in the order it is
    reached, and each operation sits at the mean row of its operands, so a
    tree (one neuron, say) is drawn with no crossing edges.
    """
    if not isinstance(root, Value):
        raise TypeError(f"graph_layout: expected a Value, got {type(root).__name__}")
    order = root.topological_order()
    depth: dict[int, int] = {id(root): 0}
    for node in reversed(order):  # every node after all the nodes that use it
        for parent in node._parents:
            depth[id(parent)] = max(depth.get(id(parent), 0), depth[id(node)] + 1)
    row: dict[int, float] = {}
    next_row = 0
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:  # iterative: long chains do not hit the recursion limit
        node, operands_placed = stack.pop()
        if operands_placed:
            rows = [row[id(p)] for p in node._parents]
            row[id(node)] = sum(rows) / len(rows)
        elif id(node) not in row:
            if not node._parents:
                row[id(node)], next_row = float(next_row), next_row + 1
                continue
            row[id(node)] = math.nan  # placed when its operands are
            stack.append((node, True))
            stack.extend((p, False) for p in reversed(node._parents) if id(p) not in row)
    last = max(depth.values())
    return {id(n): (last - depth[id(n)], row[id(n)]) for n in order}


def draw_graph(root: Value, ax: "matplotlib.axes.Axes | None" = None, show_grad: bool = True,
               fontsize: float = 11):
    """Draw the computational graph that produced ``root``, inputs on the left.

    Chapter 1, "Computational graphs". Each node is a box: an input shows its
    label (or "const"); an operation shows ``label = op`` (or just the op, as
    ``*`` or ``tanh``). Below come its value and, if ``show_grad``, its
    gradient. The layout is :func:`graph_layout`'s.

    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    position = graph_layout(root)  # checks root
    order = root.topological_order()
    n_columns = 1 + max(c for c, _ in position.values())
    n_rows = 1 + max(r for _, r in position.values())
    if ax is None:
        _, ax = plt.subplots(figsize=(1.75 * n_columns, 0.95 * n_rows + 0.3))
    width, height = 0.7, 0.78 if show_grad else 0.55
    for node in order:
        x, y = position[id(node)]
        for parent in node._parents:
            px, py = position[id(parent)]
            ax.annotate("", xy=(x - width / 2, -y), xytext=(px + width / 2, -py),
                        arrowprops=dict(arrowstyle="-|>", color="0.35", lw=1.1,
                                        shrinkA=0, shrinkB=0))
        if node._parents:
            name = f"{node.label} = {node._op}" if node.label else node._op
        else:
            name = node.label or "const"
        lines = [name, f"data {node.data:.4g}"] + ([f"grad {node.grad:.4g}"] if show_grad else [])
        color = "#dbe9f6" if not node._parents else ("#d5f0d5" if node is root else "#fdebd0")
        ax.add_patch(FancyBboxPatch((x - width / 2, -y - height / 2), width, height,
                                    boxstyle="round,pad=0.02", fc=color, ec="0.3"))
        ax.text(x, -y + height / 2 - 0.06, lines[0], ha="center", va="top", fontsize=fontsize,
                fontweight="bold")
        ax.text(x, -y - 0.02, "\n".join(lines[1:]), ha="center", va="top", fontsize=fontsize * 0.9)
    ax.set_xlim(-0.5, n_columns - 0.5)
    ax.set_ylim(-(n_rows - 1) - 0.55, 0.55)
    ax.axis("off")
    return ax


# -- a tiny MLP of Values (chapter 1, "The engine learns XOR") ---------------
_ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")


def _activate(v: Value, activation: str) -> Value:
    return v if activation == "identity" else getattr(v, activation)()


class Neuron:
    """``activation(sum_i w_i x_i + b)`` with one ``Value`` per weight, as in micrograd (chapter 1, "The engine learns XOR").

    Weights start uniform in [-1, 1) from ``rng`` (a ``random.Random``); the bias at 0.
    """

    def __init__(self, n_inputs: int, activation: str, rng: "random.Random") -> None:
        self.w = [Value(rng.uniform(-1.0, 1.0)) for _ in range(n_inputs)]
        self.b = Value(0.0)
        self.activation = activation

    def __call__(self, x: Sequence[Value | Number]) -> Value:
        return _activate(sum((wi * xi for wi, xi in zip(self.w, x)), self.b), self.activation)

    def parameters(self) -> list[Value]:
        return self.w + [self.b]


class ValueMLP:
    """A fully connected network of :class:`Neuron` s: every weight is one ``Value``.

    Chapter 1, "The engine learns XOR". ``sizes`` are the widths, input
    first (``[2, 4, 1]``); hidden layers use ``activation``, the last layer
    ``output_activation``. Seeded by ``seed``. Calling it on one example (a
    list of ``n_inputs`` numbers) returns the list of output Values.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "tanh",
                 output_activation: str = "sigmoid", seed: int = 0) -> None:
        import random

        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"ValueMLP: expected at least two layer sizes, got {sizes}")
        for s in sizes:
            check_positive("ValueMLP", "every layer size", s, integer=True)
        check_choice("ValueMLP", "activation", activation, _ACTIVATIONS)
        check_choice("ValueMLP", "output_activation", output_activation, _ACTIVATIONS)
        rng = random.Random(seed)
        self.sizes = sizes
        self.layers = [
            [Neuron(m, activation if l < len(sizes) - 2 else output_activation, rng) for _ in range(n)]
            for l, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]))
        ]

    def __call__(self, x: Sequence[Value | Number]) -> list[Value]:
        if len(x) != self.sizes[0]:
            raise ValueError(f"ValueMLP: expected an example of {self.sizes[0]} inputs, got {len(x)}")
        out: Sequence[Value | Number] = x
        for layer in self.layers:
            out = [neuron(out) for neuron in layer]
        return list(out)

    def parameters(self) -> list[Value]:
        """Every weight and bias, layer by layer."""
        return [p for layer in self.layers for neuron in layer for p in neuron.parameters()]


def squared_error(model: ValueMLP, X: Sequence[Sequence[Number]], y: Sequence[Sequence[Number]]) -> Value:
    """Half the summed squared error of ``model`` on ``X`` (n, n_inputs), targets ``y`` (n, n_outputs).

    Chapter 1, "The engine learns XOR": one graph over all n examples.
    """
    if len(X) != len(y):
        raise ValueError(f"squared_error: expected X and y to have the same length, got {len(X)} and {len(y)}")
    total = Value(0.0)
    for x, target in zip(X, y):
        for o, t in zip(model(list(x)), target):
            total = total + (o - float(t)) ** 2
    return total * 0.5


def train_value_mlp(model: ValueMLP, X: Sequence[Sequence[Number]], y: Sequence[Sequence[Number]],
                    steps: int, lr: float) -> list[float]:
    """Full-batch gradient descent on :func:`squared_error`, one graph per step.

    Chapter 1, "The engine learns XOR". Each step builds the loss's graph from
    scratch, calls ``backward()`` and moves every parameter by ``-lr * grad``.
    Returns the loss before each step (``steps`` floats).
    """
    check_positive("train_value_mlp", "steps", steps, integer=True, allow_zero=True)
    check_positive("train_value_mlp", "lr", lr)
    params = model.parameters()
    losses = []
    for _ in range(steps):
        loss = squared_error(model, X, y)
        loss.backward()
        for p in params:
            p.data -= lr * p.grad
        losses.append(loss.data)
    return losses
