"""Issue 11: Auto Scaling / EC2 behaviours as AWS documents them, each behind a ``LocalAWS`` option.

Each test runs the scenario twice: in ``KINDER_WORLD`` (the emulator before issue 11: asserted, so the
test shows what changed) and with the option on (AWS's outcome, the default), the other options of
``KINDER_WORLD`` kept off so the one behaviour is seen alone. Citations are in ``infra/local/autoscaling/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra.local.aws import KINDER_WORLD, LocalAWS
from infra.local.clock import SimClock

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATE = "autoscaling:EC2_INSTANCE_TERMINATING"
LAUNCH_EVENT = "EC2 Instance-launch Lifecycle Action"
TERMINATE_EVENT = "EC2 Instance-terminate Lifecycle Action"


class Env:
    """A started LocalAWS (SimClock) with a launch template and an EventBridge rule → SQS queue."""

    def __init__(self, aws: LocalAWS) -> None:
        self.aws = aws
        self.clock = aws.clock
        self.asg = aws.client("autoscaling")
        self.ec2 = aws.client("ec2")
        self.sqs = aws.client("sqs")
        self.ec2.create_launch_template(
            LaunchTemplateName="etcd-node", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
        )
        self.queue = self.sqs.create_queue(QueueName="asg-events")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = aws.client("events")
        events.put_rule(Name="asg", EventPattern=json.dumps({"source": ["aws.autoscaling"]}))
        events.put_targets(Rule="asg", Targets=[{"Id": "q", "Arn": arn}])

    def group(self, desired: int = 0, hooks: tuple[str, ...] = (LAUNCH, TERMINATE)) -> None:
        specs = [
            {
                "LifecycleHookName": "launch" if t == LAUNCH else "drain",
                "LifecycleTransition": t,
                "HeartbeatTimeout": 300,
            }
            for t in hooks
        ]
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName="etcd",
            LaunchTemplate={"LaunchTemplateName": "etcd-node"},
            MinSize=0,
            MaxSize=3,
            DesiredCapacity=desired,
            AvailabilityZones=["us-east-1a"],
            **({"LifecycleHookSpecificationList": specs} if specs else {}),
        )

    def scale(self, n: int) -> None:
        self.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=n)

    def states(self) -> dict[str, str]:
        groups = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=["etcd"])["AutoScalingGroups"]
        return {i["InstanceId"]: i["LifecycleState"] for i in groups[0]["Instances"]}

    def health(self) -> dict[str, str]:
        groups = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=["etcd"])["AutoScalingGroups"]
        return {i["InstanceId"]: i["HealthStatus"] for i in groups[0]["Instances"]}

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        found = self.ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": [instance_id]}])
        instances = [i for r in found["Reservations"] for i in r["Instances"]]
        return instances[0] if instances else None

    def events(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        found = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                break
            for m in messages:
                found.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
        return [e for e in found if detail_type is None or e["detail-type"] == detail_type]

    def complete(self, instance_id: str, hook: str = "launch", result: str = "CONTINUE") -> None:
        self.asg.complete_lifecycle_action(
            AutoScalingGroupName="etcd", LifecycleHookName=hook, LifecycleActionResult=result, InstanceId=instance_id
        )

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


@pytest.fixture
def world(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``world(**options)`` → a started ``Env`` in ``KINDER_WORLD`` but for ``options``; stopped at the end."""
    started: list[LocalAWS] = []

    def make(**options: Any) -> Env:
        for aws in started:
            aws.stop()
        aws = LocalAWS(clock=SimClock(), **(KINDER_WORLD | options)).start()
        started.append(aws)
        return Env(aws)

    yield make
    for aws in started:
        aws.stop()


def only(mapping: dict[str, str]) -> tuple[str, str]:
    (item,) = mapping.items()
    return item


