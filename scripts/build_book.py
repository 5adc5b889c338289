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

    python scripts/build_book.py                    # build, warnings are errors
    python scripts/build_book.py --clean            # start from an empty _build/
    python scripts/build_book.py --hide-solutions   # the book without solutions, in _build/no-solutions/

``--hide-solutions`` builds from the same cached executions into
``_build/no-solutions/_build/html`` (the ordinary build is left as it is): it
sets sphinx-exercise's ``hide_solutions`` (which drops every ``{solution}``
block), and this file, loaded as a Sphinx extension, also drops everything
between ``{solution-start}`` and ``{solution-end}`` (the code solutions, which
``hide_solutions`` alone leaves in the page); each page's downloads are the
chapter's source and its student notebook, both without solutions.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from docutils import nodes
from sphinx.transforms import SphinxTransform

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion import export  # noqa: E402
from companion.toc import chapters  # noqa: E402

BUILD = ROOT / "_build"
HTML = BUILD / "html"
NO_SOLUTIONS = BUILD / "no-solutions"   # jupyter-book writes its HTML to NO_SOLUTIONS/_build/html
GATED_SOLUTION = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution-start\}.*?^(`{3,}|:{3,})\{solution-end\}[^\n]*\n"
                            r".*?^(`{3,}|:{3,})[ \t]*$\n?", re.S | re.M)


# -- --hide-solutions: this file is also the Sphinx extension that drops the gated solutions ----------
class hidden_solution(nodes.Element):
    """Where a gated solution started, in a build with ``hide_solutions`` (removed by DropGatedSolutions)."""


class DropGatedSolutions(SphinxTransform):
    """With ``hide_solutions``: remove everything from a gated solution's start to its ``solution-end``.

    sphinx-exercise's ``hide_solutions`` drops the ``solution-start`` directive
    but keeps the cells after it (the reference solution's code) in the page.
    """

    default_priority = 9  # before sphinx-exercise merges the gated solutions (10)

    def apply(self) -> None:
        from sphinx_exercise.nodes import solution_end_node

        for marker in list(self.document.findall(hidden_solution)):
            parent = marker.parent
            start = parent.index(marker)
            end = next((i for i in range(start, len(parent)) if isinstance(parent[i], solution_end_node)), None)
            if end is None:
                raise ValueError(f"{self.env.docname}: a solution-start without a solution-end after it")
            for child in parent.children[start:end + 1]:
                parent.remove(child)


def setup(app):
    from sphinx_exercise.directive import SolutionStartDirective

    app.setup_extension("sphinx_exercise")

    class SolutionStart(SolutionStartDirective):
        def run(self):
            out = super().run()  # registers the gate; returns nothing when solutions are hidden
            return [hidden_solution()] if self.env.app.config.hide_solutions else out

    app.add_directive("solution-start", SolutionStart, override=True)
    app.add_node(hidden_solution)
    app.add_transform(DropGatedSolutions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def strip_solutions(text: str) -> str:
    """A chapter's MyST source without its ``{solution}`` blocks and gated solutions (for the source download)."""
    from companion.coursework.student import SOLUTION_BLOCK

    return SOLUTION_BLOCK.sub("", GATED_SOLUTION.sub("", text))


def no_solutions_config(root: Path = ROOT, out: Path = NO_SOLUTIONS) -> Path:
    """Write ``out/_config.yml``: the book's configuration with solutions hidden, reading the book's cache."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    config.setdefault("execute", {})["cache"] = str(export.cache_dir(root))  # the one execution of each chapter
    sphinx = config.setdefault("sphinx", {})
    sphinx.setdefault("config", {})["hide_solutions"] = True
    extensions = sphinx.setdefault("local_extensions", {})
    for name, folder in extensions.items():  # relative paths would be read from the config's folder
        extensions[name] = str((root / folder).resolve())
    extensions["build_book"] = str(Path(__file__).resolve().parent)
    if config.get("bibtex_bibfiles"):
        config["bibtex_bibfiles"] = [str((root / bib).resolve()) for bib in config["bibtex_bibfiles"]]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "_config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_solution_free_downloads(html: Path, root: Path = ROOT) -> int:
    """Each chapter's downloads without solutions: its source (.md) and its student notebook (.ipynb)."""
    import nbformat

    from companion.coursework.student import student_notebook

    book = export.Book.load(root)
    written = 0
    for chapter in chapters(root):
        rel = chapter.relative_to(root)
        source = html / "_sources" / rel
        if source.exists():
            source.write_text(strip_solutions(chapter.read_text()))
        target = (html / "_sources" / rel).with_suffix(".ipynb")
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_notebook(chapter, book=book), target)
        written += 1
    return written


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
    parser.add_argument("--hide-solutions", action="store_true",
                        help=f"build the book without solutions into {NO_SOLUTIONS.relative_to(ROOT)}/_build/html")
    args = parser.parse_args()
    if args.clean and BUILD.exists():
        shutil.rmtree(BUILD)
    start = time.perf_counter()
    if not execute_missing(args.jobs):
        print("a chapter failed to execute: not building the book", file=sys.stderr)
        return 1
    command = ["jupyter-book", "build", str(ROOT), "-W", "-n", "--keep-going"]
    html = HTML
    if args.hide_solutions:
        command += ["--config", str(no_solutions_config()), "--path-output", str(NO_SOLUTIONS)]
        html = NO_SOLUTIONS / "_build" / "html"
    print("+", " ".join(command), flush=True)
    # A kernel started with MPLBACKEND set (Agg, say) ignores the inline backend and
    # plt.show() draws nothing; kept out in case jupyter-book executes anything itself.
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    result = subprocess.run(command, cwd=ROOT, env=env)
    if args.hide_solutions and (html / "index.html").exists():
        written = write_solution_free_downloads(html)
        print(f"wrote {written} student notebooks and solution-free sources (the downloads) to "
              f"{(html / '_sources').relative_to(ROOT)}/")
    elif (html / "index.html").exists():  # also after a warning (--keep-going wrote the pages): one problem at a time
        # the page's download button serves _sources/<page>.ipynb: make it the reader notebook
        written = export.write_reader_notebooks(html / "_sources")
        print(f"wrote {len(written)} reader notebooks (the .ipynb download) to {(html / '_sources').relative_to(ROOT)}/")
    print(f"built in {time.perf_counter() - start:.0f} s" + (" with errors" if result.returncode else ""))
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
