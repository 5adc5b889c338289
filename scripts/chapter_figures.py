"""Execute one chapter and write its figures as PNG files, to look at them.

    python scripts/chapter_figures.py book/07-forward-forward.md --out /tmp/ch07

Writes ``cell-NN-K.png`` for every image a code cell shows, ``glue.txt``
with every glued value, and ``times.txt`` with each cell's execution time.
A chapter's text must be read against its figures (CONTRIBUTING.md); this is
the quickest way to see them without building the whole book.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    nb = jupytext.read(args.chapter)
    args.out.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3", transport="ipc",
                            resources={"metadata": {"path": str(args.chapter.parent.resolve())}})
    times = []
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            start = time.perf_counter()
            client.execute_cell(cell, index)
            times.append((index, time.perf_counter() - start, cell.source.splitlines()[:1]))
    glued, images = [], 0
    for index, cell in enumerate(nb.cells):
        for k, output in enumerate(cell.get("outputs", [])):
            data = output.get("data", {})
            if "image/png" in data:
                (args.out / f"cell-{index:02d}-{k}.png").write_bytes(base64.b64decode(data["image/png"]))
                images += 1
            scrapbook = output.get("metadata", {}).get("scrapbook")
            if scrapbook:
                text = data.get(scrapbook.get("mime_prefix", "") + "text/plain", data.get("text/plain", ""))
                glued.append(f"{scrapbook['name']} = {text}")
    (args.out / "glue.txt").write_text("\n".join(glued) + "\n")
    (args.out / "times.txt").write_text("\n".join(f"cell {i:3d} {s:7.2f} s  {first}" for i, s, first in times) + "\n")
    nbformat.write(nb, args.out / (args.chapter.stem + ".ipynb"))
    total = sum(s for _, s, _ in times)
    print(json.dumps({"images": images, "glued": len(glued), "seconds": round(total, 1), "out": str(args.out)}))


if __name__ == "__main__":
    main()
