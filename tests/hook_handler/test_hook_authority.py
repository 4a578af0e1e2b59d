"""Only the coordinator's own lifecycle hooks are completed or heartbeated; an event naming another hook of a
served group (a configuration gate, a drain) is refused, says which setting to set, and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hook_handler.app import InvocationFailed
from hook_handler.events import Kind, parse_invocation
from infra.local.delivery import LambdaContext
from infra.local.stack import deploy

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCHING"
PENDING = 5.5  # s: a launch spends up to 5 s in Pending before its lifecycle action begins
WRITES = {"CompleteLifecycleAction", "RecordLifecycleActionHeartbeat", "ChangeResourceRecordSets", "CreateTags"}

pytestmark = pytest.mark.local_aws(propagation=30.0)


def _invoke(stack: Any, event: dict[str, Any]) -> Any:
    """One Lambda invocation by hand, the clock run until it ends."""
    clock = stack.aws.clock
    context = LambdaContext("fn", stack.function_arn, "req", 256, clock.now() + 300.0, clock)
    task = clock.spawn(stack.runtime.handle, event, context, name="invoke")
    clock.run()
    return task


def _gate(stack: Any) -> None:
    """A second launch hook on the served group: another team's configuration gate."""
    stack.client("autoscaling").put_lifecycle_hook(
        AutoScalingGroupName=stack.group,
        LifecycleHookName="config-gate",
        LifecycleTransition=LAUNCH,
        HeartbeatTimeout=300,
        DefaultResult="ABANDON",
    )


def _direct(instance_id: str, hook: str) -> dict[str, str]:
    return {
        "LifecycleTransition": LAUNCH,
        "EC2InstanceId": instance_id,
        "AutoScalingGroupName": "etcd",
        "LifecycleHookName": hook,
    }


def _waiting(aws: Any) -> str:
    (action,) = [a for a in aws.lifecycle_actions if a.ended_at is None]
    return action.instance_id


def test_a_direct_invoke_naming_another_hook_is_refused_before_any_call(aws):
    stack = deploy(aws, mode="none")
    _gate(stack)
    stack.scale(1)
    aws.clock.advance(PENDING)
    iid = _waiting(aws)
    before = len(aws.calls)
    with pytest.raises(InvocationFailed, match=r"hook 'config-gate'.*set launch_hook_name=config-gate"):
        _invoke(stack, _direct(iid, "config-gate")).value()
    assert aws.calls[before:] == []  # refused on the settings alone
    assert all(a.ended_by != "complete" for a in aws.lifecycle_actions)


def test_with_discovered_hooks_another_hook_is_refused_and_nothing_is_completed(aws):
    stack = deploy(aws, mode="none", settings={"launch_hook_name": "", "terminate_hook_name": ""})
    _gate(stack)
    stack.scale(1)
    aws.clock.advance(PENDING)
    iid = _waiting(aws)
    before = len(aws.calls)
    for hook in ("config-gate", "etcd-launch"):  # two launching hooks: neither is known to be ours
        with pytest.raises(InvocationFailed, match=r"2 launching hooks \(config-gate, etcd-launch\).*launch_hook_name"):
            _invoke(stack, _direct(iid, hook)).value()
    assert not {c.operation for c in aws.calls[before:]} & WRITES
    assert all(a.ended_by != "complete" for a in aws.lifecycle_actions)


def test_with_discovered_hooks_the_groups_only_launch_hook_is_served(aws):
    stack = deploy(aws, mode="none", settings={"launch_hook_name": "", "terminate_hook_name": ""})
    stack.scale(1)
    aws.clock.advance(PENDING)
    iid = _waiting(aws)
    with pytest.raises(InvocationFailed, match=r"the group's only launching hook is 'etcd-launch'"):
        _invoke(stack, _direct(iid, "someone-elses")).value()
    assert all(a.ended_by != "complete" for a in aws.lifecycle_actions)
    _invoke(stack, _direct(iid, "etcd-launch")).value()
    assert [(a.instance_id, a.result) for a in aws.lifecycle_actions if a.ended_by == "complete"] == [(iid, "CONTINUE")]


def test_an_sqs_message_naming_another_hook_is_refused(aws):
    stack = deploy(aws, mode="none")
    _gate(stack)
    stack.scale(1)
    aws.clock.advance(PENDING)
    iid = _waiting(aws)
    token = next(a.token for a in aws.lifecycle_actions if a.ended_at is None)
    body = {**_direct(iid, "config-gate"), "LifecycleActionToken": token, "AccountId": aws.account}
    record = {"messageId": "m-1", "eventSource": "aws:sqs", "body": json.dumps(body)}
    before = len(aws.calls)
    out = _invoke(stack, {"Records": [record]}).value()
    assert out["batchItemFailures"] == [{"itemIdentifier": "m-1"}]
    assert aws.calls[before:] == []


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"Destination": "WarmPool"}, "Destination"),  # would make a launch a warm-pool move completed at once
        ({"Origin": "WarmPool"}, "Origin"),
        ({"Time": "2000-01-01T00:00:00Z"}, "Time"),  # would make the action look old
        ({"NotificationMetadata": "x"}, "NotificationMetadata"),
    ],
)
def test_a_direct_invoke_takes_only_the_documented_fields(extra, field):
    raw = {**_direct("i-0123456789abcdef0", "etcd-launch"), **extra}
    (parsed,) = parse_invocation(raw).records
    assert parsed.error is not None and parsed.error.field == field
    assert "direct invocation" in str(parsed.error)


def test_the_documented_direct_forms_still_parse():
    forms = [
        _direct("i-0123456789abcdef0", "etcd-launch"),
        {
            **_direct("i-0123456789abcdef0", "etcd-launch"),
            "LifecycleActionToken": "a" * 8 + "-bbbb-cccc-dddd-" + "e" * 12,
        },
        {"action": "reconcile"},
        {"action": "reconcile", "AutoScalingGroupName": "etcd"},
        {"Event": "autoscaling:TEST_NOTIFICATION", "AutoScalingGroupName": "etcd", "AccountId": "123456789012"},
    ]
    kinds = [parse_invocation(f).events[0].kind for f in forms]
    assert kinds == [Kind.JOIN, Kind.JOIN, Kind.RECONCILE, Kind.RECONCILE, Kind.IGNORE]
