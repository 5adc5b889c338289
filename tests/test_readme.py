"""The README's commands are the ones CI runs, and the environments agree.

Two requirement files: requirements-student.txt (what running the chapters
needs: the companion's run-time dependencies, JupyterLab, jupytext) and
requirements.txt (that, plus the book and test tools). environment.yml, what
Binder reads, has exactly the student pins, and takes torch from PyTorch's
CPU-only wheel index.
"""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def readme_commands() -> list[str]:
    """Every line of the README's bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_and_build_commands_verbatim():
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    commands = readme_commands()
    test_cmd = next(c for c in commands if c.endswith("&& pytest"))
    build_cmd = next(c for c in commands if c.endswith("scripts/build_book.py"))
    assert test_cmd == "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && pytest"
    assert test_cmd in ci_lines
    assert build_cmd in ci_lines
    assert "pip install -r requirements.txt" in build_cmd  # the install step is part of the command


def _lines(name: str) -> list[str]:
    return [line.strip() for line in (ROOT / name).read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def _pins(name: str) -> set[str]:
    """The requirement lines of a file, following `-r` includes."""
    pins = set()
    for line in _lines(name):
        if line.startswith("-r "):
            pins |= _pins(line[3:].strip())
        else:
            pins.add(line)
    return pins


def test_environment_yml_has_the_student_pins_and_cpu_torch():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert f"--extra-index-url {CPU_INDEX}" in pip_section
    assert {p for p in pip_section if not p.startswith("--")} == _pins("requirements-student.txt")
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_student_requirements_are_small_and_contributor_requirements_include_them():
    student = {re.split(r"[=<>\[]", p)[0].lower() for p in _pins("requirements-student.txt")}
    assert {"torch", "jupyterlab", "jupytext", "ipykernel", "ipywidgets"} <= student
    # the book and test tools are not a student's business
    assert not student & {"jupyter-book", "sphinx", "pytest", "playwright", "nbval", "hypothesis", "ruff", "myst-nb"}
    assert "-r requirements-student.txt" in _lines("requirements.txt")
    assert "torch==2.13.0" in _pins("requirements.txt") and "-e ." in _pins("requirements.txt")


def test_every_requirement_is_pinned():
    for name in ("requirements.txt", "requirements-student.txt"):
        for line in _pins(name):
            assert line == "-e ." or re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][^ ]*", line), f"{name}: {line}"


def test_every_runtime_dependency_is_pinned_for_students():
    """The package's own dependencies (what Colab's first cell installs) are all in the student pins."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "beyond-backprop"
    pinned = {p.split("==")[0].lower() for p in _pins("requirements-student.txt")}
    for dependency in project["dependencies"]:
        name = re.split(r"[=<>\[ ]", dependency)[0].lower()
        assert name in pinned, f"{name} is a run-time dependency but not pinned in requirements-student.txt"
    # a lower bound on torch only: Colab's preinstalled torch must satisfy it
    torch = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert "==" not in torch and "<" not in torch


def test_binder_opens_md_chapters_as_notebooks():
    post_build = (ROOT / "postBuild").read_text()
    assert "jupytext-config set-default-viewer" in post_build
    assert (ROOT / "postBuild").stat().st_mode & 0o111, "postBuild must be executable"
