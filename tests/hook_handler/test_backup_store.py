"""Snapshots in (emulated) S3, on simulated time: the multipart upload, what it leaves when anything fails
(nothing), finding the newest with one short listing, retention's deletes, and the verified download."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from hook_handler.backup.errors import SnapshotCorrupt, SnapshotNotFound, SnapshotStoreError, SnapshotStreamBroken
from hook_handler.backup.naming import parse_key, snapshot_key
from hook_handler.backup.retention import parse_tiers
from hook_handler.backup.store import MIN_PART_SIZE, SnapshotMeta, SnapshotStore
from hook_handler.backup.stream import SnapshotStream
from hook_handler.exceptions import DeadlineReached
from hook_handler.retry import RetryPolicy
from infra.local import s3 as emulated_s3

BUCKET = "etcd-snapshots-test"
PREFIX = "cluster-a/"
CLUSTER = "15118495548433857066"
MiB = 1024 * 1024


def gateway(db: bytes, *, sha: bytes | None = None, stop_after: int | None = None) -> list[dict]:
    """etcd's messages for ``db`` (32 KiB each), then its digest; ``stop_after``: the stream breaks there."""
    out, sent = [], 0
    while sent < len(db):
        blob = db[sent : sent + 32 * 1024]
        sent += len(blob)
        out.append({"result": {"blob": base64.b64encode(blob).decode(), "remaining_bytes": str(len(db) - sent)}})
        if stop_after is not None and sent >= stop_after:
            return [*out, {"error": {"grpc_code": 14, "message": "transport is closing"}}]
    out.append({"result": {"blob": base64.b64encode(sha or hashlib.sha256(db).digest()).decode()}})
    return out


@pytest.fixture
def s3(local_aws):
    client = local_aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def store(local_aws, s3):
    return SnapshotStore(s3, BUCKET, PREFIX, RetryPolicy(local_aws.clock), local_aws.clock, part_size=MIN_PART_SIZE)


def meta(clock, revision: int = 452, at: float | None = None) -> SnapshotMeta:
    return SnapshotMeta(clock.now() if at is None else at, CLUSTER, "13668033151171901709", revision, "3.5.1")


def s3_calls(aws) -> list[str]:
    return [c.operation for c in aws.calls if c.service == "s3"]


def nothing_left(s3) -> bool:
    listed = s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)
    uploads = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    return listed == 0 and not uploads


def test_a_snapshot_goes_up_in_parts_as_etcdctl_would_save_it_with_its_metadata_and_digest(local_aws, s3, store):
    db = os.urandom(12 * MiB + 1234)
    stream = SnapshotStream(gateway(db), "http://m1:2379")
    done = store.upload(stream, meta(local_aws.clock), deadline=local_aws.clock.now() + 60)

    body = s3.get_object(Bucket=BUCKET, Key=done.snapshot.key)["Body"].read()
    assert body == db + hashlib.sha256(db).digest()  # what `etcdctl snapshot save` writes
    assert (done.db_size, done.sha256, done.parts) == (len(db), hashlib.sha256(db).hexdigest(), 3)
    head = s3.head_object(Bucket=BUCKET, Key=done.snapshot.key)
    assert head["Metadata"] == {
        "revision": "452",
        "db-size": str(len(db)),
        "etcd-version": "3.5.1",
        "cluster-id": "d1cfaf999eb97a2a",
        "member-id": "bdae9bbc11dd390d",
        "taken-at": "2026-01-01T00:00:00.000+00:00",
    }
    assert head["ServerSideEncryption"] == "AES256"  # SSE-S3 without a KMS key
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=done.snapshot.key)["TagSet"]
    assert tags == [{"Key": "sha256", "Value": hashlib.sha256(db).hexdigest()}]
    assert s3_calls(local_aws)[1:] == [
        "CreateMultipartUpload", "UploadPart", "UploadPart", "UploadPart", "CompleteMultipartUpload",
        "PutObjectTagging", "GetObject", "HeadObject", "GetObjectTagging",
    ]  # fmt: skip
    sizes = [int(c.params["PartNumber"]) for c in local_aws.calls if c.operation == "UploadPart"]
    assert sizes == [1, 2, 3]
    assert done.snapshot == parse_key(PREFIX, done.snapshot.key).with_size(len(db) + 32)


def test_with_a_kms_key_the_snapshot_is_encrypted_with_it(local_aws, s3):
    key = local_aws.client("kms").create_key()["KeyMetadata"]
    store = SnapshotStore(s3, BUCKET, PREFIX, RetryPolicy(local_aws.clock), local_aws.clock, kms_key=key["Arn"])
    db = os.urandom(1000)
    done = store.upload(SnapshotStream(gateway(db), "e"), meta(local_aws.clock), local_aws.clock.now() + 60)
    head = s3.head_object(Bucket=BUCKET, Key=done.snapshot.key)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key["Arn"])


