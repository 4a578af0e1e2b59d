"""Member certificates (issue 12): issued by the coordinator before each go signal, one secret per instance that only
that instance may read, deleted when it leaves; the instances (``SimFleet(tls=True)``, the start script's TLS
protocol) start etcd only with a certificate naming the discovery domain and their peer host.

Asserted on what Secrets Manager holds (value, policy, tags), on the call log (order: the secret and its policy
before its value, the value before the go signal), on etcd's member list and on the record.
"""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hook_handler.certs import CertificateError, MemberCertificates, load_ca, member_identity, resource_policy
from infra.local import LocalAWS
from infra.local.etcd_model import EtcdModel
from infra.local.pki import CertificateAuthority
from infra.local.sim_fleet import SimFleet
from infra.local.stack import deploy, member_role

DOMAIN = "example.com"
PREFIX = f"etcd-asg/{DOMAIN}/member/"


pytestmark = pytest.mark.local_aws(propagation=(5.0, 15.0))  # the shared ``aws`` fixture (tests/conftest.py)


@pytest.fixture(scope="module")
def ca():
    return CertificateAuthority.create("etcd-test-ca")


def put_ca(aws: LocalAWS, ca: CertificateAuthority, name: str = "etcd/ca") -> str:

    key = ca.key_pem
    sm = aws.client("secretsmanager")
    return sm.create_secret(Name=name, SecretString=json.dumps({"cert": ca.pem, "key": key}))["ARN"]


TLS_SETTINGS = {
    "poll_interval_seconds": "2",
    "srv_record_name": "_etcd-server-ssl._tcp",
    "etcd_peer_scheme": "https",
    "etcd_tls_secret": "etcd/coordinator",  # not read: the model is reached through its own transport
    "etcd_ca_secret": "etcd/ca",
}


def tls_world(aws: LocalAWS, ca: CertificateAuthority | None, transport=None):
    """The emulated stack with member certificates, the etcd model and TLS instances (``ca``: put as etcd/ca)."""
    if ca is not None:
        put_ca(aws, ca)
    model = EtcdModel(aws.clock, seed=1, start_seconds=(1.0, 3.0))
    etcd = transport(model.transport()) if transport else model.transport()
    stack = deploy(aws, mode="eventbridge", etcd=etcd, settings=TLS_SETTINGS)
    fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain, tls=True).start()
    return stack, model, fleet


def member_secrets(aws: LocalAWS) -> dict[str, dict]:
    sm = aws.client("secretsmanager")
    out = {}
    for entry in sm.list_secrets()["SecretList"]:
        if entry["Name"].startswith(PREFIX):
            out[entry["Name"][len(PREFIX) :]] = json.loads(sm.get_secret_value(SecretId=entry["ARN"])["SecretString"])
    return out


def running_members(model: EtcdModel) -> list:
    clusters = [ms for ms in model.clusters().values() if any(m.running for m in ms)]
    assert len(clusters) == 1, clusters
    return clusters[0]


