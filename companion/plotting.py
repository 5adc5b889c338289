"""Figures shared by several chapters, drawn with matplotlib alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import matplotlib.axes

    from companion.autograd import Value


def draw_graph(root: "Value", ax: "matplotlib.axes.Axes | None" = None, show_grad: bool = True):
    """Draw the computational graph that produced ``root``, inputs on the left.

    Each node is a box with its label (or operation), its value and, if
    ``show_grad``, its gradient. A node's column is the length of the longest
    path from an input to it, so every arrow points to the right.

    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    from companion.autograd import Value

    if not isinstance(root, Value):
        raise TypeError(f"draw_graph: expected a Value, got {type(root).__name__}")
    order = root.topological_order()
    column: dict[int, int] = {}
    for node in order:  # parents come first, so their columns are known
        column[id(node)] = 1 + max((column[id(p)] for p in node._parents), default=-1)
    rows: dict[int, int] = {}
    position: dict[int, tuple[float, float]] = {}
    for node in order:
        c = column[id(node)]
        r = rows.get(c, 0)
        rows[c] = r + 1
        position[id(node)] = (c, -r)
    n_cols, n_rows = max(column.values()) + 1, max(rows.values())
    if ax is None:
        _, ax = plt.subplots(figsize=(2.3 * n_cols + 1, 1.2 * n_rows + 0.8))
    for node in order:
        x, y = position[id(node)]
        for parent in node._parents:
            px, py = position[id(parent)]
            ax.annotate(
                "", xy=(x - 0.33, y), xytext=(px + 0.33, py),
                arrowprops=dict(arrowstyle="->", color="0.4", shrinkA=0, shrinkB=0),
            )
        name = node.label or node._op or "input"
        text = f"{name}\ndata {node.data:.4g}"
        if show_grad:
            text += f"\ngrad {node.grad:.4g}"
        color = "#dbe9f6" if not node._parents else "#fdebd0"
        ax.text(x, y, text, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round,pad=0.35", fc=color, ec="0.3"))
    ax.set_xlim(-0.6, n_cols - 0.4)
    ax.set_ylim(-n_rows + 0.4, 0.6)
    ax.axis("off")
    return ax
