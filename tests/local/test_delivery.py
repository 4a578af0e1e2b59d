"""The emulator's Lambda runner: EventBridge, SNS and SQS sources, retries, timeouts, batches."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from local_helpers import group_with_hook, queue, rule_to, t

from infra.local.aws import LocalAWS
from infra.local.clock import EPOCH, SimClock

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCHING"
ROLE = "arn:aws:iam::123456789012:role/asg-notify"


pytestmark = pytest.mark.local_aws(propagation=(20.0, 60.0))  # LocalAWS's own default


@pytest.fixture
def aws(local_aws: LocalAWS, launch_template: str) -> LocalAWS:
    """The plugin's ``local_aws`` with its ``etcd-node`` launch template."""
    return local_aws


def waited(aws: LocalAWS, n: int = 0) -> float:
    """When the ``n``-th lifecycle action began (its notification was sent): the launch spends 1-5 s in
    ``Pending`` first, as on AWS, so delivery times are read from here."""
    return aws.lifecycle_actions[n].started_at - EPOCH


# -- EventBridge ------------------------------------------------------------------------
def test_eventbridge_rule_invokes_the_function_with_the_event_and_a_lambda_context(aws: LocalAWS) -> None:
    seen: list[tuple[float, dict[str, Any], Any, int]] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        seen.append((t(aws), event, context, context.get_remaining_time_in_millis()))

    arn = aws.register_function("coordinator", handler, timeout=60)
    rule_to(aws, arn)
    group_with_hook(aws)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    aws.clock.advance(5)

    (when, event, context, remaining) = seen[0]
    assert when - waited(aws) == 0.5  # default delivery latency
    assert event["detail-type"] == "EC2 Instance-launch Lifecycle Action"
    assert event["account"] == "123456789012"
    assert event["time"] == f"2026-01-01T00:00:{int(waited(aws)):02d}Z"
    assert event["detail"]["LifecycleTransition"] == LAUNCH and "ingestion-time" not in event
    assert event["detail"]["LifecycleActionToken"] == aws.lifecycle_actions[0].token
    assert (context.function_name, context.invoked_function_arn) == ("coordinator", arn)
    assert remaining == 60_000
    assert [(i.source, i.outcome) for i in aws.invocations] == [("eventbridge", "ok")]


def test_failing_async_invocation_is_retried_twice_then_dead_lettered(aws: LocalAWS) -> None:
    attempts: list[float] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        attempts.append(t(aws))
        raise RuntimeError("Route 53 unreachable")

    rule_to(aws, aws.register_function("coordinator", handler))
    group_with_hook(aws, HeartbeatTimeout=3600)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    aws.clock.run()  # pending deliveries and retries are tasks: run() waits for all of them

    assert [a - waited(aws) for a in attempts] == [0.5, 60.5, 180.5] and t(aws) - waited(aws) == 180.5
    (dead,) = aws.dead_letters
    assert (dead.attempts, dead.source, dead.error) == (3, "eventbridge", "RuntimeError: Route 53 unreachable")
    assert dead.event["detail-type"] == "EC2 Instance-launch Lifecycle Action"
    assert [i.outcome for i in aws.invocations] == ["error"] * 3


def test_a_handler_running_past_its_timeout_is_killed_and_retried(aws: LocalAWS) -> None:
    finished: list[float] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        aws.clock.sleep(30)
        finished.append(t(aws))

    rule_to(aws, aws.register_function("slow", handler, timeout=10, max_retries=1))
    group_with_hook(aws)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    aws.clock.advance(300)

    assert finished == []
    base = EPOCH + waited(aws)
    assert [(i.time - base, i.ended_at - base, i.outcome) for i in aws.invocations] == [
        (0.5, 10.5, "timeout"),
        (70.5, 80.5, "timeout"),
    ]
    assert aws.invocations[0].error == "Task timed out after 10.00 seconds"
    assert len(aws.dead_letters) == 1


def test_reserved_concurrency_runs_async_events_one_at_a_time_and_throttled_ones_later(aws: LocalAWS) -> None:
    """Three launch events, reserved concurrency 1: never two at once; every event runs; a throttled one
    goes back to Lambda's queue (``aws.throttles``) and runs on a later retry, not dropped."""
    spans: list[tuple[float, float]] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        start = t(aws)
        aws.clock.sleep(5)
        spans.append((start, t(aws)))

    rule_to(aws, aws.register_function("coordinator", handler, reserved_concurrency=1))
    group_with_hook(aws)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=3)
    aws.clock.advance(600)

    assert len(spans) == 3 and all(end - start == 5 for start, end in spans)
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans))  # one at a time
    assert {th.event["detail"]["LifecycleActionToken"] for th in aws.throttles} <= {
        a.token for a in aws.lifecycle_actions
    }
    assert len(aws.throttles) >= 1 and len(aws.invocations) == 3


