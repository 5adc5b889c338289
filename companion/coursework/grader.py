"""Grade a class: each submission alone in a sandboxed kernel, every verdict in this process.

For one submission the grader

1. names it from its path under the submissions folder (``section1/alice.ipynb``
   and ``section1/alice/02-xor-backprop.ipynb`` are student ``section1/alice``),
   takes the chapter from ``--chapter`` or the file name, and the exercises to
   grade, and their function names, from the instructor's copy of that chapter;
2. copies the notebook into a fresh working folder and starts a kernel there
   through :mod:`companion.coursework.sandbox` (own account, namespaces, limits);
3. runs the notebook's code cells, each with a time limit (interrupt, then a
   kernel restart, then a kill, see :class:`Kernel`);
4. asks the kernel to run the student's function on each case
   (:mod:`companion.coursework.harness`) and reads back the outcomes as plain
   data (:mod:`companion.coursework.wire`), each case with its own time limit,
   ``max(floor, factor x the reference's time)``;
5. here, in the grader's process, builds the same cases from the instructor's
   checkers (hidden ones drawn from a generator seeded by the instructor's
   secret), checks the kernel saw the same inputs, computes the reference's
   results and judges (:func:`companion.exercises.judge`);
6. writes ``results/<key>.json`` atomically, then tears the sandbox down.

Nothing a notebook prints, patches or writes reaches a verdict: its outputs
are read as data, its stdout is never read, and the comparison runs here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets as _secrets
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from companion.coursework import sandbox
from companion.coursework.sandbox import JailConfig, Limits
from companion.exercises import _core

MAX_NOTEBOOK_BYTES = 20 << 20
SKIPPED_DIRS = {".ipynb_checkpoints", "__MACOSX", "__pycache__"}
INSTALL_LINE = re.compile(r"^\s*[%!]\s*(pip|conda|mamba|uv)\b.*$", re.M)


@dataclass
class Settings:
    """How one grading run behaves; every limit is documented on the instructors' page."""

    jobs: int = 1
    cell_timeout: float = 120.0       # seconds per notebook cell
    notebook_timeout: float = 900.0   # seconds for all of a notebook's cells (restarts and replays included)
    case_floor: float = 10.0          # a case may always take this long...
    case_factor: float = 20.0         # ...or this many times the reference's own time, whichever is longer
    prepare_timeout: float = 120.0    # building one exercise's cases in the kernel
    interrupt_grace: float = 3.0      # seconds an interrupted cell gets to stop before the kernel is restarted
    max_restarts: int = 2             # kernel restarts per submission before the rest is marked not run
    limits: Limits = field(default_factory=Limits)
    points: dict[str, float] = field(default_factory=dict)  # exercise id -> points (default 1)
    checkers: list[str] = field(default_factory=list)  # extra checker files (an instructor's own exercises)
    isolation: str = "auto"           # "auto" (sandbox when root), "sandbox" (required), "none"


# -- identity ---------------------------------------------------------------------
@dataclass
class Entry:
    """One file under the submissions folder."""

    path: Path
    file: str          # its path under the submissions folder, as written in the gradebook
    student: str
    chapter: str       # the chapter stem it is graded as, or "" when unknown
    problems: list[str] = field(default_factory=list)
    notebook: bool = True

    @property
    def key(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.file)[-80:]
        return f"{safe}-{hashlib.sha256(self.file.encode()).hexdigest()[:10]}"


def _skip(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_DIRS or name.endswith("-checkpoint.ipynb")


def discover(roots: list[Path], chapter_stems: set[str], chapter: str = "") -> list[Entry]:
    """Every submission under ``roots``, named by its path; checkpoint copies and hidden files skipped."""
    entries: list[Entry] = []
    for root in roots:
        root = Path(root)
        if root.is_file() or root.is_symlink() and not root.is_dir():
            entries.append(_entry(root, Path(root.name), chapter_stems, chapter))
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not _skip(d))
            for name in sorted(files):
                if not _skip(name):
                    path = Path(folder) / name
                    entries.append(_entry(path, path.relative_to(root), chapter_stems, chapter))
    return entries


def _entry(path: Path, rel: Path, chapter_stems: set[str], chapter: str) -> Entry:
    parts = rel.parts
    stem = Path(parts[-1]).stem
    problems = []
    if stem in chapter_stems and path.suffix == ".ipynb":
        if len(parts) > 1:
            student = "/".join(parts[:-1])
        else:
            student = stem
            problems.append(f"the file is named like the handout ({parts[-1]}) at the top of the submissions "
                            "folder, so it names no student: rename it NAME.ipynb or NAME/" + parts[-1])
        chapter = chapter or stem
        if stem != chapter:
            problems.append(f"the file is named {parts[-1]} but this run grades chapter {chapter}")
    else:
        student = "/".join(parts[:-1] + (stem,))
    entry = Entry(path, rel.as_posix(), student, chapter, problems)
    if path.is_symlink() or not path.is_file():
        entry.notebook = False
        entry.problems.append("not a plain file (a link?): nothing graded")
    elif path.suffix != ".ipynb":
        entry.notebook = False
        entry.problems.append(f"not a notebook ({path.suffix or 'no extension'}): nothing graded; "
                              "the submission must be the .ipynb file")
    return entry