@pytest.mark.parametrize(
    ("stream", "error", "text"),
    [
        (lambda db: gateway(db, sha=b"\1" * 32), SnapshotCorrupt, "SHA-256 mismatch"),
        (lambda db: gateway(db, stop_after=6 * MiB), SnapshotStreamBroken, "transport is closing"),
        (lambda db: gateway(db)[:-1], SnapshotStreamBroken, "before etcd's SHA-256"),
    ],
)
def test_a_snapshot_that_fails_its_check_or_breaks_off_is_aborted_and_leaves_nothing(
    local_aws, s3, store, stream, error, text
):
    db = os.urandom(11 * MiB)
    with pytest.raises(error, match=text):
        store.upload(SnapshotStream(stream(db), "http://m1:2379"), meta(local_aws.clock), local_aws.clock.now() + 60)
    calls = s3_calls(local_aws)
    assert "CompleteMultipartUpload" not in calls and calls[-1] == "AbortMultipartUpload"
    assert calls.count("UploadPart") >= 1  # parts had gone up before the problem showed
    assert nothing_left(s3)


def test_a_throttled_part_is_sent_again_on_the_simulated_clock(local_aws, s3, store):
    local_aws.faults.fail_next("UploadPart", 2, code="SlowDown", status=503)
    start = local_aws.clock.now()
    db = os.urandom(6 * MiB)
    done = store.upload(SnapshotStream(gateway(db), "e"), meta(local_aws.clock), start + 60)
    assert s3_calls(local_aws).count("UploadPart") == 4  # part 1 three times, then part 2
    assert local_aws.clock.now() > start  # the backoff slept on the emulator's clock
    assert s3.get_object(Bucket=BUCKET, Key=done.snapshot.key)["Body"].read()[:-32] == db


def test_an_upload_that_would_outlive_the_deadline_is_aborted(local_aws, s3, store):
    local_aws.faults.delay("UploadPart", 50.0)
    with pytest.raises(DeadlineReached):
        store.upload(
            SnapshotStream(gateway(os.urandom(12 * MiB)), "e"), meta(local_aws.clock), local_aws.clock.now() + 40
        )
    assert s3_calls(local_aws)[-1] == "AbortMultipartUpload" and nothing_left(s3)


def test_a_bucket_without_access_is_named_with_what_to_fix_and_nothing_is_written(local_aws, s3, store):
    emulated_s3.deny(local_aws, BUCKET)
    with pytest.raises(SnapshotStoreError) as info:
        store.upload(SnapshotStream(gateway(b"x" * 100), "e"), meta(local_aws.clock), local_aws.clock.now() + 60)
    text = str(info.value)
    assert info.value.code == "AccessDenied" and BUCKET in text and "s3:PutObject" in text
    assert s3_calls(local_aws)[-1] == "CreateMultipartUpload"  # refused at once: not retried
    emulated_s3.allow(local_aws, BUCKET)
    assert nothing_left(s3)


def test_a_bucket_that_does_not_exist_and_a_kms_key_that_does_not_are_named(local_aws, s3):
    clock = local_aws.clock
    missing = SnapshotStore(s3, "no-such-snapshot-bucket", PREFIX, RetryPolicy(clock), clock)
    with pytest.raises(SnapshotStoreError, match=r"no-such-snapshot-bucket.*NoSuchBucket.*snapshot_bucket"):
        missing.newest(clock.now() + 60)
    arn = "arn:aws:kms:us-east-1:123456789012:key/0b0b0b0b-0000-4000-8000-000000000000"
    bad_key = SnapshotStore(s3, BUCKET, PREFIX, RetryPolicy(clock), clock, kms_key=arn)
    with pytest.raises(SnapshotStoreError, match=r"KMS\.NotFoundException.*snapshot_kms_key"):
        bad_key.upload(SnapshotStream(gateway(b"x" * 100), "e"), meta(clock), clock.now() + 60)
    assert nothing_left(s3)


def put_snapshot(s3, at: float, revision: int = 1, body: bytes = b"db") -> str:
    key = snapshot_key(PREFIX, at, CLUSTER, revision)
    s3.put_object(Bucket=BUCKET, Key=key, Body=body + hashlib.sha256(body).digest())
    return key


def test_the_newest_snapshot_is_found_with_one_listing_of_one_key(local_aws, s3, store):
    now = local_aws.clock.now()
    keys = [put_snapshot(s3, now - age, revision=1000 - age) for age in (7200, 30, 600, 86400 * 3, 5)]
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "README.txt", Body=b"not a snapshot")
    del local_aws.calls[:]
    newest = store.newest(now + 60)
    assert newest is not None and newest.key == keys[-1] and newest.revision == 995
    (listing,) = [c for c in local_aws.calls if c.service == "s3"]
    assert (listing.operation, listing.params["MaxKeys"]) == ("ListObjectsV2", "1")


