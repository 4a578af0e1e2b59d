"""Real etcd members bootstrap from the SRV record our DNS server answers: whole record → one cluster of three,
partial record → the wrong cluster. Each scenario runs inside a sandbox (private network and mount
namespaces) against a moto server, with instances of a real Auto Scaling group on 127.0.1.x."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.local.sandbox import available, call_inside

ok, reason = available()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ok, reason=f"sandbox unavailable: {reason}"),
    pytest.mark.timeout(60),
]

DOMAIN = "example.com"
SRV_NAME = f"_etcd-server._tcp.{DOMAIN}"
GROUP = "etcd"


# -- inside the sandbox ---------------------------------------------------------------------------
@dataclass
class World:
    """The emulated account seen from inside the sandbox: clients, the zone and the group's instances."""

    asg: Any
    ec2: Any
    route53: Any
    zone_id: str
    instances: list[dict[str, str]]  # id, ip, dns, in launch order

    def write_srv(self, targets: list[dict[str, str]]) -> None:
        values = [{"Value": f"0 0 2380 {t['dns']}."} for t in targets]
        self.route53.change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {"Name": SRV_NAME, "Type": "SRV", "TTL": 5, "ResourceRecords": values},
                    }
                ]
            },
        )

    def tag_state(self, targets: list[dict[str, str]], state: str) -> None:
        # What the coordinator does after the record change: the channel the launcher reads.
        self.ec2.create_tags(Resources=[t["id"] for t in targets], Tags=[{"Key": "etcd-cluster-state", "Value": state}])


