"""The grader against a hostile class of its own (companion.coursework.grader).

Two tiny chapters (the chapter-1 and chapter-2 checkers, cheap) and a class of
submissions that are correct, broken, slow, or attack the grader in every way
the grader defends against. One grading run (``--jobs 2``); then every verdict
is asserted, and that nothing outside the output folder changed. Needs root and
Linux namespaces (as in CI); skipped otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from companion import export
from companion.coursework import sandbox
from companion.coursework.grader import Settings, grade_class, load_results
from companion.coursework.report import write_reports
from companion.coursework.sandbox import Limits
from companion.coursework.student import METADATA_KEY, student_notebook

pytestmark = pytest.mark.skipif(not sandbox.namespaces_available(),
                                reason="the sandbox needs root and Linux namespaces")

ROOT = Path(__file__).resolve().parents[1]
SECRET = b"a test secret that is long enough"

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""

TINY1 = HEADER + '''
# A tiny chapter on derivatives

Some prose that every handout of this chapter carries, long enough to be recognised.

```{code-cell} ipython3
import math

from companion.exercises import load_checkers

load_checkers(CHECKERS)
print("the tiny chapter on derivatives starts here")
```

```{exercise} Write the central difference
:label: tiny-ex-derivative

Write `derivative(f, x, h)`.
```

```{solution-start} tiny-ex-derivative
:class: dropdown
```

```{code-cell} ipython3
def derivative(f, x, h=1e-5):
    """The central difference of f at x with step h."""
    if not h > 0:
        raise ValueError(h)
    return (f(x + h) - f(x - h)) / (2 * h)
```

```{solution-end}
```

```{code-cell} ipython3
from companion.exercises import check

check("tiny-derivative", derivative)
```
'''

TINY2 = HEADER + '''
# A tiny chapter on XOR

The second tiny chapter, with its own recognisable lines of prose in it.

```{code-cell} ipython3
import numpy as np

from companion.exercises import load_checkers

load_checkers(CHECKERS)
print("the tiny chapter on backprop by hand starts here")
```

```{exercise} Backward pass
:label: tiny-ex-xor

Write `xor_backward`.
```

```{solution-start} tiny-ex-xor
:class: dropdown
```

```{code-cell} ipython3
def xor_backward(X, y, W0, W1):
    """Gradients of 0.5 * sum((A2 - y)**2)."""
    A1 = 1 / (1 + np.exp(-(X @ W0)))
    A2 = 1 / (1 + np.exp(-(A1 @ W1)))
    delta2 = (A2 - y) * A2 * (1 - A2)
    delta1 = (delta2 @ W1.T) * A1 * (1 - A1)
    return X.T @ delta1, A1.T @ delta2
```

```{solution-end}
```

```{code-cell} ipython3
from companion.exercises import check

check("tiny-xor", xor_backward)
```
'''

CHECKERS = '''"""Checkers of the tiny test chapters: visible cases and hidden ones drawn from rng."""

import math

import numpy as np

from companion.exercises import Case, allclose, isclose_scalar, register


def _derivative(f, x, h=1e-5):
    return (f(x + h) - f(x - h)) / (2 * h)


def _visible():
    return [Case("x**3 at x = 2", (lambda x: x**3, 2.0), hint="the central difference"),
            Case("sin at x = 1", (math.sin, 1.0)),
            Case("h = 0 raises ValueError", (math.sin, 1.0), {"h": 0.0}, raises=ValueError,
                 hint="if not h > 0: raise ValueError(...)")]


def _hidden(rng):
    x, h = float(rng.uniform(-2, 2)), float(rng.uniform(1e-4, 1e-2))
    return [Case("a drawn cubic", (lambda v: 2 * v**3 - v, x)),
            Case("tanh with a drawn step", (math.tanh, x), {"h": h}),
            Case("a drawn negative step raises", (math.sin, x), {"h": -h}, raises=ValueError)]


register("tiny-derivative", _derivative, _visible, isclose_scalar(rtol=1e-9, atol=1e-12),
         hint="(f(x + h) - f(x - h)) / (2 * h)", hidden=_hidden)


def _xor_backward(X, y, W0, W1):
    A1 = 1 / (1 + np.exp(-(X @ W0)))
    A2 = 1 / (1 + np.exp(-(A1 @ W1)))
    delta2 = (A2 - y) * A2 * (1 - A2)
    delta1 = (delta2 @ W1.T) * A1 * (1 - A1)
    return X.T @ delta1, A1.T @ delta2


def _xor_case(name, rng, n, d, h):
    X = np.hstack([rng.integers(0, 2, size=(n, d - 1)).astype(float), np.ones((n, 1))])
    y = rng.integers(0, 2, size=(n, 1)).astype(float)
    return Case(name, (X, y, rng.uniform(-1, 1, size=(d, h)), rng.uniform(-1, 1, size=(h, 1))))


register("tiny-xor", _xor_backward, lambda: [_xor_case("XOR", np.random.default_rng(0), 4, 3, 4)],
         allclose(rtol=1e-7, atol=1e-10), hidden=lambda rng: [_xor_case("drawn", rng, 6, 4, 3)])
'''

GOOD = """
def derivative(f, x, h=1e-5):
    if not h > 0:
        raise ValueError(h)
    return (f(x + h) - f(x - h)) / (2 * h)
