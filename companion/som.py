"""k-means and Kohonen's self-organizing map, written out (chapter 12).

Shapes, for n data points of width d and a codebook of K units:

* data X: (n, d); codebook (centroids, or the map's weight vectors) W: (K, d)
* ``squared_distances(X, W)``: (n, K), entry (i, k) = ||x_i - w_k||^2
* a map of ``rows`` x ``cols`` units numbers them row by row: unit k sits at
  grid position ``grid(rows, cols)[k] = (k // cols, k % cols)``
* ``neighbourhood(...)``: (n, K), the kernel h_{k, c(x_i)} of each unit k
  around each point's best-matching unit c(x_i)

Everything is vectorized the same way: one distance matrix per batch of
points finds every point's best-matching unit (BMU) at once, and one matrix
product moves every unit; no Python loop runs over units. The only loops are
over Lloyd iterations, over minibatches, and (in ``online_kmeans``, the
reference the zero-radius map is compared with) over single points.

Works in the dtype of X (float32 or float64); seeds are torch generators
from ``companion.training.generator``; nothing global is touched.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from companion._checks import check_choice, check_finite, check_positive, check_tensor
from companion.training import generator

__all__ = [
    "squared_distances", "best_matching_units", "inertia", "assign", "update_centroids", "lloyd_step",
    "kmeans_plusplus", "KMeansResult", "kmeans", "online_kmeans", "grid", "neighbourhood", "schedule",
    "SOM", "train_som", "quantization_error", "topographic_error", "u_matrix", "hit_map",
    "component_planes", "unit_labels", "predict", "map_positions", "neighbour_agreement", "roc_auc",
]


# --------------------------------------------------------------------------- checks

def _data(fn: str, X: object, name: str = "X", width: int | None = None) -> torch.Tensor:
    check_tensor(fn, name, X, shape=("n", width) if width is not None else ("n", "d"), floating=True)
    if X.shape[0] == 0:
        raise ValueError(f"{fn}: expected {name} to hold at least one point, got shape {tuple(X.shape)}")
    check_finite(fn, name, X)
    return X


def _codebook(fn: str, X: torch.Tensor, W: object, name: str = "W") -> torch.Tensor:
    check_tensor(fn, name, W, shape=("K", X.shape[1]), floating=True)
    if W.shape[0] == 0:
        raise ValueError(f"{fn}: expected {name} to hold at least one unit, got shape {tuple(W.shape)}")
    check_finite(fn, name, W)
    return W.to(X.dtype)


def _grid_size(fn: str, rows: object, cols: object, units: int | None = None) -> None:
    check_positive(fn, "rows", rows, integer=True)
    check_positive(fn, "cols", cols, integer=True)
    if units is not None and rows * cols != units:
        raise ValueError(f"{fn}: expected a codebook of rows * cols = {rows * cols} units, got {units}")


# --------------------------------------------------------------------------- distances

def squared_distances(X: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """||x_i - w_k||^2 for every point and unit: X (n, d), W (K, d) -> (n, K).

    Written as ||x||^2 - 2 x.w + ||w||^2 (one matrix product) and clamped at 0
    against rounding. Chapter 12, "k-means".
    """
    X = _data("squared_distances", X)
    W = _codebook("squared_distances", X, W)
    return _d2(X, W)


def _d2(X: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``squared_distances`` without the argument checks, for the inner loops."""
    d2 = (X * X).sum(1, keepdim=True) - 2.0 * X @ W.T + (W * W).sum(1)[None, :]
    return d2.clamp_min_(0.0)


def best_matching_units(X: torch.Tensor, W: torch.Tensor, n_best: int = 1) -> torch.Tensor:
    """Index of the nearest unit of each point: (n,) int64; (n, n_best) with ``n_best > 1``.

    With ``n_best=2`` column 0 is the best-matching unit and column 1 the
    second best (what the topographic error compares). Ties go to the lower
    index for ``n_best=1``. Chapter 12, "Kohonen's self-organizing map".
    """
    X = _data("best_matching_units", X)
    W = _codebook("best_matching_units", X, W)
    check_positive("best_matching_units", "n_best", n_best, integer=True)
    if n_best > W.shape[0]:
        raise ValueError(f"best_matching_units: expected n_best <= the number of units ({W.shape[0]}), got {n_best}")
    d2 = _d2(X, W)
    if n_best == 1:
        return d2.argmin(dim=1)
    return d2.topk(n_best, dim=1, largest=False).indices


