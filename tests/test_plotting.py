"""companion.plotting.digit_grid: the tiled picture holds every image where it should, and bad input is a clear error."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from companion.plotting import digit_grid  # noqa: E402


def _canvas(ax):
    return np.asarray(ax.get_images()[0].get_array())


def test_rows_are_tiled_in_order_with_gaps():
    a = np.arange(2 * 64, dtype=float).reshape(2, 64) / 200
    b = torch.full((3, 64), 0.7)
    ax = digit_grid([a, b], row_labels=["first", "second"], title="t")
    canvas = _canvas(ax)
    assert canvas.shape == (2 * 9 + 1, 3 * 9 + 1)
    np.testing.assert_allclose(canvas[1:9, 1:9], a[0].reshape(8, 8))  # row 0, column 0
    np.testing.assert_allclose(canvas[1:9, 10:18], a[1].reshape(8, 8))  # row 0, column 1
    np.testing.assert_allclose(canvas[10:18, 19:27], 0.7)  # row 1, column 2
    assert np.all(canvas[0] == 0) and np.all(canvas[:, 9] == 0)  # background gaps
    np.testing.assert_allclose(canvas[1:9, 19:27], 0.0)  # the short row is padded with background
    assert [t.get_text() for t in ax.get_yticklabels()] == ["first", "second"]
    assert ax.get_title() == "t"
    plt.close("all")


def test_one_array_is_cut_into_rows():
    images = np.random.default_rng(0).random((10, 16))
    fig, ax = plt.subplots()
    assert digit_grid(images, ncols=4, ax=ax, shape=(4, 4), pad=0) is ax
    canvas = _canvas(ax)
    assert canvas.shape == (12, 16)
    np.testing.assert_allclose(canvas[4:8, 0:4], images[4].reshape(4, 4))
    plt.close(fig)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"digit_grid: expected images of shape \(m, 64\), got \(3, 5\)"):
        digit_grid(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="2 row labels, got 1"):
        digit_grid([np.zeros((1, 64)), np.zeros((1, 64))], row_labels=["a"])
    plt.close("all")
