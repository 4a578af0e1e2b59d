"""Instance refresh (issue 13): ``StartInstanceRefresh``, ``DescribeInstanceRefreshes``, ``CancelInstanceRefresh``.

moto has none of the three. As AWS documents the rolling strategy
(https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-overview.html and
https://docs.aws.amazon.com/autoscaling/ec2/userguide/understand-instance-refresh-default-values.html):
every instance of the group is replaced, in batches sized so that ``MinHealthyPercentage`` (default 90) of the
desired capacity stays healthy — at least one instance at a time. With ``MaxHealthyPercentage`` 100 (the
default) an old instance is terminated first (through the group's terminate hooks), then its replacement is
launched (through the launch hooks); the next batch starts once the group has its desired capacity
``InService`` and every new instance is past its warm-up (``InstanceWarmup``; default: the group's
``DefaultInstanceWarmup``, else its health check grace period). Status ``Pending`` → ``InProgress`` →
``Successful``; ``CancelInstanceRefresh`` → ``Cancelling`` (the batch in flight finishes) → ``Cancelled``;
a group deleted under it → ``Failed``. One active refresh per group (``InstanceRefreshInProgress``).

Which instance goes first: the group's custom termination policy's answer when its ``TerminationPolicies`` start with a
registered Lambda function (``termination``: asked before each batch, cause ``INSTANCE_REFRESH``, among the old
instances in service; an empty answer is asked again after a short time, and an hour of them fails the refresh);
otherwise the oldest launch first (the default termination policy's order after AZ balance and
the oldest launch template). Instances in Standby are skipped (``StandbyInstances=Ignore``); scale-in protection
is not modelled. Not emulated, and refused with a ``ValidationError`` that says so: ``MaxHealthyPercentage``
above 100 (launch before terminate), checkpoints, ``SkipMatching``, auto rollback, bake time, alarms,
``ScaleInProtectedInstances``, ``StandbyInstances``; the default ``MinHealthyPercentage`` is 90 (a group's
instance maintenance policy is not read). ``aws.instance_refreshes`` holds every refresh (``RefreshRecord``).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from moto.autoscaling.models import autoscaling_backends
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult

from infra.local import state, termination
from infra.local.account import Account

TICK_SECONDS = 1.0  # how often the refresh looks at its group
ACTIVE = ("Pending", "InProgress", "Cancelling")
UNSUPPORTED = (
    "CheckpointPercentages",
    "CheckpointDelay",
    "AlarmSpecification",
    "BakeTime",
    "ScaleInProtectedInstances",
    "StandbyInstances",
)


class RefreshValidationError(ServiceException):
    code = "ValidationError"


class InstanceRefreshInProgress(ServiceException):
    code = "InstanceRefreshInProgress"


class ActiveInstanceRefreshNotFound(ServiceException):
    code = "ActiveInstanceRefreshNotFound"


@dataclass
class RefreshRecord:
    """One instance refresh and its progress (simulated or wall-clock epoch seconds)."""

    refresh_id: str
    group: str
    min_healthy: int
    warmup: float
    started_at: float
    status: str = "Pending"
    status_reason: str = ""
    ended_at: float | None = None
    to_replace: list[str] = field(default_factory=list)  # old instances not yet taken out, oldest first
    replaced: list[str] = field(default_factory=list)  # old instances taken out, in order
    batch: list[str] = field(default_factory=list)  # the batch in flight
    batches: list[tuple[float, list[str]]] = field(default_factory=list)  # (start, ids) of every batch
    total: int = 0
    in_service_since: dict[str, float] = field(default_factory=dict)
    # with a custom termination policy: a question in flight, when to ask again, since when it answers nothing
    asking: bool = False
    ask_after: float = 0.0
    refused_since: float | None = None

    @property
    def percentage(self) -> int:
        if not self.total:
            return 100 if self.status == "Successful" else 0
        done = len(self.replaced) - len(self.batch)
        return 100 if self.status == "Successful" else int(100 * max(0, done) / self.total)


def batch_size(desired: int, min_healthy: int) -> int:
    """Instances replaced at once with terminate-before-launch: keep ``min_healthy`` % of ``desired`` healthy,
    at least one at a time.

    >>> batch_size(3, 90), batch_size(10, 90), batch_size(10, 50), batch_size(4, 100)
    (1, 1, 5, 1)
    """
    keep = math.ceil(desired * min_healthy / 100)
    return max(1, desired - keep)


class Refresher:
    """The instance refreshes of one emulated account."""

    def __init__(self, aws: Account) -> None:
        self.aws = aws

    @property
    def engine(self) -> Any:
        return self.aws._lifecycle  # type: ignore[attr-defined]

    def backend(self) -> Any:
        return autoscaling_backends[self.aws.account][self.aws.region]

    def start(self, group_name: str, strategy: str, preferences: dict[str, Any]) -> RefreshRecord:
        group = self.backend().autoscaling_groups.get(group_name)
        if group is None:
            raise RefreshValidationError(f"AutoScalingGroup name not found - AutoScalingGroup {group_name} not found")
        if strategy not in ("", "Rolling"):
            raise RefreshValidationError(f"Strategy {strategy!r} is not emulated: only Rolling")
        for key in UNSUPPORTED:
            if preferences.get(key) not in (None, "", []):
                raise RefreshValidationError(f"{key} is not emulated by infra/local (see infra/local/refresh.py)")
        if str(preferences.get("SkipMatching", "false")).lower() == "true":
            raise RefreshValidationError("SkipMatching is not emulated by infra/local: every instance is replaced")
        if str(preferences.get("AutoRollback", "false")).lower() == "true":
            raise RefreshValidationError("AutoRollback is not emulated by infra/local")
        max_healthy = int(preferences.get("MaxHealthyPercentage") or 100)
        if max_healthy != 100:
            raise RefreshValidationError(
                "MaxHealthyPercentage above 100 (launch before terminate) is not emulated by infra/local: use 100"
            )
        min_pref = preferences.get("MinHealthyPercentage")
        min_healthy = 90 if min_pref is None else int(min_pref)
        if not 0 <= min_healthy <= 100:
            raise RefreshValidationError("MinHealthyPercentage must be between 0 and 100")
        if min_healthy == 100:
            raise RefreshValidationError(
                "MinHealthyPercentage 100 requires MaxHealthyPercentage above 100, which infra/local does not emulate"
            )
        warmup_pref = preferences.get("InstanceWarmup")
        if warmup_pref is not None:
            warmup = float(warmup_pref)
        else:
            warmup = float(getattr(group, "default_instance_warmup", None) or group.health_check_grace_period or 0)
        with self.engine.lock:
            if any(r.group == group_name and r.status in ACTIVE for r in self.aws.instance_refreshes):
                raise InstanceRefreshInProgress(
                    "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh."
                )
            old = sorted(
                (
                    s
                    for s in group.instance_states
                    if s.lifecycle_state in ("InService", "Pending", "Pending:Wait", "Pending:Proceed")
                ),
                key=lambda s: (s.instance.launch_time, s.instance.id),
            )
            record = RefreshRecord(
                refresh_id=str(uuid.uuid4()),
                group=group_name,
                min_healthy=min_healthy,
                warmup=warmup,
                started_at=self.aws.clock.now(),
                to_replace=[s.instance.id for s in old],
                total=len(old),
            )
            self.aws.instance_refreshes.append(record)
        self.aws.clock.call_later(TICK_SECONDS, lambda: self.tick(record), work=True)
        return record

    def cancel(self, group_name: str) -> RefreshRecord:
        with self.engine.lock:
            active = [r for r in self.aws.instance_refreshes if r.group == group_name and r.status in ACTIVE]
            if not active:
                raise ActiveInstanceRefreshNotFound(
                    f"No in progress or pending Instance Refresh found for Auto Scaling group {group_name}"
                )
            record = active[-1]
            if record.status != "Cancelling":
                record.status = "Cancelling"
                record.status_reason = "Cancelled by CancelInstanceRefresh"
            return record

    def _end(self, record: RefreshRecord, status: str, reason: str = "") -> None:
        record.status = status
        record.status_reason = reason or record.status_reason
        record.ended_at = self.aws.clock.now()

    def tick(self, record: RefreshRecord) -> None:
        if state.running() is not self.aws or record.status not in ACTIVE:
            return
        now = self.aws.clock.now()
        with self.engine.lock:
            group = self.backend().autoscaling_groups.get(record.group)
            if group is None:
                self._end(record, "Failed", "The Auto Scaling group was deleted")
                return
            present = {s.instance.id: s for s in group.instance_states}
            for s in group.instance_states:
                if s.lifecycle_state == "InService":
                    record.in_service_since.setdefault(s.instance.id, now)
            # An old instance that left by other means (scale-in, a kill) needs no replacing; one moved to Standby
            # is skipped (AWS's StandbyInstances=Ignore, the behaviour this emulates).
            record.to_replace = [
                i
                for i in record.to_replace
                if i in present
                and not present[i].lifecycle_state.startswith(("Terminat", "EnteringStandby", "Standby"))
            ]
            batch_out = not any(i in present for i in record.batch)
            new_ready = [
                s
                for s in group.instance_states
                if s.lifecycle_state == "InService"
                and s.instance.id not in record.to_replace
                and now - record.in_service_since.get(s.instance.id, now) >= record.warmup
            ]
            ready_old = [present[i] for i in record.to_replace if present[i].lifecycle_state == "InService"]
            settled = batch_out and len(new_ready) + len(ready_old) >= group.desired_capacity
            if settled:
                record.batch = []
                if record.status == "Cancelling":
                    self._end(record, "Cancelled")
                    return
                if not record.to_replace:
                    self._end(record, "Successful")
                    return
                record.status = "InProgress"
                size = batch_size(group.desired_capacity, record.min_healthy)
                ready = [present[i] for i in record.to_replace if present[i].lifecycle_state == "InService"]
                policy = termination.caller()
                if policy is not None and policy.function(group) is not None:
                    self._ask_policy(policy, record, group, ready, size, now)
                else:
                    self._take(record, group, ready[:size], now)
        self.aws.clock.call_later(TICK_SECONDS, lambda: self.tick(record), work=True)

    def _take(self, record: RefreshRecord, group: Any, batch: list[Any], now: float) -> None:
        """Terminate ``batch`` (old instances in service) through the terminate hooks; their replacements launch."""
        for s in batch:
            record.to_replace.remove(s.instance.id)
            record.replaced.append(s.instance.id)
            self.engine.transitions.begin_termination(group, s, cause="terminate")
        record.batch = [s.instance.id for s in batch]
        if batch:
            record.batches.append((now, list(record.batch)))
            group.set_desired_capacity(group.desired_capacity)  # the replacements launch

    def _ask_policy(
        self, policy: Any, record: RefreshRecord, group: Any, ready: list[Any], size: int, now: float
    ) -> None:
        """The group's custom termination policy chooses the batch (``termination``): one question at a time; no
        answer → asked again after a short time; an hour without one → the refresh fails, as AWS documents."""
        if record.asking or now < record.ask_after or not ready:
            return
        record.asking = True

        def take(chosen: list[Any]) -> None:
            record.asking = False
            at = self.aws.clock.now()
            if record.status not in ACTIVE:
                return
            if chosen:
                record.refused_since = None
                group_now = self.backend().autoscaling_groups.get(record.group)
                if group_now is not None:
                    self._take(record, group_now, chosen, at)
                return
            record.refused_since = record.refused_since if record.refused_since is not None else at
            if at - record.refused_since >= termination.REFRESH_PATIENCE:
                self._end(
                    record,
                    "Failed",
                    "The custom termination policy returned no instance to terminate for an hour",
                )
                return
            record.ask_after = at + policy.retry_delay()

        policy.refresh_batch(group, ready, size, take)

    def describe(self, group_name: str, ids: list[str]) -> list[RefreshRecord]:
        found = [r for r in self.aws.instance_refreshes if r.group == group_name and (not ids or r.refresh_id in ids)]
        return sorted(found, key=lambda r: r.started_at, reverse=True)


def _when(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def _shape(record: RefreshRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "InstanceRefreshId": record.refresh_id,
        "AutoScalingGroupName": record.group,
        "Status": record.status,
        "StartTime": _when(record.started_at),
        "PercentageComplete": record.percentage,
        "InstancesToUpdate": len(record.to_replace) + len(record.batch),
        "Preferences": {
            "MinHealthyPercentage": record.min_healthy,
            "MaxHealthyPercentage": 100,
            "InstanceWarmup": int(record.warmup),
            "SkipMatching": False,
            "AutoRollback": False,
        },
        "Strategy": "Rolling",
    }
    if record.status_reason:
        out["StatusReason"] = record.status_reason
    if record.ended_at is not None:
        out["EndTime"] = _when(record.ended_at)
    return out


_INSTALLED = False


def _refresher() -> Refresher | None:
    aws = state.running()
    return getattr(aws, "_refresher", None) if aws is not None else None


def install(aws: Account) -> Refresher:
    """Attach instance refresh to ``aws`` and add the three operations to moto (once per process)."""
    global _INSTALLED
    refresher = Refresher(aws)
    aws._refresher = refresher  # type: ignore[attr-defined]
    if not hasattr(aws, "instance_refreshes"):
        aws.instance_refreshes = []  # type: ignore[attr-defined]
    if _INSTALLED:
        return refresher
    _INSTALLED = True

    def need() -> Refresher:
        found = _refresher()
        if found is None:
            raise RefreshValidationError("instance refresh needs infra.local's LocalAWS")
        return found

    def start_instance_refresh(self: AutoScalingResponse) -> Any:
        prefs = self._get_param("Preferences") or {}
        record = need().start(self._get_param("AutoScalingGroupName"), self._get_param("Strategy") or "", prefs)
        return ActionResult({"InstanceRefreshId": record.refresh_id})

    def describe_instance_refreshes(self: AutoScalingResponse) -> Any:
        records = need().describe(self._get_param("AutoScalingGroupName"), self._get_param("InstanceRefreshIds") or [])
        return ActionResult({"InstanceRefreshes": [_shape(r) for r in records]})

    def cancel_instance_refresh(self: AutoScalingResponse) -> Any:
        record = need().cancel(self._get_param("AutoScalingGroupName"))
        return ActionResult({"InstanceRefreshId": record.refresh_id})

    AutoScalingResponse.start_instance_refresh = start_instance_refresh  # type: ignore[attr-defined]
    AutoScalingResponse.describe_instance_refreshes = describe_instance_refreshes  # type: ignore[attr-defined]
    AutoScalingResponse.cancel_instance_refresh = cancel_instance_refresh  # type: ignore[attr-defined]
    return refresher
