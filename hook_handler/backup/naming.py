"""Snapshot object keys: newest first in S3's listing order, and self-describing.

A key is ``<prefix><inverted time>_<UTC time>_<cluster id>_r<revision>.db``. The inverted time (milliseconds
subtracted from 10^13, 13 digits) makes ListObjectsV2, which lists in ascending key order, list the newest
snapshot first: ``MaxKeys=1`` finds it without listing the rest. The UTC time is for people; the cluster id
(hex, as etcdctl prints it) and the revision let the taker skip a snapshot of unchanged data without reading
any object's metadata.

    >>> key = snapshot_key("etcd/", 1796668674.582, "15118495548433857066", 452)
    >>> key
    'etcd/8203331325417_20261207T183754.582Z_d1cfaf999eb97a2a_r452.db'
    >>> parse_key("etcd/", key)
    Snapshot(key='etcd/8203331325417_20261207T183754.582Z_d1cfaf999eb97a2a_r452.db', taken_at=1796668674.582, \
cluster_id='d1cfaf999eb97a2a', revision=452, size=None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime

_INVERT = 10**13 - 1  # milliseconds; 13 digits last until the year 2286
_KEY = re.compile(
    r"^(?P<inv>\d{13})_(?P<stamp>\d{8}T\d{6}\.\d{3}Z)_(?P<cluster>[0-9a-f]{1,16})_r(?P<rev>\d{1,20})\.db$"
)
SUFFIX = ".db"


@dataclass(frozen=True)
class Snapshot:
    """One snapshot object: where it is and what its key says. ``size`` (bytes, etcd's trailing SHA-256
    included) when known from a listing."""

    key: str
    taken_at: float  # seconds since the epoch, millisecond precision
    cluster_id: str  # hex
    revision: int
    size: int | None = None

    def with_size(self, size: int) -> Snapshot:
        return replace(self, size=size)


def snapshot_key(prefix: str, taken_at: float, cluster_id: str, revision: int) -> str:
    """The key of a snapshot taken at ``taken_at`` of cluster ``cluster_id`` (decimal, as the gateway writes
    it) at ``revision``."""
    millis = round(taken_at * 1000)
    if not 0 <= millis <= _INVERT:
        raise ValueError(f"time {taken_at} is outside what a snapshot key can hold")
    stamp = datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
    return f"{prefix}{_INVERT - millis:013d}_{stamp}_{cluster_hex(cluster_id)}_r{int(revision)}{SUFFIX}"


def parse_key(prefix: str, key: str) -> Snapshot | None:
    """The snapshot a key names, or None for any other object under the prefix (never touched)."""
    if not key.startswith(prefix):
        return None
    match = _KEY.match(key[len(prefix) :])
    if not match:
        return None
    millis = _INVERT - int(match["inv"])
    return Snapshot(key=key, taken_at=millis / 1000, cluster_id=match["cluster"], revision=int(match["rev"]))


def cluster_hex(cluster_id: str | int) -> str:
    """etcd's cluster id (the gateway writes it in decimal) as etcdctl prints it: hex.

    >>> cluster_hex("15118495548433857066")
    'd1cfaf999eb97a2a'
    """
    text = str(cluster_id).strip()
    if not text.isdigit() or int(text) >= 2**64:
        raise ValueError(f"{cluster_id!r} is not an etcd cluster id (a decimal uint64)")
    return format(int(text), "x")