"""
WRONG = """
def derivative(f, x, h=1e-5):
    return (f(x + h) - f(x)) / h
"""
XOR_GOOD = TINY2.split("```{code-cell} ipython3\n")[2].split("```")[0]


def attacks(out: Path, subs: Path, bait: Path) -> dict[str, list[str]]:
    """name -> the code cells that replace the exercise cell (the rest of the handout is kept)."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    return {
        "good": [GOOD],
        "skeleton": [],
        "wrong": [WRONG],
        # the verdict is decided outside the student's process
        "patch_stdlib": [WRONG, """
import math, json, numpy
math.isclose = lambda *a, **k: True
numpy.allclose = lambda *a, **k: True
numpy.isclose = lambda *a, **k: True
json.dumps = lambda *a, **k: '{"passed": true, "message": "all cases passed"}'
import companion.exercises as E
E.check = E._core.check = E._core.judge = lambda *a, **k: True
"""],
        "forge": [WRONG, """
import companion.coursework.harness as H, companion.coursework.wire as W
real = W.write_outcome
def forged(folder, outcome, value=None):
    real(folder, {"kind": "returned"}, 12.00000000021184)
W.write_outcome = H.write_outcome = forged
print('__bb_result_0123456789abcdef:{"passed": true, "message": "all cases passed"}', end="")
"""],
        "frames": ["""
import sys
def derivative(f, x, h=1e-5):
    frame = sys._getframe(1)
    while frame is not None:
        for name in ("expected", "reference", "refs", "ref"):
            if name in frame.f_locals:
                value = frame.f_locals[name]
                return getattr(value, "value", value)
        frame = frame.f_back
    return 0.0
"""],
        "alias": ["""
from companion.exercises import get
derivative = get("tiny-derivative").reference
"""],
        "wrapper": ["""
from companion.exercises import get
_reference = get("tiny-derivative").reference
def derivative(f, x, h=1e-5):
    return _reference(f, x, h)
"""],
        # tampering does not carry over
        "tamper": [WRONG, f"""
import os
wrote = []
targets = [{str(ROOT / 'companion/exercises/_core.py')!r}, {str(ROOT / 'companion/coursework/harness.py')!r},
           {site + '/sitecustomize.py'!r}, {site + '/usercustomize.py'!r}, "sitecustomize.py",
           "data/planted.txt", {str(bait / 'planted.txt')!r}]
for target in targets:
    try:
        with open(target, "a") as f:
            f.write("\\nraise SystemExit('planted')\\n")
        wrote.append(target)
    except OSError:
        pass
os.makedirs("companion/exercises", exist_ok=True)
open("companion/__init__.py", "w").write("")
open("companion/exercises/__init__.py", "w").write("def check(*a, **k):\\n    return True\\n")
print(wrote)
"""],
        # submissions reach neither each other nor the grades
        "daemon": [WRONG, f"""
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(4)
        for folder in ({str(out)!r}, {str(subs)!r}, {str(bait)!r}):
            for base, _, files in os.walk(folder):
                for name in files:
                    try:
                        open(os.path.join(base, name), "w").write("rewritten by a daemon")
                    except OSError:
                        pass
        try:
            open({str(bait / 'daemon-was-here')!r}, "w").write("1")
        except OSError:
            pass
        os._exit(0)
    os._exit(0)
"""],
        "kill_parent": [GOOD, """
import os, signal
try:
    os.kill(os.getppid(), signal.SIGKILL)
except OSError as err:
    print(err)
for pid in range(2, 200):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
""", "import os, signal\nos.kill(-1, signal.SIGKILL)\n"],
        "other_submission": [f"""
import os, glob
found = ""
for path in glob.glob({str(subs)!r} + "/**/*.ipynb", recursive=True):
    try:
        text = open(path).read()
        found += text
        open(path, "w").write("overwritten")
    except OSError:
        pass
for cmd in glob.glob("/proc/*/cmdline"):
    try:
        found += open(cmd).read()
    except OSError:
        pass
source = ""
if "def derivative" in found:
    import json
    for cell in json.loads(found[found.index("{{"):])["cells"]:
        if "def derivative" in "".join(cell["source"]):
            source = "".join(cell["source"])
if source:
    exec(source)
else:
    def derivative(f, x, h=1e-5):
        return 0.0
print(len(found))
"""],
        # limits
        "print_no_newline": ["""
import io, sys
print("no newline at the end", end="")
sys.stdout = io.StringIO()
def derivative(f, x, h=1e-5):
    print("inside", end="")
    if not h > 0:
        raise ValueError(h)
    return (f(x + h) - f(x - h)) / (2 * h)
"""],
        "slow": ["""
import time
def derivative(f, x, h=1e-5):
    time.sleep(1.0)
    if not h > 0:
        raise ValueError(h)
    return (f(x + h) - f(x - h)) / (2 * h)
"""],
        "infinite": ["""
def derivative(f, x, h=1e-5):
    while True:
        pass
"""],
        "stubborn": ["""
import time
def derivative(f, x, h=1e-5):
    while True:
        try:
            time.sleep(10)
        except KeyboardInterrupt:
            pass
"""],
        "resources": ["""
try:
    block = bytearray(6 << 30)
except MemoryError:
    print("no memory")
""", """
import subprocess
children = []
for _ in range(300):
    children.append(subprocess.Popen(["sleep", "60"]))
""", """
with open("big.bin", "wb") as f:
    f.write(b"0" * (64 << 20))
""", GOOD],
    }


