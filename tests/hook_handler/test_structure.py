"""The package's shape, checked from the source: short functions, no module reaching into another's private names,
no import circle, and the Lambda package never importing the emulator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "hook_handler"
MAX_FUNCTION_LINES = 60


def _sources(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) for every import in ``path``, TYPE_CHECKING blocks included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
    return out


def test_no_function_in_the_package_is_longer_than_the_limit() -> None:
    long = []
    for path in _sources("hook_handler"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("top", ["hook_handler", "infra", "tests"])
def test_no_module_imports_another_modules_private_name(top: str) -> None:
    found = []
    for path in _sources(top):
        siblings = {p.stem for p in path.parent.glob("*.py")}
        for module, names, line in _imports(path):
            if module.split(".")[0] not in {"hook_handler", "infra", "tests", *siblings}:
                continue  # another project's layout is its own business
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [p for p in module.split(".") if p.startswith("_") and not p.startswith("__")]
            if private:
                found.append(f"{path.relative_to(ROOT)}:{line} from {module} import {', '.join(private)}")
    assert not found, f"private names imported across modules: {found}"


def test_the_package_has_no_import_circle() -> None:
    graph: dict[str, set[str]] = {}
    paths = _sources("hook_handler")
    modules = {_module_name(p) for p in paths}
    for path in paths:
        deps: set[str] = set()
        for module, names, _ in _imports(path):
            deps |= {f"{module}.{n}" for n in names if f"{module}.{n}" in modules}
            deps |= {module} if module in modules else set()
        graph[_module_name(path)] = deps - {_module_name(path)}
    # A package's __init__ re-exporting its modules is not a circle through them.
    packages = {m for m in modules if (ROOT / m.replace(".", "/") / "__init__.py").exists()}
    for pkg in packages:
        graph[pkg] = set()
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import circles: {cycles}"


def test_the_lambda_package_never_imports_the_emulator_or_the_tests() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _sources("hook_handler")
        for module, _, line in _imports(path)
        if module.split(".")[0] in ("infra", "tests")
    ]
    assert not bad, bad
