"""Imports run one way: between the packages (``web → scheduler → executor``), and
within the executor (no cycle, and no import tucked inside a function to dodge one)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("executor", "scheduler", "web")
#: Which packages each package may import. The CLI (``scheduler.cli``) is the
#: application's entry point: ``gnomon up`` puts the scheduler and the dashboard together.
ALLOWED = {
    "executor": {"executor"},
    "scheduler": {"executor", "scheduler"},
    "scheduler.cli": set(PACKAGES),
    "web": set(PACKAGES),
}
#: The executor's core, lowest first: each may import only those before it.
CORE = [
    "executor.dag",
    "executor.stages",
    "executor.graph_runner",
    "executor.worker",
    "executor.manager",
    "executor.workflow",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / package).rglob("*.py"))}


ALL = {name: path for package in PACKAGES for name, path in modules(package).items()}


def imported(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The project modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.level or node.module is None:
        raise AssertionError(f"relative import at line {node.lineno}: use absolute imports")
    else:
        names = [
            f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in ALL else node.module
            for alias in node.names
        ]
    yield from (name for name in names if name.split(".")[0] in PACKAGES)


def imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(module, line, nested) for each project import in ``path``; nested means inside
    a function, a class or an ``if TYPE_CHECKING:`` block."""

    def walk(node: ast.AST, nested: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for name in imported(child):
                    yield name, child.lineno, nested
            inner = nested or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If)
            )
            yield from walk(child, inner)

    yield from walk(ast.parse(path.read_text(), str(path)), False)


def graph(package: str) -> dict[str, set[str]]:
    return {
        name: {target for target, _, _ in imports(path) if target.startswith(package + ".")}
        for name, path in modules(package).items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_packages_import_one_way():
    wrong = [
        f"{name}:{line} imports {target}"
        for name, path in ALL.items()
        for target, line, _ in imports(path)
        if target.split(".")[0] not in ALLOWED[_layer(name)]
    ]
    assert wrong == []


def _layer(name: str) -> str:
    return "scheduler.cli" if name.startswith("scheduler.cli") else name.split(".")[0]


def test_the_executor_has_no_import_cycle():
    assert find_cycle(graph("executor")) is None


def test_the_executor_imports_nothing_of_its_own_inside_a_function():
    nested = [
        f"{name}:{line} imports {target}"
        for name, path in modules("executor").items()
        for target, line, inside in imports(path)
        if inside and target.startswith("executor")
    ]
    assert nested == []


def test_the_executor_core_is_layered():
    edges = graph("executor")
    upward = [
        f"{lower} imports {higher}"
        for i, lower in enumerate(CORE)
        for higher in CORE[i + 1 :]
        if higher in edges[lower]
    ]
    assert upward == []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