def test_duplicate_and_late_delivery_options_are_seeded(aws: LocalAWS) -> None:
    times: list[float] = []
    rule_to(aws, aws.register_function("coordinator", lambda event, context: times.append(t(aws))))
    aws.delivery_options(duplicate_probability=1.0, delay=(10.0, 20.0))
    group_with_hook(aws)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    aws.clock.advance(60)

    assert len(times) == 2
    assert all(10.5 <= x - waited(aws) <= 20.5 for x in times)
    tokens = {i.event["detail"]["LifecycleActionToken"] for i in aws.invocations}
    assert len(tokens) == 1  # the same event, twice


# -- SNS --------------------------------------------------------------------------------
def test_sns_lambda_subscription_receives_the_hook_message_as_a_string(aws: LocalAWS) -> None:
    seen: list[dict[str, Any]] = []
    arn = aws.register_function("coordinator", lambda event, context: seen.append(event))
    sns = aws.client("sns")
    topic = sns.create_topic(Name="lifecycle")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=arn)
    group_with_hook(aws, NotificationTargetARN=topic, RoleARN=ROLE)
    aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=1)
    aws.clock.advance(5)

    messages = [json.loads(e["Records"][0]["Sns"]["Message"]) for e in seen]
    assert messages[0]["Event"] == "autoscaling:TEST_NOTIFICATION"
    assert messages[1]["LifecycleActionToken"] == aws.lifecycle_actions[0].token
    record = seen[1]["Records"][0]
    assert record["EventSource"] == "aws:sns" and record["Sns"]["TopicArn"] == topic
    assert isinstance(record["Sns"]["Message"], str)


