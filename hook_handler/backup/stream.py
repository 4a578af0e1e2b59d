"""etcd's snapshot, read through its JSON gateway (``POST /v3/maintenance/snapshot``) as it streams.

etcd (``v3rpc/maintenance.go``, 3.5) sends the backend database in messages of up to 32 KiB, each with
``remaining_bytes`` (bytes still to come after it), then one last message whose blob is the SHA-256 of all the
database bytes. ``etcdctl snapshot save`` writes every blob to the file, that digest included, and
``etcdutl snapshot restore`` checks it (a file whose size is 32 more than a multiple of 512 carries it). So a
snapshot here is the same bytes: the database, then its 32-byte digest, and ``SnapshotStream`` checks the
digest, the announced size and the message order while the bytes pass. The digest is released only once it
has matched: a consumer that stops at an exception (uploads are aborted then) never stores a snapshot that
failed its check.

The gateway writes one JSON object per line (``{"result": {...}}``; ``{"error": {...}}`` when etcd fails
midway), bytes in base64; proto3 leaves zero values out (``remaining_bytes`` of the last messages).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hook_handler.backup.errors import SnapshotCorrupt, SnapshotStreamBroken
from hook_handler.etcd import EtcdTlsError, EtcdUnavailable, HttpTransport, Transport, certificate_problem

SHA_SIZE = 32
READ_CHUNK = 1 << 16  # bytes per socket read; a gateway line is ~44 KB


@dataclass(frozen=True)
class EtcdStatus:
    """What one member said of itself just before its snapshot (``/v3/maintenance/status``)."""

    endpoint: str
    cluster_id: str  # decimal, as the gateway writes it
    member_id: str
    revision: int  # the store's revision then: the snapshot holds at least this one
    version: str  # the member's etcd version, e.g. 3.5.1
    db_size: int
    leader: str = "0"  # the leader's member id as this member sees it; "0": none
    learner: bool = False

    @property
    def has_leader(self) -> bool:
        return self.leader not in ("", "0")


def read_status(transport: Transport, endpoint: str, timeout: float) -> EtcdStatus:
    """One member's status (raises ``EtcdUnavailable``/``EtcdRefused``/``EtcdTlsError`` as the transport does)."""
    return parse_status(endpoint, transport.post(endpoint, "/v3/maintenance/status", {}, timeout))


def parse_status(endpoint: str, out: Mapping[str, Any]) -> EtcdStatus:
    header = out.get("header", {}) or {}
    return EtcdStatus(
        endpoint=endpoint,
        cluster_id=str(header.get("cluster_id", "")),
        member_id=str(header.get("member_id", "")),
        revision=int(header.get("revision", 0) or 0),
        version=str(out.get("version", "") or ""),
        db_size=int(out.get("dbSize", 0) or 0),
        leader=str(out.get("leader", "") or "0"),
        learner=bool(out.get("isLearner", False)),
    )


class SnapshotStream:
    """The snapshot's bytes from etcd's messages (the gateway's JSON objects, or ``(blob, remaining_bytes)``
    pairs decoded from gRPC): every database blob, then the 32-byte digest once
    it matched. Raises ``SnapshotCorrupt`` (digest, size or order wrong) or ``SnapshotStreamBroken`` (an error
    message, or the stream ended early) where the problem shows; after a full iteration ``total`` (database
    bytes) and ``sha256`` (hex) are set.

    >>> import base64, hashlib
    >>> db = b"x" * 100
    >>> msgs = [{"result": {"blob": base64.b64encode(db[:60]).decode(), "remaining_bytes": "40"}},
    ...         {"result": {"blob": base64.b64encode(db[60:]).decode()}},
    ...         {"result": {"blob": base64.b64encode(hashlib.sha256(db).digest()).decode()}}]
    >>> stream = SnapshotStream(msgs, "test")
    >>> b"".join(stream) == db + hashlib.sha256(db).digest(), stream.total
    (True, 100)
    """

    def __init__(self, messages: Iterable[Mapping[str, Any] | tuple[bytes, int]], where: str) -> None:
        self._messages = messages
        self.where = where
        self.total: int | None = None
        self.received = 0
        self.sha256 = ""

    def __iter__(self) -> Iterator[bytes]:
        digest = hashlib.sha256()
        messages = iter(self._messages)
        for message in messages:
            blob, remaining = self._result(message)
            if self.total is None:
                self.total = len(blob) + remaining
                if self.total == 0:
                    raise SnapshotCorrupt(self.where, "etcd announced an empty database")
            elif self.received + len(blob) + remaining != self.total:
                raise SnapshotCorrupt(
                    self.where,
                    f"message order broken: {self.received} + {len(blob)} bytes with {remaining} to come is not "
                    f"the {self.total} announced",
                )
            digest.update(blob)
            self.received += len(blob)
            if blob:
                yield blob
            if self.received == self.total:
                break
        else:
            raise SnapshotStreamBroken(self.where, self._short("the stream ended"))
        trailer = next(messages, None)
        if trailer is None:
            raise SnapshotStreamBroken(self.where, "the stream ended before etcd's SHA-256 of the database")
        sha, remaining = self._result(trailer)
        if len(sha) != SHA_SIZE or remaining:
            raise SnapshotCorrupt(self.where, f"after the database came {len(sha)} bytes, not etcd's 32-byte SHA-256")
        if sha != digest.digest():
            raise SnapshotCorrupt(
                self.where, f"SHA-256 mismatch: etcd sent {sha.hex()}, the bytes received hash to {digest.hexdigest()}"
            )
        extra = next(messages, None)
        if extra is not None:
            raise SnapshotCorrupt(self.where, "etcd sent more after the SHA-256 of the database")
        self.sha256 = sha.hex()
        yield sha

    def _short(self, what: str) -> str:
        return f"{what} after {self.received} of {self.total if self.total is not None else '?'} database bytes"

    def _result(self, message: Mapping[str, Any] | tuple[bytes, int]) -> tuple[bytes, int]:
        if isinstance(message, tuple):  # decoded already (gRPC: ``grpc.decode_snapshot_response``)
            return message
        if "error" in message:
            error = message.get("error") or {}
            text = error.get("message", error) if isinstance(error, Mapping) else error
            raise SnapshotStreamBroken(self.where, self._short(f"etcd answered an error ({text})"))
        result = message.get("result")
        if not isinstance(result, Mapping):
            raise SnapshotCorrupt(self.where, "a stream message without a result")
        try:
            # not validate=True: strict decoding is several times slower, and a byte changed on the way
            # fails the SHA-256 check anyway
            blob = base64.b64decode(result.get("blob", "") or "")
            remaining = int(result.get("remaining_bytes", 0) or 0)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise SnapshotCorrupt(self.where, f"a stream message that does not decode ({exc})") from None
        return blob, remaining


