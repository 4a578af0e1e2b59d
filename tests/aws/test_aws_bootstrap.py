"""etcd-bootstrap.sh against a fake IMDSv2, a fake etcd and a fake running cluster (its member list): the exact
etcd command line for a founding and a joining member, the restart path, a revoked membership (WAL, no tag), the
waits and their timeouts, lost data (no WAL, the cluster lists the member as started: etcd-data-lost, never
started), a restore from S3 (fake AWS CLI and etcdutl) and every refusal of bad input."""

from __future__ import annotations

import json
import os
import shutil
import socket
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

from infra.aws.bootstrap.embed import RESTORE, embedded

TOKEN = "fake-imds-token"
HANG = "<hang>"  # an answer that comes too late: the script's curl times out (IMDS_TIMEOUT)
Answer = str | int | None  # a value (200), None (404), an HTTP status, or HANG
INSTANCE = {
    "instance-id": "i-0abc123",
    "local-ipv4": "10.0.1.4",
    "local-hostname": "ip-10-0-1-4.ec2.internal",
    "placement/region": "us-east-1",
}

PEER = "http://ip-10-0-1-4.ec2.internal:2380"  # the instance's peer URL (INSTANCE's local-hostname)

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


def _closed_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on: connection refused at once
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


CLOSED = _closed_url()


def member(*, name: str = "", peer: str = PEER, published: bool = False, mid: str = "1311768467294899695") -> dict:
    """A member as etcd's gateway lists it (empty fields left out); ``published``: it ran (name, client URLs)."""
    out: dict = {"ID": mid, "peerURLs": [peer]}
    if name:
        out["name"] = name
    if published:
        out["clientURLs"] = ["http://10.0.1.4:2379"]
    return out


class FakeCluster:
    """etcd's JSON gateway as a running cluster answers ``POST /v3/cluster/member/list``: ``members`` (a member of
    another instance always beside them); the first ``unready`` requests get a 503 (no usable answer)."""

    def __init__(self, members: list[dict], *, hang: float = 0.0) -> None:
        self.members = members
        self.unready = 0
        self.hang = hang  # seconds before each answer (a member still starting holds the request)
        self.requests: list[str] = []
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                cluster.requests.append(self.path)
                time.sleep(cluster.hang)
                if self.path != "/v3/cluster/member/list" or len(cluster.requests) <= cluster.unready:
                    code, body = 503, b"not ready"
                else:
                    other = member(name="i-0other", peer="http://ip-10-0-1-9.ec2.internal:2380", published=True,
                                   mid="42")  # fmt: skip
                    code = 200
                    body = json.dumps({"header": {"cluster_id": "7"}, "members": [other, *cluster.members]}).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    fake = FakeCluster([member()])  # this instance's member, added and not started: an ordinary joiner
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
        "DIG_BIN": str(tmp_path / "no-dig"),  # the machine's resolver is never asked
        "ETCD_CHECK_ENDPOINTS": CLOSED,  # no member answers (a new cluster); tests of a join pass a FakeCluster
        "AWS_BIN": str(tmp_path / "no-aws"),
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
def test_starts_etcd_with_discovery_once_in_service_and_tagged(imds, fake_etcd, cluster, tmp_path, state):
    etcd, out = fake_etcd
    imds.lifecycle = [None, "Pending:Wait", "Pending:Wait", "InService"]
    imds.tags["etcd-cluster-state"] = [None, None, state]
    result = run(imds, etcd, tmp_path, ETCD_CHECK_ENDPOINTS=cluster.url)
    assert result.returncode == 0, result.stderr
    assert etcd_args(out, tmp_path) == expected_args(state)
    # Before the first start it asked the running cluster once: its member is listed, not started.
    assert cluster.requests == ["/v3/cluster/member/list"]
    assert "lists this member unstarted: a first start" in result.stderr
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