@contextlib.contextmanager
def emulated_world(count: int) -> Iterator[World]:
    """A moto server, a VPC on 127.0.0.0/16, a group of ``count`` instances and a zone served on 127.0.0.53:53."""
    import boto3
    from moto.server import ThreadedMotoServer

    from infra.local.dns import serve

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    from tests.e2e.e2e_helpers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    dns = None
    try:
        asg, ec2, route53 = (boto3.client(s) for s in ("autoscaling", "ec2", "route53"))
        # Instances take their private IP from the subnet: 127.0.1.4, .5, ... (the first four are reserved).
        vpc = ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="127.0.1.0/24")["Subnet"]["SubnetId"]
        ec2.create_launch_template(
            LaunchTemplateName="etcd", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
        )
        asg.create_auto_scaling_group(
            AutoScalingGroupName=GROUP,
            LaunchTemplate={"LaunchTemplateName": "etcd"},
            MinSize=0,
            MaxSize=5,
            DesiredCapacity=count,
            VPCZoneIdentifier=subnet,
        )
        ids = [i["InstanceId"] for i in asg.describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"]]
        described = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
        instances = sorted(
            ({"id": i["InstanceId"], "ip": i["PrivateIpAddress"], "dns": i["PrivateDnsName"]} for i in described),
            key=lambda i: tuple(int(p) for p in i["ip"].split(".")),
        )
        zone_id = route53.create_hosted_zone(Name=DOMAIN, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
        dns = serve(route53, zone_id, ec2=ec2, address="127.0.0.53", port=53)
        yield World(asg, ec2, route53, zone_id, instances)
    finally:
        if dns is not None:
            dns.stop()
        server.stop()


def coordinator_settings() -> Any:
    from infra.local.launcher import EtcdSettings

    return EtcdSettings(domain=DOMAIN, token=f"etcd-test-{uuid.uuid4().hex[:12]}")


def bootstrap_complete(workdir: str) -> dict[str, Any]:
    """Inside: the record lists all three before any member starts; return what the cluster looks like."""
    from infra.local.etcd_client import endpoint_health, get, member_list, put
    from infra.local.fleet import Fleet
    from infra.local.resolver import srv_targets

    with emulated_world(3) as world:
        world.write_srv(world.instances)
        world.tag_state(world.instances, "new")
        started = time.monotonic()
        with Fleet(
            GROUP, coordinator_settings(), autoscaling=world.asg, ec2=world.ec2, workdir=Path(workdir), poll=0.2
        ) as fleet:
            seconds = fleet.wait_healthy(3, timeout=20)
            endpoints = fleet.client_endpoints()
            put(endpoints[0], "/test/key", "written-through-first")
            return {
                "instances": world.instances,
                "srv": srv_targets(SRV_NAME),
                "members": member_list(endpoints[-1]),
                "health": endpoint_health(endpoints),
                "read_back": get(endpoints[-1], "/test/key"),
                "bootstrap_seconds": round(seconds, 2),
                "total_seconds": round(time.monotonic() - started, 2),
            }


def bootstrap_partial(workdir: str) -> dict[str, Any]:
    """Inside: all three are told 'new', but the record lists two of them when they start; the third is
    added to the record afterwards (a coordinator without the bootstrap barrier). Return both views."""
    from infra.local.etcd_client import endpoint_health, member_list
    from infra.local.fleet import Fleet

    with emulated_world(3) as world:
        first_two, third = world.instances[:2], world.instances[2]
        world.write_srv(first_two)
        world.tag_state(world.instances, "new")
        with Fleet(
            GROUP, coordinator_settings(), autoscaling=world.asg, ec2=world.ec2, workdir=Path(workdir), poll=0.2
        ) as fleet:
            seconds = fleet.wait_healthy(2, timeout=20)  # the third waits: the record does not list it yet
            late = fleet.launchers[third["id"]]
            state_before = late.state
            world.write_srv(world.instances)  # the record is whole now, too late
            late.wait_state({"running", "exited"}, timeout=10)
            # Give it time to contact the others and be refused (or to give up).
            deadline = time.monotonic() + 8
            log = ""
            while time.monotonic() < deadline:
                log = late.etcd_log.read_text(errors="replace") if late.etcd_log.exists() else ""
                if "cluster ID mismatch" in log or late.state == "exited":
                    break
                time.sleep(0.2)
            founders = [f"http://{i['ip']}:2379" for i in first_two]
            return {
                "instances": world.instances,
                "pair_seconds": round(seconds, 2),
                "third_state_before_record_whole": state_before,
                "members": member_list(founders[0]),
                "third_health": endpoint_health([f"http://{third['ip']}:2379"], timeout=1.0),
                "third_state": late.state,
                "third_exit_codes": late.exit_codes,
                "third_mismatch_logged": "cluster ID mismatch" in log,
                "third_last_error": late.last_error(),
            }


def termination_kills(workdir: str) -> dict[str, Any]:
    """Inside: a healthy cluster of three, then one instance terminated in EC2 (no hook, as a crash)."""
    from infra.local.etcd_client import endpoint_health, member_list
    from infra.local.fleet import Fleet

    with emulated_world(3) as world:
        world.write_srv(world.instances)
        world.tag_state(world.instances, "new")
        with Fleet(
            GROUP, coordinator_settings(), autoscaling=world.asg, ec2=world.ec2, workdir=Path(workdir), poll=0.2
        ) as fleet:
            fleet.wait_healthy(3, timeout=20)
            victim = fleet.launchers[world.instances[0]["id"]]
            process = victim.process
            assert process is not None
            killed_at = time.monotonic()
            world.ec2.terminate_instances(InstanceIds=[victim.instance_id])
            victim.wait_state({"killed"}, timeout=5)
            seconds_to_kill = time.monotonic() - killed_at
            # The group replaces it; the replacement's launcher waits for the coordinator's tag.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and len(fleet.launchers) < 4:
                time.sleep(0.1)
            replacements = [la for iid, la in fleet.launchers.items() if iid not in {i["id"] for i in world.instances}]
            if replacements:
                replacements[0].wait_state({"waiting-tag"}, timeout=5)
            survivors = [f"http://{i['ip']}:2379" for i in world.instances[1:]]
            # If the victim led, the other two elect a new leader first (election timeout 1 s).
            deadline = time.monotonic() + 10
            while not all((health := endpoint_health(survivors, timeout=1.0)).values()):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            return {
                "seconds_to_quorum": round(time.monotonic() - killed_at, 2),
                "victim": victim.instance_id,
                "victim_returncode": process.poll(),
                "seconds_to_kill": round(seconds_to_kill, 2),
                "replacement_states": [la.state for la in replacements],
                "survivor_health": health,
                "members": member_list(survivors[0]),
                "fleet_log": (Path(workdir) / "logs" / "fleet.log").read_text(),
            }


# -- the tests (outside) ----------------------------------------------------------------------------
def test_three_members_bootstrap_from_a_whole_record_into_one_healthy_cluster(tmp_path: Path) -> None:
    started = time.monotonic()
    result = call_inside(bootstrap_complete, {"workdir": str(tmp_path)}, timeout=45)
    elapsed = time.monotonic() - started

    instances = result["instances"]
    members = result["members"]
    assert sorted(m["name"] for m in members) == sorted(i["id"] for i in instances)
    assert sorted(url for m in members for url in m["peer_urls"]) == sorted(
        f"http://{i['dns']}:2380" for i in instances
    )
    # member list = SRV targets
    assert sorted(tuple(t) for t in result["srv"]) == sorted((i["dns"], 2380) for i in instances)
    assert all(result["health"].values()) and len(result["health"]) == 3
    assert result["read_back"] == "written-through-first"
    assert not any((tmp_path / "data").glob("*")), "data dirs are throwaway"
    assert elapsed < 30, f"took {elapsed:.1f} s (bootstrap {result['bootstrap_seconds']} s)"


def test_members_started_from_a_partial_record_form_the_wrong_cluster(tmp_path: Path) -> None:
    started = time.monotonic()
    result = call_inside(bootstrap_partial, {"workdir": str(tmp_path)}, timeout=45)
    elapsed = time.monotonic() - started

    first_two, third = result["instances"][:2], result["instances"][2]
    # The launcher's SRV check keeps the unlisted instance waiting, but cannot save the two that started.
    assert result["third_state_before_record_whole"] == "waiting-srv"
    assert sorted(m["name"] for m in result["members"]) == sorted(i["id"] for i in first_two)
    assert third["id"] not in {m["name"] for m in result["members"]}
    # The third, told 'new' from the whole record, bootstraps its own cluster ID and is refused by the others.
    assert result["third_health"] == {f"http://{third['ip']}:2379": False}
    assert result["third_mismatch_logged"] or result["third_state"] == "exited", result
    assert elapsed < 30, f"took {elapsed:.1f} s"


def test_terminating_an_instance_kills_its_etcd_and_the_replacement_waits_for_the_coordinator(tmp_path: Path) -> None:
    result = call_inside(termination_kills, {"workdir": str(tmp_path)}, timeout=45)

    assert result["victim_returncode"] == -9  # SIGKILL, as a terminated VM: no graceful stop
    assert result["seconds_to_kill"] < 2  # one or two polls of the group
    assert result["replacement_states"] == ["waiting-tag"]  # not started: nobody published it
    assert all(result["survivor_health"].values())  # 2 of 3 is still a quorum
    # Nobody removed the dead member: that is the coordinator's job (reconcile), not the instance's.
    assert result["victim"] in {m["name"] for m in result["members"]}
    assert f"{result['victim']} left" in result["fleet_log"]
