"""etcd-bootstrap.sh against a fake IMDSv2 and a fake etcd: the exact etcd command line for a founding
and a joining member, the restart path, a revoked membership (WAL, no tag), the waits and their timeouts."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aws_helpers import BOOTSTRAP, CLUSTER, load_template

from infra.aws.bootstrap.embed import stripped

TOKEN = "fake-imds-token"
HANG = "<hang>"  # an answer that comes too late: the script's curl times out (IMDS_TIMEOUT)
Answer = str | int | None  # a value (200), None (404), an HTTP status, or HANG
INSTANCE = {
    "instance-id": "i-0abc123",
    "local-ipv4": "10.0.1.4",
    "local-hostname": "ip-10-0-1-4.ec2.internal",
    "placement/region": "us-east-1",
}

if not shutil.which("curl"):
    pytest.skip("curl is not installed (the bootstrap script talks to IMDS with it)", allow_module_level=True)


class FakeImds:
    """IMDSv2: PUT /latest/api/token, then GETs that carry the token. ``lifecycle`` and ``tags`` are
    lists of answers given in turn (None = 404, an int = that HTTP status, ``HANG`` = no answer in time),
    the last one repeated. ``tags/instance`` lists the keys whose last answer was a value (404 when
    ``tags_in_metadata`` is False: InstanceMetadataTags disabled)."""

    def __init__(self) -> None:
        self.lifecycle: list[Answer] = ["InService"]
        self.tags: dict[str, list[Answer]] = {"etcd-cluster-state": ["new"]}
        self.tags_in_metadata = True
        self._last: dict[str, Answer] = {}
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, token ok)
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _next(self, key: str, answers: list[Answer]) -> Answer:
        with self._lock:
            n = self._served.get(key, 0)
            self._served[key] = n + 1
            self._last[key] = answers[min(n, len(answers) - 1)]
            return self._last[key]

    def _listing(self) -> Answer:
        if not self.tags_in_metadata:
            return None
        with self._lock:
            keys = ["aws:autoscaling:groupName"]
            for key, answers in self.tags.items():
                last = self._last.get(f"tags/instance/{key}", answers[0])
                if isinstance(last, str) and last != HANG:
                    keys.append(key)
        return "\n".join(keys)

    def answer(self, path: str) -> Answer:
        prefix = "/latest/meta-data/"
        if not path.startswith(prefix):
            return None
        item = path[len(prefix) :]
        if item == "autoscaling/target-lifecycle-state":
            return self._next(item, self.lifecycle)
        if item == "tags/instance":
            return self._listing()
        if item.startswith("tags/instance/"):
            key = item.split("/", 2)[2]
            if not self.tags_in_metadata:
                return None
            return self._next(item, self.tags[key]) if key in self.tags else None
        return INSTANCE.get(item)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def _send(self, code: int, body: str = "") -> None:
                data = body.encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (a HANG answer)
                    pass

            def do_PUT(self) -> None:
                ok = self.path == "/latest/api/token" and "X-aws-ec2-metadata-token-ttl-seconds" in self.headers
                imds.requests.append(("PUT", self.path, ok))
                self._send(200, TOKEN) if ok else self._send(400)

            def do_GET(self) -> None:
                ok = self.headers.get("X-aws-ec2-metadata-token") == TOKEN
                imds.requests.append(("GET", self.path, ok))
                if not ok:  # IMDSv2 only, as the launch template requires
                    self._send(401)
                    return
                value = imds.answer(self.path)
                if value == HANG:
                    time.sleep(1.5)
                    self._send(200, "late")
                elif value is None:
                    self._send(404, "Not Found")
                elif isinstance(value, int):
                    self._send(value, "Internal Server Error")
                else:
                    self._send(200, value)

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    fake = FakeImds()
    yield fake
    fake.close()


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def fake_etcd(tmp_path: Path) -> tuple[Path, Path]:
    """An 'etcd' that writes its arguments one per line to args.txt and exits 0."""
    out = tmp_path / "args.txt"
    script = f"#!{sys.executable}\nimport sys\nopen({str(out)!r}, 'w').write('\\n'.join(sys.argv[1:]))\n"
    return _executable(tmp_path / "etcd", script), out


def run(
    imds: FakeImds, etcd: Path, tmp_path: Path, script: Path = BOOTSTRAP, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "IMDS_ENDPOINT": imds.url,
        "ETCD_DOMAIN": "example.com",
        "ETCD_BIN": str(etcd),
        "ETCD_DATA_DIR": str(tmp_path / "data"),
        "ETCD_INITIAL_CLUSTER_TOKEN": "tok-1",
        "BOOTSTRAP_POLL_INTERVAL": "0.02",
        "BOOTSTRAP_POLL_MAX": "0.05",
        "BOOTSTRAP_SRV_CHECK": "0",
        **env,
    }
    return subprocess.run(["bash", str(script)], env=environ, capture_output=True, text=True, timeout=30)


def expected_args(state: str, *extra: str) -> list[str]:
    return [
        "--name", "i-0abc123",
        "--discovery-srv", "example.com",
        *extra,
        "--initial-advertise-peer-urls", "http://ip-10-0-1-4.ec2.internal:2380",
        "--listen-peer-urls", "http://10.0.1.4:2380",
        "--listen-client-urls", "http://10.0.1.4:2379,http://127.0.0.1:2379",
        "--advertise-client-urls", "http://10.0.1.4:2379",
        "--initial-cluster-token", "tok-1",
        "--initial-cluster-state", state,
        "--data-dir", "DATA",
    ]  # fmt: skip


def etcd_args(out: Path, tmp_path: Path) -> list[str]:
    return [a.replace(str(tmp_path / "data"), "DATA") for a in out.read_text().splitlines()]


@pytest.mark.parametrize("state", ["new", "existing"])
def test_starts_etcd_with_discovery_once_in_service_and_tagged(imds, fake_etcd, tmp_path, state):
    etcd, out = fake_etcd
    imds.lifecycle = [None, "Pending:Wait", "Pending:Wait", "InService"]
    imds.tags["etcd-cluster-state"] = [None, None, state]
    result = run(imds, etcd, tmp_path)
    assert result.returncode == 0, result.stderr
    assert etcd_args(out, tmp_path) == expected_args(state)
    # Every metadata read carried the session token; it asked until each answer was there.
    assert all(ok for _, _, ok in imds.requests)
    assert imds.requests[0] == ("PUT", "/latest/api/token", True)
    paths = [p for _, p, _ in imds.requests]
    assert paths.count("/latest/meta-data/autoscaling/target-lifecycle-state") == 4
    assert paths.count("/latest/meta-data/tags/instance/etcd-cluster-state") == 3
    # The tag is read only once the instance is going InService.
    last_lifecycle = max(i for i, p in enumerate(paths) if p.endswith("target-lifecycle-state"))
    first_tag = min(i for i, p in enumerate(paths) if p.endswith("etcd-cluster-state"))
    assert last_lifecycle < first_tag


def test_discovery_srv_name_and_peer_host_template(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    result = run(imds, etcd, tmp_path, ETCD_DISCOVERY_SRV_NAME="blue", ETCD_PEER_HOST="{instance_id}.example.com")
    assert result.returncode == 0, result.stderr
    args = etcd_args(out, tmp_path)
    assert args[args.index("--discovery-srv") : args.index("--discovery-srv") + 4] == [
        "--discovery-srv", "example.com", "--discovery-srv-name", "blue",
    ]  # fmt: skip
    assert args[args.index("--initial-advertise-peer-urls") + 1] == "http://i-0abc123.example.com:2380"


def _member_data(tmp_path: Path) -> Path:
    """A data dir as a member that has joined leaves it: member/wal/*.wal and member/snap/db."""
    wal = tmp_path / "data" / "member" / "wal" / "0000000000000000-0000000000000000.wal"
    wal.parent.mkdir(parents=True)
    wal.write_bytes(b"raft log")
    (tmp_path / "data" / "member" / "snap").mkdir()
    (tmp_path / "data" / "member" / "snap" / "db").write_bytes(b"keys")
    return wal


def _kept(tmp_path: Path, wal: Path) -> bool:
    return wal.read_bytes() == b"raft log" and (tmp_path / "data" / "member" / "snap" / "db").read_bytes() == b"keys"


RESTART_ARGS = [
    "--name", "i-0abc123",
    "--initial-advertise-peer-urls", "http://ip-10-0-1-4.ec2.internal:2380",
    "--listen-peer-urls", "http://10.0.1.4:2380",
    "--listen-client-urls", "http://10.0.1.4:2379,http://127.0.0.1:2379",
    "--advertise-client-urls", "http://10.0.1.4:2379",
    "--data-dir", "DATA",
]  # fmt: skip


def test_restart_with_a_wal_in_the_data_dir_skips_discovery_and_waits_and_keeps_the_data(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    wal = _member_data(tmp_path)
    imds.lifecycle = [None]  # would time out if it waited
    imds.tags["etcd-cluster-state"] = ["existing"]  # still an admitted member
    result = run(imds, etcd, tmp_path, BOOTSTRAP_LIFECYCLE_TIMEOUT="0", BOOTSTRAP_TAG_TIMEOUT="0")
    assert result.returncode == 0, result.stderr
    paths = [p for _, p, _ in imds.requests]
    assert "/latest/meta-data/autoscaling/target-lifecycle-state" not in paths
    assert paths.count("/latest/meta-data/tags/instance/etcd-cluster-state") == 1
    assert etcd_args(out, tmp_path) == RESTART_ARGS
    assert "restart" in result.stderr and "revoked" not in result.stderr
    assert _kept(tmp_path, wal)


def test_a_wal_without_the_tag_is_a_revoked_membership_cleared_and_started_as_a_new_member(imds, fake_etcd, tmp_path):
    """Back from a warm pool: the coordinator removed the member and deleted its admission tags; the instance
    boots again with the removed member's WAL. IMDS answers 404 for the tag (and lists the instance's other
    tags): the script waits until the instance is going InService, clears the data dir, and does the first start:
    the go tag, then --discovery-srv and --initial-cluster-state from the tag."""
    etcd, out = fake_etcd
    _member_data(tmp_path)
    imds.lifecycle = ["Pending:Wait", "InService"]
    imds.tags["etcd-cluster-state"] = [None, None, None, "existing"]  # gone; then the go signal of the new join
    result = run(imds, etcd, tmp_path)
    assert result.returncode == 0, result.stderr
    assert etcd_args(out, tmp_path) == expected_args("existing")
    data = tmp_path / "data"
    assert data.is_dir() and list(data.iterdir()) == []  # cleared (the dir itself stays: a mount point)
    assert "membership revoked" in result.stderr and "restart:" not in result.stderr
    # The data dir was cleared only once the target lifecycle state was InService, and only after a 404
    # that the tag listing confirmed.
    err = result.stderr
    assert err.index("target lifecycle state: InService") < err.index("membership revoked: ")
    paths = [p for _, p, _ in imds.requests]
    first_tag = paths.index("/latest/meta-data/tags/instance/etcd-cluster-state")
    assert paths[first_tag + 1] == "/latest/meta-data/tags/instance"
    assert paths.count("/latest/meta-data/tags/instance/etcd-cluster-state") == 4


def test_a_revoked_member_still_bound_for_the_warm_pool_keeps_its_data_and_does_not_start(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    wal = _member_data(tmp_path)
    imds.lifecycle = ["Warmed:Stopped"]
    imds.tags["etcd-cluster-state"] = [None]
    result = run(imds, etcd, tmp_path)
    assert result.returncode == 0 and "Warmed:Stopped" in result.stderr
    assert not out.exists() and _kept(tmp_path, wal)
    assert "membership revoked:" not in result.stderr


@pytest.mark.parametrize(
    "answers, in_metadata",
    [([500], True), ([HANG], True), ([503, HANG, 500], True), ([None], False)],
    ids=["5xx", "timeout", "5xx-and-timeouts", "tags-not-in-imds"],
)
def test_a_wal_and_an_unreadable_tag_never_clears_the_data(imds, fake_etcd, tmp_path, answers, in_metadata):
    """A timeout, a 5xx or a 404 while instance tags are not in IMDS at all (InstanceMetadataTags disabled: the
    listing answers 404 too) says nothing about the membership: read again until BOOTSTRAP_TAG_TIMEOUT, then the
    script's own error (exit 1, systemd tries again), the WAL untouched and etcd not started."""
    etcd, out = fake_etcd
    wal = _member_data(tmp_path)
    imds.tags["etcd-cluster-state"] = answers
    imds.tags_in_metadata = in_metadata
    result = run(imds, etcd, tmp_path, BOOTSTRAP_TAG_TIMEOUT="2", IMDS_TIMEOUT="0.3")
    assert result.returncode == 1, result.stderr
    assert "cannot tell in 2s whether the tag etcd-cluster-state is there" in result.stderr
    assert "is left as it is" in result.stderr
    assert not out.exists() and _kept(tmp_path, wal)
    paths = [p for _, p, _ in imds.requests]
    assert paths.count("/latest/meta-data/tags/instance/etcd-cluster-state") >= 2  # it retried
    assert "/latest/meta-data/autoscaling/target-lifecycle-state" not in paths
    assert "revoked" not in result.stderr


@pytest.mark.parametrize("final", ["existing", None])
def test_transient_tag_read_failures_are_retried_until_a_definite_answer(imds, fake_etcd, tmp_path, final):
    """500, then a timeout, then the answer: the tag (restart, data kept) or a 404 (revoked, cleared)."""
    etcd, out = fake_etcd
    wal = _member_data(tmp_path)
    imds.tags["etcd-cluster-state"] = [500, HANG, final, *([] if final else [None, "new"])]
    result = run(imds, etcd, tmp_path, IMDS_TIMEOUT="0.3")
    assert result.returncode == 0, result.stderr
    assert "answered 500" in result.stderr and "answered 000" in result.stderr
    if final:
        assert etcd_args(out, tmp_path) == RESTART_ARGS and _kept(tmp_path, wal)
    else:
        assert etcd_args(out, tmp_path) == expected_args("new")
        assert list((tmp_path / "data").iterdir()) == []


@pytest.mark.parametrize("state", ["existing", "new"])
def test_a_data_dir_left_by_a_failed_first_start_is_cleared_and_the_first_start_runs_again(
    imds, fake_etcd, tmp_path, state
):
    """Defect 1 of issue 10: a failed first start becomes a rogue cluster. What etcd 3.5.1 leaves after a failed
    first start (``member count is unequal``): member/snap/db and no member/wal. Started again without discovery it
    would bootstrap a one-member cluster; the script clears it and does the first start (tag, discovery) again."""
    etcd, out = fake_etcd
    data = tmp_path / "data"
    (data / "member" / "snap").mkdir(parents=True)
    (data / "member" / "snap" / "db").write_bytes(b"\0" * 64)
    (data / "member" / "wal.tmp").mkdir()  # a WAL etcd had not finished creating is no WAL either
    imds.tags["etcd-cluster-state"] = [None, state]
    result = run(imds, etcd, tmp_path)
    assert result.returncode == 0, result.stderr
    assert etcd_args(out, tmp_path) == expected_args(state)  # --discovery-srv and --initial-cluster-state
    assert "leftover of a failed first start" in result.stderr and "restart:" not in result.stderr
    assert data.is_dir() and list(data.iterdir()) == []  # the dir stays (it may be a mount point), emptied
    paths = [p for _, p, _ in imds.requests]
    assert paths.count("/latest/meta-data/tags/instance/etcd-cluster-state") == 2  # it waited for the go tag


@pytest.mark.parametrize("data_dir", ["/", "//", "var/lib/etcd"])
def test_refuses_a_data_dir_it_could_not_safely_clear(imds, fake_etcd, tmp_path, data_dir):
    etcd, out = fake_etcd
    result = run(imds, etcd, tmp_path, ETCD_DATA_DIR=data_dir)
    assert result.returncode == 1 and "is not an absolute path below /" in result.stderr
    assert imds.requests == [] and not out.exists()


def test_times_out_with_a_clear_error_when_never_in_service(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    imds.lifecycle = ["Pending:Wait"]
    result = run(imds, etcd, tmp_path, BOOTSTRAP_LIFECYCLE_TIMEOUT="1")
    assert result.returncode == 1
    assert "target-lifecycle-state is 'Pending:Wait', not InService, after 1s" in result.stderr
    assert not out.exists()


def test_times_out_with_a_clear_error_when_the_coordinator_never_tags(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    imds.tags["etcd-cluster-state"] = [None]
    result = run(imds, etcd, tmp_path, BOOTSTRAP_TAG_TIMEOUT="1")
    assert result.returncode == 1
    assert "etcd-cluster-state did not appear within 1s" in result.stderr
    assert "InstanceMetadataTags" in result.stderr
    assert not out.exists()


def test_rejects_a_cluster_state_tag_it_does_not_know(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    imds.tags["etcd-cluster-state"] = ["maybe"]
    result = run(imds, etcd, tmp_path)
    assert result.returncode == 1 and "'maybe' is neither 'new' nor 'existing'" in result.stderr
    assert not out.exists()


def test_an_instance_bound_for_the_warm_pool_does_not_start_etcd(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    imds.lifecycle = ["Warmed:Stopped"]
    result = run(imds, etcd, tmp_path)
    assert result.returncode == 0 and "Warmed:Stopped" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("pool", ["Warmed:Running", "Warmed:Hibernated"])
def test_an_instance_in_a_running_or_hibernated_warm_pool_waits_and_starts_when_it_leaves(
    imds, fake_etcd, tmp_path, pool
):
    """Issue 11: in a pool whose instances keep running (or hibernate) no boot re-runs the script when the
    instance leaves the pool; it exited 0 on Warmed:* and etcd never started. It now waits in the pool
    (longer than BOOTSTRAP_LIFECYCLE_TIMEOUT) and starts etcd once the instance is InService."""
    etcd, out = fake_etcd
    imds.lifecycle = [pool] * 10 + ["InService"]  # ~3 s of polls (0.02 s doubling to 0.5 s)
    started = time.monotonic()
    result = run(imds, etcd, tmp_path, BOOTSTRAP_LIFECYCLE_TIMEOUT="2", BOOTSTRAP_POLL_MAX="0.5")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started > 2.0  # in the pool longer than the lifecycle timeout
    assert f"target lifecycle state is {pool}: waiting in the warm pool" in result.stderr
    assert result.stderr.count("waiting in the warm pool") == 1
    assert etcd_args(out, tmp_path) == expected_args("new")


def test_missing_domain_fails_before_any_imds_call(imds, fake_etcd, tmp_path):
    etcd, _ = fake_etcd
    result = run(imds, etcd, tmp_path, ETCD_DOMAIN="")
    assert result.returncode == 1 and "ETCD_DOMAIN is not set" in result.stderr
    assert imds.requests == []


def _fake_dig(tmp_path: Path, answers: list[str], name: str = "_etcd-server._tcp.example.com") -> Path:
    """A 'dig +short SRV name' answering from answers, one per call, the last one repeated."""
    state = tmp_path / "dig-calls"
    lines = repr(answers)
    script = (
        f"#!{sys.executable}\nimport sys, os\nanswers = {lines}\np = {str(state)!r}\n"
        "n = int(open(p).read()) if os.path.exists(p) else 0\nopen(p, 'w').write(str(n + 1))\n"
        f"assert sys.argv[1:] == ['+short', 'SRV', {name!r}], sys.argv\n"
        "print(answers[min(n, len(answers) - 1)], end='')\n"
    )
    return _executable(tmp_path / "dig", script)


def test_waits_until_the_resolver_lists_this_instance_before_starting(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    dig = _fake_dig(
        tmp_path,
        [
            "",
            "0 0 2380 ip-10-0-9-9.ec2.internal.\n",
            "0 0 2380 ip-10-0-9-9.ec2.internal.\n0 0 2380 IP-10-0-1-4.ec2.internal.\n",
        ],
    )
    result = run(imds, etcd, tmp_path, BOOTSTRAP_SRV_CHECK="1", DIG_BIN=str(dig))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dig-calls").read_text() == "3"
    assert etcd_args(out, tmp_path) == expected_args("new")


def test_srv_wait_times_out_with_a_clear_error(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    dig = _fake_dig(tmp_path, ["0 0 2381 ip-10-0-1-4.ec2.internal.\n"])  # right host, wrong port
    result = run(imds, etcd, tmp_path, BOOTSTRAP_SRV_CHECK="1", DIG_BIN=str(dig), BOOTSTRAP_SRV_TIMEOUT="1")
    assert result.returncode == 1
    assert "_etcd-server._tcp.example.com SRV does not list ip-10-0-1-4.ec2.internal:2380 after 1s" in result.stderr
    assert not out.exists()


def test_user_data_carries_an_identical_copy_of_the_script():
    template = load_template(CLUSTER)
    user_data = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
    parts = user_data["Fn::Base64"]["Fn::Join"][1]
    script = stripped(BOOTSTRAP.read_text())
    assert script in parts, "etcd-cluster.yaml carries a stale copy: run python infra/aws/bootstrap/embed.py"
    # EC2 limits user data to 16 KB before base64.
    assert sum(len(p) for p in parts if isinstance(p, str)) < 15_000


# -- TLS mode (issue 12) -----------------------------------------------------------------------------------
def _pki(tmp_path: Path, *, dns: tuple[str, ...] = ("ip-10-0-1-4.ec2.internal", "example.com"),
         ips: tuple[str, ...] = ("10.0.1.4",), signer=None, key_mode: int = 0o600) -> dict[str, str]:  # fmt: skip
    from infra.local.pki import CertificateAuthority

    ca = CertificateAuthority.create("etcd-test-ca")
    cert, key = (signer or ca).issue("i-0abc123", dns=dns, ips=ips)
    pki = tmp_path / "pki"
    pki.mkdir(exist_ok=True)
    (pki / "ca.crt").write_text(ca.pem)
    (pki / "member.crt").write_text(cert)
    (pki / "member.key").write_text(key)
    (pki / "member.key").chmod(key_mode)
    return {"ETCD_TLS": "1", "ETCD_TLS_DIR": str(pki)}


TLS_FLAGS = [
    "--cert-file", "PKI/member.crt", "--key-file", "PKI/member.key", "--trusted-ca-file", "PKI/ca.crt",
    "--client-cert-auth",
    "--peer-cert-file", "PKI/member.crt", "--peer-key-file", "PKI/member.key", "--peer-trusted-ca-file", "PKI/ca.crt",
    "--peer-client-cert-auth", "--peer-cert-allowed-hostname", "example.com",
]  # fmt: skip


def _tls_args(out: Path, tmp_path: Path) -> list[str]:
    return [a.replace(str(tmp_path / "pki"), "PKI") for a in etcd_args(out, tmp_path)]


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed (TLS mode checks the certificate)")
def test_tls_mode_starts_etcd_with_https_urls_mutual_tls_and_peer_identity(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    result = run(imds, etcd, tmp_path, **_pki(tmp_path))
    assert result.returncode == 0, result.stderr
    assert _tls_args(out, tmp_path) == [
        "--name", "i-0abc123",
        "--discovery-srv", "example.com",
        "--initial-advertise-peer-urls", "https://ip-10-0-1-4.ec2.internal:2380",
        "--listen-peer-urls", "https://10.0.1.4:2380",
        "--listen-client-urls", "https://10.0.1.4:2379,https://127.0.0.1:2379",
        "--advertise-client-urls", "https://10.0.1.4:2379",
        *TLS_FLAGS,
        "--initial-cluster-token", "tok-1",
        "--initial-cluster-state", "new",
        "--data-dir", "DATA",
    ]  # fmt: skip
    assert "names example.com, ip-10-0-1-4.ec2.internal and 10.0.1.4" in result.stderr


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed (TLS mode checks the certificate)")
def test_tls_mode_restart_keeps_the_tls_flags(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    _member_data(tmp_path)
    result = run(imds, etcd, tmp_path, **_pki(tmp_path))
    assert result.returncode == 0, result.stderr
    args = _tls_args(out, tmp_path)
    assert "--discovery-srv" not in args and args[args.index("--cert-file") :][: len(TLS_FLAGS)] == TLS_FLAGS


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed (TLS mode checks the certificate)")
@pytest.mark.parametrize(
    ("pki", "fragment"),
    [
        (
            {"dns": ("ip-10-0-1-4.ec2.internal",)},
            "does not name the discovery domain example.com in its subjectAltName",
        ),
        ({"dns": ("example.com",)}, "does not name this member's peer host ip-10-0-1-4.ec2.internal"),
        ({"ips": ("10.0.9.9",)}, "does not name this member's private IP 10.0.1.4"),
        ({"key_mode": 0o644}, "has mode 644: the member's private key must be readable by its owner only"),
        ({"signer": "other"}, "is not signed by the CA in"),
    ],
)
def test_tls_mode_refuses_a_certificate_etcd_could_not_use_with_an_error_that_says_why(
    imds, fake_etcd, tmp_path, pki, fragment
):
    from infra.local.pki import CertificateAuthority

    etcd, out = fake_etcd
    if pki.get("signer") == "other":
        pki = {**pki, "signer": CertificateAuthority.create("someone-else")}
    result = run(imds, etcd, tmp_path, **_pki(tmp_path, **pki))
    assert result.returncode == 1
    assert fragment in result.stderr, result.stderr
    assert not out.exists()  # etcd never started


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed (TLS mode checks the certificate)")
def test_tls_mode_waits_for_the_ssl_record(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    dig = _fake_dig(tmp_path, ["0 0 2380 ip-10-0-1-4.ec2.internal.\n"], name="_etcd-server-ssl._tcp.example.com")
    result = run(imds, etcd, tmp_path, BOOTSTRAP_SRV_CHECK="1", DIG_BIN=str(dig), **_pki(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "_etcd-server-ssl._tcp.example.com lists ip-10-0-1-4.ec2.internal:2380" in result.stderr
    assert "--discovery-srv" in out.read_text().splitlines()  # then etcd started


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed (TLS mode checks the certificate)")
@pytest.mark.parametrize("tls", [False, True])
def test_the_copy_in_user_data_runs_as_the_source_does(imds, fake_etcd, tmp_path, tls):
    """The user data carries the script without its comments: it starts etcd with the same command line."""
    etcd, out = fake_etcd
    copy = tmp_path / "copy.sh"
    copy.write_text(stripped(BOOTSTRAP.read_text()))
    env = _pki(tmp_path) if tls else {}
    result = run(imds, etcd, tmp_path, script=copy, **env)
    assert result.returncode == 0, result.stderr
    from_copy = _tls_args(out, tmp_path)
    out.unlink()
    result = run(imds, etcd, tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert from_copy == _tls_args(out, tmp_path)


# -- TLS mode: the member certificate fetched from the secret the coordinator issued ---------------------------------
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:etcd-asg/example.com/member/i-0abc123-AbCdEf"


def _fake_aws(tmp_path: Path, secret: str | None, arn: str = SECRET_ARN) -> Path:
    """An 'aws' CLI answering ``secretsmanager get-secret-value`` for ``arn`` (exit 254 otherwise)."""
    calls = tmp_path / "aws-calls"
    want = ["secretsmanager", "get-secret-value", "--region", "us-east-1", "--secret-id", arn,
            "--query", "SecretString", "--output", "text"]  # fmt: skip
    script = (
        f"#!{sys.executable}\nimport sys\nopen({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"if sys.argv[1:] != {want!r} or {secret!r} is None:\n"
        "    print('An error occurred (AccessDeniedException) calling GetSecretValue', file=sys.stderr)\n"
        "    sys.exit(254)\n"
        f"print({secret!r})\n"
    )
    return _executable(tmp_path / "aws", script)


def _member_secret(dns=("ip-10-0-1-4.ec2.internal", "example.com")) -> str:
    import json

    from infra.local.pki import CertificateAuthority

    ca = CertificateAuthority.create("etcd-test-ca")
    cert, key = ca.issue("i-0abc123", dns=dns, ips=["10.0.1.4"])
    return json.dumps({"ca": ca.pem, "cert": cert, "key": key})


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed (TLS mode checks the certificate)")
def test_tls_mode_fetches_its_own_certificate_after_the_go_signal(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    imds.tags["etcd-member-cert"] = [SECRET_ARN]
    aws = _fake_aws(tmp_path, _member_secret())
    pki = tmp_path / "pki"
    result = run(imds, etcd, tmp_path, ETCD_TLS="1", ETCD_TLS_DIR=str(pki), AWS_BIN=str(aws))
    assert result.returncode == 0, result.stderr
    assert f"member certificate fetched from {SECRET_ARN}" in result.stderr
    assert {p.name for p in pki.iterdir()} == {"ca.crt", "member.crt", "member.key", ".etcd-member-cert"}
    assert (pki / ".etcd-member-cert").read_text() == SECRET_ARN
    assert stat.S_IMODE((pki / "member.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.stat().st_mode) == 0o700
    assert _tls_args(out, tmp_path)[_tls_args(out, tmp_path).index("--cert-file") :][: len(TLS_FLAGS)] == TLS_FLAGS
    # read once, after the go signal
    paths = [p for _, p, _ in imds.requests]
    assert paths.index("/latest/meta-data/tags/instance/etcd-cluster-state") < paths.index(
        "/latest/meta-data/tags/instance/etcd-member-cert"
    )
    assert (tmp_path / "aws-calls").read_text().count("get-secret-value") == 1
    # a restart keeps the files it has: no second read
    out.unlink()
    _member_data(tmp_path)
    assert run(imds, etcd, tmp_path, ETCD_TLS="1", ETCD_TLS_DIR=str(pki), AWS_BIN=str(aws)).returncode == 0
    assert (tmp_path / "aws-calls").read_text().count("get-secret-value") == 1
    # a new secret (the instance came back from a warm pool: its old secret was deleted, a new one issued): the
    # files are fetched again, not reused
    other = SECRET_ARN.replace("-AbCdEf", "-XyZxYz")
    imds.tags["etcd-member-cert"] = [other]
    aws2 = _fake_aws(tmp_path, _member_secret(), arn=other)
    out.unlink()
    assert run(imds, etcd, tmp_path, ETCD_TLS="1", ETCD_TLS_DIR=str(pki), AWS_BIN=str(aws2)).returncode == 0
    assert (pki / ".etcd-member-cert").read_text() == other


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed (TLS mode checks the certificate)")
@pytest.mark.parametrize(
    ("tag", "secret", "fragment"),
    [
        (None, "{}", "no instance tag etcd-member-cert"),
        (SECRET_ARN, None, "cannot read the member certificate secret"),
        (SECRET_ARN, '{"ca": "x"}', "is not the JSON {ca, cert, key}"),
        (SECRET_ARN, "dns-less", "does not name the discovery domain example.com"),
    ],
)
def test_tls_mode_without_a_usable_member_secret_says_why_and_starts_nothing(
    imds, fake_etcd, tmp_path, tag, secret, fragment
):
    etcd, out = fake_etcd
    if tag:
        imds.tags["etcd-member-cert"] = [tag]
    if secret == "dns-less":
        secret = _member_secret(dns=("ip-10-0-1-4.ec2.internal",))
    aws = _fake_aws(tmp_path, secret)
    result = run(imds, etcd, tmp_path, ETCD_TLS="1", ETCD_TLS_DIR=str(tmp_path / "pki"), AWS_BIN=str(aws))
    assert result.returncode == 1
    assert fragment in result.stderr, result.stderr
    assert not out.exists()
