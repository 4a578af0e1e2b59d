"""etcd at the edge: its v3 JSON gateway (member list/add/remove/promote, status, leadership), read and
written through a ``Transport`` so the same code runs against real etcd and the simulated-time model
(``infra.local.etcd_model``).

Nothing here decides anything: ``hook_handler.membership`` decides (pure), the coordinator applies.
Member IDs travel as etcd's gateway writes them: uint64 in decimal strings. Logs show them in hex,
as ``etcdctl`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from hook_handler.clock import Clock
from hook_handler.exceptions import CoordinatorError

# etcd answers these while a just-formed cluster settles, a leader is being elected or a new member has not
# started yet; they clear by themselves, so they are retried until the deadline.
# A learner refuses all but Status and serializable reads (gRPC UNAVAILABLE): a just-added member listed in the client
# record is one, so the next endpoint is asked (and this one again later: it may have been promoted).
LEARNER_RPC = "rpc not supported for learner"
TRANSIENT = ("leader changed", "too many requests", "timed out", "no leader", "request timed out", LEARNER_RPC)
# etcd refusing a reconfiguration for the cluster's own safety (strict reconfig check): not retried within
# a call, the decision layer waits for the cluster to change (a member to start, a learner to catch up).
UNHEALTHY = "unhealthy cluster"
NOT_ENOUGH_STARTED = "not enough started members"
LEARNER_NOT_READY = "can only promote a learner member which is in sync with leader"
TOO_MANY_LEARNERS = "too many learner members in cluster"


class MembershipError(Exception):
    """etcd could not be reached or refused a change; the message says which member and why."""


class EtcdUnavailable(MembershipError):
    """No answer from an endpoint (connection refused, timeout, DNS): try another, or later."""

    def __init__(self, endpoint: str, detail: str) -> None:
        super().__init__(f"etcd at {endpoint} did not answer: {detail}")
        self.endpoint = endpoint
        self.detail = detail


class EtcdTlsError(CoordinatorError):
    """A member's TLS handshake failed on a certificate: its certificate is not signed by the configured CA or
    does not name the host dialled, or etcd refused the coordinator's client certificate. A setting or a
    certificate is wrong; retrying cannot help, and acting without etcd's answer could harm the cluster: the
    pass stops before it changes anything (its event is retried, then dead-lettered)."""

    def __init__(self, endpoint: str, detail: str) -> None:
        super().__init__(
            f"etcd at {endpoint}: TLS handshake failed ({detail}); check etcd_tls_secret: its ca must be the CA that "
            "signed the members' certificates (which must name each member's private IP and host name), and its "
            "cert a client certificate that CA signed"
        )
        self.endpoint = endpoint
        self.detail = detail


class EtcdRefused(MembershipError):
    """etcd answered with an error (``message`` as etcd words it, ``code`` the gRPC code)."""

    def __init__(self, endpoint: str, message: str, code: int = 0) -> None:
        super().__init__(f"etcd at {endpoint}: {message}")
        self.endpoint = endpoint
        self.message = message
        self.code = code


class Transport(Protocol):
    """HTTP to one etcd endpoint. ``path`` is absolute (``/v3/cluster/member/list``, ``/version``).

    Raises ``EtcdUnavailable`` when the endpoint does not answer and ``EtcdRefused`` when etcd answers
    an error; returns the decoded JSON object otherwise.
    """

    def post(self, endpoint: str, path: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]: ...

    def get(self, endpoint: str, path: str, timeout: float) -> dict[str, Any]: ...


class HttpTransport:
    """The real thing: ``requests`` against etcd's gateway (the library etcd3gw itself uses)."""

    def __init__(self, *, verify: bool | str = True, cert: tuple[str, str] | None = None) -> None:
        self.verify = verify
        self.cert = cert
        self._session: Any = None  # made on first use: importing requests stays off the cold start

    @property
    def session(self) -> Any:
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def post(self, endpoint: str, path: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        return self._send("POST", endpoint, path, timeout, json=dict(body))

    def get(self, endpoint: str, path: str, timeout: float) -> dict[str, Any]:
        return self._send("GET", endpoint, path, timeout)

    def _send(self, method: str, endpoint: str, path: str, timeout: float, **kwargs: Any) -> dict[str, Any]:
        import requests

        url = endpoint.rstrip("/") + path
        try:
            # verify/cert per request: a session's own are overridden by REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
            # from the environment (requests merges the environment over session attributes).
            response = self.session.request(method, url, timeout=timeout, verify=self.verify, cert=self.cert, **kwargs)
        except requests.exceptions.SSLError as exc:
            reason = certificate_problem(exc)
            if reason is not None:
                raise EtcdTlsError(endpoint, reason) from None
            # e.g. an EOF mid-handshake: a member going away looks the same
            raise EtcdUnavailable(endpoint, type(exc).__name__ + ": " + str(exc)[:200]) from None
        except requests.RequestException as exc:
            raise EtcdUnavailable(endpoint, type(exc).__name__ + ": " + str(exc)[:200]) from None
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code >= 400 or (isinstance(data, dict) and "error" in data and "code" in data):
            message = (
                (data.get("message") or data.get("error") or response.text[:200]) if isinstance(data, dict) else ""
            )
            if response.status_code in (502, 503, 504) and not message:
                raise EtcdUnavailable(endpoint, f"HTTP {response.status_code}")
            raise EtcdRefused(endpoint, str(message), int(data.get("code", 0)) if isinstance(data, dict) else 0)
        return data if isinstance(data, dict) else {}


# OpenSSL's reasons for a handshake that fails on a certificate or a setting: the client rejects the member's
# certificate (verify failed, host name mismatch), the member rejects the client's (alerts: certificate required,
# bad or unknown certificate, unknown CA), or https was dialled at a plaintext port. An EOF or a reset mid-handshake
# is not among them: a member going away looks the same (it is EtcdUnavailable).
_TLS_REASONS = frozenset(
    {
        "CERTIFICATE_VERIFY_FAILED",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "WRONG_VERSION_NUMBER",
    }
)


def certificate_problem(exc: BaseException) -> str | None:
    """The ``ssl.SSLError`` inside requests' wrapping (urllib3's MaxRetryError → SSLError → ssl.SSLError), when
    its reason is a certificate or a setting: ``"REASON: message"``; None otherwise."""
    import ssl

    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLError):
            reason = getattr(item, "reason", None) or ""
            if isinstance(item, ssl.SSLCertVerificationError) or reason in _TLS_REASONS:
                return f"{reason or 'CERTIFICATE_VERIFY_FAILED'}: {item}"[:300]
        todo += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    return None


