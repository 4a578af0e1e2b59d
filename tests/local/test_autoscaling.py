"""Auto Scaling lifecycle semantics of the emulator (each of these fails on plain moto).

The emulator is AWS's world here (issue 11): transitional states take seconds and describes may answer
an older view, so a test lets simulated time pass (``Env.settle``) before it reads what the group says,
and reads exact timings from ``aws.lifecycle_actions`` (the ground truth), never from a describe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from local_helpers import error_of

from infra.local.aws import LocalAWS
from infra.local.clock import EPOCH, SimClock

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATE = "autoscaling:EC2_INSTANCE_TERMINATING"
ROLE = "arn:aws:iam::123456789012:role/asg-notify"
SETTLE = 15.0  # s: two transitional states (<= 5 s each) and a describe's lag (<= 2 s)
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Env:
    """A LocalAWS with a launch template, a group helper and an EventBridge rule → SQS queue."""

    def __init__(self, aws: LocalAWS) -> None:
        self.aws = aws
        self.asg = aws.client("autoscaling")
        self.ec2 = aws.client("ec2")
        self.sqs = aws.client("sqs")
        self.ec2.create_launch_template(
            LaunchTemplateName="etcd-node", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
        )
        self.events_queue, _ = self.queue("asg-events")
        events = aws.client("events")
        events.put_rule(Name="asg", EventPattern=json.dumps({"source": ["aws.autoscaling"]}))
        events.put_targets(Rule="asg", Targets=[{"Id": "q", "Arn": self.queue_arn(self.events_queue)}])

    def queue(self, name: str) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        return url, self.queue_arn(url)

    def queue_arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def group(self, name: str = "etcd", desired: int = 0, **kwargs: Any) -> None:
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateName": "etcd-node"},
            MinSize=kwargs.pop("MinSize", 0),
            MaxSize=10,
            DesiredCapacity=desired,
            AvailabilityZones=["us-east-1a"],
            **kwargs,
        )

    def hook(self, transition: str = LAUNCH, name: str = "launch", group: str = "etcd", **kwargs: Any) -> None:
        self.asg.put_lifecycle_hook(
            AutoScalingGroupName=group, LifecycleHookName=name, LifecycleTransition=transition, **kwargs
        )

    def settle(self, seconds: float = SETTLE) -> None:
        """Let the transitional states (1-5 s each) pass and describes catch up (views up to 2 s old)."""
        self.aws.clock.advance(seconds)

    def states(self, group: str = "etcd") -> dict[str, str]:
        groups = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
        return {i["InstanceId"]: i["LifecycleState"] for i in groups[0]["Instances"]}

    def ec2_state(self, instance_id: str) -> str:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]["State"]["Name"]

    def drain(self, url: str) -> list[dict[str, Any]]:
        bodies = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return bodies
            for m in messages:
                bodies.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def events(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        found = self.drain(self.events_queue)
        return [e for e in found if detail_type is None or e["detail-type"] == detail_type]

    def active(self, instance_id: str) -> Any:
        return next(a for a in self.aws.lifecycle_actions if a.instance_id == instance_id and a.active)

    def complete(self, instance_id: str, result: str = "CONTINUE", hook: str = "launch") -> None:
        self.asg.complete_lifecycle_action(
            AutoScalingGroupName="etcd", LifecycleHookName=hook, LifecycleActionResult=result, InstanceId=instance_id
        )


@pytest.fixture
def env() -> Iterator[Env]:
    with LocalAWS(clock=SimClock()) as aws:
        yield Env(aws)


# -- wait states ------------------------------------------------------------------------
def test_scale_out_with_launch_hook_puts_each_instance_in_pending_wait_with_its_own_token(env: Env) -> None:
    env.group()
    env.hook()
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=3)
    env.settle()

    states = env.states()
    assert sorted(states.values()) == ["Pending:Wait"] * 3
    described = env.asg.describe_auto_scaling_instances()["AutoScalingInstances"]
    assert {i["LifecycleState"] for i in described} == {"Pending:Wait"}
    assert {env.ec2_state(i) for i in states} == {"running"}  # user data runs during Pending:Wait
    tokens = [env.active(i).token for i in states]
    assert len(set(tokens)) == 3 and all(UUID4.match(t) for t in tokens)


def test_group_created_with_hook_specification_launches_into_pending_wait(env: Env) -> None:
    env.group(
        desired=2,
        LifecycleHookSpecificationList=[
            {"LifecycleHookName": "launch", "LifecycleTransition": LAUNCH, "HeartbeatTimeout": 300}
        ],
    )
    env.settle()
    assert sorted(env.states().values()) == ["Pending:Wait", "Pending:Wait"]
    assert len(env.events("EC2 Instance-launch Lifecycle Action")) == 2


def test_without_hooks_instances_go_in_service_and_the_group_says_launch_successful(env: Env) -> None:
    env.group(desired=1)
    env.settle()
    (instance_id,) = env.states()
    assert env.states() == {instance_id: "InService"}
    (event,) = env.events("EC2 Instance Launch Successful")
    assert event["detail"]["EC2InstanceId"] == instance_id
    assert event["resources"][1].endswith(f":instance/{instance_id}")


def test_update_auto_scaling_group_scale_out_also_waits(env: Env) -> None:
    env.group()
    env.hook()
    env.asg.update_auto_scaling_group(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle()
    assert list(env.states().values()) == ["Pending:Wait"]


def test_pending_wait_instances_count_toward_desired_capacity(env: Env) -> None:
    env.group()
    env.hook()
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=2)
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=3)
    env.settle()
    assert len(env.states()) == 3  # moto alone would launch 3 more: it counts only InService


# -- PutLifecycleHook -------------------------------------------------------------------
def test_put_lifecycle_hook_keeps_its_target_and_sends_a_test_notification_there(env: Env) -> None:
    env.group()
    url, arn = env.queue("hook-target")
    env.hook(NotificationTargetARN=arn, RoleARN=ROLE, HeartbeatTimeout=120, NotificationMetadata="cluster=a")

    (hook,) = env.asg.describe_lifecycle_hooks(AutoScalingGroupName="etcd")["LifecycleHooks"]
    assert hook["NotificationTargetARN"] == arn and hook["RoleARN"] == ROLE
    assert hook["NotificationMetadata"] == "cluster=a"
    assert hook["HeartbeatTimeout"] == 120 and hook["GlobalTimeout"] == 12000
    (test,) = env.drain(url)
    assert test["Event"] == "autoscaling:TEST_NOTIFICATION"
    assert test["AutoScalingGroupName"] == "etcd" and test["Service"] == "AWS Auto Scaling"
    assert test["AutoScalingGroupARN"].endswith(":autoScalingGroupName/etcd")
    assert "LifecycleActionToken" not in test and "EC2InstanceId" not in test


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"LifecycleTransition": "autoscaling:EC2_INSTANCE_REBOOTING"},
            "Invalid value 'autoscaling:EC2_INSTANCE_REBOOTING' for LifecycleTransition. "
            f"Valid values are {LAUNCH} and {TERMINATE}.",
        ),
        ({"HeartbeatTimeout": 29}, "HeartbeatTimeout must be between 30 and 7200 seconds, got 29."),
        ({"HeartbeatTimeout": 7201}, "HeartbeatTimeout must be between 30 and 7200 seconds, got 7201."),
        (
            {"DefaultResult": "RETRY"},
            "Invalid value 'RETRY' for DefaultResult. Valid values are CONTINUE and ABANDON.",
        ),
        (
            {"RoleARN": ROLE},
            "NotificationTargetARN and RoleARN must be specified together: "
            "the role lets Auto Scaling publish to the target.",
        ),
        (
            {"NotificationTargetARN": "arn:aws:sqs:us-east-1:123456789012:missing", "RoleARN": ROLE},
            "Unable to publish test message to notification target arn:aws:sqs:us-east-1:123456789012:missing "
            f"using IAM role {ROLE}. Please check your target and role configuration and try to put lifecycle "
            "hook again.",
        ),
        (
            {"AutoScalingGroupName": "nope"},
            "AutoScalingGroup name not found - AutoScalingGroup 'nope' not found",
        ),
    ],
)
def test_put_lifecycle_hook_validates_like_aws(env: Env, kwargs: dict[str, Any], message: str) -> None:
    env.group()
    params = {"AutoScalingGroupName": "etcd", "LifecycleHookName": "h", "LifecycleTransition": LAUNCH} | kwargs
    assert error_of(env.asg.put_lifecycle_hook, **params) == ("ValidationError", message)
    assert env.asg.describe_lifecycle_hooks(AutoScalingGroupName="etcd")["LifecycleHooks"] == []


# -- notifications ----------------------------------------------------------------------
def test_launch_notification_on_eventbridge_and_to_the_hook_queue_match_aws_formats(env: Env) -> None:
    env.group()
    url, arn = env.queue("hook-target")
    env.hook(NotificationTargetARN=arn, RoleARN=ROLE, NotificationMetadata="cluster=a")
    env.drain(url)  # the test notification
    env.aws.clock.advance(12.5)
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle()
    (instance_id,) = env.states()
    action = env.active(instance_id)
    token = action.token
    waiting_since = action.started_at - EPOCH  # Pending (1-5 s), then Pending:Wait and the notification
    assert 13.5 <= waiting_since <= 17.5

    (event,) = env.events("EC2 Instance-launch Lifecycle Action")
    assert list(event) == ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"]
    assert event["source"] == "aws.autoscaling" and event["account"] == "123456789012"
    assert event["region"] == "us-east-1" and event["time"] == f"2026-01-01T00:00:{int(waiting_since):02d}Z"
    assert event["resources"] == [env.asg.describe_auto_scaling_groups()["AutoScalingGroups"][0]["AutoScalingGroupARN"]]
    assert event["detail"] == {
        "LifecycleActionToken": token,
        "AutoScalingGroupName": "etcd",
        "LifecycleHookName": "launch",
        "EC2InstanceId": instance_id,
        "LifecycleTransition": LAUNCH,
        "NotificationMetadata": "cluster=a",
        "Origin": "EC2",
        "Destination": "AutoScalingGroup",
    }
    (raw,) = env.drain(url)
    assert set(raw) == {
        "Origin", "Destination", "LifecycleHookName", "AccountId", "RequestId", "LifecycleTransition",
        "AutoScalingGroupName", "Service", "Time", "EC2InstanceId", "LifecycleActionToken", "NotificationMetadata",
    }  # fmt: skip
    millis = round((waiting_since - int(waiting_since)) * 1000)
    assert raw["Service"] == "AWS Auto Scaling"
    assert raw["Time"] == f"2026-01-01T00:00:{int(waiting_since):02d}.{millis:03d}Z"
    assert (raw["LifecycleActionToken"], raw["EC2InstanceId"]) == (token, instance_id)
    assert [n.channel for n in env.aws.notifications] == ["sqs", "eventbridge", "sqs"]


def test_hook_target_topic_publishes_the_raw_message_as_sns_message_string(env: Env) -> None:
    sns = env.aws.client("sns")
    topic = sns.create_topic(Name="lifecycle")["TopicArn"]
    url, arn = env.queue("subscriber")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    env.group()
    env.hook(TERMINATE, name="drain", NotificationTargetARN=topic, RoleARN=ROLE)
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle()
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=0)
    env.settle()

    messages = [json.loads(n["Message"]) for n in env.drain(url)]
    assert messages[0]["Event"] == "autoscaling:TEST_NOTIFICATION"
    assert messages[1]["LifecycleTransition"] == TERMINATE
    assert (messages[1]["Origin"], messages[1]["Destination"]) == ("AutoScalingGroup", "EC2")
    assert "NotificationMetadata" not in messages[1]


# -- completing -------------------------------------------------------------------------
def test_complete_by_token_moves_to_in_service_and_a_second_completion_is_refused(env: Env) -> None:
    env.group()
    env.hook()
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle()
    (instance_id,) = env.states()
    action = env.active(instance_id)
    token = action.token
    params = {
        "AutoScalingGroupName": "etcd",
        "LifecycleHookName": "launch",
        "LifecycleActionResult": "CONTINUE",
        "LifecycleActionToken": token,
    }
    env.asg.complete_lifecycle_action(**params)
    completed_at = env.aws.clock.now()
    env.settle()

    assert env.states() == {instance_id: "InService"}
    assert len(env.events("EC2 Instance Launch Successful")) == 1
    assert error_of(env.asg.complete_lifecycle_action, **params) == (
        "ValidationError",
        f"No active Lifecycle Action found with token {token}",
    )
    (record,) = env.aws.lifecycle_actions
    assert (record.result, record.ended_by, record.ended_at) == ("CONTINUE", "complete", completed_at)


def test_complete_by_instance_id_and_wrong_ids_are_refused_verbatim(env: Env) -> None:
    env.group()
    env.hook()
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle()
    (instance_id,) = env.states()
    wrong = "6e9a3bc5-0a3f-4f6e-9b59-6f2b3d0c1a11"
    assert error_of(
        env.asg.complete_lifecycle_action,
        AutoScalingGroupName="etcd",
        LifecycleHookName="launch",
        LifecycleActionResult="CONTINUE",
        LifecycleActionToken=wrong,
    ) == ("ValidationError", f"No active Lifecycle Action found with token {wrong}")
    env.complete(instance_id)
    env.settle()
    assert env.states() == {instance_id: "InService"}
    assert error_of(env.complete, instance_id=instance_id) == (
        "ValidationError",
        f"No active Lifecycle Action found with instance ID {instance_id}",
    )


def test_two_launch_hooks_run_one_after_the_other(env: Env) -> None:
    env.group()
    env.hook(name="first")
    env.hook(name="second")
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle()
    (instance_id,) = env.states()
    env.complete(instance_id, hook="first")
    env.settle()
    assert env.states() == {instance_id: "Pending:Wait"}
    assert env.active(instance_id).hook == "second"
    env.complete(instance_id, hook="second")
    env.settle()
    assert env.states() == {instance_id: "InService"}
    hooks = [e["detail"]["LifecycleHookName"] for e in env.events("EC2 Instance-launch Lifecycle Action")]
    assert hooks == ["first", "second"]


def test_launch_abandon_terminates_the_instance_and_the_group_replaces_it(env: Env) -> None:
    env.group()
    env.hook()
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle()
    (first,) = env.states()
    env.complete(first, "ABANDON")
    env.settle()

    states = env.states()
    assert first not in states and list(states.values()) == ["Pending:Wait"]
    assert env.ec2_state(first) == "terminated"
    (failed,) = env.events("EC2 Instance Launch Unsuccessful")
    assert failed["detail"]["EC2InstanceId"] == first and failed["detail"]["StatusCode"] == "Cancelled"


# -- timeouts and heartbeats ------------------------------------------------------------
def test_timeout_applies_the_default_result_at_the_heartbeat_timeout(env: Env) -> None:
    env.group()
    env.hook(HeartbeatTimeout=300, DefaultResult="CONTINUE")
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle()
    (instance_id,) = env.states()
    (record,) = env.aws.lifecycle_actions

    env.aws.clock.advance(record.started_at + 299.9 - env.aws.clock.now())
    assert record.active and env.states() == {instance_id: "Pending:Wait"}
    env.aws.clock.advance(0.1)
    assert (record.result, record.ended_by, record.ended_at - record.started_at) == ("CONTINUE", "timeout", 300.0)
    env.settle()
    assert env.states() == {instance_id: "InService"}
    assert error_of(env.complete, instance_id=instance_id)[1] == (
        f"No active Lifecycle Action found with instance ID {instance_id}"
    )


def test_heartbeat_restarts_the_full_timeout(env: Env) -> None:
    env.group()
    env.hook(HeartbeatTimeout=60, DefaultResult="CONTINUE")
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle()
    (instance_id,) = env.states()
    (record,) = env.aws.lifecycle_actions
    env.aws.clock.advance(record.started_at + 50 - env.aws.clock.now())
    env.asg.record_lifecycle_action_heartbeat(
        AutoScalingGroupName="etcd", LifecycleHookName="launch", InstanceId=instance_id
    )
    env.aws.clock.advance(59)
    assert record.active and env.states() == {instance_id: "Pending:Wait"}
    env.aws.clock.advance(1)
    assert (record.heartbeats, record.ended_by, record.ended_at - record.started_at) == (1, "timeout", 110.0)
    env.settle()
    assert env.states() == {instance_id: "InService"}


def test_heartbeats_cannot_extend_past_the_global_timeout(env: Env) -> None:
    env.group()
    env.hook(HeartbeatTimeout=30, DefaultResult="CONTINUE")  # global cap: 100 x 30 s = 3000 s
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle(5.0)
    (instance_id,) = [a.instance_id for a in env.aws.lifecycle_actions]
    token = env.active(instance_id).token
    env.aws.clock.advance(env.active(instance_id).started_at - env.aws.clock.now())
    for _ in range(200):
        env.aws.clock.advance(20)
        try:
            env.asg.record_lifecycle_action_heartbeat(
                AutoScalingGroupName="etcd", LifecycleHookName="launch", LifecycleActionToken=token
            )
        except ClientError as exc:
            assert exc.response["Error"]["Message"] == f"No active Lifecycle Action found with token {token}"
            break
    (record,) = env.aws.lifecycle_actions
    assert (record.ended_by, record.ended_at - record.started_at) == ("timeout", 3000.0)
    assert record.heartbeats == 149


def test_launch_timeout_with_default_abandon_replaces_the_instance(env: Env) -> None:
    env.group()
    env.hook(HeartbeatTimeout=30)
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle(5.0)
    (first,) = [a.instance_id for a in env.aws.lifecycle_actions]
    env.aws.clock.advance(30)
    env.settle()
    (second,) = env.states()
    assert second != first and env.ec2_state(first) == "terminated"
    assert [(a.instance_id, a.result, a.ended_by) for a in env.aws.lifecycle_actions] == [
        (first, "ABANDON", "timeout"),
        (second, None, None),
    ]


# -- terminating ------------------------------------------------------------------------
def test_scale_in_with_terminate_hook_waits_then_terminates(env: Env) -> None:
    env.group(desired=2)
    env.hook(TERMINATE, name="drain")
    env.settle()
    env.events()
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle()

    leaving = [i for i, s in env.states().items() if s == "Terminating:Wait"]
    assert len(leaving) == 1 and len(env.states()) == 2
    (event,) = env.events("EC2 Instance-terminate Lifecycle Action")
    assert event["detail"]["EC2InstanceId"] == leaving[0]
    assert (event["detail"]["Origin"], event["detail"]["Destination"]) == ("AutoScalingGroup", "EC2")
    assert env.ec2_state(leaving[0]) == "running"

    env.complete(leaving[0], hook="drain")
    env.settle()
    assert leaving[0] not in env.states() and len(env.states()) == 1
    assert env.ec2_state(leaving[0]) == "terminated"
    (done,) = env.events("EC2 Instance Terminate Successful")
    assert done["detail"]["EC2InstanceId"] == leaving[0]


def test_terminate_instance_in_group_waits_and_launches_a_replacement(env: Env) -> None:
    env.group(desired=1)
    env.hook(TERMINATE, name="drain")
    env.settle()
    (old,) = env.states()
    env.asg.terminate_instance_in_auto_scaling_group(InstanceId=old, ShouldDecrementDesiredCapacity=False)
    env.settle()
    states = env.states()
    assert states[old] == "Terminating:Wait"
    assert sorted(states.values()) == ["InService", "Terminating:Wait"]


def test_terminate_instance_with_decrement_below_min_size_is_refused(env: Env) -> None:
    env.group(desired=1, MinSize=1)
    env.settle()
    (old,) = env.states()
    code, message = error_of(
        env.asg.terminate_instance_in_auto_scaling_group, InstanceId=old, ShouldDecrementDesiredCapacity=True
    )
    assert code == "ValidationError"
    assert message.startswith("Currently, desiredSize equals minSize (1).")


def test_kill_instance_bypasses_hooks_and_the_group_replaces_it(env: Env) -> None:
    env.group()
    env.hook()
    env.hook(TERMINATE, name="drain")
    env.asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    env.settle()
    (victim,) = env.states()
    env.aws.kill_instance(victim)
    env.settle(60.0)  # the health check notices within 10-30 s

    states = env.states()
    assert victim not in states and list(states.values()) == ["Pending:Wait"]
    assert env.ec2_state(victim) == "terminated"
    assert env.events("EC2 Instance-terminate Lifecycle Action") == []
    assert env.aws.lifecycle_actions[0].ended_by == "terminated"
    assert (
        error_of(env.complete, instance_id=victim)[1] == f"No active Lifecycle Action found with instance ID {victim}"
    )


# -- addressing -------------------------------------------------------------------------
def test_instance_ips_give_addresses_in_order_and_dns_names_agree() -> None:
    ips = ["127.0.1.1", "127.0.1.2"]
    with LocalAWS(clock=SimClock(), instance_ips=ips) as aws:
        env = Env(aws)
        env.group(desired=2)
        env.settle()
        described = [i for r in env.ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        pairs = sorted((i["PrivateIpAddress"], i["PrivateDnsName"]) for i in described)
        assert pairs == [("127.0.1.1", "ip-127-0-1-1.ec2.internal"), ("127.0.1.2", "ip-127-0-1-2.ec2.internal")]
        nic = described[0]["NetworkInterfaces"][0]
        assert nic["PrivateIpAddress"] == described[0]["PrivateIpAddress"]
        assert nic["PrivateDnsName"] == described[0]["PrivateDnsName"]
        found = env.ec2.describe_instances(Filters=[{"Name": "private-ip-address", "Values": ["127.0.1.2"]}])
        assert len(found["Reservations"]) == 1


def test_dns_names_outside_us_east_1_use_the_regional_form_everywhere() -> None:
    with LocalAWS(clock=SimClock(), region="eu-west-1") as aws:
        ec2 = aws.client("ec2")
        ec2.create_launch_template(
            LaunchTemplateName="etcd-node", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
        )
        aws.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName="etcd",
            LaunchTemplate={"LaunchTemplateName": "etcd-node"},
            MinSize=0,
            MaxSize=2,
            DesiredCapacity=1,
            AvailabilityZones=["eu-west-1a"],
        )
        aws.clock.advance(SETTLE)
        (instance,) = ec2.describe_instances()["Reservations"][0]["Instances"]
        expected = "ip-" + instance["PrivateIpAddress"].replace(".", "-") + ".eu-west-1.compute.internal"
        assert instance["PrivateDnsName"] == expected
        assert instance["NetworkInterfaces"][0]["PrivateDnsName"] == expected
