"""Paths, template loading and tool lookup shared by the infra/aws tests (imported as ``aws_helpers``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AWS_DIR = ROOT / "infra" / "aws"
COORDINATOR = AWS_DIR / "coordinator.yaml"
CLUSTER = AWS_DIR / "etcd-cluster.yaml"
BOOTSTRAP = AWS_DIR / "bootstrap" / "etcd-bootstrap.sh"
VENV_BIN = ROOT / ".venv" / "bin"


def load_template(path: Path) -> dict[str, Any]:
    """The template as CloudFormation sees it (short-form tags like ``!Ref`` expanded)."""
    from cfnlint.decode import decode

    template, problems = decode(str(path))
    assert not problems, f"{path.name} does not parse: {problems}"
    return template


def tool(name: str) -> str | None:
    """Path of a command-line tool: the project's virtualenv first, then PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)
