"""Faults at every call the coordinator makes, and the outcome README "Failure behaviour" promises.

Each case: a running two-member cluster (EventBridge → function, reserved concurrency 1, Route 53
taking 15 s to propagate so heartbeats are sent), then ``fail_next(operation, code)`` and a scale-out
to four. Retryable errors (Throttling, PriorRequestNotComplete, ResourceContention,
RequestLimitExceeded, 500 InternalError) are retried inside the invocation: it succeeds on its first
attempt and the launches complete. Non-retryable errors (AccessDenied, InvalidInput,
NoSuchHostedZone, ValidationError, ...) fail the invocation and hand the event to Lambda's retry:
nothing is lost, the launches still complete, and a failure before the write leaves the record as
it was.
"""

from __future__ import annotations

import pytest

from infra.local import LocalAWS
from infra.local.stack import deploy

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"

# operation -> (retryable codes, non-retryable codes) it can meet
CALLS = {
    "DescribeAutoScalingGroups": (
        ["Throttling", "ResourceContention", "InternalError"],
        ["AccessDenied", "ValidationError"],
    ),
    "DescribeInstances": (
        ["RequestLimitExceeded", "InternalError"],
        ["UnauthorizedOperation", "InvalidParameterValue"],
    ),
    "DescribeLifecycleHooks": (["Throttling", "ResourceContention", "InternalError"], ["AccessDenied"]),
    "ListResourceRecordSets": (
        ["Throttling", "PriorRequestNotComplete", "InternalError"],
        ["AccessDenied", "NoSuchHostedZone", "InvalidInput"],
    ),
    "ChangeResourceRecordSets": (
        ["Throttling", "PriorRequestNotComplete", "InternalError"],
        ["AccessDenied", "NoSuchHostedZone", "InvalidInput"],
    ),
    "GetChange": (["Throttling", "InternalError"], ["AccessDenied", "NoSuchChange"]),
    "CreateTags": (["RequestLimitExceeded", "InternalError"], ["UnauthorizedOperation"]),
    "CompleteLifecycleAction": (["Throttling", "ResourceContention", "InternalError"], ["AccessDenied"]),
    "RecordLifecycleActionHeartbeat": (["Throttling", "ResourceContention", "InternalError"], ["AccessDenied"]),
}
BEFORE_WRITE = {"DescribeAutoScalingGroups", "DescribeInstances", "ListResourceRecordSets", "ChangeResourceRecordSets"}
STATUS = {"InternalError": 500, "AccessDenied": 403, "UnauthorizedOperation": 403, "NoSuchHostedZone": 404}

RETRYABLE = [(op, code) for op, (codes, _) in CALLS.items() for code in codes]
FINAL = [(op, code) for op, (_, codes) in CALLS.items() for code in codes]


def _cluster(aws: LocalAWS):
    """Two members in service; hook names discovered (so DescribeLifecycleHooks is on the path)."""
    stack = deploy(
        aws,
        mode="eventbridge",
        settings={
            "launch_hook_name": "",
            "terminate_hook_name": "",
            "heartbeat_interval_seconds": "5",
            "poll_interval_seconds": "2",
        },
    )
    stack.scale(2)
    aws.clock.run()
    assert len(stack.in_service()) == 2
    stack.runtime.coordinator.asg._hooks.clear()  # a new cold start: hooks looked up again
    return stack


def _scale_out_under(aws: LocalAWS, stack, operation: str, code: str, count: int):
    before_record = stack.record()
    changes_before = len(aws.route53_changes)
    first_invocation = len(aws.invocations)
    first_call = len(aws.calls)
    aws.faults.fail_next(operation, count, code=code, status=STATUS.get(code))
    stack.scale(4)
    aws.clock.run()
    return before_record, changes_before, aws.invocations[first_invocation:], aws.calls[first_call:]


def _settled(aws: LocalAWS, stack) -> None:
    launches = [a for a in aws.lifecycle_actions if a.transition == LAUNCHING]
    assert all(a.ended_by == "complete" and a.result == "CONTINUE" for a in launches), launches
    members = stack.private_dns(stack.instances())
    assert stack.targets() == set(members.values())
    assert len(members) == 4
    assert not aws.dead_letters


@pytest.mark.parametrize(("operation", "code"), RETRYABLE, ids=[f"{o}-{c}" for o, c in RETRYABLE])
def test_retryable_error_is_retried_inside_the_invocation_and_the_launches_complete(operation, code):
    with LocalAWS(propagation=15.0) as aws:
        stack = _cluster(aws)
        _, _, invocations, calls = _scale_out_under(aws, stack, operation, code, count=2)

        injected = [c for c in calls if c.injected]
        assert [c.operation for c in injected] == [operation, operation], "the fault was not met"
        after = calls.index(injected[-1])
        assert any(c.operation == operation and c.status == 200 for c in calls[after:]), "not retried"
        assert all(i.outcome == "ok" and i.attempt == 0 for i in invocations), [
            (i.outcome, i.error) for i in invocations
        ]
        _settled(aws, stack)


@pytest.mark.parametrize(("operation", "code"), FINAL, ids=[f"{o}-{c}" for o, c in FINAL])
def test_final_error_fails_the_invocation_and_a_retry_finishes_the_job(operation, code):
    with LocalAWS(propagation=15.0) as aws:
        stack = _cluster(aws)
        before_record, _, invocations, calls = _scale_out_under(aws, stack, operation, code, count=1)

        injected = [c for c in calls if c.injected]
        assert [c.operation for c in injected] == [operation], "the fault was not met"
        assert sum(1 for c in calls if c.injected and c.operation == operation) == 1, "a final error was retried"
        failed = [i for i in invocations if i.outcome == "error"]
        assert failed, f"{operation} {code}: no invocation failed: {[(i.outcome, i.response) for i in invocations]}"
        assert code in failed[0].error or operation in failed[0].error or "not settled" in failed[0].error
        if operation in BEFORE_WRITE:
            # The failing pass stops at the error: no write between it and the next pass's first read.
            rest = calls[calls.index(injected[0]) + 1 :]
            upto = next((n for n, c in enumerate(rest) if c.operation == "DescribeAutoScalingGroups"), len(rest))
            assert not [c for c in rest[:upto] if c.operation == "ChangeResourceRecordSets" and c.status == 200]
            assert before_record is not None
        # Not lost: Lambda's retry (or the neighbour's invocation) settles every launch.
        _settled(aws, stack)