def test_objects_that_sort_before_the_snapshots_are_passed_over(local_aws, s3, store):
    now = local_aws.clock.now()
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "0-notes", Body=b"x")
    key = put_snapshot(s3, now - 100)
    assert store.newest(now + 60).key == key
    assert SnapshotStore(s3, BUCKET, "other/", RetryPolicy(local_aws.clock), local_aws.clock).newest(now + 60) is None


def test_retention_deletes_in_batches_of_1000_and_keeps_the_tiers(local_aws, s3, store):
    now = local_aws.clock.now()
    # 1200 snapshots, one a minute for 20 hours: the last hour all kept, then one per hour.
    keys = {put_snapshot(s3, now - 60 * i, revision=5000 - i): now - 60 * i for i in range(1200)}
    del local_aws.calls[:]
    deleted = store.prune(now, parse_tiers("all=1h,hourly=7d,daily=90d"), now + 600)
    left = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in page.get(
        "Contents", [])}  # fmt: skip
    assert left == set(keys) - {s.key for s in deleted}
    assert {k for k, t in keys.items() if now - t < 3600} <= left
    hours = {int(keys[k] // 3600) for k in left if now - keys[k] >= 3600}
    assert hours == {int(t // 3600) for t in keys.values() if now - t >= 3600}  # every hour still has one
    assert len(left) == 60 + len(hours)
    deletes = [c for c in local_aws.calls if c.operation == "DeleteObjects"]
    assert len(deletes) == 2  # 1000 + the rest: S3 takes at most 1000 keys per request


def test_a_download_is_verified_and_written_whole(local_aws, s3, store, tmp_path: Path):
    db = os.urandom(3 * MiB)
    done = store.upload(SnapshotStream(gateway(db), "e"), meta(local_aws.clock), local_aws.clock.now() + 60)
    target = tmp_path / "snapshot.db"
    got = store.download("latest", str(target), local_aws.clock.now() + 60)
    assert target.read_bytes() == db + hashlib.sha256(db).digest()
    assert (got.db_size, got.sha256, got.snapshot.key) == (len(db), done.sha256, done.snapshot.key)
    assert got.metadata["revision"] == "452"


@pytest.mark.parametrize(
    ("damage", "text"),
    [
        (lambda b: b[: len(b) // 2], "truncated or padded"),
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "SHA-256 mismatch"),
        (lambda b: b[:20], "too short"),
    ],
)
def test_a_damaged_snapshot_is_refused_and_no_file_is_left(local_aws, s3, store, tmp_path: Path, damage, text):
    db = os.urandom(200_000)
    done = store.upload(SnapshotStream(gateway(db), "e"), meta(local_aws.clock), local_aws.clock.now() + 60)
    whole = s3.get_object(Bucket=BUCKET, Key=done.snapshot.key)
    s3.put_object(Bucket=BUCKET, Key=done.snapshot.key, Body=damage(whole["Body"].read()), Metadata=whole["Metadata"])
    s3.put_object_tagging(
        Bucket=BUCKET, Key=done.snapshot.key, Tagging={"TagSet": [{"Key": "sha256", "Value": done.sha256}]}
    )
    with pytest.raises(SnapshotCorrupt, match=text):
        store.download(done.snapshot.key, str(tmp_path / "snapshot.db"), local_aws.clock.now() + 60)
    assert list(tmp_path.iterdir()) == []


def test_a_snapshot_whose_tag_disagrees_is_refused(local_aws, s3, store, tmp_path: Path):
    done = store.upload(SnapshotStream(gateway(b"y" * 5000), "e"), meta(local_aws.clock), local_aws.clock.now() + 60)
    s3.put_object_tagging(Bucket=BUCKET, Key=done.snapshot.key, Tagging={"TagSet": [{"Key": "sha256", "Value": "00"}]})
    with pytest.raises(SnapshotCorrupt, match="its tag says 00"):
        store.download(done.snapshot.key, str(tmp_path / "s.db"), local_aws.clock.now() + 60)


def test_a_key_that_does_not_exist_and_an_empty_bucket_say_so(local_aws, s3, store, tmp_path: Path):
    with pytest.raises(SnapshotNotFound, match=f"no snapshot s3://{BUCKET}/{PREFIX}nope.db"):
        store.download(PREFIX + "nope.db", str(tmp_path / "s.db"), local_aws.clock.now() + 60)
    with pytest.raises(SnapshotNotFound, match=f"no snapshot in s3://{BUCKET}"):
        store.download("latest", str(tmp_path / "s.db"), local_aws.clock.now() + 60)
    assert list(tmp_path.iterdir()) == []
