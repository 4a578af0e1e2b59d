"""Member certificates: issued by the coordinator at the go signal, one AWS Secrets Manager secret per instance.

With ``etcd_ca_secret`` set (a secret ``{"cert": PEM, "key": PEM}`` holding the cluster's issuing CA, which only
the coordinator's role can read), every admitted instance gets, before its go signal, a fresh ECDSA P-256 key
and a certificate (CN = instance id; SANs = its peer host, its private DNS name, its private IP and the SRV
discovery domain — etcd checks the discovery domain in every peer's certificate when it discovers over TLS;
extended key usages serverAuth and clientAuth: a member is a server to clients and peers and a client to peers).
They go to the secret ``<etcd_member_secret_prefix><instance-id>`` as ``{"ca", "cert", "key"}``, and the
instance's start script reads it (its ARN is the instance's tag ``etcd-member-cert``).

Who can read a member's key: the secret's resource policy denies ``GetSecretValue`` to every session whose
``aws:userid`` is not ``<RoleId>:<instance-id>`` of the members' role (the role under ``etcd_member_role_path``,
listed at each issue) or whose ``aws:PrincipalArn`` is not that role (IAM: an instance profile's session has
``aws:userid`` = ``<role-id>:<instance-id>``; a session name is its caller's choice, the RoleId is not), so only
that instance reads it, whatever the instances' shared role allows.
The steps are ordered so no reader ever sees a key without that policy: the secret is created empty, the
policy is put, then the value. Each step is idempotent and checked against the secret as it is (the secret's
name is the instance id, so a pass killed anywhere resumes: an existing secret is reused, never re-keyed once
it holds a value). The secret is deleted (without recovery) when the instance's termination completes or its
launch is abandoned; a reconcile sweeps the secrets of instances EC2 no longer knows. Rotation is by
replacement: an instance refresh gives every member a new key and certificate.

``cryptography`` is imported on first issue only: a cold start without member certificates never loads it.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hook_handler.exceptions import CoordinatorError
from hook_handler.retry import error_code, error_message

CA_SETTING = "etcd_ca_secret"
CERT_TAG = "etcd-member-cert"  # the member secret's ARN, on the instance, written with (before) the go signal
INSTANCE_TAG = "etcd-instance-id"  # on the member secret: whose it is (the sweep reads it)
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
_TOKEN_NAMESPACE = uuid.UUID("6f0f3d0e-5d0c-4b8e-9a51-3c5d9b1f8a10")


class CertificateError(CoordinatorError):
    """A member certificate could not be issued (the CA secret is unusable, or Secrets Manager refused)."""


@dataclass(frozen=True)
class MemberIdentity:
    """What a member certificate names."""

    instance_id: str
    dns: tuple[str, ...]  # peer host, private DNS name, discovery domain
    ips: tuple[str, ...]  # private IP


LOOPBACK = ("localhost", "127.0.0.1")  # the start script also serves clients on https://127.0.0.1:2379


def member_identity(instance_id: str, hosts: Iterable[str | None], domain: str) -> MemberIdentity:
    """The SANs of ``instance_id``'s certificate: each host (DNS name or IP), the discovery domain, and the loopback
    names (the start script serves clients on ``https://127.0.0.1:2379`` too, for etcdctl on the instance; and
    etcd checks a peer's certificate against the address it connects from, which is 127.0.0.1 for a connection
    on the instance itself).

    >>> m = member_identity("i-1", ["ip-10-0-0-5.ec2.internal.", "10.0.0.5", None], "example.com.")
    >>> m.dns, m.ips
    (('ip-10-0-0-5.ec2.internal', 'example.com', 'localhost'), ('10.0.0.5', '127.0.0.1'))
    """
    dns: dict[str, None] = {}
    ips: dict[str, None] = {}
    for host in hosts:
        if not host:
            continue
        host = host.rstrip(".").lower()
        try:
            ips[str(ipaddress.ip_address(host))] = None
        except ValueError:
            dns[host] = None
    dns[domain.rstrip(".").lower()] = None
    dns[LOOPBACK[0]] = None
    ips[LOOPBACK[1]] = None
    return MemberIdentity(instance_id, tuple(dns), tuple(ips))


def issue(
    ca_cert_pem: str,
    ca_key_pem: str,
    common_name: str,
    *,
    dns: Iterable[str] = (),
    ips: Iterable[str] = (),
    days: float = 365.0,
    server: bool = True,
    client: bool = True,
    now: datetime.datetime | None = None,
) -> tuple[str, str]:
    """A new key and a certificate for it signed by the CA (both PEM): ``(cert, key)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = now or datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(d.rstrip(".")) for d in dict.fromkeys(dns)]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ips)]
    wanted = ((ExtendedKeyUsageOID.SERVER_AUTH, server), (ExtendedKeyUsageOID.CLIENT_AUTH, client))
    usages = [usage for usage, on in wanted if on]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)  # type: ignore[arg-type]
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def create_ca(common_name: str, *, days: float = 3650.0) -> tuple[str, str]:
    """A new self-signed issuing CA for one etcd cluster (ECDSA P-256, ``pathlen:0``): ``(cert, key)`` PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def init_pki(secretsmanager: Any, ca_secret: str, client_secret: str, *, name: str = "etcd") -> dict[str, str]:
    """What ``python -m hook_handler pki init`` does: a new CA in ``ca_secret`` (``{"cert", "key"}``: the
    coordinator's ``etcd_ca_secret``) and the coordinator's client certificate in ``client_secret``
    (``{"ca", "cert", "key"}``: its ``etcd_tls_secret``). Existing secrets are left as they are (their ARNs are
    returned): run it again safely; a new CA means replacing every member (instance refresh)."""
    arns: dict[str, str] = {}
    for secret in (ca_secret, client_secret):
        try:
            arns[secret] = secretsmanager.describe_secret(SecretId=secret)["ARN"]
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise CertificateError(f"DescribeSecret {secret}: {error_code(exc)}: {error_message(exc)}") from None
    if client_secret in arns and ca_secret in arns:
        # Both kept: the CA's key is not read (its resource policy admits only the coordinator and break glass).
        return {"etcd_ca_secret": arns[ca_secret], "etcd_tls_secret": arns[client_secret]}
    if ca_secret in arns:
        ca_cert, ca_key = load_ca(secretsmanager, ca_secret)
    else:
        ca_cert, ca_key = create_ca(f"{name} etcd CA")
        arns[ca_secret] = secretsmanager.create_secret(
            Name=ca_secret,
            Description=f"issuing CA of the {name} etcd cluster (etcd-asg-coordinator etcd_ca_secret)",
            SecretString=json.dumps({"cert": ca_cert, "key": ca_key}),
        )["ARN"]
    if client_secret not in arns:
        cert, key = issue(ca_cert, ca_key, "etcd-asg-coordinator", server=False, days=3650)
        arns[client_secret] = secretsmanager.create_secret(
            Name=client_secret,
            Description=f"etcd client certificate of the {name} coordinator (etcd-asg-coordinator etcd_tls_secret)",
            SecretString=json.dumps({"ca": ca_cert, "cert": cert, "key": key}),
        )["ARN"]
    return {"etcd_ca_secret": arns[ca_secret], "etcd_tls_secret": arns[client_secret]}


def resource_policy(instance_id: str, roles: Sequence[tuple[str, str]]) -> str:
    """The member secret's resource policy: nobody but the instance's own session of the members' role reads the
    value. ``roles``: (RoleId, ARN) of the members' role (``etcd_member_role_path``). An instance profile's session
    has ``aws:userid`` = ``<RoleId>:<instance-id>``; a role session named after the instance by anyone else (the
    session name is the caller's choice) has another role's RoleId, and ``aws:PrincipalArn`` names that role.

    >>> doc = json.loads(resource_policy("i-1", [("AROAEXAMPLE", "arn:aws:iam::123456789012:role/etcd-asg/x/m")]))
    >>> [s["Condition"] for s in doc["Statement"]][0]
    {'StringNotEquals': {'aws:userid': ['AROAEXAMPLE:i-1']}}
    """
    ids = sorted(f"{role_id}:{instance_id}" for role_id, _ in roles)
    arns = sorted(arn for _, arn in roles)
    deny = {"Effect": "Deny", "Principal": "*", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "OnlyItsInstancesSessionReadsTheKey",
                    **deny,
                    "Condition": {"StringNotEquals": {"aws:userid": ids}},
                },
                {
                    "Sid": "OnlyTheMembersRoleReadsTheKey",
                    **deny,
                    "Condition": {"ArnNotEquals": {"aws:PrincipalArn": arns}},
                },
            ],
        },
        sort_keys=True,
    )


def member_roles(iam: Any, path: str) -> list[tuple[str, str]]:
    """(RoleId, ARN) of every role under ``path`` (``etcd_member_role_path``). Raises ``CertificateError`` when
    there is none: a secret that admits no role would keep every member out."""
    roles: list[tuple[str, str]] = []
    params: dict[str, Any] = {"PathPrefix": path}
    try:
        while True:
            out = iam.list_roles(**params)
            roles += [(r["RoleId"], r["Arn"]) for r in out.get("Roles", []) if r.get("Path") == path]
            if not out.get("IsTruncated"):
                break
            params["Marker"] = out["Marker"]
    except ClientError as exc:
        raise CertificateError(
            f"iam:ListRoles under {path} (etcd_member_role_path): {error_code(exc)}: {error_message(exc)}; the "
            "coordinator's role needs iam:ListRoles"
        ) from None
    except BotoCoreError as exc:
        raise CertificateError(f"iam:ListRoles under {path}: {exc}") from None
    if not roles:
        raise CertificateError(
            f"no IAM role has the path {path} (etcd_member_role_path): deploy the cluster stack (etcd-cluster.yaml "
            "gives its members' role that path) or set etcd_member_role_path to the members' role's path"
        )
    return roles


class MemberCertificates:
    """Issue, find and delete member certificate secrets (see the module docstring for the steps)."""

    def __init__(
        self,
        secretsmanager: Any,
        ca_secret: str,
        prefix: str,
        *,
        days: float = 365.0,
        iam: Any = None,
        role_path: str = "",
    ) -> None:
        self.sm = secretsmanager
        self.iam = iam
        self.role_path = role_path
        self.ca_secret = ca_secret
        self.prefix = prefix
        self.days = days
        self._ca: tuple[str, str] | None = None

    def name(self, instance_id: str) -> str:
        return f"{self.prefix}{instance_id}"

    def ensure(self, identity: MemberIdentity) -> str:
        """The ARN of ``identity``'s member secret, holding a key and certificate, created if needed."""
        name = self.name(identity.instance_id)
        described = self._describe(name)
        if described is None:
            described = self._create(name, identity.instance_id)
        if described.get("DeletedDate"):
            # The instance's previous secret is being deleted (it went back to a warm pool and returns): Secrets
            # Manager deletes asynchronously, and the name is taken until it is gone. The next look retries.
            raise CertificateError(f"secret {name} is still being deleted; a new one is made once it is gone")
        arn = described["ARN"]
        # Step 2, always (cheap, idempotent): the policy that keeps every other instance out, before any value.
        self._call(
            "PutResourcePolicy",
            self.sm.put_resource_policy,
            SecretId=arn,
            ResourcePolicy=resource_policy(identity.instance_id, member_roles(self.iam, self.role_path)),
            BlockPublicPolicy=True,
        )
        stages = described.get("VersionIdsToStages") or {}
        if not any("AWSCURRENT" in s for s in stages.values()):
            ca_cert, ca_key = self._load_ca()
            cert, key = issue(ca_cert, ca_key, identity.instance_id, dns=identity.dns, ips=identity.ips, days=self.days)
            value = json.dumps({"ca": ca_cert, "cert": cert, "key": key})
            token = str(uuid.uuid5(_TOKEN_NAMESPACE, arn))  # one value per secret: a lost answer is not re-keyed
            try:
                self.sm.put_secret_value(SecretId=arn, SecretString=value, ClientRequestToken=token)
            except ClientError as exc:
                if error_code(exc) != "ResourceExistsException":  # that version landed before (answer lost)
                    raise self._error("PutSecretValue", name, exc) from None
            except BotoCoreError as exc:
                raise CertificateError(f"PutSecretValue on {name}: {exc}") from None
        return arn

    def delete(self, instance_id: str) -> bool:
        """Delete the instance's member secret at once (no recovery window). False when there was none."""
        try:
            self.sm.delete_secret(SecretId=self.name(instance_id), ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return False
            raise self._error("DeleteSecret", self.name(instance_id), exc) from None
        except BotoCoreError as exc:
            raise CertificateError(f"DeleteSecret on {self.name(instance_id)}: {exc}") from None
        return True

    def owners(self) -> dict[str, float]:
        """Every member secret under the prefix: instance id -> when the secret was created (epoch seconds).

        Only what this module made counts: a name under the prefix that is an instance id and carries the tag
        ``etcd-instance-id`` naming that id. Anything else under the prefix (an operator's secret, a CA put there
        by mistake) is never a member secret, so the sweep never deletes it."""
        found: dict[str, float] = {}
        try:
            pages = self.sm.get_paginator("list_secrets").paginate(Filters=[{"Key": "name", "Values": [self.prefix]}])
            for page in pages:
                for entry in page.get("SecretList", []):
                    name = entry.get("Name", "")
                    iid = name[len(self.prefix) :] if name.startswith(self.prefix) else ""
                    tags = {t.get("Key"): t.get("Value") for t in entry.get("Tags", [])}
                    if _INSTANCE_ID.match(iid) and tags.get(INSTANCE_TAG) == iid:
                        created = entry.get("CreatedDate")
                        found[iid] = created.timestamp() if created is not None else 0.0
        except (ClientError, BotoCoreError) as exc:
            raise CertificateError(f"ListSecrets under {self.prefix}: {exc}") from None
        return found

    def _describe(self, name: str) -> Mapping[str, Any] | None:
        try:
            return self.sm.describe_secret(SecretId=name)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise self._error("DescribeSecret", name, exc) from None
        except BotoCoreError as exc:
            raise CertificateError(f"DescribeSecret on {name}: {exc}") from None

    def _create(self, name: str, instance_id: str) -> Mapping[str, Any]:
        # Step 1: the secret without a value (nothing to read until its policy is in place).
        options: dict[str, Any] = {
            "Name": name,
            "Description": f"etcd member certificate and key of {instance_id} (etcd-asg-coordinator)",
            "Tags": [{"Key": INSTANCE_TAG, "Value": instance_id}],
        }
        try:
            self.sm.create_secret(**options)
        except ClientError as exc:
            if error_code(exc) != "ResourceExistsException":  # a pass before this one created it
                raise self._error("CreateSecret", name, exc) from None
        except BotoCoreError as exc:
            raise CertificateError(f"CreateSecret on {name}: {exc}") from None
        described = self._describe(name)
        if described is None:
            raise CertificateError(f"secret {name} was created but DescribeSecret does not find it yet; retry")
        return described

    def _call(self, operation: str, fn: Any, **params: Any) -> Any:
        try:
            return fn(**params)
        except ClientError as exc:
            raise self._error(operation, params.get("SecretId", ""), exc) from None
        except BotoCoreError as exc:
            raise CertificateError(f"{operation} on {params.get('SecretId', '')}: {exc}") from None

    def _load_ca(self) -> tuple[str, str]:
        """The issuing CA's certificate and key, read once per sandbox (one GetSecretValue)."""
        if self._ca is None:
            self._ca = load_ca(self.sm, self.ca_secret)
        return self._ca

    @staticmethod
    def _error(operation: str, name: str, exc: ClientError) -> CertificateError:
        return CertificateError(
            f"{operation} on {name} failed ({error_code(exc)}: {error_message(exc)}); the coordinator's role needs "
            "secretsmanager:CreateSecret, DescribeSecret, PutResourcePolicy, PutSecretValue, DeleteSecret, "
            "ListSecrets and TagResource on the member secrets (coordinator.yaml grants them under "
            "EtcdMemberSecretPrefix)"
        )


def load_ca(secretsmanager: Any, secret_id: str) -> tuple[str, str]:
    """``(cert, key)`` PEM of the issuing CA in ``secret_id`` (``{"cert": PEM, "key": PEM}``), checked."""
    expected = 'a SecretString like {"cert": "<CA certificate PEM>", "key": "<CA private key PEM, unencrypted>"}'
    try:
        text = secretsmanager.get_secret_value(SecretId=secret_id).get("SecretString")
    except ClientError as exc:
        raise CertificateError(
            f"{CA_SETTING}: secret {secret_id!r} cannot be read ({error_code(exc)}: {error_message(exc)}); the "
            "coordinator's role needs secretsmanager:GetSecretValue on it"
        ) from None
    except BotoCoreError as exc:
        raise CertificateError(f"{CA_SETTING}: secret {secret_id!r} cannot be read ({exc})") from None
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("cert", "key")):
        raise CertificateError(f"{CA_SETTING}: secret {secret_id!r} is not {expected}")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(data["cert"].encode())
        key = serialization.load_pem_private_key(data["key"].encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{CA_SETTING}: secret {secret_id!r} does not hold {expected} ({exc})") from None
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value if _has_bc(cert) else None
    if constraints is None or not constraints.ca:
        raise CertificateError(f"{CA_SETTING}: the certificate in {secret_id!r} is not a CA (basicConstraints CA:TRUE)")
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise CertificateError(f"{CA_SETTING}: the key in {secret_id!r} is not the CA certificate's key")
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        raise CertificateError(
            f"{CA_SETTING}: the CA in {secret_id!r} is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}): certificates it signed would be refused; make a new CA "
            "(python -m hook_handler pki init with new secret names) and replace every member"
        )
    return data["cert"], data["key"]


def _has_bc(cert: Any) -> bool:
    from cryptography import x509

    try:
        cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return True
