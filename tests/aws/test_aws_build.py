"""`make build`'s zip is reproducible (same inputs, same bytes) and carries what the runtime lacks."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile

from aws_helpers import AWS_DIR, ROOT


def _build(output) -> str:
    subprocess.run(
        [sys.executable, str(AWS_DIR / "build_zip.py"), "--output", str(output)],
        check=True, cwd=ROOT, capture_output=True, timeout=300,
    )  # fmt: skip
    return hashlib.sha256(output.read_bytes()).hexdigest()


def test_two_builds_give_the_same_bytes_and_the_zip_holds_the_runtime_dependencies(tmp_path):
    first, second = tmp_path / "a" / "coordinator.zip", tmp_path / "b" / "coordinator.zip"
    assert _build(first) == _build(second)
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        infos = zf.infolist()
    assert names == sorted(names)
    assert "hook_handler/app.py" in names or "hook_handler/__init__.py" in names
    tops = {n.split("/")[0] for n in names}
    assert {"aws_lambda_powertools", "tenacity", "etcd3gw", "requests", "cryptography", "cffi"} <= tops
    assert not tops & {"boto3", "botocore", "bin"}  # the runtime has the SDK; no console scripts
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert first.stat().st_size < 50 * 1024 * 1024  # Lambda's limit for a direct upload
