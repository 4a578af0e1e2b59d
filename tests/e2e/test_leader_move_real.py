"""Issue 13, item 2 on real etcd: when the leader's instance is terminated, the coordinator moves leadership to a
healthy, caught-up voter before it removes the member — and the write outage a client sees is measured with the
move and without it (the same scenario with the move disabled), through the continuous client of the demo.

Each run: a 3-member TLS cluster (the demo's ``Cluster``), the continuous client writing and reading through the
client SRV record, then ``TerminateInstanceInAutoScalingGroup`` on the leader's instance (capacity kept: the group
launches a replacement). Checked: etcd's leader before the member is removed is another member (with the move),
the coordinator's log says so, no acknowledged write is lost, and the longest outage of each run is reported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from infra.local.sandbox import available, call_inside

ok, reason = available()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ok, reason=f"sandbox unavailable: {reason}"),
    pytest.mark.timeout(300),
]


def leader_leaves(workdir: str, move: bool) -> dict[str, Any]:
    """Inside: terminate the leader's instance once; what the client saw and what the coordinator did."""
    import hook_handler.coordinator.etcd_steps as coordinator_module
    from infra.local.demo import GROUP, NAMESERVER, Cluster, Reporter, quiet_logs
    from infra.local.etcd_client import gateway, member_list
    from infra.local.traffic import ContinuousClient, srv_endpoints
    from tests.e2e.e2e_helpers import reuse_stack_clients

    quiet_logs(Path(workdir))
    reuse_stack_clients()
    if not move:  # the coordinator without its leadership transfer: the member is removed while it leads
        coordinator_module.leader_target = lambda view, leaving: None
    out: dict[str, Any] = {"move": move}
    with Cluster(Path(workdir), Reporter()) as cluster:
        cluster.scale(3)
        first = cluster.settle("0 → 3", 3)
        out["founded"] = first.ok, first.problems
        endpoints = cluster.fleet.client_endpoints()
        members = {m["id"]: m["name"] for m in member_list(endpoints[0])}
        leader_id = str(gateway(endpoints[0]).status()["leader"])
        leader = members[leader_id]
        out["leader"] = leader
        client = ContinuousClient(srv_endpoints(cluster.client_srv, cluster.scheme, NAMESERVER)).start()
        time.sleep(2.0)
        began = time.time()
        cluster.reporter.event(f"terminate the leader {leader}")
        cluster.aws.client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=leader, ShouldDecrementDesiredCapacity=False
        )
        cluster.must_be_gone = {leader}
        result = cluster.settle("leader leaves", 3, timeout=90.0)
        time.sleep(1.0)
        client.stop()
        window = client.window(began)
        out["settled"] = result.ok, result.problems
        out["acked"], out["failed"], out["outage"] = window.acked, window.failed, window.longest_outage
        running = [f"{cluster.scheme}://{la.private_ip}:2379" for la in cluster.fleet.running()]
        out["lost"] = {url: seqs for url, seqs in client.verify(running).items() if seqs}
        log = (Path(workdir) / "logs" / "coordinator.log").read_text()
        out["moved"] = [json.loads(line) for line in log.splitlines() if '"leadership moved"' in line]
        out["group"] = GROUP
    return out


def test_leadership_is_moved_before_the_leader_leaves_and_the_outage_is_measured_with_and_without(tmp_path):
    with_move = call_inside(leader_leaves, {"workdir": str(tmp_path / "move"), "move": True}, timeout=140)
    without = call_inside(leader_leaves, {"workdir": str(tmp_path / "nomove"), "move": False}, timeout=140)
    for run in (with_move, without):
        assert run["founded"][0] and run["settled"][0], run
        assert run["lost"] == {}, run  # no acknowledged write lost either way
        assert run["acked"] > 0
    assert len(with_move["moved"]) == 1, with_move  # leadership moved first, once
    assert without["moved"] == [], without
    print(
        f"\nleader leaves: longest write outage {with_move['outage']:.2f} s with the move, "
        f"{without['outage']:.2f} s without ({with_move['failed']} / {without['failed']} failed requests)"
    )
