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


def digits(test_fraction: float = 0.25, seed: int = 0):
    """scikit-learn's bundled 8x8 digits (1,797 images), split and scaled, as torch tensors.

    Pixels are scaled from 0..16 to [0, 1]. The split is stratified by class
    and fixed by ``seed``.

    Returns:
        X_train: float32 (n_train, 64); X_test: float32 (n_test, 64);
        y_train: int64 (n_train,); y_test: int64 (n_test,).
    """
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"digits: expected 0 < test_fraction < 1, got {test_fraction}")
    bunch = load_digits()
    X = bunch.data.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=y)
    return (torch.from_numpy(X_tr), torch.from_numpy(X_te), torch.from_numpy(y_tr), torch.from_numpy(y_te))
