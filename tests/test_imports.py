"""src/scorewatch imports only what its runtime dependencies provide (issue 13).

The suite installs the test extras, so an import only they provide passes every other test and fails
a user who installs the package alone (``scorewatch up`` once imported httpx). Imports inside
``try: ... except ImportError`` and under ``if TYPE_CHECKING:`` are optional and allowed. The examples
shipped in the package are user code (they need the ``examples`` extra) and are not scorewatch's modules.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "scorewatch"
USER_CODE = PACKAGE / "examples"
_OPTIONAL = ("ImportError", "ModuleNotFoundError")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0])


def runtime_distributions() -> set[str]:
    """The declared runtime dependencies and, transitively, what they require (not their extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    seen: set[str] = set()
    todo = [_requirement_name(r) for r in project["dependencies"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [_requirement_name(r) for r in requires if "extra ==" not in r]
    return seen


def _optional_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        guarded = isinstance(node, ast.Try) and any(
            (isinstance(h.type, ast.Name) and h.type.id in _OPTIONAL)
            or (isinstance(h.type, ast.Tuple) and any(getattr(e, "id", "") in _OPTIONAL for e in h.type.elts))
            for h in node.handlers)
        typing_only = isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        if guarded or typing_only:
            skip.update(id(n) for statement in node.body for n in ast.walk(statement))  # type: ignore[attr-defined]
    return skip


def undeclared_imports(package: Path = PACKAGE) -> list[str]:
    """``module (file:line)`` for each import no runtime dependency provides."""
    allowed = runtime_distributions()
    providers = md.packages_distributions()
    problems = []
    for path in sorted(package.rglob("*.py")):
        if USER_CODE in path.parents:
            continue
        tree = ast.parse(path.read_text(), str(path))
        skip = _optional_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top == "scorewatch":
                    continue
                dists = {_norm(d) for d in providers.get(top, [])}
                if not dists & allowed:
                    where = f"{path.relative_to(package.parent)}:{node.lineno}"
                    problems.append(f"{top} ({', '.join(sorted(dists)) or 'not installed'}) at {where}")
    return problems


def test_every_import_is_a_declared_runtime_dependency() -> None:
    assert undeclared_imports() == [], (
        "src/scorewatch imports modules no runtime dependency provides; declare them in "
        "[project].dependencies or guard them with try/except ImportError and a clear message")


def test_the_check_finds_an_undeclared_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("import pytest\ntry:\n    import httpx\nexcept ImportError:\n    httpx = None\n")
    found = undeclared_imports(package)
    assert len(found) == 1 and found[0].startswith("pytest (pytest) at ")
