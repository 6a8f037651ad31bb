"""Every function and method outside tests/ stays at most MAX_LINES long (decorators not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80
SKIP_DIRS = {"tests", ".venv", ".git", "outputs", "__pycache__"}


def _source_files() -> list[Path]:
    return sorted(
        path
        for path in ROOT.rglob("*.py")
        if not any(part in SKIP_DIRS or part.startswith(".") for part in path.relative_to(ROOT).parts[:-1])
    )


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    offenders = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_LINES:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return offenders


def test_source_files_found():
    files = {path.relative_to(ROOT).as_posix() for path in _source_files()}
    assert "vaegan/module.py" in files and "ablation/generate.py" in files


def test_no_function_over_max_lines():
    offenders = [line for path in _source_files() for line in _long_functions(path)]
    assert not offenders, f"functions over {MAX_LINES} lines (split them):\n" + "\n".join(offenders)
