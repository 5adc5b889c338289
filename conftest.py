"""Chapter execution for pytest: every chapter in _toc.yml runs once, and everything uses that run.

Chapters are jupytext MyST-Markdown notebooks. pytest collects each one listed
in ``_toc.yml`` (or named on the command line) and makes one test item per
code cell, so a failure reads ``book/02-xor-backprop.md::Cell 7`` and shows
the cell's source and traceback. Outputs are not compared (the repository
stores none); hidden ``remove-cell`` assertion cells check a chapter's claims.

Each chapter is executed once, in a fresh kernel whose working directory is
the chapter's folder (``companion.export.execute_notebook``), two chapters at a
time (``--chapter-jobs``). A chapter that runs cleanly is stored in the book's
execution cache (``_build/.jupyter_cache``): the book build then renders it
without executing it again, and the reader-notebook tests
(``tests/test_notebooks.py``, run after the chapters) take its glued values
from there.

At the end of the run a table gives each chapter's wall and CPU time.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from companion.export import succeeded
from companion.toc import is_notebook, toc_pages

_results: dict[str, dict] = {}


def pytest_addoption(parser):
    group = parser.getgroup("chapters")
    group.addoption("--chapter-jobs", type=int, default=int(os.environ.get("BOOK_JOBS", "2")),
                    help="chapters executed at once (default 2, or $BOOK_JOBS)")
    group.addoption("--cell-timeout", type=int, default=300, help="seconds a chapter cell may run (default 300)")


class CellFailed(Exception):
    pass


class Executions:
    """Runs chapters in worker processes, ``jobs`` at a time, in the order they are first asked for."""

    def __init__(self, config, chapters: list[Path]):
        self.config, self.chapters = config, chapters
        self.futures: dict[Path, Future] = {}
        self.pool = ThreadPoolExecutor(max_workers=max(1, config.getoption("chapter_jobs")))
        self.lock = threading.Lock()
        self.stored: set[Path] = set()

    def start(self, first: Path, others: list[Path] | None = None) -> None:
        with self.lock:
            order = [first] + [c for c in (others or self.chapters) if c != first]
            for chapter in map(Path.resolve, order):
                if chapter not in self.futures:
                    self.futures[chapter] = self.pool.submit(self._run, chapter)

    def _run(self, chapter: Path) -> dict:
        from companion.export import execute_in_subprocess

        return execute_in_subprocess(chapter, timeout=self.config.getoption("cell_timeout"))

    def result(self, chapter: Path) -> dict:
        chapter = Path(chapter).resolve()
        if chapter not in self.futures:
            self.start(chapter)
        result = self.futures[chapter].result()
        with self.lock:
            if chapter not in self.stored:
                self.stored.add(chapter)
                _results[chapter.name] = result
                if succeeded(result):
                    _store(chapter, result, self.config.rootpath)
        return result

    def close(self) -> None:
        for future in self.futures.values():
            future.cancel()
        self.pool.shutdown(wait=True)


def _store(chapter: Path, result: dict, root: Path) -> None:
    """Keep the executed chapter in the book's cache, for the build and the reader-notebook tests.

    The cache only saves work: if it cannot be written (a bare checkout without
    the book tools, another run clearing it at the same moment), the chapter's
    tests still pass and the build executes the chapter itself.
    """
    import warnings

    try:
        import nbformat

        from companion import export

        nb = nbformat.reads(result["notebook"], as_version=4)
        export.store_executed(chapter, nb, result["wall"], root=root, cpu_seconds=result["cpu"])
    except Exception as err:  # noqa: BLE001
        warnings.warn(f"{chapter.name}: executed, but not kept in the execution cache: {err}", stacklevel=1)


class ChapterFile(pytest.File):
    """A MyST-Markdown chapter: one item per code cell."""

    def collect(self):
        from companion.export import read_chapter

        nb = read_chapter(self.path)
        code_cells = [c for c in nb.cells if c.cell_type == "code"]
        for number, cell in enumerate(code_cells):
            yield ChapterCell.from_parent(self, name=f"Cell {number}", number=number, source=cell.source)


class ChapterCell(pytest.Item):
    def __init__(self, *, number: int, source: str, **kwargs):
        super().__init__(**kwargs)
        self.number, self.source = number, source

    def runtest(self):
        executions: Executions = self.config.stash[_EXECUTIONS]
        result = executions.result(self.path)
        if result["problem"] and not result["cells"]:
            raise CellFailed(f"the chapter did not run: {result['problem']}")
        if self.number >= len(result["cells"]):
            raise CellFailed(f"the executor reported {len(result['cells'])} cells: {result['problem']}")
        report = result["cells"][self.number]
        if report["status"] == "error":
            raise CellFailed(report["error"])
        if report["status"] == "not run":
            failed = next(i for i, c in enumerate(result["cells"]) if c["status"] == "error")
            pytest.skip(f"not run: Cell {failed} failed")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CellFailed):
            return f"Cell {self.number} of {self.path.name} failed.\n\nInput:\n{self.source}\n\nTraceback:\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"{self.path.relative_to(self.config.rootpath)}::Cell {self.number}"


_EXECUTIONS = pytest.StashKey[Executions]()


@pytest.fixture(scope="session")
def chapter_run(request):
    """``chapter_run(path)`` -> the chapter's one execution, for tests that use its outputs.

    The run of this session when the chapter's cells are among the tests;
    otherwise the book's cached run (``pytest tests/test_notebooks.py`` after
    a test run or a build), else the chapter is executed now. A dict:
    ``cells`` (one report per code cell), ``problem``, ``notebook`` (the
    executed .ipynb as text), ``wall`` and ``cpu`` seconds.
    """
    executions: Executions = request.config.stash[_EXECUTIONS]
    from companion.toc import chapters

    root = request.config.rootpath
    every = [c.resolve() for c in chapters(root)]
    cached: dict[Path, dict] = {}
    try:
        import nbformat

        from companion import export

        export.fresh_cache(root)
        for chapter in every:
            if chapter not in executions.chapters:
                nb, data = export.cached_chapter(chapter, root)
                if nb is not None:
                    n_code = sum(c.cell_type == "code" for c in nb.cells)
                    cached[chapter] = {"cells": [{"status": "ok", "seconds": 0.0, "error": None}] * n_code,
                                       "problem": None, "notebook": nbformat.writes(nb),
                                       "wall": data.get("execution_seconds") or 0.0, "cpu": data.get("cpu_seconds") or 0.0}
    except ImportError:
        pass
    class Run:
        def prefetch(self, chapters_wanted: list[Path]) -> None:
            """Start executing these chapters (those not cached), ``--chapter-jobs`` at a time."""
            to_run = [Path(c).resolve() for c in chapters_wanted if Path(c).resolve() not in cached]
            if to_run:
                executions.start(to_run[0], to_run)

        def __call__(self, chapter: Path) -> dict:
            chapter = Path(chapter).resolve()
            return cached.get(chapter) or executions.result(chapter)

    return Run()


def pytest_collect_file(file_path: Path, parent):
    """Collect chapters in _toc.yml, and any notebook .md named on the command line."""
    if file_path.suffix != ".md" or not is_notebook(file_path):
        return None
    named = {Path(arg.split("::")[0]).resolve() for arg in parent.config.args}
    chapters = {p.resolve() for p in toc_pages(Path(__file__).parent)}
    if file_path.resolve() in chapters | named:
        return ChapterFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(session, config, items):
    """Reader-notebook tests go last: they use the chapters' executions."""
    late = [i for i in items if i.path.name == "test_notebooks.py"]
    items[:] = [i for i in items if i.path.name != "test_notebooks.py"] + late
    chapters = list(dict.fromkeys(i.path.resolve() for i in items if isinstance(i, ChapterCell)))
    config.stash[_EXECUTIONS] = Executions(config, chapters)


