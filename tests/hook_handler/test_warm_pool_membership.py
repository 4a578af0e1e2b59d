"""A member goes back to the warm pool and comes out again: the coordinator (membership on, etcd on the model)
with Auto Scaling warm pools (``LocalAWS(warm_pools=True)``, ``ReuseOnScaleIn``).

The cycle: three members; scale in to two, so one member returns to the pool (terminate hook, Origin
AutoScalingGroup → Destination WarmPool): its member is removed, the record drops it, its action completes
CONTINUE and its admission tags are deleted; stopped in the pool it keeps its data dir (the removed member's WAL).
Scale out to three: it leaves the pool (launch hook, Origin WarmPool → AutoScalingGroup), boots, and the start
script finds the WAL and no ``etcd-cluster-state`` tag (a revoked membership): it clears the data dir and joins
as a *new* member. New instances filling the pool (launch hook, Destination WarmPool) are completed at once,
with no record write and no etcd. Asserted on what etcd, Route 53 and Auto Scaling say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from infra.local import LocalAWS
from infra.local.clock import SimClock
from infra.local.etcd_model import EtcdModel
from infra.local.sim_fleet import SimFleet
from infra.local.stack import Stack, deploy

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATE = "autoscaling:EC2_INSTANCE_TERMINATING"
# The tags that admit an instance as a member (hook_handler.coordinator.actions.ADMISSION_TAGS).
ADMISSION = (
    "etcd-cluster-state",
    "etcd-member-id",
    "etcd-member-phase",
    "etcd-member-since",
    "etcd-srv-change",
    "etcd-srv-target",
)


@dataclass
class World:
    aws: LocalAWS
    stack: Stack
    model: EtcdModel
    fleet: SimFleet

    def members(self) -> list[Any]:
        clusters = {cid: ms for cid, ms in self.model.clusters().items() if any(m.running for m in ms)}
        assert len(clusters) == 1, f"expected one running cluster, etcd has {len(clusters)}: {clusters}"
        (members,) = clusters.values()
        return members

    def member_ids(self) -> dict[str, int]:
        """instance id (member name) → member id."""
        return {m.name: int(m.id) for m in self.members()}

    def in_service(self) -> set[str]:
        return {i for i, s in self.stack.instances().items() if s == "InService"}

    def record_ids(self) -> set[str]:
        dns = self.stack.private_dns(set(self.stack.instances()) | set(self.pool()))
        by_target = {t: i for i, t in dns.items()}
        return {by_target.get(t, t) for t in self.stack.targets()}

    def pool(self) -> dict[str, str]:
        out = self.stack.client("autoscaling").describe_warm_pool(AutoScalingGroupName=self.stack.group)
        return {i["InstanceId"]: i["LifecycleState"] for i in out["Instances"]}

    def ec2_state(self, instance_id: str) -> str:
        out = self.stack.client("ec2").describe_instances(InstanceIds=[instance_id])
        return str(out["Reservations"][0]["Instances"][0]["State"]["Name"])

    def assert_in_step(self, n: int) -> None:
        """n members, all started voters, = the record = the group's InService instances; quorum."""
        members = self.members()
        assert len(members) == n, members
        assert all(m.started and not m.learner for m in members), members
        assert {m.name for m in members} == self.in_service() == self.record_ids()
        cid = {m for m, ms in self.model.clusters().items() if any(x.running for x in ms)}.pop()
        assert not self.model.quorum_lost(cid)

    def actions(self, instance_id: str, transition: str) -> list[Any]:
        return [a for a in self.aws.lifecycle_actions if a.instance_id == instance_id and a.transition == transition]

    def put_pool(self, min_size: int) -> None:
        self.stack.client("autoscaling").put_warm_pool(
            AutoScalingGroupName=self.stack.group,
            MinSize=min_size,
            MaxGroupPreparedCapacity=3,
            InstanceReusePolicy={"ReuseOnScaleIn": True},
        )

    def log(self, instance_id: str) -> list[str]:
        return [message for _, message in self.fleet.instances[instance_id].log]


