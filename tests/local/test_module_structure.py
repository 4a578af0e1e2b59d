"""``infra/local`` has no import cycle, type-only imports included, and the installers reach the running emulator
through ``infra.local.state``, never by importing ``LocalAWS``'s module (``aws.py`` imports them, one way)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[2] / "infra" / "local"
INSTALLERS = ["autoscaling", "delivery", "faults", "refresh", "route53", "secrets", "state"]


def sources(name: str) -> list[Path]:
    """The files of ``infra.local.<name>``: one module, or every module of a package."""
    package = LOCAL / name
    return sorted(package.rglob("*.py")) if package.is_dir() else [LOCAL / f"{name}.py"]


def runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports when it runs (``if TYPE_CHECKING:`` blocks left out), function bodies included."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


@pytest.mark.parametrize("name", INSTALLERS)
def test_an_installer_never_imports_the_localaws_module(name: str) -> None:
    for path in sources(name):
        imports = runtime_imports(path)
        assert "infra.local.aws" not in imports, f"{path.relative_to(LOCAL)} imports infra.local.aws at run time"


def test_aws_imports_its_installers_at_module_level() -> None:
    imports = runtime_imports(LOCAL / "aws.py")
    assert {f"infra.local.{n}" for n in INSTALLERS} <= imports


def test_localaws_has_everything_the_installers_read_of_an_account() -> None:
    """The installers type the emulator as ``account.Account``: a ``LocalAWS`` must be one."""
    from infra.local.account import Account
    from infra.local.aws import LocalAWS

    declared = [name for name in dir(Account) if not name.startswith("_")] + list(Account.__annotations__)
    with LocalAWS() as aws:
        missing = sorted({name for name in declared if not hasattr(aws, name)})
    assert len(declared) > 30
    assert missing == [], f"LocalAWS lacks {missing}, which account.Account declares"


# -- the import graph: every import counts (TYPE_CHECKING blocks and function bodies too) --------------------------
def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``root`` (the package ``package``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Which modules of ``package`` each of its modules imports, from the source with ``ast``: every import
    statement anywhere in the file. ``from p import n`` is an edge to ``p.n`` when that is a module, else to ``p``."""
    modules = module_files(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a non-module: its nearest module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for child in sorted(graph.get(node, ())):
            cycle = visit(child, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_infra_local_has_no_import_cycle_type_only_imports_included() -> None:
    graph = import_graph(LOCAL, "infra.local")
    assert graph.get("infra.local.aws"), "the graph read no module of infra/local"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in infra/local: " + " -> ".join(cycle or [])


def test_the_graph_sees_a_cycle_made_only_of_type_checking_imports(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from pkg.sub import b\n")
    (tmp_path / "sub" / "__init__.py").write_text("")
    (tmp_path / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import C\n"
    )
    (tmp_path / "c.py").write_text("def f():\n    import pkg.a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (tmp_path / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None
