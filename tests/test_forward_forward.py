"""companion.forward_forward: locality (no gradient crosses a layer), the losses, labels, any image width, errors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from companion import forward_forward as ff
from companion.measure import saved_tensor_bytes
from companion.exercises import check


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one thread is faster, and far steadier on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(n=6, p=20, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, p, generator=g), torch.randint(0, c, (n,), generator=g)


# --------------------------------------------------------------------------- labels


def test_embed_label_prepends_or_replaces_a_one_hot_code():
    x, labels = _batch(n=5, p=20, c=4)
    out = ff.embed_label(x, labels, num_classes=4)
    assert out.shape == (5, 24)
    np.testing.assert_array_equal(out[:, :4].numpy(), np.eye(4)[labels.numpy()])
    assert torch.equal(out[:, 4:], x)
    out = ff.embed_label(x, labels, num_classes=4, replace=True, value=0.5)
    assert out.shape == (5, 20)
    np.testing.assert_array_equal(out[:, :4].numpy(), 0.5 * np.eye(4)[labels.numpy()])
    assert torch.equal(out[:, 4:], x[:, 4:])
    neutral = ff.neutral_label(x, num_classes=4)
    assert torch.allclose(neutral[:, :4], torch.full((5, 4), 0.25)) and torch.equal(neutral[:, 4:], x)


def test_wrong_labels_are_never_right_and_cover_all_other_labels_evenly():
    labels = torch.arange(10).repeat(2_000)
    wrong = ff.wrong_labels(labels, 10, torch.Generator().manual_seed(0))
    assert (wrong != labels).all() and wrong.min() >= 0 and wrong.max() <= 9
    for true in range(10):
        counts = torch.bincount(wrong[labels == true], minlength=10).float()
        assert counts[true] == 0
        others = counts[torch.arange(10) != true]
        assert (others - 2_000 / 9).abs().max() < 80  # ~4.5 standard deviations of a binomial
    again = ff.wrong_labels(labels, 10, torch.Generator().manual_seed(0))
    assert torch.equal(wrong, again)


# --------------------------------------------------------------------------- goodness and the losses


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-30, 60), min_size=2, max_size=12), st.floats(0.5, 20))
def test_softplus_loss_is_the_logistic_negative_log_likelihood(values, theta):
    g = torch.tensor(values, dtype=torch.float64)
    g_pos, g_neg = g[: len(g) // 2], g[len(g) // 2:]
    # independent reference, in plain floats: -log p = log(1 + e^(theta - g)), -log(1 - p) = log(1 + e^(g - theta))
    ref = [math.log1p(math.exp(theta - v)) for v in g_pos.tolist()]
    ref += [math.log1p(math.exp(v - theta)) for v in g_neg.tolist()]
    expected = sum(ref) / len(ref)
    assert math.isclose(float(ff.softplus_loss(g_pos, g_neg, theta)), expected, rel_tol=1e-9, abs_tol=1e-12)
    if (g - theta).abs().max() < 15:  # where 1 - sigmoid keeps enough digits in float64
        assert math.isclose(float(ff.logistic_loss(g_pos, g_neg, theta)), expected, rel_tol=1e-6, abs_tol=1e-9)


def test_the_literal_logistic_form_overflows_where_softplus_does_not():
    g_pos, g_neg = torch.tensor([0.0]), torch.tensor([200.0])
    assert math.isinf(float(ff.logistic_loss(g_pos, g_neg, 10.0)))
    assert math.isclose(float(ff.softplus_loss(g_pos, g_neg, 10.0)), (F.softplus(torch.tensor(10.0)) + 190) / 2, rel_tol=1e-6)


def test_goodness_and_normalize():
    h = torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    assert torch.equal(ff.goodness(h), torch.tensor([9.0, 0.0]))
    n = ff.normalize(h)
    assert torch.allclose(n[0], torch.tensor([1 / 3, 2 / 3, 2 / 3])) and torch.equal(n[1], torch.zeros(3))


def test_layer_forward_and_loss_gradient_match_a_hand_written_reference():
    layer = ff.FFLayer(5, 3, theta=1.5, generator=torch.Generator().manual_seed(1))
    x_pos, x_neg = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    W = layer.weight.detach().double().requires_grad_()
    b = layer.bias.detach().double().requires_grad_()

    def reference(x):
        return torch.clamp((x / x.norm(dim=1, keepdim=True)) @ W.T + b, min=0)

    hp, hn = reference(x_pos), reference(x_neg)
    loss = (torch.log1p(torch.exp(1.5 - (hp**2).sum(1))).sum() + torch.log1p(torch.exp((hn**2).sum(1) - 1.5)).sum()) / 8
    loss.backward()
    layer.double()
    ours = layer.loss(layer(x_pos), layer(x_neg))
    ours.backward()
    assert math.isclose(float(ours.detach()), float(loss.detach()), rel_tol=1e-9)
    torch.testing.assert_close(layer.weight.grad, W.grad)
    torch.testing.assert_close(layer.bias.grad, b.grad)


# --------------------------------------------------------------------------- locality


def test_no_gradient_crosses_a_layer_boundary():
    net = ff.FFNet([14, 8, 6, 5], seed=0)
    x, labels = _batch(n=6, p=10, c=4)
    x_pos = ff.embed_label(x, labels, 4).requires_grad_()
    # 1. a loss on the top layer's activity reaches neither the input nor any lower layer
    h = x_pos
    for layer in net.layers:
        h = layer(h)
    assert h.grad_fn is not None
    ff.goodness(h).sum().backward()
    assert x_pos.grad is None
    for layer in net.layers[:-1]:
        assert layer.weight.grad is None and layer.bias.grad is None
    assert net.layers[-1].weight.grad is not None
    # 2. a layer's training step changes only that layer's parameters and leaves the others' gradients empty
    net.zero_grad(set_to_none=True)
    before = [p.detach().clone() for p in net.parameters()]
    middle = net.layers[1]
    middle.train_step(torch.randn(6, 8), torch.randn(6, 8))
    for i, layer in enumerate(net.layers):
        changed = [not torch.equal(p, b) for p, b in zip(layer.parameters(), before[2 * i: 2 * i + 2])]
        if layer is middle:
            assert all(changed) and layer.weight.grad is not None
        else:
            assert not any(changed) and layer.weight.grad is None and layer.bias.grad is None


def test_ff_keeps_one_layer_of_activations_backprop_keeps_all():
    sizes = [20] + [30] * 10
    x = torch.randn(8, 20)
    net = ff.FFNet(sizes, seed=0)
    per_layer, h = [], x
    for layer in net.layers:  # positive and negative data: 2 x 8 rows through one layer
        per_layer.append(saved_tensor_bytes(lambda: layer.loss(layer(h), layer(h)), exclude=list(layer.parameters())))  # noqa: B023 (called at once)
        h = layer(h)
    # each layer keeps its normalized input and its output, for 16 rows, plus a few per-row numbers
    assert all(b - 2 * 8 * (30 + 30) * 4 in range(0, 200) for b in per_layer[1:]), per_layer
    model = ff.backprop_net(sizes, num_classes=5)
    y = torch.randint(0, 5, (8,))
    whole = saved_tensor_bytes(lambda: F.cross_entropy(model(x), y), exclude=list(model.parameters()))
    assert whole >= 10 * 8 * 30 * 4  # at least every hidden activity (8 x 30 floats, 10 layers)
    assert whole > 2 * max(per_layer)


# --------------------------------------------------------------------------- training and prediction


def test_train_and_predict_work_on_784_pixel_images():
    """Not tied to the 8x8 digits: MNIST-shaped random data whose class is set by one pixel block."""
    g = torch.Generator().manual_seed(0)
    n = 300
    y = torch.randint(0, 10, (n,), generator=g)
    X = 0.1 * torch.rand(n, 784, generator=g)
    for c in range(10):  # class c lights pixels 100 + 60c .. 100 + 60c + 59
        X[y == c, 100 + 60 * c: 160 + 60 * c] += 0.9
    X_train, y_train, X_test, y_test = X[:200], y[:200], X[200:], y[200:]
    net = ff.FFNet([794, 64, 64], seed=0, lr=0.01)
    history = ff.train_ff(net, X_train, y_train, epochs=60, batch_size=50, seed=0)
    assert history.stacked("g_pos").shape == (60, 2)
    assert history.stacked("g_pos")[-1, 0] > history.stacked("g_neg")[-1, 0] + 1
    predictions = ff.predict(net, X_test)
    assert predictions.shape == (100,) and predictions.dtype == torch.int64
    assert (predictions == y_test).float().mean() > 0.9
    # replacing the first pixels instead of prepending gives a 784-wide input
    net2 = ff.FFNet([784, 32], seed=0)
    ff.train_ff(net2, X_train, y_train, epochs=2, replace=True)
    assert ff.predict(net2, X_test, replace=True).shape == (100,)


def test_training_is_reproducible_with_a_seed():
    X, y = _batch(n=40, p=12, c=3, seed=2)
    runs = []
    for _ in range(2):
        net = ff.FFNet([15, 10], seed=3)
        ff.train_ff(net, X, y, epochs=3, num_classes=3, seed=4)
        runs.append(net.layers[0].weight.detach().clone())
    assert torch.equal(*runs)


def test_prediction_ignores_theta_and_sums_the_goodness_table():
    X, _ = _batch(n=12, p=10, c=3)
    net = ff.FFNet([13, 9, 7], seed=0)
    table = net.goodness_per_label(X, 3)
    assert table.shape == (12, 3, 2)
    assert torch.equal(ff.predict(net, X, 3), table.sum(2).argmax(1))
    assert torch.equal(ff.predict(net, X, 3, skip_first=True), table[:, :, 1].argmax(1))
    for layer in net.layers:
        layer.theta = 1000.0
    assert torch.equal(ff.predict(net, X, 3), table.sum(2).argmax(1))


def test_linear_readout_and_backprop_baseline_learn_a_separable_problem():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (90,), generator=g)
    X = 0.1 * torch.rand(90, 12, generator=g)
    X[torch.arange(90), y * 4] += 1.0
    readout = ff.fit_linear_readout(X, y, num_classes=3, steps=200)
    assert (readout(X).argmax(1) == y).all()
    model = ff.backprop_net([12, 16], num_classes=3)
    losses = ff.train_backprop(model, X, y, epochs=30, batch_size=30, lr=0.01, num_classes=3)
    assert losses[-1] < 0.2 * losses[0]


# --------------------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors():
    x, labels = _batch(n=3, p=5, c=2)
    with pytest.raises(ValueError, match=r"expected x .*shape \(n, pixels\), got .*\(3, 5, 1\)"):
        ff.embed_label(x[..., None], labels, 2)
    with pytest.raises(TypeError, match="expected x to be a torch.Tensor, got ndarray"):
        ff.embed_label(x.numpy(), labels, 2)
    with pytest.raises(ValueError, match=r"expected labels .*shape \(3,\)"):
        ff.embed_label(x, labels[:2], 2)
    with pytest.raises(ValueError, match="expected labels in 0..1, got values from 0 to 7"):
        ff.embed_label(x, torch.tensor([0, 7, 1]), 2)
    with pytest.raises(ValueError, match="expected num_classes to be an int >= 2"):
        ff.wrong_labels(labels, 1)
    layer = ff.FFLayer(5, 3)
    with pytest.raises(ValueError, match=r"expected x of shape \(n, 5\), got \(3, 4\)"):
        layer(torch.randn(3, 4))
    net = ff.FFNet([12, 4])
    with pytest.raises(ValueError, match="expected label-embedded inputs of width 12, got 7"):
        ff.predict(net, x, 2)
    with pytest.raises(ValueError, match="expected epochs to be a positive int"):
        ff.train_ff(ff.FFNet([7, 4]), x, labels, epochs=0, num_classes=2)
    with pytest.raises(ValueError, match="skip_first needs at least two layers"):
        ff.predict(ff.FFNet([7, 4]), x, 2, skip_first=True)


@pytest.mark.parametrize("replace", [True, False])
def test_first_layer_goodness_per_label_is_ten_forward_passes_in_one(replace):
    x, _ = _batch(n=7, p=30, c=10)
    net = ff.FFNet([30 if replace else 40, 16, 8], seed=1)
    fast = ff.first_layer_goodness_per_label(net, x, 10, replace)
    slow = net.goodness_per_label(x, 10, replace)[:, :, 0]
    assert fast.shape == (7, 10)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_hard_wrong_labels_are_wrong_and_follow_the_first_layers_goodness():
    net = ff.FFNet([30, 16], seed=0)
    with torch.no_grad():  # label pixel 3 drives every unit hard: label 3 has by far the highest goodness
        net.layers[0].weight[:, 3] = 20.0
    x = torch.rand(2_000, 30, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(10).repeat(200)
    wrong = ff.hard_wrong_labels(net, x, labels, 10, replace=True, generator=torch.Generator().manual_seed(0))
    assert (wrong != labels).all()
    assert (wrong[labels != 3] == 3).float().mean() > 0.99  # the most plausible wrong label
    assert len(set(wrong[labels == 3].tolist())) > 5  # with 3 ruled out, the others share
    with pytest.raises(ValueError, match="expected negatives to be 'random' or 'hard', got 'easy'"):
        ff.train_ff(net, x[:100], labels[:100], epochs=1, replace=True, negatives="easy")
    with pytest.raises(ValueError, match="random negatives only"):
        ff.train_ff(ff.StackedFFNet([30, 16], seeds=[0, 1]), x[:100], labels[:100], epochs=1,
                    replace=True, negatives="hard")



def test_hard_wrong_labels_are_drawn_from_the_softmax_of_layer_1s_goodness(monkeypatch):
    net = ff.FFNet([30, 16, 8], seed=0)
    with torch.no_grad():
        net.layers[0].weight.mul_(4)  # goodness differences of order 1: a spread-out draw
        net.layers[1].weight.mul_(8)  # and a layer 2 that would change it
    x = torch.rand(1, 30, generator=torch.Generator().manual_seed(1)).repeat(40_000, 1)
    labels = torch.zeros(40_000, dtype=torch.long)
    wrong = ff.hard_wrong_labels(net, x, labels, 10, replace=True, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(wrong, minlength=10).float() / len(wrong)

    def masked_softmax(scores):
        scores = scores.clone()
        scores[0] = -float("inf")
        return torch.softmax(scores, 0)

    table = net.goodness_per_label(x[:1], 10, replace=True)[0]  # (10, 2)
    layer_1, both_layers = masked_softmax(table[:, 0]), masked_softmax(table.sum(1))
    proportional = table[:, 0].clone()
    proportional[0] = 0
    proportional /= proportional.sum()
    assert layer_1.max() < 0.3  # not degenerate, so the comparisons below can tell the rules apart
    assert (freq - layer_1).abs().max() < 0.01  # 5 binomial standard deviations
    assert (both_layers - layer_1).abs().max() > 0.03 and (proportional - layer_1).abs().max() > 0.02
    calls = []
    real = ff.hard_wrong_labels
    monkeypatch.setattr(ff, "hard_wrong_labels", lambda *a, **k: calls.append(1) or real(*a, **k))
    h = ff.train_ff(net, x[:100], labels[:100], epochs=1, batch_size=50, replace=True, negatives="hard")
    assert h.stacked("loss").shape == (1, 2) and len(calls) == 2  # one draw per batch
    ff.train_ff(net, x[:100], labels[:100], epochs=1, batch_size=50, replace=True)
    assert len(calls) == 2  # random negatives by default

# --------------------------------------------------------------------------- the exercise checker


def test_ch07_checker_accepts_the_reference_and_explains_a_wrong_answer():
    def layer_loss(h_pos, h_neg, theta):
        return ff.softplus_loss(ff.goodness(h_pos), ff.goodness(h_neg), theta)

    assert check("ch07-ff-loss", layer_loss, include_hidden=True).passed

    def mean_of_squares(h_pos, h_neg, theta):
        return ff.softplus_loss(h_pos.pow(2).mean(1), h_neg.pow(2).mean(1), theta)

    result = check("ch07-ff-loss", mean_of_squares)
    assert not result.passed and "expected" in result.message and "sum of squared" in result.message.lower()

    def literal(h_pos, h_neg, theta):  # right on small goodness, inf on large: a visible case catches it
        return ff.logistic_loss(ff.goodness(h_pos), ff.goodness(h_neg), theta)

    result = check("ch07-ff-loss", literal)
    assert not result.passed and "softplus" in result.message and "large goodness" in result.message

    def log1p_exp(h_pos, h_neg, theta):  # the log(1 + exp(z)) convention: overflows the same way
        g_pos, g_neg = ff.goodness(h_pos), ff.goodness(h_neg)
        z = torch.cat([theta - g_pos, g_neg - theta])
        return torch.log(1 + torch.exp(z)).mean()

    assert not check("ch07-ff-loss", log1p_exp).passed

    def mean_of_sums(h_pos, h_neg, theta):  # averages the two means: wrong when n != m
        g_pos, g_neg = ff.goodness(h_pos), ff.goodness(h_neg)
        return (F.softplus(theta - g_pos).mean() + F.softplus(g_neg - theta).mean()) / 2

    result = check("ch07-ff-loss", mean_of_sums)
    assert not result.passed and "3 positives but 5 negatives" in result.message
    hidden = ff_exercise_hidden(np.random.default_rng(5))
    assert len(hidden) >= 5 and len({c.name for c in hidden}) == len(hidden)


def ff_exercise_hidden(rng):
    from companion.exercises._core import get

    return get("ch07-ff-loss").hidden_cases(rng)


def test_digits_hard_moves_each_image_by_at_most_shift_pixels():
    from companion.data import digits, digits_hard

    plain, hard = digits(seed=3), digits_hard(shift=1, seed=3)
    for a, b in zip(plain[2:], hard[2:]):
        assert torch.equal(a, b)  # same split, same labels
    for X, H in [(plain[0], hard[0]), (plain[1], hard[1])]:
        assert H.shape == X.shape and H.dtype == torch.float32
        images, moved = X.reshape(-1, 8, 8), H.reshape(-1, 8, 8)
        padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
        candidates = torch.stack([padded[:, 1 - dy:9 - dy, 1 - dx:9 - dx]
                                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 1)  # (n, 9, 8, 8)
        match = (candidates == moved[:, None]).flatten(2).all(2)
        assert match.any(1).all()  # every image is its original under one of the 9 offsets
        offset = match.float().argmax(1)
        assert 0.05 < (offset == 4).float().mean() < 0.2  # about 1 in 9 stays in place
    assert all(torch.equal(a, b) for a, b in zip(digits(seed=3), digits_hard(shift=0, seed=3)))
    with pytest.raises(ValueError, match="shift to be an int in 0..3"):
        digits_hard(shift=5)


def test_stacked_ff_members_train_exactly_as_alone():
    X, y = _batch(n=60, p=12, c=3, seed=5)
    alone = ff.FFNet([15, 9, 7], seed=2, lr=0.02)
    ff.train_ff(alone, X, y, epochs=3, batch_size=20, num_classes=3, seed=2)
    stacked = ff.StackedFFNet([15, 9, 7], seeds=[4, 2], lr=[0.01, 0.02])
    history = ff.train_ff(stacked, X, y, epochs=3, batch_size=20, num_classes=3)
    member = stacked.unstack(1)
    for a, b in zip(alone.layers, member.layers):
        torch.testing.assert_close(a.weight, b.weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.bias, b.bias, rtol=1e-5, atol=1e-6)
    assert history.stacked("g_pos").shape == (3, 2, 2)
    torch.testing.assert_close(ff.predict(stacked, X, 3)[1], ff.predict(alone, X, 3))
    feats = ff.readout_features(stacked, X, 3)
    torch.testing.assert_close(feats[1], ff.readout_features(alone, X, 3), rtol=1e-5, atol=1e-6)
    # a member's learning rate is its own: seed 4 at lr 0.01 differs from seed 4 at 0.02
    other = ff.StackedFFNet([15, 9, 7], seeds=[4, 2], lr=0.02)
    ff.train_ff(other, X, y, epochs=3, batch_size=20, num_classes=3)
    assert not torch.allclose(other.layers[0].weight[0], stacked.layers[0].weight[0])
    with pytest.raises(ValueError, match="lr > 0"):
        ff.StackedFFNet([15, 9], seeds=[0, 1], lr=[0.1])


def _load_mnist_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_ff_mnist.py"
    spec = importlib.util.spec_from_file_location("train_ff_mnist", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_idx(path, array, gz):
    import gzip

    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_train_ff_mnist_script_reads_idx_files_and_learns(tmp_path):
    script = _load_mnist_script()
    rng = np.random.default_rng(0)

    def make(n):  # 28x28 images whose class lights one block of 60 pixels: learnable in seconds
        y = rng.integers(0, 10, n)
        X = rng.integers(0, 26, (n, 784))
        for i, c in enumerate(y):
            X[i, 100 + 60 * c: 160 + 60 * c] += 229
        return X.reshape(n, 28, 28), y

    (X_tr, y_tr), (X_te, y_te) = make(300), make(100)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", X_tr, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y_tr, gz=True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", X_te, gz=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", y_te, gz=False)
    images = script.read_idx(tmp_path / "t10k-images-idx3-ubyte")
    assert images.shape == (100, 28, 28) and np.array_equal(images, X_te.astype(np.uint8))
    result = script.main(["--data", str(tmp_path), "--hidden", "64", "64", "--epochs", "20",
                          "--batch-size", "20", "--lr", "0.01", "--threads", "1", "--readout",
                          "--json", str(tmp_path / "out.json")])
    assert len(result["epochs"]) == 20 and result["sizes"] == [784, 64, 64]
    assert result["test_error"] < 0.1 and result["readout_error"] < 0.3  # chance is 0.9
    assert (tmp_path / "out.json").exists() and result["cpu_s"] > 0
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        script.read_idx(tmp_path / "bad")


def test_chapter_7_quotes_the_stored_mnist_runs():
    """The MNIST numbers in chapter 7 are those of scripts/results/train_ff_mnist.json (no MNIST at build time)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    stored = json.loads((root / "scripts" / "results" / "train_ff_mnist.json").read_text())
    runs, (constant, falling) = stored["runs"], stored["single_seed_ablations"]
    errors = [r["test_error"] for r in runs]
    assert sorted(r["seed"] for r in runs) == [0, 1, 2, 3, 4]
    assert all(r["test_error"] == r["test_error_every_5_epochs"][-1] and r["epochs"] == 25 for r in runs)
    assert all(r["negatives"] == "hard" and r["lr_schedule"] == "linear" and r["threads"] == 2 and
               r["sizes"] == [784, 1000, 1000] for r in runs)  # what the chapter says was run
    text = " ".join((root / "book" / "07-forward-forward.md").read_text().split())
    cpu_max = max(r["cpu_s"] for r in runs)
    walls = [r["wall_s"] for r in runs]
    assert (f"the mean test error by the goodness rule is {sum(errors) / len(errors):.2%} "
            f"(range {min(errors):.2%} to {max(errors):.2%}), in at most {cpu_max:.0f} CPU-seconds "
            f"per run (mean wall time {sum(walls) / len(walls):.0f} s, at most {max(walls):.0f} s)") in text
    later = [r["test_error"] for r in runs if r["seed"] != 0]
    assert f"seeds 1-4 ({min(later):.2%} to {max(later):.2%})" in text
    assert (f"reach {constant['test_error']:.2%} at a constant rate and {falling['test_error']:.2%} "
            "with a rate falling to 0, in about 560 CPU-seconds each") in text
    assert abs(constant["cpu_s"] - 560) < 10 and abs(falling["cpu_s"] - 560) < 10
    assert cpu_max <= 600  # "inside a budget of 10 CPU-minutes"