# -- SQS event source mappings ----------------------------------------------------------
def test_sqs_mapping_delivers_batches_and_deletes_what_succeeded(aws: LocalAWS) -> None:
    batches: list[list[str]] = []
    aws.register_function("coordinator", lambda event, context: batches.append([r["body"] for r in event["Records"]]))
    url, arn = queue(aws, "work")
    aws.map_queue(url, "coordinator", batch_size=10)
    sqs = aws.client("sqs")
    for n in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
    aws.clock.advance(10)

    assert sorted(b for batch in batches for b in batch) == ["m0", "m1", "m2"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    record = aws.invocations[0].event["Records"][0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn


def test_partial_batch_failure_redelivers_only_the_failed_item_after_the_visibility_timeout(aws: LocalAWS) -> None:
    deliveries: list[tuple[float, str, str]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for r in event["Records"]:
            deliveries.append((t(aws), r["body"], r["attributes"]["ApproximateReceiveCount"]))
            if r["body"] == "bad" and r["attributes"]["ApproximateReceiveCount"] == "1":
                failures.append({"itemIdentifier": r["messageId"]})
        return {"batchItemFailures": failures}

    aws.register_function("coordinator", handler)
    url, _ = queue(aws, "work", VisibilityTimeout="45")
    aws.map_queue(url, "coordinator", batch_size=10)
    sqs = aws.client("sqs")
    sqs.send_message(QueueUrl=url, MessageBody="good")
    sqs.send_message(QueueUrl=url, MessageBody="bad")
    aws.clock.advance(120)

    times = [(round(when, 2), body, count) for when, body, count in sorted(deliveries)]
    assert times == [(0.5, "bad", "1"), (0.5, "good", "1"), (45.5, "bad", "2")]
    assert [i.outcome for i in aws.invocations] == ["partial", "ok"]


def test_failing_batches_go_to_the_dead_letter_queue_after_max_receive_count(aws: LocalAWS) -> None:
    def handler(event: dict[str, Any], context: Any) -> None:
        raise RuntimeError("always fails")

    aws.register_function("coordinator", handler)
    dlq_url, dlq_arn = queue(aws, "work-dlq")
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url, _ = queue(aws, "work", VisibilityTimeout="30", RedrivePolicy=redrive)
    aws.map_queue(url, "coordinator")
    aws.client("sqs").send_message(QueueUrl=url, MessageBody="poison")
    aws.clock.advance(300)

    assert [round(i.time - EPOCH, 2) for i in aws.invocations] == [0.5, 30.5]
    dead = aws.client("sqs").receive_message(QueueUrl=dlq_url)["Messages"]
    assert [m["Body"] for m in dead] == ["poison"]


def test_batching_window_holds_each_batch_until_its_window_ends(aws: LocalAWS) -> None:
    """AWS's SQS source runs several pollers: messages sent 1 s apart may open batches on different
    pollers, each invoked when its 5 s window ends (one poller alone gathers them into one batch:
    tests/local/test_delivery_realism.py); every message is delivered once."""
    batches: list[tuple[float, list[str]]] = []
    aws.register_function(
        "coordinator", lambda event, context: batches.append((t(aws), [r["body"] for r in event["Records"]]))
    )
    url, _ = queue(aws, "work")
    aws.map_queue(url, "coordinator", batch_size=10, batching_window=5.0)
    sqs = aws.client("sqs")
    for n in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"launch-{n}")
        aws.clock.advance(1)
    aws.clock.advance(30)

    assert sorted(b for _, batch in batches for b in batch) == ["launch-0", "launch-1", "launch-2"]
    first_sent = {f"launch-{n}": float(n) for n in range(3)}
    for started, batch in batches:
        opened = min(first_sent[b] for b in batch)
        assert round(started - opened, 2) == 5.5  # the window, then the delivery latency


def test_mapping_max_concurrency_limits_parallel_batches(aws: LocalAWS) -> None:
    running: list[int] = []
    state = {"now": 0}

    def handler(event: dict[str, Any], context: Any) -> None:
        state["now"] += 1
        running.append(state["now"])
        aws.clock.sleep(5)
        state["now"] -= 1

    aws.register_function("coordinator", handler)
    url, _ = queue(aws, "work")
    aws.map_queue(url, "coordinator", batch_size=1, max_concurrency=2)
    for n in range(5):
        aws.client("sqs").send_message(QueueUrl=url, MessageBody=str(n))
    aws.clock.advance(60)

    assert len(running) == 5 and max(running) == 2


def test_hook_queue_to_mapped_function_end_to_end(aws: LocalAWS) -> None:
    """Hook → SQS → Lambda: the handler completes the action; the instance goes InService."""
    asg = aws.client("autoscaling")

    def handler(event: dict[str, Any], context: Any) -> None:
        for record in event["Records"]:
            body = json.loads(record["body"])
            if body.get("Event") == "autoscaling:TEST_NOTIFICATION":
                continue
            asg.complete_lifecycle_action(
                AutoScalingGroupName=body["AutoScalingGroupName"],
                LifecycleHookName=body["LifecycleHookName"],
                LifecycleActionToken=body["LifecycleActionToken"],
                LifecycleActionResult="CONTINUE",
            )

    aws.register_function("coordinator", handler)
    url, arn = queue(aws, "hook-target")
    aws.map_queue(url, "coordinator", batching_window=2.0)
    group_with_hook(aws, NotificationTargetARN=arn, RoleARN=ROLE)
    asg.set_desired_capacity(AutoScalingGroupName="etcd", DesiredCapacity=2)
    aws.clock.advance(10)

    states = asg.describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"]
    assert [i["LifecycleState"] for i in states] == ["InService", "InService"]
    assert all(a.ended_by == "complete" for a in aws.lifecycle_actions)


def test_long_poll_waits_in_simulated_time_inside_a_task(aws: LocalAWS) -> None:
    url, _ = queue(aws, "work")
    sqs = aws.client("sqs")
    got: list[tuple[float, list[str]]] = []

    def consumer() -> None:
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20).get("Messages", [])
        got.append((t(aws), [m["Body"] for m in messages]))

    aws.clock.spawn(consumer)
    aws.clock.call_at(EPOCH + 7, lambda: sqs.send_message(QueueUrl=url, MessageBody="late"))
    aws.clock.run()

    assert got == [(7.0, ["late"])]


def test_a_settled_sqs_batch_leaves_nothing_scheduled_so_run_ends_with_the_work():
    from infra.local.stack import deploy

    with LocalAWS(clock=SimClock(), propagation=5.0) as aws:
        stack = deploy(aws, mode="sqs", handler=lambda event, context: {"batchItemFailures": []})
        start = aws.clock.now()
        stack.scale(2)
        aws.clock.run(until=start + 120)
        # before: a poll stayed scheduled at receive + VisibilityTimeout (1800 s), past every hook timeout
        assert aws.clock.live_tasks() == []
        assert [i.outcome for i in aws.invocations] == ["ok"]
