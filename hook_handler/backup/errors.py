"""What can go wrong with a snapshot, each saying what to fix. None of them leaves a partial object behind."""

from __future__ import annotations

from hook_handler.exceptions import CoordinatorError


class SnapshotError(CoordinatorError):
    """Base of every snapshot error."""


class SnapshotStoreError(SnapshotError):
    """S3 refused a snapshot operation for a reason a setting or a permission must fix (a bucket that does not
    exist, no access, a KMS key that cannot be used); retrying cannot help."""

    def __init__(self, operation: str, bucket: str, code: str, message: str, fix: str) -> None:
        super().__init__(f"snapshot bucket {bucket!r}: {operation} refused ({code}: {message}); {fix}")
        self.operation = operation
        self.bucket = bucket
        self.code = code


class SnapshotNotFound(SnapshotError):
    """No snapshot object under that key (or none at all under the prefix)."""

    def __init__(self, bucket: str, key: str) -> None:
        what = f"no snapshot s3://{bucket}/{key}" if key else f"no snapshot in s3://{bucket}"
        super().__init__(f"{what}: name an existing snapshot key (or 'latest') from the bucket's listing")
        self.bucket = bucket
        self.key = key


class SnapshotCorrupt(SnapshotError):
    """The snapshot's bytes are not what etcd sent: its SHA-256 does not match, it is truncated, or the stream
    broke off. An upload in progress is aborted; a download is deleted."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"snapshot {where} is unusable: {problem}")
        self.where = where
        self.problem = problem


class SnapshotStreamBroken(SnapshotCorrupt):
    """etcd's snapshot stream ended early or answered an error midway (the member went away, a timeout): the
    upload was aborted; the next attempt starts over."""
