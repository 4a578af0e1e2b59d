"""The instance side of a restore and of lost data, with real etcd 3.5.1 (``launcher.Launcher`` through
``fleet.Fleet``, the start script's protocol) against a moto server, each scenario inside a sandbox; and the etcd
model (``SimFleet``) agreeing with it on both (tests/local/restore_scenarios.py: the same scenario, judged by the
same outcome).

- Restore: a snapshot taken by ``SnapshotTaker`` (the coordinator's, through the gateway) from a real etcd holding
  known keys goes to the emulated S3; an instance told ``etcd-cluster-state=restore`` starts a one-member cluster
  holding exactly those keys, under a new cluster id; one told the same with a data dir that is not empty is
  refused and its data dir left as it was.
- Lost data: a 3-member cluster, one member's etcd dies, its data dir is wiped, the instance boots again: it does not
  start etcd, it carries the tag ``etcd-data-lost``, and the other two keep quorum and every key.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from infra.local.sandbox import available, call_inside

ok, reason = available()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ok, reason=f"sandbox unavailable: {reason}"),
    pytest.mark.timeout(150),
]


def _settings() -> Any:
    import uuid

    from infra.local.launcher import EtcdSettings
    from tests.e2e.test_etcd_bootstrap import DOMAIN
    from tests.local.restore_scenarios import BUCKET

    return EtcdSettings(domain=DOMAIN, token=f"etcd-test-{uuid.uuid4().hex[:12]}", snapshot_bucket=BUCKET)


def _observe_with_leader(endpoint: str, timeout: float = 15.0) -> dict[str, Any]:
    """``observe`` once the member sees a leader (an election after a member died takes a moment)."""
    from hook_handler.etcd import HttpTransport, MembershipError
    from tests.local.restore_scenarios import observe

    deadline = time.monotonic() + timeout
    while True:
        try:
            seen = observe(HttpTransport(), endpoint)
            if seen["leader"] or time.monotonic() > deadline:
                return seen
        except MembershipError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


# -- inside the sandbox ---------------------------------------------------------------------------------------
def real_restore(workdir: str) -> dict[str, Any]:
    import boto3

    from hook_handler.backup.config import DEFAULT_PREFIX
    from hook_handler.backup.retention import parse_tiers
    from hook_handler.backup.store import SnapshotStore
    from hook_handler.backup.take import SnapshotTaker
    from hook_handler.clock import SystemClock
    from hook_handler.etcd import HttpTransport
    from hook_handler.retry import RetryPolicy
    from infra.local.fleet import Fleet
    from tests.e2e.test_etcd_bootstrap import GROUP, emulated_world
    from tests.local.restore_scenarios import BUCKET, KEYS, LATER, NOTHING, TOKEN, put, restore_outcome

    with emulated_world(3) as world:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        source, restorer, occupied = world.instances
        world.write_srv([source])
        world.tag_state([source], "new")
        fleet = Fleet(GROUP, _settings(), autoscaling=world.asg, ec2=world.ec2, workdir=Path(workdir), poll=0.2, s3=s3)
        with fleet:
            fleet.wait_healthy(1, timeout=20)
            t, endpoint = HttpTransport(), f"http://{source['ip']}:2379"
            for key, value in KEYS.items():
                put(t, endpoint, key, value)
            clock = SystemClock()
            store = SnapshotStore(s3, BUCKET, DEFAULT_PREFIX, RetryPolicy(clock), clock)
            taker = SnapshotTaker(store, t, clock, interval=60, tiers=parse_tiers(""), protocol="gateway")
            taken = taker.run([endpoint], clock.now() + 60)
            assert taken.taken and taken.newest is not None
            put(t, endpoint, *LATER)
            notes = Path(workdir) / "data" / occupied["id"] / "notes.txt"  # an operator's file in its data dir
            notes.parent.mkdir(parents=True)
            notes.write_text("kept")
            go = {
                "etcd-cluster-state": "restore",
                "etcd-restore-snapshot": taken.newest.key,
                "etcd-restore-token": TOKEN,
            }
            world.ec2.create_tags(
                Resources=[restorer["id"], occupied["id"]], Tags=[{"Key": k, "Value": v} for k, v in go.items()]
            )
            restoring, refusing = fleet.launchers[restorer["id"]], fleet.launchers[occupied["id"]]
            restoring.wait_state({"running", "refused", "failed", "exited"}, timeout=60)
            refusing.wait_state({"refused", "running", "failed", "exited"}, timeout=30)
            restored_url = f"http://{restorer['ip']}:2379"
            names = {source["id"]: "source", restorer["id"]: "restorer", occupied["id"]: "occupied"}
            return restore_outcome(
                names,
                source=_observe_with_leader(endpoint),
                snapshot_revision=taken.newest.revision,
                restored=_observe_with_leader(restored_url) if restoring.state == "running" else NOTHING,
                restorer_peer=str(restoring.peer_url),
                restorer_state=restoring.state,
                occupied_state=refusing.state,
                occupied_kept=[p.name for p in notes.parent.iterdir()] == ["notes.txt"] and notes.read_text() == "kept",
                occupied_running=refusing.process is not None and refusing.process.poll() is None,
            )


def real_lost_data(workdir: str) -> dict[str, Any]:
    from hook_handler.etcd import HttpTransport
    from infra.local.fleet import Fleet
    from tests.e2e.test_etcd_bootstrap import GROUP, emulated_world
    from tests.local.restore_scenarios import KEYS, lost_outcome, put

    with emulated_world(3) as world:
        world.write_srv(world.instances)
        world.tag_state(world.instances, "new")
        fleet = Fleet(GROUP, _settings(), autoscaling=world.asg, ec2=world.ec2, workdir=Path(workdir), poll=0.2)
        with fleet:
            fleet.wait_healthy(3, timeout=30)
            victim_id = world.instances[0]["id"]
            others = world.instances[1:]
            for key, value in KEYS.items():
                put(HttpTransport(), f"http://{others[0]['ip']}:2379", key, value)
            victim = fleet.launchers[victim_id]
            victim.crash()  # etcd dies (SIGKILL) ...
            shutil.rmtree(victim.data_dir)  # ... its data dir is wiped (a replaced disk) ...
            victim.power_off()  # ... and the instance boots again: the fleet gives it a new launcher
            deadline = time.monotonic() + 30
            while fleet.launchers[victim_id] is victim and time.monotonic() < deadline:
                time.sleep(0.1)
            again = fleet.launchers[victim_id]
            again.wait_state({"data-lost", "running", "refused", "failed", "exited"}, timeout=30)
            tags = world.ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [victim_id]}])["Tags"]
            names = {victim_id: "victim", others[0]["id"]: "survivor-1", others[1]["id"]: "survivor-2"}
            return lost_outcome(
                names,
                victim_state=again.state,
                victim_running=again.process is not None and again.process.poll() is None,
                tag={t["Key"]: t["Value"] for t in tags}.get("etcd-data-lost", ""),
                survivors=[_observe_with_leader(f"http://{i['ip']}:2379") for i in others],
                victim_peer=str(again.peer_url),
            )


# -- the tests (outside) ----------------------------------------------------------------------------------------


def test_an_instance_told_restore_starts_a_one_member_cluster_of_exactly_the_snapshots_keys_as_the_model_does(
    tmp_path: Path,
) -> None:
    from tests.local.restore_scenarios import RESTORED, sim_restore

    real = call_inside(real_restore, {"workdir": str(tmp_path)}, timeout=140)
    assert real == RESTORED
    assert sim_restore() == real  # the model agrees with real etcd


def test_a_member_whose_data_is_wiped_does_not_start_and_is_tagged_data_lost_as_in_the_model(tmp_path: Path) -> None:
    from tests.local.restore_scenarios import LOST, sim_lost_data

    real = call_inside(real_lost_data, {"workdir": str(tmp_path)}, timeout=140)
    assert real == LOST
    assert sim_lost_data() == real  # the model agrees with real etcd
