"""Issue 11: ``infra/local`` has no import cycle — the installers reach the running emulator through
``infra.local.state``, never by importing ``LocalAWS``'s module (``aws.py`` imports them, one way)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[2] / "infra" / "local"
INSTALLERS = ["autoscaling", "delivery", "faults", "refresh", "route53", "secrets", "state"]


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
    imports = runtime_imports(LOCAL / f"{name}.py")
    assert "infra.local.aws" not in imports, f"{name}.py imports infra.local.aws at run time"


def test_aws_imports_its_installers_at_module_level() -> None:
    imports = runtime_imports(LOCAL / "aws.py")
    assert {f"infra.local.{n}" for n in INSTALLERS} <= imports