@dataclass(frozen=True)
class Member:
    """One entry of etcd's member list. ``name`` is empty (or an SRV placeholder) until the member starts."""

    id: str  # uint64, decimal, as the gateway writes it
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    learner: bool = False

    @property
    def started(self) -> bool:
        """Published itself (its client URLs). Not the name: under SRV discovery etcd lists a founding member
        that never started under a placeholder name ("0", "1", ...) taken from the SRV order."""
        return bool(self.client_urls)

    @property
    def hex_id(self) -> str:
        return hex_id(self.id)

    @property
    def peer_hosts(self) -> frozenset[str]:
        """Host parts of the peer URLs, lower case, no trailing dot (a DNS name or an IP address)."""
        return frozenset((urlsplit(u).hostname or "").lower().rstrip(".") for u in self.peer_urls)


@dataclass(frozen=True)
class Status:
    """``/v3/maintenance/status`` of one member, as it answered on its own client URL."""

    endpoint: str
    member_id: str
    leader: str  # "0" or "" when it sees no leader
    raft_index: int
    learner: bool
    errors: tuple[str, ...] = ()
    cluster_id: str = ""  # decimal, as the gateway writes it

    @property
    def has_leader(self) -> bool:
        return self.leader not in ("", "0")


def hex_id(member_id: str) -> str:
    """etcd's decimal member ID as etcdctl shows it.

    >>> hex_id("10501334649042878790")
    '91bc3c398fb3c146'
    """
    try:
        return format(int(member_id), "x")
    except ValueError:
        return member_id


def peer_url(target: str, port: int, scheme: str = "http") -> str:
    """The peer URL a member with SRV target ``target`` advertises.

    >>> peer_url("ip-10-0-0-1.ec2.internal.", 2380)
    'http://ip-10-0-0-1.ec2.internal:2380'
    """
    return f"{scheme}://{target.rstrip('.')}:{port}"


def _member(raw: Mapping[str, Any]) -> Member:
    return Member(
        id=str(raw.get("ID", "")),
        name=str(raw.get("name", "") or ""),
        peer_urls=tuple(raw.get("peerURLs", []) or ()),
        client_urls=tuple(raw.get("clientURLs", []) or ()),
        learner=bool(raw.get("isLearner", False)),
    )


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, EtcdUnavailable):
        return True
    return isinstance(exc, EtcdRefused) and any(t in exc.message.lower() for t in TRANSIENT)


