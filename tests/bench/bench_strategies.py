"""The strategies the benchmark compares, each a Lambda handler on the same emulated stack.

This coordinator runs as deployed (``infra.local.stack.deploy``) in each delivery mode. The
three per-event strategies are what users write instead; they get the same boto3 clients
(botocore retries off) plus one simple retry layer of their own, ``call_with_backoff``.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from unittest import mock

import botocore.waiter
from botocore.exceptions import ClientError, WaiterError

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"

# The per-event strategies' retry layer: full-jitter exponential backoff (sleep uniform(0, min(cap,
# base * 2**n))) on Throttling and PriorRequestNotComplete, then the invocation fails and Lambda's
# asynchronous retries (60 s, 120 s) take over. Close to botocore's "standard" mode, with more attempts.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 20.0
BACKOFF_ATTEMPTS = 10
RETRYABLE = frozenset({"Throttling", "PriorRequestNotComplete"})

RMW_POLL_INTERVAL = 1.5
HOOK_TIMEOUT = 300.0  # the stack's (and the template's) HeartbeatTimeout

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class Strategy:
    """One contender: how it is deployed and, for the per-event ones, its handler factory."""

    key: str
    label: str
    mode: str  # deploy mode: eventbridge | sqs | sns
    reserved_concurrency: int | None
    coordinator: bool
    make_handler: Callable[[Context], Handler] | None = None
    note: str = ""
    horizon: float | None = None  # simulated seconds after t0 to measure for; None: the harness default


@dataclass
class Switch:
    """The handler registered with the emulator; the harness points it at the strategy after set-up.

    During set-up (building the initial cluster) events are acknowledged and dropped.
    """

    target: Callable[[dict[str, Any], Any], Any] | None = None
    dropped: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        if self.target is None:
            self.dropped.append(event)
            return None
        return self.target(event, context)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def call_with_backoff(clock: Any, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """``fn(**kwargs)``, retried with full-jitter exponential backoff on throttling (simulated sleeps).

    The jitter comes from the global ``random`` (seeded per run), like tenacity's.
    """
    for attempt in range(BACKOFF_ATTEMPTS):
        try:
            return fn(**kwargs)
        except ClientError as exc:
            if error_code(exc) not in RETRYABLE or attempt == BACKOFF_ATTEMPTS - 1:
                raise
            clock.sleep(random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def waiter_on_clock(clock: Any) -> Iterator[None]:
    """Make botocore's waiters sleep on the simulated clock (only ``botocore.waiter``'s view of ``time``)."""
    shim = SimpleNamespace(sleep=clock.sleep, time=time.time, monotonic=time.monotonic)
    with mock.patch.object(botocore.waiter, "time", shim):
        yield


# -- shared pieces of the per-event handlers ------------------------------------------------
@dataclass
class Context:
    """What a per-event handler needs: clients, clock and the stack's names."""

    clock: Any
    r53: Any
    ec2: Any
    asg: Any
    zone_id: str
    srv_name: str  # fully qualified, trailing dot
    ttl: int = 60
    port: int = 2380
    project: str = "etcd-demo"

    def srv_value(self, private_dns: str) -> str:
        return f"0 0 {self.port} {private_dns.lower().rstrip('.')}."


def event_detail(event: dict[str, Any]) -> dict[str, Any] | None:
    detail = event.get("detail")
    if not isinstance(detail, dict) or "EC2InstanceId" not in detail or "LifecycleTransition" not in detail:
        return None  # test notifications and anything else: ignored
    return detail


def _read_srv(ctx: Context) -> list[str]:
    out = call_with_backoff(
        ctx.clock,
        ctx.r53.list_resource_record_sets,
        HostedZoneId=ctx.zone_id,
        StartRecordName=ctx.srv_name,
        StartRecordType="SRV",
        MaxItems="1",
    )
    for rrs in out.get("ResourceRecordSets", []):
        if rrs["Name"].lower() == ctx.srv_name and rrs["Type"] == "SRV":
            return [r["Value"] for r in rrs.get("ResourceRecords", [])]
    return []


def private_dns_of(ctx: Context, instance_id: str) -> str:
    out = ctx.ec2.describe_instances(InstanceIds=[instance_id])
    return str(out["Reservations"][0]["Instances"][0]["PrivateDnsName"])


def rmw_write(ctx: Context, detail: dict[str, Any]) -> str | None:
    """Read the record, add or remove this instance's target, UPSERT (DELETE when empty); the change id."""
    value = ctx.srv_value(private_dns_of(ctx, detail["EC2InstanceId"]))
    current = _read_srv(ctx)
    launching = detail["LifecycleTransition"] == LAUNCHING
    wanted = sorted({*current, value}) if launching else sorted(set(current) - {value})
    if wanted == sorted(current):
        return None
    rrset: dict[str, Any] = {"Name": ctx.srv_name, "Type": "SRV", "TTL": ctx.ttl}
    if wanted:
        action, rrset["ResourceRecords"] = "UPSERT", [{"Value": v} for v in wanted]
    else:
        action, rrset["ResourceRecords"] = "DELETE", [{"Value": v} for v in current]
    out = call_with_backoff(
        ctx.clock,
        ctx.r53.change_resource_record_sets,
        HostedZoneId=ctx.zone_id,
        ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": rrset}]},
    )
    return str(out["ChangeInfo"]["Id"])


