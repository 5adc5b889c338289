"""Outcomes as plain data: what a student's function returned, in a form that cannot carry code.

The student's kernel writes one folder per case: ``outcome.json`` (the
structure, numbers and strings) and ``arr-<k>.npy`` files (arrays and tensors,
written without pickle). The grader reads them back with ``allow_pickle=False``
through file descriptors that do not follow symbolic links, with size limits,
so a notebook can hand back data and nothing else: no object of its own
survives the trip, and a planted link cannot make the grader read a file
outside the folder. Imported on both sides; it needs only numpy.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
from typing import Any

import numpy as np

MAX_JSON_BYTES = 4 << 20
MAX_ARRAY_BYTES = 256 << 20
MAX_ITEMS = 100_000
MAX_DEPTH = 32


class Unsupported:
    """A returned value the grader cannot compare (a model, a custom object...): it equals nothing."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return f"<a {self.type_name} the grader cannot compare: {self.text}>"


# -- kernel side: write ------------------------------------------------------------
def _encode(value: Any, arrays: list[np.ndarray], depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        return {"unsupported": "value", "repr": "too large or too deeply nested"}
    if value is None or type(value) is bool:
        return value
    if isinstance(value, str):
        return {"str": str.__str__(value)}
    if isinstance(value, int) and not isinstance(value, (bool, np.generic)):
        return {"int": str(int(value))}
    if isinstance(value, float) and not isinstance(value, np.generic):
        return {"float": repr(float(value))}
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        t = value.detach().cpu()
        dtype = str(t.dtype).replace("torch.", "")
        if dtype == "bfloat16":
            t = t.float()
        arrays.append(np.ascontiguousarray(t.numpy()))
        return {"tensor": len(arrays) - 1, "dtype": dtype}
    if isinstance(value, np.generic) and not isinstance(value, np.object_):
        arrays.append(np.asarray(value))
        return {"npscalar": len(arrays) - 1}
    if isinstance(value, np.ndarray) and value.dtype != object:
        arrays.append(np.ascontiguousarray(value))
        return {"ndarray": len(arrays) - 1}
    if type(value) in (list, tuple):
        return {type(value).__name__: [_encode(v, arrays, depth + 1, budget) for v in value]}
    if type(value) is dict and all(type(k) is str for k in value):
        return {"dict": {k: _encode(v, arrays, depth + 1, budget) for k, v in value.items()}}
    try:
        text = repr(value)[:200]
    except Exception:
        text = "?"
    return {"unsupported": type(value).__name__, "repr": text}


def write_outcome(folder: str, outcome: dict[str, Any], value: Any = None) -> None:
    """Write ``outcome`` (and the returned ``value``) into ``folder``; called in the student's kernel."""
    os.makedirs(folder, exist_ok=True)
    arrays: list[np.ndarray] = []
    doc = dict(outcome)
    if outcome.get("kind") == "returned":
        doc["value"] = _encode(value, arrays, 0, [MAX_ITEMS])
    for k, a in enumerate(arrays):
        with open(os.path.join(folder, f"arr-{k}.npy"), "wb") as f:
            np.lib.format.write_array(f, a, allow_pickle=False)
    doc["arrays"] = len(arrays)
    tmp = os.path.join(folder, "outcome.json.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, os.path.join(folder, "outcome.json"))


# -- grader side: read ---------------------------------------------------------
class WireError(ValueError):
    """The folder does not hold a well-formed outcome."""


def _read(dir_fd: int, name: str, limit: int) -> bytes:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as err:
        raise WireError(f"cannot open {name}: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise WireError(f"{name} is not a plain file")
        if info.st_size > limit:
            raise WireError(f"{name} is larger than {limit} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise WireError(f"{name} is larger than {limit} bytes")
        return data
    finally:
        os.close(fd)


def open_folder(root: str, *parts: str) -> int:
    """A descriptor for ``root/parts...``, refusing symbolic links at every step below ``root``."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for part in parts:
        try:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        except OSError as err:
            os.close(fd)
            raise WireError(f"no folder {part}: {err.strerror}") from None
        os.close(fd)
        fd = nxt
    return fd


def read_json(dir_fd: int, name: str, limit: int = MAX_JSON_BYTES) -> Any:
    try:
        return json.loads(_read(dir_fd, name, limit))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WireError(f"{name} is not JSON: {err}") from None


def read_outcome(dir_fd: int) -> dict[str, Any]:
    """The outcome written by :func:`write_outcome`, with its value rebuilt from plain data."""
    doc = read_json(dir_fd, "outcome.json")
    if not isinstance(doc, dict) or doc.get("kind") not in ("returned", "raised", "not_implemented"):
        raise WireError("outcome.json has no valid kind")
    n = doc.get("arrays", 0)
    if type(n) is not int or not 0 <= n <= MAX_ITEMS:
        raise WireError("outcome.json has a bad array count")
    budget = [MAX_ARRAY_BYTES]
    arrays = []
    for k in range(n):
        data = _read(dir_fd, f"arr-{k}.npy", budget[0])
        budget[0] -= len(data)
        try:
            a = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError) as err:
            raise WireError(f"arr-{k}.npy is not a plain .npy array: {err}") from None
        if a.dtype == object:
            raise WireError(f"arr-{k}.npy holds objects")
        arrays.append(a)
    out = {
        "kind": doc["kind"],
        "error_types": tuple(str(t)[:100] for t in doc.get("error_types", ()) if isinstance(t, str))[:50],
        "message": str(doc.get("message", ""))[:2000],
        "line": doc.get("line") if type(doc.get("line")) is int else None,
        "where": str(doc.get("where", ""))[:200],
    }
    out["value"] = _decode(doc.get("value"), arrays, 0) if doc["kind"] == "returned" else None
    return out


def _decode(node: Any, arrays: list[np.ndarray], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if node is None or type(node) is bool:
        return node
    if type(node) is not dict or len(node) not in (1, 2):
        raise WireError("malformed value")
    (key, item), *rest = node.items()
    if key == "str" and type(item) is str:
        return item
    if key == "int" and type(item) is str and len(item) < 5000:
        return int(item)
    if key == "float" and type(item) is str:
        value = float(item)
        return value if math.isfinite(value) or item in ("nan", "inf", "-inf") else float("nan")
    if key in ("list", "tuple") and type(item) is list:
        items = [_decode(v, arrays, depth + 1) for v in item]
        return items if key == "list" else tuple(items)
    if key == "dict" and type(item) is dict:
        return {str(k): _decode(v, arrays, depth + 1) for k, v in item.items()}
    if key in ("ndarray", "npscalar", "tensor") and type(item) is int and 0 <= item < len(arrays):
        a = arrays[item]
        if key == "ndarray":
            return a
        if key == "npscalar":
            return a[()]
        return _tensor(a, str(rest[0][1]) if rest else "")
    if key == "unsupported":
        return Unsupported(str(item)[:100], str(node.get("repr", ""))[:200])
    raise WireError("malformed value")


def _tensor(a: np.ndarray, dtype: str) -> Any:
    import torch  # only a tensor-returning exercise needs torch in the grader

    t = torch.from_numpy(np.array(a))
    if dtype == "bfloat16":
        t = t.to(torch.bfloat16)
    return t