def _submission(handout, cells: list[str] | None):
    nb = nbformat.from_dict(json.loads(json.dumps(handout)))
    if cells is None:
        return nb
    index = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "NotImplementedError" in c.source)
    nb.cells[index:index + 1] = [nbformat.v4.new_code_cell(source) for source in cells] or [nb.cells[index]]
    return nb


def _tree(*folders: Path) -> dict[str, str]:
    digest = {}
    for folder in folders:
        if folder.is_file():
            digest[str(folder)] = hashlib.sha256(folder.read_bytes()).hexdigest()
            continue
        for base, dirs, files in os.walk(folder):
            # Python's bytecode cache, written by the grader's own interpreter on a fresh
            # checkout, is not a change a submission made
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                path = Path(base) / name
                if not path.is_symlink():
                    digest[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def _orphaned_launchers() -> list[int]:
    """Sandbox launchers whose grader is gone (their parent is now init or a subreaper, not a grader)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes()
            ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            parent = Path(f"/proc/{ppid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if b"companion.coursework.sandbox" in cmdline and b"companion" not in parent:
            found.append(int(entry.name))
    return found


def _uids(results) -> set[int]:
    """The grading accounts a run used (another grader may be using others at the same time)."""
    return {r["account"] for r in results if "account" in r}


def _leftover_accounts(uids: set[int]) -> list[str]:
    """Grading accounts among ``uids`` still in /etc/passwd although no grader run holds them.

    The grader removes the accounts it created when its run ends (it holds each
    one's lock meanwhile); an account another run holds now is that run's.
    """
    import fcntl
    import pwd

    left = []
    for uid in uids:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            continue
        fd = os.open(sandbox.LOCKS / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            left.append(name)  # nobody holds it: it should be gone
        except OSError:
            pass
        finally:
            os.close(fd)
    return left


SETTINGS = Settings(jobs=2, cell_timeout=20, notebook_timeout=90, case_floor=2.5, interrupt_grace=1.5,
                    limits=Limits(cpu_seconds=120, memory_bytes=3 << 30, processes=64, file_bytes=16 << 20))


@pytest.fixture(scope="session")
def checkers_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("checkers") / "tiny_checkers.py"
    path.write_text(CHECKERS)
    os.chmod(path.parent, 0o755)  # the sandboxed kernels build the cases from it
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory, checkers_file):
    base = tmp_path_factory.mktemp("class")
    book, subs, out, bait = base / "book", base / "subs", base / "out", base / "bait"
    for folder in (book, subs, out, bait):
        folder.mkdir()
    (book / "data").mkdir()
    (book / "data" / "table.txt").write_text("read-only data a chapter uses\n")
    os.chmod(bait, 0o777)
    checkers = repr(str(checkers_file))
    (book / "01-tiny.md").write_text(TINY1.replace("CHECKERS", checkers))
    (book / "02-tiny.md").write_text(TINY2.replace("CHECKERS", checkers))
    chapters = [book / "01-tiny.md", book / "02-tiny.md"]
    h1, h2 = student_notebook(chapters[0]), student_notebook(chapters[1])

    files: dict[str, object] = {}
    for name, cells in attacks(out, subs, bait).items():
        files[f"{name}/01-tiny.ipynb"] = _submission(h1, cells)
    meta = _submission(h1, [WRONG])
    meta.metadata[METADATA_KEY] = {"chapter": "02-tiny", "exercises": {}}
    files["metadata_games/01-tiny.ipynb"] = meta
    bare = _submission(h1, [GOOD])
    del bare.metadata[METADATA_KEY]
    files["no_metadata/01-tiny.ipynb"] = bare
    files["mislabelled/02-tiny.ipynb"] = _submission(h1, [GOOD])
    files["xor/02-tiny.ipynb"] = _submission(h2, [XOR_GOOD])
    files["section1/alice.ipynb"] = _submission(h1, [GOOD])
    files["section2/alice.ipynb"] = _submission(h1, [])
    files["01-tiny.ipynb"] = _submission(h1, [GOOD])
    install = _submission(h1, [GOOD])  # the handout's first cell pip-installs the package: never run when grading
    assert export.INSTALL_TAG in install.cells[0].metadata["tags"]
    install.cells[0].source += "\nraise RuntimeError('the install cell ran')"
    files["install_cell/01-tiny.ipynb"] = install
    files[".ipynb_checkpoints/good-checkpoint.ipynb"] = _submission(h1, [GOOD])
    files["section1/.ipynb_checkpoints/alice-checkpoint.ipynb"] = _submission(h1, [GOOD])
    for rel, nb in files.items():
        (subs / rel).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, subs / rel)
    (subs / "dave").mkdir()
    (subs / "dave" / "answers.py").write_text(GOOD)
    (subs / "broken.ipynb").write_text("this is not JSON")
    (subs / ".DS_Store").write_bytes(b"\0")

    watched = [subs, book, bait, ROOT / "companion", Path(next(p for p in sys.path if p.endswith("site-packages")))]
    mine = [ROOT / "companion/exercises/_core.py", ROOT / "companion/coursework"]
    before = _tree(subs, book, bait, *mine)
    site_before = set(os.listdir(watched[-1]))
    start = time.perf_counter()
    SETTINGS.checkers = [str(checkers_file)]
    results = grade_class([subs], out, SECRET, SETTINGS, chapter_paths=chapters)
    seconds = time.perf_counter() - start
    write_reports(results, out)
    snapshot = {p.name: p.read_bytes() for p in (out / "results").iterdir()}
    time.sleep(5)  # longer than the daemon waits before it strikes
    return {"results": {r["file"]: r for r in results}, "out": out, "subs": subs, "bait": bait, "book": book,
            "before": before, "after": _tree(subs, book, bait, *mine), "site_before": site_before,
            "site_after": set(os.listdir(watched[-1])), "snapshot": snapshot, "seconds": seconds,
            "chapters": chapters}


def score(graded, file, exercise="tiny-derivative"):
    row = graded["results"][file]["exercises"][exercise]
    return row["points"], row


def messages(row) -> str:
    return "\n".join(c["message"] for c in row["results"])


def problems(graded, file) -> str:
    return "\n".join(graded["results"][file]["problems"])


def test_correct_and_broken_submissions(graded):
    points, row = score(graded, "good/01-tiny.ipynb")
    assert points == 1 and row["passed"] == row["cases"] > 3
    assert any(c["hidden"] for c in row["results"])
    points, row = score(graded, "skeleton/01-tiny.ipynb")
    assert points == 0 and "not implemented yet" in messages(row)
    points, row = score(graded, "wrong/01-tiny.ipynb")
    assert points < 0.5 and "expected" in messages(row)
    assert graded["results"]["good/01-tiny.ipynb"]["isolation"] == "sandbox"


def test_patching_the_checker_or_the_standard_library_changes_nothing(graded):
    assert score(graded, "patch_stdlib/01-tiny.ipynb")[0] == score(graded, "wrong/01-tiny.ipynb")[0] or \
        score(graded, "patch_stdlib/01-tiny.ipynb")[0] == 0


def test_forged_outputs_do_not_pass(graded):
    points, row = score(graded, "forge/01-tiny.ipynb")
    assert points < 0.5
    assert not any(c["passed"] for c in row["results"] if c["hidden"])


def test_frame_inspection_finds_no_expected_value(graded):
    assert score(graded, "frames/01-tiny.ipynb")[0] == 0


def test_calling_or_aliasing_the_reference_fails(graded):
    for name in ("alias", "wrapper"):
        points, row = score(graded, f"{name}/01-tiny.ipynb")
        assert points == 0 and "reference solution" in messages(row), name


def test_tampering_does_not_carry_over_and_nothing_outside_the_output_changed(graded):
    assert score(graded, "tamper/01-tiny.ipynb")[0] < 0.5
    assert graded["before"] == graded["after"], "a file outside the output folder changed"
    assert graded["site_before"] == graded["site_after"]
    assert not (graded["bait"] / "planted.txt").exists() and not (graded["bait"] / "daemon-was-here").exists()
    for file in ("good/01-tiny.ipynb", "section1/alice.ipynb", "no_metadata/01-tiny.ipynb"):
        assert score(graded, file)[0] == 1, file


def test_a_detached_process_cannot_change_the_grades_after_grading(graded):
    now = {p.name: p.read_bytes() for p in (graded["out"] / "results").iterdir()}
    assert now == graded["snapshot"]
    uids = _uids(graded["results"].values())
    assert uids and not any(sandbox.processes_of(uid) for uid in uids), "a sandboxed process outlived its submission"


def test_the_install_cell_is_not_run_and_the_accounts_are_removed(graded):
    assert score(graded, "install_cell/01-tiny.ipynb")[0] == 1
    assert "install cell ran" not in problems(graded, "install_cell/01-tiny.ipynb")
    assert not _leftover_accounts(_uids(graded["results"].values())), "a grading account outlived its run"


def test_killing_the_parent_kills_only_the_own_kernel(graded):
    points, _ = score(graded, "kill_parent/01-tiny.ipynb")
    assert points == 1
    assert "died" in problems(graded, "kill_parent/01-tiny.ipynb")


def test_another_submission_can_be_neither_read_nor_written(graded):
    assert score(graded, "other_submission/01-tiny.ipynb")[0] == 0
    assert score(graded, "good/01-tiny.ipynb")[0] == 1


def test_the_instructor_decides_what_is_graded(graded):
    points, row = score(graded, "metadata_games/01-tiny.ipynb")
    assert row["cases"] > 0 and points < 0.5
    assert "metadata says chapter 02-tiny" in problems(graded, "metadata_games/01-tiny.ipynb")
    mislabelled = graded["results"]["mislabelled/02-tiny.ipynb"]
    assert mislabelled["chapter"] == "02-tiny" and set(mislabelled["exercises"]) == {"tiny-xor"}
    assert mislabelled["exercises"]["tiny-xor"]["points"] == 0
    assert "look like chapter 01-tiny" in problems(graded, "mislabelled/02-tiny.ipynb")
    assert score(graded, "xor/02-tiny.ipynb", "tiny-xor")[0] == 1


def test_printing_and_redirecting_stdout_do_not_matter(graded):
    assert score(graded, "print_no_newline/01-tiny.ipynb")[0] == 1


def test_slow_but_correct_passes_and_loops_are_stopped(graded):
    assert score(graded, "slow/01-tiny.ipynb")[0] == 1
    points, row = score(graded, "infinite/01-tiny.ipynb")
    assert points == 0 and "did not finish within" in messages(row) and "not run" in messages(row)
    points, row = score(graded, "stubborn/01-tiny.ipynb")
    assert points == 0 and "kernel restarted" in messages(row)


def test_resource_limits_hold_and_the_notebook_still_grades(graded):
    text = problems(graded, "resources/01-tiny.ipynb")
    assert "File too large" in text or "EFBIG" in text, text
    assert "BlockingIOError" in text or "Resource temporarily unavailable" in text, text
    assert score(graded, "resources/01-tiny.ipynb")[0] == 1


def test_identity_comes_from_the_path(graded):
    results = graded["results"]
    assert results["section1/alice.ipynb"]["student"] == "section1/alice"
    assert results["section2/alice.ipynb"]["student"] == "section2/alice"
    assert score(graded, "section1/alice.ipynb")[0] == 1 and score(graded, "section2/alice.ipynb")[0] == 0
    assert results["good/01-tiny.ipynb"]["student"] == "good"
    assert "names no student" in problems(graded, "01-tiny.ipynb")
    assert not any("checkpoint" in f for f in results) and ".DS_Store" not in results
    assert "not a notebook (.py)" in problems(graded, "dave/answers.py")
    assert "not a readable notebook" in problems(graded, "broken.ipynb")
    gradebook = (graded["out"] / "gradebook.csv").read_text().splitlines()
    assert gradebook[0] == "student,total,tiny-derivative,tiny-xor"
    assert any(line.startswith("section1/alice,1,") for line in gradebook)
    assert "file" in (graded["out"] / "grades.csv").read_text().splitlines()[0].split(",")


def test_feedback_never_shows_hidden_expected_values(graded):
    text = (graded["out"] / "feedback" / "wrong.md").read_text()
    assert "hidden case" in text and "FAILED" in text
    for block in text.split("- ")[1:]:
        if block.startswith("FAILED: hidden case"):
            assert "expected" not in block.split("Hint:")[0].replace("expected a", "").lower() or \
                "to be raised" in block
    assert (graded["out"] / "histogram.png").stat().st_size > 1000


def test_regrading_one_student_leaves_the_others_alone(graded):
    results = graded["out"] / "results"
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    grade_class([graded["subs"]], graded["out"], SECRET, SETTINGS, chapter_paths=graded["chapters"],
                student="section1/alice")
    after = {p.name: p.read_bytes() for p in results.iterdir()}
    changed = {name for name in before if before[name] != after[name]}
    assert len(changed) <= 1 and all("alice" in name for name in changed)
    assert set(after) == set(before)
    regraded = {r["file"]: r for r in load_results(graded["out"])}["section1/alice.ipynb"]
    assert regraded["exercises"]["tiny-derivative"]["points"] == 1


def test_a_killed_grader_loses_nothing_it_finished(tmp_path, checkers_file):
    (tmp_path / "book").mkdir()
    chapter = tmp_path / "book" / "01-tiny.md"
    checkers = str(checkers_file)
    chapter.write_text(TINY1.replace("CHECKERS", repr(checkers)))
    handout = student_notebook(chapter)
    subs = tmp_path / "subs"
    for name in ("a", "b", "c"):
        (subs / name).mkdir(parents=True)
        nbformat.write(_submission(handout, [GOOD]), subs / name / "01-tiny.ipynb")
    secret = tmp_path / "secret"
    secret.write_text(SECRET.decode())
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        from pathlib import Path
        from companion.coursework.grader import Settings, grade_class
        grade_class([Path({str(subs)!r})], Path({str(out)!r}), {SECRET!r}, Settings(jobs=1, checkers=[{checkers!r}]),
                    chapter_paths=[Path({str(chapter)!r})])
    """)
    grader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.time() + 120
    def done():  # finished results (a ".tmp-" file is one being written)
        return [p for p in (out / "results").glob("*.json") if not p.name.startswith(".")]

    while time.time() < deadline and not done():
        time.sleep(0.2)
    os.killpg(grader.pid, signal.SIGKILL)
    grader.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in done()}
    assert finished, "the grader finished nothing in two minutes"
    uids = _uids(load_results(out))
    deadline = time.time() + 15  # the launchers notice their grader died and take their kernels with them
    while time.time() < deadline and (any(sandbox.processes_of(uid) for uid in uids) or _orphaned_launchers()):
        time.sleep(0.2)
    assert uids and not any(sandbox.processes_of(uid) for uid in uids)
    assert not _orphaned_launchers(), "a kernel outlived the grader that started it"
    results = grade_class([subs], out, SECRET, Settings(jobs=1, checkers=[checkers]), chapter_paths=[chapter])
    assert len(results) == 3 and all(r["exercises"]["tiny-derivative"]["points"] == 1 for r in results)
    # the killed run could not remove its account; the run that used it next did
    assert not _leftover_accounts(uids | _uids(results)), "a grading account outlived its run"
    for name, mtime in finished.items():
        assert (out / "results" / name).stat().st_mtime_ns == mtime, "a finished result was graded again"
