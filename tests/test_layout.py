"""The code's shape: no import circles, imports pointing one way between packages, no overlong files.

Rules, checked over every module of `connector/`, `statemachines/` and `sync/` (the first-party packages):

- No import circles. The graph has an edge A -> B for every first-party import in A, wherever it is written:
  at the top, inside a function, or under `if TYPE_CHECKING:` (a circle hidden behind those is still a
  circle for the reader). `from pkg import name` points at `pkg.name` when that is a module, else at `pkg`.
  Importing a submodule does not count as importing its parent package's `__init__`.
- Arrows one way: `statemachines/` imports neither `connector` nor `sync`; `connector/` does not import
  `sync`.
- No file over 500 lines, unless the first paragraph of its module docstring (the text before the first blank
  line) says why, using the word "long" or "lines" (e.g. "Long because the parser's grammar reads best in one
  place."). Lines are counted as `str.splitlines()` counts them.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("connector", "statemachines", "sync")
MAX_LINES = 500
FORBIDDEN = {"statemachines": ("connector", "sync"), "connector": ("sync",)}
_REASON = re.compile(r"\b(long|lines)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: Path
    line: int


def module_files(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the packages (a package is its __init__.py)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is a first-party module, or None for a third-party import."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imported_names(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Dotted names an import statement reaches: `pkg.name` candidates for `from pkg import name`."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, node.module] if node.module else anchor)
        else:
            base = node.module or ""
        for alias in node.names:
            yield f"{base}.{alias.name}" if alias.name != "*" else base


def import_edges(root: Path, packages: Iterable[str] = PACKAGES) -> list[Edge]:
    """Every first-party import, anywhere in a module (ast.walk reaches functions and `if` blocks)."""
    modules = module_files(root, packages)
    edges = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _imported_names(node, module, is_package):
                target = _resolve(name, modules)
                if target is not None and target != module:
                    edges.append(Edge(module, target, path, node.lineno))
    return edges


def find_cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """One concrete circle (first module repeated at the end) per strongly connected group of modules."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    cycles = []
    for component in _strongly_connected(graph):
        if len(component) > 1:
            cycles.append(_cycle_through(min(component), graph, component))
    return sorted(cycles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative so a deep import chain cannot hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def _cycle_through(start: str, graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """The shortest path from `start` back to itself inside its component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is in a component but on no cycle")


def _describe(cycle: list[str], edges: list[Edge]) -> str:
    where = {(e.source, e.target): f"{e.path.relative_to(ROOT)}:{e.line}" for e in edges}
    hops = [f"{a} -> {b} ({where.get((a, b), '?')})" for a, b in itertools.pairwise(cycle)]
    return "\n    ".join(hops)


def _first_paragraph(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return docstring.split("\n\n", 1)[0]


def overlong_files(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, int]:
    """Files over MAX_LINES whose docstring's first paragraph gives no reason; relative path -> lines."""
    flagged = {}
    for path in module_files(root, packages).values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and not _REASON.search(_first_paragraph(path)):
            flagged[str(path.relative_to(root))] = lines
    return flagged


# -- the project ---------------------------------------------------------------------------------


def test_no_import_cycles() -> None:
    edges = import_edges(ROOT)
    cycles = find_cycles(edges)
    report = "\n  ".join(_describe(c, edges) for c in cycles)
    assert not cycles, f"import circles:\n  {report}"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    wrong = [
        f"{e.path.relative_to(ROOT)}:{e.line} imports {e.target}"
        for e in import_edges(ROOT)
        if e.source.split(".")[0] == package and e.target.split(".")[0] in FORBIDDEN[package]
    ]
    assert not wrong, f"{package}/ must not import {', '.join(FORBIDDEN[package])}:\n  " + "\n  ".join(wrong)


def test_no_file_over_500_lines_without_a_reason() -> None:
    flagged = overlong_files(ROOT)
    listing = "\n  ".join(f"{path}: {lines} lines" for path, lines in sorted(flagged.items()))
    assert not flagged, (
        f"over {MAX_LINES} lines with no reason in the docstring's first paragraph:\n  {listing}"
    )


# -- the checks themselves, on a small made-up tree ---------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_circle_behind_type_checking_and_a_function_import_is_found(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
            "pkg/b.py": "def f():\n    from . import c\n",
            "pkg/c.py": "import pkg.a\nimport json\n",
        },
    )
    assert find_cycles(import_edges(tmp_path, ["pkg"])) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_importing_a_submodule_is_not_importing_its_package(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.main import Main\n",
            "pkg/main.py": "from pkg import helpers\n",
            "pkg/helpers.py": "",
        },
    )
    assert find_cycles(import_edges(tmp_path, ["pkg"])) == []


def test_a_long_file_passes_only_when_its_docstring_says_why(tmp_path: Path) -> None:
    body = "x = 1\n" * MAX_LINES
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/bare.py": '"""Does things."""\n' + body,
            "pkg/excused.py": '"""Does things.\n\nLong because the grammar reads best whole."""\n' + body,
            "pkg/reasoned.py": '"""Does things; long because the grammar reads best whole."""\n' + body,
        },
    )
    flagged = overlong_files(tmp_path, ["pkg"])
    assert flagged == {str(Path("pkg/bare.py")): MAX_LINES + 1, str(Path("pkg/excused.py")): MAX_LINES + 3}
