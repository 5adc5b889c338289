"""The package's layers (COURSE.md): a chapter module imports no other chapter module,
the floor imports no chapter module, and nothing in the package imports the coursework."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "companion"
CHAPTER_MODULES = {"autograd", "gradcheck", "backprop", "diagnostics", "autoencoders", "gan", "dnc",
                   "forward_forward", "es", "feedback", "policy_gradient", "hebbian", "som", "bayes", "scoreboard"}
SCOREBOARD = "scoreboard"  # chapter 14's module: the one place where the rules meet
SAME_CHAPTER = {frozenset({"autograd", "gradcheck"})}  # chapter 1 has two modules
FLOOR = {"_checks", "data", "training", "seeds", "measure", "envs", "plotting", "toc", "export", "book"}


def imported_companion_modules(path: Path) -> set[str]:
    """The companion modules a file imports, anywhere in it (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "companion":
                if len(parts) > 1:
                    names.add(parts[1])
                else:
                    names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("companion.") and a.name.count(".") >= 1)
    return names


def test_every_module_is_in_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules <= CHAPTER_MODULES | FLOOR, f"unplaced modules: {modules - CHAPTER_MODULES - FLOOR}"


@pytest.mark.parametrize("module", sorted(CHAPTER_MODULES | FLOOR))
def test_imports_respect_the_layers(module):
    path = PACKAGE / f"{module}.py"
    if not path.exists():
        pytest.skip(f"{module}.py not present")
    imported = imported_companion_modules(path) - {module}
    assert not imported & {"exercises", "coursework"}, f"{module} imports the coursework layer"
    chapters = imported & CHAPTER_MODULES
    if module in FLOOR:
        assert not chapters, f"floor module {module} imports chapter modules {chapters}"
    else:
        others = {c for c in chapters if frozenset({module, c}) not in SAME_CHAPTER}
        if module == SCOREBOARD:
            others = set()  # COURSE.md: the scoreboard's module may read the others
        assert not others, f"chapter module {module} imports chapter modules {others}"
