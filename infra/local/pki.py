"""A throwaway certificate authority for the local TLS cluster and the tests.

Not a production CA: it lives in memory and its certificates last a day. It makes and signs with the
coordinator's own code (``hook_handler.certs.create_ca`` and ``issue``), so what the tests and the demo trust is
what a deployment's ``pki init`` makes: member certificates whose SANs name the member's peer host, its private
IP and the SRV discovery domain, and client certificates (the coordinator's).

    >>> ca = CertificateAuthority.create("etcd-local-ca")
    >>> cert, key = ca.issue("i-0abc", dns=["ip-10-0-0-5.ec2.internal", "example.com"], ips=["10.0.0.5"])
    >>> cert.startswith("-----BEGIN CERTIFICATE-----")
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hook_handler.certs import create_ca, issue

LIFETIME_DAYS = 1.0


@dataclass(frozen=True)
class CertificateAuthority:
    name: str
    pem: str  # the CA certificate
    key_pem: str  # its private key (PKCS#8, unencrypted)

    @classmethod
    def create(cls, name: str = "etcd-local-ca") -> CertificateAuthority:
        return cls(name, *create_ca(name, days=LIFETIME_DAYS))

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.pem.encode())

    @property
    def key(self) -> Any:
        return serialization.load_pem_private_key(self.key_pem.encode(), password=None)

    def issue(
        self,
        common_name: str,
        *,
        dns: Iterable[str] = (),
        ips: Iterable[str] = (),
        server: bool = True,
        client: bool = True,
    ) -> tuple[str, str]:
        """A certificate and its key (both PEM) for ``common_name`` with these SANs and usages."""
        return issue(
            self.pem, self.key_pem, common_name, dns=dns, ips=ips, days=LIFETIME_DAYS, server=server, client=client
        )
