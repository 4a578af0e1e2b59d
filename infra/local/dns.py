"""A DNS server for the emulated hosted zone, so real programs (etcd, getent, dig) resolve what the coordinator wrote.

Every query is answered from Route 53 ``ListResourceRecordSets`` (and, for EC2 private DNS names such as
``ip-127-0-1-4.ec2.internal``, from EC2 ``DescribeInstances``) at the moment it arrives: nothing is cached, so
a record the coordinator has just changed is what the next query sees. The answers are authoritative (AA set)
and carry the record set's TTL; a name that does not exist is NXDOMAIN with the zone's SOA for negative caching.

Example (in-process, with moto's mock or against the emulator server through ``AWS_ENDPOINT_URL``):
    >>> handle = serve(boto3.client("route53"), "Z123", ec2=boto3.client("ec2"), address="127.0.0.1", port=0)
    >>> handle.port  # the same port serves UDP and TCP
    40353
    >>> handle.stop()

Command line (as the VPC resolver of a sandbox, see ``infra.local.sandbox``):
    python -m infra.local.dns --zone-id Z123 --address 127.0.0.53 --port 53
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from dnslib import AAAA, CNAME, MX, NS, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

LOG = logging.getLogger(__name__)

# Private DNS names EC2 gives instances: ip-10-0-1-4.ec2.internal (us-east-1) or
# ip-10-0-1-4.<region>.compute.internal (every other region).
EC2_NAME = re.compile(r"^ip-(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})\.(ec2|[a-z0-9-]+\.compute)\.internal\.?$")
# TTL of answers for EC2 private names. The emulation asks EC2 on every query anyway; the value only matters
# to a caching client, and a short one keeps a reused address from being remembered.
EC2_TTL = 60
# When the zone has no usable SOA: the minimum (negative-caching TTL) Route 53 puts in a new zone's SOA.
DEFAULT_SOA_TIMES = (1, 7200, 900, 1209600, 86400)
# RFC 1035: a UDP answer larger than this is truncated (TC set) unless the query advertised more with EDNS0.
UDP_DEFAULT_LIMIT = 512
# Instance states in which EC2's resolver still answers for the private name.
_LIVE_STATES = {"pending", "running", "stopping", "stopped", "shutting-down"}


@dataclass(frozen=True)
class RecordSet:
    """One record set as Route 53 lists it: absolute lower-case name, type, TTL and value strings."""

    name: str
    rtype: str
    ttl: int
    values: tuple[str, ...]


def _unescape_name(name: str) -> str:
    r"""Route 53 lists names with octal escapes (``\052`` for ``*``); return the plain, lower-case, absolute name."""
    plain = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), name)
    return plain.lower().rstrip(".") + "."


def _absolute(target: str) -> str:
    """A domain name in record data, made absolute (Route 53 accepts and lists NS values without the final dot)."""
    return target if target.endswith(".") else target + "."


def parse_txt(value: str) -> list[bytes]:
    r"""Split a Route 53 TXT value into its character strings.

    Route 53 writes each string in double quotes, with ``\"``, ``\\`` and ``\ddd`` escapes; an unquoted value
    is one string.

    Example:
        >>> parse_txt('"a b" "c\\"d"')
        [b'a b', b'c"d']
    """
    if '"' not in value:
        return [value.encode()]
    strings: list[bytes] = []
    i = 0
    while i < len(value):
        if value[i] != '"':
            i += 1
            continue
        i += 1
        chunk = bytearray()
        while i < len(value) and value[i] != '"':
            if value[i] == "\\" and i + 1 < len(value):
                if value[i + 1 : i + 4].isdigit() and len(value[i + 1 : i + 4]) == 3:
                    chunk.append(int(value[i + 1 : i + 4], 8))
                    i += 4
                    continue
                chunk += value[i + 1].encode()
                i += 2
                continue
            chunk += value[i].encode()
            i += 1
        strings.append(bytes(chunk))
        i += 1
    return strings


def rdata(rtype: str, value: str) -> Any:
    """The dnslib record data for one Route 53 value string, or None for a type this server does not serve.

    Example:
        >>> rdata("SRV", "0 0 2380 ip-127-0-1-4.ec2.internal.")
        <DNS SRV: 0 0 2380 ip-127-0-1-4.ec2.internal.>
    """
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "CNAME":
        return CNAME(_absolute(value))
    if rtype == "NS":
        return NS(_absolute(value))
    if rtype == "TXT":
        return TXT(parse_txt(value))
    if rtype == "SRV":
        priority, weight, port, target = value.split()
        return SRV(int(priority), int(weight), int(port), _absolute(target))
    if rtype == "MX":
        preference, exchange = value.split()
        return MX(_absolute(exchange), int(preference))
    if rtype == "SOA":
        mname, rname, *times = value.split()
        return SOA(_absolute(mname), _absolute(rname), tuple(int(t) for t in times))
    return None


class ZoneResolver(BaseResolver):
    """Answers queries for one hosted zone from Route 53, and EC2 private names from EC2, on every query.

    Example:
        >>> resolver = ZoneResolver(route53, "Z123", ec2=ec2)
        >>> resolver.lookup("_etcd-server._tcp.example.com.", "SRV")
        (0, [<DNS RR: '_etcd-server._tcp.example.com.' rtype=SRV ...>], [])
    """

    def __init__(self, route53: Any, zone_id: str, *, ec2: Any = None) -> None:
        self.route53 = route53
        self.ec2 = ec2
        self.zone_id = zone_id.rsplit("/", 1)[-1]
        # The zone's name cannot change, so it is the one thing read once.
        zone = route53.get_hosted_zone(Id=self.zone_id)["HostedZone"]
        self.zone_name = _unescape_name(zone["Name"])

    # -- reading the emulated AWS ------------------------------------------------------
    def record_sets(self) -> list[RecordSet]:
        """Every record set of the zone, read now (paginated; alias records are skipped: they have no values)."""
        found: list[RecordSet] = []
        paginator = self.route53.get_paginator("list_resource_record_sets")
        for page in paginator.paginate(HostedZoneId=self.zone_id):
            for rrset in page["ResourceRecordSets"]:
                values = tuple(v["Value"] for v in rrset.get("ResourceRecords", []))
                if values:
                    found.append(RecordSet(_unescape_name(rrset["Name"]), rrset["Type"], int(rrset["TTL"]), values))
        return found

    def ec2_addresses(self, name: str) -> list[str]:
        """Private IPs of the live instances whose private DNS name is ``name`` (as EC2's VPC resolver answers)."""
        if self.ec2 is None:
            return []
        response = self.ec2.describe_instances(Filters=[{"Name": "private-dns-name", "Values": [name.rstrip(".")]}])
        return [
            instance["PrivateIpAddress"]
            for reservation in response["Reservations"]
            for instance in reservation["Instances"]
            if instance.get("PrivateIpAddress") and instance["State"]["Name"] in _LIVE_STATES
        ]

    # -- answering -----------------------------------------------------------------------
    def in_zone(self, name: str) -> bool:
        return name == self.zone_name or name.endswith("." + self.zone_name)

    def soa(self, sets: Iterable[RecordSet]) -> RR:
        """The zone's SOA for the authority section of negative answers (synthesised if the zone's is unusable)."""
        for rs in sets:
            if rs.rtype == "SOA" and rs.name == self.zone_name:
                try:
                    return RR(self.zone_name, QTYPE.SOA, rdata=rdata("SOA", rs.values[0]), ttl=rs.ttl)
                except ValueError:
                    # moto 5.2 lists its default SOA value as the repr of a dict; serve a well-formed one instead.
                    break
        data = SOA("ns-0.awsdns-00.com.", "awsdns-hostmaster.amazon.com.", DEFAULT_SOA_TIMES)
        return RR(self.zone_name, QTYPE.SOA, rdata=data, ttl=900)

    def lookup(self, name: str, qtype: str) -> tuple[int, list[RR], list[RR]]:
        """Answer one question: (rcode, answer records, authority records). ``name`` is absolute, any case."""
        name = _unescape_name(name)
        if self.in_zone(name):
            return self._lookup_zone(name, qtype)
        if EC2_NAME.match(name):
            addresses = self.ec2_addresses(name)
            if not addresses:
                return RCODE.NXDOMAIN, [], []
            if qtype not in ("A", "ANY"):
                return RCODE.NOERROR, [], []
            return RCODE.NOERROR, [RR(name, QTYPE.A, rdata=A(ip), ttl=EC2_TTL) for ip in addresses], []
        return RCODE.NXDOMAIN, [], []

    def _lookup_zone(self, name: str, qtype: str) -> tuple[int, list[RR], list[RR]]:
        sets = self.record_sets()
        answers: list[RR] = []
        # Follow CNAMEs inside the zone, as an authoritative server does; the bound stops a CNAME loop.
        for _ in range(8):
            here = self._matching(sets, name)
            if not here:
                break
            cname = [rs for rs in here if rs.rtype == "CNAME"]
            if cname and qtype not in ("CNAME", "ANY"):
                answers.extend(self._rrs(name, cname[0]))
                target = _absolute(cname[0].values[0]).lower()
                if not self.in_zone(target):
                    return RCODE.NOERROR, answers, []
                name = target
                continue
            for rs in here:
                if rs.rtype == "SOA" and qtype in ("SOA", "ANY"):
                    answers.append(self.soa(sets))
                elif qtype == "ANY" or rs.rtype == qtype:
                    answers.extend(self._rrs(name, rs))
            if answers:
                return RCODE.NOERROR, answers, []
            return RCODE.NOERROR, [], [self.soa(sets)]  # the name exists, not with this type: NODATA
        if answers:  # a CNAME chain ending at a name the zone does not have
            return RCODE.NOERROR, answers, [self.soa(sets)]
        if any(rs.name.endswith("." + name) for rs in sets):
            return RCODE.NOERROR, [], [self.soa(sets)]  # an empty non-terminal such as _tcp.example.com.
        return RCODE.NXDOMAIN, [], [self.soa(sets)]

    def _matching(self, sets: list[RecordSet], name: str) -> list[RecordSet]:
        """Record sets owned by ``name``; failing that, by the closest wildcard (as Route 53 answers ``*.``)."""
        exact = [rs for rs in sets if rs.name == name]
        if exact or any(rs.name.endswith("." + name) for rs in sets):
            return exact
        labels = name.split(".")
        for i in range(1, len(labels) - 1):
            wildcard = "*." + ".".join(labels[i:])
            if not self.in_zone(wildcard):
                break
            found = [rs for rs in sets if rs.name == wildcard]
            if found:
                return [RecordSet(name, rs.rtype, rs.ttl, rs.values) for rs in found]
        return []

    @staticmethod
    def _rrs(name: str, rs: RecordSet) -> list[RR]:
        records = []
        for value in rs.values:
            data = rdata(rs.rtype, value)
            if data is not None:
                records.append(RR(name, getattr(QTYPE, rs.rtype), rdata=data, ttl=rs.ttl))
        return records

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        """dnslib entry point: one reply per request, authoritative, never recursive."""
        reply = request.reply(ra=0, aa=1)
        question = request.q
        qname, qtype = str(question.qname), QTYPE.get(question.qtype)
        try:
            rcode, answers, authority = self.lookup(qname, str(qtype))
        except (BotoCoreError, ClientError, ValueError) as exc:
            # The emulated AWS is down or returned data we cannot serve: say so, never answer something stale.
            LOG.warning("dns %s %s: SERVFAIL (%s)", qname, qtype, exc)
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        reply.header.rcode = rcode
        for rr in answers:
            reply.add_answer(rr)
        for rr in authority:
            reply.add_auth(rr)
        LOG.debug("dns %s %s -> %s %s", qname, qtype, RCODE.get(rcode), [str(rr.rdata) for rr in answers])
        return reply


class _Handler(DNSHandler):
    """dnslib's handler, truncating UDP answers at 512 bytes or the EDNS0 size the query advertised."""

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        self.server.logger.log_request(self, request)
        reply = self.server.resolver.resolve(request, self)
        self.server.logger.log_reply(self, reply)
        packed = reply.pack()
        if self.protocol == "udp":
            # An OPT record's class field is the UDP payload size the client accepts (RFC 6891).
            limit = max([UDP_DEFAULT_LIMIT] + [rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT])
            if len(packed) > limit:
                packed = reply.truncate().pack()  # TC set: the client retries over TCP
        return packed


class _QuietLogger(DNSLogger):
    """dnslib prints every packet to stdout; keep only errors, through ``logging``."""

    def __init__(self) -> None:
        super().__init__(log="-recv,-send,-request,-reply,-truncated,-data", prefix=False, logf=LOG.warning)


@dataclass
class DNSHandle:
    """A running server: ``address``/``port`` serve UDP and TCP; ``stop()`` closes both sockets."""

    address: str
    port: int
    resolver: ZoneResolver
    servers: list[DNSServer] = field(default_factory=list)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
            server.server.server_close()  # dnslib's stop() leaves the socket bound
        self.servers.clear()

    def __enter__(self) -> DNSHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalZoneResolver(ZoneResolver):
    """The same answers, read straight from a running ``LocalAWS``'s state instead of through its API.

    Real DNS queries never count against Route 53's API limit (5 requests/s per account): Route 53's name
    servers answer them. Reading the zone through ``ListResourceRecordSets`` on every query made etcd's own
    lookups throttle the coordinator, so the demo had to switch the limit off; this resolver keeps it on.

    Example:
        >>> resolver = LocalZoneResolver(aws, "Z123")
        >>> resolver.lookup("_etcd-server._tcp.example.com.", "SRV")[0]
        0
    """

    def __init__(self, aws: Any, zone_id: str) -> None:  # no super().__init__: no API call at all
        from infra.local import route53 as emulated

        self.aws = aws
        self.route53 = None
        self.ec2 = None
        self.zone_id = zone_id.rsplit("/", 1)[-1]
        zone = emulated.backend(aws).get_hosted_zone(emulated.bare_zone_id(self.zone_id))
        self.zone_name = _unescape_name(zone.name if zone.name.endswith(".") else zone.name + ".")

    def record_sets(self) -> list[RecordSet]:
        with self.aws.lock:
            records = self.aws.records(self.zone_id)
        return [
            RecordSet(_unescape_name(name), rtype, int(ttl or 0), tuple(values))
            for (name, rtype), (ttl, values) in records.items()
            if values
        ]

    def ec2_addresses(self, name: str) -> list[str]:
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[self.aws.account][self.aws.region]
        want = name.rstrip(".").lower()
        return [
            instance.private_ip
            for reservation in list(backend.reservations.values())
            for instance in list(reservation.instances)
            if (instance.private_dns_name or "").lower() == want
            and instance.private_ip
            and instance.state in _LIVE_STATES
        ]


def serve(
    route53: Any,
    zone_id: str,
    *,
    ec2: Any = None,
    address: str = "127.0.0.53",
    port: int = 53,
    tcp: bool = True,
    resolver: ZoneResolver | None = None,
) -> DNSHandle:
    """Start serving ``zone_id`` on ``address:port`` (UDP, and TCP on the same port) in background threads.

    ``port=0`` picks a free port. Port 53 needs root or a user namespace (see ``infra.local.sandbox``).
    ``resolver``: another source of answers (``LocalZoneResolver`` reads a ``LocalAWS`` directly).

    Example:
        >>> with serve(route53, zone_id, ec2=ec2, address="127.0.0.1", port=0) as dns:
        ...     DNSRecord.question("_etcd-server._tcp.example.com", "SRV").send(dns.address, dns.port)
    """
    resolver = resolver or ZoneResolver(route53, zone_id, ec2=ec2)
    for _attempt in range(20):
        udp = DNSServer(resolver, address=address, port=port, logger=_QuietLogger(), handler=_Handler)
        bound = udp.server.server_address[1]
        try:
            servers = [udp]
            if tcp:
                servers.append(
                    DNSServer(resolver, address=address, port=bound, tcp=True, logger=_QuietLogger(), handler=_Handler)
                )
        except OSError:
            udp.server.server_close()
            if port:
                raise
            continue  # the free UDP port is taken for TCP: try another
        for server in servers:
            # dnslib's start_thread() polls for shutdown every 0.5 s; a short poll makes stop() near instant.
            server.thread = threading.Thread(
                target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, name="dns", daemon=True
            )
            server.thread.start()
        LOG.info("dns: serving zone %s (%s) on %s:%d", resolver.zone_id, resolver.zone_name, address, bound)
        return DNSHandle(address, bound, resolver, servers)
    raise OSError(f"no port free for both UDP and TCP on {address}")


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.local.dns --zone-id Z... [--address 127.0.0.53] [--port 53]``: serve until signalled."""
    import boto3

    parser = argparse.ArgumentParser(prog="python -m infra.local.dns", description=__doc__.splitlines()[0])
    parser.add_argument("--zone-id", required=True, help="hosted zone to serve (Z... or /hostedzone/Z...)")
    parser.add_argument("--address", default="127.0.0.53")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--no-ec2", action="store_true", help="do not answer EC2 private DNS names")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every query")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Clients are created the standard way, so AWS_ENDPOINT_URL points them at the emulator server.
    route53 = boto3.client("route53")
    ec2 = None if args.no_ec2 else boto3.client("ec2")
    handle = serve(route53, args.zone_id, ec2=ec2, address=args.address, port=args.port)
    print(f"dns: zone {handle.resolver.zone_name} on {handle.address}:{handle.port}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    handle.stop()
    return 0


__all__ = ["DNSHandle", "RecordSet", "ZoneResolver", "parse_txt", "rdata", "serve"]

if __name__ == "__main__":
    raise SystemExit(main())