def test_a_wal_without_the_tag_is_a_revoked_membership_cleared_and_started_as_a_new_member(
    imds, fake_etcd, cluster, tmp_path
):
    """Back from a warm pool: the coordinator removed the member and deleted its admission tags; the instance
    boots again with the removed member's WAL. IMDS answers 404 for the tag (and lists the instance's other
    tags): the script waits until the instance is going InService, clears the data dir, and does the first start:
    the go tag, then --discovery-srv and --initial-cluster-state from the tag."""
    etcd, out = fake_etcd
    _member_data(tmp_path)
    imds.lifecycle = ["Pending:Wait", "InService"]
    imds.tags["etcd-cluster-state"] = [None, None, None, "existing"]  # gone; then the go signal of the new join
    result = run(imds, etcd, tmp_path, ETCD_CHECK_ENDPOINTS=cluster.url)
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
    imds, fake_etcd, cluster, tmp_path, state
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
    result = run(imds, etcd, tmp_path, ETCD_CHECK_ENDPOINTS=cluster.url)
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
    assert result.returncode == 1
    assert "etcd-cluster-state='maybe' is not new, existing or restore" in result.stderr
    assert "nothing was started or changed" in result.stderr
    assert not out.exists() and not (tmp_path / "data").exists()


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


def test_user_data_carries_an_identical_copy_of_each_script():
    """The user data writes both scripts (the restore is sourced from beside the start script) with
    ``base64 -d | gunzip``: decoded, each block is its source without comments; the whole fits EC2's 16 KB."""
    import base64
    import gzip

    from infra.aws.bootstrap.embed import stripped

    template = load_template(CLUSTER)
    user_data = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
    parts = user_data["Fn::Base64"]["Fn::Join"][1]
    for source, heredoc in ((BOOTSTRAP, "EOF_ETCD_BOOTSTRAP"), (RESTORE, "EOF_ETCD_RESTORE")):
        opening = f"base64 -d <<'{heredoc}' | gunzip > /opt/etcd-bootstrap/{source.name}\n"
        at = parts.index(opening)
        assert parts[at + 2] == f"{heredoc}\n"
        carried = gzip.decompress(base64.b64decode(parts[at + 1])).decode()
        assert carried == stripped(source.read_text(), source.name), (
            f"etcd-cluster.yaml carries a stale copy of {source.name}: run python infra/aws/bootstrap/embed.py"
        )
        assert not [line for line in carried.splitlines()[2:] if line.lstrip().startswith("#")]
    assert "chmod 755 /opt/etcd-bootstrap/etcd-bootstrap.sh /opt/etcd-bootstrap/etcd-restore.sh\n" in parts
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
@pytest.mark.parametrize("mode", ["plain", "tls", "restore"])
def test_the_copy_in_user_data_runs_as_the_source_does(imds, fake_etcd, tmp_path, mode):
    """The user data carries the scripts without their comments, written side by side (the start script sources
    the restore script from beside itself): they start etcd with the same command line as the sources."""
    etcd, out = fake_etcd
    template = CLUSTER.read_text()
    copies = tmp_path / "opt"
    copies.mkdir()
    copy = copies / BOOTSTRAP.name
    copy.write_text(embedded(template, BOOTSTRAP.name))
    (copies / RESTORE.name).write_text(embedded(template, RESTORE.name))
    env = _pki(tmp_path) if mode == "tls" else {}
    if mode == "restore":
        _restore_tags(imds)
        env = {k: v for k, v in _restore_env(tmp_path).items() if k != "ETCD_RESTORE_SCRIPT"}
    result = run(imds, etcd, tmp_path, script=copy, **env)
    assert result.returncode == 0, result.stderr
    from_copy = _tls_args(out, tmp_path)
    out.unlink()
    shutil.rmtree(tmp_path / "data", ignore_errors=True)
    result = run(imds, etcd, tmp_path, **env, **({"ETCD_RESTORE_SCRIPT": str(RESTORE)} if mode == "restore" else {}))
    assert result.returncode == 0, result.stderr
    assert from_copy == _tls_args(out, tmp_path)
    if mode == "restore":
        assert (tmp_path / "data" / "member" / "wal").is_dir() and "restored (key, revision" in result.stderr


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


