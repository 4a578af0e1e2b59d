"""Copy etcd-bootstrap.sh into etcd-cluster.yaml's user data (the block between the BEGIN/END comments).

User data cannot fetch the script from this repository, so the template carries a copy;
``python infra/aws/bootstrap/embed.py`` refreshes it (``--check``: fail when stale, run by ``make lint``) and
``tests/aws/test_bootstrap.py`` fails when the copy is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "etcd-bootstrap.sh"
TEMPLATE = HERE.parent / "etcd-cluster.yaml"
_BLOCK = re.compile(
    r"(?P<head>^(?P<indent> *)# BEGIN etcd-bootstrap\.sh[^\n]*\n(?P=indent)- \|\n)"
    r"(?P<body>.*?)"
    r"(?P<tail>^(?P=indent)# END etcd-bootstrap\.sh)",
    re.M | re.S,
)


def stripped(script: str) -> str:
    """The script without its full-line comments and blank lines (EC2 takes 16 KB of user data; the commented
    source is the documentation). The shebang stays, and a line saying where the commented source is."""
    lines = script.splitlines(keepends=True)
    kept = [lines[0], "# etcd-bootstrap.sh without its comments: the source is infra/aws/bootstrap/etcd-bootstrap.sh\n"]
    kept += [line for line in lines[1:] if line.strip() and not line.lstrip().startswith("#")]
    return "".join(kept)


def render(template: str, script: str) -> str:
    """``template`` with the block between the markers replaced by ``script`` as a YAML literal."""
    match = _BLOCK.search(template)
    if not match:
        raise ValueError(f"{TEMPLATE.name}: no '# BEGIN etcd-bootstrap.sh' ... '# END' block found")
    pad = match["indent"] + "  "
    body = "".join(pad + line if line.strip() else line for line in script.splitlines(keepends=True))
    return template[: match.start("body")] + body + template[match.start("tail") :]


def main(argv: list[str]) -> int:
    template = TEMPLATE.read_text()
    updated = render(template, stripped(SCRIPT.read_text()))
    if "--check" in argv:
        if updated != template:
            print(
                f"{TEMPLATE} carries a stale copy of {SCRIPT.name}: run python {Path(__file__).name}", file=sys.stderr
            )
            return 1
        return 0
    if updated != template:
        TEMPLATE.write_text(updated)
        print(f"updated {TEMPLATE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
