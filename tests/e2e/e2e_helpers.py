"""Helpers shared by the real-etcd tests (tests/e2e): a free port, the plaintext demo cluster, and boto3 clients
reused by the checks. The sandboxed functions import them as ``tests.e2e.e2e_helpers``."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 free now (TCP, or ``socket.SOCK_DGRAM``)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reuse_stack_clients() -> None:
    """Inside a sandbox (a process of its own): ``Stack``'s helpers (``instances``, ``private_dns``, ``tags``,
    ``scale`` ...) call through one boto3 client per service instead of a new client per call. A client costs
    tens of milliseconds of CPU to create, and the checks look several times a second: it was most of what a
    look cost, on cores the etcd members and the coordinator need. The calls and their answers are the same."""
    from infra.local.stack import Stack

    clients: dict[tuple[int, str], Any] = {}
    lock = threading.Lock()

    def client(self: Stack, service: str) -> Any:
        with lock:
            key = (id(self.aws), service)
            if key not in clients:
                clients[key] = self.aws.client(service)
            return clients[key]

    Stack.client = client  # type: ignore[method-assign]


@contextlib.contextmanager
def plaintext_cluster(workdir: str, **kwargs: Any) -> Iterator[Any]:
    """Inside a sandbox: the demo's ``Cluster`` without TLS (``kwargs`` are its variants), logs to files."""
    from infra.local.demo import Cluster, Reporter, quiet_logs

    quiet_logs(Path(workdir))
    reuse_stack_clients()
    with Cluster(Path(workdir), Reporter(), **{"tls": False, **kwargs}) as cluster:
        yield cluster
