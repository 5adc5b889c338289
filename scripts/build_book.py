"""Build the book: render every chapter from its one execution and write HTML to _build/html.

Every chapter is executed once, by the same code whichever command runs first
(``companion.export.execute_notebook``, a fresh kernel per chapter), and kept in
the execution cache ``_build/.jupyter_cache``:

* ``pytest`` executes each chapter and caches the run when every cell passes;
* this script executes only the chapters the cache does not hold (two at a
  time), then builds with jupyter-book, which finds every chapter in the cache
  and executes nothing.

A chapter re-executes when its code cells change (jupyter-cache compares them);
a change to the companion package or the pinned requirements changes what a
chapter computes without touching its cells, so the cache is cleared then
(``companion.export.fresh_cache``). After the HTML, the script writes each
chapter's reader notebook (``companion.export``: numbers written in, plain
Markdown, no hidden cells) where the page's ``.ipynb`` download button points,
``_build/html/_sources/book/<chapter>.ipynb``.

    python scripts/build_book.py            # build, warnings are errors
    python scripts/build_book.py --clean    # start from an empty _build/
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion import export  # noqa: E402
from companion.toc import chapters  # noqa: E402

BUILD = ROOT / "_build"
HTML = BUILD / "html"


def execute_missing(jobs: int) -> bool:
    """Execute (and cache) every chapter the cache does not hold. False if one fails."""
    export.fresh_cache(ROOT)
    missing = [c for c in chapters(ROOT) if export.cached_chapter(c, ROOT)[0] is None]
    if not missing:
        print("every chapter is in the execution cache: nothing to execute")
        return True
    print(f"executing {len(missing)} chapter(s), {jobs} at a time: {', '.join(c.name for c in missing)}", flush=True)
    ok = True
    for chapter, result in export.execute_chapters(missing, jobs=jobs, root=ROOT).items():
        status = "ok" if export.succeeded(result) else "FAILED"
        print(f"  {chapter.name}: {status} in {result['wall']:.1f} s ({result['cpu']:.1f} s CPU)", flush=True)
        if status != "ok":
            print(export.first_error(result), file=sys.stderr)
            ok = False
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", action="store_true", help="remove _build/ first")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("BOOK_JOBS", "2")),
                        help="chapters executed at once (default 2, or $BOOK_JOBS)")
    args = parser.parse_args()
    if args.clean and BUILD.exists():
        shutil.rmtree(BUILD)
    start = time.perf_counter()
    if not execute_missing(args.jobs):
        print("a chapter failed to execute: not building the book", file=sys.stderr)
        return 1
    command = ["jupyter-book", "build", str(ROOT), "-W", "-n", "--keep-going"]
    print("+", " ".join(command), flush=True)
    # A kernel started with MPLBACKEND set (Agg, say) ignores the inline backend and
    # plt.show() draws nothing; kept out in case jupyter-book executes anything itself.
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    result = subprocess.run(command, cwd=ROOT, env=env)
    if (HTML / "index.html").exists():  # also after a warning (--keep-going wrote the pages): one problem at a time
        # the page's download button serves _sources/<page>.ipynb: make it the reader notebook
        written = export.write_reader_notebooks(HTML / "_sources")
        print(f"wrote {len(written)} reader notebooks (the .ipynb download) to {(HTML / '_sources').relative_to(ROOT)}/")
    print(f"built in {time.perf_counter() - start:.0f} s" + (" with errors" if result.returncode else ""))
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