@pytest.fixture
def world():
    with LocalAWS(clock=SimClock(), propagation=(5.0, 15.0), warm_pools=True) as aws:
        model = EtcdModel(aws.clock, seed=1, start_seconds=(1.0, 3.0))
        stack = deploy(aws, mode="eventbridge", etcd=model.transport(), settings={"poll_interval_seconds": "2"})
        fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain).start()
        yield World(aws, stack, model, fleet)
        fleet.stop()


def test_a_member_back_from_the_warm_pool_is_removed_revoked_and_rejoins_as_a_new_member(world):
    aws, stack = world.aws, world.stack
    stack.scale(3)
    aws.clock.advance(300)
    world.assert_in_step(3)
    first_ids = world.member_ids()

    # -- the warm pool (empty at desired 3: MaxGroupPreparedCapacity 3, MinSize 0), reuse on scale-in ----------
    world.put_pool(0)
    aws.clock.advance(5)
    assert world.pool() == {}

    # -- scale in to 2: one member goes back to the pool --------------------------------------------------------
    changes = len(aws.route53_changes)
    stack.scale(2)
    aws.clock.advance(300)
    ((returned, pool_state),) = world.pool().items()
    assert returned in first_ids and pool_state == "Warmed:Stopped" and world.ec2_state(returned) == "stopped"
    # etcd: its member removed; Route 53: the record without it; both = the two in service.
    world.assert_in_step(2)
    assert returned not in world.member_ids()
    removes = [r for r in world.model.history if r.kind == "remove"]
    assert [r.member_id for r in removes] == [first_ids[returned]]
    assert len(aws.route53_changes) > changes
    # Auto Scaling: its terminate action (to the pool) completed CONTINUE by the coordinator.
    (leave,) = world.actions(returned, TERMINATE)
    assert (leave.result, leave.ended_by) == ("CONTINUE", "complete")
    # EC2: its admission tags are gone (the etcd-leave-change proof may stay).
    tags = stack.tags(returned)
    assert not set(ADMISSION) & set(tags), tags
    # The stopped instance runs no etcd and keeps the removed member's data dir (EBS).
    assert world.fleet.instances[returned].phase == "stopped"
    assert not world.model.process(returned).running
    assert world.model.process(returned).data.state == "wal"
    assert world.model.process(returned).data.member_id == first_ids[returned]

    # -- scale out to 3: it leaves the pool and joins as a new member ------------------------------------------
    stack.scale(3)
    aws.clock.advance(600)
    assert world.pool() == {}
    world.assert_in_step(3)
    ids = world.member_ids()
    assert returned in ids and ids[returned] != first_ids[returned]  # a NEW member id, same instance (name)
    assert {i: m for i, m in ids.items() if i != returned} == {i: m for i, m in first_ids.items() if i != returned}
    (_, join) = world.actions(returned, LAUNCH)  # its first launch, then out of the pool
    assert (join.result, join.ended_by) == ("CONTINUE", "complete")
    assert stack.tags(returned)["etcd-cluster-state"] == "existing"
    assert int(stack.tags(returned)["etcd-member-id"], 16) == ids[returned]
    log = world.log(returned)
    assert any("no tag etcd-cluster-state: membership revoked" in line for line in log), log
    assert any("membership revoked: the WAL is of a removed member; data dir cleared" in line for line in log), log
    assert not any("restart without discovery" in line for line in log), log
    adds = [r for r in world.model.history if r.kind == "add"]
    assert len(adds) == 1 and adds[0].learner  # added once, as a learner, then promoted
    assert world.fleet.instances[returned].boots == 2

    # -- new instances filling the pool: completed at once, no record write, no etcd ----------------------------
    changes, record = len(aws.route53_changes), stack.record()
    world.put_pool(1)
    aws.clock.advance(120)
    ((warm, pool_state),) = world.pool().items()
    assert warm not in first_ids and pool_state == "Warmed:Stopped" and world.ec2_state(warm) == "stopped"
    (entry,) = world.actions(warm, LAUNCH)
    assert (entry.result, entry.ended_by) == ("CONTINUE", "complete")
    assert entry.ended_at - entry.started_at < 10  # at once (delivery latency), not after a propagation wait
    assert len(aws.route53_changes) == changes and stack.record() == record
    assert not set(ADMISSION) & set(stack.tags(warm))
    assert world.fleet.instances[warm].phase == "stopped" and warm not in world.model.processes
    world.assert_in_step(3)
    assert not aws.dead_letters
