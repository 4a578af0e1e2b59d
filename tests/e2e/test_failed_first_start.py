"""The instance side of a join, with real etcd 3.5: a failed first start is retried as a first start (never
restarted into a cluster of its own), and Standby leaves a running member alone. Each scenario runs inside a
sandbox (private network and mount namespaces) against a moto server, with instances of a real Auto Scaling
group on 127.0.1.x and ``infra.local.dns`` answering the zone on 127.0.0.53."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from infra.local.sandbox import available, call_inside

ok, reason = available()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ok, reason=f"sandbox unavailable: {reason}"),
    pytest.mark.timeout(90),
]

# The same emulated account as the bootstrap tests: a moto server, a VPC on 127.0.0.0/16, the group, the zone.
from tests.e2e.test_etcd_bootstrap import GROUP, coordinator_settings, emulated_world  # noqa: E402


def _cluster_id(endpoint: str) -> str:
    from infra.local.etcd_client import gateway

    client = gateway(endpoint, timeout=1.0)
    return str(client.post(client.get_url("/maintenance/status"), json={})["header"]["cluster_id"])


def _member_add(endpoint: str, peer_url: str, timeout: float) -> dict[str, Any]:
    """``member add`` through the gateway, retried while etcd answers ``unhealthy cluster`` (a fresh cluster
    refuses adds until its members have been connected for 5 s)."""
    from etcd3gw.exceptions import Etcd3Exception

    from infra.local.etcd_client import gateway

    client = gateway(endpoint, timeout=2.0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return dict(client.post(client.get_url("/cluster/member/add"), json={"peerURLs": [peer_url]}))
        except Etcd3Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def failed_first_start_then_member_add(workdir: str) -> dict[str, Any]:
    """Inside: three founders form a cluster and hold a key; the fourth instance is listed in the record and told
    ``existing`` without ``member add``, so its first start fails; then the member is added (the coordinator's
    fix arriving late) and the launcher, restarting as systemd would, retries. Return what the joiner became."""
    from infra.local.etcd_client import endpoint_health, get, member_list, put
    from infra.local.fleet import Fleet

    with emulated_world(4) as world:
        founders, joiner = world.instances[:3], world.instances[3]
        world.write_srv(founders)
        world.tag_state(founders, "new")
        fleet = Fleet(
            GROUP,
            coordinator_settings(),
            autoscaling=world.asg,
            ec2=world.ec2,
            workdir=Path(workdir),
            poll=0.2,
            restart=True,
        )
        with fleet:
            fleet.wait_healthy(3, timeout=20)
            founder_urls = [f"http://{i['ip']}:2379" for i in founders]
            put(founder_urls[0], "/test/before-join", "kept")
            founder_cluster = _cluster_id(founder_urls[0])

            late = fleet.launchers[joiner["id"]]
            assert late.state == "waiting-tag", late.state
            world.write_srv(world.instances)  # the record lists the joiner ...
            world.tag_state([joiner], "existing")  # ... and it is told 'existing', but nobody did member add
            deadline = time.monotonic() + 20
            while not late.exit_codes and time.monotonic() < deadline:
                time.sleep(0.1)
            first_failure = late.last_error()
            exits_before_add = list(late.exit_codes)

            added = _member_add(founder_urls[0], f"http://{joiner['dns']}:2380", timeout=15)
            joiner_url = f"http://{joiner['ip']}:2379"
            # The restarted launcher must end as a started member of THE cluster. On the old protocol it runs
            # (state 'running', healthy) as a one-member cluster of its own: wait for either, then report.
            deadline = time.monotonic() + 30
            seen: dict[str, Any] = {}
            while time.monotonic() < deadline:
                if late.state == "running" and endpoint_health([joiner_url], timeout=1.0)[joiner_url]:
                    with contextlib.suppress(OSError, ValueError, RuntimeError, KeyError):
                        seen = {"cluster": _cluster_id(joiner_url), "members": member_list(joiner_url)}
                        if seen["cluster"] == founder_cluster and all(m["name"] for m in seen["members"]):
                            break
                        if len(seen["members"]) == 1:  # a cluster of its own: it will not change by itself
                            time.sleep(2)
                            break
                time.sleep(0.2)
            read_back = None
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                read_back = get(joiner_url, "/test/before-join")
            return {
                "joiner": joiner,
                "founder_cluster": founder_cluster,
                "joiner_cluster": seen.get("cluster"),
                "joiner_members": seen.get("members", []),
                "founder_members": member_list(founder_urls[0]),
                "added": bool(added.get("member")),
                "first_failure": first_failure,
                "exits_before_add": exits_before_add,
                "exit_codes": list(late.exit_codes),
                "state": late.state,
                "read_back": read_back,
                "launcher_log": late.log.path.read_text(),
            }


def standby_round_trip(workdir: str) -> dict[str, Any]:
    """Inside: a healthy cluster of three; one instance goes EnterStandby, then ExitStandby. Return its etcd
    process before, during and after, and what the cluster looks like."""
    from infra.local.etcd_client import endpoint_health, member_list
    from infra.local.fleet import Fleet

    def lifecycle(instance_id: str) -> str:
        found = world.asg.describe_auto_scaling_instances(InstanceIds=[instance_id])["AutoScalingInstances"]
        return found[0]["LifecycleState"] if found else "gone"

    with emulated_world(3) as world:
        world.write_srv(world.instances)
        world.tag_state(world.instances, "new")
        fleet = Fleet(
            GROUP,
            coordinator_settings(),
            autoscaling=world.asg,
            ec2=world.ec2,
            workdir=Path(workdir),
            poll=0.2,
            restart=True,
        )
        with fleet:
            fleet.wait_healthy(3, timeout=20)
            subject = fleet.launchers[world.instances[0]["id"]]
            assert subject.process is not None
            pid = subject.process.pid
            observed = []
            world.asg.enter_standby(
                AutoScalingGroupName=GROUP, InstanceIds=[subject.instance_id], ShouldDecrementDesiredCapacity=True
            )
            time.sleep(2)  # ten polls of the fleet
            observed.append((lifecycle(subject.instance_id), subject.state, subject.process.pid))
            world.asg.exit_standby(AutoScalingGroupName=GROUP, InstanceIds=[subject.instance_id])
            time.sleep(2)
            observed.append((lifecycle(subject.instance_id), subject.state, subject.process.pid))
            endpoints = [f"http://{i['ip']}:2379" for i in world.instances]
            return {
                "pid": pid,
                "observed": observed,
                "returncode": subject.process.poll(),
                "exit_codes": list(subject.exit_codes),
                "health": endpoint_health(endpoints),
                "members": member_list(endpoints[1]),
                "instances": world.instances,
                "fleet_log": (Path(workdir) / "logs" / "fleet.log").read_text(),
            }


# -- the tests (outside) ----------------------------------------------------------------------------
def test_a_joiner_whose_first_start_failed_retries_as_a_first_start_and_joins_the_cluster(tmp_path: Path) -> None:
    """Defect 1 of issue 10: a failed first start becomes a rogue cluster. A joiner listed in the record and told
    ``existing`` before its ``member add`` fails with "member count is unequal" and leaves ``member/`` (no WAL) in
    its data dir; restarted on that dir without discovery flags, etcd bootstrapped a one-member cluster of its own
    with an empty keyspace. Now the launcher (the bootstrap script's protocol) clears the leftover and does the
    first start again, so once the member is added it ends as a started member of the founders' cluster."""
    result = call_inside(failed_first_start_then_member_add, {"workdir": str(tmp_path)}, timeout=80)

    joiner = result["joiner"]
    assert result["exits_before_add"] and "member count is unequal" in result["first_failure"], result
    assert result["added"]
    # One cluster: same cluster ID, four started members, the joiner among them, the old key readable through it.
    assert result["joiner_cluster"] == result["founder_cluster"], result
    assert result["state"] == "running"
    assert len(result["joiner_members"]) == 4 and all(m["name"] for m in result["joiner_members"]), result
    assert joiner["id"] in {m["name"] for m in result["founder_members"]}
    assert result["read_back"] == "kept"
    assert "leftover of a failed first start" in result["launcher_log"]


def test_standby_and_exit_standby_leave_a_running_member_alone(tmp_path: Path) -> None:
    result = call_inside(standby_round_trip, {"workdir": str(tmp_path)}, timeout=60)

    (in_standby, state_in, pid_in), (after, state_after, pid_after) = result["observed"]
    assert in_standby == "Standby" and after == "InService"
    # The same etcd process all along: Standby never stopped it and ExitStandby never restarted it.
    assert (state_in, pid_in) == (state_after, pid_after) == ("running", result["pid"])
    assert result["returncode"] is None and result["exit_codes"] == []
    assert all(result["health"].values()) and len(result["members"]) == 3
    assert "killing" not in result["fleet_log"]
