"""The README's commands are the ones CI runs, and the two environments agree."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """Every line of the README's bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_and_build_commands_verbatim():
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    commands = readme_commands()
    test_cmd = next(c for c in commands if c.endswith("&& pytest"))
    build_cmd = next(c for c in commands if c.endswith("scripts/build_book.py"))
    assert test_cmd in ci_lines
    assert build_cmd in ci_lines
    assert "pip install -r requirements.txt" in test_cmd  # the install step is part of the command


def _pins(lines):
    return {line.strip() for line in lines if line.strip() and not line.strip().startswith("#")}


def test_environment_yml_matches_requirements():
    requirements = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert set(pip_section) == requirements
    assert "-e ." in requirements and "torch==2.13.0" in requirements
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_every_requirement_is_pinned():
    for line in _pins((ROOT / "requirements.txt").read_text().splitlines()):
        assert line == "-e ." or re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][^ ]*", line), line
