"""Build the book: execute every chapter (cached) and write HTML to _build/html.

jupyter-cache re-executes a chapter only when its code cells change. A change
to the companion package changes what a chapter computes without touching its
cells, so this script keeps a fingerprint of the package source (and of the
pinned requirements) next to the cache and clears the cache when it differs.

    python scripts/build_book.py            # build, warnings are errors
    python scripts/build_book.py --clean    # start from an empty _build/
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
CACHE = BUILD / ".jupyter_cache"
STAMP = BUILD / "companion.fingerprint"


def fingerprint() -> str:
    """A hash of everything a chapter's results depend on besides its own cells."""
    digest = hashlib.sha256()
    files = sorted((ROOT / "companion").rglob("*.py")) + [ROOT / "requirements.txt"]
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", action="store_true", help="remove _build/ first")
    args = parser.parse_args()
    if args.clean and BUILD.exists():
        shutil.rmtree(BUILD)
    current = fingerprint()
    if CACHE.exists() and (not STAMP.exists() or STAMP.read_text() != current):
        print("companion package changed since the last build: clearing the execution cache")
        shutil.rmtree(CACHE)
    command = ["jupyter-book", "build", str(ROOT), "-W", "-n", "--keep-going"]
    print("+", " ".join(command), flush=True)
    # A kernel started with MPLBACKEND set (Agg, say) ignores the inline backend
    # and plt.show() draws nothing: the book would be built without its figures.
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    result = subprocess.run(command, cwd=ROOT, env=env)
    if result.returncode == 0:
        STAMP.write_text(current)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
