"""The termination policy function end to end on simulated time: the emulated group calls it on scale-in, it looks
at the etcd 3.5 model through the same settings as the coordinator, and the coordinator's terminate hook then
removes the member it let go. Each test reads what etcd and the group say afterwards."""

from __future__ import annotations

import pytest

from hook_handler.app import Clients, PolicyRuntime
from hook_handler.settings import load_settings
from infra.local import LocalAWS
from infra.local.etcd_model import EtcdModel
from infra.local.sim_fleet import SimFleet
from infra.local.stack import deploy

pytestmark = pytest.mark.local_aws(propagation=(5.0, 15.0))  # the shared ``aws`` fixture (tests/conftest.py)


class World:
    def __init__(self, aws: LocalAWS, *, membership: bool = True) -> None:
        self.aws = aws
        self.model = EtcdModel(aws.clock, seed=3, start_seconds=(1.0, 3.0))
        transport = self.model.transport()
        self.stack = deploy(aws, mode="eventbridge", etcd=transport, settings={"poll_interval_seconds": "2"})
        self.fleet = SimFleet(aws, self.model, self.stack.group, zone_id=self.stack.zone_id, domain=self.stack.domain)
        self.fleet.start()
        env = {**self.stack.env, **({} if membership else {"etcd_membership": "false"})}
        asg, ec2 = aws.client("autoscaling"), aws.client("ec2")
        policy = PolicyRuntime(
            load_settings(env), Clients(route53=None, autoscaling=asg, ec2=ec2), aws.clock, etcd_transport=transport
        )
        self.answers: list[tuple[dict, dict]] = []

        def handler(event, context):
            answer = policy.handle(event, context)
            self.answers.append((event, answer))
            return answer

        self.policy_arn = aws.register_function("etcd-termination-policy", handler, timeout=2)

    def use_policy(self) -> None:
        self.aws.client("autoscaling").update_auto_scaling_group(
            AutoScalingGroupName=self.stack.group, TerminationPolicies=[self.policy_arn, "Default"]
        )

    def members(self) -> dict[str, object]:
        (members,) = [ms for ms in self.model.clusters().values() if any(m.running for m in ms)]
        return {m.name: m for m in members}

    def in_service(self) -> set[str]:
        return {i for i, s in self.stack.instances().items() if s == "InService"}

    def leader(self) -> str:
        (leader,) = [m.name for m in self.members().values() if m.leader]
        return leader


def five(aws, **kwargs) -> World:
    world = World(aws, **kwargs)
    world.stack.scale(5)
    aws.clock.advance(900)
    assert len(world.in_service()) == 5 and len(world.members()) == 5
    world.use_policy()
    return world


def test_a_scale_in_of_a_healthy_cluster_lets_a_follower_go_never_the_leader(aws):
    world = five(aws)
    leader = world.leader()
    world.stack.scale(4)
    aws.clock.advance(300)
    (event, answer), *_ = world.answers
    assert event["Cause"] == "SCALE_IN" and len(answer["InstanceIDs"]) == 1
    assert answer["InstanceIDs"] != [leader]
    assert leader in world.in_service() and len(world.in_service()) == 4
    # the coordinator's terminate hook removed the member the policy let go
    assert set(world.members()) == world.in_service()


def test_a_member_that_is_down_is_the_one_a_scale_in_takes(aws):
    world = five(aws)
    down = sorted(i for i in world.in_service() if i != world.leader())[0]
    world.fleet.crash(down, restart_delay=100_000)
    aws.clock.advance(20)
    world.stack.scale(4)
    aws.clock.advance(300)
    (_, answer), *_ = world.answers
    assert answer == {"InstanceIDs": [down]}
    assert down not in world.in_service() and len(world.in_service()) == 4
    assert down not in world.members()  # removed by the coordinator after the termination began


def test_with_quorum_lost_nothing_is_terminated_and_the_group_keeps_asking(aws):
    world = five(aws)
    followers = sorted(i for i in world.in_service() if i != world.leader())
    for iid in followers[:3]:
        world.fleet.crash(iid, restart_delay=100_000)
    aws.clock.advance(20)
    before = world.in_service()
    world.stack.scale(4)
    aws.clock.advance(120)
    assert len(world.answers) >= 3 and all(a == {"InstanceIDs": []} for _, a in world.answers)
    assert world.in_service() == before  # five instances kept: recovery may need every disk


def test_when_etcd_cannot_be_reached_nothing_is_terminated(aws):
    world = five(aws)
    for iid in sorted(world.in_service()):
        world.fleet.crash(iid, restart_delay=100_000)
    aws.clock.advance(5)
    before = world.in_service()
    world.stack.scale(3)
    aws.clock.advance(60)
    assert world.answers and all(a == {"InstanceIDs": []} for _, a in world.answers)
    assert world.in_service() == before
    # every answer came within AWS's two seconds
    calls = [i for i in aws.invocations if i.source == "termination-policy"]
    assert calls and all(i.outcome == "ok" and i.ended_at - i.time <= 2.0 for i in calls)


def test_with_membership_off_the_policy_answers_the_groups_own_suggestion(aws):
    world = World(aws, membership=False)
    world.stack.scale(3)
    aws.clock.advance(600)
    world.use_policy()
    world.stack.scale(2)
    aws.clock.advance(60)
    (event, answer), *_ = world.answers
    assert answer["InstanceIDs"] == [i["InstanceId"] for i in event["Instances"]]
