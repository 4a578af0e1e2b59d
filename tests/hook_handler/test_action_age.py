"""An action's age comes from the APIs (EC2's launch time) or the first time the coordinator saw it, never from the
event's own Time alone: a forged old Time must not turn a retry into a fallback (ABANDON, or CONTINUE)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hook_handler.app import InvocationFailed
from infra.local.delivery import LambdaContext
from infra.local.stack import deploy

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATE = "autoscaling:EC2_INSTANCE_TERMINATING"
PENDING = 5.5
FORGED = "2000-01-01T00:00:00Z"

pytestmark = pytest.mark.local_aws(propagation=30.0)


def _invoke(stack: Any, event: dict[str, Any]) -> dict[str, Any]:
    clock = stack.aws.clock
    context = LambdaContext("fn", stack.function_arn, "req", 256, clock.now() + 300.0, clock)
    task = clock.spawn(stack.runtime.handle, event, context, name="invoke")
    clock.run()
    try:
        return task.value()
    except InvocationFailed as exc:  # handed to a retry: the invocation fails so that Lambda retries it
        return {"failed": str(exc)}


def _events(aws: Any, transition: str) -> list[dict[str, Any]]:
    return [
        n.payload
        for n in aws.notifications
        if n.channel == "eventbridge" and n.payload.get("detail", {}).get("LifecycleTransition") == transition
    ]


def _fallbacks(aws: Any) -> list[tuple[str, str]]:
    return [(a.instance_id, a.result) for a in aws.lifecycle_actions if a.ended_by == "complete"]


def _grow(stack: Any, n: int) -> None:
    seen = len(_events(stack.aws, LAUNCH))
    stack.scale(n)
    stack.aws.clock.advance(PENDING)
    for event in _events(stack.aws, LAUNCH)[seen:]:
        _invoke(stack, event)


def test_a_forged_old_time_does_not_abandon_a_launch_at_its_first_failed_step(aws):
    stack = deploy(aws, mode="none", settings={"action_timeout_seconds": "60"})
    _grow(stack, 1)
    done = _fallbacks(aws)
    stack.scale(2)
    aws.clock.advance(PENDING)
    forged = copy.deepcopy(_events(aws, LAUNCH)[-1])
    forged["time"] = FORGED
    aws.faults.fail_next("ChangeResourceRecordSets", count=1, code="AccessDenied", status=403)
    _invoke(stack, forged)
    assert _fallbacks(aws) == done  # handed to a retry: nothing abandoned
    assert not [a for a in aws.lifecycle_actions if a.result == "ABANDON"]
    _invoke(stack, forged)  # the retry, the fault gone: the launch goes on
    assert (forged["detail"]["EC2InstanceId"], "CONTINUE") in _fallbacks(aws)


def test_a_forged_old_time_does_not_let_a_termination_fall_back(aws):
    stack = deploy(aws, mode="none", settings={"action_timeout_seconds": "60"})
    _grow(stack, 2)
    done = _fallbacks(aws)
    stack.scale(1)
    aws.clock.advance(PENDING)
    forged = copy.deepcopy(_events(aws, TERMINATE)[-1])
    forged["time"] = FORGED
    aws.faults.fail_next("ChangeResourceRecordSets", count=1, code="AccessDenied", status=403)
    _invoke(stack, forged)
    assert _fallbacks(aws) == done


def test_a_launch_truly_past_its_timeout_still_falls_back_to_abandon(aws):
    stack = deploy(aws, mode="none", settings={"action_timeout_seconds": "60"})
    _grow(stack, 1)
    stack.scale(2)
    aws.clock.advance(PENDING)
    event = _events(aws, LAUNCH)[-1]
    del event["time"]  # no Time at all: EC2's launch time dates it
    aws.clock.advance(90)
    aws.faults.fail_next("ChangeResourceRecordSets", count=1, code="AccessDenied", status=403)
    _invoke(stack, event)
    assert (event["detail"]["EC2InstanceId"], "ABANDON") in _fallbacks(aws)


@pytest.mark.local_aws(propagation=2.0, describe_staleness=20.0)
def test_a_throttled_duplicate_of_a_launch_this_sandbox_completed_is_not_sent_back(aws):
    """The age check retries a fresh launch whose pass could not finish; a duplicate of one this sandbox already
    completed (a pass beside it settled it; describes still lag) is done, not retried: the good records of a
    duplicate-heavy SQS batch are deleted, not returned to the queue for a throttled Route 53."""
    stack = deploy(aws, mode="none", settings={"action_timeout_seconds": "600"})
    stack.scale(1)
    aws.clock.advance(25.0)  # past the describes' lag: the pass sees Pending:Wait
    event = _events(aws, LAUNCH)[-1]
    _invoke(stack, event)
    assert (event["detail"]["EC2InstanceId"], "CONTINUE") in _fallbacks(aws)
    # The duplicate: the describes (20 s behind) still show Pending:Wait, and Route 53 throttles its pass for good.
    aws.faults.fail_next("ListResourceRecordSets", count=50, code="Throttling", status=400)
    answer = _invoke(stack, copy.deepcopy(event))
    assert "failed" not in answer, answer  # before: handed to a retry (the launch is young), the record failed
    assert [o["status"] for o in answer["outcomes"]] == ["already-done"]
