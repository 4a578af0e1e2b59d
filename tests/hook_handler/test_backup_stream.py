"""etcd's snapshot stream as the gateway writes it (hook_handler.backup.stream): the bytes released are exactly
what ``etcdctl snapshot save`` writes, and every way the stream can be wrong stops it before the digest."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from hook_handler.backup.errors import SnapshotCorrupt, SnapshotStreamBroken
from hook_handler.backup.stream import SnapshotStream, parse_status


def messages(db: bytes, sizes: list[int], sha: bytes | None = None) -> list[dict]:
    """The gateway's messages for ``db`` cut into ``sizes`` (as etcd does: remaining_bytes after each, zero
    left out as proto3 JSON does), then the digest."""
    out, sent = [], 0
    for size in sizes:
        blob = db[sent : sent + size]
        sent += len(blob)
        result = {"blob": base64.b64encode(blob).decode()}
        if len(db) - sent:
            result["remaining_bytes"] = str(len(db) - sent)
        out.append({"result": result})
    digest = hashlib.sha256(db).digest() if sha is None else sha
    out.append({"result": {"blob": base64.b64encode(digest).decode()}})
    return out


def cuts(n: int, size: int = 32 * 1024) -> list[int]:
    return [size] * (n // size) + ([n % size] if n % size else [])


@given(st.binary(min_size=1, max_size=5000), st.integers(1, 700))
@hsettings(max_examples=200, deadline=None)
def test_the_bytes_released_are_the_database_then_its_sha256_however_it_is_cut(db, size):
    stream = SnapshotStream(messages(db, cuts(len(db), size)), "e")
    assert b"".join(stream) == db + hashlib.sha256(db).digest()
    assert (stream.total, stream.received, stream.sha256) == (len(db), len(db), hashlib.sha256(db).hexdigest())


def test_a_last_data_message_of_exactly_the_buffer_size_is_not_taken_for_the_digest():
    db = os.urandom(64 * 1024)  # two full 32 KiB messages: the last one says remaining 0, like the digest
    assert b"".join(SnapshotStream(messages(db, cuts(len(db))), "e")) == db + hashlib.sha256(db).digest()


def consume(stream: SnapshotStream) -> list[bytes]:
    seen: list[bytes] = []
    for chunk in stream:
        seen.append(chunk)
    return seen


def test_a_digest_that_does_not_match_is_refused_and_never_released():
    db = os.urandom(100_000)
    released: list[bytes] = []
    with pytest.raises(SnapshotCorrupt, match="SHA-256 mismatch"):
        for chunk in SnapshotStream(messages(db, cuts(len(db)), sha=b"\0" * 32), "m1"):
            released.append(chunk)
    assert b"".join(released) == db  # the data passed, the wrong digest did not


def test_a_corrupted_byte_is_caught_by_the_digest():
    db = bytearray(os.urandom(70_000))
    good = messages(bytes(db), cuts(len(db)))
    db[40_000] ^= 1
    bad = messages(bytes(db), cuts(len(db)))[:-1] + good[-1:]
    with pytest.raises(SnapshotCorrupt, match="SHA-256 mismatch"):
        consume(SnapshotStream(bad, "e"))


@pytest.mark.parametrize(
    ("cut", "error", "text"),
    [
        (lambda m: m[:-1], SnapshotStreamBroken, "before etcd's SHA-256"),  # digest never came
        (lambda m: m[:1], SnapshotStreamBroken, "the stream ended after 32768 of 100000"),  # broke off midway
        (lambda m: m[:1] + m[2:], SnapshotCorrupt, "message order broken"),  # a message lost
        (lambda m: [*m, m[-1]], SnapshotCorrupt, "more after the SHA-256"),
        (lambda m: [m[0], {"error": {"grpc_code": 14, "message": "transport is closing"}}], SnapshotStreamBroken,
         "transport is closing"),
        (lambda m: [*m[:-1], {"result": {"blob": base64.b64encode(b"short").decode()}}], SnapshotCorrupt,
         "not etcd's 32-byte SHA-256"),
        (lambda m: [{"result": {"blob": "not base64!"}}], SnapshotCorrupt, "does not decode"),
        (lambda m: [{"result": {}}], SnapshotCorrupt, "empty database"),
    ],
)  # fmt: skip
def test_a_stream_that_is_not_etcds_whole_snapshot_is_refused(cut, error, text):
    db = os.urandom(100_000)
    with pytest.raises(error, match=text):
        consume(SnapshotStream(cut(messages(db, cuts(len(db)))), "e"))


def test_status_is_read_as_the_gateway_writes_it():
    out = {
        "header": {"cluster_id": "15118495548433857066", "member_id": "13668033151171901709", "revision": "452"},
        "version": "3.5.1",
        "dbSize": "146862080",
        "leader": "13668033151171901709",
    }
    status = parse_status("http://e:2379", out)
    assert (status.revision, status.db_size, status.version, status.has_leader, status.learner) == (
        452, 146862080, "3.5.1", True, False,
    )  # fmt: skip
    assert not parse_status("e", {"header": {}, "leader": "0"}).has_leader


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not out[-1] & 0x80:
            return bytes(out)


@given(st.binary(max_size=300), st.integers(0, 2**63 - 1), st.binary(max_size=2000), st.text(max_size=10))
@hsettings(max_examples=200, deadline=None)
def test_a_grpc_snapshot_response_decodes_to_its_blob_and_remaining_bytes(header, remaining, blob, version):
    from hook_handler.backup.grpc import decode_snapshot_response

    message = b"\x0a" + _varint(len(header)) + header  # 1: ResponseHeader, skipped
    if remaining:
        message += b"\x10" + _varint(remaining)  # 2: remaining_bytes (zero left out, as protobuf does)
    message += b"\x1a" + _varint(len(blob)) + blob  # 3: blob
    message += b"\x22" + _varint(len(version.encode())) + version.encode()  # 4: version (etcd 3.5.x later)
    assert decode_snapshot_response(message) == (blob, remaining)


@pytest.mark.parametrize("message", [b"\x1a\x05abc", b"\x10\xff", b"\x0f"])
def test_a_grpc_message_cut_short_or_of_an_unknown_wire_type_does_not_decode(message):
    from hook_handler.backup.grpc import decode_snapshot_response

    with pytest.raises(ValueError):
        decode_snapshot_response(message)
