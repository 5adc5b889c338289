"""Chapter execution for pytest: every chapter in _toc.yml runs through nbval.

Chapters are jupytext MyST-Markdown notebooks. pytest collects each one listed
in ``_toc.yml``, converts it in memory with jupytext, and hands its code cells
to nbval, which executes them in one fresh kernel whose working directory is
the chapter's folder. Each cell is one test item, so a failure reads
``book/02-xor-backprop.md::Cell 7`` and shows the cell's source and traceback.
Outputs are not compared (the repository stores none); hidden ``remove-cell``
assertion cells are what check a chapter's claims.

At the end of the run a table gives each chapter's total execution time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import jupytext
import pytest
from nbval.plugin import IPyNbCell, IPyNbFile, find_comment_markers, find_metadata_tags

from companion.toc import is_notebook, toc_pages

_chapter_seconds: dict[str, float] = defaultdict(float)


class MystNotebook(IPyNbFile):
    """nbval's notebook collector, reading a MyST-Markdown notebook via jupytext."""

    def collect(self):
        self.nb = jupytext.read(self.path)
        code_cells = (c for c in self.nb.cells if c.cell_type == "code")
        for cell_num, cell in enumerate(code_cells):
            options = defaultdict(bool, find_metadata_tags(cell.metadata))
            options.update(find_comment_markers(cell.source))
            options.setdefault("check", False)  # no stored outputs to compare with
            yield IPyNbCell.from_parent(self, name=f"Cell {cell_num}", cell_num=cell_num, cell=cell, options=options)


def pytest_collect_file(file_path: Path, parent):
    """Collect chapters in _toc.yml, and any notebook .md named on the command line."""
    if file_path.suffix != ".md" or not is_notebook(file_path):
        return None
    named = {Path(arg.split("::")[0]).resolve() for arg in parent.config.args}
    chapters = {p.resolve() for p in toc_pages(Path(__file__).parent)}
    if file_path.resolve() in chapters | named:
        return MystNotebook.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        if isinstance(item, IPyNbCell):
            _chapter_seconds[item.parent.path.name] += time.perf_counter() - start


def pytest_terminal_summary(terminalreporter):
    if not _chapter_seconds:
        return
    terminalreporter.section("chapter execution times")
    for name, seconds in _chapter_seconds.items():
        terminalreporter.write_line(f"{seconds:7.1f} s  {name}")