# -- 1. health check replacement ---------------------------------------------------------------
def test_an_instance_killed_at_ec2_level_is_terminated_through_its_hooks_after_the_health_check(world: Any) -> None:
    # Kinder world: dropped and replaced at once, no terminate hook.
    env = world()
    env.group(desired=1)
    victim, _ = only(env.states())
    env.complete(victim)
    env.aws.kill_instance(victim)
    assert victim not in env.states()
    assert env.events(TERMINATE_EVENT) == []

    # AWS: still InService until the health check notices; then Unhealthy, Terminating:Wait with
    # the terminate hook's token and notification, a replacement launching meanwhile, addresses gone.
    env = world(health_check_replacement=True, terminated_addresses=True, health_check_delay=20.0)
    env.group(desired=1)
    victim, _ = only(env.states())
    env.complete(victim)
    env.events()
    env.aws.kill_instance(victim)
    assert env.states() == {victim: "InService"}
    assert env.instance(victim)["State"]["Name"] == "terminated"
    env.advance(19.0)
    assert env.states() == {victim: "InService"} and env.events(TERMINATE_EVENT) == []
    env.advance(1.0)
    states = env.states()
    assert states.pop(victim) == "Terminating:Wait"
    assert list(states.values()) == ["Pending:Wait"]  # the replacement
    assert env.health()[victim] == "Unhealthy"
    (event,) = env.events(TERMINATE_EVENT)
    assert event["detail"]["EC2InstanceId"] == victim
    assert event["detail"]["LifecycleHookName"] == "drain"
    assert (event["detail"]["Origin"], event["detail"]["Destination"]) == ("AutoScalingGroup", "EC2")
    described = env.instance(victim)
    assert "PrivateIpAddress" not in described and described["PrivateDnsName"] == ""
    # Nobody completes it: the heartbeat timeout applies DefaultResult, then the instance is gone.
    env.advance(300.0)
    assert victim not in env.states()
    action = next(a for a in env.aws.lifecycle_actions if a.instance_id == victim and a.transition == TERMINATE)
    assert (action.hook, action.ended_by, action.result) == ("drain", "timeout", "ABANDON")
    assert [e["detail"]["EC2InstanceId"] for e in env.events("EC2 Instance Terminate Successful")] == [victim]


# -- 2. terminated instances lose their addresses, then leave DescribeInstances -----------------
def test_a_terminated_instance_loses_its_addresses_and_later_disappears(world: Any) -> None:
    env = world()
    env.group(desired=1, hooks=())
    victim, _ = only(env.states())
    env.ec2.terminate_instances(InstanceIds=[victim])
    env.advance(7200.0)
    old = env.instance(victim)
    assert old["State"]["Name"] == "terminated" and old["PrivateIpAddress"] and old["PrivateDnsName"]

    env = world(terminated_addresses=True, terminated_retention=3600.0)
    env.group(desired=1, hooks=())
    victim, _ = only(env.states())
    address = env.instance(victim)
    ip, dns = address["PrivateIpAddress"], address["PrivateDnsName"]
    env.ec2.terminate_instances(InstanceIds=[victim])
    gone = env.instance(victim)
    assert gone["State"]["Name"] == "terminated"
    assert "PrivateIpAddress" not in gone and gone["PrivateDnsName"] == "" and gone["NetworkInterfaces"] == []
    by_dns = env.ec2.describe_instances(Filters=[{"Name": "private-dns-name", "Values": [dns]}])["Reservations"]
    by_ip = env.ec2.describe_instances(Filters=[{"Name": "private-ip-address", "Values": [ip]}])["Reservations"]
    assert by_dns == [] and by_ip == []
    env.advance(3599.0)
    assert env.instance(victim) is not None
    env.advance(1.0)
    assert env.instance(victim) is None
    with pytest.raises(ClientError) as caught:
        env.ec2.describe_instances(InstanceIds=[victim])
    assert caught.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"


# -- 3. transitional states ----------------------------------------------------------------------
def test_transitional_states_are_visible_and_the_action_event_comes_with_the_wait_state(world: Any) -> None:
    env = world()
    env.group()
    env.scale(1)
    iid, state = only(env.states())
    assert state == "Pending:Wait" and len(env.events(LAUNCH_EVENT)) == 1
    env.complete(iid)
    assert env.states() == {iid: "InService"}

    env = world(transitional_states=True, transition_delay=2.0)
    env.group()
    env.scale(1)
    iid, state = only(env.states())
    assert state == "Pending" and env.events(LAUNCH_EVENT) == []
    env.advance(2.0)
    assert env.states() == {iid: "Pending:Wait"}
    (event,) = env.events(LAUNCH_EVENT)
    assert event["time"] == _iso(env.clock.now())
    env.complete(iid)
    assert env.states() == {iid: "Pending:Proceed"} and env.events("EC2 Instance Launch Successful") == []
    env.advance(2.0)
    assert env.states() == {iid: "InService"} and len(env.events("EC2 Instance Launch Successful")) == 1

    env.scale(0)
    assert env.states() == {iid: "Terminating"} and env.events(TERMINATE_EVENT) == []
    env.advance(2.0)
    assert env.states() == {iid: "Terminating:Wait"} and len(env.events(TERMINATE_EVENT)) == 1
    env.complete(iid, hook="drain")
    assert env.states() == {iid: "Terminating:Proceed"}
    assert env.instance(iid)["State"]["Name"] == "running"
    env.advance(2.0)
    assert env.states() == {} and env.instance(iid)["State"]["Name"] == "terminated"

    # Without hooks: Pending, then InService.
    env.asg.delete_lifecycle_hook(AutoScalingGroupName="etcd", LifecycleHookName="launch")
    env.scale(1)
    iid, state = only(env.states())
    assert state == "Pending"
    env.advance(2.0)
    assert env.states() == {iid: "InService"}


