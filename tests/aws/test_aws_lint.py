"""The templates and the bootstrap script pass the linters `make lint` runs (cfn-lint, checkov, shellcheck)."""

from __future__ import annotations

import json
import subprocess

import pytest
from aws_helpers import AWS_DIR, BOOTSTRAP, CLUSTER, COORDINATOR, tool

TEMPLATES = [COORDINATOR, CLUSTER]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_reports_nothing(template):
    cfn_lint = tool("cfn-lint")
    if not cfn_lint:
        pytest.skip("cfn-lint is not installed (make setup installs it)")
    result = subprocess.run([cfn_lint, str(template)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_checkov_passes_and_every_skip_has_a_reason(template):
    checkov = tool("checkov")
    if not checkov:
        pytest.skip("checkov is not installed (make setup installs it)")
    result = subprocess.run(
        [checkov, "-f", str(template), "--framework", "cloudformation", "--skip-download", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=AWS_DIR,
    )
    report = json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else {}
    failed = [f"{c['check_id']} {c['resource']}" for c in report.get("results", {}).get("failed_checks", [])]
    assert result.returncode == 0 and not failed, failed or result.stdout[-2000:] + result.stderr[-2000:]
    for check in report.get("results", {}).get("skipped_checks", []):
        assert len((check.get("check_result", {}).get("suppress_comment") or "").strip()) > 10, check["check_id"]


def test_bootstrap_script_is_shellcheck_clean():
    shellcheck = tool("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck is not installed (make setup installs it: apt-get install shellcheck)")
    result = subprocess.run([shellcheck, "-x", str(BOOTSTRAP)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
