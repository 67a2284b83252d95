"""The packages of scorewatch depend on each other one way: no package imports one that imports it back.

A part is a subpackage (``scoring``, ``telemetry``, ``ingest``, ...) or a top-level module (``cli``,
``errors``, ``settings``, ...). Every import counts, at module level or inside a function, and under
``TYPE_CHECKING`` too: a cycle there is still two parts that cannot change apart. Imports of the
root package itself (``from scorewatch import __version__``) do not count: Python imports a package
before any of its modules anyway.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "scorewatch"


def part_of(module: str) -> str | None:
    """The part a dotted module name belongs to (None: the root package, or not ours)."""
    names = module.split(".")
    if names[0] != "scorewatch" or len(names) < 2:
        return None
    return names[1].removesuffix(".py")


def imports(path: Path, root: Path = SRC) -> set[str]:
    """Every scorewatch module (or module.name) ``path``, a module under ``root``, imports."""
    package = ".".join(("scorewatch", *path.relative_to(root).with_suffix("").parts))
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this file is in
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def edges(root: Path = SRC) -> dict[tuple[str, str], list[str]]:
    """(importing part, imported part) -> the files that make the edge, for the package at ``root``."""
    parts = {path.name.removesuffix(".py") for path in root.iterdir() if path.suffix == ".py" or path.is_dir()}
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        source = part_of(".".join(("scorewatch", *path.relative_to(root).parts)))
        if source in (None, "__init__"):
            continue
        for module in imports(path, root):
            target = part_of(module)
            if target is not None and target in parts and target != source and target != "__init__":
                found[(source, target)].append(str(path.relative_to(root)))
    return found


def cycles(graph: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one part (Tarjan's algorithm)."""
    successors: dict[str, list[str]] = defaultdict(list)
    for source, target in graph:
        successors[source].append(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in successors[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in list(successors):
        if node not in index:
            visit(node)
    return groups


def test_no_package_imports_one_that_imports_it_back():
    graph = edges()
    found = cycles(graph)
    detail = [f"{a} -> {b}: {', '.join(files)}" for (a, b), files in sorted(graph.items())
              if any(a in group and b in group for group in found)]
    assert found == [], "import cycles between packages:\n" + "\n".join(detail)


def test_telemetry_never_imports_scoring():
    assert ("telemetry", "scoring") not in edges()
    assert ("scoring", "telemetry") in edges()  # the seam's one direction


def test_the_check_sees_a_cycle(tmp_path):
    # A package where one part imports another at module level and the other imports it back in a function.
    (tmp_path / "scoring").mkdir()
    (tmp_path / "telemetry").mkdir()
    (tmp_path / "errors.py").write_text("")
    (tmp_path / "scoring" / "monitor.py").write_text("from scorewatch.telemetry.context import Operation\n")
    (tmp_path / "telemetry" / "monitor.py").write_text(
        "from .. import errors\n\ndef load():\n    from scorewatch.scoring import monitor\n")
    graph = edges(tmp_path)
    assert graph[("telemetry", "scoring")] == ["telemetry/monitor.py"] and ("telemetry", "errors") in graph
    assert cycles(graph) == [["scoring", "telemetry"]]
