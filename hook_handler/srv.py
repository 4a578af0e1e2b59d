"""DNS record values: SRV rendering/parsing and the names of per-member A records.

SRV values follow RFC 2782 as Route 53 stores them: ``priority weight port target.`` with a
fully qualified target (trailing dot). The target is a host name, never an IP address.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SrvValue:
    """One SRV value.

    Example:
        >>> SrvValue.parse("0 0 2380 ip-10-0-1-4.ec2.internal.").target
        'ip-10-0-1-4.ec2.internal.'
        >>> str(SrvValue(0, 0, 2380, "ip-10-0-1-4.ec2.internal"))
        '0 0 2380 ip-10-0-1-4.ec2.internal.'
    """

    priority: int
    weight: int
    port: int
    target: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", absolute(self.target))

    def __str__(self) -> str:
        return f"{self.priority} {self.weight} {self.port} {self.target}"

    @classmethod
    def parse(cls, value: str) -> SrvValue:
        """Parse a Route 53 SRV value; raise ``ValueError`` with the value when malformed."""
        parts = value.split()
        if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
            raise ValueError(f"not an SRV value (priority weight port target): {value!r}")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]), parts[3])


def absolute(name: str) -> str:
    """Lower-case fully qualified name with exactly one trailing dot.

    >>> absolute("Ip-10-0-1-4.EC2.internal")
    'ip-10-0-1-4.ec2.internal.'
    """
    return name.strip().lower().rstrip(".") + "."


def a_record_name(template: str, instance_id: str, private_ip: str, domain: str) -> str:
    """The FQDN of a member's A record under ``domain`` (``target_mode=a-record``).

    >>> a_record_name("{instance_id}", "i-0abc", "10.0.0.1", "example.com.")
    'i-0abc.example.com.'
    >>> a_record_name("etcd-{ip_dashed}", "i-0abc", "10.0.0.1", "example.com.")
    'etcd-10-0-0-1.example.com.'
    """
    label = template.format(instance_id=instance_id, ip_dashed=private_ip.replace(".", "-"))
    return absolute(f"{label}.{domain.rstrip('.')}")
