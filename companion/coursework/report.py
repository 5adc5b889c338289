"""What the grader hands out: the gradebook, the long table, one feedback file per student, a histogram.

* ``gradebook.csv``: one row per student, ``student, total, <one column per
  exercise>``, points with partial credit by cases passed. Canvas and
  Gradescope import a CSV keyed by one student column plus score columns
  (map ``student`` to your roster's login or SIS id on import).
* ``grades.csv``: one row per submitted file and exercise (``student, file,
  chapter, exercise, points, max_points, cases_passed, cases, message``), plus
  a ``(notebook)`` row per file listing its problems.
* ``feedback/<student>.md``: what passed, what failed and the hint. For a
  hidden case it names the case and the kind of failure, never the expected
  value or the inputs.
* ``histogram.png``: the distribution of points per exercise.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from pathlib import Path

from companion.coursework.grader import write_atomic


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.replace("/", "__")) or "_"


def gradebook(results: list[dict]) -> tuple[list[str], dict[str, dict[str, float]], dict[str, list[str]]]:
    """(exercise ids, {student: {exercise: points}}, {student: notes}); a student's best file per exercise counts."""
    exercises = sorted({x for r in results for x in r.get("exercises", {})})
    book: dict[str, dict[str, float]] = defaultdict(dict)
    notes: dict[str, list[str]] = defaultdict(list)
    for r in results:
        for x, row in r.get("exercises", {}).items():
            if x in book[r["student"]]:
                notes[r["student"]].append(f"{x} was submitted more than once; the best counts")
            book[r["student"]][x] = max(book[r["student"]].get(x, 0.0), float(row["points"]))
        if not r.get("exercises"):
            book[r["student"]]  # a row even when nothing was graded
    return exercises, dict(book), dict(notes)


def write_reports(results: list[dict], out_dir: Path) -> None:
    out_dir = Path(out_dir)
    exercises, book, _ = gradebook(results)
    rows = [["student", "total", *exercises]]
    for student in sorted(book):
        points = book[student]
        rows.append([student, f"{sum(points.values()):g}", *(f"{points[x]:g}" if x in points else "0"
                                                             for x in exercises)])
    write_atomic(out_dir / "gradebook.csv", _csv(rows))

    long = [["student", "file", "chapter", "exercise", "points", "max_points", "cases_passed", "cases", "message"]]
    for r in results:
        for x, row in r.get("exercises", {}).items():
            failed = [c for c in row["results"] if not c["passed"]]
            message = row.get("note") or (f"{len(failed)} case(s) failed; first: {failed[0]['case']}: "
                                          f"{failed[0]['message'].splitlines()[0]}" if failed else "all cases passed")
            long.append([r["student"], r["file"], r["chapter"], x, f"{row['points']:g}", f"{row['max_points']:g}",
                         row["passed"], row["cases"], message])
        long.append([r["student"], r["file"], r["chapter"], "(notebook)", "", "", "", "",
                     "; ".join(r.get("problems", [])) or "no problems"])
    write_atomic(out_dir / "grades.csv", _csv(long))

    by_student: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_student[r["student"]].append(r)
    for student, files in by_student.items():
        write_atomic(out_dir / "feedback" / f"{_safe(student)}.md", feedback(student, files))
    histogram(results, exercises, out_dir / "histogram.png")


def feedback(student: str, files: list[dict]) -> str:
    """The feedback a student gets back: per exercise the points, each failed case's message and hint."""
    lines = [f"# Feedback for {student}", ""]
    for r in files:
        lines += [f"## {r['file']} (chapter {r['chapter'] or 'unknown'})", ""]
        for problem in r.get("problems", []):
            lines.append(f"- Problem: {problem}")
        if r.get("problems"):
            lines.append("")
        for x, row in r.get("exercises", {}).items():
            lines.append(f"### {x}: {row['points']:g} of {row['max_points']:g} points "
                         f"({row['passed']} of {row['cases']} cases passed)")
            lines.append("")
            if row.get("note"):
                lines += [row["note"], ""]
            for c in row["results"]:
                kind = "hidden case" if c.get("hidden") else "case"
                if c["passed"]:
                    lines.append(f"- passed: {kind} '{c['case']}'")
                else:
                    body = c["message"].replace("\n", "\n  ")
                    lines.append(f"- FAILED: {kind} '{c['case']}'\n  {body}")
            lines.append("")
    return "\n".join(lines) + "\n"


def histogram(results: list[dict], exercises: list[str], path: Path) -> None:
    """One panel per exercise: how many files got how many points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(exercises))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 2.6), squeeze=False)
    for ax, x in zip(axes[0], exercises):
        values = [r["exercises"][x]["points"] for r in results if x in r.get("exercises", {})]
        top = max([r["exercises"][x]["max_points"] for r in results if x in r.get("exercises", {})] or [1.0])
        ax.hist(values, bins=10, range=(0, top))
        ax.set_title(x, fontsize=9)
        ax.set_xlabel("points")
        ax.set_ylabel("files")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
