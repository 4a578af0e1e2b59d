"""Write the generated parts of docs/: the settings reference, the templates' parameter tables, the benchmarks.

Each generated part sits between two markers in its page (``<!-- BEGIN GENERATED: name ... -->`` and
``<!-- END GENERATED: name -->``); the prose around it is written by hand. The sources:

- ``settings``: ``SETTINGS_SPEC`` in hook_handler/settings.py (docs/settings.md);
- ``coordinator-parameters``, ``cluster-parameters``: the Parameters of infra/aws/coordinator.yaml and
  infra/aws/etcd-cluster.yaml (docs/deploy.md);
- ``benchmarks``: the report ``make bench`` writes (bench-results/bench.md) (docs/benchmarks.md).

Usage:
    python docs/generate.py            # rewrite settings and parameter tables (make docs)
    python docs/generate.py --check    # exit 1 when a page differs from its source (tests/docs run this)
    python docs/generate.py --bench bench-results/bench.md   # copy a bench report in (make bench does)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
COORDINATOR_TEMPLATE = ROOT / "infra" / "aws" / "coordinator.yaml"
CLUSTER_TEMPLATE = ROOT / "infra" / "aws" / "etcd-cluster.yaml"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def settings_table() -> str:
    """Every setting of hook_handler/settings.py: name, default, meaning."""
    from hook_handler.settings import SETTINGS_SPEC

    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for spec in SETTINGS_SPEC:
        default = "*required*" if spec.required else (f"`{spec.default}`" if spec.default else "(empty)")
        rows.append(f"| `{spec.name}` | {default} | {_cell(spec.doc)} |")
    return "\n".join(rows)


def template_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """A template's Parameters section (CloudFormation's short-form tags elsewhere in the file are ignored)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(path.read_text(), Loader=Loader)["Parameters"]  # a SafeLoader subclass


def parameters_table(path: Path) -> str:
    """A template's parameters: name, type, default (required when it has none), description."""
    rows = ["| parameter | type | default | description |", "| --- | --- | --- | --- |"]
    for name, spec in template_parameters(path).items():
        if "Default" not in spec:
            default = "*required*"
        elif spec["Default"] in ("", None):
            default = "(empty)"
        else:
            default = f"`{_cell(spec['Default'])}`"
        allowed = spec.get("AllowedValues")
        description = _cell(spec.get("Description", ""))
        if allowed:
            description += f" One of: {', '.join(f'`{v}`' for v in allowed)}."
        rows.append(f"| `{name}` | {_cell(spec['Type'])} | {default} | {description.strip()} |")
    return "\n".join(rows)


def bench_report(path: Path) -> str:
    """The report ``make bench`` wrote, with where and when it was made."""
    text = path.read_text().strip()
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    text = re.sub(r"^#+ .*\n+", "", text, count=1) if text.startswith("#") else text  # the page has its own title
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return f"Written by `make bench` from `{shown}` (commit {commit}).\n\n{text}"


# page -> {block name: maker}; benchmarks is written only from a bench report (make bench)
BLOCKS: dict[str, dict[str, Callable[[], str]]] = {
    "settings.md": {"settings": settings_table},
    "deploy.md": {
        "coordinator-parameters": lambda: parameters_table(COORDINATOR_TEMPLATE),
        "cluster-parameters": lambda: parameters_table(CLUSTER_TEMPLATE),
    },
}
SOURCES = {
    "settings": "hook_handler/settings.py",
    "coordinator-parameters": "infra/aws/coordinator.yaml",
    "cluster-parameters": "infra/aws/etcd-cluster.yaml",
    "benchmarks": "make bench",
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- BEGIN GENERATED: {re.escape(name)}\b[^>]*-->\n)(.*?)(<!-- END GENERATED: {re.escape(name)} -->)",
        re.DOTALL,
    )


def block(text: str, name: str) -> str:
    """The generated part named ``name`` of a page's text (ValueError when its markers are missing)."""
    match = _pattern(name).search(text)
    if match is None:
        raise ValueError(f"no generated block {name!r} (markers <!-- BEGIN GENERATED: {name} --> ... END)")
    return match.group(2).rstrip("\n")


def replace_block(text: str, name: str, content: str) -> str:
    if _pattern(name).search(text) is None:
        raise ValueError(f"no generated block {name!r} (markers <!-- BEGIN GENERATED: {name} --> ... END)")
    return _pattern(name).sub(lambda m: m.group(1) + content + "\n" + m.group(3), text, count=1)


def stale() -> list[str]:
    """Every generated block that differs from its source, as 'page: block'."""
    out = []
    for page, blocks in BLOCKS.items():
        text = (DOCS / page).read_text()
        for name, make in blocks.items():
            if block(text, name) != make():
                out.append(f"docs/{page}: {name} (from {SOURCES[name]})")
    return out


def write() -> list[str]:
    """Rewrite every generated block from its source; the pages that changed."""
    changed = []
    for page, blocks in BLOCKS.items():
        path = DOCS / page
        text = original = path.read_text()
        for name, make in blocks.items():
            text = replace_block(text, name, make())
        if text != original:
            path.write_text(text)
            changed.append(f"docs/{page}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python docs/generate.py", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a generated block differs from its source")
    parser.add_argument("--bench", type=Path, help="copy this bench report (bench.md) into docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.check:
        differ = stale()
        for line in differ:
            print(f"out of date: {line}; run make docs", file=sys.stderr)
        return 1 if differ else 0
    if args.bench:
        page = DOCS / "benchmarks.md"
        page.write_text(replace_block(page.read_text(), "benchmarks", bench_report(args.bench.resolve())))
        print(f"wrote {page} from {args.bench}")
        return 0
    for path in write() or ["nothing: every generated block is up to date"]:
        print(f"wrote {path}" if path.startswith("docs/") else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
