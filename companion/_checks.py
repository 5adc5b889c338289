"""Argument checks, one line each, with the project's message form.

Every public function of the companion package checks what a student could
get wrong and fails with a message that names the function, what it expected
and what it got::

    ValueError: train: expected x of shape (n, 64), got (4, 2)

Checks that need to know a model (its input width, say) stay in the model's
module and call these. Shapes are written with ``None`` for "any size":
``shape=(None, 64)`` accepts ``(n, 64)`` for every ``n``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Dim = int | str | None  # a fixed size, a named size ("n"), or any size (None)


def describe(x: Any) -> str:
    """A short description of ``x`` for an error message: its shape if it has one."""
    shape = getattr(x, "shape", None)
    if shape is not None:
        return f"{tuple(shape)}"
    return type(x).__name__


def _shape_text(shape: Sequence[Dim]) -> str:
    names = iter("nmkpqrst")
    parts = [str(d) if isinstance(d, int) else (d if isinstance(d, str) else next(names)) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def check_shape(fn: str, name: str, x: Any, shape: Sequence[Dim]) -> None:
    """Raise ``ValueError`` unless ``x`` has ``len(shape)`` dimensions matching ``shape``.

    A dimension given as an int must match exactly; ``None`` or a name
    (``"n"``) matches any size, and two dimensions with the same name must
    be equal.
    """
    actual = getattr(x, "shape", None)
    if actual is None:
        raise TypeError(f"{fn}: expected {name} to be an array or tensor of shape "
                        f"{_shape_text(shape)}, got {type(x).__name__}")
    actual = tuple(actual)
    named: dict[str, int] = {}
    ok = len(actual) == len(shape)
    for want, got in zip(shape, actual):
        if not ok:
            break
        if isinstance(want, int):
            ok = want == got
        elif isinstance(want, str):
            ok = named.setdefault(want, got) == got
    if not ok:
        raise ValueError(f"{fn}: expected {name} of shape {_shape_text(shape)}, got {actual}")


def check_tensor(fn: str, name: str, x: Any, shape: Sequence[Dim] | None = None,
                 floating: bool = False):
    """Check that ``x`` is a torch tensor (of ``shape``; floating point if asked) and return it."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if shape is not None:
        check_shape(fn, name, x, shape)
    if floating and not x.is_floating_point():
        raise TypeError(f"{fn}: expected {name} to be a floating-point tensor, got {x.dtype}")
    return x


def check_array(fn: str, name: str, x: Any, shape: Sequence[Dim] | None = None,
                dtype: Any = np.float64) -> np.ndarray:
    """Convert ``x`` to a numpy array of ``dtype``, check its shape, and return it."""
    try:
        array = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{fn}: expected {name} to be an array of numbers, got {type(x).__name__}") from err
    if shape is not None:
        check_shape(fn, name, array, shape)
    return array


def check_finite(fn: str, name: str, x: Any) -> None:
    """Raise ``ValueError`` if an array or tensor holds NaN or infinity."""
    values = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{fn}: expected {name} to hold finite numbers, got NaN or infinity")


def check_positive(fn: str, name: str, value: Any, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is a positive number (an int if ``integer``; 0 allowed if ``allow_zero``)."""
    kind = "an int" if integer else "a number"
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer) if integer else (int, float, np.number)):
        raise TypeError(f"{fn}: expected {name} to be {kind} {bound}, got {value!r}")
    if not (value >= 0 if allow_zero else value > 0) or (not integer and not math.isfinite(value)):
        raise ValueError(f"{fn}: expected {name} to be {kind} {bound}, got {value!r}")


def check_probability(fn: str, name: str, value: Any, open_right: bool = False) -> None:
    """Raise unless ``value`` is a number in [0, 1] (or [0, 1) if ``open_right``)."""
    interval = "[0, 1)" if open_right else "[0, 1]"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{fn}: expected {name} to be a number in {interval}, got {value!r}")
    if not (0 <= value < 1 if open_right else 0 <= value <= 1):
        raise ValueError(f"{fn}: expected {name} to be a number in {interval}, got {value!r}")


def check_choice(fn: str, name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{fn}: expected {name} to be one of {list(choices)}, got {value!r}")


def check_same_length(fn: str, names: tuple[str, str], a: Any, b: Any) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same first dimension."""
    if len(a) != len(b):
        raise ValueError(f"{fn}: expected {names[0]} and {names[1]} to have the same length, "
                         f"got {len(a)} and {len(b)}")
