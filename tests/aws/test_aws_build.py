"""`make build`'s zip is reproducible (same inputs, same bytes) and carries what the runtime lacks."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from aws_helpers import AWS_DIR, ROOT

sys.path.insert(0, str(AWS_DIR))
from build_zip import runtime_python

# Both tests on one worker and one shared build: two builds in all, not three (each is pip runs and a compile).
pytestmark = pytest.mark.xdist_group("zip-build")


def _build(output) -> str:
    subprocess.run(
        [sys.executable, str(AWS_DIR / "build_zip.py"), "--output", str(output)],
        check=True, cwd=ROOT, capture_output=True, timeout=300,
    )  # fmt: skip
    return hashlib.sha256(output.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """``make build``'s zip, built once for this module's tests: (path, sha256). Tests only read it."""
    output = tmp_path_factory.mktemp("build") / "coordinator.zip"
    return output, _build(output)


def test_two_builds_give_the_same_bytes_and_the_zip_holds_the_runtime_dependencies(tmp_path, built):
    (first, digest), second = built, tmp_path / "b" / "coordinator.zip"
    assert digest == _build(second)
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        infos = zf.infolist()
    assert names == sorted(names)
    assert "hook_handler/app.py" in names or "hook_handler/__init__.py" in names
    tops = {n.split("/")[0] for n in names}
    assert {"aws_lambda_powertools", "tenacity", "etcd3gw", "requests", "cryptography", "cffi"} <= tops
    assert not tops & {"boto3", "botocore", "bin"}  # the runtime has the SDK; no console scripts
    # Bytecode only for the runtime (3.12), only beside its source (the build machine's own .pyc never goes in)
    pyc = [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert all(n.endswith(".cpython-312.pyc") and "/__pycache__/" in n for n in pyc)
    if runtime_python() is not None:
        sources = {n for n in names if n.endswith(".py")}
        compiled = {n.replace("/__pycache__/", "/").replace(".cpython-312.pyc", ".py") for n in pyc}
        assert compiled <= sources and "hook_handler/app.py" in compiled
        assert len(compiled) >= 0.95 * len(sources)  # a few files are not valid 3.12 (test fixtures of deps)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert first.stat().st_size < 50 * 1024 * 1024  # Lambda's limit for a direct upload


@pytest.mark.skipif(runtime_python() is None, reason="no Python 3.12 here: the zip is built without bytecode")
def test_the_runtime_imports_the_zip_s_bytecode_without_compiling(tmp_path, built):
    """Issue 12 (cold start): Lambda's /var/task is read-only, so a zip without bytecode compiles every module at
    every cold start. The zip's unchecked-hash .pyc are what Python 3.12 loads: with a source made unparsable
    after the build, the module still imports (from its .pyc), with no .pyc written."""
    output, _ = built
    task = tmp_path / "task"
    with zipfile.ZipFile(output) as zf:
        zf.extractall(task)
    source = task / "hook_handler" / "srv.py"
    source.write_text("this is not python\n")
    before = sorted(p.name for p in task.rglob("*.pyc"))
    out = subprocess.run(
        [runtime_python(), "-c", "import hook_handler.srv as m; print(m.SrvValue.__name__)"],
        cwd=task, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "SrvValue"
    assert sorted(p.name for p in task.rglob("*.pyc")) == before
