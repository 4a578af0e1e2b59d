"""What the bootstrap barrier prevents. Three launches of a new cluster arrive one after the other (the group
grows 1, 2, 3 with pauses longer than a pass), so each pass sees a partial group. With ``bootstrap_barrier=false``
each launch is published as it arrives: the first member founds a cluster from a record listing only itself,
and the members published later cannot become one cluster with it. With the barrier (the default) the launches
are held until the record can list all three, and one cluster of three forms.

Membership is off here (DNS-only, as the seed ran): the record is then the only thing a member bootstraps from.
With membership on, the coordinator would ``member add`` the late members into the founder's cluster instead.
"""

from __future__ import annotations

import time
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


# -- inside the sandbox ---------------------------------------------------------------------------
def staggered_bootstrap(workdir: str, barrier: bool) -> dict[str, Any]:
    """Inside: grow a new group 1 → 2 → 3, 2.5 s apart; report the records written and what etcd made of them."""
    from infra.local.demo import PEER_SRV, Cluster, Reporter, quiet_logs
    from infra.local.etcd_client import endpoint_health, member_list
    from tests.e2e.e2e_helpers import reuse_stack_clients

    quiet_logs(Path(workdir))
    reuse_stack_clients()
    settings = {
        "bootstrap_barrier": str(barrier).lower(),
        "cluster_size": "3",  # the founding size, as an operator declares it (desired capacity grows here)
        # DNS only, as the tool this grew from: what the barrier alone protects. (With membership on, later
        # launches join as `existing` after a `member add` whatever the barrier does.)
        "etcd_membership": "false",
        "etcd_client_srv": "",
        "extra_srv_records": "",
    }

    def listed(cluster: Any) -> int:
        changes = cluster.aws.route53_changes
        return len(changes[-1].records_after.get((PEER_SRV, "SRV"), (0, ()))[1]) if changes else 0

    def wait_for(condition: Any, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not condition():
            time.sleep(0.1)

    with Cluster(Path(workdir), Reporter(), settings=settings, tls=False) as cluster:  # its checks dial http
        for size in (1, 2, 3):
            cluster.scale(size)
            # AWS's world: each launch is `Pending` 1-5 s before its hook's action starts. Wait for the action,
            # then for the pass it triggers: without the barrier, the change listing it; with it, a moment.
            wait_for(lambda n=size: len(cluster.aws.lifecycle_actions) >= n, 15)
            if barrier:
                time.sleep(2.5)
            else:
                wait_for(lambda n=size: listed(cluster) >= n, 10)
            cluster.watch()
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            launchers = cluster.fleet.launchers.values()
            if len(launchers) == 3 and all(la.state in ("running", "exited") for la in launchers):
                running = [f"http://{la.private_ip}:2379" for la in launchers if la.state == "running"]
                if len(running) < 3 or all(endpoint_health(running, timeout=1.0).values()):
                    break
            time.sleep(0.3)
        time.sleep(1.0)  # a member that is refused exits within a moment of starting
        cluster.watch()
        launchers = sorted(cluster.fleet.launchers.values(), key=lambda la: str(la.private_ip))
        endpoints = [f"http://{la.private_ip}:2379" for la in launchers]
        health = endpoint_health(endpoints, timeout=1.0)
        members: dict[str, list[str]] = {}
        for endpoint in endpoints:
            try:
                members[endpoint] = sorted(m["id"] for m in member_list(endpoint, timeout=1.0))
            except Exception:  # noqa: BLE001 - a member that does not answer has no member list
                members[endpoint] = []
        records = [
            len(change.records_after.get((PEER_SRV, "SRV"), (0, ()))[1]) for change in cluster.aws.route53_changes
        ]
        return {
            "records": records,
            "health": health,
            "members": members,
            "cluster_states": [la.cluster_state for la in launchers],
            "states": [la.state for la in launchers],
            "errors": [la.last_error() for la in launchers],
            "lines": cluster.reporter.lines,
        }


# -- the tests (outside) ----------------------------------------------------------------------------
def test_without_the_barrier_members_bootstrapped_from_a_partial_record_do_not_form_one_cluster(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    result = call_inside(staggered_bootstrap, {"workdir": str(tmp_path), "barrier": False}, timeout=50)

    # The record grew with the launches: the first member's founding record listed one target of three.
    assert result["records"] == [1, 2, 3], result
    assert result["cluster_states"][0] == "new"
    founder = next(iter(result["members"]))
    assert len(result["members"][founder]) == 1, result  # a cluster of one, not three
    assert not all(result["health"].values()), result  # the later members are not part of a healthy cluster
    # DNS-only never tells a later launch `existing` without a `member add`: they wait, never join the founder.
    assert result["cluster_states"][1:] == [None, None], result
    assert time.monotonic() - started < 40


def test_with_the_barrier_the_same_launches_form_one_healthy_cluster_of_three(tmp_path: Path) -> None:
    started = time.monotonic()
    result = call_inside(staggered_bootstrap, {"workdir": str(tmp_path), "barrier": True}, timeout=50)

    assert result["records"] == [3], result  # held until the record could list all three: one write
    assert result["cluster_states"] == ["new", "new", "new"], {k: v for k, v in result.items() if k != "lines"}
    assert all(result["health"].values()) and len(result["health"]) == 3, result
    ids = list(result["members"].values())
    assert len(ids[0]) == 3 and ids[0] == ids[1] == ids[2], result  # one cluster: the same three members
    assert time.monotonic() - started < 40