def test_every_member_gets_its_own_certificate_before_its_go_signal_and_loses_it_when_it_leaves(aws, ca):
    stack, model, _fleet = tls_world(aws, ca)
    (role,) = aws.client("iam").list_roles(PathPrefix=stack.env["etcd_member_role_path"])["Roles"]
    stack.scale(3)
    aws.clock.advance(300)
    stack.scale(4)
    aws.clock.advance(300)

    members = running_members(model)
    assert len(members) == 4 and all(m.started and not m.learner for m in members)
    assert all(m.peer_urls[0].startswith("https://") for m in members)
    secrets = member_secrets(aws)
    in_service = {i for i, s in stack.instances().items() if s == "InService"}
    assert set(secrets) == in_service == {m.name for m in members}
    dns = stack.private_dns(in_service)
    tags = {iid: stack.tags(iid) for iid in in_service}
    sm = aws.client("secretsmanager")
    for iid, value in secrets.items():
        assert value["ca"] == ca.pem
        cert = x509.load_pem_x509_certificate(value["cert"].encode())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == iid
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert DOMAIN in sans.get_values_for_type(x509.DNSName)
        assert dns[iid].rstrip(".") in sans.get_values_for_type(x509.DNSName)
        assert len(sans.get_values_for_type(x509.IPAddress)) == 2  # private IP and 127.0.0.1
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        ca.certificate.public_key().verify(cert.signature, cert.tbs_certificate_bytes, _ecdsa())
        described = sm.describe_secret(SecretId=f"{PREFIX}{iid}")
        assert tags[iid]["etcd-member-cert"] == described["ARN"]
        policy = json.loads(sm.get_resource_policy(SecretId=described["ARN"])["ResourcePolicy"])
        assert policy == json.loads(resource_policy(iid, [(role["RoleId"], role["Arn"])]))
        conditions = [st["Condition"] for st in policy["Statement"]]
        assert {"StringNotEquals": {"aws:userid": [f"{role['RoleId']}:{iid}"]}} in conditions  # not "*:<iid>"
        assert {"ArnNotEquals": {"aws:PrincipalArn": [role["Arn"]]}} in conditions

    # Order, per instance: the secret, its policy, its value, then the go signal.
    for iid in in_service:
        order = [
            c.operation
            for c in aws.calls
            if c.status == 200
            and not c.operation.startswith(("Describe", "Get", "List"))
            and iid in json.dumps(c.params, default=str)
            and (c.service == "secretsmanager" or "etcd-cluster-state" in json.dumps(c.params, default=str))
        ]
        assert order[:4] == ["CreateSecret", "PutResourcePolicy", "PutSecretValue", "CreateTags"], (iid, order)

    # Scale in: each leaver's secret is deleted when its termination completes; the others stay.
    stack.scale(3)
    aws.clock.advance(300)
    left = {i for i, s in stack.instances().items() if s == "InService"}
    assert len(left) == 3
    assert set(member_secrets(aws)) == left == {m.name for m in running_members(model)}


def test_a_ca_secret_that_cannot_issue_stops_the_pass_before_the_go_signal(aws, ca):
    """An unreadable CA: no go signal, no member add, nothing started; the error names etcd_ca_secret."""
    aws.client("secretsmanager").create_secret(Name="etcd/ca", SecretString=json.dumps({"cert": "nope", "key": "x"}))
    stack, model, _fleet = tls_world(aws, None)
    stack.scale(1)
    aws.clock.advance(120)
    tags = {iid: stack.tags(iid) for iid in stack.instances()}
    assert all("etcd-cluster-state" not in t for t in tags.values())
    assert not model.clusters()
    errors = [i.error or "" for i in aws.invocations if i.outcome == "error"]
    assert any("etcd_ca_secret" in e for e in errors), errors


def test_the_member_secret_steps_resume_after_a_pass_killed_between_them(aws, ca):
    """Write before mutate: a secret left without its value (a pass killed after CreateSecret) is given its
    policy and value by the next pass; a value that landed with its answer lost is never re-keyed."""
    put_ca(aws, ca)
    sm = aws.client("secretsmanager")
    certs = MemberCertificates(sm, "etcd/ca", PREFIX, iam=aws.client("iam"), role_path=member_role(aws, "etcd"))
    ident = member_identity("i-0123456789abcdef0", ["ip-10-0-0-5.ec2.internal", "10.0.0.5"], DOMAIN)
    sm.create_secret(Name=f"{PREFIX}{ident.instance_id}")  # the killed pass got this far
    arn = certs.ensure(ident)
    first = sm.get_secret_value(SecretId=arn)["SecretString"]
    assert json.loads(first)["ca"] == ca.pem
    assert certs.ensure(ident) == arn
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == first  # not re-keyed
    versions = sm.list_secret_version_ids(SecretId=arn)["Versions"]
    assert len(versions) == 1
    assert certs.delete(ident.instance_id)
    certs.delete(ident.instance_id)  # again (a retried pass): no error
    assert ident.instance_id not in certs.owners()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("not json", "is not a SecretString like"),
        (json.dumps({"cert": "x"}), "is not a SecretString like"),
        (json.dumps({"cert": "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----", "key": "k"}), "not hold"),
    ],
)
def test_an_unusable_ca_secret_says_what_it_should_hold(aws, value, fragment):
    sm = aws.client("secretsmanager")
    sm.create_secret(Name="etcd/ca", SecretString=value)
    with pytest.raises(CertificateError) as err:
        load_ca(sm, "etcd/ca")
    assert "etcd_ca_secret" in str(err.value) and fragment in str(err.value)


