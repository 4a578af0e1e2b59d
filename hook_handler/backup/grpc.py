"""etcd's snapshot over gRPC itself (``etcdserverpb.Maintenance/Snapshot`` on the client port), the way
``etcdctl snapshot save`` reads it: HTTP/2 (``h2``, pure Python), the transport's TLS (CA, client certificate,
ALPN ``h2``), protobuf messages decoded by hand (two fields of ``SnapshotResponse``).

Why not only the JSON gateway (``stream.GatewaySnapshot``): the gateway makes etcd marshal every 32 KiB message
to JSON and base64 — three to four times etcd's own CPU for a snapshot — and makes the reader undo it; over gRPC a
snapshot streams at about the speed of ``etcdctl``. The messages are the same, so the same ``SnapshotStream``
checks them.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from hook_handler.backup.errors import SnapshotCorrupt, SnapshotStreamBroken
from hook_handler.backup.stream import SnapshotStream
from hook_handler.etcd import EtcdRefused, EtcdTlsError, EtcdUnavailable, HttpTransport, certificate_problem

PATH = "/etcdserverpb.Maintenance/Snapshot"
WINDOW = 16 * 1024 * 1024  # HTTP/2 flow-control window offered: etcd never waits for the reader's updates
RECV = 1 << 20


def _varint(data: bytes | memoryview, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def decode_snapshot_response(message: bytes) -> tuple[bytes, int]:
    """``(blob, remaining_bytes)`` of a protobuf ``SnapshotResponse`` (header 1, remaining_bytes 2, blob 3,
    version 4; unknown fields skipped as protobuf does).

    >>> decode_snapshot_response(bytes([0x10, 0x05, 0x1A, 0x03]) + b"abc")
    (b'abc', 5)
    """
    view = memoryview(message)
    blob, remaining, at = b"", 0, 0
    while at < len(view):
        key, at = _varint(view, at)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(view, at)
            if field == 2:
                remaining = value
        elif wire == 2:
            size, at = _varint(view, at)
            if at + size > len(view):
                raise ValueError("truncated field")
            if field == 3:
                blob = bytes(view[at : at + size])
            at += size
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        else:
            raise ValueError(f"wire type {wire}")
    return blob, remaining


class GrpcSnapshot:
    """A context manager like ``stream.GatewaySnapshot``: ``stream`` is the ``SnapshotStream`` of one member's
    snapshot over gRPC; the connection is closed on exit. ``read_timeout`` bounds each wait for bytes."""

    def __init__(
        self, transport: HttpTransport, endpoint: str, *, connect_timeout: float = 5.0, read_timeout: float = 30.0
    ) -> None:
        self.transport = transport
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._sock: Any = None
        self.stream: SnapshotStream = SnapshotStream((), endpoint)

    def __enter__(self) -> GrpcSnapshot:
        import h2.config
        import h2.connection
        import h2.settings

        url = urlsplit(self.endpoint)
        host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 2379)
        try:
            sock: Any = socket.create_connection((host, port), timeout=self.connect_timeout)
        except OSError as exc:
            raise EtcdUnavailable(self.endpoint, f"{type(exc).__name__}: {exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if url.scheme == "https":
                sock = self._tls().wrap_socket(sock, server_hostname=host)
                if sock.selected_alpn_protocol() != "h2":
                    raise EtcdUnavailable(self.endpoint, "the member did not offer HTTP/2 (ALPN h2) for gRPC")
            sock.settimeout(self.read_timeout)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
            conn.initiate_connection()
            conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
            conn.increment_flow_control_window(4 * WINDOW)
            stream_id = conn.get_next_available_stream_id()
            conn.send_headers(stream_id, [
                (":method", "POST"), (":scheme", url.scheme), (":path", PATH), (":authority", url.netloc),
                ("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "etcd-asg-coordinator"),
            ])  # fmt: skip
            conn.send_data(stream_id, b"\0\0\0\0\0", end_stream=True)  # an empty SnapshotRequest
            sock.sendall(conn.data_to_send())
        except ssl.SSLError as exc:
            sock.close()
            reason = certificate_problem(exc)
            if reason is not None:
                raise EtcdTlsError(self.endpoint, reason) from None
            raise EtcdUnavailable(self.endpoint, f"SSLError: {exc}") from None
        except OSError as exc:
            sock.close()
            raise EtcdUnavailable(self.endpoint, f"{type(exc).__name__}: {exc}") from None
        self._sock = sock
        self.stream = SnapshotStream(self._messages(sock, conn, stream_id), self.endpoint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close()

    def _tls(self) -> ssl.SSLContext:
        verify, cert = self.transport.verify, self.transport.cert
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cert:
            context.load_cert_chain(*cert)
        context.set_alpn_protocols(["h2"])
        return context

    def _messages(self, sock: Any, conn: Any, stream_id: int) -> Iterator[tuple[bytes, int]]:
        import h2.events
        import h2.exceptions

        buffer = bytearray()
        status: str | None = None
        message = ""
        while status is None:
            try:
                data = sock.recv(RECV)
            except ssl.SSLError as exc:
                reason = certificate_problem(exc)
                if reason is not None:  # TLS 1.3: a refused client certificate shows at the first read
                    raise EtcdTlsError(self.endpoint, reason) from None
                raise SnapshotStreamBroken(self.endpoint, f"the stream broke off (SSLError: {exc})") from None
            except OSError as exc:
                raise SnapshotStreamBroken(
                    self.endpoint, f"the stream broke off ({type(exc).__name__}: {exc})"
                ) from None
            if not data:
                raise SnapshotStreamBroken(self.endpoint, "the member closed the connection before the stream ended")
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                raise SnapshotStreamBroken(self.endpoint, f"HTTP/2 protocol error ({exc})") from None
            for event in events:
                if isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                    buffer += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    while len(buffer) >= 5:
                        size = int.from_bytes(buffer[1:5], "big")
                        if len(buffer) < 5 + size:
                            break
                        if buffer[0]:
                            raise SnapshotCorrupt(self.endpoint, "a compressed gRPC message (none was asked for)")
                        try:
                            yield decode_snapshot_response(bytes(buffer[5 : 5 + size]))
                        except ValueError as exc:
                            raise SnapshotCorrupt(self.endpoint, f"a message that does not decode ({exc})") from None
                        del buffer[: 5 + size]
                elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    headers = dict(event.headers)
                    if "grpc-status" in headers:
                        status, message = headers["grpc-status"], headers.get("grpc-message", "")
                elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    raise SnapshotStreamBroken(self.endpoint, f"the member ended the stream ({type(event).__name__})")
                elif isinstance(event, h2.events.StreamEnded) and status is None:
                    status = "unknown"
            pending = conn.data_to_send()
            if pending:
                sock.sendall(pending)
        if buffer:
            raise SnapshotStreamBroken(self.endpoint, f"{len(buffer)} bytes of an unfinished message at the end")
        if status != "0":
            raise EtcdRefused(self.endpoint, f"snapshot refused: grpc-status {status} {message}".strip())
