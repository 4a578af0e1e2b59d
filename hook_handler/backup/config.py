"""The snapshot settings (``snapshot_*`` in ``hook_handler.settings``' table), read and checked on their own so
a bad value fails with a ``SettingsError`` naming it, before any snapshot is attempted.

    >>> config = SnapshotConfig.load({"snapshot_bucket": "my-etcd-snapshots"})
    >>> config.enabled, config.prefix, config.interval_seconds, [t.name for t in config.tiers]
    (True, 'etcd-snapshots/', 60.0, ['all', 'hourly', 'daily'])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from hook_handler.backup.retention import DEFAULT_RETENTION, RetentionError, Tier, parse_tiers
from hook_handler.exceptions import SettingsError
from hook_handler.settings import SETTINGS_SPEC

_DEFAULTS = {s.name: s.default or "" for s in SETTINGS_SPEC if s.name.startswith("snapshot_")}
DEFAULT_PREFIX = _DEFAULTS["snapshot_prefix"]
# S3's rules for bucket names (general purpose buckets): 3-63 characters, lower case, digits, dots, hyphens,
# starting and ending with a letter or digit, not an IP address.
_BUCKET = re.compile(r"^(?!\d+\.\d+\.\d+\.\d+$)(?!xn--)(?!sthree-)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()/-]{0,512}$")  # S3's safe characters for key names
_KMS_KEY = re.compile(
    r"^(?:arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key/[0-9a-f-]{36}|key/mrk-[0-9a-f]{32}|alias/[A-Za-z0-9/_-]+)"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|alias/[A-Za-z0-9/_-]+)$"
)


@dataclass(frozen=True)
class SnapshotConfig:
    """``bucket`` empty: snapshots are off."""

    bucket: str = ""
    prefix: str = DEFAULT_PREFIX
    interval_seconds: float = float(_DEFAULTS["snapshot_interval_seconds"])
    kms_key: str = ""
    tiers: tuple[Tier, ...] = parse_tiers(_DEFAULTS["snapshot_retention"])

    @property
    def enabled(self) -> bool:
        return bool(self.bucket)

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> SnapshotConfig:
        def get(name: str) -> str:
            value = environ.get(name)
            return (value if value is not None else _DEFAULTS[name]).strip()

        bucket = get("snapshot_bucket")
        if bucket and not _BUCKET.match(bucket):
            raise SettingsError(
                "snapshot_bucket", f"{bucket!r} is not an S3 bucket name", "3-63 lower-case letters, digits, . and -"
            )
        prefix = get("snapshot_prefix")
        if not _PREFIX.match(prefix) or prefix.startswith("/") or "//" in prefix:
            raise SettingsError(
                "snapshot_prefix",
                f"{prefix!r} is not a usable key prefix",
                "letters, digits and !_.*'()/- without a leading / or //, e.g. etcd-snapshots/",
            )
        raw_interval = get("snapshot_interval_seconds")
        try:
            interval = float(raw_interval)
        except ValueError:
            interval = -1.0
        if not 10.0 <= interval <= 86400.0:
            raise SettingsError(
                "snapshot_interval_seconds", f"{raw_interval!r} is not a usable interval", "seconds from 10 to 86400"
            )
        kms_key = get("snapshot_kms_key")
        if kms_key and not _KMS_KEY.match(kms_key):
            raise SettingsError(
                "snapshot_kms_key",
                f"{kms_key!r} is not a KMS key",
                "a key ARN, key id or alias (alias/name); empty for S3-managed keys (SSE-S3)",
            )
        try:
            tiers = parse_tiers(get("snapshot_retention"))
        except RetentionError as exc:
            raise SettingsError("snapshot_retention", str(exc), f"tiers like {DEFAULT_RETENTION}") from None
        return cls(bucket=bucket, prefix=prefix, interval_seconds=interval, kms_key=kms_key, tiers=tiers)
