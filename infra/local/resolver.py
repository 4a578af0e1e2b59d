"""What this machine's resolver answers: the nameservers of resolv.conf (the file Go's resolver, and so etcd,
reads) and an SRV lookup through them — what etcd's ``--discovery-srv`` sees."""

from __future__ import annotations

from pathlib import Path


def resolver_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """Nameserver addresses from resolv.conf, the file Go's resolver (and so etcd) reads."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    return [line.split()[1] for line in lines if line.startswith("nameserver") and len(line.split()) > 1]


def srv_targets(name: str, *, nameservers: list[str] | None = None, timeout: float = 1.0) -> list[tuple[str, int]]:
    """(target, port) pairs of an SRV record as this machine's resolver answers it; [] when it cannot.

    Example:
        >>> srv_targets("_etcd-server._tcp.example.com")
        [('ip-127-0-1-4.ec2.internal', 2380), ('ip-127-0-1-5.ec2.internal', 2380)]
    """
    from dnslib import QTYPE, DNSRecord

    for server in nameservers if nameservers is not None else resolver_nameservers():
        try:
            reply = DNSRecord.parse(DNSRecord.question(name, "SRV").send(server, 53, timeout=timeout))
        except OSError:
            continue  # the next nameserver, as a stub resolver does
        return [(str(rr.rdata.target).rstrip(".").lower(), rr.rdata.port) for rr in reply.rr if rr.rtype == QTYPE.SRV]
    return []
