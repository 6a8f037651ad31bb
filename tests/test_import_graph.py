"""The layout's one rule, checked on the source: every import points down, and no module imports itself
back through others.

Floors: faces (0) <- vaegan, classifier (1, never each other) <- ablation (2) <- scripts (3). Both
module-level and function-level imports count (a lazy import is still an edge); imports under
`if TYPE_CHECKING:` do not, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLOORS = {"faces": 0, "vaegan": 1, "classifier": 1, "ablation": 2, "scripts": 3}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {_module_name(path): path for package in FLOORS for path in sorted((REPO / package).rglob("*.py"))}


def _runtime_nodes(tree: ast.AST):
    """Every node except the bodies of `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if test is not None and "TYPE_CHECKING" in ast.unparse(test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (a `from pkg import sub` of a submodule names the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = ".".join(p for p in (base if node.level else "", node.module or "") if p)
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
    result = set()
    for imported in found:
        while imported and imported not in modules:  # `import faces.io.x` -> the deepest project module
            imported = imported.rpartition(".")[0]
        if imported and imported != name:
            result.add(imported)
    return result


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "classifier.backbones" in graph  # the walk found the project
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_every_cross_package_import_points_down() -> None:
    upward = []
    for name, imported in import_graph().items():
        here = name.partition(".")[0]
        for other in imported:
            there = other.partition(".")[0]
            if there != here and FLOORS[there] >= FLOORS[here]:
                upward.append(f"{name} imports {other} ({here} is floor {FLOORS[here]}, {there} floor {FLOORS[there]})")
    assert not upward, "\n".join(sorted(upward))


def test_the_checker_sees_function_level_imports_and_cycles(tmp_path: Path) -> None:
    # The checks above pass only if they can fail: a lazy import inside a function is an edge.
    modules = {"faces.a": tmp_path / "a.py", "faces.b": tmp_path / "b.py"}
    modules["faces.a"].write_text("from . import b\n")
    modules["faces.b"].write_text("def f():\n    from .a import g\n    return g\n")
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph == {"faces.a": {"faces.b"}, "faces.b": {"faces.a"}}
    assert find_cycle(graph) == ["faces.a", "faces.b", "faces.a"]
