"""Copy the instance scripts (etcd-bootstrap.sh, and etcd-restore.sh, which it sources for a restore) into
etcd-cluster.yaml's user data: each between its ``# BEGIN <name>`` and ``# END <name>`` comments.

User data cannot fetch the scripts from this repository, so the template carries a copy; EC2 takes 16 KB of user
data, so each copy is the script without its comments, gzip-compressed and base64-encoded (the user data writes it
with ``base64 -d | gunzip``; the commented source here is the documentation).
``python infra/aws/bootstrap/embed.py`` refreshes the copies (``--check``: fail when one is stale, run by
``make lint``) and ``tests/aws/test_aws_bootstrap.py`` fails when a copy is stale or does not run as its source.
"""

from __future__ import annotations

import base64
import gzip
import re
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "etcd-bootstrap.sh"
RESTORE = HERE / "etcd-restore.sh"
SCRIPTS = (SCRIPT, RESTORE)
TEMPLATE = HERE.parent / "etcd-cluster.yaml"


def _block(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(?P<head>^(?P<indent> *)# BEGIN {re.escape(name)}[^\n]*\n(?P=indent)- \|\n)"
        r"(?P<body>.*?)"
        rf"(?P<tail>^(?P=indent)# END {re.escape(name)})",
        re.M | re.S,
    )


def stripped(script: str, name: str = SCRIPT.name) -> str:
    """The script ``name`` without its full-line comments and blank lines. The shebang stays, and a line saying
    where the commented source is; ``# shellcheck`` directives go with the other comments."""
    lines = script.splitlines(keepends=True)
    kept = [lines[0], f"# {name} without its comments: the source is infra/aws/bootstrap/{name}\n"]
    kept += [line for line in lines[1:] if line.strip() and not line.lstrip().startswith("#")]
    return "".join(kept)


def encoded(script: str, name: str = SCRIPT.name) -> str:
    """``stripped(script, name)`` gzip-compressed (no name, no time: the same script gives the same bytes) and base64
    encoded in lines of 76, as ``base64 -d | gunzip`` reads it."""
    packed = gzip.compress(stripped(script, name).encode(), compresslevel=9, mtime=0)
    return "\n".join(textwrap.wrap(base64.b64encode(packed).decode(), 76)) + "\n"


def embedded(template: str, name: str) -> str:
    """The script the template's block ``name`` carries, decoded (what an instance writes to disk)."""
    match = _block(name).search(template)
    if not match:
        raise ValueError(f"{TEMPLATE.name}: no '# BEGIN {name}' ... '# END {name}' block found")
    return gzip.decompress(base64.b64decode("".join(match["body"].split()))).decode()


def render(template: str, name: str, script: str) -> str:
    """``template`` with the block ``name`` replaced by ``encoded(script)`` as a YAML literal."""
    match = _block(name).search(template)
    if not match:
        raise ValueError(f"{TEMPLATE.name}: no '# BEGIN {name}' ... '# END {name}' block found")
    pad = match["indent"] + "  "
    body = "".join(pad + line for line in encoded(script, name).splitlines(keepends=True))
    return template[: match.start("body")] + body + template[match.start("tail") :]


def stale(template: str) -> list[str]:
    """The scripts whose copy in ``template`` is not the script without its comments."""
    out = []
    for path in SCRIPTS:
        try:
            current = embedded(template, path.name) == stripped(path.read_text(), path.name)
        except (ValueError, OSError, EOFError, gzip.BadGzipFile):
            current = False
        if not current:
            out.append(path.name)
    return out


def main(argv: list[str]) -> int:
    template = TEMPLATE.read_text()
    behind = stale(template)
    if "--check" in argv:
        for name in behind:
            print(f"{TEMPLATE} carries a stale copy of {name}: run python {Path(__file__).name}", file=sys.stderr)
        return 1 if behind else 0
    updated = template
    for path in SCRIPTS:
        if path.name in behind:
            updated = render(updated, path.name, path.read_text())
    if updated != template:
        TEMPLATE.write_text(updated)
        print(f"updated {TEMPLATE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
