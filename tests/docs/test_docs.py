"""The front page and docs/ against the code: generated tables equal their sources, every alarm and setting is
documented, links resolve, the pages speak of the product (no work log), and the README stays a front page."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from hook_handler.settings import SETTINGS_SPEC

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]
TEMPLATES = [ROOT / "infra" / "aws" / "coordinator.yaml", ROOT / "infra" / "aws" / "etcd-cluster.yaml"]


def generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by their first cell (backticks stripped)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def template(path: Path) -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(path.read_text(), Loader=Loader)


# -- the front page -------------------------------------------------------------------------------------------------
def test_the_readme_is_a_front_page_of_at_most_200_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    prose = [line for line in lines if not line.startswith(("    ", "i-", "|", "INSTANCE", "record ", "etcd: "))]
    assert all(len(line) <= 120 for line in prose), [line for line in prose if len(line) > 120]


def test_the_readme_links_every_docs_page():
    text = README.read_text()
    for page in sorted(DOCS.glob("*.md")):
        assert f"docs/{page.name}" in text, f"README does not link docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_speak_of_the_product_not_of_the_work(page):
    text = page.read_text()
    for pattern in (r"\bissue\s+#?\d+", r"\bsession\s+\d+", r"state of the work"):
        found = re.findall(pattern, text, re.IGNORECASE)
        assert not found, f"{page.name}: {found}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: link to {target} (no {file})"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", file.read_text(), re.MULTILINE)
            assert anchor in {_slug(h) for h in headings}, f"{page.name}: no heading #{anchor} in {file.name}"


# -- generated parts --------------------------------------------------------------------------------------------------
def test_every_generated_table_equals_its_source():
    """docs/settings.md from SETTINGS_SPEC, docs/deploy.md from the templates: `make docs` rewrites them."""
    assert generate().stale() == []


def test_the_settings_reference_lists_every_setting_with_its_default_and_meaning():
    rows = table_rows((DOCS / "settings.md").read_text())
    assert list(rows) == [s.name for s in SETTINGS_SPEC]
    for spec in SETTINGS_SPEC:
        default = "*required*" if spec.required else (f"`{spec.default}`" if spec.default else "(empty)")
        assert rows[spec.name][:2] == [default, spec.doc.replace("|", "\\|")], spec.name


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_the_deploy_page_lists_every_template_parameter_with_its_default(path):
    text = (DOCS / "deploy.md").read_text()
    rows = table_rows(generate().block(text, path.stem.replace("etcd-", "") + "-parameters"))
    parameters = template(path)["Parameters"]
    assert list(rows) == list(parameters)
    for name, spec in parameters.items():
        default = rows[name][1]
        if "Default" not in spec:
            assert default == "*required*", name
        elif spec["Default"] in ("", None):
            assert default == "(empty)", name
        else:
            assert default == f"`{spec['Default']}`", name


def test_make_bench_writes_its_report_into_the_benchmarks_page(tmp_path, monkeypatch):
    gen = generate()
    page = tmp_path / "benchmarks.md"
    page.write_text((DOCS / "benchmarks.md").read_text())
    report = ROOT / "bench-results-test-report.md"
    report.write_text("## Benchmark\n\n`make bench` (seed 7). a table\n\nRun time: 1 s.\n")
    try:
        monkeypatch.setattr(gen, "DOCS", tmp_path)
        assert gen.main(["--bench", str(report)]) == 0
    finally:
        report.unlink()
    block = gen.block(page.read_text(), "benchmarks")
    assert block.startswith("Written by `make bench` from `bench-results-test-report.md`")
    assert block.endswith("`make bench` (seed 7). a table\n\nRun time: 1 s.")
    assert page.read_text().startswith("# Benchmarks\n") and "## Reading the figures" in page.read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "docs/generate.py --bench bench-results/bench.md" in makefile


# -- operations ------------------------------------------------------------------------------------------------------
def test_every_alarm_of_the_templates_is_documented_with_what_to_do():
    alarms = {
        name
        for path in TEMPLATES
        for name, resource in template(path)["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    text = (DOCS / "operations.md").read_text()
    section = text.split("## Alarms, and what to do", 1)[1].split("\n## ", 1)[0]
    rows = {name.split()[0].strip("`"): cells for name, cells in table_rows(section).items()}
    assert set(rows) == alarms, "docs/operations.md's alarm table and the templates' alarms differ"
    for name, (fires, what_to_do) in rows.items():
        assert len(fires) > 20 and len(what_to_do) > 40, name


def test_the_documented_exit_statuses_are_the_command_lines():
    from hook_handler.__main__ import EXIT_AWS, EXIT_ETCD, EXIT_REFUSED, EXIT_SETTINGS, EXIT_STATUS_HELP

    text = (DOCS / "operations.md").read_text()
    rows = {line.split("|")[1].strip() for line in text.splitlines() if re.match(r"\| \d \|", line)}
    assert rows == {"0", str(EXIT_AWS), str(EXIT_SETTINGS), str(EXIT_ETCD), str(EXIT_REFUSED)}
    assert all(f"  {code}  " in EXIT_STATUS_HELP for code in rows)


def test_make_help_lists_every_target():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY: (.+)$", makefile, re.MULTILINE).group(1).split()
    shown = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = {line.split()[1] for line in shown.splitlines() if line.startswith("make ")}
    assert set(phony) - {"help"} <= listed, set(phony) - {"help"} - listed


# -- what the README promised before it moved to docs/ ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("page", "promise"),
    [
        ("how-it-works.md", "hook_handler.app.lambda_handler"),
        ("how-it-works.md", "hook_handler.app.termination_policy_handler"),
        ("how-it-works.md", "## Event sources"),
        ("how-it-works.md", '`{"action": "reconcile"}`'),
        ("how-it-works.md", "## Failure behaviour"),
        ("how-it-works.md", "## Calls per lifecycle event"),
        ("operations.md", "python -m hook_handler status --json"),
        ("operations.md", "python -m hook_handler reconcile --dry-run"),
        ("tls.md", "python -m hook_handler pki init"),
        ("deploy.md", "NOTIFY=EventBridge|EventBridgeSQS|SNS"),
        ("emulator.md", "python -m infra.local serve"),
        ("emulator.md", "/_local/calls"),
        ("guarantees.md", "## Soak runs"),
        ("demo.md", "python -m infra.local.sandbox check"),
    ],
)
def test_what_the_readme_promised_is_kept_in_docs(page, promise):
    assert promise in (DOCS / page).read_text()