# --------------------------------------------------------------------------- k-means

def inertia(X: torch.Tensor, centroids: torch.Tensor) -> float:
    """The k-means objective J = sum_i min_k ||x_i - mu_k||^2 (a sum, not a mean). Chapter 12, "k-means"."""
    X = _data("inertia", X)
    return float(_d2(X, _codebook("inertia", X, centroids, "centroids")).min(dim=1).values.sum())


def assign(X: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Lloyd's assignment step: each point to its nearest centroid, (n,) int64 (ties: the lower index)."""
    return _d2(X, centroids).argmin(dim=1)


def update_centroids(X: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Lloyd's update step: each centroid moves to the mean of its points, (K, d).

    A centroid with no points keeps its place (so J cannot increase; scikit-learn
    instead moves it to a far point). ``labels`` (n,) int64 in 0..K-1.
    """
    K = centroids.shape[0]
    onehot = torch.nn.functional.one_hot(labels, K).to(X.dtype)  # (n, K)
    counts = onehot.sum(0)  # (K,)
    sums = onehot.T @ X  # (K, d)
    means = sums / counts.clamp_min(1.0)[:, None]
    return torch.where(counts[:, None] > 0, means, centroids)


def lloyd_step(X: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One iteration of Lloyd's algorithm: (new centroids (K, d), the assignment (n,) it used)."""
    X = _data("lloyd_step", X)
    centroids = _codebook("lloyd_step", X, centroids, "centroids")
    labels = assign(X, centroids)
    return update_centroids(X, labels, centroids), labels


def _check_k(fn: str, X: torch.Tensor, k: object) -> None:
    check_positive(fn, "k", k, integer=True)
    if k > X.shape[0]:
        raise ValueError(f"{fn}: expected k <= the number of points (n = {X.shape[0]}), got k = {k}")


def kmeans_plusplus(X: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur and Vassilvitskii 2007): (k, d) starting centroids.

    The first centroid is a uniformly drawn point; each next one is a point
    drawn with probability proportional to D(x)^2, its squared distance to
    the nearest centroid chosen so far. Chapter 12, "k-means++".
    """
    X = _data("kmeans_plusplus", X)
    _check_k("kmeans_plusplus", X, k)
    n = X.shape[0]
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    d2 = _d2(X, X[chosen]).squeeze(1)  # (n,) D(x)^2
    for _ in range(k - 1):
        total = float(d2.sum())
        if total <= 0.0:  # every point already coincides with a centroid: take any unchosen point
            rest = torch.ones(n, dtype=torch.bool)
            rest[chosen] = False
            i = int(torch.nonzero(rest)[0])
        else:
            i = int(torch.multinomial((d2 / total).double(), 1, generator=generator))
        chosen.append(i)
        d2 = torch.minimum(d2, _d2(X, X[i:i + 1]).squeeze(1))
    return X[chosen].clone()


class KMeansResult(NamedTuple):
    """What ``kmeans`` returns.

    centroids (K, d); labels (n,); inertia: the final J; history: J after
    every half step, starting with the assignment to the initial centroids
    ([J(start), J(after update 1), J(after assignment 2), ...]); n_iter:
    Lloyd iterations run; converged: whether the assignment stopped changing.
    """

    centroids: torch.Tensor
    labels: torch.Tensor
    inertia: float
    history: list[float]
    n_iter: int
    converged: bool


def kmeans(X: torch.Tensor, k: int, seed: int = 0, init: str | torch.Tensor = "k-means++",
           max_iter: int = 300, n_init: int = 1) -> KMeansResult:
    """Lloyd's algorithm from ``init``, until the assignment no longer changes (or ``max_iter``).

    init: "k-means++" (``kmeans_plusplus``), "random" (k distinct data points
    drawn uniformly) or a (k, d) tensor of starting centroids. With
    ``n_init > 1`` it runs from ``n_init`` seeded starts drawn in turn from
    ``generator(seed)`` and returns the run with the lowest inertia.
    Chapter 12, "k-means".
    """
    X = _data("kmeans", X)
    _check_k("kmeans", X, k)
    check_positive("kmeans", "max_iter", max_iter, integer=True)
    check_positive("kmeans", "n_init", n_init, integer=True)
    if isinstance(init, torch.Tensor):
        start = _codebook("kmeans", X, init, "init")
        if start.shape[0] != k:
            raise ValueError(f"kmeans: expected init of shape ({k}, {X.shape[1]}), got {tuple(init.shape)}")
        starts = [start.clone()]
    else:
        check_choice("kmeans", "init", init, ("k-means++", "random"))
        g = generator(seed)
        starts = []
        for _ in range(n_init):
            if init == "k-means++":
                starts.append(kmeans_plusplus(X, k, g))
            else:
                starts.append(X[torch.randperm(X.shape[0], generator=g)[:k]].clone())
    best = None
    for centroids in starts:
        labels = assign(X, centroids)
        history = [_labelled_inertia(X, centroids, labels)]
        converged, n_iter = False, 0
        while n_iter < max_iter:
            n_iter += 1
            centroids = update_centroids(X, labels, centroids)
            history.append(_labelled_inertia(X, centroids, labels))
            new_labels = assign(X, centroids)
            history.append(_labelled_inertia(X, centroids, new_labels))
            if torch.equal(new_labels, labels):
                converged = True
                break
            labels = new_labels
        result = KMeansResult(centroids, labels, history[-1], history, n_iter, converged)
        if best is None or result.inertia < best.inertia:
            best = result
    return best


def _labelled_inertia(X: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor) -> float:
    return float(((X - centroids[labels]) ** 2).sum())


def online_kmeans(X: torch.Tensor, centroids: torch.Tensor, epochs: int, lr: tuple[float, float] = (0.5, 0.01),
                  seed: int = 0) -> torch.Tensor:
    """Online (MacQueen-style) k-means: one point at a time, only its nearest centroid moves.

    For every point x, in the order of ``torch.randperm(n, generator=g)`` per
    epoch with ``g = generator(seed)``: c = argmin_k ||x - mu_k||, then
    mu_c <- mu_c + eta_t (x - mu_c), with eta_t going linearly from lr[0] to
    lr[1] over the epochs * n steps (``schedule``). Written as a plain loop
    over points: it is the reference a zero-radius ``train_som`` is compared
    with. Returns the centroids (K, d). Chapter 12, "Zero radius: online k-means".
    """
    X = _data("online_kmeans", X)
    mu = _codebook("online_kmeans", X, centroids, "centroids").clone()
    check_positive("online_kmeans", "epochs", epochs, integer=True)
    n = X.shape[0]
    etas = schedule(lr[0], lr[1], epochs * n)
    g = generator(seed)
    t = 0
    for _ in range(epochs):
        for i in torch.randperm(n, generator=g).tolist():
            x = X[i]
            c = int(((mu - x) ** 2).sum(1).argmin())
            mu[c] += float(etas[t]) * (x - mu[c])
            t += 1
    return mu


# --------------------------------------------------------------------------- the map

def grid(rows: int, cols: int) -> torch.Tensor:
    """Grid positions of the units of a rows x cols map, (rows * cols, 2) float64: unit k at (k // cols, k % cols)."""
    _grid_size("grid", rows, cols)
    r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64),
                          indexing="ij")
    return torch.stack([r.reshape(-1), c.reshape(-1)], dim=1)


def neighbourhood(positions: torch.Tensor, bmus: torch.Tensor, radius: float) -> torch.Tensor:
    """The Gaussian neighbourhood kernel h_{k, c} = exp(-||r_k - r_c||^2 / (2 radius^2)): (n, K).

    positions (K, 2) grid positions (``grid``); bmus (n,) the best-matching
    unit c of each point. ``radius = 0`` is the limit: h = 1 on the BMU and 0
    elsewhere (winner take all). Chapter 12, "Kohonen's self-organizing map".
    """
    check_positive("neighbourhood", "radius", radius, allow_zero=True)
    g2 = ((positions[bmus][:, None, :] - positions[None, :, :]) ** 2).sum(-1)  # (n, K)
    if radius == 0:
        return (g2 == 0).to(positions.dtype)
    return torch.exp(-g2 / (2.0 * radius**2))


def schedule(start: float, end: float, steps: int) -> torch.Tensor:
    """Values going linearly from ``start`` (step 0) to ``end`` (the last step): (steps,) float64."""
    check_positive("schedule", "steps", steps, integer=True)
    if steps == 1:
        return torch.tensor([float(start)], dtype=torch.float64)
    return torch.linspace(float(start), float(end), steps, dtype=torch.float64)


class SOM(NamedTuple):
    """A trained map: ``codebook`` (rows * cols, d), unit k at grid position (k // cols, k % cols).

    history: per epoch, the quantization and topographic error on the
    training data after that epoch (lists of floats), if asked for.
    """

    codebook: torch.Tensor
    rows: int
    cols: int
    history: dict[str, list[float]]

    @property
    def positions(self) -> torch.Tensor:
        """(K, 2) grid positions of the units."""
        return grid(self.rows, self.cols)


def train_som(X: torch.Tensor, rows: int, cols: int, epochs: int, batch_size: int = 32,
              lr: tuple[float, float] = (0.5, 0.01), radius: tuple[float, float] | None = None,
              init: str | torch.Tensor = "random", seed: int = 0, record: bool = False) -> SOM:
    """Train a rows x cols self-organizing map on X (n, d) with minibatch updates.

    Each step takes a minibatch B of points (a fresh ``randperm`` per epoch
    from ``generator(seed)``), finds every point's best-matching unit c(x)
    with one distance matrix, and moves every unit k at once:

        w_k <- w_k + eta_t / |B| * sum_{x in B} h_{k, c(x)}(sigma_t) (x - w_k)

    (``neighbourhood``), with eta_t going linearly from lr[0] to lr[1] and the
    radius sigma_t from radius[0] to radius[1] over all steps (``schedule``).
    ``batch_size=1`` is Kohonen's online rule; with radius (0, 0) it is
    exactly ``online_kmeans``. The default radius goes from max(rows, cols) / 2
    to 0.5. init: "random" (units start at data points drawn with
    replacement), "pca" (a regular grid on the plane of the top two principal
    components, spanning +-2 standard deviations) or a (K, d) tensor.
    ``record=True`` logs QE and TE after each epoch in ``history``.
    Chapter 12, "Kohonen's self-organizing map".
    """
    X = _data("train_som", X)
    _grid_size("train_som", rows, cols)
    check_positive("train_som", "epochs", epochs, integer=True)
    check_positive("train_som", "batch_size", batch_size, integer=True)
    if radius is None:
        radius = (max(rows, cols) / 2.0, 0.5)
    for value in (*lr, *radius):
        check_positive("train_som", "every lr and radius value", value, allow_zero=True)
    n = X.shape[0]
    g = generator(seed)
    W = _som_init("train_som", X, rows, cols, init, g)
    positions = grid(rows, cols).to(X.dtype)
    g2 = ((positions[:, None, :] - positions[None, :, :]) ** 2).sum(-1)  # (K, K) squared grid distances
    per_epoch = -(-n // batch_size)
    etas = schedule(lr[0], lr[1], epochs * per_epoch)
    sigmas = schedule(radius[0], radius[1], epochs * per_epoch)
    history: dict[str, list[float]] = {"quantization_error": [], "topographic_error": []}
    t = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        for start in range(0, n, batch_size):
            x = X[order[start:start + batch_size]]  # (B, d)
            bmu = _d2(x, W).argmin(dim=1)  # (B,): one BMU search for the batch
            sigma = float(sigmas[t])
            h = (g2[bmu] == 0).to(X.dtype) if sigma == 0 else torch.exp(-g2[bmu] / (2.0 * sigma**2))  # (B, K)
            # sum_x h_kx (x - w_k) = (h^T x)_k - (sum_x h_kx) w_k, for every k in one product
            W = W + float(etas[t]) / x.shape[0] * (h.T @ x - h.sum(0)[:, None] * W)
            t += 1
        if record:
            history["quantization_error"].append(quantization_error(X, W))
            history["topographic_error"].append(topographic_error(X, W, rows, cols))
    return SOM(W, rows, cols, history)


def _som_init(fn: str, X: torch.Tensor, rows: int, cols: int, init: str | torch.Tensor,
              g: torch.Generator) -> torch.Tensor:
    K = rows * cols
    if isinstance(init, torch.Tensor):
        W = _codebook(fn, X, init, "init")
        if W.shape[0] != K:
            raise ValueError(f"{fn}: expected init of shape ({K}, {X.shape[1]}), got {tuple(init.shape)}")
        return W.clone()
    check_choice(fn, "init", init, ("random", "pca"))
    if init == "random":
        return X[torch.randint(X.shape[0], (K,), generator=g)].clone()
    mean = X.mean(0)
    _, S, Vt = torch.linalg.svd(X - mean, full_matrices=False)
    std = S[:2] / max(X.shape[0] - 1, 1) ** 0.5
    if Vt.shape[0] < 2:
        raise ValueError(f"{fn}: expected data of width >= 2 for init='pca', got {tuple(X.shape)}")
    positions = grid(rows, cols).to(X.dtype)
    a = (positions[:, 0] / max(rows - 1, 1) * 4.0 - 2.0) * std[0]
    b = (positions[:, 1] / max(cols - 1, 1) * 4.0 - 2.0) * std[1]
    return mean + a[:, None] * Vt[0] + b[:, None] * Vt[1]


# --------------------------------------------------------------------------- quality measures and pictures

def quantization_error(X: torch.Tensor, W: torch.Tensor) -> float:
    """QE = mean_i ||x_i - w_{c(x_i)}||, the mean distance (not squared) to the best-matching unit.

    Chapter 12, "Measuring a map".
    """
    X = _data("quantization_error", X)
    return float(_d2(X, _codebook("quantization_error", X, W)).min(dim=1).values.sqrt().mean())


def topographic_error(X: torch.Tensor, W: torch.Tensor, rows: int, cols: int) -> float:
    """TE = the fraction of points whose best and second-best units are not neighbours on the grid.

    Neighbours: the 8 units around a unit (grid positions differing by at most
    1 in each coordinate, diagonals included). Any codebook laid out row by
    row on the grid can be scored, k-means centroids included. Chapter 12,
    "Measuring a map".
    """
    X = _data("topographic_error", X)
    W = _codebook("topographic_error", X, W)
    _grid_size("topographic_error", rows, cols, W.shape[0])
    if W.shape[0] < 2:
        raise ValueError("topographic_error: expected at least 2 units, got 1")
    two = best_matching_units(X, W, n_best=2)
    positions = grid(rows, cols)
    gap = (positions[two[:, 0]] - positions[two[:, 1]]).abs().max(dim=1).values  # Chebyshev distance
    return float((gap > 1).double().mean())


def u_matrix(W: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The U-matrix: each unit's mean distance to its (up to 4) grid neighbours' weight vectors, (rows, cols).

    High values mark borders between clusters, low values their insides.
    Chapter 12, "The U-matrix, component planes and hit maps".
    """
    check_tensor("u_matrix", "W", W, shape=(None, None), floating=True)
    _grid_size("u_matrix", rows, cols, W.shape[0])
    check_finite("u_matrix", "W", W)
    M = W.reshape(rows, cols, -1)
    total = torch.zeros(rows, cols, dtype=W.dtype)
    count = torch.zeros(rows, cols, dtype=W.dtype)
    down = (M[1:] - M[:-1]).norm(dim=-1)  # (rows - 1, cols): unit (r, c) to (r + 1, c)
    right = (M[:, 1:] - M[:, :-1]).norm(dim=-1)  # (rows, cols - 1)
    total[:-1] += down
    total[1:] += down
    total[:, :-1] += right
    total[:, 1:] += right
    count[:-1] += 1
    count[1:] += 1
    count[:, :-1] += 1
    count[:, 1:] += 1
    return total / count.clamp_min(1.0)


def hit_map(X: torch.Tensor, W: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """How many points each unit is the best-matching unit of, (rows, cols) int64."""
    X = _data("hit_map", X)
    W = _codebook("hit_map", X, W)
    _grid_size("hit_map", rows, cols, W.shape[0])
    return torch.bincount(best_matching_units(X, W), minlength=W.shape[0]).reshape(rows, cols)


def component_planes(W: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Each input component's value over the map, (d, rows, cols): plane j is W[:, j] laid out on the grid."""
    check_tensor("component_planes", "W", W, shape=(None, None), floating=True)
    _grid_size("component_planes", rows, cols, W.shape[0])
    return W.T.reshape(W.shape[1], rows, cols)


def map_positions(X: torch.Tensor, W: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Each point's place on the map, the grid position of its best-matching unit: (n, 2) float64."""
    X = _data("map_positions", X)
    W = _codebook("map_positions", X, W)
    _grid_size("map_positions", rows, cols, W.shape[0])
    return grid(rows, cols)[best_matching_units(X, W)]


# --------------------------------------------------------------------------- using the units

def unit_labels(X: torch.Tensor, y: torch.Tensor, W: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    """Label each unit: the majority class of the training points it wins, (K,) int64.

    A unit that wins no point takes the class of the training point nearest
    to it. Ties go to the smaller class. Chapter 12, "Classifying with labelled units".
    """
    X = _data("unit_labels", X)
    W = _codebook("unit_labels", X, W)
    check_tensor("unit_labels", "y", y, shape=(X.shape[0],))
    check_positive("unit_labels", "n_classes", n_classes, integer=True)
    if y.is_floating_point() or int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValueError(f"unit_labels: expected y to hold integer classes in 0..{n_classes - 1}, "
                         f"got {y.dtype} values in {y.min().item()}..{y.max().item()}")
    K = W.shape[0]
    bmu = best_matching_units(X, W)
    votes = torch.zeros(K, n_classes, dtype=torch.int64)
    votes.index_put_((bmu, y.long()), torch.ones_like(bmu), accumulate=True)
    labels = votes.argmax(dim=1)
    empty = votes.sum(1) == 0
    if empty.any():
        nearest = best_matching_units(W[empty], X)  # the nearest training point to each empty unit
        labels[empty] = y.long()[nearest]
    return labels


def predict(X: torch.Tensor, W: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The label of each point's best-matching unit: X (n, d), W (K, d), labels (K,) -> (n,) int64."""
    X = _data("predict", X)
    W = _codebook("predict", X, W)
    check_tensor("predict", "labels", labels, shape=(W.shape[0],))
    return labels[best_matching_units(X, W)]


def neighbour_agreement(labels: torch.Tensor, rows: int, cols: int) -> float:
    """The fraction of pairs of grid neighbours (4-neighbourhood) that carry the same unit label.

    Chapter 12, "What a map buys".
    """
    _grid_size("neighbour_agreement", rows, cols, labels.shape[0])
    L = labels.reshape(rows, cols)
    same = (L[1:] == L[:-1]).sum() + (L[:, 1:] == L[:, :-1]).sum()
    pairs = (rows - 1) * cols + rows * (cols - 1)
    if pairs == 0:
        raise ValueError(f"neighbour_agreement: expected a grid with neighbours, got {rows} x {cols}")
    return float(same) / pairs


def roc_auc(normal: object, anomalous: object) -> float:
    """Area under the ROC curve of an anomaly score: P(score(anomaly) > score(normal)), ties counting 1/2.

    normal (m,), anomalous (p,): scores (higher = more anomalous), e.g. each
    point's distance to its best-matching unit. Computed from ranks (the
    Mann-Whitney U statistic). Chapter 12, "Anomalies by quantization error".
    """
    from scipy.stats import rankdata

    a = np.asarray(normal.detach() if hasattr(normal, "detach") else normal, dtype=np.float64).reshape(-1)
    b = np.asarray(anomalous.detach() if hasattr(anomalous, "detach") else anomalous, dtype=np.float64).reshape(-1)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"roc_auc: expected scores for both groups, got {a.size} normal and {b.size} anomalous")
    check_finite("roc_auc", "the scores", np.concatenate([a, b]))
    ranks = rankdata(np.concatenate([a, b]))  # average ranks for ties
    u = ranks[a.size:].sum() - b.size * (b.size + 1) / 2.0
    return float(u / (a.size * b.size))
