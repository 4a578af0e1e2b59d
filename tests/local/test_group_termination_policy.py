"""Issue 13: the emulated group calls its custom termination policy (a registered Lambda function) as AWS documents
(infra/local/termination.py): on scale-in and before each instance refresh batch, with AWS's payload, honouring
the answer — fewer or none means "ask again shortly", an error or a time-out counts as none, a refresh fails
after an hour of none."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra.local.termination import MAX_RUN_SECONDS, REFRESH_PATIENCE

GROUP = "etcd"


pytestmark = pytest.mark.local_aws(propagation=(5.0, 15.0))  # the shared ``aws`` fixture (tests/conftest.py)


class Policy:
    """A stand-in policy: answers what ``pick(payload)`` says, and records every request."""

    def __init__(self, pick) -> None:
        self.pick = pick
        self.requests: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.requests.append(event)
        return self.pick(event)


def group(aws, policy: Policy, desired: int, *, more=("Default",), name: str = GROUP, **options) -> str:
    arn = aws.register_function("etcd-termination-policy", policy, timeout=2, **options)
    aws.client("ec2").create_launch_template(
        LaunchTemplateName="etcd-node", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    )
    aws.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": "etcd-node"},
        MinSize=0,
        MaxSize=10,
        DesiredCapacity=desired,
        AvailabilityZones=["us-east-1a", "us-east-1b"],
        TerminationPolicies=[arn, *more],
    )
    aws.clock.advance(30)
    return arn


def states(aws) -> dict[str, str]:
    from moto.autoscaling.models import autoscaling_backends

    g = autoscaling_backends[aws.account][aws.region].autoscaling_groups[GROUP]
    return {s.instance.id: s.lifecycle_state for s in g.instance_states}


def in_service(aws) -> set[str]:
    return {i for i, s in states(aws).items() if s == "InService"}


def test_scale_in_asks_the_policy_with_aws_payload_and_terminates_exactly_what_it_answers(aws):
    chosen: list[str] = []

    def pick(event):
        chosen[:] = sorted(i["InstanceId"] for i in event["Instances"])[-1:]
        return {"InstanceIDs": chosen}

    policy = Policy(pick)
    group(aws, policy, 4)
    before = in_service(aws)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=3)
    assert in_service(aws) == before  # the call returns first: the group asks the policy afterwards
    aws.clock.advance(30)
    (request,) = policy.requests
    assert set(request) == {"AutoScalingGroupARN", "AutoScalingGroupName", "CapacityToTerminate", "Instances", "Cause"}
    assert request["Cause"] == "SCALE_IN" and request["AutoScalingGroupName"] == GROUP
    assert request["AutoScalingGroupARN"].startswith("arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:")
    assert sum(c["Capacity"] for c in request["CapacityToTerminate"]) == 1
    assert all(
        set(c) == {"AvailabilityZone", "Capacity", "InstanceMarketOption"} for c in request["CapacityToTerminate"]
    )
    assert all(
        set(i) == {"AvailabilityZone", "InstanceId", "InstanceType", "InstanceMarketOption"}
        for i in request["Instances"]
    )
    assert in_service(aws) == before - set(chosen)
    (call,) = aws.policy_calls
    assert call.terminated == chosen and call.outcome == "ok"
    assert [i.source for i in aws.invocations] == ["termination-policy"]


def test_an_empty_answer_terminates_nothing_and_the_group_asks_again_until_one_may_go(aws):
    allow = {"now": False}
    policy = Policy(lambda e: {"InstanceIDs": [e["Instances"][0]["InstanceId"]] if allow["now"] else []})
    group(aws, policy, 3)
    before = in_service(aws)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)
    aws.clock.advance(120)
    assert in_service(aws) == before  # held: nothing terminated
    asked = len(policy.requests)
    assert asked >= 5  # a short time (5-15 s) between questions, for as long as desired < current
    allow["now"] = True
    aws.clock.advance(30)
    assert len(in_service(aws)) == 2
    settled = len(policy.requests)
    aws.clock.advance(120)
    assert len(policy.requests) == settled  # desired reached: no more questions


def test_raising_the_desired_capacity_again_ends_the_questions(aws):
    policy = Policy(lambda e: {"InstanceIDs": []})
    group(aws, policy, 3)
    asg = aws.client("autoscaling")
    asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)
    aws.clock.advance(30)
    asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=3)
    aws.clock.advance(20)
    asked = len(policy.requests)
    aws.clock.advance(120)
    assert len(policy.requests) == asked and len(in_service(aws)) == 3


@pytest.mark.parametrize("failure", ["error", "timeout", "invalid"])
def test_an_error_a_timeout_or_a_malformed_answer_counts_as_no_answer(aws, failure):
    calls = {"n": 0}

    def pick(event):
        calls["n"] += 1
        if calls["n"] == 1:
            if failure == "error":
                raise RuntimeError("boom")
            if failure == "timeout":
                aws.clock.sleep(5)  # past AWS's two seconds
            return ["not", "an", "object"]
        return {"InstanceIDs": [event["Instances"][0]["InstanceId"]]}

    group(aws, Policy(pick), 3)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)
    aws.clock.advance(60)
    first, second = aws.policy_calls[:2]
    assert first.outcome == failure and first.terminated == [] and first.answer is None
    assert second.outcome == "ok" and len(second.terminated) == 1
    assert len(in_service(aws)) == 2
    if failure == "timeout":
        (invocation, *_) = aws.invocations
        assert invocation.outcome == "timeout" and invocation.ended_at - invocation.time == pytest.approx(
            MAX_RUN_SECONDS
        )


def test_fewer_than_needed_terminates_those_and_asks_again_for_the_rest(aws):
    policy = Policy(lambda e: {"InstanceIDs": [e["Instances"][0]["InstanceId"]]})  # one at a time
    group(aws, policy, 4)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=1)
    aws.clock.advance(90)
    assert len(in_service(aws)) == 1
    capacities = [sum(c["Capacity"] for c in r["CapacityToTerminate"]) for r in policy.requests]
    assert capacities == [3, 2, 1]


def test_more_than_needed_lets_the_next_policy_choose(aws):
    policy = Policy(lambda e: {"InstanceIDs": sorted(in_service(aws))})  # every instance, suggested or not
    group(aws, policy, 2, more=("NewestInstance",))
    first = in_service(aws)
    asg = aws.client("autoscaling")
    aws.clock.advance(60)
    asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=3)
    aws.clock.advance(30)
    (newest,) = in_service(aws) - first
    asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)
    aws.clock.advance(30)
    (call,) = aws.policy_calls
    assert sorted(call.answer) == sorted(first | {newest})  # all three answered, one needed
    assert call.terminated == [newest] and in_service(aws) == first


def test_ids_not_in_service_in_the_group_are_ignored(aws):
    policy = Policy(lambda e: {"InstanceIDs": ["i-00000000000000bad"]})
    group(aws, policy, 2)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=1)
    aws.clock.advance(30)
    assert len(in_service(aws)) == 2 and all(c.terminated == [] for c in aws.policy_calls)


def test_terminate_instance_in_auto_scaling_group_does_not_ask_the_policy(aws):
    policy = Policy(lambda e: {"InstanceIDs": []})
    group(aws, policy, 2)
    victim = sorted(in_service(aws))[0]
    aws.client("autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=victim, ShouldDecrementDesiredCapacity=True
    )
    aws.clock.advance(30)
    assert victim not in in_service(aws) and policy.requests == []


def test_instances_are_those_of_the_zones_out_of_balance(aws):
    policy = Policy(lambda e: {"InstanceIDs": []})
    group(aws, policy, 3)
    zones = {
        i["InstanceId"]: i["Placement"]["AvailabilityZone"]
        for r in aws.client("ec2").describe_instances()["Reservations"]
        for i in r["Instances"]
    }
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)
    aws.clock.advance(5)
    request = policy.requests[0]
    counts: dict[str, int] = {}
    for z in zones.values():
        counts[z] = counts.get(z, 0) + 1
    if len(set(counts.values())) > 1:  # out of balance: only the fullest zone is offered
        fullest = max(counts, key=counts.get)
        assert {i["AvailabilityZone"] for i in request["Instances"]} == {fullest}
        assert request["CapacityToTerminate"][0]["AvailabilityZone"] == fullest
    else:
        assert len(request["Instances"]) == 3


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        (["OldestInstance", "LAMBDA"], "specified first"),
        (["LAMBDA", "LAMBDA2"], "Only one Lambda"),
        (["LAMBDA:$LATEST"], "$LATEST"),
    ],
)
def test_aws_limitations_on_the_policy_list_are_refused(aws, policies, message):
    arn = aws.register_function("p", Policy(lambda e: {"InstanceIDs": []}))
    names = [p.replace("LAMBDA2", arn + "-other").replace("LAMBDA", arn) for p in policies]
    aws.client("ec2").create_launch_template(
        LaunchTemplateName="etcd-node", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    )
    with pytest.raises(ClientError) as caught:
        aws.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=GROUP,
            LaunchTemplate={"LaunchTemplateName": "etcd-node"},
            MinSize=0,
            MaxSize=3,
            AvailabilityZones=["us-east-1a"],
            TerminationPolicies=names,
        )
    assert caught.value.response["Error"]["Code"] == "ValidationError" and message in str(caught.value)


def test_update_auto_scaling_group_sets_and_removes_the_policy(aws):
    policy = Policy(lambda e: {"InstanceIDs": []})
    arn = group(aws, policy, 2)
    asg = aws.client("autoscaling")
    asg.update_auto_scaling_group(AutoScalingGroupName=GROUP, TerminationPolicies=["Default"])
    asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=1)
    aws.clock.advance(30)
    assert policy.requests == [] and len(in_service(aws)) == 1
    asg.update_auto_scaling_group(AutoScalingGroupName=GROUP, TerminationPolicies=[arn, "Default"])
    asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=0)
    aws.clock.advance(30)
    assert len(policy.requests) >= 1 and len(in_service(aws)) == 1


def test_a_refresh_asks_the_policy_before_each_batch_and_replaces_what_it_answers(aws):
    order: list[str] = []

    def pick(event):
        last = sorted(i["InstanceId"] for i in event["Instances"])[-1]  # not the group's oldest-first order
        order.append(last)
        return {"InstanceIDs": [last]}

    policy = Policy(pick)
    group(aws, policy, 3)
    old = in_service(aws)
    asg = aws.client("autoscaling")
    asg.start_instance_refresh(AutoScalingGroupName=GROUP, Preferences={"InstanceWarmup": 0})
    aws.clock.advance(300)
    (refresh,) = asg.describe_instance_refreshes(AutoScalingGroupName=GROUP)["InstanceRefreshes"]
    assert refresh["Status"] == "Successful"
    assert {r["Cause"] for r in policy.requests} == {"INSTANCE_REFRESH"}
    (record,) = aws.instance_refreshes
    assert [ids for _, ids in record.batches] == [[i] for i in order]
    assert set(order) == old and not in_service(aws) & old
    # each question offered only old instances still to replace
    assert all({i["InstanceId"] for i in r["Instances"]} <= old for r in policy.requests)


def test_a_refresh_fails_after_an_hour_of_empty_answers(aws):
    policy = Policy(lambda e: {"InstanceIDs": []})
    group(aws, policy, 2)
    old = in_service(aws)
    asg = aws.client("autoscaling")
    asg.start_instance_refresh(AutoScalingGroupName=GROUP, Preferences={"InstanceWarmup": 0})
    aws.clock.advance(REFRESH_PATIENCE - 60)
    assert asg.describe_instance_refreshes(AutoScalingGroupName=GROUP)["InstanceRefreshes"][0]["Status"] == "InProgress"
    aws.clock.advance(120)
    (refresh,) = asg.describe_instance_refreshes(AutoScalingGroupName=GROUP)["InstanceRefreshes"]
    assert refresh["Status"] == "Failed" and "an hour" in refresh["StatusReason"]
    assert in_service(aws) == old  # nothing was terminated
