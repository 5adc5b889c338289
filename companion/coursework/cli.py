"""The command line: ``student`` writes the handouts, ``grade`` grades a class."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

GRADE_HELP = """\
Grade every notebook under SUBMISSIONS (folders are searched; .ipynb_checkpoints and
hidden files are skipped; any other file gets a row). A student is named by the path
under the folder: NAME.ipynb, or NAME/<chapter>.ipynb; section1/alice.ipynb is
section1/alice. The chapter is --chapter, or the file name (NAME/<chapter>.ipynb).

Each notebook runs alone, in a sandboxed kernel (own account, PID/mount/network
namespaces, resource limits) when the grader runs as root. Results are written to
OUT/results/ one file per submission as each finishes; a second run skips what is
already graded (--force regrades), --student NAME regrades one student. Then
OUT/gradebook.csv, OUT/grades.csv, OUT/feedback/<student>.md and OUT/histogram.png.
"""


def _points(values: list[str]) -> dict[str, float]:
    points = {}
    for value in values:
        if "=" in value:
            key, _, number = value.partition("=")
            points[key.strip()] = float(number)
        else:
            import yaml

            points.update({str(k): float(v) for k, v in (yaml.safe_load(Path(value).read_text()) or {}).items()})
    return points


def main(argv: list[str] | None = None) -> int:
    from companion.coursework.sandbox import Limits

    parser = argparse.ArgumentParser(prog="python -m companion.coursework",
                                     description="Student notebooks and the grader of the course.")
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser(
        "student", help="write the student notebooks",
        description="Write each chapter's student notebook: its reader notebook (companion.export) with every "
        "reference solution replaced by a skeleton. The numbers the text quotes come from the chapter's "
        "execution in the book's cache (_build/.jupyter_cache, filled by pytest or scripts/build_book.py); a "
        "chapter not in the cache is made from its unexecuted source, each quoted number shown as [`name`] "
        "(the student's run computes it), unless --execute executes it first.")
    student.add_argument("--out", type=Path, default=Path("student"), help="folder for the .ipynb files")
    student.add_argument("--execute", action="store_true",
                         help="execute (and cache) the chapters the cache lacks first, so every notebook shows "
                         "its numbers (about a minute per chapter)")
    student.add_argument("--ref", help="commit or tag the first cell installs (default: HEAD of this checkout)")

    commands.add_parser("exercises", help="list each chapter's auto-checked and written exercises")
    grader = commands.add_parser("grade", help="grade submitted notebooks", description=GRADE_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    grader.add_argument("submissions", nargs="+", type=Path, help="folders (or .ipynb files) of submissions")
    grader.add_argument("--out", type=Path, default=Path("grades"), help="output folder (default: grades/)")
    grader.add_argument("--secret", type=Path, required=True,
                        help="the instructor's key file; the hidden cases are drawn from it (created if missing)")
    grader.add_argument("--chapter", default="", help="grade every notebook as this chapter (e.g. 02-xor-backprop)")
    grader.add_argument("--student", default=None, help="regrade only this student (the others are kept)")
    grader.add_argument("--force", action="store_true", help="regrade notebooks that are already graded")
    grader.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default 1)")
    grader.add_argument("--points", action="append", default=[],
                        help="EXERCISE=POINTS, or a YAML file of them (default: 1 point per exercise)")
    grader.add_argument("--checkers", action="append", default=[], type=Path,
                        help="a checker file of your own exercises (repeatable)")
    grader.add_argument("--cell-timeout", type=float, default=120, help="seconds per notebook cell (default 120)")
    grader.add_argument("--notebook-timeout", type=float, default=900,
                        help="seconds for all the notebook's cells (default 900)")
    grader.add_argument("--case-floor", type=float, default=10,
                        help="seconds any case may take (default 10)")
    grader.add_argument("--case-factor", type=float, default=20,
                        help="or this many times the reference's time on that case, if longer (default 20)")
    grader.add_argument("--memory-gb", type=float, default=4, help="memory limit per kernel in GiB (default 4)")
    grader.add_argument("--cpu-seconds", type=int, default=1800, help="CPU seconds per kernel (default 1800)")
    grader.add_argument("--processes", type=int, default=256, help="processes and threads per kernel (default 256)")
    grader.add_argument("--isolation", choices=["auto", "sandbox", "none"], default="auto",
                        help="auto: sandbox when possible (root); sandbox: refuse to run without it")
    args = parser.parse_args(argv)

    if args.command == "student":
        import nbformat

        from companion import export
        from companion.coursework.student import write_student_notebooks

        start = time.perf_counter()
        requirement = export.install_source(args.ref) if args.ref else None
        paths = write_student_notebooks(args.out, execute=args.execute, requirement=requirement)
        unexecuted = [p.stem for p in paths
                      if not nbformat.read(p, as_version=4).metadata[export.METADATA_KEY].get("numbers")]
        print(f"wrote {len(paths)} student notebooks to {args.out}/ in {time.perf_counter() - start:.1f} s")
        if unexecuted:
            print(f"{len(unexecuted)} made without an execution (numbers shown as [`name`]): "
                  f"{', '.join(unexecuted)}; run `pytest book/` or add --execute to write the numbers in")
        return 0

    if args.command == "exercises":
        from companion.coursework.student import exercise_table
        from companion.exercises import get
        from companion.toc import chapters

        print("| chapter | reading | auto-checked (visible + hidden cases) | written |\n|---|---|---|---|")
        for chapter in chapters():
            row = exercise_table(chapter)
            checked = []
            for exercise_id in row["checked"]:
                import numpy as np

                try:
                    exercise = get(exercise_id)
                    hidden = len(exercise.hidden_cases(np.random.default_rng(0)))
                    checked.append(f"`{exercise_id}` ({len(exercise.visible_cases())} + {hidden})")
                except Exception as err:
                    checked.append(f"`{exercise_id}` (checker broken: {type(err).__name__})")
            print(f"| {row['chapter']} | {row['reading_minutes']} min | {', '.join(checked)} | "
                  f"{'; '.join(row['written'])} |")
        return 0

    from companion.coursework.grader import Settings, grade_class, read_secret
    from companion.coursework.report import write_reports

    limits = Limits(cpu_seconds=args.cpu_seconds, memory_bytes=int(args.memory_gb * (1 << 30)),
                    processes=args.processes)
    settings = Settings(jobs=args.jobs, cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
                        case_floor=args.case_floor, case_factor=args.case_factor, limits=limits,
                        points=_points(args.points), isolation=args.isolation,
                        checkers=[str(p) for p in args.checkers])

    def show(result: dict) -> None:
        got = sum(r["points"] for r in result["exercises"].values())
        top = sum(r["max_points"] for r in result["exercises"].values())
        flag = "  (problems: see grades.csv)" if result["problems"] else ""
        print(f"{result['student']:>24}  {result['file']:<40} {got:g}/{top:g}  ({result['seconds']:.1f} s){flag}",
              flush=True)

    start = time.perf_counter()
    try:
        results = grade_class(args.submissions, args.out, read_secret(args.secret), settings, chapter=args.chapter,
                              student=args.student, force=args.force, progress=show)
    except (ValueError, RuntimeError) as err:
        print(f"grade: {err}", file=sys.stderr)
        return 2
    write_reports(results, args.out)
    isolation = sorted({r.get("isolation", "?") for r in results})
    print(f"graded in {time.perf_counter() - start:.1f} s (isolation: {', '.join(isolation)}); "
          f"wrote {args.out}/gradebook.csv, grades.csv, feedback/, histogram.png")
    return 0
