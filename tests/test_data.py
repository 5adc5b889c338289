"""companion.data: the generated and bundled data sets."""

import numpy as np
import pytest

from companion.data import add_bias_column, digits, xor


def test_xor_truth_table():
    X, y = xor()
    assert X.shape == (4, 2) and y.shape == (4, 1)
    np.testing.assert_array_equal(y[:, 0], np.logical_xor(X[:, 0], X[:, 1]))


def test_add_bias_column():
    Xb = add_bias_column(np.zeros((4, 2)))
    np.testing.assert_array_equal(Xb[:, -1], 1.0)
    with pytest.raises(ValueError, match=r"expected X of shape \(n, d\), got \(3,\)"):
        add_bias_column(np.zeros(3))


def test_digits_split_is_fixed_stratified_and_scaled():
    X_tr, X_te, y_tr, y_te = digits(seed=0)
    assert X_tr.shape[1] == 64 and len(X_tr) + len(X_te) == 1797
    assert 0.0 <= X_tr.min() and X_tr.max() <= 1.0
    assert set(y_te.tolist()) == set(range(10))
    again = digits(seed=0)
    assert (again[0] == X_tr).all()
    with pytest.raises(ValueError, match="test_fraction"):
        digits(test_fraction=1.5)
