"""The hostile corpus through the whole function: each case is refused or ignored, writes nothing,
completes nothing it should not, and never sinks its neighbours in a batch.

The corpus's placeholders are mapped onto an emulated stack: ``etcd`` (served, three members in
service and one launch waiting — ``PENDING_INSTANCE``/``PENDING_TOKEN``) and ``not-served-asg``
(one instance: ``FOREIGN_INSTANCE``). Each case runs through ``Runtime.handle`` as Lambda would
call it; batches also run as real SQS messages through the emulated event source mapping.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus as C

from hook_handler.app import InvocationFailed
from hook_handler.telemetry import logger as coordinator_logger
from infra.local import LocalAWS
from infra.local.delivery import LambdaContext
from infra.local.stack import deploy

CASES = C.load_corpus()
REFUSED = ("error", "reject-later")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class World:
    """One emulated stack for the whole corpus; a fresh pending launch whenever a case used it up."""

    def __init__(self, aws: LocalAWS) -> None:
        self.aws = aws
        self.stack = deploy(aws, mode="none", settings={"poll_interval_seconds": "2"})
        self.runtime = self.stack.runtime
        asg = aws.client("autoscaling")
        asg.create_auto_scaling_group(
            AutoScalingGroupName=C.UNSERVED_GROUP,
            LaunchTemplate={"LaunchTemplateName": "etcd-lt", "Version": "$Latest"},
            MinSize=0,
            MaxSize=2,
            DesiredCapacity=1,
            AvailabilityZones=[f"{aws.region}a"],
        )
        aws.clock.advance(10.0)  # Pending (1-5 s), and the describe's lag
        with aws.observer():
            groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[C.UNSERVED_GROUP])
        self.foreign = groups["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
        self.stack.scale(3)
        aws.clock.advance(10.0)  # three launches in Pending:Wait, seen by the describes
        self.handle({"action": "reconcile"})  # bootstrap: three members in service
        assert len(self.stack.in_service()) == 3
        self.pending: str = ""
        self.token: str = ""

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name="etcd-asg-coordinator",
            invoked_function_arn=self.stack.function_arn,
            aws_request_id="hostile",
            memory_limit_in_mb=128,
            deadline=self.aws.clock.now() + 300.0,
            clock=self.aws.clock,
        )

    def handle(self, raw: object) -> object:
        task = self.aws.clock.spawn(self.runtime.handle, raw, self.context())
        self.aws.clock.run()
        return task.value()

    def ensure_pending(self) -> None:
        """A launch waiting in Pending:Wait, with its real token."""
        if self.pending and self.stack.instances().get(self.pending) == "Pending:Wait":
            return
        self.stack.scale(len(self.stack.instances()) + 1)
        self.aws.clock.advance(10.0)  # Pending (1-5 s), then Pending:Wait with its action; describes catch up
        waiting = [a for a in self.aws.lifecycle_actions if a.active and a.hook == "etcd-launch"]
        self.pending, self.token = waiting[-1].instance_id, waiting[-1].token

    def mapping(self) -> dict[str, str]:
        return {
            C.PENDING_INSTANCE: self.pending,
            C.PENDING_TOKEN: self.token,
            C.FOREIGN_INSTANCE: self.foreign,
            C.OWN_ACCOUNT: self.aws.account,
            C.OWN_REGION: self.aws.region,
        }


@pytest.fixture(scope="module")
def world():
    lines = Lines()
    inner = logging.getLogger(coordinator_logger._logger.name)
    saved = coordinator_logger.log_level
    coordinator_logger.setLevel("INFO")
    quiet = [(h, h.level) for h in inner.handlers]
    for handler, _ in quiet:
        handler.setLevel(logging.CRITICAL)
    inner.addHandler(lines)
    with LocalAWS(propagation=2.0) as aws:
        w = World(aws)
        w.lines = lines
        yield w
    inner.removeHandler(lines)
    for handler, level in quiet:
        handler.setLevel(level)
    coordinator_logger.setLevel(saved)


def _expectations(case: C.CorpusCase) -> list[str]:
    if case.expectation == "batch":
        return [r.expectation for r in case.records]
    return [case.expectation]


def _terminates(record: object, instance: str) -> bool:
    body = record.get("body") if isinstance(record, dict) else None
    return isinstance(body, str) and "EC2_INSTANCE_TERMINATING" in body and instance in body


def _only_bad_sqs(raw: object, response: object) -> bool:
    """An SQS batch of one bad record answered with a partial response naming it (also a failure)."""
    ids = [i for i in _item_ids(raw) if i]
    return (
        isinstance(response, dict)
        and {f["itemIdentifier"] for f in response.get("batchItemFailures", [])} == set(ids)
        and bool(ids)
    )


def _item_ids(raw: object) -> list[str | None]:
    records = raw.get("Records") if isinstance(raw, dict) else None
    if not isinstance(records, list):
        return []
    return [r.get("messageId") if isinstance(r, dict) else None for r in records]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_case_is_refused_or_ignored_and_changes_nothing_it_should_not(world, case):
    world.ensure_pending()
    raw = case.substituted(world.mapping())
    aws = world.aws
    changes_before = len(aws.route53_changes)
    record_before = world.stack.record()
    actions_before = {a.token: a.ended_by for a in aws.lifecycle_actions}
    lines_before = len(world.lines.records)
    expectations = _expectations(case)

    try:
        response = world.handle(raw)
        failed = None
    except (InvocationFailed, BatchProcessingError) as exc:
        # BatchProcessingError: every record of an SQS batch failed; Lambda returns them all to the queue.
        response, failed = None, exc

    new_lines = world.lines.records[lines_before:]
    errors = [r for r in new_lines if r.levelno >= logging.ERROR]
    ended = [a for a in aws.lifecycle_actions if a.ended_at is not None and actions_before.get(a.token) is None]

    if case.expectation == "batch":
        ids = _item_ids(raw)
        bad = {ids[i] for i, e in enumerate(expectations) if e in REFUSED and ids[i]}  # no id: unreportable
        if failed is not None:
            assert all(e in REFUSED for e in expectations), f"a batch with good records failed whole: {failed}"
            return
        reported = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        # A record that parses can still contradict the APIs (a termination for an instance that is
        # launching): the coordinator refuses it too. Nothing else may be reported.
        contradicting = {ids[i] for i, r in enumerate(raw["Records"]) if _terminates(r, world.pending)}
        assert bad <= reported <= bad | contradicting, (
            f"partial batch response {sorted(reported)}, expected exactly {sorted(bad)} (+ {sorted(contradicting)})"
        )
        assert len(errors) >= len(bad)
    elif case.refusal == "token-of-other-action":
        # The instance really is launching, so the pass may list it (membership comes from the APIs),
        # but the forged token completes nothing: the real action stays open for its own event.
        assert not [a for a in ended if a.ended_by == "complete"], f"{case.name}: completed {ended}"
        assert world.stack.targets() <= set(world.stack.private_dns(world.stack.instances()).values())
        refusals = [r for r in errors if "token" in json.dumps(getattr(r, "why", ""))]
        assert refusals, f"{case.name}: the stale or forged token was not refused in the log"
        return
    elif case.expectation in REFUSED:
        assert failed is not None or _only_bad_sqs(raw, response), (
            f"{case.name}: an unusable or refused event must fail the invocation (retry/DLQ)"
        )
        assert errors, f"{case.name}: no error was logged"
        text = " ".join(r.getMessage() + json.dumps(getattr(r, "error", "") or getattr(r, "why", "")) for r in errors)
        if case.expected_field:
            assert case.expected_field.split(".")[-1] in text, f"{case.name}: the log does not name the field: {text}"
    else:  # ignore
        assert failed is None, f"{case.name}: ignored by design, yet the invocation failed: {failed}"
        assert not errors, f"{case.name}: ignored by design, yet an error was logged"

    if "ok" not in expectations:
        assert len(aws.route53_changes) == changes_before, f"{case.name}: wrote to Route 53"
        assert world.stack.record() == record_before
        assert not [a for a in ended if a.ended_by == "complete"], f"{case.name}: completed {ended}"
    else:
        # A legitimate neighbour may settle the real pending launch, and only that one.
        assert {a.instance_id for a in ended} <= {world.pending}
        assert all(a.result == "CONTINUE" for a in ended)


@pytest.mark.parametrize(
    "name", [c.name for c in CASES if c.expectation == "batch" and any(r.expectation in REFUSED for r in c.records)]
)
def test_hostile_batch_through_the_event_source_mapping_keeps_only_the_bad_messages(world, name):
    """The same batches as real SQS messages: good records deleted, bad ones left for redelivery."""
    case = next(c for c in CASES if c.name == name)
    aws = world.aws
    world.ensure_pending()
    raw = case.substituted(world.mapping())
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName=f"hostile-{name}"[:80], Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
    refusals = [e in REFUSED for e in _expectations(case)]
    sendable = [
        (r["body"], bad or _terminates(r, world.pending))
        for r, bad in zip(raw["Records"], refusals, strict=True)
        if isinstance(r, dict) and isinstance(r.get("body"), str) and r["body"]
    ]
    for body, _ in sendable:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    function = f"hostile-{len(aws.invocations)}"
    aws.register_function(function, world.runtime.handle, timeout=300.0)
    aws.map_queue(queue, function, batch_size=min(10, len(sendable)))
    aws.clock.advance(120.0)

    runs = [i for i in aws.invocations if i.function == function]
    assert runs and all(i.outcome in ("ok", "partial", "error") for i in runs)
    assert sum(len(i.event["Records"]) for i in runs) == len(sendable)
    left = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert int(left["Attributes"]["ApproximateNumberOfMessagesNotVisible"]) == sum(bad for _, bad in sendable)
