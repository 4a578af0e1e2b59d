"""etcd through its v3 JSON gateway (etcd3gw), for tests and the demo: a client for one endpoint (plaintext, or
mutual TLS with the certificate ``use_client_tls`` set), the member list, endpoint health, put and get.

Example:
    >>> member_list("http://127.0.1.4:2379")[0]["name"]
    'i-0abc'
    >>> endpoint_health(["http://127.0.1.4:2379"])
    {'http://127.0.1.4:2379': True}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ClientCertificate:
    """The files an etcd client presents over TLS (the CA that signed the members, its certificate and key)."""

    ca: str
    cert: str
    key: str


CLIENT_TLS: ClientCertificate | None = None  # what ``gateway`` presents to https endpoints (``use_client_tls``)


def use_client_tls(tls: ClientCertificate | None) -> None:
    """Every ``gateway`` (and the helpers below) presents ``tls`` to https endpoints from now on."""
    global CLIENT_TLS
    CLIENT_TLS = tls


def gateway(endpoint: str, *, timeout: float = 2.0, tls: ClientCertificate | None = None) -> Any:
    """An ``etcd3gw`` client for a client URL such as ``http://127.0.1.4:2379`` (https: with ``tls``, by default
    the certificate ``use_client_tls`` set; none: the client presents nothing and the cluster refuses it)."""
    import etcd3gw

    url = urlsplit(endpoint)
    tls = tls or CLIENT_TLS
    options: dict[str, Any] = {}
    if url.scheme == "https" and tls is not None:
        import requests

        # Not etcd3gw's ca_cert/cert options: requests lets REQUESTS_CA_BUNDLE (set on many machines) override a
        # session's CA bundle, so the members' CA would never be used. The session ignores the environment.
        session = requests.Session()
        session.trust_env = False
        session.verify = tls.ca
        session.cert = (tls.cert, tls.key)
        options = {"session": session}
    # etcd 3.5 serves /v3/; naming it skips etcd3gw's /version round trip on every new client.
    return etcd3gw.client(
        host=str(url.hostname), port=url.port or 2379, protocol=url.scheme, timeout=timeout, api_path="/v3/", **options
    )


def member_list(endpoint: str, *, timeout: float = 2.0) -> list[dict[str, Any]]:
    """The cluster's members as one endpoint sees them (an unstarted member has ``name`` '').

    Example:
        >>> member_list("http://127.0.1.4:2379")
        [{'id': '10501334649042878790', 'name': 'i-0abc', 'peer_urls': ['http://ip-127-0-1-4.ec2.internal:2380'],
          'client_urls': ['http://127.0.1.4:2379'], 'learner': False}]
    """
    return [
        {
            "id": str(m.get("ID", "")),
            "name": m.get("name", ""),
            "peer_urls": list(m.get("peerURLs", [])),
            "client_urls": list(m.get("clientURLs", [])),
            "learner": bool(m.get("isLearner", False)),
        }
        for m in gateway(endpoint, timeout=timeout).members()
    ]


def endpoint_health(endpoints: Iterable[str], *, timeout: float = 2.0) -> dict[str, bool]:
    """Whether each endpoint serves a linearizable read (what ``etcdctl endpoint health`` checks).

    Example:
        >>> endpoint_health(["http://127.0.1.4:2379", "http://127.0.1.9:2379"])
        {'http://127.0.1.4:2379': True, 'http://127.0.1.9:2379': False}
    """
    from etcd3gw.exceptions import Etcd3Exception

    health = {}
    for endpoint in endpoints:
        try:
            gateway(endpoint, timeout=timeout).get("health")  # a quorum read: fails without a leader
            health[endpoint] = True
        except (Etcd3Exception, OSError, ValueError):
            health[endpoint] = False
    return health


def put(endpoint: str, key: str, value: str, *, timeout: float = 2.0) -> None:
    """Write ``key`` = ``value`` through ``endpoint``."""
    gateway(endpoint, timeout=timeout).put(key, value)


def get(endpoint: str, key: str, *, timeout: float = 2.0) -> str | None:
    """Read ``key`` (linearizable) through ``endpoint``; None when it does not exist."""
    values = gateway(endpoint, timeout=timeout).get(key)
    return values[0].decode() if values else None
