"""The companion package of the Beyond Backprop course.

One module per chapter, named in the chapter's opening cell:

* ``companion.autograd``, ``companion.gradcheck`` -- chapter 1, the chain rule
* ``companion.backprop``, ``companion.data`` -- chapter 2, backprop by hand on XOR

Shared helpers (data sets, plotting) live in their own modules.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__version__ = "0.1.0"


def source_hash() -> str:
    """A short hash of the package's source files.

    Chapters print it in their first cell, so an executed chapter records
    which version of the companion code it ran against.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
