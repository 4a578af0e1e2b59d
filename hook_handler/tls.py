"""The coordinator's etcd client TLS: CA bundle, client certificate and key, from AWS Secrets Manager.

``etcd_tls_secret`` names a secret (ARN or name) whose ``SecretString`` is a JSON object::

    {"ca": "-----BEGIN CERTIFICATE-----...", "cert": "-----BEGIN CERTIFICATE-----...",
     "key": "-----BEGIN PRIVATE KEY-----..."}

``ca``: the PEM bundle that signed the members' certificates (verifies every member, host name included);
``cert``/``key``: the coordinator's client certificate and its key (etcd's ``--client-cert-auth``). The secret
is read once per cold start (one ``GetSecretValue``); the three parts go to a directory only this process
can read (0700, files 0600; Lambda's ``/tmp`` is the sandbox's own), are checked with ``ssl`` before any
etcd request, and are never logged. A secret that cannot be read or does not make a usable TLS client fails
the cold start with a ``SettingsError`` naming ``etcd_tls_secret`` and what to do.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hook_handler.exceptions import SettingsError

SETTING = "etcd_tls_secret"
PARTS = ("ca", "cert", "key")


@dataclass(frozen=True)
class ClientTls:
    """Where the loaded parts are on disk (what ``requests`` takes: ``verify=ca``, ``cert=(cert, key)``)."""

    ca: str
    cert: str
    key: str

    @property
    def transport_options(self) -> dict[str, Any]:
        return {"verify": self.ca, "cert": (self.cert, self.key)}


def load_client_tls(secretsmanager: Any, secret_id: str, directory: str | None = None) -> ClientTls:
    """Read ``secret_id`` (one ``GetSecretValue``), write its parts privately, and check they make a TLS client."""
    try:
        answer = secretsmanager.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise SettingsError(
            SETTING,
            f"secret {secret_id!r} cannot be read ({error.get('Code', 'error')}: {error.get('Message', '')})",
            "an existing secret; the function's role needs secretsmanager:GetSecretValue on it (and kms:Decrypt on "
            "its key when it has a customer managed one: the stack's EtcdTlsKmsKeyArn)",
        ) from None
    except BotoCoreError as exc:
        raise SettingsError(
            SETTING, f"secret {secret_id!r} cannot be read ({exc})", "a reachable Secrets Manager"
        ) from None
    parts = parse_secret(secret_id, answer.get("SecretString"))
    where = tempfile.mkdtemp(prefix="etcd-tls-", dir=directory)  # mode 0700
    try:
        paths = {}
        for name in PARTS:
            path = os.path.join(where, f"{name}.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(parts[name])
            paths[name] = path
        tls = ClientTls(paths["ca"], paths["cert"], paths["key"])
        check(secret_id, tls)
    except BaseException:
        shutil.rmtree(where, ignore_errors=True)  # nothing of a refused secret stays on disk
        raise
    atexit.register(shutil.rmtree, where, True)
    return tls


def parse_secret(secret_id: str, text: Any) -> dict[str, str]:
    """The three PEM parts of the secret's ``SecretString``, or a ``SettingsError`` saying what is missing."""
    expected = 'a SecretString like {"ca": "<PEM>", "cert": "<PEM>", "key": "<PEM>"}'
    if not isinstance(text, str):
        raise SettingsError(SETTING, f"secret {secret_id!r} has no SecretString (a binary secret?)", expected)
    try:
        data = json.loads(text)
    except ValueError:
        raise SettingsError(SETTING, f"secret {secret_id!r} is not JSON", expected) from None
    if not isinstance(data, dict):
        raise SettingsError(SETTING, f"secret {secret_id!r} is not a JSON object", expected)
    missing = [p for p in PARTS if not isinstance(data.get(p), str) or "-----BEGIN" not in data[p]]
    if missing:
        raise SettingsError(SETTING, f"secret {secret_id!r} lacks a PEM {', '.join(missing)}", expected)
    return {p: data[p] for p in PARTS}


def check(secret_id: str, tls: ClientTls) -> ssl.SSLContext:
    """The parts make a TLS client: the CA bundle loads, and the certificate and key load and match."""
    try:
        context = ssl.create_default_context(cafile=tls.ca)
    except (ssl.SSLError, ValueError) as exc:
        raise SettingsError(
            SETTING, f"secret {secret_id!r}: its ca is not a PEM CA bundle ({exc})", "PEM certificates"
        ) from None
    try:
        # password b"": an encrypted key fails here instead of OpenSSL asking for a pass phrase on a terminal
        context.load_cert_chain(tls.cert, tls.key, password=b"")
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise SettingsError(
            SETTING,
            f"secret {secret_id!r}: its cert and key do not make a client certificate ({type(exc).__name__}: {exc})",
            "the coordinator's PEM client certificate and its unencrypted PEM private key, which match",
        ) from None
    return context