# -- the instructor's side: chapters, cases and reference results ----------------
@dataclass
class Handout:
    chapter: str
    exercises: dict[str, str]        # exercise id -> function name, from the instructor's chapter
    lines: set[str]                  # its cells' lines, to recognise a submission's chapter
    metadata: dict


@dataclass
class Reference:
    """One grading case as the grader sees it."""

    case: _core.Case
    hidden: bool
    fingerprint: str
    expected: _core.Outcome
    seconds: float


def _lines(cells) -> set[str]:
    return {line.strip() for c in cells for line in c.get("source", "").splitlines() if len(line.strip()) > 8}


def load_handouts(chapter_paths: list[Path]) -> dict[str, Handout]:
    from companion.coursework.student import METADATA_KEY, exercises_checked, student_notebook
    from companion.export import Book

    import jupytext

    book = Book.load()
    handouts = {}
    for path in chapter_paths:
        nb = student_notebook(path, book=book, requirement="beyond-backprop")
        handouts[path.stem] = Handout(path.stem, exercises_checked(jupytext.read(path)), _lines(nb.cells),
                                      dict(nb.metadata.get(METADATA_KEY, {})))
    return handouts


def hidden_seed(secret: bytes, exercise_id: str, student: str = "") -> int:
    """The seed of a student's hidden cases of ``exercise_id``: an HMAC-SHA256 under the instructor's secret.

    Each student gets their own draw (from the same distribution), so answers
    to one student's hidden cases, passed on, are useless to another; the same
    secret gives the same cases again when regrading.
    """
    message = f"hidden-cases/{exercise_id}/{student}".encode()
    return int.from_bytes(hmac.new(secret, message, hashlib.sha256).digest()[:8], "big")


def read_secret(path: Path) -> bytes:
    """The instructor's secret; a new random one is written (mode 600) if ``path`` does not exist."""
    path = Path(path)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_secrets.token_hex(32) + "\n")
        print(f"wrote a new grading secret to {path}: keep it, and use it again to regrade")
    data = path.read_bytes().strip()
    if len(data) < 16:
        raise ValueError(f"{path}: a grading secret needs at least 16 characters")
    return data


def references(exercise_id: str, secret: bytes, student: str = "") -> list[Reference]:
    """The exercise's grading cases for ``student`` with the reference's results, computed in this process."""
    from companion.coursework.harness import case_fingerprint

    exercise = _core.get(exercise_id)
    refs = []
    for case, hidden in exercise.grading_cases(np.random.default_rng(hidden_seed(secret, exercise_id, student))):
        fp = case_fingerprint(case)
        start = time.perf_counter()
        expected = _core.Outcome("raised") if case.raises is not None else _core.call(exercise.reference, case)
        refs.append(Reference(case, hidden, fp, expected, time.perf_counter() - start))
    return refs


def case_limit(settings: Settings, ref: Reference) -> float:
    return max(settings.case_floor, settings.case_factor * ref.seconds)


# -- a kernel with time limits -------------------------------------------------------
class CheckerError(RuntimeError):
    """The instructor's copy has no working checker for an exercise its chapter checks."""


class KernelDied(RuntimeError):
    pass


class KernelBroken(KernelDied):
    """The kernel sends messages the grader cannot read (a notebook patched json, or the kernel)."""


@dataclass
class Ran:
    status: str            # "ok", "error", "timeout", "dead"
    error: str = ""
    seconds: float = 0.0
    escalation: str = ""   # what it took to stop a timed-out cell


def _kernel_manager_class():
    from jupyter_client import KernelManager

    class SandboxKernelManager(KernelManager):
        launcher: list[str] = []

        def format_kernel_cmd(self, extra_arguments=None):
            import sys

            return [*self.launcher, sys.executable, "-s", "-P", "-m", "ipykernel_launcher",
                    "-f", self.connection_file]

    return SandboxKernelManager


