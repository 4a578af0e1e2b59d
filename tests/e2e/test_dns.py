"""The DNS server answers from the emulated hosted zone and EC2 on every query: what was just written is what
is answered, authoritatively, with the record's TTL; anything else is NXDOMAIN."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from moto import mock_aws

from infra.local.dns import DNSHandle, parse_txt, serve
from tests.e2e.e2e_helpers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SRV = "_etcd-server._tcp.example.com"


@dataclass
class Zone:
    route53: Any
    ec2: Any
    zone_id: str
    dns: DNSHandle

    def change(self, action: str, name: str, rtype: str, values: list[str], ttl: int = 30) -> None:
        record = {"Name": name, "Type": rtype, "TTL": ttl, "ResourceRecords": [{"Value": v} for v in values]}
        self.route53.change_resource_record_sets(
            HostedZoneId=self.zone_id, ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": record}]}
        )

    def ask(self, name: str, rtype: str, *, tcp: bool = False) -> DNSRecord:
        packet = DNSRecord.question(name, rtype).send(self.dns.address, self.dns.port, tcp=tcp, timeout=5)
        return DNSRecord.parse(packet)


def answers(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Zone]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        route53, ec2 = boto3.client("route53"), boto3.client("ec2")
        zone_id = route53.create_hosted_zone(Name="example.com", CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
        with serve(route53, zone_id, ec2=ec2, address="127.0.0.1", port=0) as dns:
            yield Zone(route53, ec2, zone_id, dns)


def test_srv_record_is_answered_authoritatively_with_its_ttl_over_udp_and_tcp(zone: Zone) -> None:
    zone.change("CREATE", SRV, "SRV", ["0 0 2380 ip-127-0-1-4.ec2.internal.", "0 0 2380 ip-127-0-1-5.ec2.internal"], 5)

    for tcp in (False, True):
        reply = zone.ask(SRV, "SRV", tcp=tcp)
        assert reply.header.rcode == RCODE.NOERROR
        assert reply.header.aa == 1
        assert sorted(answers(reply)) == [
            "0 0 2380 ip-127-0-1-4.ec2.internal.",
            "0 0 2380 ip-127-0-1-5.ec2.internal.",  # made absolute, as Route 53 serves it
        ]
        assert {rr.ttl for rr in reply.rr} == {5}


def test_every_query_sees_the_zone_as_it_is_now(zone: Zone) -> None:
    zone.change("CREATE", SRV, "SRV", ["0 0 2380 a.example.com."])
    assert answers(zone.ask(SRV, "SRV")) == ["0 0 2380 a.example.com."]

    zone.change("UPSERT", SRV, "SRV", ["0 0 2380 a.example.com.", "0 0 2380 b.example.com."])
    assert sorted(answers(zone.ask(SRV, "SRV"))) == ["0 0 2380 a.example.com.", "0 0 2380 b.example.com."]

    zone.change("DELETE", SRV, "SRV", ["0 0 2380 a.example.com.", "0 0 2380 b.example.com."])
    assert zone.ask(SRV, "SRV").header.rcode == RCODE.NXDOMAIN


def test_missing_name_is_nxdomain_and_missing_type_is_nodata_both_with_the_zone_soa(zone: Zone) -> None:
    zone.change("CREATE", "db.example.com", "A", ["127.0.0.9"])

    missing = zone.ask("nope.example.com", "A")
    assert missing.header.rcode == RCODE.NXDOMAIN and missing.header.aa == 1
    assert [QTYPE[rr.rtype] for rr in missing.auth] == ["SOA"]

    nodata = zone.ask("db.example.com", "AAAA")  # Go asks A and AAAA for every host
    assert nodata.header.rcode == RCODE.NOERROR and nodata.rr == []
    assert [QTYPE[rr.rtype] for rr in nodata.auth] == ["SOA"]

    assert answers(zone.ask("DB.Example.COM", "A")) == ["127.0.0.9"]  # names are case-insensitive


def test_parent_of_a_record_is_an_empty_non_terminal_not_nxdomain(zone: Zone) -> None:
    zone.change("CREATE", SRV, "SRV", ["0 0 2380 a.example.com."])

    reply = zone.ask("_tcp.example.com", "SRV")
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == []


def test_txt_and_cname_records_are_served(zone: Zone) -> None:
    zone.change("CREATE", "info.example.com", "TXT", ['"cluster=etcd" "state=new"'])
    zone.change("CREATE", "db.example.com", "A", ["127.0.0.9"])
    zone.change("CREATE", "alias.example.com", "CNAME", ["db.example.com"])

    txt = zone.ask("info.example.com", "TXT")
    assert [list(rr.rdata.data) for rr in txt.rr] == [[b"cluster=etcd", b"state=new"]]

    chased = zone.ask("alias.example.com", "A")
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in chased.rr] == [("CNAME", "db.example.com."), ("A", "127.0.0.9")]


def test_ec2_private_dns_names_resolve_to_the_instance_ip_until_it_is_terminated(zone: Zone) -> None:
    vpc = zone.ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
    subnet = zone.ec2.create_subnet(VpcId=vpc, CidrBlock="127.0.1.0/24")["Subnet"]["SubnetId"]
    instance = zone.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
    name, ip = instance["PrivateDnsName"], instance["PrivateIpAddress"]
    assert name == f"ip-{ip.replace('.', '-')}.ec2.internal"

    reply = zone.ask(name, "A")
    assert reply.header.rcode == RCODE.NOERROR and answers(reply) == [ip]

    zone.ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    assert zone.ask(name, "A").header.rcode == RCODE.NXDOMAIN
    assert zone.ask("ip-127-0-9-9.ec2.internal", "A").header.rcode == RCODE.NXDOMAIN  # no such instance


def test_names_outside_the_zone_are_nxdomain(zone: Zone) -> None:
    assert zone.ask("example.org", "A").header.rcode == RCODE.NXDOMAIN
    assert zone.ask("_etcd-server._tcp.example.org", "SRV").header.rcode == RCODE.NXDOMAIN


def test_an_unreadable_zone_is_servfail_never_a_stale_answer(zone: Zone) -> None:
    zone.change("CREATE", "db.example.com", "A", ["127.0.0.9"])
    zone.change("DELETE", "db.example.com", "A", ["127.0.0.9"])
    zone.route53.delete_hosted_zone(Id=zone.zone_id)

    assert zone.ask("db.example.com", "A").header.rcode == RCODE.SERVFAIL


def test_large_answer_is_truncated_over_udp_and_whole_over_tcp(zone: Zone) -> None:
    values = [f"0 0 2380 ip-127-0-1-{i}.ec2.internal." for i in range(1, 41)]
    zone.change("CREATE", SRV, "SRV", values)

    udp = zone.ask(SRV, "SRV")
    assert udp.header.tc == 1 and udp.rr == []
    assert sorted(answers(zone.ask(SRV, "SRV", tcp=True))) == sorted(values)


def test_parse_txt_splits_quoted_strings_and_unescapes() -> None:
    assert parse_txt('"a b" "c\\"d" "\\065"') == [b"a b", b'c"d', b"5"]
    assert parse_txt("plain") == [b"plain"]


# -- the command line against a moto server (the emulator's shape) -----------------------------------
def test_command_line_serves_a_zone_of_a_moto_server_and_dig_shows_the_srv_record() -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    dns = None
    try:
        route53 = boto3.client(
            "route53",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="t",
            aws_secret_access_key="t",
        )
        zone_id = route53.create_hosted_zone(Name="example.com", CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
        record = {
            "Name": SRV,
            "Type": "SRV",
            "TTL": 10,
            "ResourceRecords": [{"Value": "0 0 2380 ip-127-0-1-4.ec2.internal."}],
        }
        route53.change_resource_record_sets(
            HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": record}]}
        )
        dns_port = free_port(socket.SOCK_DGRAM)
        argv = [sys.executable, "-m", "infra.local.dns", "--zone-id", zone_id, "--address", "127.0.0.1"]
        dns = subprocess.Popen([*argv, "--port", str(dns_port)], env=env, stdout=subprocess.PIPE, text=True)
        assert dns.stdout is not None
        banner = dns.stdout.readline()  # printed once both sockets are bound
        assert f"127.0.0.1:{dns_port}" in banner, banner

        reply = DNSRecord.parse(DNSRecord.question(SRV, "SRV").send("127.0.0.1", dns_port, timeout=5))
        assert answers(reply) == ["0 0 2380 ip-127-0-1-4.ec2.internal."]
        if shutil.which("dig") is None:
            pytest.skip("dig is not installed (apt-get install bind9-dnsutils): the dnslib query above passed")
        started = time.monotonic()
        dig = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(dns_port), SRV, "SRV", "+short", "+time=5", "+tries=1"],
            capture_output=True,
            text=True,
            timeout=15,
        )
        assert dig.stdout.split("\n")[0] == "0 0 2380 ip-127-0-1-4.ec2.internal.", dig
        assert time.monotonic() - started < 5
    finally:
        if dns is not None:
            dns.terminate()
            dns.wait(timeout=10)
        server.stop()


def test_the_local_resolver_answers_from_the_emulators_state_without_a_single_api_call() -> None:
    """Issue 11: `make demo` had to switch the account's Route 53 rate limit off because the DNS server read
    the zone through the API on every query; real DNS queries never count against that limit."""
    from infra.local import LocalAWS
    from infra.local.clock import SimClock
    from infra.local.dns import LocalZoneResolver

    with LocalAWS(clock=SimClock()) as aws:
        zone_id = aws.create_zone("example.com.")
        aws.set_records(zone_id, SRV + ".", "SRV", 30, ["0 0 2380 a.example.com.", "0 0 2380 b.example.com."])
        aws.set_records(zone_id, "a.example.com.", "A", 30, ["10.0.0.1"])
        ec2 = aws.client("ec2")
        instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
        calls = len(aws.calls)
        with serve(None, zone_id, resolver=LocalZoneResolver(aws, zone_id), address="127.0.0.1", port=0) as dns:

            def ask(name: str, rtype: str) -> DNSRecord:
                return DNSRecord.parse(DNSRecord.question(name, rtype).send(dns.address, dns.port, timeout=5))

            assert sorted(answers(ask(SRV, "SRV"))) == ["0 0 2380 a.example.com.", "0 0 2380 b.example.com."]
            assert answers(ask("a.example.com", "A")) == ["10.0.0.1"]
            assert answers(ask(instance["PrivateDnsName"], "A")) == [instance["PrivateIpAddress"]]
            assert ask("nope.example.com", "A").header.rcode == RCODE.NXDOMAIN
        assert len(aws.calls) == calls  # nothing went through the API