# -- lost data: no WAL, but the running cluster lists this member as started -----------------------------------------
def _fake_aws_cli(tmp_path: Path, *, snapshot: Path | None = None, key: str = "", tag_fails: bool = False) -> Path:
    """An 'aws' CLI: ``ec2 create-tags`` (recorded; fails when ``tag_fails``), and the two S3 reads of
    etcd-restore.sh for ``key``: ``s3api get-object`` (writes ``snapshot``, prints its metadata) and
    ``s3api get-object-tagging`` (prints its sha256). Every call goes to aws-calls, one line each."""
    calls = tmp_path / "aws-calls"
    script = f"""#!{sys.executable}
import hashlib, json, shutil, sys
args = sys.argv[1:]
open({str(calls)!r}, "a").write(" ".join(args) + "\\n")
def opt(name):
    return args[args.index(name) + 1]
snapshot, key = {str(snapshot) if snapshot else ""!r}, {key!r}
if args[:2] == ["ec2", "create-tags"]:
    sys.exit(1 if {tag_fails!r} else 0)
if args[:2] == ["s3api", "get-object"] and snapshot and opt("--key") == key:
    shutil.copyfile(snapshot, args[args.index("--key") + 2])
    size = len(open(snapshot, "rb").read()) - 32
    print(json.dumps({{"Metadata": {{"db-size": str(size), "revision": "7"}}}}))
    sys.exit(0)
if args[:2] == ["s3api", "get-object-tagging"] and snapshot and opt("--key") == key:
    print(hashlib.sha256(open(snapshot, "rb").read()[:-32]).hexdigest())
    sys.exit(0)
print("An error occurred (NoSuchKey) when calling the " + args[1] + " operation", file=sys.stderr)
sys.exit(254)
"""
    return _executable(tmp_path / "aws", script)


def _aws_calls(tmp_path: Path) -> list[list[str]]:
    calls = tmp_path / "aws-calls"
    return [line.split() for line in calls.read_text().splitlines()] if calls.exists() else []


def _tag_value(call: list[str]) -> str:
    (tag,) = [a for a in call if a.startswith("Key=etcd-data-lost,Value=")]
    return tag.split("Value=", 1)[1]