class Membership:
    """etcd's member list and its changes, against whichever endpoint answers first.

    Every call retries what clears by itself (no answer, leader changes) with jittered backoff until
    ``deadline``; a refusal (``EtcdRefused``) is raised at once for the caller to judge.
    """

    def __init__(self, clock: Clock, transport: Transport | None = None, *, timeout: float = 5.0) -> None:
        self.clock = clock
        self.transport = transport or HttpTransport()
        self.timeout = timeout

    # -- reads --------------------------------------------------------------------------------
    def members(self, endpoints: Sequence[str], deadline: float, *, once: bool = False) -> list[Member]:
        """The member list from the first endpoint that answers. ``once``: ask each endpoint one time
        (``EtcdUnavailable`` if none answers) instead of retrying until ``deadline``."""
        out = self._call(endpoints, deadline, "/v3/cluster/member/list", {}, once=once)
        return [_member(m) for m in out.get("members", []) or []]

    def status(self, endpoint: str, deadline: float) -> Status | None:
        """One member's own view (leader, raft index), or None when it does not answer. Not retried."""
        try:
            out = self.transport.post(endpoint, "/v3/maintenance/status", {}, min(2.0, self._timeout(deadline)))
        except (MembershipError, EtcdTlsError):  # a member whose certificate fails is not a healthy member
            return None
        header = out.get("header", {}) or {}
        return Status(
            endpoint=endpoint,
            member_id=str(header.get("member_id", "")),
            leader=str(out.get("leader", "") or ""),
            raft_index=int(out.get("raftIndex", 0) or 0),
            learner=bool(out.get("isLearner", False)),
            errors=tuple(out.get("errors", []) or ()),
            cluster_id=str(header.get("cluster_id", "") or ""),
        )

    def version(self, endpoints: Sequence[str], deadline: float) -> str:
        """The cluster version (``etcdcluster`` of ``/version``), e.g. ``3.5.0``."""

        def op(endpoint: str) -> dict[str, Any]:
            return self.transport.get(endpoint, "/version", self._timeout(deadline))

        out = self._retry(endpoints, deadline, op)
        return str(out.get("etcdcluster", "") or out.get("etcdserver", ""))

    # -- changes (each one etcd request; idempotence is the caller's, checked on the member list) ----
    def add(self, peer_urls: Sequence[str], endpoints: Sequence[str], deadline: float, *, learner: bool) -> Member:
        body: dict[str, Any] = {"peerURLs": list(peer_urls)}
        if learner:
            body["isLearner"] = True
        out = self._call(endpoints, deadline, "/v3/cluster/member/add", body)
        return _member(out.get("member", {}) or {})

    def remove(self, member_id: str, endpoints: Sequence[str], deadline: float) -> tuple[Member, ...]:
        """Returns the member list after the removal, as the member that applied it answered (may be empty)."""
        out = self._call(endpoints, deadline, "/v3/cluster/member/remove", {"ID": member_id})
        return tuple(_member(m) for m in out.get("members", []) or [])

    def promote(self, member_id: str, endpoints: Sequence[str], deadline: float) -> tuple[Member, ...]:
        """Returns the member list after the promotion, as the member that applied it answered (may be empty)."""
        out = self._call(endpoints, deadline, "/v3/cluster/member/promote", {"ID": member_id})
        return tuple(_member(m) for m in out.get("members", []) or [])

    def move_leader(self, leader_endpoint: str, target_id: str, deadline: float) -> None:
        """Hand leadership to ``target_id``; sent to the leader itself, as etcd requires."""
        self._call([leader_endpoint], deadline, "/v3/maintenance/transfer-leadership", {"targetID": target_id})

    # -- internals ----------------------------------------------------------------------------
    def _timeout(self, deadline: float) -> float:
        return max(0.5, min(self.timeout, deadline - self.clock.now()))

    def _call(
        self, endpoints: Sequence[str], deadline: float, path: str, body: Mapping[str, Any], *, once: bool = False
    ) -> dict[str, Any]:
        def op(endpoint: str) -> dict[str, Any]:
            return self.transport.post(endpoint, path, body, self._timeout(deadline))

        return self._retry(endpoints, deadline, op, once=once)

    def _retry(
        self, endpoints: Sequence[str], deadline: float, op: Callable[[str], dict[str, Any]], *, once: bool = False
    ) -> dict[str, Any]:
        """Every endpoint in turn, again and again with backoff until ``deadline`` (``once``: one round)."""
        endpoints = list(endpoints)
        if not endpoints:
            raise EtcdUnavailable("(none)", "no etcd endpoint to talk to: no member in service and none configured")

        def attempt() -> dict[str, Any]:
            last: MembershipError | None = None
            tls: EtcdTlsError | None = None
            for endpoint in endpoints:
                try:
                    return op(endpoint)
                except EtcdTlsError as exc:  # this member's certificate (or ours): another member may answer
                    tls = exc
                except MembershipError as exc:
                    last = exc
                    if not _transient(exc):
                        raise
            if tls is not None:  # no member answered over verified TLS: never act on a guess
                raise tls
            assert last is not None
            raise last

        def stop(state: RetryCallState) -> bool:
            return once or self.clock.now() + (state.upcoming_sleep or 0.0) >= deadline

        return Retrying(
            sleep=self.clock.sleep,
            stop=stop,
            wait=wait_random_exponential(multiplier=0.5, max=5.0),
            retry=retry_if_exception(_transient),
            reraise=True,
        )(attempt)
