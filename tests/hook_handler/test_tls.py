"""The coordinator's etcd client TLS (issue 12): settings that agree, the secret loaded once and kept private,
members verified against the CA with host names, a wrong CA stopping the pass before it changes anything."""

from __future__ import annotations

import json
import os
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from hook_handler.app import Clients, Runtime
from hook_handler.clock import SystemClock
from hook_handler.etcd import EtcdTlsError, EtcdUnavailable, HttpTransport
from hook_handler.exceptions import SettingsError
from hook_handler.settings import load_settings
from hook_handler.tls import load_client_tls
from infra.local.pki import CertificateAuthority

BASE = {"domain_name": "example.com", "r53_zone_id": "Z123", "asg_names": "etcd"}


# -- settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "variable", "fragment"),
    [
        ({"srv_record_name": "_etcd-server-ssl._tcp"}, "etcd_peer_scheme", "TLS peer record"),
        ({"srv_record_name": "_etcd-server-ssl-blue._tcp"}, "etcd_peer_scheme", "TLS peer record"),
        ({"srv_record_name": "_etcd-server-ssl._tcp", "etcd_peer_scheme": "https"}, "etcd_tls_secret", "is not set"),
        ({"etcd_endpoints": "https://10.0.0.1:2379"}, "etcd_tls_secret", "is not set"),
        (
            {"etcd_endpoints": "http://10.0.0.1:2379", "etcd_tls_secret": "etcd/coordinator"},
            "etcd_endpoints",
            "plaintext",
        ),
        ({"etcd_tls_secret": "not a secret name"}, "etcd_tls_secret", "not a secret name or ARN"),
    ],
)
def test_tls_settings_that_contradict_each_other_name_the_setting(extra, variable, fragment):
    with pytest.raises(SettingsError) as err:
        load_settings({**BASE, **extra})
    assert err.value.variable == variable and fragment in str(err.value)


def test_tls_settings_that_agree_load_and_make_client_urls_https():
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:etcd/coordinator-AbCdEf"
    s = load_settings(
        {**BASE, "srv_record_name": "_etcd-server-ssl._tcp", "etcd_peer_scheme": "https", "etcd_tls_secret": arn}
    )
    assert (s.etcd_tls_secret, s.etcd_client_scheme) == (arn, "https")
    assert load_settings(BASE).etcd_client_scheme == "http"
    # DNS only: a TLS record without a secret is fine (the coordinator talks to no etcd)
    dns_only = {"srv_record_name": "_etcd-server-ssl._tcp", "etcd_peer_scheme": "https", "etcd_membership": "false"}
    assert load_settings({**BASE, **dns_only}).etcd_tls_secret == ""


# -- the secret --------------------------------------------------------------------------------------
@pytest.fixture
def pki() -> dict[str, object]:
    ca = CertificateAuthority.create("etcd-test-ca")
    cert, key = ca.issue("etcd-asg-coordinator", server=False)
    member_cert, member_key = ca.issue("i-0member", dns=["localhost"], ips=["127.0.0.1"])
    return {"ca": ca, "cert": cert, "key": key, "member": (member_cert, member_key)}


@pytest.fixture
def secrets() -> Iterator[object]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def _secret(pki, **override) -> str:
    return json.dumps({"ca": pki["ca"].pem, "cert": pki["cert"], "key": pki["key"], **override})