class Kernel:
    """One sandboxed kernel; ``run`` executes code with a time limit and escalates on timeout.

    The escalation for a cell or case that does not finish in time: SIGINT
    (``KeyboardInterrupt``); if it has not stopped after ``interrupt_grace``
    seconds, a kernel shutdown request (the kernel's own restart path); if it
    is still alive after that, SIGKILL of the launcher, which takes the
    kernel's whole PID namespace with it. A killed kernel is started again and
    replays what had run, so later cases can still be graded.
    """

    def __init__(self, workdir: Path, jail: JailConfig, config_path: Path, settings: Settings):
        self.workdir, self.jail, self.config_path, self.settings = workdir, jail, config_path, settings
        self.km = None
        self.kc = None
        self.replay: list[tuple[str, float]] = []
        self.restarts = 0

    def start(self) -> None:
        manager = _kernel_manager_class()
        self.km = manager(transport="ipc", ip=str(self.workdir / "kernel"),
                          connection_file=str(self.workdir / "kernel.json"))
        self.km.launcher = sandbox.launcher_command(str(self.config_path))
        self.km.shutdown_wait_time = self.settings.interrupt_grace
        log = open(self.config_path.with_suffix(".log"), "ab")  # the launcher's own errors
        try:
            self.km.start_kernel(env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                 stdout=subprocess.DEVNULL, stderr=log)
        finally:
            log.close()
        self.kc = self.km.client()
        self.kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=True)
        try:
            self.kc.wait_for_ready(timeout=120)
        except RuntimeError as err:
            try:
                tail = self.config_path.with_suffix(".log").read_text(errors="replace").strip().splitlines()[-1:]
            except OSError:
                tail = []
            raise KernelDied(f"the kernel did not start: {err} {' '.join(tail)}".strip()) from None

    def alive(self) -> bool:
        return self.km is not None and self.km.is_alive()

    def _await_reply(self, msg_id: str, deadline: float) -> dict | None:
        from queue import Empty

        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
            try:
                msg = self.kc.get_shell_msg(timeout=min(remaining, 0.5))
            except Empty:
                if not self.alive():
                    raise KernelDied("the kernel died") from None
                continue
            except Exception as err:  # a message that does not parse: the notebook broke the kernel's protocol
                raise KernelBroken(f"{type(err).__name__}: {err}") from None
            if not isinstance(msg, dict) or not isinstance(msg.get("parent_header"), dict):
                raise KernelBroken("a malformed message")
            if msg["parent_header"].get("msg_id") == msg_id:
                if not isinstance(msg.get("content"), dict):
                    raise KernelBroken("a malformed reply")
                return msg

    def run(self, code: str, timeout: float, remember: bool = False) -> Ran:
        if not self.alive():
            raise KernelDied("the kernel is not running")
        start = time.perf_counter()
        msg_id = self.kc.execute(code, silent=False, store_history=False, allow_stdin=False, stop_on_error=False)
        try:
            reply = self._await_reply(msg_id, start + timeout)
        except KernelBroken:
            self.shutdown()
            raise
        if reply is None:
            escalation = self._stop(msg_id)
            return Ran("timeout", seconds=time.perf_counter() - start, escalation=escalation)
        content = reply.get("content", {})
        seconds = time.perf_counter() - start
        if content.get("status") == "ok":
            if remember:
                self.replay.append((code, timeout))
            return Ran("ok", seconds=seconds)
        if remember:
            self.replay.append((code, timeout))
        return Ran("error", f"{content.get('ename', '?')}: {str(content.get('evalue', ''))[:300]}", seconds)

    def _stop(self, msg_id: str) -> str:
        try:
            self.km.interrupt_kernel()
            if self._await_reply(msg_id, time.perf_counter() + self.settings.interrupt_grace) is not None:
                return "interrupted"
        except KernelDied:
            return "the kernel died"
        self.shutdown()  # shutdown request, then SIGKILL after interrupt_grace
        return "interrupt ignored: kernel restarted"

    def restart(self, deadline: float) -> bool:
        """Start a fresh kernel and replay what had run; False when out of restarts or time."""
        self.shutdown()
        if self.restarts >= self.settings.max_restarts:
            return False
        self.restarts += 1
        self.start()
        for code, timeout in self.replay:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return False
            if self.run(code, min(timeout, remaining)).status in ("timeout", "dead"):
                return False
        return True

    def shutdown(self, now: bool = False) -> None:
        """Stop the kernel: a shutdown request (``now``: none), then SIGKILL; then its account's leftovers."""
        if self.kc is not None:
            try:
                self.kc.stop_channels()
            except Exception:
                pass
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=now)
            except Exception:
                pass
            try:
                if self.km.has_kernel:
                    self.km.kill_kernel()
            except Exception:
                pass
            try:
                self.km.cleanup_resources()
            except Exception:
                pass
        self.km = self.kc = None
        if self.jail.cgroup:
            sandbox.cgroup_remove(self.jail.cgroup)
        if self.jail.uid != os.getuid():
            sandbox.kill_account(self.jail.uid)