def _iso(ts: float) -> str:
    from infra.local.clock import iso

    return iso(ts)


# -- 4. eventually consistent describes ------------------------------------------------------------
def test_describes_may_answer_an_older_view(world: Any) -> None:
    env = world()
    env.group(hooks=())
    env.scale(1)
    iid, _ = only(env.states())
    env.ec2.create_tags(Resources=[iid], Tags=[{"Key": "etcd-cluster-state", "Value": "existing"}])
    assert {t["Key"]: t["Value"] for t in env.instance(iid)["Tags"]}["etcd-cluster-state"] == "existing"

    env = world(stale_describes=True, describe_staleness=5.0)
    env.group(hooks=())
    env.advance(10.0)
    env.scale(1)
    # The launch is 0 s old: a view 5 s old has no instance yet, on every Describe call.
    assert env.states() == {}
    assert env.asg.describe_auto_scaling_instances()["AutoScalingInstances"] == []
    groups = env.asg.describe_auto_scaling_groups(AutoScalingGroupNames=["etcd"])["AutoScalingGroups"]
    assert groups[0]["DesiredCapacity"] == 0
    # The call log records what the describe answered (the checker judges a pass by what it saw), not the truth.
    from infra.local.faults import answered_desired

    (call,) = [c for c in env.aws.calls if c.operation == "DescribeAutoScalingGroups"][-1:]
    assert answered_desired(call, "etcd") == 0 and answered_desired(call, "other") is None
    env.advance(5.0)
    later = env.asg.describe_auto_scaling_groups(AutoScalingGroupNames=["etcd"])["AutoScalingGroups"]
    assert later[0]["DesiredCapacity"] == 1
    assert answered_desired(env.aws.calls[-1], "etcd") == 1
    iid, state = only(env.states())
    assert state == "InService"
    assert env.instance(iid) is not None
    env.ec2.create_tags(Resources=[iid], Tags=[{"Key": "etcd-cluster-state", "Value": "existing"}])
    assert "etcd-cluster-state" not in {t["Key"] for t in env.instance(iid).get("Tags", [])}
    by_tag = env.ec2.describe_instances(Filters=[{"Name": "tag:etcd-cluster-state", "Values": ["existing"]}])
    assert by_tag["Reservations"] == []
    env.advance(5.0)
    assert {t["Key"]: t["Value"] for t in env.instance(iid)["Tags"]}["etcd-cluster-state"] == "existing"
    # A terminated instance is still described as it was for the lag.
    env.scale(0)
    assert env.states() == {iid: "InService"}
    env.advance(5.0)
    assert env.states() == {}


def test_stale_describes_draw_a_lag_per_call_from_the_seeded_rng(world: Any) -> None:
    def run() -> list[int]:
        env = world(stale_describes=True, describe_staleness=(0.0, 2.0), seed=7)
        env.group(hooks=())
        env.advance(5.0)
        env.scale(1)
        seen = []
        for _ in range(20):
            env.advance(0.1)
            seen.append(len(env.states()))
        return seen

    first = run()
    assert first == run()  # seeded
    assert first[0] == 0 and first[-1] == 1  # 0.1 s after the launch: not yet; 2 s after: always