def test_the_secret_is_written_where_only_this_process_can_read_it(secrets, pki, tmp_path):
    secrets.create_secret(Name="etcd/coordinator", SecretString=_secret(pki))
    tls = load_client_tls(secrets, "etcd/coordinator", directory=str(tmp_path))
    where = Path(tls.ca).parent
    assert stat.S_IMODE(where.stat().st_mode) == 0o700
    for path, part in ((tls.ca, pki["ca"].pem), (tls.cert, pki["cert"]), (tls.key, pki["key"])):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert Path(path).read_text() == part
    assert tls.transport_options == {"verify": tls.ca, "cert": (tls.cert, tls.key)}


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        (None, "cannot be read (ResourceNotFoundException"),
        ("not json", "is not JSON"),
        ('["ca"]', "is not a JSON object"),
        ("drop-key", "lacks a PEM key"),
        ("wrong-key", "do not make a client certificate"),
        ("bad-ca", "lacks a PEM ca"),
    ],
)
def test_a_secret_that_cannot_make_a_tls_client_fails_naming_the_setting(secrets, pki, tmp_path, secret, fragment):
    if secret is not None:
        if secret == "drop-key":
            text = json.dumps({"ca": pki["ca"].pem, "cert": pki["cert"]})
        elif secret == "wrong-key":
            text = _secret(pki, key=pki["member"][1])  # another certificate's key
        elif secret == "bad-ca":
            text = _secret(pki, ca="not a certificate")
        else:
            text = secret
        secrets.create_secret(Name="etcd/coordinator", SecretString=text)
    with pytest.raises(SettingsError) as err:
        load_client_tls(secrets, "etcd/coordinator", directory=str(tmp_path))
    assert err.value.variable == "etcd_tls_secret" and fragment in str(err.value)
    assert pki["key"] not in str(err.value)  # nothing secret in the message


def test_cold_start_reads_the_secret_once_and_fails_clearly_without_it(secrets, pki, monkeypatch):
    env = {**BASE, "etcd_tls_secret": "etcd/coordinator", "AWS_DEFAULT_REGION": "us-east-1"}
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(SettingsError) as err:
        Runtime.from_environment(env)
    assert err.value.variable == "etcd_tls_secret" and "ResourceNotFoundException" in str(err.value)
    secrets.create_secret(Name="etcd/coordinator", SecretString=_secret(pki))
    calls: list[str] = []
    original = secrets.get_secret_value

    def counting(**kwargs):
        calls.append(kwargs["SecretId"])
        return original(**kwargs)

    monkeypatch.setattr(secrets, "get_secret_value", counting)
    make = lambda service, **kw: secrets if service == "secretsmanager" else boto3.client(service, **kw)  # noqa: E731
    clients = Clients.create(type("Session", (), {"client": staticmethod(make)})(), tls=True)
    runtime = Runtime(load_settings(env), clients, SystemClock())
    transport = runtime.coordinator.membership.transport
    assert calls == ["etcd/coordinator"]
    assert Path(transport.verify).read_text() == pki["ca"].pem and Path(transport.cert[0]).read_text() == pki["cert"]


