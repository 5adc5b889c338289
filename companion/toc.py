"""The book's table of contents: which chapters exist, in order.

Used by the test harness (conftest.py), the coursework tools and the notebook
export, so that all of them agree on what a chapter is.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_pages(root: Path = ROOT) -> list[Path]:
    """The .md file of every entry in ``_toc.yml``, root first, in book order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    return [root / f"{f}.md" for f in files]


def is_notebook(path: Path) -> bool:
    """A page is an executable chapter when it has a jupytext header with a kernelspec."""
    text = Path(path).read_text()
    head = text.split("\n---", 1)[0]
    return text.startswith("---") and "jupytext:" in head and "kernelspec:" in head


def chapters(root: Path = ROOT) -> list[Path]:
    """The executable chapters listed in ``_toc.yml``, in book order."""
    return [p for p in toc_pages(root) if p.exists() and is_notebook(p)]
