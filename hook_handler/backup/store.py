"""Snapshots in S3: multipart upload from a stream of bytes (memory bounded by the part size), the newest found
with one short listing, retention pruning with DeleteObjects, and a verified, streamed download.

Every call goes through the coordinator's ``RetryPolicy`` (tenacity, on the injected clock); an S3 refusal that
retrying cannot fix becomes a ``SnapshotStoreError`` naming the bucket, the operation and what to change. An
upload that fails for any reason — the stream, S3, the deadline — is aborted (AbortMultipartUpload), so no
object and no stored parts are left (the bucket's lifecycle rule also expires incomplete uploads). Objects
appear in S3 only on CompleteMultipartUpload, which comes after etcd's digest matched: every listed snapshot
passed its check.

Object metadata (set when the upload starts, after etcd's first message): ``revision``, ``db-size`` (bytes,
without the 32-byte digest),
``etcd-version``, ``cluster-id``, ``member-id`` (hex), ``taken-at`` (ISO 8601). The database's SHA-256 is known
only at the end, after every part went: it is the object's last 32 bytes (etcd's own format, checked by
``etcdutl snapshot restore``) and the object's tag ``sha256`` (hex), written once the upload completed.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from hook_handler.backup.errors import SnapshotCorrupt, SnapshotError, SnapshotNotFound, SnapshotStoreError
from hook_handler.backup.naming import Snapshot, parse_key, snapshot_key
from hook_handler.backup.retention import Tier, prune
from hook_handler.clock import Clock
from hook_handler.exceptions import DeadlineReached
from hook_handler.retry import RetryPolicy, error_code, error_message

T = TypeVar("T")

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3: every part but the last (EntityTooSmall otherwise)
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MiB
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
SHA_SIZE = 32
SHA_TAG = "sha256"
DOWNLOAD_CHUNK = 1 * MiB

# Codes that mean a setting or a permission is wrong (retrying cannot help), and what to change.
_FIX = {
    "NoSuchBucket": "create the bucket, or set snapshot_bucket to the stack's snapshot bucket",
    "AccessDenied": "taking snapshots needs s3:ListBucket on the bucket and s3:PutObject, s3:AbortMultipartUpload, "
    "s3:PutObjectTagging and s3:DeleteObject under snapshot_prefix (restoring: s3:GetObject and "
    "s3:GetObjectTagging), and kms:GenerateDataKey and kms:Decrypt on snapshot_kms_key; check the role and the "
    "bucket policy",
    "AllAccessDisabled": "the bucket is disabled: set snapshot_bucket to a bucket this account can use",
    "PermanentRedirect": "the bucket is in another region: use a bucket in the function's region",
    "AuthorizationHeaderMalformed": "the bucket is in another region: use a bucket in the function's region",
    "KMS.NotFoundException": "set snapshot_kms_key to an existing KMS key (ARN, key id or alias) in this region",
    "KMS.DisabledException": "enable the KMS key named by snapshot_kms_key, or name another",
    "KMS.KMSInvalidStateException": "the KMS key named by snapshot_kms_key is pending deletion or unusable",
    "KMS.AccessDeniedException": "allow the function's role kms:GenerateDataKey and kms:Decrypt on snapshot_kms_key",
    "InvalidArgument": "check snapshot_kms_key and snapshot_prefix",
}


@dataclass(frozen=True)
class SnapshotMeta:
    """What a snapshot's object says of it (its metadata), known before the first byte is sent."""

    taken_at: float
    cluster_id: str  # decimal, as the gateway writes it
    member_id: str  # decimal
    revision: int
    etcd_version: str

    def metadata(self) -> dict[str, str]:
        return {
            "revision": str(self.revision),
            "etcd-version": self.etcd_version,
            "cluster-id": format(int(self.cluster_id), "x"),
            "member-id": format(int(self.member_id), "x") if self.member_id.isdigit() else self.member_id,
            "taken-at": datetime.fromtimestamp(self.taken_at, UTC).isoformat(timespec="milliseconds"),
        }