# -- one submission -------------------------------------------------------------------
class Accounts:
    """A run's grading accounts, one per job, held for the whole run; :meth:`close` removes those the grader made.

    Taking them once per run (not once per submission) keeps ``useradd`` and
    ``userdel`` out of each submission's overhead; holding them keeps another
    grader run on the machine from using (or removing) them meanwhile.
    """

    def __init__(self, n: int):
        import queue

        self.held: list[sandbox.Account] = []
        self.free: queue.Queue = queue.Queue()
        try:
            for _ in range(max(1, n)):
                self.held.append(sandbox.Account())
        except BaseException:
            self.close()
            raise
        for held in self.held:
            self.free.put(held)

    def take(self) -> sandbox.Account:
        return self.free.get()

    def give(self, held: sandbox.Account) -> None:
        self.free.put(held)

    def close(self) -> None:
        for held in self.held:
            held.release(remove=True)
        self.held = []


@dataclass
class Context:
    """What every submission of a run shares: the instructor's side, computed once."""

    settings: Settings
    secret: bytes
    handouts: dict[str, Handout]
    book: Path
    hide: list[str]
    scratch: Path
    isolation: str
    accounts: Accounts | None = None  # the run's grading accounts (sandbox); None: each submission takes its own
    refs: dict[str, list[Reference]] = field(default_factory=dict)
    _fingerprint: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def references(self, exercise_id: str, student: str = "") -> list[Reference]:
        """A student's cases and reference results; raises CheckerError if the course's checker is broken."""
        key = f"{exercise_id}\0{student}"
        with self.lock:  # the checkers' modules are shared by the worker threads: one at a time
            if key not in self.refs:
                try:
                    self.refs[key] = references(exercise_id, self.secret, student)
                except Exception as err:
                    self.refs[key] = CheckerError(f"the course's checker for {exercise_id} cannot be "
                                                  f"used: {type(err).__name__}: {str(err)[:200]}")
            found = self.refs.pop(key) if student else self.refs[key]
            if isinstance(found, CheckerError):
                raise found
            return found

    def fingerprint(self) -> str:
        """Changes when anything that decides a grade changes: the code, the chapters, the secret, the limits."""
        import companion

        if self._fingerprint:
            return self._fingerprint
        h = hashlib.sha256(companion.source_hash().encode())
        h.update(hashlib.sha256(self.secret).digest())
        h.update(json.dumps(asdict(self.settings), sort_keys=True, default=str).encode())
        for name in sorted(self.handouts):
            h.update(json.dumps([name, self.handouts[name].exercises], sort_keys=True).encode())
        self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


def _similar(lines: set[str], handout: Handout) -> float:
    return len(lines & handout.lines) / max(1, len(handout.lines))


def _code_cells(nb: dict) -> list[str]:
    """The code cells the grader runs: not the one that installs the package, and no ``%pip`` line."""
    from companion.export import INSTALL_TAG

    cells = []
    for cell in nb.get("cells", []):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            metadata = cell.get("metadata")
            tags = metadata.get("tags") if isinstance(metadata, dict) else None
            if isinstance(tags, list) and INSTALL_TAG in tags:
                continue  # the handout's first cell pip-installs the package: never at grading time
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            source = INSTALL_LINE.sub("pass  # package installs are skipped when grading", source)
            if source.strip():
                cells.append(source)
    return cells


def _read_notebook(path: Path) -> tuple[dict | None, bytes, str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_NOTEBOOK_BYTES + 1)
    except OSError as err:
        return None, b"", f"cannot read the file: {err.strerror}"
    if len(data) > MAX_NOTEBOOK_BYTES:
        return None, data, f"the notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MB"
    try:
        import nbformat

        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception as err:
        return None, data, f"not a readable notebook: {type(err).__name__}: {str(err)[:200]}"
    return nb, data, ""