def pytest_unconfigure(config):
    executions = config.stash.get(_EXECUTIONS, None)
    if executions is not None:
        executions.close()


def pytest_terminal_summary(terminalreporter, config):
    if _results:
        terminalreporter.section("chapter execution times (each chapter executed once, in its own kernel)")
        cells = []
        for name, result in _results.items():
            terminalreporter.write_line(f"{result['wall']:7.1f} s wall {result['cpu']:7.1f} s CPU  {name}")
            cells += [(c["seconds"], f"{name}::Cell {n}") for n, c in enumerate(result["cells"])]
        terminalreporter.write_line(f"{sum(r['cpu'] for r in _results.values()):7.1f} s CPU in all chapters")
        slowest = sorted(cells)[::-1][:8]
        terminalreporter.write_line("slowest cells: " + ", ".join(f"{where} {s:.1f} s" for s, where in slowest))
    readers = getattr(config, "reader_notebook_times", None)
    if readers:
        terminalreporter.section("reader and student notebooks, run in a fresh environment")
        for name, (wall, cpu) in readers.items():
            terminalreporter.write_line(f"{wall:7.1f} s wall {cpu:7.1f} s CPU  {name}")
        total = sum(cpu for _, cpu in readers.values())
        terminalreporter.write_line(f"{total:7.1f} s CPU in all (the first run includes installing the package)")
