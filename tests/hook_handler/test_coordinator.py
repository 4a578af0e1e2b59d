"""The coordinator end to end on the emulated AWS (simulated time): what it promises in issue 3."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hook_handler.app import InvocationFailed, Runtime
from hook_handler.settings import load_settings
from infra.local import LocalAWS
from infra.local.delivery import LambdaContext
from infra.local.stack import Stack, deploy

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATE = "autoscaling:EC2_INSTANCE_TERMINATING"
PENDING = 5.5  # s: a launch spends up to 5 s in Pending before its lifecycle action and event begin


pytestmark = pytest.mark.local_aws(propagation=30.0)  # the shared ``aws`` fixture (tests/conftest.py)


def invoke(stack: Stack, event: dict[str, Any], *, runtime: Runtime | None = None, remaining: float = 300.0) -> Any:
    """Invoke the coordinator by hand, as one Lambda invocation, and run the clock until it ends."""
    clock = stack.aws.clock
    context = LambdaContext("fn", stack.function_arn, "req", 256, clock.now() + remaining, clock)
    task = clock.spawn((runtime or stack.runtime).handle, event, context, name="invoke")
    clock.run()
    return task


def lifecycle_events(aws: LocalAWS, transition: str, instance_id: str | None = None) -> list[dict[str, Any]]:
    """EventBridge lifecycle events the emulator emitted."""
    out = []
    for n in aws.notifications:
        detail = n.payload.get("detail", {}) if n.channel == "eventbridge" else {}
        if detail.get("LifecycleTransition") == transition and instance_id in (None, detail.get("EC2InstanceId")):
            out.append(n.payload)
    return out


def completions(aws: LocalAWS, transition: str | None = None) -> list[Any]:
    return [
        a
        for a in aws.lifecycle_actions
        if a.ended_by == "complete" and (transition is None or a.transition == transition)
    ]


def first_insync_listing(aws: LocalAWS, stack: Stack, target: str, *, listed: bool = True) -> float | None:
    """INSYNC time of the first change whose peer record lists (or lacks) ``target``."""
    for change in aws.route53_changes:
        record = change.records_after.get((stack.srv_name, "SRV"))
        values = record[1] if record else ()
        if any(v.endswith(" " + target) for v in values) == listed:
            return change.insync_at
    return None


def grow(stack: Stack, n: int) -> None:
    stack.scale(n)
    stack.aws.clock.run()
    assert len(stack.in_service()) == n


def test_launch_completes_only_after_the_change_listing_it_is_insync(aws):
    stack = deploy(aws, mode="eventbridge")
    grow(stack, 3)
    mark = len(aws.calls)
    stack.scale(4)
    aws.clock.run()
    (new,) = set(stack.instances()) - {a.instance_id for a in completions(aws)[:3]}
    target = stack.private_dns([new])[new]
    action = next(a for a in completions(aws, LAUNCH) if a.instance_id == new)
    insync = first_insync_listing(aws, stack, target)
    assert insync is not None and insync <= action.ended_at
    assert action.result == "CONTINUE" and action.ended_at - insync <= 1.0
    assert target in stack.targets() and len(stack.targets()) == 4
    # call order in the log: the change, then a GetChange answering INSYNC, then the completion
    ops = [(c.operation, c.result or "") for c in aws.calls[mark:]]
    change_at = next(i for i, (op, _) in enumerate(ops) if op == "ChangeResourceRecordSets")
    insync_at = next(i for i, (op, r) in enumerate(ops) if op == "GetChange" and r.endswith("INSYNC"))
    complete_at = next(i for i, (op, _) in enumerate(ops) if op == "CompleteLifecycleAction")
    assert change_at < insync_at < complete_at


def test_dns_only_never_tells_a_joiner_existing_without_a_member_add(aws):
    """Defect 2 of issue 10: with membership off, a joiner into a running cluster was still tagged
    `existing` although no `member add` happened, so its etcd start failed (member count is unequal)
    and left a data dir behind. DNS-only mode lists it and completes, and leaves the go tag unset."""
    stack = deploy(aws, mode="eventbridge", settings={"etcd_membership": "false"})
    grow(stack, 3)
    founders = set(stack.instances())
    stack.scale(4)
    aws.clock.run()
    (new,) = set(stack.instances()) - founders
    assert stack.instances()[new] == "InService"
    assert stack.private_dns([new])[new] in stack.targets()
    assert "etcd-cluster-state" not in stack.tags(new)
    assert {stack.tags(i)["etcd-cluster-state"] for i in founders} == {"new"}


def test_fresh_group_lists_all_three_before_any_completes(aws):
    stack = deploy(aws, mode="eventbridge")
    stack.scale(3)
    aws.clock.run()
    first = aws.route53_changes[0]
    assert len(first.records_after[(stack.srv_name, "SRV")][1]) == 3
    done = completions(aws, LAUNCH)
    assert len(done) == 3 and all(a.ended_at >= first.insync_at for a in done)
    assert {stack.tags(a.instance_id)["etcd-cluster-state"] for a in done} == {"new"}
    assert len(aws.route53_changes) == 1  # one write for the whole bootstrap


def test_new_cluster_launches_are_held_until_the_group_is_whole(aws):
    stack = deploy(aws, mode="none", settings={"cluster_size": "3"})
    stack.scale(2)
    aws.clock.advance(PENDING)
    for event in lifecycle_events(aws, LAUNCH):
        task = invoke(stack, event)
        assert task.value()["held"], "the first two launches must be held"
    assert aws.route53_changes == [] and completions(aws) == []
    stack.scale(3)
    aws.clock.advance(PENDING)
    (third,) = [e for e in lifecycle_events(aws, LAUNCH)][2:]
    invoke(stack, third)
    assert len(completions(aws, LAUNCH)) == 3  # the third pass settles the held ones too
    assert len(stack.targets()) == 3


def test_concurrent_invocations_for_different_instances_both_end_in_the_record(aws):
    stack = deploy(aws, mode="none")
    grow_direct(stack, 1)
    stack.scale(2)
    aws.clock.advance(PENDING)
    (event_a,) = lifecycle_events(aws, LAUNCH)[1:]
    # A reads the record, then its write is slowed; meanwhile B launches, and B's pass writes first.
    aws.faults.delay("ChangeResourceRecordSets", 2.0 + PENDING, count=1)
    clock = aws.clock
    ctx = LambdaContext("fn", stack.function_arn, "a", 256, clock.now() + 300, clock)
    task_a = clock.spawn(stack.runtime.handle, event_a, ctx, name="a")
    clock.run(until=clock.now() + 1.0)
    stack.scale(3)
    clock.advance(PENDING)
    (event_b,) = lifecycle_events(aws, LAUNCH)[2:]
    ctx_b = LambdaContext("fn", stack.function_arn, "b", 256, clock.now() + 300, clock)
    task_b = clock.spawn(stack.runtime.handle, event_b, ctx_b, name="b")
    clock.run()
    task_a.value(), task_b.value()
    conflicts = [c for c in aws.calls if c.operation == "ChangeResourceRecordSets" and c.error == "InvalidChangeBatch"]
    assert conflicts, "A's stale compare-and-swap must have been refused"
    assert len(stack.targets()) == 3
    assert stack.in_service() == set(stack.instances())


def grow_direct(stack: Stack, n: int) -> None:
    """Scale to ``n`` and invoke the coordinator by hand for each launch event."""
    seen = len(lifecycle_events(stack.aws, LAUNCH))
    stack.scale(n)
    stack.aws.clock.advance(PENDING)
    for event in lifecycle_events(stack.aws, LAUNCH)[seen:]:
        invoke(stack, event)
    assert len(stack.in_service()) == n


def test_duplicate_delivery_completes_nothing_twice_and_writes_nothing_new(aws):
    stack = deploy(aws, mode="none")
    grow_direct(stack, 2)
    event = lifecycle_events(aws, LAUNCH)[-1]
    before_calls = len(aws.calls)
    changes, done = len(aws.route53_changes), len(completions(aws))
    out = invoke(stack, event).value()
    assert len(aws.route53_changes) == changes and len(completions(aws)) == done
    assert out["outcomes"][0]["status"] == "already-done"
    new_ops = {c.operation for c in aws.calls[before_calls:]}
    assert not new_ops & {"ChangeResourceRecordSets", "CompleteLifecycleAction", "ListResourceRecordSets"}


def test_forged_event_for_a_foreign_instance_changes_nothing(aws):
    stack = deploy(aws, mode="none")
    grow_direct(stack, 1)
    foreign = aws.client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
    forged = json.loads(json.dumps(lifecycle_events(aws, LAUNCH)[0]))
    forged["detail"]["EC2InstanceId"] = foreign["InstanceId"]
    record, changes = stack.record(), len(aws.route53_changes)
    with pytest.raises(InvocationFailed, match="does not place this instance in a served group"):
        invoke(stack, forged).value()
    assert stack.record() == record and len(aws.route53_changes) == changes
    assert foreign["PrivateDnsName"].lower() + "." not in stack.targets()


def test_event_for_an_unserved_group_or_other_account_is_refused_without_api_calls(aws):
    stack = deploy(aws, mode="none")
    grow_direct(stack, 1)
    base = lifecycle_events(aws, LAUNCH)[0]
    for patch in ({"detail": {**base["detail"], "AutoScalingGroupName": "not-served"}}, {"account": "999999999999"}):
        before = len(aws.calls)
        with pytest.raises(InvocationFailed, match=r"not served|not this function.s account"):
            invoke(stack, {**base, **patch}).value()
        assert aws.calls[before:] == []


def test_last_instance_termination_deletes_the_record(aws):
    stack = deploy(aws, mode="eventbridge")
    grow(stack, 1)
    (only,) = stack.in_service()
    target = stack.private_dns([only])[only]
    stack.scale(0)
    aws.clock.run()
    assert stack.record() is None
    last = aws.route53_changes[-1]
    assert [c["Action"] for c in last.changes] == ["DELETE"]
    (action,) = completions(aws, TERMINATE)
    assert action.instance_id == only and action.ended_at >= last.insync_at
    assert first_insync_listing(aws, stack, target, listed=False) is not None


def test_scale_in_removes_the_member_before_its_termination_completes(aws):
    stack = deploy(aws, mode="eventbridge")
    grow(stack, 3)
    dns = stack.private_dns(set(stack.instances()))
    before = stack.targets()
    stack.scale(2)
    aws.clock.run()
    (action,) = completions(aws, TERMINATE)
    last = aws.route53_changes[-1]
    assert [c["Action"] for c in last.changes] == ["DELETE", "CREATE"]
    deleted = {r["Value"].split()[-1] for r in last.changes[0]["ResourceRecordSet"]["ResourceRecords"]}
    assert deleted == before  # the compare-and-swap named the values it replaced
    assert before - stack.targets() == {dns[action.instance_id]}
    assert action.ended_at >= last.insync_at


def test_slow_propagation_is_bridged_with_heartbeats(aws):
    aws.propagation = 400.0  # longer than the hook's 300 s heartbeat timeout
    stack = deploy(aws, mode="eventbridge", timeout=900.0, settings={"action_timeout_seconds": "3600"})
    stack.scale(1)
    aws.clock.run()
    (action,) = completions(aws, LAUNCH)
    assert action.result == "CONTINUE" and action.heartbeats >= 1
    assert not [a for a in aws.lifecycle_actions if a.ended_by == "timeout"]


def test_lambda_deadline_hands_off_and_the_retry_finishes(aws):
    aws.propagation = 100.0
    stack = deploy(aws, mode="eventbridge", timeout=60.0)
    stack.scale(1)
    aws.clock.run()
    (action,) = completions(aws, LAUNCH)
    attempts = [i for i in aws.invocations if i.source == "eventbridge"]
    assert attempts[0].outcome == "error" and attempts[-1].outcome == "ok"
    insync = min(c.insync_at for c in aws.route53_changes)
    assert action.ended_at >= insync and action.result == "CONTINUE"
    assert not aws.dead_letters


def test_throttling_is_retried_and_still_completes(aws):
    stack = deploy(aws, mode="none")
    grow_direct(stack, 1)
    stack.scale(2)
    aws.clock.advance(PENDING)
    aws.faults.fail_next("ChangeResourceRecordSets", count=3, code="Throttling")
    aws.faults.fail_next("GetChange", count=2, code="Throttling")
    invoke(stack, lifecycle_events(aws, LAUNCH)[-1]).value()
    throttled = [c for c in aws.calls if c.error == "Throttling"]
    assert len(throttled) == 5
    assert len(stack.targets()) == 2 and len(completions(aws, LAUNCH)) == 2
    assert stack.runtime.retries >= 5


def test_non_retryable_error_fails_the_invocation_and_changes_nothing(aws):
    stack = deploy(aws, mode="none")
    grow_direct(stack, 1)
    stack.scale(2)
    aws.clock.advance(PENDING)
    record = stack.record()
    aws.faults.fail_next("ChangeResourceRecordSets", count=1, code="AccessDenied", status=403)
    with pytest.raises(InvocationFailed, match="AccessDenied"):
        invoke(stack, lifecycle_events(aws, LAUNCH)[-1]).value()
    assert stack.record() == record
    assert len(completions(aws, LAUNCH)) == 1
    assert len([c for c in aws.calls if c.operation == "ChangeResourceRecordSets" and c.error]) == 1


def test_action_past_its_timeout_falls_back_to_abandon(aws):
    stack = deploy(aws, mode="none", settings={"action_timeout_seconds": "60"})
    grow_direct(stack, 1)
    stack.scale(2)
    aws.clock.advance(PENDING)
    event = lifecycle_events(aws, LAUNCH)[-1]
    aws.clock.advance(90)  # the event is older than action_timeout_seconds when it is handled
    aws.faults.fail_next("ChangeResourceRecordSets", count=1, code="AccessDenied", status=403)
    invoke(stack, event).value()
    abandoned = [a for a in aws.lifecycle_actions if a.result == "ABANDON" and a.ended_by == "complete"]
    assert len(abandoned) == 1 and abandoned[0].instance_id == event["detail"]["EC2InstanceId"]


def test_reconcile_repairs_a_termination_that_bypassed_hooks(aws, capsys, monkeypatch):
    stack = deploy(aws, mode="none", settings={"bootstrap_barrier": "false"})
    grow_direct(stack, 3)
    victim = sorted(stack.in_service())[0]
    target = stack.private_dns([victim])[victim]
    aws.kill_instance(victim)
    aws.clock.advance(PENDING)
    assert target in stack.targets()

    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    from hook_handler.__main__ import main

    assert main(["reconcile", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing applied" in out and "DELETE" in out and target in stack.targets()

    schedule = {
        "version": "0",
        "source": "aws.events",
        "detail-type": "Scheduled Event",
        "detail": {},
        "account": aws.account,
        "region": aws.region,
        "id": "s1",
        "time": "2026-01-01T00:00:00Z",
        "resources": [],
    }
    invoke(stack, schedule).value()
    # The group lists the victim until its health check notices (10-30 s; then its terminate hook runs
    # and a replacement launches): the record already lacks it and lists every other instance in service.
    assert victim in stack.instances()
    members = stack.private_dns(stack.in_service() - {victim})
    assert target not in stack.targets() and stack.targets() == set(members.values())


def test_removal_guard_refuses_to_wipe_the_record_on_a_wrong_tag_selector(aws):
    stack = deploy(aws, mode="none")
    grow_direct(stack, 3)
    record = stack.record()
    wrong = Runtime(load_settings({**stack.env, "tag_selector": "Role=etcd"}), _clients(stack), aws.clock)
    schedule = {
        "source": "aws.events",
        "detail-type": "Scheduled Event",
        "detail": {},
        "id": "s2",
        "account": aws.account,
        "region": aws.region,
    }
    report = invoke(stack, schedule, runtime=wrong).value()
    assert stack.record() == record
    assert report["after"] == report["before"] and len(report["after"]) == 3


def _clients(stack: Stack):
    from hook_handler.app import Clients

    return Clients(stack.client("route53"), stack.client("autoscaling"), stack.client("ec2"))


@pytest.mark.parametrize("mode", ["sqs", "sns"])
def test_other_delivery_modes_bootstrap_and_scale(aws, mode):
    stack = deploy(aws, mode=mode)
    grow(stack, 3)
    stack.scale(4)
    aws.clock.run()
    assert len(stack.targets()) == 4 and len(stack.in_service()) == 4
    for action in completions(aws, LAUNCH):
        target = stack.private_dns([action.instance_id])[action.instance_id]
        assert first_insync_listing(aws, stack, target) <= action.ended_at


def test_sqs_batch_settles_a_burst_with_one_write(aws):
    stack = deploy(aws, mode="sqs")
    grow(stack, 3)
    writes = len(aws.route53_changes)
    stack.scale(8)
    aws.clock.run()
    assert len(stack.targets()) == 8
    assert len(aws.route53_changes) - writes == 1


def test_bad_setting_fails_before_any_aws_call(aws, monkeypatch):
    from hook_handler import app
    from hook_handler.exceptions import SettingsError

    monkeypatch.setattr(app, "RUNTIME", None)
    monkeypatch.setenv("domain_name", "example.com")
    monkeypatch.setenv("r53_zone_id", "not a zone")
    before = len(aws.calls)
    with pytest.raises(SettingsError, match="r53_zone_id"):
        app.lambda_handler({"action": "reconcile"}, None)
    assert aws.calls[before:] == []


def test_a_second_concurrent_batch_follows_the_writers_change_without_doubling_the_polls(aws):
    stack = deploy(aws, mode="sqs")  # two batches of 10 run at once (maximum concurrency 2)
    grow(stack, 3)
    mark, writes = len(aws.calls), len(aws.route53_changes)
    stack.scale(23)
    aws.clock.run()
    assert len(stack.targets()) == 23 and len(aws.route53_changes) - writes == 1
    batches = [i for i in aws.invocations if i.source == "sqs" and i.time >= aws.calls[mark].time]
    assert len(batches) >= 2
    polls = [c for c in aws.calls[mark:] if c.operation == "GetChange"]
    # the writer polls once a second through the 30 s propagation; the follower once every 5 s
    assert len(polls) <= 30 + 30 / 5 + 2


def test_a_warm_pool_entry_is_completed_at_once_without_touching_the_record(aws):
    """Issue 11: a warm-pool entry was not completed at once: it rewrote the record and polled GetChange."""
    stack = deploy(aws, mode="none")
    grow_direct(stack, 3)
    stack.scale(4)
    aws.clock.advance(PENDING)
    (event,) = [e for e in lifecycle_events(aws, LAUNCH) if e["detail"]["EC2InstanceId"] not in stack.in_service()]
    event = {**event, "detail": {**event["detail"], "Origin": "EC2", "Destination": "WarmPool"}}
    mark, changes = len(aws.calls), len(aws.route53_changes)
    task = invoke(stack, event)
    assert task.value()["completed"] == [[event["detail"]["EC2InstanceId"], "CONTINUE"]]
    ops = [c.operation for c in aws.calls[mark:]]
    assert "ChangeResourceRecordSets" not in ops and "GetChange" not in ops
    assert len(aws.route53_changes) == changes


def test_a_leave_is_never_proven_by_a_tag_a_describe_may_show_stale(aws):
    """Soak finding (issue 10, 2026-12-02): a follower pass read a leaver's tags from a describe older than
    the deleting pass's `pending` mark — so no mark at all — found the record gone, took the leaver for
    never listed and completed the termination before the deletion was INSYNC. Without a mark naming a
    change, the pass now submits one of its own (the record gone: to the marker set) and completes after
    its INSYNC."""
    stack = deploy(aws, mode="none", settings={"etcd_membership": "false"})
    grow_direct(stack, 1)
    (iid,) = stack.in_service()
    old = aws.route53_changes[-1]  # the change that listed it, INSYNC long ago
    # Another pass marked it pending, deleted the record (not INSYNC yet) and tagged the change: the
    # describe this pass reads is older than all of that — no etcd-leave-change tag.
    aws.set_records(stack.zone_id, stack.srv_name, "SRV", 60, None)
    stack.terminate(iid, decrement=True)
    aws.clock.advance(PENDING)
    (event,) = lifecycle_events(aws, TERMINATE, iid)
    mark = len(aws.route53_changes)
    invoke(stack, event).value()
    (done,) = completions(aws, TERMINATE)
    (marker,) = aws.route53_changes[mark:]
    assert marker.records_after[(f"_etcd-asg-coordinator.{stack.srv_name}", "SRV")][1] == (
        "0 0 1 etcd-asg-coordinator.invalid.",
    )
    assert marker.submitted_at >= event_time(event) and done.ended_at >= marker.insync_at > old.insync_at
    assert stack.record() is None  # the peer record itself is never re-created


def event_time(event: dict[str, Any]) -> float:
    from hook_handler.decide import parse_time

    return parse_time(event["time"]) or 0.0