def _check_chapter(entry: Entry, nb: dict, ctx: Context) -> None:
    from companion.coursework.student import METADATA_KEY

    cells = [c for c in nb.get("cells", []) if isinstance(c, dict)]
    for c in cells:
        if isinstance(c.get("source"), list):
            c["source"] = "".join(c["source"])
    lines = _lines(cells)
    scores = {name: _similar(lines, h) for name, h in ctx.handouts.items()}
    meta = nb.get("metadata", {}).get(METADATA_KEY, {})
    claimed = meta.get("chapter") if isinstance(meta, dict) else None
    best = max(scores, key=scores.get) if scores else ""
    if not entry.chapter:
        if best and scores[best] >= 0.3:
            entry.chapter = best
            entry.problems.append(f"chapter taken from the notebook's cells ({best}); "
                                  "name the file <chapter>.ipynb or pass --chapter to say it")
        else:
            entry.problems.append("cannot tell which chapter this is: name it NAME/<chapter>.ipynb or pass --chapter")
            return
    if entry.chapter not in ctx.handouts:
        entry.problems.append(f"unknown chapter {entry.chapter!r}")
        return
    if claimed and claimed != entry.chapter:
        entry.problems.append(f"the notebook's metadata says chapter {claimed}, but it is graded as {entry.chapter}")
    own = scores[entry.chapter]
    if best != entry.chapter and scores[best] > own + 0.1:
        entry.problems.append(f"the cells look like chapter {best}'s handout ({scores[best]:.0%} of its lines) "
                              f"more than {entry.chapter}'s ({own:.0%}): is this the right notebook?")
    elif own < 0.3:
        entry.problems.append(f"only {own:.0%} of the {entry.chapter} handout's lines are in this notebook: "
                              "is it the handout?")
    text = "\n".join(c.get("source", "") for c in cells)
    for exercise_id in ctx.handouts[entry.chapter].exercises:
        if f'"{exercise_id}"' not in text and f"'{exercise_id}'" not in text:
            entry.problems.append(f"the check cell of {exercise_id} is missing (graded anyway)")


def _points(ctx: Context, exercise_id: str) -> float:
    return float(ctx.settings.points.get(exercise_id, 1.0))


def _row(ctx: Context, exercise_id: str, results: list[_core.CaseResult], note: str = "") -> dict:
    passed = sum(r.passed for r in results)
    total = len(results)
    points = _points(ctx, exercise_id)
    return {"points": round(points * passed / total, 4) if total else 0.0, "max_points": points,
            "passed": passed, "cases": total, "note": note,
            "results": [asdict(r) for r in results]}


def grade_entry(entry: Entry, ctx: Context) -> dict:
    """Grade one submission; never raises for anything the submission does."""
    start = time.perf_counter()
    result: dict[str, Any] = {"file": entry.file, "student": entry.student, "chapter": entry.chapter,
                              "isolation": ctx.isolation, "exercises": {}, "problems": entry.problems,
                              "fingerprint": ctx.fingerprint()}
    nb = None
    if entry.notebook:
        nb, data, problem = _read_notebook(entry.path)
        result["sha256"] = hashlib.sha256(data).hexdigest()
        if problem:
            entry.problems.append(problem)
    if nb is not None:
        _check_chapter(entry, nb, ctx)
        result["chapter"] = entry.chapter
    handout = ctx.handouts.get(entry.chapter)
    if nb is not None and handout is not None:
        held = None
        try:
            if ctx.isolation == "sandbox":
                held = ctx.accounts.take() if ctx.accounts is not None else sandbox.Account()
            _grade_in_sandbox(entry, nb, handout, ctx, held, result)
        except Exception as err:  # the grader's own failure: say so, keep the class going
            entry.problems.append(f"grading stopped: {type(err).__name__}: {err}")
        finally:
            if held is not None and ctx.accounts is not None:
                ctx.accounts.give(held)
            elif held is not None:
                held.release(remove=True)
    if handout is not None:
        for exercise_id in handout.exercises:
            if exercise_id not in result["exercises"]:
                note = "not graded: " + (entry.problems[-1] if entry.problems else "no notebook")
                result["exercises"][exercise_id] = _row(ctx, exercise_id, [], note)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def _grade_in_sandbox(entry: Entry, nb: dict, handout: Handout, ctx: Context, held, result: dict) -> None:
    s = ctx.settings
    uid, gid = (held.uid, held.gid) if held is not None else (os.getuid(), os.getgid())
    result["account"] = uid
    workdir = Path(tempfile.mkdtemp(prefix="w-", dir=ctx.scratch))
    config = ctx.scratch / f"{workdir.name}.json"
    kernel = None
    try:
        (workdir / ".matplotlib").mkdir()
        (workdir / "results").mkdir()
        mpl_cache = ctx.scratch / "matplotlib"
        for cached in mpl_cache.glob("*.json"):
            shutil.copy(cached, workdir / ".matplotlib" / cached.name)
        shutil.copy(entry.path, workdir / Path(entry.file).name, follow_symlinks=False)
        for sub in sorted(ctx.book.iterdir()):  # data folders the chapters read by relative path
            if sub.is_dir() and not sub.name.startswith(("_", ".")):
                os.symlink(sub, workdir / sub.name)
        for path in [workdir / ".matplotlib", *(workdir / ".matplotlib").iterdir(), workdir / "results",
                     workdir / Path(entry.file).name, workdir]:
            os.chown(path, uid, gid)  # never through the links to the book's folders
        os.chmod(workdir, 0o700)
        env = {"PATH": f"{Path(os.sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir),
               "TMPDIR": "/tmp", "MPLCONFIGDIR": str(workdir / ".matplotlib"), "PYTHONNOUSERSITE": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "LANG": "C.UTF-8", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
        cgroup = sandbox.cgroup_create(f"beyond-backprop-grader/{workdir.name}", s.limits) \
            if ctx.isolation == "sandbox" else ""
        jail = JailConfig(str(workdir), str(workdir / "kernel.json"), uid, gid, list(ctx.hide), _exposed(s, ctx.book), env,
                          s.limits, namespaces=ctx.isolation == "sandbox", cgroup=cgroup, grader_pid=os.getpid())
        sandbox.write_config(config, jail)
        kernel = Kernel(workdir, jail, config, s)
        began = time.perf_counter()
        kernel.start()
        result["timing"] = {"start": round(time.perf_counter() - began, 2)}
        began = time.perf_counter()
        _run_cells(kernel, nb, entry, s)
        result["timing"]["cells"] = round(time.perf_counter() - began, 2)
        began = time.perf_counter()
        _run_exercises(kernel, workdir, handout, ctx, entry, result)
        result["timing"]["exercises"] = round(time.perf_counter() - began, 2)
    finally:
        if kernel is not None:
            kernel.shutdown(now=True)  # done with it: SIGKILL takes the whole namespace down at once
        elif ctx.isolation == "sandbox":
            sandbox.kill_account(uid)
        shutil.rmtree(workdir, ignore_errors=True)
        config.unlink(missing_ok=True)
        config.with_suffix(".log").unlink(missing_ok=True)


def _exposed(settings: Settings, book: Path) -> list[str]:
    """What the kernel must read: the interpreter, the environment, the course's checkout, extra checkers."""
    import sys

    paths = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, Path(__file__).resolve().parents[2])}
    paths |= {os.path.dirname(os.path.realpath(p)) for p in settings.checkers} | {os.path.realpath(book)}
    return sorted(paths)


