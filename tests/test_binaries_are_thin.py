"""Every train/*.py is thin: the launcher plus its paper's project module, nothing else of jaxmodels.

Checked on the source (AST), without running anything: a binary imports from jaxmodels only
``jaxmodels.training.launch`` and the one project module its name maps to (train/<paper>.py ->
jaxmodels.projects.<paper>.experiment, train/<paper>_<x>.py -> jaxmodels.projects.<paper>.<x>), never
touches sys.path (the package is installed), calls ``launch.main`` under ``if __name__ == "__main__"``,
and is at most MAX_CODE_LINES lines of code besides its docstring.
"""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "train")
PAPERS = sorted(name for name in os.listdir(os.path.join(REPO, "jaxmodels", "projects"))
                if os.path.isdir(os.path.join(REPO, "jaxmodels", "projects", name)) and not name.startswith("_"))
BINARIES = sorted(name[:-3] for name in os.listdir(TRAIN) if name.endswith(".py"))
MAX_CODE_LINES = 40


def _tree(stem: str) -> ast.Module:
    with open(os.path.join(TRAIN, f"{stem}.py")) as f:
        return ast.parse(f.read())


def _imported_modules(tree: ast.Module) -> set[str]:
    """Every module a file imports; ``from a.b import c`` counts as ``a.b.c`` when ``c`` is a module name."""
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def project_module(stem: str) -> str:
    """The module the naming rule gives a binary: the longest paper name that ``stem`` starts with."""
    paper = max((p for p in PAPERS if stem == p or stem.startswith(p + "_")), key=len, default=None)
    assert paper is not None, f"train/{stem}.py matches no jaxmodels/projects/<paper>/ ({PAPERS})"
    return f"jaxmodels.projects.{paper}." + ("experiment" if stem == paper else stem[len(paper) + 1:])


def _code_lines(tree: ast.Module, source: str) -> int:
    docstring = tree.body[0] if tree.body and isinstance(tree.body[0], ast.Expr) else None
    skip = set(range(docstring.lineno, docstring.end_lineno + 1)) if docstring else set()
    return sum(1 for number, line in enumerate(source.splitlines(), 1)
               if number not in skip and line.strip() and not line.strip().startswith("#"))


def test_every_paper_binary_is_checked():
    assert len(BINARIES) >= 15 and "gan_dissection_dissect" in BINARIES


@pytest.mark.parametrize("stem", BINARIES)
def test_binary_imports_only_the_launcher_and_its_project(stem):
    tree = _tree(stem)
    ours = {m for m in _imported_modules(tree) if m == "jaxmodels" or m.startswith("jaxmodels.")}
    assert ours == {"jaxmodels.training.launch", project_module(stem)}, ours
    assert os.path.isfile(os.path.join(REPO, *project_module(stem).split(".")) + ".py")


@pytest.mark.parametrize("stem", BINARIES)
def test_binary_leaves_sys_path_alone(stem):
    tree = _tree(stem)
    assert not any(m == "sys" or m.startswith("sys.") for m in _imported_modules(tree))
    assert not any(isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                   and node.value.id == "sys" for node in ast.walk(tree))


@pytest.mark.parametrize("stem", BINARIES)
def test_binary_is_short_and_calls_the_launcher_under_main(stem):
    with open(os.path.join(TRAIN, f"{stem}.py")) as f:
        source = f.read()
    tree = ast.parse(source)
    assert ast.get_docstring(tree), f"train/{stem}.py needs its usage docstring"
    assert _code_lines(tree, source) <= MAX_CODE_LINES
    mains = [node for node in tree.body
             if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"]
    assert len(mains) == 1
    calls = [ast.unparse(node.func) for node in ast.walk(mains[0]) if isinstance(node, ast.Call)]
    assert calls == ["launch.main"], calls