class GatewaySnapshot:
    """``POST /v3/maintenance/snapshot`` on one endpoint, with the transport's TLS (CA and client certificate):
    a context manager whose ``stream`` is the ``SnapshotStream``; the connection is closed on exit.

    ``read_timeout`` bounds each wait for bytes (not the whole transfer): a member that stops sending fails
    the stream instead of holding the caller."""

    def __init__(
        self, transport: HttpTransport, endpoint: str, *, connect_timeout: float = 5.0, read_timeout: float = 30.0
    ) -> None:
        self.transport = transport
        self.endpoint = endpoint
        self.timeouts = (connect_timeout, read_timeout)
        self._response: Any = None
        self.stream: SnapshotStream = SnapshotStream((), endpoint)

    def __enter__(self) -> GatewaySnapshot:
        import requests

        url = self.endpoint.rstrip("/") + "/v3/maintenance/snapshot"
        t = self.transport
        try:
            response = t.session.post(url, json={}, stream=True, timeout=self.timeouts, verify=t.verify, cert=t.cert)
        except requests.exceptions.SSLError as exc:
            reason = certificate_problem(exc)
            if reason is not None:
                raise EtcdTlsError(self.endpoint, reason) from None
            raise EtcdUnavailable(self.endpoint, f"SSLError: {str(exc)[:200]}") from None
        except requests.RequestException as exc:
            raise EtcdUnavailable(self.endpoint, f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if response.status_code != 200:
            text = response.text[:300]
            response.close()
            raise EtcdUnavailable(self.endpoint, f"snapshot refused: HTTP {response.status_code} {text}")
        self._response = response
        self.stream = SnapshotStream(self._messages(response), self.endpoint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.close()

    def _messages(self, response: Any) -> Iterator[Mapping[str, Any]]:
        import requests

        try:
            for line in response.iter_lines(chunk_size=READ_CHUNK):
                if not line:
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    raise SnapshotCorrupt(self.endpoint, "a stream line that is not JSON") from None
                if not isinstance(message, dict):
                    raise SnapshotCorrupt(self.endpoint, "a stream line that is not a JSON object")
                yield message
        except requests.RequestException as exc:  # connection reset, read timeout, a chunk cut short
            raise SnapshotStreamBroken(self.endpoint, f"the stream broke off ({type(exc).__name__}: {exc})") from None


class ReadAhead:
    """``chunks`` read on a thread of their own, at most ``limit`` bytes ahead of the consumer: reading etcd's
    stream (network, JSON, base64, SHA-256) overlaps with the consumer's uploads instead of waiting for each.
    The thread only reads (it never sleeps on the clock, so simulated time stays the consumer's); what it raises
    is raised to the consumer in order. ``total`` is the underlying stream's. Stop early with ``close()`` (then
    close the connection, as ``GatewaySnapshot`` does on exit, to end a read in progress)."""

    _END = object()

    def __init__(self, chunks: Iterable[bytes], limit: int) -> None:
        self._chunks = chunks
        self._slots = threading.BoundedSemaphore(max(1, limit // (32 * 1024)))  # etcd sends 32 KiB a message
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def total(self) -> int | None:
        return getattr(self._chunks, "total", None)

    def __iter__(self) -> Iterator[bytes]:
        self._thread = threading.Thread(target=self._read, name="snapshot-read-ahead", daemon=True)
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                self._slots.release()
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(ValueError):
            self._slots.release()  # wake a reader waiting for room

    def _read(self) -> None:
        try:
            for chunk in self._chunks:
                while not self._slots.acquire(timeout=0.5):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                self._queue.put(chunk)
            self._queue.put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._queue.put(exc)
