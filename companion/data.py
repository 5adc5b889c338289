"""Small data sets the chapters use: generated, or shipped with a package.

Nothing here downloads anything.
"""

from __future__ import annotations

import numpy as np


def xor() -> tuple[np.ndarray, np.ndarray]:
    """The four XOR examples.

    Returns:
        X: float64 array of shape (4, 2), the inputs 00, 01, 10, 11.
        y: float64 array of shape (4, 1), their XOR.
    """
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([[0], [1], [1], [0]], dtype=np.float64)
    return X, y


def add_bias_column(X: np.ndarray) -> np.ndarray:
    """Append a column of ones, so a bias becomes one more weight.

    (n, d) -> (n, d + 1).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"add_bias_column: expected X of shape (n, d), got {X.shape}")
    return np.hstack([X, np.ones((X.shape[0], 1))])