def _run_cells(kernel: Kernel, nb: dict, entry: Entry, s: Settings) -> None:
    deadline = time.perf_counter() + s.notebook_timeout
    for number, source in enumerate(_code_cells(nb), start=1):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            entry.problems.append(f"notebook time limit of {s.notebook_timeout:g} s reached at code cell {number}; "
                                  "later cells not run")
            return
        limit = min(s.cell_timeout, remaining)
        try:
            ran = kernel.run(source, limit, remember=True)
        except KernelBroken as err:
            entry.problems.append(f"after code cell {number} the kernel's messages were unreadable ({err}): "
                                  "restarted without that cell")
            if not kernel.restart(deadline):
                entry.problems.append("the kernel could not be restarted; later cells not run")
                return
            continue
        except KernelDied:
            entry.problems.append(f"the kernel died in code cell {number} (out of memory, or it exited the "
                                  "interpreter); restarted without that cell")
            if not kernel.restart(deadline):
                entry.problems.append("the kernel could not be restarted; later cells not run")
                return
            continue
        if ran.status == "error":
            entry.problems.append(f"code cell {number} raised {ran.error}")
        elif ran.status == "timeout":
            entry.problems.append(f"code cell {number} ran past {limit:.0f} s ({ran.escalation})")
            if not kernel.alive() and not kernel.restart(deadline):
                entry.problems.append("the kernel could not be restarted; later cells not run")
                return


def _prepare_code(exercise_id: str, function_name: str, seed: int, out: str, checkers: list[str]) -> str:
    return ("import companion.coursework.harness as __bb_harness\n"
            f"__bb_harness.prepare({exercise_id!r}, {function_name!r}, {seed!r}, {out!r}, "
            f"get_ipython().user_ns, {tuple(checkers)!r})\n")


