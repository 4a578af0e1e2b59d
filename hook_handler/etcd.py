"""etcd membership through its v3 JSON gateway (etcd3gw): add a joining member, remove a leaving one.

Optional (``etcd_endpoints`` or ``etcd_client_srv``). A member is identified only by its peer URL,
``<scheme>://<srv target>:<etcd_port>``, the same URL the instance advertises, so the coordinator
never removes a member that is not the leaving instance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tenacity import RetryCallState, Retrying, retry_if_exception, retry_if_result, wait_fixed, wait_random_exponential

from hook_handler.clock import Clock

# etcd answers these while a just-formed cluster settles or a new member has not started yet;
# they clear by themselves, so they are retried until the deadline.
_TRANSIENT = ("unhealthy cluster", "not enough started members", "leader changed", "too many requests", "timed out")


class MembershipError(Exception):
    """etcd could not be reached or refused a change; the message says which member and why."""


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]


def peer_url(target: str, port: int, scheme: str = "http") -> str:
    """The peer URL a member with SRV target ``target`` advertises.

    >>> peer_url("ip-10-0-0-1.ec2.internal.", 2380)
    'http://ip-10-0-0-1.ec2.internal:2380'
    """
    return f"{scheme}://{target.rstrip('.')}:{port}"


def _transient(exc: BaseException) -> bool:
    from etcd3gw import exceptions as ex

    if isinstance(exc, ex.ConnectionFailedError | ex.ConnectionTimeoutError):
        return True
    text = f"{getattr(exc, 'detail_text', '')} {exc}".lower()
    return isinstance(exc, ex.Etcd3Exception) and any(t in text for t in _TRANSIENT)


class Membership:
    """Member list, add and remove against whichever endpoint answers first."""

    def __init__(self, clock: Clock, *, timeout: float = 5.0, client: Callable[[str], Any] | None = None) -> None:
        self.clock = clock
        self.timeout = timeout
        self._client = client or self._gateway

    def _gateway(self, endpoint: str) -> Any:
        import etcd3gw

        url = urlsplit(endpoint)
        return etcd3gw.client(
            host=url.hostname or "localhost",
            port=url.port or 2379,
            protocol=url.scheme or "http",
            timeout=self.timeout,
            api_path="/v3/",
        )

    def members(self, endpoints: Sequence[str], deadline: float) -> list[Member]:
        out = self._call(endpoints, deadline, lambda c: c.post(c.get_url("/cluster/member/list"), json={}))
        return [
            Member(
                id=str(m.get("ID", "")),
                name=m.get("name", ""),
                peer_urls=tuple(m.get("peerURLs", [])),
                client_urls=tuple(m.get("clientURLs", [])),
            )
            for m in out.get("members", [])
        ]

    def add(self, url: str, endpoints: Sequence[str], deadline: float) -> bool:
        """Add a member by peer URL. False when it was already a member (idempotent)."""
        if any(url in m.peer_urls for m in self.members(endpoints, deadline)):
            return False
        self._call(endpoints, deadline, lambda c: c.post(c.get_url("/cluster/member/add"), json={"peerURLs": [url]}))
        return True

    def remove(self, url: str, endpoints: Sequence[str], deadline: float) -> bool:
        """Remove the member advertising exactly ``url``. False when there is none (idempotent)."""
        matches = [m for m in self.members(endpoints, deadline) if url in m.peer_urls]
        if not matches:
            return False
        for member in matches:
            self._call(
                endpoints,
                deadline,
                lambda c, mid=member.id: c.post(c.get_url("/cluster/member/remove"), json={"ID": mid}),
            )
        return True

    def wait_started(self, endpoints: Sequence[str], deadline: float, *, interval: float = 0.5) -> None:
        """Return once every member has started (published its name); MembershipError at the deadline.

        etcd admits the next voting member only after the previous one started and stayed connected, and a
        member that starts from the SRV record must find it listing exactly the members: so the coordinator
        lists the next joiner only after this.
        """

        def unstarted() -> list[Member]:
            return [m for m in self.members(endpoints, deadline) if not m.name]

        def stop(state: RetryCallState) -> bool:
            return self.clock.now() + interval >= deadline

        left = Retrying(
            sleep=self.clock.sleep,
            stop=stop,
            wait=wait_fixed(interval),
            retry=retry_if_result(bool),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else [],
        )(unstarted)
        if left:
            urls = ", ".join(u for m in left for u in m.peer_urls)
            raise MembershipError(f"etcd members {urls} were added but have not started")

    def _call(self, endpoints: Iterable[str], deadline: float, op: Callable[[Any], Any]) -> Any:
        endpoints = list(endpoints)
        if not endpoints:
            raise MembershipError("no etcd endpoint to talk to (no member in service and no etcd_endpoints set)")

        def attempt() -> Any:
            last: BaseException | None = None
            for endpoint in endpoints:
                try:
                    return op(self._client(endpoint))
                except Exception as exc:
                    last = exc
                    if not _transient(exc):
                        raise
            assert last is not None
            raise last

        def stop(state: RetryCallState) -> bool:
            return self.clock.now() + (state.upcoming_sleep or 0.0) >= deadline

        retrying = Retrying(
            sleep=self.clock.sleep,
            stop=stop,
            wait=wait_random_exponential(multiplier=0.5, max=5.0),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except Exception as exc:
            detail = getattr(exc, "detail_text", "") or str(exc)
            raise MembershipError(f"etcd at {', '.join(endpoints)}: {detail}".strip()) from exc
