"""Write every chapter as a Jupyter notebook (.ipynb) for Colab and for download.

    python scripts/export_notebooks.py --out notebooks/

Each notebook is the chapter converted by jupytext, with a first cell that
installs the companion package from the repository (hosted services do not
have it), and without outputs. The publish workflow
(.github/workflows/book.yml) runs this and pushes the result to the
`notebooks` branch, where the book's Colab buttons point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion.toc import chapters  # noqa: E402


def install_cell(repository_url: str) -> nbformat.NotebookNode:
    source = (
        "# Installs the course's companion package (needed on Colab and other hosted services).\n"
        f'%pip install --quiet "companion @ git+{repository_url}"'
    )
    return nbformat.v4.new_code_cell(source, metadata={"tags": ["remove-cell"]})


def export(out_dir: Path) -> list[Path]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    written = []
    for chapter in chapters():
        nb = jupytext.read(chapter)
        nb.cells.insert(0, install_cell(url))
        nb.metadata.pop("jupytext", None)
        path = out_dir / chapter.relative_to(ROOT).with_suffix(".ipynb")
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "notebooks", help="folder to write into")
    args = parser.parse_args()
    for path in export(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
