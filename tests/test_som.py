"""Tests of companion.som (chapter 12) against independent references.

References: scikit-learn's KMeans and roc_auc_score, plain loops over points
and units written here (brute force), and known properties (Lloyd's steps
never increase the objective, a zero-radius map is online k-means). minisom
is not a dependency of the course, so the classic online SOM is written out
below as a numpy loop and the module's map is compared with it on the colour map.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import roc_auc_score

from companion import som
from companion.data import digits
from companion.exercises import check
from companion.training import generator

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digit_data():
    X_train, _, y_train, _ = digits()
    return X_train.double(), y_train


def _blobs(n=300, d=5, centers=6, seed=0):
    X, _ = make_blobs(n_samples=n, n_features=d, centers=centers, cluster_std=1.5, random_state=seed)
    return torch.from_numpy(X)


# --------------------------------------------------------------------------- distances and k-means

def test_squared_distances_match_cdist():
    g = torch.Generator().manual_seed(0)
    X, W = torch.randn(30, 7, generator=g, dtype=torch.float64), torch.randn(9, 7, generator=g, dtype=torch.float64)
    assert torch.allclose(som.squared_distances(X, W), torch.cdist(X, W) ** 2, atol=1e-10)
    assert torch.equal(som.best_matching_units(X, W), torch.cdist(X, W).argmin(1))
    two = som.best_matching_units(X, W, n_best=2)
    assert torch.equal(two, torch.cdist(X, W).argsort(1)[:, :2])


@pytest.mark.parametrize("k", [5, 10])
def test_kmeans_inertia_within_one_percent_of_sklearn(digit_data, k):
    X, _ = digit_data
    for seed in range(3):
        ours = som.kmeans(X, k, seed=seed, n_init=5)
        theirs = KMeans(k, n_init=5, random_state=seed, algorithm="lloyd").fit(X.numpy())
        assert abs(ours.inertia - theirs.inertia_) <= 0.01 * theirs.inertia_, (seed, ours.inertia, theirs.inertia_)
        assert ours.converged
        assert math.isclose(ours.inertia, som.inertia(X, ours.centroids), rel_tol=1e-12)


def test_kmeans_from_the_same_start_is_never_worse_than_sklearn(digit_data):
    Xd, _ = digit_data
    for X, k in [(Xd, 10), (_blobs(), 6), (_blobs(500, 3, 10, seed=1), 12)]:
        for seed in range(4):
            start = som.kmeans_plusplus(X, k, generator(seed))
            ours = som.kmeans(X, k, init=start)
            theirs = KMeans(k, init=start.numpy(), n_init=1, algorithm="lloyd", tol=0.0, max_iter=300).fit(X.numpy())
            assert ours.converged
            assert ours.inertia <= theirs.inertia_ * (1 + 1e-9), (seed, ours.inertia, theirs.inertia_)
            assert ours.inertia >= theirs.inertia_ * (1 - 1e-9)  # the same fixed point: Lloyd is deterministic


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 40), d=st.integers(1, 5), k=st.integers(1, 8), seed=st.integers(0, 10_000),
       duplicates=st.booleans())
def test_no_lloyd_step_increases_the_objective(n, d, k, seed, duplicates):
    k = min(k, n)
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    if duplicates:
        X[n // 2:] = X[: n - n // 2].clone()  # repeated points: ties and empty clusters
    centroids = 3 * torch.randn(k, d, generator=g, dtype=torch.float64)  # some clusters start empty
    J = som.inertia(X, centroids)
    for _ in range(5):
        new, labels = som.lloyd_step(X, centroids)
        # the update step alone: the same assignment, the means are its best centroids
        assert ((X - new[labels]) ** 2).sum() <= ((X - centroids[labels]) ** 2).sum() + 1e-9
        J_new = som.inertia(X, new)  # then the next assignment step
        assert J_new <= J + 1e-9
        centroids, J = new, J_new
    history = som.kmeans(X, k, seed=seed).history
    assert all(b <= a + 1e-9 for a, b in zip(history, history[1:], strict=False))


def test_update_step_keeps_an_empty_cluster_and_moves_the_rest_to_their_means():
    X = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]], dtype=torch.float64)
    C = torch.tensor([[1.0, 1.0], [9.0, 9.0], [-50.0, -50.0]], dtype=torch.float64)
    new, labels = som.lloyd_step(X, C)
    assert labels.tolist() == [0, 0, 1]
    assert torch.equal(new, torch.tensor([[1.0, 0.0], [10.0, 10.0], [-50.0, -50.0]], dtype=torch.float64))


def test_kmeans_plus_plus_spreads_over_separated_blobs():
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    X = (centres[:, None, :] + 0.1 * torch.randn(4, 25, 2, generator=g, dtype=torch.float64)).reshape(-1, 2)
    for seed in range(20):
        start = som.kmeans_plusplus(X, 4, generator(seed))
        blobs = set(torch.cdist(start, centres).argmin(1).tolist())
        assert blobs == {0, 1, 2, 3}, seed  # D^2 sampling: the odds of a repeat are about 1e-5 per draw
        assert all(any(torch.equal(c, x) for x in X) for c in start)  # centroids are data points
    rand = [len(set(torch.cdist(som.kmeans(X, 4, seed=s, init="random", max_iter=1).centroids, centres)
                    .argmin(1).tolist())) for s in range(20)]
    assert min(rand) < 4  # uniform seeding often does put two starts in one blob


def test_kmeans_plus_plus_with_duplicate_points():
    X = torch.zeros(5, 2, dtype=torch.float64)
    X[4] = 1.0
    start = som.kmeans_plusplus(X, 3, generator(0))
    assert start.shape == (3, 2)


# --------------------------------------------------------------------------- the map: update and equivalences

def _brute_online_kmeans(X, W, epochs, lr, seed):
    """Online k-means as a numpy loop over points and units, the permutation taken from torch's generator."""
    X, W = X.numpy(), W.numpy().copy()
    n = len(X)
    etas = np.linspace(lr[0], lr[1], epochs * n)
    g = generator(seed)
    t = 0
    for _ in range(epochs):
        for i in torch.randperm(n, generator=g).tolist():
            dists = [sum((X[i, j] - W[k, j]) ** 2 for j in range(X.shape[1])) for k in range(len(W))]
            c = int(np.argmin(dists))
            W[c] = W[c] + etas[t] * (X[i] - W[c])
            t += 1
    return torch.from_numpy(W)


