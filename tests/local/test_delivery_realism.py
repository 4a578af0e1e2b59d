"""Lambda delivery as AWS behaves (issue 11): throttling backoff and event age, lost events, SQS
pollers and late batches, configuration limits, and lost responses of Auto Scaling / EC2 writes.

Each AWS behaviour is asserted with its option on, and today's kinder behaviour with it off.
Sources are cited in ``infra/local/delivery.py`` and ``infra/local/faults.py``.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from local_helpers import group_with_hook, queue, rule_to, t

from infra.local.aws import KINDER_WORLD, LocalAWS
from infra.local.clock import EPOCH, SimClock
from infra.local.delivery import LambdaLimitError

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCHING"
ROLE = "arn:aws:iam::123456789012:role/asg-notify"


def world(**options: Any) -> LocalAWS:
    """Auto Scaling's transitions instant (``KINDER_WORLD``) so delivery times read from 0; delivery as AWS's."""
    aws = LocalAWS(clock=SimClock(), **(KINDER_WORLD | options)).start()
    aws.client("ec2").create_launch_template(
        LaunchTemplateName="etcd-node", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    )
    return aws


pytestmark = pytest.mark.local_aws(**{"propagation": (20.0, 60.0), **KINDER_WORLD})  # as world() makes it


@pytest.fixture
def aws(local_aws: LocalAWS, launch_template: str) -> LocalAWS:
    """``world()`` as the plugin's ``local_aws``: KINDER_WORLD, LocalAWS's own propagation, the launch template."""
    return local_aws


def scale(aws: LocalAWS, n: int) -> None:
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=n)


# -- throttling: back to Lambda's queue, backoff 1 s .. 5 min, maximum event age ----------------
def busy_handler(aws: LocalAWS, spans: list[tuple[float, float, str]], seconds: float):
    def handler(event: dict[str, Any], context: Any) -> None:
        start = t(aws)
        aws.clock.sleep(seconds)
        spans.append((start, t(aws), event["detail"]["EC2InstanceId"]))

    return handler


def test_throttled_async_events_are_retried_with_backoff_not_the_instant_a_slot_frees() -> None:
    aws = world()
    try:
        assert aws._delivery.options.throttle_backoff  # AWS's behaviour is the default
        spans: list[tuple[float, float, str]] = []
        rule_to(aws, aws.register_function("coordinator", busy_handler(aws, spans, 5.0), reserved_concurrency=1))
        group_with_hook(aws, HeartbeatTimeout=3600)
        scale(aws, 3)
        aws.clock.advance(600)

        assert len(spans) == 3 and spans[0][:2] == (0.5, 5.5)
        starts = [start for start, _, _ in spans]
        ends = {end for _, end, _ in spans}
        assert all(start not in ends for start in starts[1:])  # nobody starts the instant a slot frees
        assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans))  # one at a time
        waits: dict[str, list[float]] = {}
        for throttle in aws.throttles:
            waits.setdefault(throttle.event["detail"]["EC2InstanceId"], []).append(throttle.retry_at - throttle.time)
        for series in waits.values():
            assert 1.0 <= series[0] <= 1.5  # "from 1 second after the first attempt"
            assert all(b > a for a, b in itertools.pairwise(series))  # growing ...
            assert all(w <= 300.0 for w in series)  # "... to a maximum of 5 minutes"
    finally:
        aws.stop()


def test_without_throttle_backoff_the_next_event_starts_when_the_slot_frees(aws: LocalAWS) -> None:
    aws.delivery_options(throttle_backoff=False)
    spans: list[tuple[float, float, str]] = []
    rule_to(aws, aws.register_function("coordinator", busy_handler(aws, spans, 5.0), reserved_concurrency=1))
    group_with_hook(aws)
    scale(aws, 3)
    aws.clock.advance(60)
    assert [s[:2] for s in spans] == [(0.5, 5.5), (5.5, 10.5), (10.5, 15.5)]
    assert aws.throttles == []


def test_backoff_caps_at_five_minutes_and_events_older_than_the_maximum_age_are_discarded() -> None:
    aws = world()
    try:
        aws.delivery_options(throttle_backoff=True)
        spans: list[tuple[float, float, str]] = []
        handler = busy_handler(aws, spans, 880.0)
        rule_to(
            aws, aws.register_function("coordinator", handler, timeout=900, reserved_concurrency=1, max_event_age=600)
        )
        group_with_hook(aws, HeartbeatTimeout=7200)
        scale(aws, 2)
        aws.clock.advance(3600)

        assert len(spans) == 1  # the second event never ran: it aged out while the first held the slot
        (dead,) = aws.dead_letters
        assert dead.error == "EventAgeExceeded" and dead.source == "eventbridge"
        assert 600.5 < dead.time - EPOCH <= 600.5 + 300.0  # older than 600 s at its next try (≤ 5 min later)
        assert max(th.retry_at - th.time for th in aws.throttles) <= 300.0
    finally:
        aws.stop()


def test_without_throttle_backoff_queued_events_never_age_out(aws: LocalAWS) -> None:
    aws.delivery_options(throttle_backoff=False)
    spans: list[tuple[float, float, str]] = []
    handler = busy_handler(aws, spans, 880.0)
    rule_to(aws, aws.register_function("coordinator", handler, timeout=900, reserved_concurrency=1, max_event_age=600))
    group_with_hook(aws, HeartbeatTimeout=7200)
    scale(aws, 2)
    aws.clock.advance(3600)
    assert [s[:2] for s in spans] == [(0.5, 880.5), (880.5, 1760.5)] and aws.dead_letters == []


# -- lost events (EventBridge best effort, SNS) -----------------------------------------------
def test_eventbridge_lifecycle_events_can_be_lost_to_lambda_and_queue_targets(aws: LocalAWS) -> None:
    aws.delivery_options(loss_probability=1.0)
    seen: list[dict[str, Any]] = []
    arn = aws.register_function("coordinator", lambda event, context: seen.append(event))
    rule_to(aws, arn)
    url, queue_arn = queue(aws, "lifecycle")
    aws.client("events").put_targets(Rule="lifecycle", Targets=[{"Id": "q", "Arn": queue_arn}])
    group_with_hook(aws)
    scale(aws, 1)
    aws.clock.advance(30)

    assert seen == [] and aws.invocations == []
    assert aws.client("sqs").receive_message(QueueUrl=url).get("Messages", []) == []
    assert {(lost.channel, lost.target) for lost in aws.lost_events} == {
        ("eventbridge", arn),
        ("eventbridge", queue_arn),
    }
    assert aws.lost_events[0].event["detail-type"] == "EC2 Instance-launch Lifecycle Action"
    assert aws.lifecycle_actions[0].ended_at is None  # the action waits for its heartbeat timeout


def lost_pattern(seed: int) -> list[bool]:
    aws = LocalAWS(clock=SimClock(), seed=seed).start()
    try:
        aws.client("ec2").create_launch_template(
            LaunchTemplateName="etcd-node", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
        )
        aws.delivery_options(loss_probability=0.5)
        rule_to(aws, aws.register_function("coordinator", lambda event, context: None))
        group_with_hook(aws)
        scale(aws, 8)
        aws.clock.advance(30)
        lost = {e.event["detail"]["EC2InstanceId"] for e in aws.lost_events}
        return [a.instance_id in lost for a in aws.lifecycle_actions]
    finally:
        aws.stop()


def test_loss_is_seeded_by_the_emulator_rng() -> None:
    first = lost_pattern(5)
    assert first == lost_pattern(5) and True in first and False in first


def test_sns_loss_is_configured_separately(aws: LocalAWS) -> None:
    aws.delivery_options(sns_loss_probability=1.0)
    seen: list[dict[str, Any]] = []
    arn = aws.register_function("coordinator", lambda event, context: seen.append(event))
    sns = aws.client("sns")
    topic = sns.create_topic(Name="lifecycle")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=arn)
    rule_to(aws, arn)  # EventBridge still delivers
    group_with_hook(aws, NotificationTargetARN=topic, RoleARN=ROLE)
    scale(aws, 1)
    aws.clock.advance(30)
    assert [i.source for i in aws.invocations] == ["eventbridge"]
    assert {lost.channel for lost in aws.lost_events} == {"sns"}


def test_without_loss_every_lifecycle_event_arrives(aws: LocalAWS) -> None:
    rule_to(aws, aws.register_function("coordinator", lambda event, context: None))
    group_with_hook(aws)
    scale(aws, 5)
    aws.clock.advance(30)
    assert len(aws.invocations) == 5 and aws.lost_events == []


# -- SQS event sources: several pollers, concurrent partial batches, late windows --------------
def sqs_world(aws: LocalAWS, *, batch_size: int, window: float, max_concurrency: int | None, n: int, hold: float = 3.0):
    batches: list[tuple[float, float, list[str]]] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        start = t(aws)
        aws.clock.sleep(hold)
        batches.append((start, t(aws), [r["body"] for r in event["Records"]]))

    aws.register_function("coordinator", handler)
    url, _ = queue(aws, "work")
    aws.map_queue(url, "coordinator", batch_size=batch_size, batching_window=window, max_concurrency=max_concurrency)
    for i in range(n):
        aws.client("sqs").send_message(QueueUrl=url, MessageBody=f"m{i}")
    aws.clock.advance(120)
    return batches


def overlapping(batches: list[tuple[float, float, list[str]]]) -> int:
    points = sorted([(s, 1) for s, _, _ in batches] + [(e, -1) for _, e, _ in batches], key=lambda p: (p[0], p[1]))
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


def test_sqs_pollers_deliver_a_burst_as_concurrent_partial_batches(aws: LocalAWS) -> None:
    aws.delivery_options(sqs_pollers=True)
    batches = sqs_world(aws, batch_size=10, window=5.0, max_concurrency=2, n=6)
    bodies = sorted(b for _, _, batch in batches for b in batch)
    assert bodies == sorted(f"m{i}" for i in range(6))  # each message once
    assert len(batches) >= 2 and all(len(batch) < 10 for _, _, batch in batches)
    assert overlapping(batches) == 2  # two batches ran at once, never more than MaximumConcurrency


def test_sqs_pollers_never_exceed_maximum_concurrency(aws: LocalAWS) -> None:
    aws.delivery_options(sqs_pollers=True)
    batches = sqs_world(aws, batch_size=1, window=0.0, max_concurrency=3, n=12)
    assert len(batches) == 12 and overlapping(batches) == 3


def test_a_batching_window_is_a_maximum_wait_batches_can_start_later(aws: LocalAWS) -> None:
    aws.delivery_options(sqs_pollers=True, batch_lateness=20.0)
    batches = sqs_world(aws, batch_size=10, window=2.0, max_concurrency=2, n=3)
    assert sorted(b for _, _, batch in batches for b in batch) == ["m0", "m1", "m2"]
    assert max(start for start, _, _ in batches) > 2.5 + 1.0  # later than the window's end


def test_without_sqs_pollers_one_poller_gathers_one_batch_per_window(aws: LocalAWS) -> None:
    aws.delivery_options(sqs_pollers=False)
    batches = sqs_world(aws, batch_size=10, window=5.0, max_concurrency=2, n=6)
    assert [(start, len(batch)) for start, _, batch in batches] == [(5.5, 6)]


# -- configuration limits ---------------------------------------------------------------------
def test_lambda_limits_refuse_what_lambdas_api_refuses() -> None:
    aws = world(lambda_limits=True)
    try:
        with pytest.raises(LambdaLimitError) as info:
            aws.register_function("too-long", lambda e, c: None, timeout=901)
        assert info.value.code == "ValidationException"
        assert info.value.message == (
            "1 validation error detected: Value '901' at 'timeout' failed to satisfy constraint: "
            "Member must have value less than or equal to 900"
        )
        with pytest.raises(LambdaLimitError, match="maximumEventAgeInSeconds"):
            aws.register_function("young", lambda e, c: None, max_event_age=30)
        aws.register_function("coordinator", lambda e, c: None, timeout=900)
        url, _ = queue(aws, "work")
        with pytest.raises(LambdaLimitError) as info:
            aws.map_queue(url, "coordinator", max_concurrency=1)
        assert info.value.code == "ValidationException" and "scalingConfig.maximumConcurrency" in info.value.message
        assert "greater than or equal to 2" in info.value.message
        with pytest.raises(LambdaLimitError, match="less than or equal to 1000"):
            aws.map_queue(url, "coordinator", max_concurrency=1001)
        with pytest.raises(LambdaLimitError) as info:
            aws.map_queue(url, "coordinator", batch_size=11, batching_window=0.0)
        assert (info.value.code, info.value.message) == (
            "InvalidParameterValueException",
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
        )
        with pytest.raises(LambdaLimitError, match="maximumBatchingWindowInSeconds"):
            aws.map_queue(url, "coordinator", batching_window=301)
        assert aws._delivery.mappings == []  # type: ignore[attr-defined]
        aws.map_queue(url, "coordinator", batch_size=100, batching_window=1.0, max_concurrency=2)
    finally:
        aws.stop()


def test_without_lambda_limits_any_configuration_is_accepted() -> None:
    aws = world(lambda_limits=False)
    try:
        aws.register_function("coordinator", lambda e, c: None, timeout=3600, max_event_age=30)
        url, _ = queue(aws, "work")
        aws.map_queue(url, "coordinator", batch_size=50, batching_window=0.0, max_concurrency=1)
    finally:
        aws.stop()


# -- lost responses: the write lands, the caller sees a timeout or a 5xx ------------------------
def launch_one(aws: LocalAWS) -> Any:
    group_with_hook(aws, HeartbeatTimeout=300)
    scale(aws, 1)
    return aws.lifecycle_actions[0]


def complete(aws: LocalAWS, action: Any) -> None:
    aws.client("autoscaling").complete_lifecycle_action(
        AutoScalingGroupName="etcd",
        LifecycleHookName="launch",
        LifecycleActionToken=action.token,
        LifecycleActionResult="CONTINUE",
    )


def test_complete_lifecycle_action_lands_although_the_caller_times_out(aws: LocalAWS) -> None:
    action = launch_one(aws)
    aws.faults.lose_response("CompleteLifecycleAction", code="timeout", after=15.0)
    before = t(aws)
    with pytest.raises(ReadTimeoutError):
        complete(aws, action)
    assert t(aws) - before == 15.0
    assert action.ended_by == "complete" and action.result == "CONTINUE"
    with pytest.raises(ClientError) as info:  # the retry meets the completed action
        complete(aws, action)
    assert info.value.response["Error"]["Message"] == f"No active Lifecycle Action found with token {action.token}"


def test_heartbeat_and_create_tags_land_although_the_caller_sees_a_5xx(aws: LocalAWS) -> None:
    action = launch_one(aws)
    asg, ec2 = aws.client("autoscaling"), aws.client("ec2")
    aws.faults.lose_response("RecordLifecycleActionHeartbeat", code="InternalFailure")
    aws.faults.lose_response("CreateTags", code="InternalError")
    with pytest.raises(ClientError) as info:
        asg.record_lifecycle_action_heartbeat(
            AutoScalingGroupName="etcd", LifecycleHookName="launch", LifecycleActionToken=action.token
        )
    assert (info.value.response["Error"]["Code"], info.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "InternalFailure",
        500,
    )
    assert action.heartbeats == 1
    with pytest.raises(ClientError) as info:
        ec2.create_tags(Resources=[action.instance_id], Tags=[{"Key": "etcd-member-phase", "Value": "adding"}])
    assert info.value.response["Error"]["Code"] == "InternalError"
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [action.instance_id]}])["Tags"]
    assert {"Key": "etcd-member-phase", "Value": "adding"} in [{"Key": x["Key"], "Value": x["Value"]} for x in tags]


def test_without_a_lost_response_rule_the_caller_sees_the_success(aws: LocalAWS) -> None:
    action = launch_one(aws)
    complete(aws, action)
    assert action.ended_by == "complete" and aws.calls[-1].error is None