def _run_exercises(kernel: Kernel, workdir: Path, handout: Handout, ctx: Context, entry: Entry, result: dict) -> None:
    from companion.coursework import wire

    s = ctx.settings
    deadline = time.perf_counter() + s.notebook_timeout  # the exercises get their own budget
    prepared: dict[str, str] = {}
    student_refs: dict[str, list[Reference]] = {}
    for exercise_id, function_name in handout.exercises.items():
        out = f"results/{re.sub(r'[^A-Za-z0-9_-]', '_', exercise_id)}"
        try:
            refs = ctx.references(exercise_id, entry.student)
            student_refs[exercise_id] = refs
        except CheckerError as err:
            result["exercises"][exercise_id] = _row(ctx, exercise_id, [], f"not graded: {err}")
            continue
        code = _prepare_code(exercise_id, function_name, hidden_seed(ctx.secret, exercise_id, entry.student),
                             str(workdir / out),
                             s.checkers)
        try:
            ran = kernel.run(code, s.prepare_timeout, remember=True)
        except KernelDied:
            ran = Ran("dead", "the kernel died")
        if ran.status != "ok":
            note = f"the grader could not set up the cases in the kernel ({ran.error or ran.status})"
            result["exercises"][exercise_id] = _row(ctx, exercise_id, [
                _core.CaseResult(r.case.name, False, note, r.hidden) for r in refs], note)
            continue
        prepared[exercise_id] = out
    for exercise_id, out in prepared.items():
        exercise = _core.get(exercise_id)
        refs = student_refs[exercise_id]
        problem = ""
        try:
            fd = wire.open_folder(str(workdir), *out.split("/"))
            try:
                listed = wire.read_json(fd, "cases.json")
            finally:
                os.close(fd)
            if not isinstance(listed, dict) or not isinstance(listed.get("cases"), list):
                problem = "the kernel's list of cases is malformed"
            elif not listed.get("defined"):
                problem = (f"`{handout.exercises[exercise_id]}` is not defined: was the exercise cell deleted or "
                           "renamed, or did it fail to run?")
            elif not listed.get("callable"):
                problem = f"`{handout.exercises[exercise_id]}` is a {str(listed.get('type'))[:50]}, not a function"
            elif len(listed["cases"]) != len(refs):
                problem = "the kernel built a different number of cases"
        except wire.WireError as err:
            listed, problem = [], f"the kernel's list of cases is unreadable ({err})"
        results = []
        timeouts = 0
        for index, ref in enumerate(refs):
            if problem:
                results.append(_core.CaseResult(ref.case.name, False, problem, ref.hidden))
                continue
            if timeouts >= 2:
                results.append(_core.CaseResult(ref.case.name, False, "not run: two earlier cases ran out of time",
                                                ref.hidden))
                continue
            seen = listed["cases"][index]
            if not (isinstance(seen, list) and len(seen) == 2 and seen[1] == ref.fingerprint):
                results.append(_core.CaseResult(
                    ref.case.name, False, "not graded: the inputs the kernel built differ from the grader's "
                    "(did the notebook change the case builders, or the random state they use?)", ref.hidden))
                continue
            received = _run_case(kernel, workdir, out, exercise_id, index, ref, ctx, deadline)
            if received.kind == "timeout":
                timeouts += 1
            results.append(_core.judge(exercise, ref.case, ref.expected, received, hidden=ref.hidden))
        result["exercises"][exercise_id] = _row(ctx, exercise_id, results)


def _run_case(kernel: Kernel, workdir: Path, out: str, exercise_id: str, index: int, ref: Reference,
              ctx: Context, deadline: float) -> _core.Outcome:
    from companion.coursework import wire

    s = ctx.settings
    limit = case_limit(s, ref)
    code = f"__bb_harness.run({exercise_id!r}, {index}, {str(workdir / out)!r})"
    try:
        if not kernel.alive() and not kernel.restart(deadline):
            return _core.Outcome("no_result", message="not run: the kernel could not be restarted")
        ran = kernel.run(code, limit)
    except KernelDied:
        ran = Ran("dead")
    if ran.status == "timeout":
        return _core.Outcome("timeout", message=(
            f"did not finish within {limit:.3g} s, the limit for this case (the longer of {s.case_floor:g} s and "
            f"{s.case_factor:g}x the reference's {ref.seconds:.2g} s); {ran.escalation}"))
    if ran.status == "dead":
        kernel.restart(deadline)
        return _core.Outcome("no_result", message="the kernel died during this case (out of memory, or exit?)")
    try:
        fd = wire.open_folder(str(workdir), *out.split("/"), f"case-{index}")
        try:
            got = wire.read_outcome(fd)
        finally:
            os.close(fd)
    except wire.WireError as err:
        detail = f" ({ran.error})" if ran.status == "error" else ""
        return _core.Outcome("no_result", message=f"no readable result: {err}{detail}")
    return _core.Outcome(got["kind"], got["value"], got["error_types"], got["message"], got["line"], got["where"])


# -- the run -----------------------------------------------------------------------------
def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _warm_matplotlib(scratch: Path) -> None:
    """Build matplotlib's font cache once, so each kernel copies it instead of rebuilding it."""
    import subprocess
    import sys

    cache = scratch / "matplotlib"
    cache.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env={**os.environ, "MPLCONFIGDIR": str(cache)},
                   capture_output=True, timeout=120)