def test_a_member_certificate_is_not_a_ca_and_a_leaf_is_refused_as_the_ca(aws, ca):
    sm = aws.client("secretsmanager")
    cert, key = ca.issue("not-a-ca", dns=["x"])
    sm.create_secret(Name="etcd/leaf", SecretString=json.dumps({"cert": cert, "key": key}))
    with pytest.raises(CertificateError, match="is not a CA"):
        load_ca(sm, "etcd/leaf")
    with pytest.raises(CertificateError, match="cannot be read"):
        load_ca(sm, "etcd/absent")


def _ecdsa():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.ECDSA(hashes.SHA256())


def test_a_reconcile_sweeps_the_secrets_of_instances_long_gone_and_only_those(aws, ca):
    """A deletion that failed (or an instance that died before its termination completed) leaves a member secret;
    the reconcile deletes it once it is older than an hour and EC2 does not run its instance. A young secret is
    kept whatever the describes say (they lag behind launches), and so is a running instance's."""
    stack, _model, _fleet = tls_world(aws, ca)
    stack.scale(1)
    aws.clock.advance(300)
    (live,) = [i for i, s in stack.instances().items() if s == "InService"]
    sm = aws.client("secretsmanager")

    def member_secret(iid: str, tagged: bool = True) -> None:
        tags = [{"Key": "etcd-instance-id", "Value": iid}] if tagged else []
        sm.create_secret(Name=f"{PREFIX}{iid}", SecretString="{}", Tags=tags)

    member_secret("i-0000000000000dead")
    # Review finding: the sweep took every name under the prefix for an instance id — a CA or an operator's secret
    # put there (a prefix chosen too wide) was force-deleted an hour later. Only tagged, instance-named ones count.
    member_secret("ca", tagged=False)
    member_secret("i-00000000000000ab", tagged=False)
    aws.clock.advance(4000)
    member_secret("i-000000000000beef")
    stack.reconcile()
    aws.clock.advance(60)
    assert set(member_secrets_names(aws)) == {live, "i-000000000000beef", "ca", "i-00000000000000ab"}


def member_secrets_names(aws: LocalAWS) -> list[str]:
    entries = aws.client("secretsmanager").list_secrets()["SecretList"]
    return [e["Name"][len(PREFIX) :] for e in entries if e["Name"].startswith(PREFIX)]


def test_pki_init_makes_a_ca_the_coordinator_can_issue_from_and_a_client_certificate_it_can_load(aws, tmp_path, capsys):
    """``python -m hook_handler pki init``: the two secrets a TLS deployment needs, usable as they are by the
    coordinator (``etcd_ca_secret`` issues, ``etcd_tls_secret`` loads as a client), and kept on a second run."""
    from hook_handler.__main__ import main
    from hook_handler.tls import load_client_tls

    assert main(["pki", "init", "--ca-secret", "etcd/ca", "--client-secret", "etcd/coordinator"]) == 0
    arns = json.loads(capsys.readouterr().out)
    sm = aws.client("secretsmanager")
    ca_cert, _ = load_ca(sm, "etcd/ca")
    client = load_client_tls(sm, arns["etcd_tls_secret"], str(tmp_path))
    cert = x509.load_pem_x509_certificate(open(client.cert, "rb").read())  # noqa: SIM115
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    issuer = x509.load_pem_x509_certificate(ca_cert.encode())
    issuer.public_key().verify(cert.signature, cert.tbs_certificate_bytes, _ecdsa())
    certs = MemberCertificates(
        sm, arns["etcd_ca_secret"], PREFIX, iam=aws.client("iam"), role_path=member_role(aws, "etcd")
    )
    assert certs.ensure(member_identity("i-0123456789abcdef0", ["10.0.0.5"], DOMAIN)).startswith("arn:")
    before = sm.get_secret_value(SecretId="etcd/ca")["SecretString"]
    assert main(["pki", "init", "--ca-secret", "etcd/ca", "--client-secret", "etcd/coordinator"]) == 0
    assert json.loads(capsys.readouterr().out) == arns
    assert sm.get_secret_value(SecretId="etcd/ca")["SecretString"] == before  # never a second CA