# -- 5. warm pools ---------------------------------------------------------------------------------
def test_warm_pool_instances_run_the_hooks_of_each_warm_pool_transition(world: Any) -> None:
    env = world(warm_pools=False)
    env.group()
    env.asg.put_warm_pool(AutoScalingGroupName="etcd", MinSize=1, MaxGroupPreparedCapacity=1)
    assert env.asg.describe_warm_pool(AutoScalingGroupName="etcd")["Instances"] == []

    env = world(warm_pools=True)
    env.group()
    env.events()
    env.asg.put_warm_pool(
        AutoScalingGroupName="etcd", MinSize=1, MaxGroupPreparedCapacity=1, InstanceReusePolicy={"ReuseOnScaleIn": True}
    )
    pool = env.asg.describe_warm_pool(AutoScalingGroupName="etcd")
    assert pool["WarmPoolConfiguration"]["MinSize"] == 1
    ((warm, state),) = [(i["InstanceId"], i["LifecycleState"]) for i in pool["Instances"]]
    assert state == "Warmed:Pending:Wait" and env.states() == {}
    (event,) = env.events(LAUNCH_EVENT)
    assert (event["detail"]["EC2InstanceId"], event["detail"]["Origin"], event["detail"]["Destination"]) == (
        warm,
        "EC2",
        "WarmPool",
    )
    described = env.asg.describe_auto_scaling_instances(InstanceIds=[warm])["AutoScalingInstances"]
    assert described[0]["LifecycleState"] == "Warmed:Pending:Wait"
    env.complete(warm)
    pool = env.asg.describe_warm_pool(AutoScalingGroupName="etcd")
    assert [i["LifecycleState"] for i in pool["Instances"]] == ["Warmed:Stopped"]
    assert env.instance(warm)["State"]["Name"] == "stopped"

    # Scale out: the warm instance leaves the pool through the launch hook again.
    env.scale(1)
    assert env.states() == {warm: "Pending:Wait"}
    assert env.instance(warm)["State"]["Name"] == "running"
    (event,) = [e for e in env.events(LAUNCH_EVENT) if e["detail"]["EC2InstanceId"] == warm]
    assert (event["detail"]["Origin"], event["detail"]["Destination"]) == ("WarmPool", "AutoScalingGroup")
    # The pool refills (MinSize 1) with a new instance entering it.
    pool = env.asg.describe_warm_pool(AutoScalingGroupName="etcd")
    ((refill, state),) = [(i["InstanceId"], i["LifecycleState"]) for i in pool["Instances"]]
    assert refill != warm and state == "Warmed:Pending:Wait"
    env.complete(refill)
    env.complete(warm)
    assert env.states() == {warm: "InService"}
    successful = env.events("EC2 Instance Launch Successful")
    assert [e["detail"]["Origin"] for e in successful if e["detail"]["EC2InstanceId"] == warm] == ["WarmPool"]

    # Scale in with ReuseOnScaleIn: back to the pool through the *terminate* hook.
    env.events()
    env.scale(0)
    assert env.states() == {}
    pool = {
        i["InstanceId"]: i["LifecycleState"]
        for i in env.asg.describe_warm_pool(AutoScalingGroupName="etcd")["Instances"]
    }
    assert pool[warm] == "Warmed:Pending:Wait"
    (event,) = env.events(TERMINATE_EVENT)
    assert (event["detail"]["EC2InstanceId"], event["detail"]["Origin"], event["detail"]["Destination"]) == (
        warm,
        "AutoScalingGroup",
        "WarmPool",
    )
    assert event["detail"]["LifecycleTransition"] == TERMINATE
    env.complete(warm, hook="drain")
    pool = {
        i["InstanceId"]: i["LifecycleState"]
        for i in env.asg.describe_warm_pool(AutoScalingGroupName="etcd")["Instances"]
    }
    assert pool[warm] == "Warmed:Stopped" and env.instance(warm)["State"]["Name"] == "stopped"

    env.asg.delete_warm_pool(AutoScalingGroupName="etcd")
    assert env.instance(warm)["State"]["Name"] == "terminated"


# -- 6. standby ------------------------------------------------------------------------------------
def test_standby_goes_through_entering_standby_and_exit_through_pending_without_hooks(world: Any) -> None:
    env = world(standby_states=False)
    env.group(desired=1)
    iid, _ = only(env.states())
    env.complete(iid)
    env.asg.enter_standby(AutoScalingGroupName="etcd", InstanceIds=[iid], ShouldDecrementDesiredCapacity=True)
    assert env.states() == {iid: "Standby"}
    env.asg.exit_standby(AutoScalingGroupName="etcd", InstanceIds=[iid])
    assert env.states() == {iid: "InService"}

    env = world(standby_states=True, transition_delay=3.0)
    env.group(desired=1)
    iid, _ = only(env.states())
    env.complete(iid)
    actions = len(env.aws.lifecycle_actions)
    env.events()
    env.asg.enter_standby(AutoScalingGroupName="etcd", InstanceIds=[iid], ShouldDecrementDesiredCapacity=True)
    assert env.states() == {iid: "EnteringStandby"}
    env.advance(3.0)
    assert env.states() == {iid: "Standby"}
    env.asg.exit_standby(AutoScalingGroupName="etcd", InstanceIds=[iid])
    assert env.states() == {iid: "Pending"}
    env.advance(3.0)
    assert env.states() == {iid: "InService"}
    # No lifecycle hook runs on either transition (AWS: hooks apply to newly launched instances only).
    assert len(env.aws.lifecycle_actions) == actions
    assert env.events(LAUNCH_EVENT) == [] and env.events(TERMINATE_EVENT) == []