def grade_class(submissions: list[Path], out_dir: Path, secret: bytes, settings: Settings | None = None,
                chapter: str = "", chapter_paths: list[Path] | None = None, student: str | None = None,
                force: bool = False, progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Grade every submission under ``submissions``; write one result file per submission as it finishes.

    Results already in ``out_dir/results`` for the same notebook and the same
    grading set-up are kept (a grader killed half-way resumes where it was);
    ``force`` regrades everything, ``student`` regrades only that student.
    Returns every result in ``out_dir/results`` (the whole class).
    """
    from companion.toc import chapters

    settings = settings or Settings()
    settings.checkers = [str(Path(p).resolve()) for p in settings.checkers]
    for path in settings.checkers:
        if not os.stat(path).st_mode & 0o004 or not os.stat(os.path.dirname(path)).st_mode & 0o001:
            raise ValueError(f"{path}: a checker file must be readable by other accounts (chmod a+r the file, "
                             "a+x its folder): the sandboxed kernels build the cases from it")
        _core.load_checkers(path)
    out_dir = Path(out_dir).resolve()
    chapter_paths = [Path(p).resolve() for p in (chapter_paths or chapters())]
    handouts = load_handouts(chapter_paths)
    if chapter and chapter not in handouts:
        raise ValueError(f"unknown chapter {chapter!r}; expected one of {sorted(handouts)}")
    roots = [Path(p).resolve() for p in submissions]
    if any(_inside(out_dir, r) or _inside(r, out_dir) for r in roots if r.is_dir()):
        raise ValueError("the output folder must be outside the submissions folder (and not contain it)")
    isolation = _isolation(settings.isolation)
    scratch = Path(tempfile.mkdtemp(prefix="bb-grader-"))
    os.chmod(scratch, 0o711)
    hide = sorted({str(r if r.is_dir() else r.parent) for r in roots} | {str(out_dir), str(scratch)})
    needed = [Path(os.sys.prefix).resolve(), Path(__file__).resolve().parents[2]]
    hide = [h for h in hide if not any(_inside(n, Path(h)) for n in needed)]
    ctx = Context(settings, secret, handouts, chapter_paths[0].parent, hide, scratch, isolation)
    entries = discover(roots, set(handouts), chapter)
    if student is not None:
        entries = [e for e in entries if e.student == student]
        if not entries:
            raise ValueError(f"no submission of student {student!r}")
    results_dir = out_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    todo = []
    fingerprint = ctx.fingerprint()
    for e in entries:
        previous = _load(results_dir / f"{e.key}.json")
        if not force and student is None and previous and previous.get("fingerprint") == fingerprint \
                and previous.get("sha256") == _sha256(e.path):
            continue
        todo.append(e)
    try:
        if any(e.notebook for e in todo):
            _warm_matplotlib(scratch)
        for exercise_id in sorted({x for e in todo for x in handouts.get(e.chapter, Handout("", {}, set(), {})).exercises}):
            try:
                ctx.references(exercise_id)  # a broken checker is reported once, before any kernel starts
            except CheckerError as err:
                print(f"warning: {err}")
        if isolation == "sandbox" and any(e.notebook for e in todo):
            ctx.accounts = Accounts(min(max(1, settings.jobs), len(todo)))
        with ThreadPoolExecutor(max_workers=max(1, settings.jobs)) as pool:
            futures = {pool.submit(grade_entry, e, ctx): e for e in todo}
            for future in as_completed(futures):
                result = future.result()
                write_atomic(results_dir / f"{futures[future].key}.json", json.dumps(result, indent=1))
                if progress:
                    progress(result)
    finally:
        if ctx.accounts is not None:
            ctx.accounts.close()  # the accounts this run created are removed (userdel)
        shutil.rmtree(scratch, ignore_errors=True)
        if isolation == "sandbox":
            for controller in ("memory", "pids"):  # the jobs' parent cgroup, when no other run uses it
                sandbox._rmdir(sandbox.CGROUP_V1 / controller / "beyond-backprop-grader")
    return load_results(out_dir)


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()[:MAX_NOTEBOOK_BYTES + 1]).hexdigest()
    except OSError:
        return ""


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_results(out_dir: Path) -> list[dict]:
    """Every result file of ``out_dir/results``, sorted by student and file.

    A ``.tmp-*`` file is a result being written (or left by a grader killed while
    writing it, see :func:`write_atomic`): not a result.
    """
    results = [r for p in sorted((Path(out_dir) / "results").glob("*.json"))
               if not p.name.startswith(".") and (r := _load(p))]
    return sorted(results, key=lambda r: (r["student"], r["file"]))


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _isolation(requested: str) -> str:
    if requested == "none":
        return "none"
    if sandbox.namespaces_available():
        return "sandbox"
    if requested == "sandbox":
        raise RuntimeError("the sandbox needs root and Linux namespaces (run the grader as root in a container)")
    import warnings

    warnings.warn("grading WITHOUT isolation: not root, or no Linux namespaces; a notebook could read other "
                  "submissions and change files this account can write. Run the grader as root in a container.",
                  stacklevel=2)
    return "none"
