"""Figures shared by several chapters, drawn with matplotlib alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import matplotlib.axes


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