def test_a_member_secret_prefix_that_covers_the_ca_or_client_secret_is_refused():
    from hook_handler.exceptions import SettingsError
    from hook_handler.settings import load_settings

    base = {
        "domain_name": DOMAIN,
        "r53_zone_id": "Z1",
        "asg_names": "etcd",
        "srv_record_name": "_etcd-server-ssl._tcp",
        "etcd_peer_scheme": "https",
        "etcd_tls_secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:etcd-asg/prod/coordinator-AbCdEf",
        "etcd_ca_secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:etcd-asg/prod/ca-AbCdEf",
        "etcd_member_role_path": "/etcd-asg/prod/",
    }
    assert load_settings(base).etcd_member_secret_prefix == f"etcd-asg/{DOMAIN}/member/"
    for prefix in ("etcd-asg/", "etcd-asg/prod/"):
        with pytest.raises(SettingsError) as err:
            load_settings({**base, "etcd_member_secret_prefix": prefix})
        assert err.value.variable == "etcd_member_secret_prefix" and "covers etcd_" in str(err.value)


def test_a_joiner_whose_add_is_refused_for_a_while_gets_its_certificate_made_once(aws, ca):
    """A joiner looks every second while etcd refuses its add ("unhealthy cluster"): its secret is made once per
    sandbox, not described and re-policied at every look."""
    from hook_handler.etcd import EtcdRefused

    refusals = {"left": 8}

    class Refusing:
        def __init__(self, inner) -> None:
            self.inner = inner

        def post(self, endpoint, path, body, timeout):
            if path == "/v3/cluster/member/add" and refusals["left"] > 0:
                refusals["left"] -= 1
                raise EtcdRefused(endpoint, "etcdserver: unhealthy cluster", 14)
            return self.inner.post(endpoint, path, body, timeout)

        def get(self, endpoint, path, timeout):
            return self.inner.get(endpoint, path, timeout)

    stack, _model, _fleet = tls_world(aws, ca, transport=Refusing)
    stack.scale(3)
    aws.clock.advance(300)
    mark = len(aws.calls)
    stack.scale(4)
    aws.clock.advance(300)
    assert refusals["left"] == 0  # the add was refused, and looked at again, eight times
    ops = [c.operation for c in aws.calls[mark:] if c.service == "secretsmanager" and c.status == 200]
    assert ops.count("PutResourcePolicy") == 1 and ops.count("PutSecretValue") == 1, ops
    assert len(member_secrets(aws)) == 4


def test_a_member_secret_admits_only_the_members_role_for_its_instance_and_needs_that_role(aws, ca):
    """A role session named after an instance (the session name is its caller's choice) must not pass: the policy
    pins the members' RoleId and ARN. No role under the path: the secret is not made usable (no value), said why."""
    put_ca(aws, ca)
    sm, iam = aws.client("secretsmanager"), aws.client("iam")
    ident = member_identity("i-0123456789abcdef0", ["10.0.0.5"], DOMAIN)
    certs = MemberCertificates(sm, "etcd/ca", PREFIX, iam=iam, role_path="/etcd-asg/nobody/")
    with pytest.raises(CertificateError, match=r"no IAM role has the path /etcd-asg/nobody/.*etcd_member_role_path"):
        certs.ensure(ident)
    assert "VersionIdsToStages" not in sm.describe_secret(SecretId=f"{PREFIX}{ident.instance_id}")
    path = member_role(aws, "etcd")
    (role,) = iam.list_roles(PathPrefix=path)["Roles"]
    arn = MemberCertificates(sm, "etcd/ca", PREFIX, iam=iam, role_path=path).ensure(ident)
    statements = json.loads(sm.get_resource_policy(SecretId=arn)["ResourcePolicy"])["Statement"]
    assert {json.dumps(st["Condition"], sort_keys=True) for st in statements} == {
        json.dumps({"StringNotEquals": {"aws:userid": [f"{role['RoleId']}:{ident.instance_id}"]}}),
        json.dumps({"ArnNotEquals": {"aws:PrincipalArn": [role["Arn"]]}}),
    }
    assert all(st["Effect"] == "Deny" and st["Action"] == "secretsmanager:GetSecretValue" for st in statements)


def test_member_certificates_without_the_members_role_path_is_a_settings_error():
    from hook_handler.exceptions import SettingsError
    from hook_handler.settings import load_settings

    env = {
        "domain_name": DOMAIN,
        "r53_zone_id": "Z1",
        "asg_names": "etcd",
        "srv_record_name": "_etcd-server-ssl._tcp",
        "etcd_peer_scheme": "https",
        "etcd_tls_secret": "etcd/coordinator",
        "etcd_ca_secret": "etcd/ca",
    }
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert err.value.variable == "etcd_member_role_path" and "/etcd-asg/" in str(err.value)
    with pytest.raises(SettingsError, match="not an IAM path"):
        load_settings({**env, "etcd_member_role_path": "/"})
