"""The sandbox: inside, the system resolver asks our DNS server on 127.0.0.53:53; the host's resolv.conf is
untouched; nothing started inside outlives it; it works for an ordinary user through a user namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.local.sandbox import (
    MARKER,
    PROJECT_ROOT,
    SandboxError,
    SandboxTimeout,
    available,
    call_inside,
    leftover_processes,
    run_inside,
)

ok, reason = available()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ok, reason=f"sandbox unavailable: {reason}"),
    pytest.mark.timeout(60),
]


# -- inside the sandbox ---------------------------------------------------------------------------
def resolve_inside(name: str, address: str) -> dict[str, Any]:
    """Inside: a zone with ``name`` A ``address`` served on 127.0.0.53:53; look it up as any program would."""
    import socket

    import boto3
    from moto import mock_aws

    from infra.local.dns import serve

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    with mock_aws():
        route53 = boto3.client("route53")
        zone = route53.create_hosted_zone(Name="example.com", CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
        record = {"Name": name, "Type": "A", "TTL": 30, "ResourceRecords": [{"Value": address}]}
        route53.change_resource_record_sets(
            HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]}
        )
        with serve(route53, zone, address="127.0.0.53", port=53):
            infos = socket.getaddrinfo(name, 2379, socket.AF_INET, socket.SOCK_STREAM)
            getent = subprocess.run(["getent", "hosts", name], capture_output=True, text=True, timeout=10)
            missing = subprocess.run(["getent", "hosts", "missing.example.com"], capture_output=True, timeout=10)
    return {
        "resolv.conf": Path("/etc/resolv.conf").read_text(),
        "getaddrinfo": sorted({info[4][0] for info in infos}),
        "getent": getent.stdout.split(),
        "getent_missing_status": missing.returncode,
        "pid": os.getpid(),
    }


def fail_inside(message: str) -> None:
    raise ValueError(message)


# -- the tests (outside) ----------------------------------------------------------------------------
def test_system_resolver_inside_asks_our_dns_server_and_host_resolv_conf_is_untouched() -> None:
    host_before = Path("/etc/resolv.conf").read_bytes()

    result = call_inside(resolve_inside, {"name": "db.example.com", "address": "127.0.0.9"}, timeout=45)

    assert "nameserver 127.0.0.53" in result["resolv.conf"]
    assert result["getaddrinfo"] == ["127.0.0.9"]
    assert result["getent"] == ["127.0.0.9", "db.example.com"]
    assert result["getent_missing_status"] == 2  # getent: key not found (our NXDOMAIN)
    assert Path("/etc/resolv.conf").read_bytes() == host_before


def test_programs_inside_run_as_pid_namespace_init_on_loopback_only() -> None:
    seen = call_inside("infra.local.sandbox:describe", timeout=30)

    assert seen["interfaces"].split()[0] == "lo"  # the only interface
    assert seen["port53"] is True
    if "PID" in reason:
        assert seen["pid"] == 1


def test_no_process_outlives_the_sandbox_even_one_that_left_the_process_group() -> None:
    sandbox_id = uuid.uuid4().hex
    # setsid takes the sleeper out of the sandbox's process group: only the PID namespace (or the marker
    # sweep where there is none) can catch it.
    script = "setsid sleep 300 & sleep 300 & echo started"

    code = run_inside(["sh", "-c", script], sandbox_id=sandbox_id, timeout=10, stdout=subprocess.DEVNULL)

    assert code == 0
    assert leftover_processes(sandbox_id) == []


def test_a_sandbox_past_its_timeout_is_killed_whole() -> None:
    sandbox_id = uuid.uuid4().hex
    started = time.monotonic()

    with pytest.raises(SandboxTimeout):
        run_inside(["sh", "-c", "sleep 300 & sleep 300"], sandbox_id=sandbox_id, timeout=0.5)

    assert time.monotonic() - started < 5
    assert leftover_processes(sandbox_id) == []


def test_an_exception_inside_is_raised_outside_with_its_traceback() -> None:
    with pytest.raises(SandboxError, match="ValueError: the zone is on fire"):
        call_inside(fail_inside, {"message": "the zone is on fire"}, timeout=30)


def _nobody_can_read(path: str) -> bool:
    probe = subprocess.run(
        ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "sh", "-c", 'test -r "$0" -a -x "$0"',
         path],
        capture_output=True, timeout=10,
    )  # fmt: skip
    return probe.returncode == 0


def _python_for_nobody() -> str | None:
    """A Python the user nobody can execute (the venv's may live in root's unreadable home directory)."""
    for candidate in (os.path.realpath(sys.executable), shutil.which("python3") or "", "/usr/bin/python3"):
        if not candidate:
            continue
        # Through sh: setpriv itself can start a program in a directory nobody may enter (seen here with
        # /root/.pyenv), which would make the probe pass and the real run fail.
        probe = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "sh", "-c",
             'exec "$0" -c "import sys; print(sys.version_info[:2])"', candidate],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        if probe.returncode == 0 and probe.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    return None


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_an_ordinary_user_gets_the_same_sandbox_through_a_user_namespace() -> None:
    python = _python_for_nobody()
    if python is None:
        pytest.skip("no Python of this version that the user nobody can execute")
    site = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    # The clone and the venv may sit where nobody cannot reach them (root's home, a 750 home, mktemp -d):
    # then the child sees them through bind mounts under a directory anyone may enter, in a mount
    # namespace of its own (the host's mounts are never touched).
    sources = [str(PROJECT_ROOT), *site]
    hidden = [p for p in sources if not _nobody_can_read(p)]
    view = Path(tempfile.mkdtemp(prefix="sandbox-view-"))
    view.chmod(0o755)
    mounts = {p: (str(view / str(n)) if p in hidden else p) for n, p in enumerate(sources)}
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/tmp",
        # The project's dependencies, readable by anyone here, even if the venv's interpreter is not.
        "PYTHONPATH": os.pathsep.join(mounts[p] for p in sources),
    }
    code = (
        "import json; from infra.local.sandbox import available, call_inside; "
        "print(json.dumps([available(), call_inside('tests.e2e.test_sandbox:resolve_inside', "
        "{'name': 'db.example.com', 'address': '127.0.0.9'}, timeout=45)]))"
    )
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", python, "-c", code]
    if hidden:
        binds = " && ".join(f"mkdir -p {mounts[p]} && mount --bind {p} {mounts[p]}" for p in hidden)
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{binds} && exec "$@"', "sh", *nobody]
    else:
        argv = nobody
    try:
        done = subprocess.run(argv, env=env, cwd="/tmp", capture_output=True, text=True, timeout=55)
    finally:
        shutil.rmtree(view, ignore_errors=True)
    if done.returncode != 0 and "cannot create namespaces" in done.stderr:
        pytest.skip(f"unprivileged user namespaces are disabled here: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    (ok_nobody, how), result = json.loads(done.stdout.strip().splitlines()[-1])
    assert ok_nobody and how.startswith("unprivileged")
    assert result["getaddrinfo"] == ["127.0.0.9"]
    assert result["getent"] == ["127.0.0.9", "db.example.com"]
    assert os.environ.get(MARKER) is None  # the test runner itself was never inside a sandbox