@dataclass(frozen=True)
class Uploaded:
    """A snapshot stored: its object, the database's size and SHA-256, parts and bytes sent."""

    snapshot: Snapshot
    db_size: int
    sha256: str
    parts: int


@dataclass(frozen=True)
class Downloaded:
    """A snapshot written to ``path`` (database and trailing digest, as etcdctl saves it) and verified."""

    path: str
    snapshot: Snapshot | None
    db_size: int
    sha256: str
    metadata: dict[str, str]


class SnapshotStore:
    """The snapshots under ``prefix`` in ``bucket``.

    Example (``s3`` a boto3 client)::

        store = SnapshotStore(s3, "my-bucket", "etcd-snapshots/", RetryPolicy(clock), clock)
        store.newest(deadline)  # None before the first snapshot
    """

    def __init__(
        self,
        s3: Any,
        bucket: str,
        prefix: str,
        retry: RetryPolicy,
        clock: Clock,
        *,
        kms_key: str = "",
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part size {part_size} is outside S3's {MIN_PART_SIZE}..{MAX_PART_SIZE} bytes")
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.retry = retry
        self.clock = clock
        self.kms_key = kms_key
        self.part_size = part_size

    # -- reading the listing ------------------------------------------------------------------
    def newest(self, deadline: float) -> Snapshot | None:
        """The newest snapshot: the first key S3 lists under the prefix (keys sort newest first). Objects whose
        key is not a snapshot's are passed over; normally one ListObjectsV2 of one key answers."""
        for snapshot in self._listing(deadline, page_size=1):
            return snapshot
        return None

    def snapshots(self, deadline: float) -> list[Snapshot]:
        """Every snapshot under the prefix, newest first."""
        return list(self._listing(deadline, page_size=1000))

    def _listing(self, deadline: float, page_size: int) -> Iterator[Snapshot]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix, "MaxKeys": page_size}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("ListObjectsV2", self.s3.list_objects_v2, deadline, **kwargs)
            for item in page.get("Contents", []) or []:
                snapshot = parse_key(self.prefix, item["Key"])
                if snapshot is not None:
                    yield snapshot.with_size(int(item.get("Size", 0)))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            page_size = 1000  # past foreign objects: read on in full pages

    # -- writing ------------------------------------------------------------------------------
    def upload(self, data: Iterable[bytes], meta: SnapshotMeta, deadline: float) -> Uploaded:
        """Store the snapshot whose bytes ``data`` yields (the database, then etcd's 32-byte SHA-256, as
        ``SnapshotStream`` releases them; its ``total`` becomes the ``db-size`` metadata) as one object, in
        parts of ``part_size`` bytes: at most one part is held at a time. Any failure aborts the upload and is
        re-raised; nothing is left in the bucket."""
        key = snapshot_key(self.prefix, meta.taken_at, meta.cluster_id, meta.revision)
        chunks = iter(data)
        first = next(chunks, b"")  # a stream that fails at once fails before anything exists in S3
        metadata = meta.metadata()
        total = getattr(data, "total", None)  # SnapshotStream knows the database's size from its first message
        if isinstance(total, int):
            metadata["db-size"] = str(total)
        create: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": "application/octet-stream",
            "Metadata": metadata,
            "ChecksumAlgorithm": "CRC32",  # S3 checks every part's bytes on arrival
        }
        if self.kms_key:
            create.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=self.kms_key)
        else:
            create["ServerSideEncryption"] = "AES256"
        upload_id = self._call("CreateMultipartUpload", self.s3.create_multipart_upload, deadline, **create)["UploadId"]
        parts: list[dict[str, Any]] = []
        tail = b""  # the last SHA_SIZE bytes seen: etcd's digest once the data ends
        size = 0
        try:
            buffer = bytearray()
            for chunk in itertools.chain((first,), chunks):
                buffer += chunk
                size += len(chunk)
                tail = (tail + chunk)[-SHA_SIZE:]
                if len(buffer) >= self.part_size:
                    self._part(key, upload_id, parts, buffer, deadline)
                    buffer = bytearray()
            if buffer or not parts:
                self._part(key, upload_id, parts, buffer, deadline)
            del buffer
            if size <= SHA_SIZE:
                raise SnapshotCorrupt(f"s3://{self.bucket}/{key}", f"only {size} bytes arrived")
            self._complete(key, upload_id, parts, deadline)
        except BaseException:
            self._abort(key, upload_id)
            raise
        sha = tail.hex()
        snapshot = Snapshot(key, meta.taken_at, format(int(meta.cluster_id), "x"), meta.revision, size)
        tags = {"TagSet": [{"Key": SHA_TAG, "Value": sha}]}
        self._call("PutObjectTagging", self.s3.put_object_tagging, deadline, Bucket=self.bucket, Key=key, Tagging=tags)
        return Uploaded(snapshot=snapshot, db_size=size - SHA_SIZE, sha256=sha, parts=len(parts))

    def _part(self, key: str, upload_id: str, parts: list[dict[str, Any]], body: bytearray, deadline: float) -> None:
        number = len(parts) + 1
        if number > MAX_PARTS:
            raise SnapshotError(
                f"snapshot s3://{self.bucket}/{key} needs more than {MAX_PARTS} parts of {self.part_size} bytes: "
                "raise the part size"
            )
        if self.clock.now() >= deadline:
            raise DeadlineReached(f"snapshot upload stopped at part {number}: the invocation's time is nearly up")
        answer = self._call(
            "UploadPart",
            self.s3.upload_part,
            deadline,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="CRC32",
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC32": answer.get("ChecksumCRC32")})

    def _complete(self, key: str, upload_id: str, parts: list[dict[str, Any]], deadline: float) -> None:
        listed = [{k: v for k, v in p.items() if v is not None} for p in parts]
        self._call(
            "CompleteMultipartUpload",
            self.s3.complete_multipart_upload,
            deadline,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": listed},
        )

    def _abort(self, key: str, upload_id: str) -> None:
        """Best effort, bounded: the bucket's lifecycle rule removes an upload this could not."""
        with contextlib.suppress(ClientError, SnapshotError, OSError):
            self.retry.call(
                self.s3.abort_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                deadline=self.clock.now() + 30.0,
                what="AbortMultipartUpload",
            )

    # -- retention ----------------------------------------------------------------------------
    def prune(self, now: float, tiers: tuple[Tier, ...], deadline: float) -> list[Snapshot]:
        """Delete what the retention tiers do not keep (never the newest); returns the snapshots deleted."""
        listed = self.snapshots(deadline)
        doomed_times = prune((s.taken_at for s in listed), now, tiers)
        doomed = [s for s in listed if s.taken_at in doomed_times]
        for start in range(0, len(doomed), DELETE_BATCH):
            batch = doomed[start : start + DELETE_BATCH]
            answer = self._call(
                "DeleteObjects",
                self.s3.delete_objects,
                deadline,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": s.key} for s in batch], "Quiet": True},
            )
            errors = answer.get("Errors") or []
            if errors:
                first = errors[0]
                raise SnapshotStoreError(
                    "DeleteObjects",
                    self.bucket,
                    str(first.get("Code", "")),
                    f"{len(errors)} of {len(batch)} keys not deleted, e.g. {first.get('Key')}: {first.get('Message')}",
                    _FIX.get(str(first.get("Code", "")), "check the role's s3:DeleteObject on the snapshot prefix"),
                )
        return doomed

    # -- reading a snapshot -------------------------------------------------------------------
    def download(self, key: str, path: str, deadline: float) -> Downloaded:
        """Write the snapshot ``key`` (or ``latest``) to ``path`` as it streams (one chunk in memory), check
        it — size against its metadata, the database's SHA-256 against etcd's trailing digest and the
        ``sha256`` tag — and only then move it into place. Nothing is left at ``path`` on a failure."""
        if key == "latest":
            newest = self.newest(deadline)
            if newest is None:
                raise SnapshotNotFound(self.bucket, "")
            key = newest.key
        where = f"s3://{self.bucket}/{key}"
        try:
            answer = self._call("GetObject", self.s3.get_object, deadline, Bucket=self.bucket, Key=key)
        except SnapshotStoreError as exc:
            if exc.code in ("NoSuchKey", "404"):
                raise SnapshotNotFound(self.bucket, key) from None
            raise
        metadata = {k.lower(): v for k, v in (answer.get("Metadata") or {}).items()}
        directory = os.path.dirname(os.path.abspath(path))
        fd, partial = tempfile.mkstemp(prefix=".snapshot-", dir=directory)
        try:
            digest, db_size, trailer = hashlib.sha256(), 0, b""
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(answer["Body"], where):
                    out.write(chunk)
                    # everything but the last SHA_SIZE bytes is the database
                    joined = trailer + chunk
                    body, trailer = joined[:-SHA_SIZE], joined[-SHA_SIZE:]
                    digest.update(body)
                    db_size += len(body)
                out.flush()
                os.fsync(out.fileno())
            _verify(where, metadata, db_size, digest.hexdigest(), trailer, self._tag(key, deadline))
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        return Downloaded(path, parse_key(self.prefix, key), db_size, digest.hexdigest(), metadata)

    def _tag(self, key: str, deadline: float) -> str | None:
        answer = self._call("GetObjectTagging", self.s3.get_object_tagging, deadline, Bucket=self.bucket, Key=key)
        return next((t["Value"] for t in answer.get("TagSet", []) if t.get("Key") == SHA_TAG), None)

    # -- every call ---------------------------------------------------------------------------
    def _call(self, operation: str, fn: Callable[..., T], deadline: float, **kwargs: Any) -> T:
        try:
            return self.retry.call(fn, deadline=deadline, what=operation, **kwargs)
        except ClientError as exc:
            code = error_code(exc) or "error"
            fix = _FIX.get(code) or ("a KMS key problem: check snapshot_kms_key" if code.startswith("KMS.") else "")
            raise SnapshotStoreError(
                operation, self.bucket, code, error_message(exc)[:300], fix or "see the error and the bucket's setup"
            ) from None


def _chunks(body: Any, where: str) -> Iterator[bytes]:
    """The object's bytes as they arrive; a connection that breaks is a truncated snapshot."""
    from botocore.exceptions import BotoCoreError

    try:
        yield from body.iter_chunks(DOWNLOAD_CHUNK)
    except (BotoCoreError, OSError) as exc:
        raise SnapshotCorrupt(where, f"the download broke off ({type(exc).__name__}: {exc})") from None
    finally:
        body.close()


def _verify(
    where: str, metadata: dict[str, str], db_size: int, sha256: str, trailer: bytes, tagged: str | None
) -> None:
    if len(trailer) != SHA_SIZE:
        raise SnapshotCorrupt(where, f"{db_size + len(trailer)} bytes is too short to be an etcd snapshot")
    expected = metadata.get("db-size")
    if expected is not None and expected.isdigit() and int(expected) != db_size:
        raise SnapshotCorrupt(where, f"truncated or padded: {db_size} database bytes, its metadata says {expected}")
    if trailer.hex() != sha256:
        raise SnapshotCorrupt(where, f"SHA-256 mismatch: the database hashes to {sha256}, etcd's digest in it says "
                              f"{trailer.hex()}")  # fmt: skip
    if tagged is not None and tagged.lower() != sha256:
        raise SnapshotCorrupt(where, f"SHA-256 mismatch: the database hashes to {sha256}, its tag says {tagged}")
