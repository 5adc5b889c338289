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



def digits_hard(shift: int = 1, test_fraction: float = 0.25, seed: int = 0):
    """The 8x8 digits, each image moved by a random offset: a setting where methods separate.

    Every image (training and test) is translated by its own offset
    ``(dy, dx)``, each drawn uniformly from ``-shift..shift`` pixels, and the
    uncovered border is filled with 0 (blank). Same split, scaling and
    return structure as :func:`digits` (``seed`` fixes both the split and the
    offsets). On the plain digits a linear model on the pixels, 1,000 random
    ReLU features with a linear read-out and a trained 500-500 MLP all score
    97-98% test accuracy, within about a point of each other. Moved by up to
    one pixel, they score about 61%, 85% and 90% (5 seeds, ranges about 2
    points wide); with chapter 7's 100-unit layers, about 60%, 71% and 87%.
    Either way they separate by more than seed noise. Chapter 7 measures
    this; later chapters reuse it.

    Returns:
        X_train: float32 (n_train, 64); X_test: float32 (n_test, 64);
        y_train: int64 (n_train,); y_test: int64 (n_test,).
    """
    import torch

    if not isinstance(shift, int) or isinstance(shift, bool) or not 0 <= shift <= 3:
        raise ValueError(f"digits_hard: expected shift to be an int in 0..3, got {shift!r}")
    X_tr, X_te, y_tr, y_te = digits(test_fraction, seed)
    rng = np.random.default_rng(seed)

    def translate(X):
        images = X.numpy().reshape(-1, 8, 8)
        padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift)))
        dy, dx = rng.integers(-shift, shift + 1, (2, len(images)))
        out = np.stack([padded[i, shift - dy[i]:shift - dy[i] + 8, shift - dx[i]:shift - dx[i] + 8]
                        for i in range(len(images))])
        return torch.from_numpy(out.reshape(-1, 64).astype(np.float32))

    return translate(X_tr), translate(X_te), y_tr, y_te

def copy_task(batch: int, length: int, bits: int = 6, generator=None):
    """The copy task of Graves et al.: show a sequence, then a delimiter, then reproduce it.

    Each example is ``length`` random binary vectors of ``bits`` bits, then one
    step with the delimiter channel set, then ``length`` blank steps during
    which the model must output the sequence. All examples in the batch share
    one length.

    Args:
        generator: a ``torch.Generator`` (the only source of randomness).

    Returns:
        inputs: float32 (batch, 2 * length + 1, bits + 1); the last channel is the delimiter.
        targets: float32 (batch, length, bits), to be compared with the model's
            outputs at the last ``length`` steps.
    """
    import torch

    for name, value in [("batch", batch), ("length", length), ("bits", bits)]:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"copy_task: expected {name} to be a positive int, got {value!r}")
    sequence = torch.randint(0, 2, (batch, length, bits), generator=generator).float()
    inputs = torch.zeros(batch, 2 * length + 1, bits + 1)
    inputs[:, :length, :bits] = sequence
    inputs[:, length, bits] = 1.0
    return inputs, sequence


def ring_centers(n_modes: int = 8, radius: float = 2.0):
    """The centres of ``ring_of_gaussians``' modes: angles 2*pi*k/n_modes, k = 0..n_modes-1.

    Returns float32 tensor of shape (n_modes, 2).
    """
    import torch

    if not isinstance(n_modes, int) or n_modes < 1:
        raise ValueError(f"ring_centers: expected n_modes to be a positive int, got {n_modes!r}")
    if not radius > 0:
        raise ValueError(f"ring_centers: expected a positive radius, got {radius!r}")
    angles = 2 * np.pi * np.arange(n_modes) / n_modes
    return torch.tensor(radius * np.stack([np.cos(angles), np.sin(angles)], axis=1), dtype=torch.float32)


def ring_of_gaussians(n: int, n_modes: int = 8, radius: float = 2.0, std: float = 0.02, generator=None):
    """Samples from a mixture of ``n_modes`` equal Gaussians on a circle (the mode-collapse benchmark).

    Each sample picks a mode uniformly at random (centres from ``ring_centers``)
    and adds isotropic Gaussian noise of standard deviation ``std``.

    Args:
        generator: a ``torch.Generator`` (the only source of randomness).

    Returns:
        float32 tensor of shape (n, 2).
    """
    import torch

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"ring_of_gaussians: expected n to be a positive int, got {n!r}")
    if not std >= 0:
        raise ValueError(f"ring_of_gaussians: expected std >= 0, got {std!r}")
    centers = ring_centers(n_modes, radius)
    modes = torch.randint(0, n_modes, (n,), generator=generator)
    return centers[modes] + std * torch.randn(n, 2, generator=generator)