@pytest.mark.parametrize(
    ("state", "listed", "member_id_tag"),
    [
        ("existing", member(name="i-0abc123", published=True), None),  # by its peer URL
        ("existing", member(name="i-0abc123", peer="http://10.0.1.4:2380", published=True, mid="255"), "ff"),  # by id
        ("new", member(name="i-0abc123", published=True), None),  # a founder whose disk was replaced
        ("existing", member(name="i-0abc123"), None),  # published its name, client URLs not shown
    ],
    ids=["existing-by-peer-url", "existing-by-member-id-tag", "new-founder", "named-only"],
)
def test_a_member_the_cluster_lists_as_started_with_no_wal_is_lost_tagged_and_never_started(
    imds, fake_etcd, tmp_path, state, listed, member_id_tag
):
    """The instance carries the go signal, its data dir has no WAL, and the running cluster lists its member as
    started: the member ran and its data is gone. Started again under that member's id with an empty log it could
    lose acknowledged writes, so etcd is not started: the instance tags itself etcd-data-lost (UTC ISO-8601) with
    the AWS CLI, in its region, on itself only, and the script exits 1."""
    import datetime as dt

    etcd, out = fake_etcd
    imds.tags["etcd-cluster-state"] = [state]
    if member_id_tag:
        imds.tags["etcd-member-id"] = [member_id_tag]
    fake = FakeCluster([listed])
    aws = _fake_aws_cli(tmp_path)
    try:
        before = dt.datetime.now(dt.UTC).replace(microsecond=0)
        result = run(imds, etcd, tmp_path, ETCD_CHECK_ENDPOINTS=f"{CLOSED},{fake.url}", AWS_BIN=str(aws))
    finally:
        fake.close()
    assert result.returncode == 1
    assert "lists this member" in result.stderr and "as started" in result.stderr
    assert "this member's data is lost: etcd not started" in result.stderr
    assert not out.exists()
    (call,) = _aws_calls(tmp_path)
    assert call[:6] == ["ec2", "create-tags", "--region", "us-east-1", "--resources", "i-0abc123"]
    stamp = dt.datetime.strptime(_tag_value(call), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert before <= stamp <= dt.datetime.now(dt.UTC)
    assert "instance tag etcd-data-lost=" in result.stderr and "written" in result.stderr


def test_a_member_that_holds_the_request_does_not_hide_the_others_answer(imds, fake_etcd, tmp_path):
    """Every endpoint is asked at once, each for ETCD_CHECK_TIMEOUT at most: a member still starting (it holds the
    request) neither delays the check past that nor hides what another member says."""
    etcd, out = fake_etcd
    imds.tags["etcd-cluster-state"] = ["existing"]
    slow = [FakeCluster([member()], hang=5.0) for _ in range(3)]
    lister = FakeCluster([member(name="i-0abc123", published=True)])
    aws = _fake_aws_cli(tmp_path)
    try:
        started = time.monotonic()
        urls = ",".join([*(c.url for c in slow), lister.url])
        result = run(imds, etcd, tmp_path, ETCD_CHECK_ENDPOINTS=urls, ETCD_CHECK_TIMEOUT="1", AWS_BIN=str(aws))
        elapsed = time.monotonic() - started
    finally:
        for fake in [*slow, lister]:
            fake.close()
    assert result.returncode == 1 and "this member's data is lost" in result.stderr
    assert all(c.requests for c in slow) and not out.exists()
    assert elapsed < 3.0, f"{elapsed:.1f} s: the three held requests were not asked at once"


def test_a_lost_member_whose_tag_cannot_be_written_still_does_not_start(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    imds.tags["etcd-cluster-state"] = ["existing"]
    fake = FakeCluster([member(name="i-0abc123", published=True)])
    aws = _fake_aws_cli(tmp_path, tag_fails=True)
    try:
        result = run(imds, etcd, tmp_path, ETCD_CHECK_ENDPOINTS=fake.url, AWS_BIN=str(aws))
    finally:
        fake.close()
    assert result.returncode == 1 and not out.exists()
    assert "could not write the instance tag etcd-data-lost (the instance role needs ec2:CreateTags" in result.stderr


def test_the_data_lost_tag_keeps_etcd_down_on_every_start_whatever_the_data_dir_holds(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    wal = _member_data(tmp_path)
    imds.tags["etcd-data-lost"] = ["2026-01-02T03:04:05Z"]
    imds.tags["etcd-cluster-state"] = ["existing"]
    for _ in range(2):
        result = run(imds, etcd, tmp_path)
        assert result.returncode == 1
        assert "this member's data is lost (instance tag etcd-data-lost=2026-01-02T03:04:05Z)" in result.stderr
    assert not out.exists() and _kept(tmp_path, wal)
    paths = [p for _, p, _ in imds.requests]
    assert "/latest/meta-data/autoscaling/target-lifecycle-state" not in paths
    assert "/latest/meta-data/tags/instance/etcd-cluster-state" not in paths


def test_a_founder_the_others_list_under_its_discovery_placeholder_is_not_lost(imds, fake_etcd, tmp_path):
    """Founders that started first list one that has not under the name SRV discovery gave it ("1") and without
    client URLs: etcd itself would call that started (a name); the script does not, and the founder starts."""
    etcd, out = fake_etcd
    imds.tags["etcd-cluster-state"] = ["new"]
    fake = FakeCluster([member(name="1")])
    try:
        result = run(imds, etcd, tmp_path, ETCD_CHECK_ENDPOINTS=fake.url)
    finally:
        fake.close()
    assert result.returncode == 0, result.stderr
    assert etcd_args(out, tmp_path) == expected_args("new") and fake.requests


def test_a_member_the_cluster_does_not_list_starts_as_told(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    imds.tags["etcd-cluster-state"] = ["existing"]
    fake = FakeCluster([])  # another instance's member only
    try:
        result = run(imds, etcd, tmp_path, ETCD_CHECK_ENDPOINTS=fake.url)
    finally:
        fake.close()
    assert result.returncode == 0, result.stderr
    assert etcd_args(out, tmp_path) == expected_args("existing")
    assert "the running cluster does not list this member: a first start" in result.stderr


def test_a_founder_no_member_answers_starts_a_new_cluster(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    imds.tags["etcd-cluster-state"] = ["new"]
    result = run(imds, etcd, tmp_path)  # ETCD_CHECK_ENDPOINTS: a closed port
    assert result.returncode == 0, result.stderr
    assert etcd_args(out, tmp_path) == expected_args("new")
    assert "no member of a running cluster answered: a first start (new)" in result.stderr


def test_a_joiner_asks_until_a_member_answers_then_starts(imds, fake_etcd, cluster, tmp_path):
    etcd, out = fake_etcd
    imds.tags["etcd-cluster-state"] = ["existing"]
    cluster.unready = 3  # 503 three times (a leader election, say)
    result = run(imds, etcd, tmp_path, ETCD_CHECK_ENDPOINTS=cluster.url)
    assert result.returncode == 0, result.stderr
    assert etcd_args(out, tmp_path) == expected_args("existing")
    assert len(cluster.requests) == 4
    assert result.stderr.count("no member of the running cluster answered its member list; asking again") == 1


def test_a_joiner_no_member_answers_never_starts_blind(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    imds.tags["etcd-cluster-state"] = ["existing"]
    result = run(imds, etcd, tmp_path, BOOTSTRAP_TAG_TIMEOUT="1")
    assert result.returncode == 1
    assert "no member of the running cluster answered its member list within 1s" in result.stderr
    assert f"(asked: {CLOSED})" in result.stderr and "never starts" in result.stderr
    assert not out.exists()


def test_the_cluster_is_asked_at_the_peers_the_srv_record_names_and_the_client_record(imds, fake_etcd, tmp_path):
    """Without ETCD_CHECK_ENDPOINTS: every peer target of _etcd-server._tcp but this instance's own, on the client
    port, and every target of _etcd-client._tcp on its port."""
    etcd, _ = fake_etcd
    imds.tags["etcd-cluster-state"] = ["existing"]
    peers, clients = FakeCluster([member()]), FakeCluster([member()])
    client_port = peers.url.rsplit(":", 1)[1]
    answers = {
        "_etcd-server._tcp.example.com": "0 0 2380 ip-10-0-1-4.ec2.internal.\n0 0 2380 localhost.\n",
        "_etcd-client._tcp.example.com": f"0 0 {clients.url.rsplit(':', 1)[1]} localhost.\n",
    }
    asked = tmp_path / "dig-asked"
    dig = _executable(
        tmp_path / "dig",
        f"#!{sys.executable}\nimport sys\nopen({str(asked)!r}, 'a').write(sys.argv[3] + '\\n')\n"
        f"assert sys.argv[1:3] == ['+short', 'SRV']\nprint({answers!r}.get(sys.argv[3], ''), end='')\n",
    )
    try:
        result = run(imds, etcd, tmp_path, ETCD_CHECK_ENDPOINTS="", DIG_BIN=str(dig), ETCD_CLIENT_PORT=client_port)
    finally:
        peers.close()
        clients.close()
    assert result.returncode == 0, result.stderr
    assert peers.requests == clients.requests == ["/v3/cluster/member/list"]
    assert asked.read_text().split() == list(answers)


# -- restore: etcd-cluster-state=restore seeds the data dir from S3 and starts a one-member cluster ------------------
RESTORE_KEY = "etcd-snapshots/8203331325417_20261207T183754.582Z_d1cfaf999eb97a2a_r452.db"


def _fake_etcdutl(tmp_path: Path) -> Path:
    """An 'etcdutl': ``snapshot status`` reads revision 7; ``snapshot restore`` records its arguments and makes the
    data dir a member's (member/wal/*.wal, member/snap/db holding the snapshot's database)."""
    calls = tmp_path / "etcdutl-calls"
    script = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
open({str(calls)!r}, "a").write(json.dumps(args) + "\\n")
if args[:2] == ["snapshot", "status"]:
    print(json.dumps({{"hash": 1, "revision": 7, "totalKey": 3, "totalSize": os.path.getsize(args[2]) - 32}}))
elif args[:2] == ["snapshot", "restore"]:
    data = args[args.index("--data-dir") + 1]
    os.makedirs(data + "/member/wal")
    os.makedirs(data + "/member/snap")
    open(data + "/member/wal/0000000000000000-0000000000000000.wal", "wb").write(b"restored log")
    open(data + "/member/snap/db", "wb").write(open(args[2], "rb").read()[:-32])
else:
    sys.exit(2)
"""
    return _executable(tmp_path / "etcdutl", script)


def _snapshot(tmp_path: Path) -> Path:
    import hashlib

    db = b"etcd bolt database " * 40
    path = tmp_path / "snapshot-in-s3.db"
    path.write_bytes(db + hashlib.sha256(db).digest())
    return path


def _restore_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "SNAPSHOT_BUCKET": "etcd-snapshots-bucket",
        "AWS_BIN": str(_fake_aws_cli(tmp_path, snapshot=_snapshot(tmp_path), key=RESTORE_KEY)),
        "ETCDUTL_BIN": str(_fake_etcdutl(tmp_path)),
        "ETCD_RESTORE_SCRIPT": str(RESTORE),
        "PYTHON_BIN": sys.executable,
        **extra,
    }


def _restore_tags(imds: FakeImds, key: str | None = RESTORE_KEY, token: str | None = "etcd-restored-2") -> None:
    imds.tags["etcd-cluster-state"] = ["restore"]
    if key is not None:
        imds.tags["etcd-restore-snapshot"] = [key]
    if token is not None:
        imds.tags["etcd-restore-token"] = [token]


def test_restore_seeds_a_one_member_cluster_from_the_snapshot_and_starts_it_as_a_restart(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    _restore_tags(imds)
    result = run(imds, etcd, tmp_path, **_restore_env(tmp_path))
    assert result.returncode == 0, result.stderr
    # etcd starts on the restored data dir without any discovery or initial-cluster flag: a restart.
    assert etcd_args(out, tmp_path) == RESTART_ARGS
    data = tmp_path / "data"
    assert (data / "member" / "wal" / "0000000000000000-0000000000000000.wal").read_bytes() == b"restored log"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".restore")) == []  # no staging left
    # The snapshot named by the tag, from the bucket; restored as this one member under the tag's new token.
    s3 = [c for c in _aws_calls(tmp_path) if c[0] == "s3api"]
    assert [c[1] for c in s3] == ["get-object", "get-object-tagging"]
    assert all(c[c.index("--bucket") + 1] == "etcd-snapshots-bucket" and c[c.index("--key") + 1] == RESTORE_KEY
               for c in s3)  # fmt: skip
    restores = [json.loads(line) for line in (tmp_path / "etcdutl-calls").read_text().splitlines()]
    (restore,) = [a for a in restores if a[:2] == ["snapshot", "restore"]]
    flags = dict(zip(restore[3::2], restore[4::2], strict=True))
    assert flags["--name"] == "i-0abc123" and flags["--initial-advertise-peer-urls"] == PEER
    assert flags["--initial-cluster"] == f"i-0abc123={PEER}"
    assert flags["--initial-cluster-token"] == "etcd-restored-2"
    assert "restored (key, revision, sha256): " + RESTORE_KEY + " 7 " in result.stderr

    # The next start (systemd, a reboot) is a restart on the restored data: nothing is downloaded again.
    out.unlink()
    again = run(imds, etcd, tmp_path, **_restore_env(tmp_path))
    assert again.returncode == 0, again.stderr
    assert etcd_args(out, tmp_path) == RESTART_ARGS
    assert len([c for c in _aws_calls(tmp_path) if c[0] == "s3api"]) == 2


def _non_empty(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("an operator's file")


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("no-bucket", "SNAPSHOT_BUCKET is not set: this instance cannot restore"),
        ("no-snapshot-tag", "needs the instance tags etcd-restore-snapshot and etcd-restore-token"),
        ("no-token-tag", "needs the instance tags etcd-restore-snapshot and etcd-restore-token"),
        ("key-outside-prefix", "is not a snapshot key under SNAPSHOT_PREFIX='etcd-snapshots/'"),
        ("founding-token", "is the founding token: a restored cluster needs a new one"),
        ("data-dir-not-empty", "the data dir DATA is not empty: a restore never replaces a member's data"),
    ],
)
def test_a_restore_it_cannot_do_is_refused_saying_why_and_changes_nothing(imds, fake_etcd, tmp_path, case, fragment):
    etcd, out = fake_etcd
    env = _restore_env(tmp_path)
    key, token = RESTORE_KEY, "etcd-restored-2"
    if case == "no-bucket":
        env["SNAPSHOT_BUCKET"] = ""
    elif case == "no-snapshot-tag":
        key = None
    elif case == "no-token-tag":
        token = None
    elif case == "key-outside-prefix":
        key = "elsewhere/" + RESTORE_KEY
    elif case == "founding-token":
        token = "tok-1"
    else:
        _non_empty(tmp_path)
    _restore_tags(imds, key, token)
    result = run(imds, etcd, tmp_path, **env)
    assert result.returncode == 1
    assert fragment in result.stderr.replace(str(tmp_path / "data"), "DATA"), result.stderr
    assert not out.exists() and _aws_calls(tmp_path) == [] and not (tmp_path / "etcdutl-calls").exists()
    if case == "data-dir-not-empty":
        assert [p.name for p in (tmp_path / "data").iterdir()] == ["notes.txt"]
    else:
        assert not (tmp_path / "data").exists()


def test_a_restore_that_fails_leaves_no_data_dir_and_starts_nothing(imds, fake_etcd, tmp_path):
    etcd, out = fake_etcd
    _restore_tags(imds, key="etcd-snapshots/gone.db")  # no such object: get-object fails
    result = run(imds, etcd, tmp_path, **_restore_env(tmp_path))
    assert result.returncode == 1
    assert "cannot read s3://etcd-snapshots-bucket/etcd-snapshots/gone.db" in result.stderr
    assert "the restore of s3://etcd-snapshots-bucket/etcd-snapshots/gone.db failed" in result.stderr
    assert not out.exists() and not (tmp_path / "data").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".restore")] == []


def test_a_restore_whose_member_the_cluster_lists_as_started_is_lost_not_restored_again(imds, fake_etcd, tmp_path):
    """A restored member whose data dir was wiped would be restored again under the same token and peer URL: the
    same member and cluster id, with an old log, beside the members that joined it since. It is data lost."""
    etcd, out = fake_etcd
    _restore_tags(imds)
    fake = FakeCluster([member(name="i-0abc123", published=True)])
    try:
        result = run(imds, etcd, tmp_path, **_restore_env(tmp_path, ETCD_CHECK_ENDPOINTS=fake.url))
    finally:
        fake.close()
    assert result.returncode == 1 and "this member's data is lost" in result.stderr
    assert [c[:2] for c in _aws_calls(tmp_path)] == [["ec2", "create-tags"]]  # no download
    assert not out.exists() and not (tmp_path / "data").exists()
