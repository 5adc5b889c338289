"""Figures shared by several chapters, drawn with matplotlib alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import matplotlib.axes

    from companion.autograd import Value


def _as_images(x: Any, fn: str, pixels: int) -> np.ndarray:
    array = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=float)
    array = np.asarray(array, dtype=float)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != pixels:
        raise ValueError(f"{fn}: expected images of shape (m, {pixels}), got {array.shape}")
    return array


def digit_grid(images: Any, ncols: int | None = None, row_labels: Sequence[str] | None = None,
               ax: "matplotlib.axes.Axes | None" = None, title: str | None = None,
               shape: tuple[int, int] = (8, 8), pad: int = 1, vmin: float = 0.0, vmax: float = 1.0,
               cmap: str = "gray_r") -> "matplotlib.axes.Axes":
    """Draw small images as one tiled picture on one Axes, rows of a grid, with a gap between tiles.

    ``images`` is either a list of rows, each an array or tensor of shape
    (m_i, h * w) (one row of the grid each: originals, reconstructions, ...),
    or one array (m, h * w) cut into rows of ``ncols``. ``row_labels`` name
    the rows on the left. Pixels are drawn on ``cmap`` from ``vmin`` (the
    background) to ``vmax``. Draws on ``ax`` (or a new figure) and returns it.
    The 8x8 digits of chapters 3, 4, 5 and 7 are drawn with it.
    """
    import matplotlib.pyplot as plt

    h, w = shape
    if isinstance(images, (list, tuple)):
        rows = [_as_images(r, "digit_grid", h * w) for r in images]
    else:
        flat = _as_images(images, "digit_grid", h * w)
        ncols = ncols or len(flat)
        rows = [flat[i:i + ncols] for i in range(0, len(flat), ncols)]
    if not rows:
        raise ValueError("digit_grid: expected at least one image, got none")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"digit_grid: expected {len(rows)} row labels, got {len(row_labels)}")
    n_cols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + pad) + pad, n_cols * (w + pad) + pad), vmin, dtype=float)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            canvas[top:top + h, left:left + w] = image.reshape(h, w)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * n_cols + 1.2, 0.6 * len(rows) + 0.5))
    ax.imshow(canvas, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    centres = [pad + r * (h + pad) + (h - 1) / 2 for r in range(len(rows))]
    ax.set_yticks(centres if row_labels is not None else [], row_labels if row_labels is not None else [])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title)
    return ax


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
