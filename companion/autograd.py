"""A scalar reverse-mode automatic differentiation engine (chapter 1).

Every ``Value`` holds a number (``data``), the derivative of the final output
with respect to it (``grad``, filled in by ``backward``), and how it was made:
its parents and a small function that applies the chain rule locally.

    >>> x = Value(2.0)
    >>> y = x * x + 3 * x        # dy/dx = 2x + 3
    >>> y.backward()
    >>> x.grad
    7.0

``backward`` visits the graph in reverse topological order, so a node used
several times receives the sum of the gradients of all its uses.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Callable, Iterable, Union

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
    """A scalar node in a computational graph.

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
        """Every node this one depends on, each after all of its parents."""
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
        """Fill ``grad`` of every node in the graph with d(self)/d(node).

        Each call starts from zero, so calling it twice gives the same grads.
        Within one call a node used several times sums its uses' gradients.
        """
        order = self.topological_order()
        for node in order:
            node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            node._backward()
