"""House style: ruff (pyflakes, pycodestyle, bugbear) passes on the whole repository."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    result = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_chapter_code_lines_fit_the_page():
    """The book cannot wrap code: a code line longer than 88 columns scrolls sideways."""
    import jupytext

    from companion.toc import chapters

    long_lines = []
    for chapter in chapters(ROOT):
        for number, cell in enumerate(c for c in jupytext.read(chapter).cells if c.cell_type == "code"):
            long_lines += [f"{chapter.name} cell {number}: {line}" for line in cell.source.splitlines()
                           if len(line) > 88]
    assert not long_lines, "code lines over 88 characters:\n" + "\n".join(long_lines)
