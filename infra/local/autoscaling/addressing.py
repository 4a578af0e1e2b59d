"""Instance addresses: new instances take the account's ``instance_ips`` in order, with a private DNS name that
agrees on instance and network interface; with ``terminated_addresses`` a terminated instance loses them.

AWS: the private DNS name "is not available until the instance enters the running state"
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Instance.html, PrivateDnsName), and real
DescribeInstances output for a terminated instance has ``PrivateDnsName: ""``, no ``PrivateIpAddress`` and no
network interfaces (the primary ENI is deleted with the instance:
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/terminating-instances.html). "Terminated instances remain
visible after termination (for approximately one hour)" (TerminateInstances reference, e.g.
https://docs.aws.amazon.com/sdkfornet1/latest/apidocs/html/T_Amazon_EC2_Model_TerminateInstancesRequest.htm).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from infra.local.account import Account

log = logging.getLogger(__name__)


class PrivateAddresses:
    """Hands out ``ips`` (``LocalAWS(instance_ips=...)``) to new instances, in order; None: moto's addresses."""

    def __init__(self, ips: Iterable[str] | None) -> None:
        self._ips: Iterator[str] | None = iter(ips) if ips is not None else None

    def assign(self, instance: Any) -> None:
        """Give a new instance its emulated private IP; keep the DNS name in step with the IP."""
        nic = instance.nics.get(0) if hasattr(instance.nics, "get") else None
        if nic is None:
            return
        # moto's group launches leave region_name at its us-east-1 default, which names the DNS.
        instance.region_name = instance.ec2_backend.region_name
        if self._ips is not None:
            ip = next(self._ips, None)
            if ip is None:
                log.warning("instance_ips exhausted; %s keeps moto's address", instance.id)
            else:
                _readdress(instance, nic, ip)
        dns = instance.private_dns_name
        nic.private_dns_name = dns
        for entry in nic.private_ip_addresses:
            if entry.get("PrivateIpAddress") == nic.private_ip_address:
                entry["PrivateDnsName"] = dns


def _readdress(instance: Any, nic: Any, ip: str) -> None:
    old = nic.private_ip_address
    if instance.subnet_id and old:
        instance.ec2_backend.get_subnet(instance.subnet_id).del_subnet_ip(old)
    instance._private_ips.discard(old)
    instance._private_ips.add(ip)
    nic.private_ip_address = ip
    for entry in nic.private_ip_addresses:
        if entry.get("Primary") or entry.get("PrivateIpAddress") == old:
            entry["PrivateIpAddress"] = ip


def addresses(instance: Any) -> tuple[str | None, str]:
    """(private IP, private DNS name) the instance had, even once ``unaddress`` blanked them: for a test
    that maps record targets back to instances (no API call; the coordinator never sees this)."""
    blanked = getattr(instance, "_local_unaddressed", False)
    instance._local_unaddressed = False
    try:
        return instance.private_ip, instance.private_dns_name or ""
    finally:
        instance._local_unaddressed = blanked


def unaddress(aws: Account, instance: Any, observe: Callable[[], None]) -> None:
    """``terminated_addresses``: a terminated instance shows no private IP and an empty DNS name, and
    leaves DescribeInstances ``terminated_retention`` s later (then ``observe`` runs)."""
    if getattr(instance, "_local_unaddressed", False):
        return
    instance._local_unaddressed = True
    retention = getattr(aws, "terminated_retention", 3600.0)
    if retention is None:
        return
    backend = instance.ec2_backend

    def forget() -> None:
        with aws.lock:
            for key, reservation in list(backend.reservations.items()):
                reservation.instances = [i for i in reservation.instances if i is not instance]
                if not reservation.instances:
                    del backend.reservations[key]
            observe()

    aws.clock.call_at(aws.clock.now() + float(retention), forget)


def patch_instances() -> None:
    """moto's Instance addresses, empty once ``unaddress`` ran."""
    from moto.ec2.models.instances import Instance

    def blank(name: str, empty: Any) -> None:
        moto_property = getattr(Instance, name)

        def getter(self: Any) -> Any:
            if getattr(self, "_local_unaddressed", False):
                return empty() if callable(empty) else empty
            return moto_property.fget(self)

        setattr(Instance, name, property(getter))

    blank("private_ip", None)
    blank("private_ip_address", None)
    blank("private_dns_name", "")
    blank("network_interfaces", list)
