"""Snapshots of real etcd 3.5.1 into the emulated S3 and back: taken through the gateway's snapshot stream
(plaintext and mutual TLS), checked by ``etcdutl snapshot status``, restored into a new one-member cluster that
serves every key written; a stream cut off by etcd dying midway leaves nothing in the bucket.

One etcd per test on loopback ports of its own (no sandbox needed: nothing here uses DNS or the 127.0.1.x
addresses); S3 is moto in-process on a simulated clock, so the snapshot interval passes without waiting.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hook_handler.backup.errors import SnapshotStreamBroken
from hook_handler.backup.grpc import GrpcSnapshot
from hook_handler.backup.restore import etcdutl_binary, restore, snapshot_status
from hook_handler.backup.retention import parse_tiers
from hook_handler.backup.store import MIN_PART_SIZE, SnapshotMeta, SnapshotStore
from hook_handler.backup.stream import GatewaySnapshot, read_status
from hook_handler.backup.take import SnapshotTaker
from hook_handler.etcd import EtcdTlsError, HttpTransport
from hook_handler.retry import RetryPolicy
from infra.local.aws import LocalAWS
from infra.local.clock import SimClock
from infra.local.launcher import default_etcd_binary

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BUCKET = "etcd-snapshots-e2e"
PREFIX = "e2e/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Etcd:
    """One etcd process; ``client`` its client URL, ``transport`` how to talk to it."""

    process: subprocess.Popen[bytes]
    client: str
    peer: str
    data_dir: Path
    transport: HttpTransport
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def start_etcd(
    workdir: Path, name: str, *, tls: dict[str, str] | None = None, data_dir: Path | None = None, peer: str = ""
) -> Etcd:
    scheme = "https" if tls else "http"
    client = f"{scheme}://127.0.0.1:{free_port()}"
    peer = peer or f"http://127.0.0.1:{free_port()}"
    data = data_dir or workdir / f"{name}.etcd"
    argv = [
        default_etcd_binary(), "--name", name, "--data-dir", str(data),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"{name}={peer}", "--initial-cluster-token", f"token-{name}",
    ]  # fmt: skip
    transport = HttpTransport()
    if tls:
        argv += ["--cert-file", tls["cert"], "--key-file", tls["key"], "--trusted-ca-file", tls["ca"],
                 "--client-cert-auth"]  # fmt: skip
        transport = HttpTransport(verify=tls["ca"], cert=(tls["client_cert"], tls["client_key"]))
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    etcd = Etcd(process, client, peer, data, transport, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if read_status(transport, client, 1.0).has_leader:
                return etcd
        if process.poll() is not None:
            break
        time.sleep(0.1)
    etcd.stop()
    raise AssertionError(f"etcd {name} did not start: {log.read_text()[-2000:]}")


def put(etcd: Etcd, key: str, value: bytes) -> None:
    b64 = base64.b64encode
    etcd.transport.post(etcd.client, "/v3/kv/put", {"key": b64(key.encode()).decode(), "value": b64(value).decode()},
                        10.0)  # fmt: skip


def get(etcd: Etcd, key: str) -> bytes | None:
    out = etcd.transport.post(etcd.client, "/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()}, 10.0)
    kvs = out.get("kvs") or []
    return base64.b64decode(kvs[0]["value"]) if kvs else None


def write_keys(etcd: Etcd, count: int, size: int, tag: str) -> dict[str, bytes]:
    written = {}
    for i in range(count):
        value = hashlib.sha256(f"{tag}{i}".encode()).digest() * (size // 32) + os.urandom(i % 7)
        put(etcd, f"/data/{tag}/{i:05d}", value)
        written[f"/data/{tag}/{i:05d}"] = value
    return written


@pytest.fixture
def aws() -> Iterator[LocalAWS]:
    with LocalAWS(SimClock()) as emulated:
        emulated.client("s3").create_bucket(Bucket=BUCKET)
        yield emulated


def make_store(aws: LocalAWS) -> SnapshotStore:
    return SnapshotStore(aws.client("s3"), BUCKET, PREFIX, RetryPolicy(aws.clock), aws.clock, part_size=MIN_PART_SIZE)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    from infra.local.pki import CertificateAuthority

    ca = CertificateAuthority.create()
    server = ca.issue("etcd", dns=["localhost"], ips=["127.0.0.1"])
    client = ca.issue("coordinator", server=False, client=True)
    files = {"ca": ca.pem, "cert": server[0], "key": server[1], "client_cert": client[0], "client_key": client[1]}
    out = {}
    for name, text in files.items():
        path = tmp_path / f"{name}.pem"
        path.write_text(text)
        path.chmod(0o600)
        out[name] = str(path)
    return out


def s3_ops(aws: LocalAWS) -> list[str]:
    return [c.operation for c in aws.calls if c.service == "s3"]


@pytest.mark.parametrize("protocol", ["grpc", "gateway"])
@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "mutual-tls"])
def test_snapshot_to_s3_then_restore_into_a_new_cluster_serves_every_key(tmp_path, aws, pki, tls, protocol):
    source = start_etcd(tmp_path, "source", tls=pki if tls else None)
    restored: Etcd | None = None
    try:
        written = write_keys(source, 130, 100_000, "a")  # ~13 MB: three parts of 5 MiB
        store = make_store(aws)
        taker = SnapshotTaker(store, source.transport, aws.clock, interval=60, tiers=parse_tiers(""), protocol=protocol)
        deadline = aws.clock.now() + 600

        first = taker.run([source.client], deadline)
        assert first.taken and first.reason == "no snapshot yet"
        assert s3_ops(aws).count("UploadPart") == 3 and "AbortMultipartUpload" not in s3_ops(aws)
        assert taker.run([source.client], deadline, force=True).reason.startswith("revision")  # unchanged: skipped

        written |= write_keys(source, 5, 1000, "b")
        aws.clock.advance(30)
        assert not taker.run([source.client], deadline).taken  # revision moved, interval not yet passed
        second = taker.run([source.client], deadline, force=True)  # e.g. right before a membership change
        assert second.taken and second.newest is not None
        assert store.newest(deadline) == second.newest
        revision = read_status(source.transport, source.client, 2.0).revision

        # The stored object, read back and checked by etcd's own tool.
        snapshot_file = tmp_path / "check.db"
        got = store.download("latest", str(snapshot_file), deadline)
        status = snapshot_status(etcdutl_binary(), str(snapshot_file))
        assert status.revision == revision == second.newest.revision
        assert got.sha256 == second.sha256 and got.db_size == status.total_size

        # A new one-member cluster seeded from S3's newest snapshot.
        data_dir = tmp_path / "restored.etcd"
        peer = f"http://127.0.0.1:{free_port()}"
        done = restore(store, "latest", str(data_dir), name="restored", peer_url=peer, token="token-restored",
                       deadline=deadline)  # fmt: skip
        assert (done.key, done.revision) == (second.newest.key, revision)
        restored = start_etcd(tmp_path, "restored", tls=pki if tls else None, data_dir=data_dir, peer=peer)
        assert {k: get(restored, k) for k in written} == written
        new, old = (read_status(e.transport, e.client, 2.0) for e in (restored, source))
        assert new.cluster_id != old.cluster_id and new.revision >= revision
        members = restored.transport.post(restored.client, "/v3/cluster/member/list", {}, 5.0)["members"]
        assert [(m["name"], m["peerURLs"]) for m in members] == [("restored", [peer])]
    finally:
        source.stop()
        if restored is not None:
            restored.stop()


@pytest.mark.parametrize("source", [GrpcSnapshot, GatewaySnapshot])
def test_without_the_client_certificate_the_snapshot_is_refused_and_nothing_stored(tmp_path, aws, pki, source):
    etcd = start_etcd(tmp_path, "tls", tls=pki)
    try:
        put(etcd, "/k", b"v")
        store = make_store(aws)
        no_cert = HttpTransport(verify=pki["ca"])
        status = read_status(etcd.transport, etcd.client, 2.0)
        meta = SnapshotMeta(aws.clock.now(), status.cluster_id, status.member_id, status.revision, status.version)
        with pytest.raises(EtcdTlsError, match="TLS handshake failed"), source(no_cert, etcd.client) as g:
            store.upload(g.stream, meta, aws.clock.now() + 60)
        assert s3_ops(aws) == ["CreateBucket"]
    finally:
        etcd.stop()


@pytest.mark.parametrize("source", [GrpcSnapshot, GatewaySnapshot])
def test_etcd_dying_midway_aborts_the_upload_and_leaves_nothing(tmp_path, aws, source):
    etcd = start_etcd(tmp_path, "dies")
    try:
        write_keys(etcd, 250, 100_000, "c")  # ~25 MB
        store = make_store(aws)
        status = read_status(etcd.transport, etcd.client, 2.0)
        meta = SnapshotMeta(aws.clock.now(), status.cluster_id, status.member_id, status.revision, status.version)

        def killed_after(stream, limit):
            seen = 0
            for chunk in stream:
                seen += len(chunk)
                yield chunk
                if seen >= limit and etcd.process.poll() is None:
                    etcd.process.kill()

        with pytest.raises(SnapshotStreamBroken), source(etcd.transport, etcd.client) as g:
            store.upload(killed_after(g.stream, 6 * 1024 * 1024), meta, aws.clock.now() + 60)
        ops = s3_ops(aws)
        assert (
            ops.count("UploadPart") >= 1 and ops[-1] == "AbortMultipartUpload" and "CompleteMultipartUpload" not in ops
        )
        s3 = aws.client("s3")
        assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
        assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    finally:
        etcd.stop()


# -- the instance side: infra/aws/bootstrap/etcd-restore.sh with the AWS CLI against the emulator over HTTP ---------
SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "aws" / "bootstrap" / "etcd-restore.sh"


def _aws_cli() -> str | None:
    import shutil

    found = shutil.which("aws")
    if found is None:
        return None
    try:
        ok = subprocess.run([found, "--version"], capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if ok else None


@pytest.fixture
def served_s3() -> Iterator[str]:
    import sys

    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-m", "infra.local", "serve", "--port", "0"], cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        url = (process.stdout.readline() if process.stdout else "").split("serving on ", 1)[1].split()[0]
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_instance_script_restores_the_newest_snapshot_and_refuses_to_overwrite(tmp_path, served_s3):
    import boto3
    from botocore.config import Config

    from hook_handler.clock import SystemClock

    aws = _aws_cli()
    if aws is None:
        pytest.skip("no AWS CLI on PATH (the instance side of a restore uses it)")
    credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3 = boto3.client("s3", endpoint_url=served_s3, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}))  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    clock = SystemClock()
    store = SnapshotStore(s3, BUCKET, PREFIX, RetryPolicy(clock), clock, part_size=MIN_PART_SIZE)
    source = start_etcd(tmp_path, "origin")
    restored: Etcd | None = None
    try:
        written = write_keys(source, 80, 100_000, "d")  # ~8 MB: two parts
        taker = SnapshotTaker(store, source.transport, clock, interval=60, tiers=parse_tiers(""))
        taken = taker.run([source.client], clock.now() + 120)
        revision = read_status(source.transport, source.client, 2.0).revision
        data_dir = tmp_path / "instance" / "etcd"
        peer = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, **credentials, "AWS_ENDPOINT_URL": served_s3, "SNAPSHOT_BUCKET": BUCKET,
               "SNAPSHOT_PREFIX": PREFIX, "ETCD_DATA_DIR": str(data_dir), "ETCD_NAME": "i-0restored",
               "ETCD_PEER_URL": peer, "ETCD_INITIAL_CLUSTER_TOKEN": "etcd-restored-1", "ETCDUTL_BIN": etcdutl_binary(),
               "PYTHON_BIN": __import__("sys").executable}  # fmt: skip

        run = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == [taken.newest.key, str(revision), taken.sha256]
        assert sorted(p.name for p in data_dir.parent.iterdir()) == ["etcd"]  # the staging directory is gone

        again = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 1 and f"data directory {data_dir} is not empty" in again.stderr

        restored = start_etcd(tmp_path, "i-0restored", data_dir=data_dir, peer=peer)
        assert {k: get(restored, k) for k in written} == written

        # A snapshot whose tag disagrees with its bytes is refused, and no data directory appears.
        s3.put_object_tagging(Bucket=BUCKET, Key=taken.newest.key, Tagging={"TagSet": [{"Key": "sha256",
                              "Value": "0" * 64}]})  # fmt: skip
        other = {**env, "ETCD_DATA_DIR": str(tmp_path / "other" / "etcd"), "SNAPSHOT_KEY": taken.newest.key}
        bad = subprocess.run(["bash", str(SCRIPT)], env=other, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1 and "its tag says 0000" in bad.stderr
        assert not (tmp_path / "other" / "etcd").exists()
        missing = subprocess.run(["bash", str(SCRIPT)], env={**other, "SNAPSHOT_KEY": PREFIX + "nope.db"},
                                 capture_output=True, text=True, timeout=120)  # fmt: skip
        assert missing.returncode == 1 and f"cannot read s3://{BUCKET}/{PREFIX}nope.db" in missing.stderr
    finally:
        source.stop()
        if restored is not None:
            restored.stop()