def complete_action(ctx: Context, detail: dict[str, Any]) -> None:
    try:
        call_with_backoff(
            ctx.clock,
            ctx.asg.complete_lifecycle_action,
            AutoScalingGroupName=detail["AutoScalingGroupName"],
            LifecycleHookName=detail["LifecycleHookName"],
            LifecycleActionToken=detail["LifecycleActionToken"],
            LifecycleActionResult="CONTINUE",
        )
    except ClientError as exc:
        if "No active Lifecycle Action" not in str(exc):
            raise


# -- the per-event strategies ---------------------------------------------------------------
def blind_overwrite(ctx: Context) -> Callable[[dict[str, Any], Any], Any]:
    """The seed: tag search → UPSERT the whole SRV record. No wait, no completion."""

    def handler(event: dict[str, Any], context: Any) -> None:
        if event_detail(event) is None:
            return
        pages = ctx.ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": "tag:Project", "Values": [ctx.project]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )
        values = sorted(
            {ctx.srv_value(i["PrivateDnsName"]) for page in pages for r in page["Reservations"] for i in r["Instances"]}
        )
        if not values:
            return  # the seed would send an invalid empty record here; no scenario empties the group
        call_with_backoff(
            ctx.clock,
            ctx.r53.change_resource_record_sets,
            HostedZoneId=ctx.zone_id,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {
                            "Name": ctx.srv_name,
                            "Type": "SRV",
                            "TTL": ctx.ttl,
                            "ResourceRecords": [{"Value": v} for v in values],
                        },
                    }
                ]
            },
        )

    return handler


def rmw_poll(ctx: Context) -> Callable[[dict[str, Any], Any], Any]:
    """Read-modify-write of the record, then GetChange every 1.5 s, then complete."""

    def handler(event: dict[str, Any], context: Any) -> None:
        detail = event_detail(event)
        if detail is None:
            return
        change_id = rmw_write(ctx, detail)
        while change_id is not None:
            ctx.clock.sleep(RMW_POLL_INTERVAL)
            status = call_with_backoff(ctx.clock, ctx.r53.get_change, Id=change_id)["ChangeInfo"]["Status"]
            if status == "INSYNC":
                break
        complete_action(ctx, detail)

    return handler


def rmw_waiter(ctx: Context) -> Callable[[dict[str, Any], Any], Any]:
    """Read-modify-write, then boto3's ``resource_record_sets_changed`` waiter (30 s x 60), then complete.

    The waiter treats an error answer as final; a throttled GetChange is backed off and the wait
    started again, as code that survives the limit would do.
    """

    def handler(event: dict[str, Any], context: Any) -> None:
        detail = event_detail(event)
        if detail is None:
            return
        change_id = rmw_write(ctx, detail)
        if change_id is not None:
            waiter = ctx.r53.get_waiter("resource_record_sets_changed")
            for attempt in range(BACKOFF_ATTEMPTS):
                try:
                    waiter.wait(Id=change_id)
                    break
                except WaiterError as exc:
                    code = str((exc.last_response or {}).get("Error", {}).get("Code", ""))
                    if code not in RETRYABLE or attempt == BACKOFF_ATTEMPTS - 1:
                        raise
                    ctx.clock.sleep(random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
        complete_action(ctx, detail)

    return handler


STRATEGIES: dict[str, Strategy] = {
    s.key: s
    for s in (
        Strategy(
            "coord-eventbridge",
            "coordinator, EventBridge (reserved 1)",
            "eventbridge",
            1,
            True,
            note="rule → function, reserved concurrency 1 (template default)",
        ),
        Strategy(
            "coord-sqs",
            "coordinator, SQS batched",
            "sqs",
            None,
            True,
            note="rule → queue → function, batch 10, window 5 s, max concurrency 2",
        ),
        Strategy(
            "coord-sns",
            "coordinator, SNS (reserved 1)",
            "sns",
            1,
            True,
            note="hooks → topic → function, reserved concurrency 1",
        ),
        Strategy(
            "blind",
            "blind overwrite (seed)",
            "eventbridge",
            None,
            False,
            blind_overwrite,
            note="tag search → UPSERT; no wait, no completion; unreserved concurrency; measured for 360 s "
            "(hook timeout + 60 s): its launches are abandoned at 300 s and replaced, forever",
            horizon=HOOK_TIMEOUT + 60.0,
        ),
        Strategy(
            "rmw-1.5s",
            "RMW + 1.5 s polling",
            "eventbridge",
            None,
            False,
            rmw_poll,
            note="per event: read, add/remove own target, UPSERT, GetChange every 1.5 s, complete; unreserved",
        ),
        Strategy(
            "rmw-waiter",
            "RMW + boto3 waiter",
            "eventbridge",
            None,
            False,
            rmw_waiter,
            note="per event: read, add/remove own target, UPSERT, resource_record_sets_changed (30 s x 60)",
        ),
    )
}