# -- a member over TLS ------------------------------------------------------------------------------------
@contextmanager
def tls_member(cert: str, key: str, ca_pem: str, where: Path) -> Iterator[str]:
    """A TLS endpoint on 127.0.0.1 that asks for a client certificate from the CA, answering etcd's member list."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = json.dumps({"members": []}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    (where / "m.pem").write_text(cert)
    (where / "m.key").write_text(key)
    (where / "ca.pem").write_text(ca_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(where / "m.pem", where / "m.key")
    context.load_verify_locations(where / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def member(pki, tmp_path) -> Iterator[str]:
    with tls_member(*pki["member"], pki["ca"].pem, tmp_path) as url:
        yield url


def _client(pki, tmp_path, ca_pem: str) -> HttpTransport:
    (tmp_path / "c.pem").write_text(pki["cert"])
    (tmp_path / "c.key").write_text(pki["key"])
    (tmp_path / "trust.pem").write_text(ca_pem)
    return HttpTransport(verify=str(tmp_path / "trust.pem"), cert=(str(tmp_path / "c.pem"), str(tmp_path / "c.key")))


def test_a_member_is_verified_against_the_ca_by_the_address_dialled(member, pki, tmp_path, monkeypatch):
    # The environment's CA bundle (REQUESTS_CA_BUNDLE) must not replace the configured CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    client = _client(pki, tmp_path, pki["ca"].pem)
    assert client.post(member, "/v3/cluster/member/list", {}, 5.0) == {"members": []}
    assert client.post(member.replace("127.0.0.1", "localhost"), "/v3/cluster/member/list", {}, 5.0) == {"members": []}


def test_a_wrong_ca_is_a_tls_error_not_an_unavailable_member(member, pki, tmp_path):
    client = _client(pki, tmp_path, CertificateAuthority.create("someone-else").pem)
    with pytest.raises(EtcdTlsError) as err:
        client.post(member, "/v3/cluster/member/list", {}, 5.0)
    assert not isinstance(err.value, EtcdUnavailable)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value) and "etcd_tls_secret" in str(err.value)


def test_a_member_certificate_not_naming_the_address_is_a_tls_error(pki, tmp_path):
    cert, key = pki["ca"].issue("i-0other", dns=["ip-10-9-9-9.ec2.internal"], ips=["10.9.9.9"])
    with tls_member(cert, key, pki["ca"].pem, tmp_path) as url, pytest.raises(EtcdTlsError) as err:
        _client(pki, tmp_path, pki["ca"].pem).post(url, "/v3/cluster/member/list", {}, 5.0)
    assert "mismatch" in str(err.value).lower()


def test_https_dialled_at_a_plaintext_port_is_a_tls_error(pki, tmp_path):
    """A coordinator set for TLS meeting a plaintext etcd: a setting is wrong (WRONG_VERSION_NUMBER), not a
    member that is away."""

    class Plain(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(EtcdTlsError) as err:
            _client(pki, tmp_path, pki["ca"].pem).post(
                f"https://127.0.0.1:{server.server_address[1]}", "/v3/cluster/member/list", {}, 5.0
            )
    finally:
        server.shutdown()
        server.server_close()
    assert "WRONG_VERSION_NUMBER" in str(err.value)


def test_an_encrypted_key_fails_naming_the_setting_and_leaves_nothing_on_disk(secrets, pki, tmp_path):
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki["key"].encode(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    ).decode()
    secrets.create_secret(Name="etcd/coordinator", SecretString=_secret(pki, key=encrypted))
    with pytest.raises(SettingsError) as err:
        load_client_tls(secrets, "etcd/coordinator", directory=str(tmp_path))
    assert err.value.variable == "etcd_tls_secret" and "do not make a client certificate" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # the refused parts were removed


class _Endpoints:
    """A transport answering per endpoint: "tls" fails its handshake on a certificate, "ok" answers."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.asked = answers, []

    def post(self, endpoint, path, body, timeout):
        self.asked.append(endpoint)
        if self.answers[endpoint] == "tls":
            raise EtcdTlsError(endpoint, "CERTIFICATE_VERIFY_FAILED: certificate verify failed")
        return {"members": [{"ID": "1", "name": "i-1", "peerURLs": ["http://a:2380"]}], "header": {"member_id": "1"}}

    def get(self, endpoint, path, timeout):
        return self.post(endpoint, path, {}, timeout)


def test_one_member_s_bad_certificate_is_that_member_unhealthy_not_the_end_of_the_pass():
    from hook_handler.etcd import Membership

    clock = SystemClock()
    transport = _Endpoints({"https://a:2379": "tls", "https://b:2379": "ok"})
    etcd = Membership(clock, transport)
    members = etcd.members(["https://a:2379", "https://b:2379"], clock.now() + 5)
    assert [m.name for m in members] == ["i-1"] and transport.asked == ["https://a:2379", "https://b:2379"]
    assert etcd.status("https://a:2379", clock.now() + 5) is None  # unhealthy
    assert etcd.status("https://b:2379", clock.now() + 5) is not None
    everyone_bad = Membership(clock, _Endpoints({"https://a:2379": "tls", "https://b:2379": "tls"}))
    with pytest.raises(EtcdTlsError):  # no member answers over verified TLS: the pass stops
        everyone_bad.members(["https://a:2379", "https://b:2379"], clock.now() + 5)
