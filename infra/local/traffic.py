"""A continuous etcd client for the demo and the end-to-end tests: what an application sees while the cluster changes.

One writer thread puts ``<prefix><seq>`` = ``<seq>`` every ``interval`` seconds and reads the last acknowledged key
back (linearizable), through the members the client SRV record lists (``_etcd-client[-ssl]._tcp``, resolved by the
sandbox's DNS server, dialled by name as an application would), moving to the next member when one fails. It
records every acknowledged write, every failed request and every outage — a time during which no request
succeeded. ``window(since)`` sums a period (a demo step); ``verify(endpoints)`` reads the whole prefix through each
member and returns the acknowledged writes any member lacks (an acknowledged write that is lost).

Example:
    >>> client = ContinuousClient(lambda: ["https://ip-127-0-1-10.ec2.internal:2379"]).start()
    >>> ...; w = client.window(since); w.acked, w.failed, w.longest_outage
    >>> client.stop(); client.verify(endpoints)
    []
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Window:
    """What the client saw in a period."""

    acked: int  # writes etcd acknowledged
    failed: int  # requests (writes and reads) that failed
    longest_outage: float  # seconds: the longest time with no successful request
    reads: int = 0


@dataclass
class _Log:
    acked: list[tuple[float, int]] = field(default_factory=list)  # (time, seq)
    ok: list[float] = field(default_factory=list)  # times of successful requests
    failed: list[tuple[float, str]] = field(default_factory=list)  # (time, error)
    reads: list[float] = field(default_factory=list)


class ContinuousClient:
    """See the module docstring. ``endpoints()`` returns the client URLs to use now (re-read every second)."""

    def __init__(
        self,
        endpoints: Callable[[], list[str]],
        *,
        prefix: str = "/client/",
        interval: float = 0.05,
        timeout: float = 1.0,
        tls: Any = None,
    ) -> None:
        self.endpoints = endpoints
        self.prefix = prefix
        self.interval = interval
        self.timeout = timeout
        self.tls = tls
        self.log = _Log()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="continuous-client", daemon=True)
        self._seq = 0
        self.started_at = 0.0

    def start(self) -> ContinuousClient:
        self.started_at = time.time()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # -- the loop ---------------------------------------------------------------------------------
    def _main(self) -> None:
        from infra.local.etcd_client import gateway

        urls: list[str] = []
        looked = 0.0
        turn = 0
        while not self._stop.is_set():
            if time.monotonic() - looked >= 1.0 or not urls:
                looked = time.monotonic()
                try:
                    urls = list(self.endpoints())
                except Exception as exc:  # noqa: BLE001 - a failed look is a failed request, recorded
                    self._fail(f"endpoints: {type(exc).__name__}: {exc}")
                    urls = []
            if not urls:
                self._fail("no endpoint listed")
                self._stop.wait(self.interval)
                continue
            url = urls[turn % len(urls)]
            seq = self._seq + 1
            try:
                client = gateway(url, timeout=self.timeout, tls=self.tls)
                client.put(f"{self.prefix}{seq:08d}", str(seq))
                now = time.time()
                with self._lock:
                    self._seq = seq
                    self.log.acked.append((now, seq))
                    self.log.ok.append(now)
                values = client.get(f"{self.prefix}{seq:08d}")  # linearizable read of what was just acknowledged
                if not values or values[0].decode() != str(seq):
                    self._fail(f"read {seq} through {url}: {values!r}")
                else:
                    with self._lock:
                        self.log.reads.append(time.time())
                        self.log.ok.append(time.time())
            except Exception as exc:  # noqa: BLE001 - every failure an application would see is recorded
                self._fail(f"{url}: {type(exc).__name__}")
                turn += 1  # the next member, as a client with several endpoints does
            self._stop.wait(self.interval)

    def _fail(self, why: str) -> None:
        with self._lock:
            self.log.failed.append((time.time(), why))

    # -- what it saw -----------------------------------------------------------------------------
    def window(self, since: float, until: float | None = None) -> Window:
        """The period [since, until] (epoch seconds; until: now)."""
        until = time.time() if until is None else until
        with self._lock:
            acked = sum(1 for t, _ in self.log.acked if since <= t <= until)
            failed = sum(1 for t, _ in self.log.failed if since <= t <= until)
            reads = sum(1 for t in self.log.reads if since <= t <= until)
            oks = [t for t in self.log.ok if since <= t <= until]
        # The longest stretch without a successful request, the window's edges included.
        marks = [since, *oks, until]
        longest = max(b - a for a, b in itertools.pairwise(marks))
        return Window(acked, failed, round(longest, 2), reads)

    def acknowledged(self) -> list[int]:
        with self._lock:
            return [seq for _, seq in self.log.acked]

    def verify(self, endpoints: Iterable[str]) -> dict[str, list[int]]:
        """Acknowledged writes each member lacks (endpoint -> sequence numbers; all empty: nothing lost)."""
        from infra.local.etcd_client import gateway

        want = set(self.acknowledged())
        missing: dict[str, list[int]] = {}
        for url in endpoints:
            values = gateway(url, timeout=5.0, tls=self.tls).get_prefix(self.prefix)
            found = {int(value.decode()) for value, _ in values}
            missing[url] = sorted(want - found)
        return missing


def srv_endpoints(record: str, scheme: str, nameserver: str) -> Callable[[], list[str]]:
    """``endpoints()`` for ``ContinuousClient``: the client SRV record's targets, as DNS answers them now."""
    from infra.local.resolver import srv_targets

    def endpoints() -> list[str]:
        return [f"{scheme}://{target}:{port}" for target, port in srv_targets(record, nameservers=[nameserver])]

    return endpoints


__all__ = ["ContinuousClient", "Window", "srv_endpoints"]