def test_zero_radius_map_is_online_kmeans():
    X = _blobs(80, 3, 4, seed=2)
    W0 = X[:6].clone() + 0.01
    for seed in (0, 1):
        m = som.train_som(X, 2, 3, epochs=2, batch_size=1, lr=(0.4, 0.02), radius=(0.0, 0.0), init=W0, seed=seed)
        online = som.online_kmeans(X, W0, epochs=2, lr=(0.4, 0.02), seed=seed)
        brute = _brute_online_kmeans(X, W0, 2, (0.4, 0.02), seed)
        assert torch.allclose(m.codebook, online, atol=1e-12)
        assert torch.allclose(online, brute, atol=1e-12)
    # and with a neighbourhood it is not
    m = som.train_som(X, 2, 3, epochs=2, batch_size=1, lr=(0.4, 0.02), radius=(1.0, 1.0), init=W0)
    assert not torch.allclose(m.codebook, online, atol=1e-3)


def test_one_minibatch_step_matches_a_loop_over_units_and_points():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(7, 4, generator=g, dtype=torch.float64)
    W0 = torch.randn(6, 4, generator=g, dtype=torch.float64)
    rows, cols, eta, sigma = 2, 3, 0.3, 1.3
    m = som.train_som(X, rows, cols, epochs=1, batch_size=7, lr=(eta, eta), radius=(sigma, sigma), init=W0)
    expected = W0.clone()
    for k in range(6):
        step = torch.zeros(4, dtype=torch.float64)
        for i in range(7):
            c = int(((W0 - X[i]) ** 2).sum(1).argmin())
            grid_d2 = (k // cols - c // cols) ** 2 + (k % cols - c % cols) ** 2
            step += math.exp(-grid_d2 / (2 * sigma**2)) * (X[i] - W0[k])
        expected[k] = W0[k] + eta / 7 * step
    assert torch.allclose(m.codebook, expected, atol=1e-12)


def test_neighbourhood_kernel():
    positions = som.grid(3, 4)
    assert positions.tolist()[5] == [1.0, 1.0] and positions.shape == (12, 2)
    bmus = torch.tensor([0, 5, 11])
    h = som.neighbourhood(positions, bmus, 1.5)
    for i, c in enumerate(bmus.tolist()):
        for k in range(12):
            d2 = (k // 4 - c // 4) ** 2 + (k % 4 - c % 4) ** 2
            assert math.isclose(float(h[i, k]), math.exp(-d2 / (2 * 1.5**2)), rel_tol=1e-12)
    h0 = som.neighbourhood(positions, bmus, 0.0)
    assert torch.equal(h0, torch.nn.functional.one_hot(bmus, 12).double())


def _classic_som_loop(X, rows, cols, W0, epochs, lr, radius, seed):
    """Kohonen's online rule as a plain numpy loop: the independent implementation the map is compared with."""
    rng = np.random.default_rng(seed)
    W = W0.copy()
    pos = np.array([(k // cols, k % cols) for k in range(rows * cols)], dtype=float)
    T, t = epochs * len(X), 0
    for _ in range(epochs):
        for i in rng.permutation(len(X)):
            frac = t / max(T - 1, 1)
            eta, sigma = lr[0] + (lr[1] - lr[0]) * frac, radius[0] + (radius[1] - radius[0]) * frac
            c = np.argmin(((W - X[i]) ** 2).sum(1))
            h = np.exp(-((pos - pos[c]) ** 2).sum(1) / (2 * sigma**2))
            W += eta * h[:, None] * (X[i] - W)
            t += 1
    return W


def test_colour_map_quantization_error_is_close_to_an_independent_online_som():
    rng = np.random.default_rng(0)
    colours = rng.uniform(size=(400, 3))
    W0 = rng.uniform(size=(100, 3))
    loop = _classic_som_loop(colours, 10, 10, W0, 5, (0.5, 0.01), (5.0, 0.5), seed=1)
    X = torch.from_numpy(colours)
    qe_loop = som.quantization_error(X, torch.from_numpy(loop))
    ours = som.train_som(X, 10, 10, epochs=5, batch_size=1, lr=(0.5, 0.01), radius=(5.0, 0.5),
                         init=torch.from_numpy(W0))
    ours_batched = som.train_som(X, 10, 10, epochs=40, batch_size=16, lr=(0.5, 0.01), radius=(5.0, 0.5),
                                 init=torch.from_numpy(W0))
    for m in (ours, ours_batched):
        qe = som.quantization_error(X, m.codebook)
        assert abs(qe - qe_loop) < 0.15 * qe_loop, (qe, qe_loop)
        assert som.topographic_error(X, m.codebook, 10, 10) < 0.1  # it is ordered
    unordered = som.topographic_error(X, torch.from_numpy(W0), 10, 10)
    assert unordered > 0.5


# --------------------------------------------------------------------------- quality measures, by brute force

def _brute_qe_te(X, W, rows, cols):
    X, W = X.numpy(), W.numpy()
    qe, bad = 0.0, 0
    for x in X:
        dist = [math.sqrt(sum((x[j] - w[j]) ** 2 for j in range(len(x)))) for w in W]
        order = sorted(range(len(W)), key=lambda k: dist[k])
        qe += dist[order[0]]
        a, b = order[0], order[1]
        if abs(a // cols - b // cols) > 1 or abs(a % cols - b % cols) > 1:
            bad += 1
    return qe / len(X), bad / len(X)


@pytest.mark.parametrize("rows,cols", [(3, 4), (1, 5), (5, 5)])
def test_quantization_and_topographic_error_match_brute_force(rows, cols):
    g = torch.Generator().manual_seed(rows * 10 + cols)
    X = torch.randn(60, 3, generator=g, dtype=torch.float64)
    W = torch.randn(rows * cols, 3, generator=g, dtype=torch.float64)
    qe, te = _brute_qe_te(X, W, rows, cols)
    assert math.isclose(som.quantization_error(X, W), qe, rel_tol=1e-10)
    assert math.isclose(som.topographic_error(X, W, rows, cols), te, rel_tol=1e-12)
    trained = som.train_som(X, rows, cols, epochs=5, batch_size=8, seed=1, record=True)
    qe, te = _brute_qe_te(X, trained.codebook, rows, cols)
    assert math.isclose(trained.history["quantization_error"][-1], qe, rel_tol=1e-10)
    assert math.isclose(trained.history["topographic_error"][-1], te, rel_tol=1e-12)


def test_u_matrix_hit_map_and_component_planes_match_loops():
    rows, cols, d = 3, 4, 2
    g = torch.Generator().manual_seed(0)
    W = torch.randn(rows * cols, d, generator=g, dtype=torch.float64)
    U = som.u_matrix(W, rows, cols)
    for r in range(rows):
        for c in range(cols):
            near = [(r + a, c + b) for a, b in ((1, 0), (-1, 0), (0, 1), (0, -1))
                    if 0 <= r + a < rows and 0 <= c + b < cols]
            mean = np.mean([float((W[r * cols + c] - W[i * cols + j]).norm()) for i, j in near])
            assert math.isclose(float(U[r, c]), mean, rel_tol=1e-12)
    X = torch.randn(50, d, generator=g, dtype=torch.float64)
    hits = som.hit_map(X, W, rows, cols)
    assert int(hits.sum()) == 50
    for k in range(rows * cols):
        wins = sum(int(torch.cdist(x[None], W).argmin()) == k for x in X)
        assert int(hits[k // cols, k % cols]) == wins
    planes = som.component_planes(W, rows, cols)
    assert planes.shape == (d, rows, cols) and float(planes[1, 2, 3]) == float(W[2 * cols + 3, 1])
    positions = som.map_positions(X, W, rows, cols)
    assert torch.equal(positions, som.grid(rows, cols)[torch.cdist(X, W).argmin(1)])


def test_unit_labels_take_the_majority_and_empty_units_the_nearest_point():
    X = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [9.0]], dtype=torch.float64)
    y = torch.tensor([1, 1, 2, 3, 3, 4])
    W = torch.tensor([[0.1], [5.0], [8.0], [20.0]], dtype=torch.float64)
    labels = som.unit_labels(X, y, W)
    # unit 3 wins nothing; its nearest training point is 9.0 (class 4)
    assert labels.tolist() == [1, 3, 4, 4]
    assert som.predict(torch.tensor([[0.05], [19.0]], dtype=torch.float64), W, labels).tolist() == [1, 4]
    grid_labels = torch.tensor([0, 0, 1, 1, 0, 1])  # a 2 x 3 map
    # horizontal pairs: (0,0) (0,1) | (1,0) (0,1): 2 of 4 the same; vertical: (0,1) (0,0) (1,1): 1 of 3
    assert math.isclose(som.neighbour_agreement(grid_labels, 2, 3), 3 / 7)


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 6, 40).astype(float), rng.integers(2, 9, 25).astype(float)
        expected = roc_auc_score(np.r_[np.zeros(40), np.ones(25)], np.r_[a, b])
        assert math.isclose(som.roc_auc(a, b), expected, rel_tol=1e-12)
    assert som.roc_auc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 1.0
    assert som.roc_auc([2.0, 3.0], [0.0, 1.0]) == 0.0


# --------------------------------------------------------------------------- bad input

def test_bad_input_gets_clear_errors():
    X = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"kmeans: expected k <= the number of points \(n = 5\), got k = 7"):
        som.kmeans(X, 7)
    with pytest.raises(ValueError, match=r"kmeans_plusplus: expected k <= the number of points"):
        som.kmeans_plusplus(X, 6, generator(0))
    with pytest.raises(ValueError, match=r"kmeans: expected k to be an int > 0, got 0"):
        som.kmeans(X, 0)
    with pytest.raises(ValueError, match=r"train_som: expected rows to be an int > 0, got 0"):
        som.train_som(X, 0, 4, epochs=1)
    with pytest.raises(ValueError, match=r"grid: expected cols to be an int > 0, got 0"):
        som.grid(3, 0)
    bad = X.clone()
    bad[2, 1] = float("nan")
    for call in (lambda: som.kmeans(bad, 2), lambda: som.train_som(bad, 2, 2, epochs=1),
                 lambda: som.quantization_error(bad, X[:2])):
        with pytest.raises(ValueError, match=r"expected X to hold finite numbers, got NaN or infinity"):
            call()
    with pytest.raises(ValueError, match=r"quantization_error: expected W of shape \(K, 3\), got \(4, 2\)"):
        som.quantization_error(X, torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"topographic_error: expected a codebook of rows \* cols = 6 units, got 4"):
        som.topographic_error(X, torch.randn(4, 3), 2, 3)
    with pytest.raises(TypeError, match=r"kmeans: expected X to be a floating-point tensor"):
        som.kmeans(torch.ones(5, 3, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match=r"train_som: expected init to be one of"):
        som.train_som(X, 2, 2, epochs=1, init="zeros")
    with pytest.raises(ValueError, match=r"unit_labels: expected y to hold integer classes in 0..9"):
        som.unit_labels(X, torch.tensor([0, 1, 2, 10, 3]), X[:2])
    with pytest.raises(ValueError, match=r"predict: expected labels of shape \(2,\), got \(3,\)"):
        som.predict(X, X[:2], torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"roc_auc: expected scores for both groups"):
        som.roc_auc([], [1.0])


# --------------------------------------------------------------------------- the exercise's checker

def _batch_map(X, W, rows, cols, radius):
    pos = torch.tensor([(k // cols, k % cols) for k in range(rows * cols)], dtype=X.dtype)
    bmu = ((X[:, None, :] - W[None]) ** 2).sum(-1).argmin(1)
    d2 = ((pos[bmu][:, None] - pos[None]) ** 2).sum(-1)
    h = (d2 == 0).to(X.dtype) if radius == 0 else torch.exp(-d2 / (2 * radius**2))
    total = h.sum(0)
    return torch.where(total[:, None] > 0, h.T @ X / total.clamp_min(1e-300)[:, None], W)


def test_checker_accepts_a_correct_solution_and_names_typical_bugs():
    assert check("ch12-batch-som-step", _batch_map, include_hidden=True).passed

    def divided_by_n(X, W, rows, cols, radius):  # a mean over all points instead of a weighted mean
        pos = torch.tensor([(k // cols, k % cols) for k in range(rows * cols)], dtype=X.dtype)
        bmu = ((X[:, None, :] - W[None]) ** 2).sum(-1).argmin(1)
        d2 = ((pos[bmu][:, None] - pos[None]) ** 2).sum(-1)
        h = (d2 == 0).to(X.dtype) if radius == 0 else torch.exp(-d2 / (2 * radius**2))
        return h.T @ X / len(X)

    def unsquared(X, W, rows, cols, radius):  # exp(-distance / 2 sigma^2)
        pos = torch.tensor([(k // cols, k % cols) for k in range(rows * cols)], dtype=X.dtype)
        bmu = ((X[:, None, :] - W[None]) ** 2).sum(-1).argmin(1)
        d = ((pos[bmu][:, None] - pos[None]) ** 2).sum(-1).sqrt()
        h = (d == 0).to(X.dtype) if radius == 0 else torch.exp(-d / (2 * radius**2))
        total = h.sum(0)
        return torch.where(total[:, None] > 0, h.T @ X / total.clamp_min(1e-300)[:, None], W)

    def columns_first(X, W, rows, cols, radius):  # units numbered column by column
        return _batch_map(X, W, cols, rows, radius) if radius else _batch_map(X, W, rows, cols, radius)

    for wrong, words in [(divided_by_n, "mean of the points"), (unsquared, "SQUARED"), (columns_first, "row by row")]:
        result = check("ch12-batch-som-step", wrong)
        assert not result.passed, wrong.__name__
        assert words in result.message, (wrong.__name__, result.message)
