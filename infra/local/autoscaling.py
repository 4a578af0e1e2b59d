"""Auto Scaling lifecycle hooks on top of moto: wait states, notifications, completion, timeouts.

moto keeps every instance ``InService``, sends nothing and does not implement
``CompleteLifecycleAction``/``RecordLifecycleActionHeartbeat``. ``install`` patches moto's
(global) Auto Scaling, EC2 and response classes once per process; every patched method asks
``infra.local.aws.current()`` for the running emulator and behaves like plain moto when none runs.

Example:
    >>> with LocalAWS(clock=SimClock()) as aws:          # doctest: +SKIP
    ...     asg = aws.client("autoscaling")
    ...     # put a launch hook, scale out: the instance waits in Pending:Wait
    ...     asg.complete_lifecycle_action(AutoScalingGroupName="g", LifecycleHookName="h",
    ...                                   InstanceId=iid, LifecycleActionResult="CONTINUE")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    InstanceState,
    LifecycleHook,
    TerminateInstanceActivity,
    autoscaling_backends,
)
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.exceptions import ServiceException
from moto.core.responses import EmptyResult
from moto.ec2.models import EC2Backend

from infra.local import termination
from infra.local.account import Account, flag, new_uuid, seconds

log = logging.getLogger(__name__)

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
TRANSITIONS = (LAUNCHING, TERMINATING)
RESULTS = ("CONTINUE", "ABANDON")
HEARTBEAT_MIN, HEARTBEAT_MAX, HEARTBEAT_DEFAULT = 30, 7200, 3600
GLOBAL_TIMEOUT_CAP = 48 * 3600
# Lifecycle states that count toward the group's capacity (moto counts only InService).
CAPACITY_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})
# A warm-pool instance ready to leave the pool (the pool's PoolState after its launch actions).
WARMED_READY = frozenset({"Warmed:Stopped", "Warmed:Running", "Warmed:Hibernated"})


class LifecycleValidationError(ServiceException):
    """``ValidationError`` as Auto Scaling returns it (HTTP 400, query protocol)."""

    code = "ValidationError"


@dataclass
class LifecycleActionRecord:
    """One lifecycle action (one instance, one hook): what ``aws.lifecycle_actions`` holds."""

    token: str
    group: str
    hook: str
    instance_id: str
    transition: str
    started_at: float
    heartbeat_timeout: int
    deadline: float
    global_deadline: float
    ended_at: float | None = None
    result: str | None = None
    ended_by: str | None = None  # "complete" | "timeout" | "terminated" | "hook-deleted" | "group-deleted"
    heartbeats: int = 0
    origin: str = ""  # EC2 | AutoScalingGroup | WarmPool (the notification's Origin)
    destination: str = ""  # AutoScalingGroup | EC2 | WarmPool (the notification's Destination)
    generation: int = field(default=0, repr=False)

    @property
    def active(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True)
class Notification:
    """One message the group sent: ``channel`` is ``eventbridge``, ``sqs`` or ``sns``."""

    time: float
    channel: str
    target: str
    payload: dict[str, Any]


def iso(ts: float, *, millis: bool = False) -> str:
    """AWS timestamp text: ``2026-01-01T00:00:00Z`` (EventBridge) or with ``.123`` (hook messages)."""
    moment = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------
# The engine: one per LocalAWS
# ---------------------------------------------------------------------------------------
class Lifecycle:
    """Lifecycle actions, timers and notifications of one emulated account."""

    def __init__(self, aws: Account) -> None:
        self.aws = aws
        # The account's lock (held by every API call, infra.local.faults): a timer's change to an instance never
        # interleaves with a call reading it.
        self.lock = aws.lock
        self.active: dict[str, LifecycleActionRecord] = {}
        self.bypass_hooks = False
        self.warm: dict[str, list[InstanceState]] = {}  # group name -> its warm pool's instances
        # stale_describes: per instance, [(time, view)] (see ``observe``); per group, [(time, desired)]
        self.history: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.group_history: dict[str, list[tuple[float, int | None]]] = {}
        # For tests (no API shows it): when each instance first entered a Terminating* state.
        self.terminating_since: dict[str, float] = {}
        ips = getattr(aws, "instance_ips", None)
        self._ips: Iterator[str] | None = iter(ips) if ips is not None else None

    # -- helpers ----------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.aws.clock.now()

    def new_uuid(self) -> str:
        return new_uuid(self.aws)

    @staticmethod
    def hooks(group: FakeAutoScalingGroup, transition: str) -> list[LifecycleHook]:
        backend = group.autoscaling_backend
        return [
            h
            for h in backend.lifecycle_hooks.values()
            if h.auto_scaling_group_name == group.name and h.lifecycle_transition == transition
        ]

    @staticmethod
    def state_of(group: FakeAutoScalingGroup, instance_id: str) -> InstanceState | None:
        return next((s for s in group.instance_states if s.instance.id == instance_id), None)

    # -- addressing -------------------------------------------------------------------
    def address(self, instance: Any) -> None:
        """Give a new instance its emulated private IP; keep the DNS name in step with the IP."""
        nic = instance.nics.get(0) if hasattr(instance.nics, "get") else None
        if nic is None:
            return
        # moto's group launches leave region_name at its us-east-1 default, which names the DNS.
        instance.region_name = instance.ec2_backend.region_name
        if self._ips is not None:
            ip = next(self._ips, None)
            if ip is None:
                log.warning("instance_ips exhausted; %s keeps moto's address", instance.id)
            else:
                old = nic.private_ip_address
                if instance.subnet_id and old:
                    instance.ec2_backend.get_subnet(instance.subnet_id).del_subnet_ip(old)
                instance._private_ips.discard(old)
                instance._private_ips.add(ip)
                nic.private_ip_address = ip
                for entry in nic.private_ip_addresses:
                    if entry.get("Primary") or entry.get("PrivateIpAddress") == old:
                        entry["PrivateIpAddress"] = ip
        dns = instance.private_dns_name
        nic.private_dns_name = dns
        for entry in nic.private_ip_addresses:
            if entry.get("PrivateIpAddress") == nic.private_ip_address:
                entry["PrivateDnsName"] = dns

    # -- options (issue 11) -------------------------------------------------------------
    def opt(self, name: str) -> bool:
        """A ``LocalAWS`` realism option (issue 11); False when the ``LocalAWS`` predates it."""
        return flag(self.aws, name)

    def draw(self, name: str, default: float | tuple[float, float]) -> float:
        """Seconds from a ``LocalAWS`` duration option: fixed, or uniform in ``(lo, hi)`` from ``aws.rng``."""
        return seconds(self.aws, name, default)

    def set_state(self, state: InstanceState, lifecycle_state: str) -> None:
        """Change an instance's lifecycle state; invalidates transitions scheduled for the old one."""
        state.lifecycle_state = lifecycle_state
        if lifecycle_state.startswith("Terminating"):
            self.terminating_since.setdefault(state.instance.id, self.now)
        state._local_gen = getattr(state, "_local_gen", 0) + 1  # type: ignore[attr-defined]
        self.observe()

    def later(self, state: InstanceState, fn: Callable[[], None]) -> None:
        """Run ``fn`` after ``transition_delay`` unless the instance's state changed meanwhile.

        With ``transitional_states`` the states ``Pending``, ``Pending:Proceed``, ``Terminating``,
        ``Terminating:Proceed`` (and ``Warmed:Pending``/``Warmed:Pending:Proceed``,
        ``EnteringStandby``) last this long, as in AWS's lifecycle diagrams:
        https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-lifecycle.html and
        https://docs.aws.amazon.com/autoscaling/ec2/userguide/lifecycle-hooks-overview.html
        """
        generation = getattr(state, "_local_gen", 0)

        def fire() -> None:
            with self.lock:
                if getattr(state, "_local_gen", 0) == generation:
                    fn()

        self.aws.clock.call_at(self.now + self.draw("transition_delay", (1.0, 5.0)), fire, work=True)

    def alive(self, group: FakeAutoScalingGroup) -> bool:
        backend = autoscaling_backends[self.aws.account][self.aws.region]
        return backend.autoscaling_groups.get(group.name) is group

    # -- launching --------------------------------------------------------------------
    def launched(self, group: FakeAutoScalingGroup, states: list[InstanceState], *, origin: str = "EC2") -> None:
        """New members of the group (from EC2, or from the warm pool): ``Pending`` first."""
        for state in states:
            if self.opt("transitional_states") and not self.bypass_hooks:
                self.set_state(state, "Pending")
                self.later(state, lambda s=state: self.enter_launch(group, s, origin) if self.alive(group) else None)
            else:
                self.enter_launch(group, state, origin)

    def enter_launch(self, group: FakeAutoScalingGroup, state: InstanceState, origin: str = "EC2") -> None:
        hooks = self.hooks(group, LAUNCHING)
        if hooks and not self.bypass_hooks:
            self.set_state(state, "Pending:Wait")
            self.start_action(group, state, hooks[0], LAUNCHING, origin, "AutoScalingGroup")
        else:
            self.in_service(group, state, origin)

    def in_service(self, group: FakeAutoScalingGroup, state: InstanceState, origin: str = "EC2") -> None:
        self.set_state(state, "InService")
        self.activity_event(group, state, "EC2 Instance Launch Successful", origin=origin)

    # -- terminating ------------------------------------------------------------------
    def begin_termination(self, group: FakeAutoScalingGroup, state: InstanceState, *, cause: str = "scale-in") -> None:
        """Scale-in / TerminateInstanceInAutoScalingGroup / unhealthy: Terminating:Wait per hook, or gone.

        ``cause`` is ``scale-in`` (SetDesiredCapacity & co: may return to the warm pool with
        ``ReuseOnScaleIn``), ``terminate`` (TerminateInstanceInAutoScalingGroup) or ``unhealthy``.
        """
        self.cancel([state.instance.id], "terminated")
        if self.bypass_hooks:
            self.terminate_now(group, state)
            return
        if cause == "scale-in" and self.reuse_on_scale_in(group):
            self.return_to_pool(group, state)
            return
        if self.opt("transitional_states"):
            self.set_state(state, "Terminating")
            self.later(state, lambda: self.enter_terminate(group, state))
        else:
            self.enter_terminate(group, state)

    def enter_terminate(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        hooks = self.hooks(group, TERMINATING)
        if hooks and self.alive(group):
            self.set_state(state, "Terminating:Wait")
            self.start_action(group, state, hooks[0], TERMINATING, "AutoScalingGroup", "EC2")
        else:
            self.terminate_now(group, state)

    def terminate_now(self, group: FakeAutoScalingGroup, state: InstanceState, *, event: bool = True) -> None:
        self.set_state(state, "Terminated")
        group.instance_states = [s for s in group.instance_states if s is not state]
        if group.name in self.warm:
            self.warm[group.name] = [s for s in self.warm[group.name] if s is not state]
        if state.instance.state != "terminated":
            group.autoscaling_backend.ec2_backend.terminate_instances([state.instance.id])
        if event:
            self.activity_event(group, state, "EC2 Instance Terminate Successful")
        self.observe()

    # -- actions ----------------------------------------------------------------------
    def start_action(
        self,
        group: FakeAutoScalingGroup,
        state: InstanceState,
        hook: LifecycleHook,
        transition: str,
        origin: str = "",
        destination: str = "",
    ) -> None:
        now = self.now
        timeout = int(hook.heartbeat_timeout)
        if not origin:
            origin, destination = (
                ("EC2", "AutoScalingGroup") if transition == LAUNCHING else ("AutoScalingGroup", "EC2")
            )
        action = LifecycleActionRecord(
            token=self.new_uuid(),
            group=group.name,
            hook=hook.name,
            instance_id=state.instance.id,
            transition=transition,
            started_at=now,
            heartbeat_timeout=timeout,
            deadline=now + timeout,
            global_deadline=now + min(GLOBAL_TIMEOUT_CAP, 100 * timeout),
            origin=origin,
            destination=destination,
        )
        self.active[action.token] = action
        self.aws.lifecycle_actions.append(action)
        self.arm(action)
        self.lifecycle_notifications(group, hook, action)

    def arm(self, action: LifecycleActionRecord) -> None:
        action.generation += 1
        generation = action.generation
        self.aws.clock.call_at(action.deadline, lambda: self.expire(action, generation))

    def expire(self, action: LifecycleActionRecord, generation: int) -> None:
        with self.lock:
            if action.active and action.generation == generation:
                hook = self.hook_named(action.group, action.hook)
                result = hook.default_result if hook is not None else "ABANDON"
                self.finish(action, result, "timeout")

    def hook_named(self, group_name: str, hook_name: str) -> LifecycleHook | None:
        backend = autoscaling_backends[self.aws.account][self.aws.region]
        return backend.lifecycle_hooks.get(f"{group_name}_{hook_name}")

    def find(self, group: str, hook: str, token: str | None, instance_id: str | None) -> LifecycleActionRecord:
        if not token and not instance_id:
            raise LifecycleValidationError("Either LifecycleActionToken or InstanceId must be specified.")
        for action in list(self.active.values()):
            if action.group != group or action.hook != hook:
                continue
            if (token and action.token == token) or (not token and action.instance_id == instance_id):
                if self.now >= min(action.deadline, action.global_deadline):
                    # The timer has not fired yet (wall clock): the action is expired all the same.
                    self.expire(action, action.generation)
                    break
                return action
        if token:
            raise LifecycleValidationError(f"No active Lifecycle Action found with token {token}")
        raise LifecycleValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")

    def complete(self, group: str, hook: str, result: str, token: str | None, instance_id: str | None) -> None:
        with self.lock:
            if result not in RESULTS:
                raise LifecycleValidationError(
                    f"Invalid LifecycleActionResult: {result}. Valid values are CONTINUE and ABANDON."
                )
            self.finish(self.find(group, hook, token, instance_id), result, "complete")

    def heartbeat(self, group: str, hook: str, token: str | None, instance_id: str | None) -> None:
        with self.lock:
            action = self.find(group, hook, token, instance_id)
            action.heartbeats += 1
            action.deadline = min(self.now + action.heartbeat_timeout, action.global_deadline)
            self.arm(action)

    def cancel(self, instance_ids: list[str], reason: str, *, hook: str | None = None) -> None:
        """End the actions of instances that are leaving by another path (no notification, no result)."""
        for action in list(self.active.values()):
            if action.instance_id in instance_ids and (hook is None or action.hook == hook):
                self.end(action, None, reason)

    def end(self, action: LifecycleActionRecord, result: str | None, by: str) -> None:
        action.ended_at = self.now
        action.result = result
        action.ended_by = by
        self.active.pop(action.token, None)

    def finish(self, action: LifecycleActionRecord, result: str, by: str) -> None:
        """Apply a result: next hook of the transition, InService, Terminated, or abandon + replace."""
        self.end(action, result, by)
        backend = autoscaling_backends[self.aws.account][self.aws.region]
        group = backend.autoscaling_groups.get(action.group)
        state = self.locate(group, action.instance_id) if group is not None else None
        if group is None or state is None:
            return
        hooks = self.hooks(group, action.transition)
        names = [h.name for h in hooks]
        following = hooks[names.index(action.hook) + 1 :] if action.hook in names else []
        if action.destination == "WarmPool":
            # Into the warm pool (a launch into it, or a return on scale-in): Warmed:Pending:Wait.
            if result == "CONTINUE" and following:
                self.start_action(group, state, following[0], action.transition, action.origin, action.destination)
            elif result == "ABANDON" and action.transition == LAUNCHING:
                self.terminate_now(group, state, event=False)
                self.refill(group)
            else:
                self.warmed(group, state)
            return
        if action.transition == LAUNCHING:
            if result == "CONTINUE":
                if following:
                    self.start_action(group, state, following[0], LAUNCHING, action.origin, action.destination)
                elif self.opt("transitional_states"):
                    self.set_state(state, "Pending:Proceed")
                    self.later(
                        state, lambda: self.in_service(group, state, action.origin) if self.alive(group) else None
                    )
                else:
                    self.in_service(group, state, action.origin)
                return
            reason = (
                "Instance failed to complete user's Lifecycle Action: Lifecycle Action with token "
                f"{action.token} was abandoned: Lifecycle Action Completed with ABANDON Result"
            )
            self.activity_event(group, state, "EC2 Instance Launch Unsuccessful", status="Cancelled", message=reason)
            self.terminate_now(group, state, event=False)
            group.set_desired_capacity(group.desired_capacity)  # the group replaces it
            return
        if result == "CONTINUE" and following:
            self.start_action(group, state, following[0], TERMINATING, action.origin, action.destination)
        elif self.opt("transitional_states"):
            self.set_state(state, "Terminating:Proceed")
            self.later(state, lambda: self.terminate_now(group, state))
        else:
            self.terminate_now(group, state)

    def locate(self, group: FakeAutoScalingGroup, instance_id: str) -> InstanceState | None:
        """The instance's state in the group or in its warm pool."""
        return self.state_of(group, instance_id) or next(
            (s for s in self.warm.get(group.name, []) if s.instance.id == instance_id), None
        )

    # -- notifications ----------------------------------------------------------------
    def record(self, channel: str, target: str, payload: dict[str, Any]) -> None:
        self.aws.notifications.append(Notification(self.now, channel, target, payload))

    def put_event(self, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
        """Put an ``aws.autoscaling`` event on the default bus, so moto's rules route it."""
        from moto.events.models import events_backends

        now = self.now
        backend = events_backends[self.aws.account][self.aws.region]
        entry = {
            "Source": "aws.autoscaling",
            "DetailType": detail_type,
            "Detail": json.dumps(detail),
            "Resources": resources,
            "Time": now,
        }
        result = backend.put_events([entry])
        event = {
            "version": "0",
            "id": result[0].get("EventId", self.new_uuid()),
            "detail-type": detail_type,
            "source": "aws.autoscaling",
            "account": self.aws.account,
            "time": iso(now),
            "region": self.aws.region,
            "resources": resources,
            "detail": detail,
        }
        self.record("eventbridge", "default", event)

    def send_to_target(self, target_arn: str, message: dict[str, Any], subject: str) -> None:
        """Send a raw lifecycle message to the hook's SQS queue or SNS topic."""
        parts = target_arn.split(":")
        service, region, account, resource = parts[2], parts[3], parts[4], parts[5]
        body = json.dumps(message)
        if service == "sqs":
            from moto.sqs.models import sqs_backends

            sqs_backends[account][region].send_message(resource, body)
            self.record("sqs", target_arn, message)
        elif service == "sns":
            from moto.sns.models import sns_backends

            sns_backends[account][region].publish(body, arn=target_arn, subject=subject)
            self.record("sns", target_arn, message)
        else:
            raise LifecycleValidationError(f"Invalid notification target ARN: {target_arn}")

    def target_exists(self, target_arn: str) -> bool:
        parts = target_arn.split(":")
        if len(parts) < 6:
            return False
        service, region, account, resource = parts[2], parts[3], parts[4], parts[5]
        try:
            if service == "sqs":
                from moto.sqs.models import sqs_backends

                sqs_backends[account][region].get_queue(resource)
                return True
            if service == "sns":
                from moto.sns.models import sns_backends

                sns_backends[account][region].get_topic(target_arn)
                return True
        except Exception:  # noqa: BLE001 - moto's not-found errors differ per service
            return False
        return False

    def test_notification(self, group_name: str, group_arn: str, hook: LifecycleHook) -> None:
        message = {
            "AccountId": self.aws.account,
            "RequestId": self.new_uuid(),
            "AutoScalingGroupARN": group_arn,
            "AutoScalingGroupName": group_name,
            "Service": "AWS Auto Scaling",
            "Event": "autoscaling:TEST_NOTIFICATION",
            "Time": iso(self.now, millis=True),
        }
        self.send_to_target(
            hook.notification_target_arn, message, f'Auto Scaling: test notification for group "{group_name}"'
        )

    def lifecycle_notifications(
        self, group: FakeAutoScalingGroup, hook: LifecycleHook, action: LifecycleActionRecord
    ) -> None:
        launching = action.transition == LAUNCHING
        origin, destination = action.origin, action.destination
        if not origin:
            origin, destination = ("EC2", "AutoScalingGroup") if launching else ("AutoScalingGroup", "EC2")
        metadata = getattr(hook, "notification_metadata", None)
        detail: dict[str, Any] = {
            "LifecycleActionToken": action.token,
            "AutoScalingGroupName": group.name,
            "LifecycleHookName": hook.name,
            "EC2InstanceId": action.instance_id,
            "LifecycleTransition": action.transition,
        }
        if metadata:
            detail["NotificationMetadata"] = metadata
        detail["Origin"] = origin
        detail["Destination"] = destination
        kind = "launch" if launching else "terminate"
        self.put_event(f"EC2 Instance-{kind} Lifecycle Action", detail, [group.arn])
        target = getattr(hook, "notification_target_arn", None)
        if target:
            message: dict[str, Any] = {
                "Origin": origin,
                "LifecycleHookName": hook.name,
                "Destination": destination,
                "AccountId": self.aws.account,
                "RequestId": self.new_uuid(),
                "LifecycleTransition": action.transition,
                "AutoScalingGroupName": group.name,
                "Service": "AWS Auto Scaling",
                "Time": iso(self.now, millis=True),
                "EC2InstanceId": action.instance_id,
                "LifecycleActionToken": action.token,
            }
            if metadata:
                message["NotificationMetadata"] = metadata
            word = "LAUNCHING" if launching else "TERMINATING"
            subject = f"Auto Scaling:  Lifecycle action '{word}' for instance {action.instance_id} in progress."
            try:
                self.send_to_target(target, message, subject)
            except Exception:
                log.warning("lifecycle notification to %s failed", target, exc_info=True)

    def activity_event(
        self,
        group: FakeAutoScalingGroup,
        state: InstanceState,
        detail_type: str,
        *,
        status: str = "InProgress",
        message: str = "",
        origin: str | None = None,
    ) -> None:
        instance = state.instance
        launching = "Launch" in detail_type
        now = iso(self.now)
        verb = "Launching a new EC2 instance" if launching else "Terminating EC2 instance"
        detail = {
            "StatusCode": status,
            "Description": f"{verb}: {instance.id}",
            "AutoScalingGroupName": group.name,
            "ActivityId": self.new_uuid(),
            "Details": {"Availability Zone": instance.placement.zone, "Subnet ID": instance.subnet_id or ""},
            "RequestId": self.new_uuid(),
            "StatusMessage": message,
            "EndTime": now,
            "EC2InstanceId": instance.id,
            "StartTime": now,
            "Cause": f"At {now} an instance was {'started' if launching else 'taken out of service'}.",
            "Origin": origin or ("EC2" if launching else "AutoScalingGroup"),
            "Destination": "AutoScalingGroup" if launching else "EC2",
        }
        instance_arn = f"arn:aws:ec2:{self.aws.region}:{self.aws.account}:instance/{instance.id}"
        self.put_event(detail_type, detail, [group.arn, instance_arn])

    # -- health check replacement (issue 11) ----------------------------------------------
    def killed(self, instance_id: str) -> None:
        """``aws.kill_instance`` with ``health_check_replacement``: the group finds out later.

        AWS: an instance that stopped or terminated at EC2 level fails the group's EC2 health
        check; Auto Scaling marks it ``Unhealthy`` and replaces it: a termination activity (which
        runs the group's terminate lifecycle hooks, although the instance is already gone) while
        another activity launches the replacement.
        https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-health-checks.html
        https://docs.aws.amazon.com/autoscaling/ec2/userguide/replace-unhealthy-instance.html
        ("By default, Amazon EC2 Auto Scaling creates a new scaling activity for terminating the
        unhealthy instance and then terminates it. While the instance is terminating, another
        scaling activity launches a new instance.") The delay until the check notices is
        ``health_check_delay`` (s, drawn from ``aws.rng``). Only an ``InService`` instance is
        health-checked; one that dies in another state leaves the group at once (no hooks).
        """
        backend = autoscaling_backends[self.aws.account][self.aws.region]
        for group in list(backend.autoscaling_groups.values()):
            state = self.state_of(group, instance_id)
            if state is None:
                continue
            if state.lifecycle_state != "InService":
                self.cancel([instance_id], "terminated")
                self.terminate_now(group, state)
                group.set_desired_capacity(group.desired_capacity)
                return
            when = self.now + self.draw("health_check_delay", (10.0, 30.0))
            self.aws.clock.call_at(when, lambda g=group, s=state: self.health_check(g, s), work=True)
            return

    def health_check(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        with self.lock:
            if not self.alive(group) or self.state_of(group, state.instance.id) is not state:
                return
            if state.lifecycle_state != "InService":
                return  # already leaving by another path
            state.health_status = "Unhealthy"
            self.begin_termination(group, state, cause="unhealthy")
            group.set_desired_capacity(group.desired_capacity)  # the replacement launches meanwhile

    # -- warm pools (issue 11) ------------------------------------------------------------
    # https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-warm-pools.html
    # https://docs.aws.amazon.com/autoscaling/ec2/userguide/warm-pool-instance-lifecycle.html:
    # a launch hook pauses a new instance at Warmed:Pending:Wait (Origin EC2, Destination
    # WarmPool) and again at Pending:Wait when it leaves the pool (Origin WarmPool, Destination
    # AutoScalingGroup); with ReuseOnScaleIn a scaled-in instance returning to the pool pauses at
    # Warmed:Pending:Wait for the *terminate* hook (Origin AutoScalingGroup, Destination WarmPool);
    # once the pool is empty, instances launch straight into the group (Pending:Wait only).
    def pool(self, group: FakeAutoScalingGroup) -> Any:
        return getattr(group, "warm_pool", None) if self.opt("warm_pools") else None

    def reuse_on_scale_in(self, group: FakeAutoScalingGroup) -> bool:
        pool = self.pool(group)
        policy = (getattr(pool, "instance_reuse_policy", None) or {}) if pool is not None else {}
        return str(policy.get("ReuseOnScaleIn", False)).lower() == "true"

    def pool_target(self, group: FakeAutoScalingGroup) -> int:
        """Warm pool size: MaxGroupPreparedCapacity (default MaxSize) - DesiredCapacity, at least MinSize."""
        pool = self.pool(group)
        if pool is None:
            return 0
        prepared = pool.max_group_prepared_capacity
        prepared = int(prepared) if prepared not in (None, "", -1, "-1") else int(group.max_size or 0)
        return max(int(pool.min_size or 0), prepared - int(group.desired_capacity or 0))

    def refill(self, group: FakeAutoScalingGroup) -> None:
        """Launch instances into the warm pool until it has ``pool_target`` members."""
        if self.pool(group) is None or self.bypass_hooks or not self.alive(group):
            return
        members = self.warm.setdefault(group.name, [])
        missing = self.pool_target(group) - len(members)
        if missing <= 0:
            return
        before = set(map(id, group.instance_states))
        _ORIG["FakeAutoScalingGroup.replace_autoscaling_group_instances"](group, missing, group.get_propagated_tags())
        new = [s for s in group.instance_states if id(s) not in before]
        group.instance_states = [s for s in group.instance_states if id(s) in before]
        members.extend(new)
        for state in new:
            if self.opt("transitional_states"):
                self.set_state(state, "Warmed:Pending")
                self.later(state, lambda s=state: self.enter_pool(group, s) if self.alive(group) else None)
            else:
                self.enter_pool(group, state)

    def enter_pool(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        hooks = self.hooks(group, LAUNCHING)
        if hooks:
            self.set_state(state, "Warmed:Pending:Wait")
            self.start_action(group, state, hooks[0], LAUNCHING, "EC2", "WarmPool")
        else:
            self.warmed(group, state)

    def warmed(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        """The pool's PoolState: ``Warmed:Stopped`` (EC2 stopped), ``Warmed:Running``, ``Warmed:Hibernated``."""
        pool = self.pool(group)
        pool_state = (getattr(pool, "pool_state", None) or "Stopped") if pool is not None else "Stopped"

        def settle() -> None:
            if state.instance.state == "running" and pool_state != "Running":
                state.instance.stop()
            self.set_state(state, f"Warmed:{pool_state}")

        if self.opt("transitional_states") and state.lifecycle_state == "Warmed:Pending:Wait":
            self.set_state(state, "Warmed:Pending:Proceed")
            self.later(state, settle)
        else:
            settle()

    def return_to_pool(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        """Scale-in with ``ReuseOnScaleIn``: back to the pool via the terminate hook (Warmed:Pending:Wait)."""
        group.instance_states = [s for s in group.instance_states if s is not state]
        self.warm.setdefault(group.name, []).append(state)
        hooks = self.hooks(group, TERMINATING)
        if hooks:
            self.set_state(state, "Warmed:Pending:Wait")
            self.start_action(group, state, hooks[0], TERMINATING, "AutoScalingGroup", "WarmPool")
        else:
            self.warmed(group, state)

    def take_from_pool(self, group: FakeAutoScalingGroup, count: int) -> int:
        """Scale-out: move up to ``count`` ready pool instances into the group. Returns how many."""
        if self.pool(group) is None or count <= 0:
            return 0
        ready = [s for s in self.warm.get(group.name, []) if s.lifecycle_state in WARMED_READY][:count]
        if not ready:
            return 0
        self.warm[group.name] = [s for s in self.warm[group.name] if s not in ready]
        group.instance_states.extend(ready)
        for state in ready:
            if state.instance.state != "running":
                state.instance.start()
        self.launched(group, ready, origin="WarmPool")
        return len(ready)

    def delete_pool(self, group: FakeAutoScalingGroup) -> None:
        """DeleteWarmPool: the pool's instances are terminated (their lifecycle actions end)."""
        members = self.warm.pop(group.name, [])
        self.cancel([s.instance.id for s in members], "terminated")
        for state in members:
            self.set_state(state, "Warmed:Terminated")
            if state.instance.state != "terminated":
                group.autoscaling_backend.ec2_backend.terminate_instances([state.instance.id])

    # -- standby (issue 11) ---------------------------------------------------------------
    # https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-enter-exit-standby.html: EnterStandby
    # takes an InService instance to EnteringStandby then Standby; ExitStandby takes it to Pending
    # then InService. No lifecycle hook runs on either: AWS's answer in
    # https://github.com/aws-samples/aws-codedeploy-samples/issues/30 ("lifecycle hooks were
    # applied to spot instances when they were attached ... or when they were exiting Standby.
    # That was incorrect behavior as lifecycle hooks should only be applied to newly launched
    # instances. The fix for this issue has been deployed to all public regions as of Nov 3 [2015]").
    def entering_standby(self, states: list[InstanceState]) -> None:
        for state in states:
            self.set_state(state, "EnteringStandby")
            self.later(state, lambda s=state: self.set_state(s, "Standby"))

    def exiting_standby(self, states: list[InstanceState]) -> None:
        for state in states:
            self.set_state(state, "Pending")
            self.later(state, lambda s=state: self.set_state(s, "InService"))

    # -- eventually consistent describes (issue 11) ---------------------------------------
    # https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html ("the result of an
    # API command you run that affects your Amazon EC2 resources might not be immediately visible
    # to all subsequent commands you run"); Auto Scaling's Describe* calls read the same way.
    #
    # Model: ``observe`` keeps, per instance, the list of (time, view) where the view is what the
    # three Describe calls can show (group, lifecycle and health state, warm-pool membership; EC2
    # state, private IP and DNS name, tags, presence) and appends a view whenever it differs from
    # the last. It runs after every Auto Scaling/EC2 request and after every state change the
    # engine makes (timers included). A describe with ``stale_describes`` draws a lag L from
    # ``describe_staleness`` per call and answers from each instance's last view at or before
    # ``now - L``: an instance launched since is absent, one gone since is still there, states,
    # addresses and tags are as they were. Writes made straight into moto's backends (not through
    # the API or the engine) are seen from the next observation on. Groups themselves (existence,
    # hooks, sizes other than DesiredCapacity) are answered current.
    def observe(self) -> None:
        if not self.opt("stale_describes"):
            return
        from moto.ec2.models import ec2_backends

        now = self.now
        views: dict[str, dict[str, Any]] = {}
        ec2 = ec2_backends[self.aws.account][self.aws.region]
        for reservation in list(ec2.reservations.values()):
            for inst in list(reservation.instances):
                views[inst.id] = {
                    "instance": inst,
                    "reservation": reservation,
                    "ec2_state": (inst._state.name, inst._state.code),
                    "ip": _Inst.ip(inst),
                    "dns": _Inst.dns(inst),
                    "tags": tuple(sorted((t["key"], t["value"]) for t in inst.get_tags())),
                    "group": None,
                }
        backend = autoscaling_backends[self.aws.account][self.aws.region]
        for group in list(backend.autoscaling_groups.values()):
            self._remember(self.group_history.setdefault(group.name, []), now, group.desired_capacity)
            members = [(s, False) for s in group.instance_states] + [(s, True) for s in self.warm.get(group.name, [])]
            for state, warm in members:
                view = views.get(state.instance.id)
                if view is not None:
                    view.update(
                        group=group.name,
                        state=state,
                        lifecycle=state.lifecycle_state,
                        health=state.health_status,
                        warm=warm,
                    )
        for iid in set(self.history) | set(views):
            view = views.get(iid, {"gone": True})
            self._remember(self.history.setdefault(iid, []), now, view)

    def _remember(self, entries: list[tuple[float, Any]], now: float, value: Any) -> None:
        def key(v: Any) -> Any:
            return (
                {k: x for k, x in v.items() if k not in ("instance", "reservation", "state")}
                if isinstance(v, dict)
                else v
            )

        if entries and key(entries[-1][1]) == key(value):
            return
        if entries and entries[-1][0] == now:
            entries[-1] = (now, value)
        else:
            entries.append((now, value))
        # Keep what a lag can still reach (the last entry before the horizon included).
        spec = getattr(self.aws, "describe_staleness", (0.0, 2.0))
        horizon = now - (max(spec) if isinstance(spec, tuple) else float(spec)) - 1.0
        while len(entries) > 2 and entries[1][0] <= horizon:
            entries.pop(0)

    def stale_time(self) -> float | None:
        """The moment this describe answers as of (``now - lag``), or None for a current answer
        (always current inside ``LocalAWS.observer()``: a test looking at the world, not a client)."""
        if not self.opt("stale_describes") or getattr(_OBSERVER, "depth", 0):
            return None
        self.observe()
        return self.now - self.draw("describe_staleness", (0.0, 2.0))

    @staticmethod
    def at(entries: list[tuple[float, Any]], when: float) -> Any:
        found = None
        for t, value in entries:
            if t > when:
                break
            found = value
        return found

    def views_at(self, when: float) -> dict[str, dict[str, Any]]:
        out = {}
        for iid, entries in self.history.items():
            view = self.at(entries, when)
            if view is not None and not view.get("gone"):
                out[iid] = view
        return out

    def stale_groups(self, groups: list[FakeAutoScalingGroup], when: float) -> list[Any]:
        views = self.views_at(when)
        out = []
        for group in groups:
            members = [
                _Proxy(v["state"], lifecycle_state=v["lifecycle"], health_status=v["health"])
                for v in views.values()
                if v.get("group") == group.name and not v.get("warm")
            ]
            desired = self.at(self.group_history.get(group.name, []), when)
            out.append(
                _Proxy(
                    group,
                    instances=members,
                    instance_states=members,
                    desired_capacity=group.desired_capacity if desired is None else desired,
                )
            )
        return out

    def stale_instance_states(self, instance_ids: list[str], when: float) -> list[Any]:
        return [
            _Proxy(v["state"], lifecycle_state=v["lifecycle"], health_status=v["health"])
            for iid, v in self.views_at(when).items()
            if v.get("group") and (not instance_ids or iid in instance_ids)
        ]

    def stale_reservations(self, instance_ids: list[str], filters: Any, when: float) -> list[Any]:
        import copy

        from moto.ec2.exceptions import InvalidInstanceIdError
        from moto.ec2.utils import filter_reservations

        views = self.views_at(when)
        if instance_ids:
            missing = [i for i in instance_ids if i not in views]
            if missing:
                raise InvalidInstanceIdError(missing[0])
        by_reservation: dict[int, tuple[Any, list[Any]]] = {}
        for iid, view in views.items():
            if instance_ids and iid not in instance_ids:
                continue
            name, code = view["ec2_state"]
            tags = [{"key": k, "value": v, "resource_id": iid, "resource_type": "instance"} for k, v in view["tags"]]
            proxy = _InstanceView(view["instance"], name, code, view["ip"], view["dns"], tags)
            reservation = view["reservation"]
            by_reservation.setdefault(id(reservation), (reservation, []))[1].append(proxy)
        reservations = []
        for reservation, instances in by_reservation.values():
            copied = copy.copy(reservation)
            copied.instances = instances
            reservations.append(copied)
        if filters:
            reservations = filter_reservations(reservations, filters)
        return reservations

    # -- hooks ------------------------------------------------------------------------
    def put_hook(
        self,
        backend: AutoScalingBackend,
        *,
        group_name: str,
        name: str,
        transition: str | None,
        heartbeat_timeout: int | None,
        default_result: str | None,
        target: str | None,
        role: str | None,
        metadata: str | None,
        group_must_exist: bool = True,
    ) -> LifecycleHook:
        """Validate and store a hook the way PutLifecycleHook does (unset fields keep old values)."""
        if group_must_exist and group_name not in backend.autoscaling_groups:
            raise LifecycleValidationError(
                f"AutoScalingGroup name not found - AutoScalingGroup '{group_name}' not found"
            )
        existing = backend.lifecycle_hooks.get(f"{group_name}_{name}")
        if transition is None and existing is None:
            raise LifecycleValidationError("LifecycleTransition is required for a new lifecycle hook.")
        transition = transition if transition is not None else existing.lifecycle_transition  # type: ignore[union-attr]
        if transition not in TRANSITIONS:
            raise LifecycleValidationError(
                f"Invalid value '{transition}' for LifecycleTransition. Valid values are {LAUNCHING} and {TERMINATING}."
            )
        if heartbeat_timeout is None:
            heartbeat_timeout = existing.heartbeat_timeout if existing is not None else HEARTBEAT_DEFAULT
        if not HEARTBEAT_MIN <= int(heartbeat_timeout) <= HEARTBEAT_MAX:
            raise LifecycleValidationError(
                f"HeartbeatTimeout must be between {HEARTBEAT_MIN} and {HEARTBEAT_MAX} seconds, "
                f"got {heartbeat_timeout}."
            )
        if default_result is None:
            default_result = existing.default_result if existing is not None else "ABANDON"
        if default_result not in RESULTS:
            raise LifecycleValidationError(
                f"Invalid value '{default_result}' for DefaultResult. Valid values are CONTINUE and ABANDON."
            )
        old_target = getattr(existing, "notification_target_arn", None)
        old_role = getattr(existing, "role_arn", None)
        new_target = old_target if target is None else (target or None)
        new_role = old_role if role is None else (role or None)
        if bool(new_target) != bool(new_role):
            raise LifecycleValidationError(
                "NotificationTargetARN and RoleARN must be specified together: "
                "the role lets Auto Scaling publish to the target."
            )
        if new_target and target and not self.target_exists(new_target):
            raise LifecycleValidationError(
                f"Unable to publish test message to notification target {new_target} using IAM role {new_role}. "
                "Please check your target and role configuration and try to put lifecycle hook again."
            )
        hook = LifecycleHook(name, group_name, transition, int(heartbeat_timeout), default_result)
        hook.notification_target_arn = new_target
        hook.role_arn = new_role
        hook.notification_metadata = (
            metadata if metadata is not None else getattr(existing, "notification_metadata", None)
        )
        hook.global_timeout = min(GLOBAL_TIMEOUT_CAP, 100 * int(heartbeat_timeout))
        backend.lifecycle_hooks[f"{group_name}_{name}"] = hook
        return hook


# ---------------------------------------------------------------------------------------
# Views for stale describes and terminated instances (issue 11)
# ---------------------------------------------------------------------------------------
class _Proxy:
    """An object that reads like ``target`` except for the given attributes (moto serializes by attribute)."""

    def __init__(self, target: Any, **overrides: Any) -> None:
        self.__dict__["_target"] = target
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_target"], name)


class _InstanceView(_Proxy):
    """An EC2 instance as it was: state, addresses and tags of an older view (filters read them too)."""

    def __init__(
        self, instance: Any, name: str, code: int, ip: str | None, dns: str, tags: list[dict[str, str]]
    ) -> None:
        from types import SimpleNamespace

        state = SimpleNamespace(name=name, code=code)
        super().__init__(
            instance,
            _state=state,
            instance_state=state,
            state=name,
            state_code=code,
            private_ip=ip,
            private_ip_address=ip,
            private_dns_name=dns,
            tag_set=tags,
            tag_list=tags,
        )
        if ip is None:
            self.__dict__["network_interfaces"] = []

    def get_tags(self) -> list[dict[str, str]]:
        return self.__dict__["tag_set"]


class _Inst:
    """Addresses of a moto instance as DescribeInstances shows them (None / "" once unaddressed)."""

    @staticmethod
    def ip(instance: Any) -> str | None:
        return instance.private_ip

    @staticmethod
    def dns(instance: Any) -> str:
        return instance.private_dns_name if instance.private_ip else ""


def addresses(instance: Any) -> tuple[str | None, str]:
    """(private IP, private DNS name) the instance had, even once ``unaddress`` blanked them: for a test
    that maps record targets back to instances (no API call; the coordinator never sees this)."""
    blanked = getattr(instance, "_local_unaddressed", False)
    instance._local_unaddressed = False
    try:
        return instance.private_ip, instance.private_dns_name or ""
    finally:
        instance._local_unaddressed = blanked


def unaddress(engine: Lifecycle, instance: Any) -> None:
    """``terminated_addresses``: a terminated instance shows no private IP and an empty DNS name, and
    leaves DescribeInstances ``terminated_retention`` s later.

    AWS: the private DNS name "is not available until the instance enters the running state"
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Instance.html, PrivateDnsName), and
    real DescribeInstances output for a terminated instance has ``PrivateDnsName: ""``, no
    ``PrivateIpAddress`` and no network interfaces (the primary ENI is deleted with the instance:
    https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/terminating-instances.html). "Terminated
    instances remain visible after termination (for approximately one hour)"
    (TerminateInstances reference, e.g. https://docs.aws.amazon.com/sdkfornet1/latest/apidocs/html/T_Amazon_EC2_Model_TerminateInstancesRequest.htm).
    """
    if getattr(instance, "_local_unaddressed", False):
        return
    instance._local_unaddressed = True
    retention = getattr(engine.aws, "terminated_retention", 3600.0)
    if retention is None:
        return
    backend = instance.ec2_backend

    def forget() -> None:
        with engine.lock:
            for key, reservation in list(backend.reservations.items()):
                reservation.instances = [i for i in reservation.instances if i is not instance]
                if not reservation.instances:
                    del backend.reservations[key]
            engine.observe()

    engine.aws.clock.call_at(engine.now + float(retention), forget)


# ---------------------------------------------------------------------------------------
# Patches (installed once per process)
# ---------------------------------------------------------------------------------------
_INSTALLED = False
_CAPTURE = threading.local()
_OBSERVER = threading.local()  # depth > 0: this thread is a test observing the world (current describes)


@contextlib.contextmanager
def observer() -> Iterator[None]:
    """Describe calls made inside answer the current state (``stale_describes`` does not apply): what a
    test uses to check outcomes, as one reads AWS's settled state after the fact. The calls are logged."""
    _OBSERVER.depth = getattr(_OBSERVER, "depth", 0) + 1
    try:
        yield
    finally:
        _OBSERVER.depth -= 1


_ORIG: dict[str, Callable[..., Any]] = {}


def _engine() -> Lifecycle | None:
    from infra.local import state

    running = state.running()
    if running is None:
        return None
    return getattr(running, "_lifecycle", None)


def install(aws: Account) -> Lifecycle:
    """Attach the lifecycle engine to ``aws`` and patch moto (idempotent). Returns the engine."""
    engine = Lifecycle(aws)
    aws._lifecycle = engine  # type: ignore[attr-defined]
    if not hasattr(aws, "notifications"):
        aws.notifications = []  # type: ignore[attr-defined]
    if not hasattr(aws, "lifecycle_actions"):
        aws.lifecycle_actions = []  # type: ignore[attr-defined]
    aws.kill_instance = lambda instance_id: kill_instance(aws, instance_id)  # type: ignore[attr-defined]
    _patch()
    return engine


def kill_instance(aws: Account, instance_id: str) -> None:
    """Terminate an instance at the EC2 level (a crash, EC2 TerminateInstances).

    Default: its group drops and replaces it at once, no hooks. With ``health_check_replacement``
    the group's health check finds it later and terminates it through its hooks (``Lifecycle.killed``).
    """
    from moto.ec2.models import ec2_backends

    engine: Lifecycle | None = getattr(aws, "_lifecycle", None)
    ec2_backends[aws.account][aws.region].terminate_instances([instance_id])
    if engine is not None and engine.opt("health_check_replacement"):
        with engine.lock:
            engine.killed(instance_id)
            engine.observe()
        return
    autoscaling_backends[aws.account][aws.region].notify_terminate_instances([instance_id])


def _patch() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True

    def wrap(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        original = getattr(cls, name)
        _ORIG[f"{cls.__name__}.{name}"] = original
        replacement = make(original)
        replacement.__name__ = name
        replacement.__qualname__ = f"{cls.__name__}.{name}"
        setattr(cls, name, replacement)

    # -- group capacity ---------------------------------------------------------------
    def active_instances(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: FakeAutoScalingGroup) -> list[InstanceState]:
            if _engine() is None:
                return orig(self)
            return [s for s in self.instance_states if s.lifecycle_state in CAPACITY_STATES]

        return patched

    def replace_instances(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: FakeAutoScalingGroup, count_needed: int, propagated_tags: dict[str, str]) -> None:
            engine = _engine()
            if engine is None:
                return orig(self, count_needed, propagated_tags)
            with engine.lock:
                count_needed -= engine.take_from_pool(self, count_needed)
                if count_needed <= 0:
                    return None
                before = set(map(id, self.instance_states))
                orig(self, count_needed, propagated_tags)
                new = [s for s in self.instance_states if id(s) not in before]
                engine.launched(self, new)
            return None

        return patched

    def set_desired_capacity(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: FakeAutoScalingGroup, new_capacity: int | None) -> None:
            engine = _engine()
            if engine is None:
                return orig(self, new_capacity)
            with engine.lock:
                full = list(self.instance_states)
                counted = [s for s in full if s.lifecycle_state in CAPACITY_STATES]
                target = self.min_size if new_capacity is None else new_capacity
                policy = termination.caller()
                if policy is not None and policy.function(self) is not None and len(counted) > (target or 0):
                    # A custom termination policy chooses the victims: the group asks it after this call returns.
                    self.desired_capacity = target
                    policy.scale_in(self)
                    engine.refill(self)
                    return None
                self.instance_states = counted
                stack = getattr(_CAPTURE, "stack", None) or []
                _CAPTURE.stack = stack
                stack.append([])
                try:
                    orig(self, new_capacity)
                finally:
                    stack.pop()
                now = self.instance_states
                kept = {id(s) for s in now}
                known = {id(s) for s in full}
                # moto rebuilds the list through a set: keep launch order (deterministic runs); the
                # states it dropped stay until the lifecycle engine lets them go.
                self.instance_states = full + [s for s in now if id(s) not in known]
                removed = [s for s in counted if id(s) not in kept]
                for state in removed:
                    engine.begin_termination(self, state)
                engine.refill(self)
            return None

        return patched

    def ec2_terminate_instances(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: EC2Backend, instance_ids: list[str]) -> Any:
            stack = getattr(_CAPTURE, "stack", None)
            engine = _engine()
            if stack and engine is not None:
                # A group's scale-in inside moto: the lifecycle engine decides when they die.
                stack[-1].extend(instance_ids)
                return []
            result = orig(self, instance_ids)
            if engine is not None and engine.opt("terminated_addresses"):
                for instance_id in instance_ids:
                    unaddress(engine, self.get_instance(instance_id))
            return result

        return patched

    def ec2_run_instances(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: EC2Backend, *args: Any, **kwargs: Any) -> Any:
            reservation = orig(self, *args, **kwargs)
            engine = _engine()
            if engine is not None:
                for instance in reservation.instances:
                    engine.address(instance)
            return reservation

        return patched

    # -- backend operations -----------------------------------------------------------
    def terminate_instance(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: AutoScalingBackend, instance_id: str, should_decrement: bool) -> Any:
            engine = _engine()
            state = next(
                (
                    s
                    for g in self.autoscaling_groups.values()
                    for s in g.instance_states
                    if s.instance.id == instance_id
                ),
                None,
            )
            if engine is None or state is None:
                return orig(self, instance_id, should_decrement)
            with engine.lock:
                group = state.instance.autoscaling_group
                original_size = group.desired_capacity
                if should_decrement:
                    if group.min_size is not None and original_size <= group.min_size:
                        raise LifecycleValidationError(
                            f"Currently, desiredSize equals minSize ({group.min_size}). Terminating instance without "
                            "replacement will violate group's min size constraint. Either set "
                            "shouldDecrementDesiredCapacity flag to false or lower group's min size."
                        )
                    group.desired_capacity = original_size - 1
                if state.lifecycle_state in CAPACITY_STATES:
                    engine.begin_termination(group, state, cause="terminate")
                activity = TerminateInstanceActivity(state.instance, original_size)
                group.set_desired_capacity(group.desired_capacity)
                return activity

        return patched

    def notify_terminate(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: AutoScalingBackend, instance_ids: list[str]) -> None:
            engine = _engine()
            if engine is None:
                return orig(self, instance_ids)
            with engine.lock:
                engine.cancel(list(instance_ids), "terminated")
                for group in list(self.autoscaling_groups.values()):
                    for state in group.instance_states:
                        if state.instance.id in instance_ids:
                            engine.activity_event(group, state, "EC2 Instance Terminate Successful")
                orig(self, instance_ids)
            return None

        return patched

    def delete_group(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: AutoScalingBackend, group_name: str) -> None:
            engine = _engine()
            group = self.autoscaling_groups.get(group_name)
            if engine is None or group is None:
                return orig(self, group_name)
            with engine.lock:
                engine.delete_pool(group)
                engine.cancel([s.instance.id for s in group.instance_states], "group-deleted")
                for state in list(group.instance_states):
                    if state.lifecycle_state not in CAPACITY_STATES and state.lifecycle_state != "Standby":
                        engine.terminate_now(group, state)
                engine.bypass_hooks = True
                try:
                    orig(self, group_name)
                finally:
                    engine.bypass_hooks = False
                for key in [k for k, h in self.lifecycle_hooks.items() if h.auto_scaling_group_name == group_name]:
                    del self.lifecycle_hooks[key]
            return None

        return patched

    def delete_hook(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: AutoScalingBackend, as_name: str, name: str) -> None:
            engine = _engine()
            if engine is None:
                return orig(self, as_name, name)
            with engine.lock:
                # AWS completes outstanding actions first: ABANDON for launching, CONTINUE for terminating.
                for action in [a for a in engine.active.values() if a.group == as_name and a.hook == name]:
                    result = "ABANDON" if action.transition == LAUNCHING else "CONTINUE"
                    engine.finish(action, result, "hook-deleted")
                orig(self, as_name, name)
            return None

        return patched

    def standby(orig: Callable[..., Any], entering: bool) -> Callable[..., Any]:
        def patched(self: AutoScalingBackend, group_name: str, instance_ids: list[str], *args: Any) -> Any:
            engine = _engine()
            if engine is None or not engine.opt("standby_states"):
                return orig(self, group_name, instance_ids, *args)
            with engine.lock:
                activities = orig(self, group_name, instance_ids, *args)
                group = self.autoscaling_groups[group_name]
                states = [s for s in group.instance_states if s.instance.id in instance_ids]
                (engine.entering_standby if entering else engine.exiting_standby)(states)
                return activities

        return patched

    def put_warm_pool(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: AutoScalingBackend, group_name: str, *args: Any, **kwargs: Any) -> Any:
            engine = _engine()
            result = orig(self, group_name, *args, **kwargs)
            if engine is not None:
                with engine.lock:
                    engine.refill(self.autoscaling_groups[group_name])
            return result

        return patched

    def delete_warm_pool(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: AutoScalingBackend, group_name: str) -> Any:
            engine = _engine()
            if engine is not None and group_name in self.autoscaling_groups:
                with engine.lock:
                    engine.delete_pool(self.autoscaling_groups[group_name])
            return orig(self, group_name)

        return patched

    def describe_instances_asg(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: AutoScalingBackend, instance_ids: list[str]) -> Any:
            found = orig(self, instance_ids)
            engine = _engine()
            if engine is not None and engine.opt("warm_pools"):
                # Warm-pool instances are Auto Scaling instances too (LifecycleState Warmed:*):
                # https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_AutoScalingInstanceDetails.html
                for members in engine.warm.values():
                    found.extend(s for s in members if not instance_ids or s.instance.id in instance_ids)
            return found

        return patched

    wrap(AutoScalingBackend, "enter_standby_instances", lambda orig: standby(orig, True))
    wrap(AutoScalingBackend, "exit_standby_instances", lambda orig: standby(orig, False))
    wrap(AutoScalingBackend, "put_warm_pool", put_warm_pool)
    wrap(AutoScalingBackend, "delete_warm_pool", delete_warm_pool)
    wrap(AutoScalingBackend, "describe_auto_scaling_instances", describe_instances_asg)
    _patch_instances()
    _patch_describes()

    wrap(FakeAutoScalingGroup, "active_instances", active_instances)
    wrap(FakeAutoScalingGroup, "replace_autoscaling_group_instances", replace_instances)
    wrap(FakeAutoScalingGroup, "set_desired_capacity", set_desired_capacity)
    wrap(EC2Backend, "terminate_instances", ec2_terminate_instances)
    wrap(EC2Backend, "run_instances", ec2_run_instances)
    wrap(AutoScalingBackend, "terminate_instance", terminate_instance)
    wrap(AutoScalingBackend, "notify_terminate_instances", notify_terminate)
    wrap(AutoScalingBackend, "delete_auto_scaling_group", delete_group)
    wrap(AutoScalingBackend, "delete_lifecycle_hook", delete_hook)

    # -- API operations ---------------------------------------------------------------
    def put_lifecycle_hook(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: AutoScalingResponse) -> Any:
            engine = _engine()
            if engine is None:
                return orig(self)
            group_name = self._get_param("AutoScalingGroupName")
            with engine.lock:
                hook = engine.put_hook(
                    self.autoscaling_backend,
                    group_name=group_name,
                    name=self._get_param("LifecycleHookName"),
                    transition=self._get_param("LifecycleTransition"),
                    heartbeat_timeout=self._get_int_param("HeartbeatTimeout"),
                    default_result=self._get_param("DefaultResult"),
                    target=self._get_param("NotificationTargetARN"),
                    role=self._get_param("RoleARN"),
                    metadata=self._get_param("NotificationMetadata"),
                )
                if hook.notification_target_arn and self._get_param("NotificationTargetARN"):
                    group = self.autoscaling_backend.autoscaling_groups[group_name]
                    engine.test_notification(group_name, group.arn, hook)
            return EmptyResult()

        return patched

    def create_group(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: AutoScalingResponse) -> Any:
            engine = _engine()
            specs = self._get_param("LifecycleHookSpecificationList", []) or []
            group_name = self._get_param("AutoScalingGroupName")
            backend = self.autoscaling_backend
            if engine is None or not specs or group_name in backend.autoscaling_groups:
                return orig(self)
            with engine.lock:
                # Hooks given with the group exist before its first instances launch.
                hooks = [
                    engine.put_hook(
                        backend,
                        group_name=group_name,
                        name=spec.get("LifecycleHookName"),
                        transition=spec.get("LifecycleTransition"),
                        heartbeat_timeout=int(spec["HeartbeatTimeout"]) if spec.get("HeartbeatTimeout") else None,
                        default_result=spec.get("DefaultResult"),
                        target=spec.get("NotificationTargetARN"),
                        role=spec.get("RoleARN"),
                        metadata=spec.get("NotificationMetadata"),
                        group_must_exist=False,
                    )
                    for spec in specs
                ]
                try:
                    response = orig(self)
                except BaseException:
                    for hook in hooks:
                        backend.lifecycle_hooks.pop(f"{group_name}_{hook.name}", None)
                    raise
                group = backend.autoscaling_groups[group_name]
                for hook in hooks:
                    if hook.notification_target_arn:
                        engine.test_notification(group_name, group.arn, hook)
                return response

        return patched

    wrap(AutoScalingResponse, "put_lifecycle_hook", put_lifecycle_hook)
    wrap(AutoScalingResponse, "create_auto_scaling_group", create_group)

    def complete_lifecycle_action(self: AutoScalingResponse) -> Any:
        engine = _engine()
        if engine is None:
            raise NotImplementedError("CompleteLifecycleAction needs a running infra.local.LocalAWS")
        engine.complete(
            self._get_param("AutoScalingGroupName"),
            self._get_param("LifecycleHookName"),
            self._get_param("LifecycleActionResult"),
            self._get_param("LifecycleActionToken"),
            self._get_param("InstanceId"),
        )
        return EmptyResult()

    def record_lifecycle_action_heartbeat(self: AutoScalingResponse) -> Any:
        engine = _engine()
        if engine is None:
            raise NotImplementedError("RecordLifecycleActionHeartbeat needs a running infra.local.LocalAWS")
        engine.heartbeat(
            self._get_param("AutoScalingGroupName"),
            self._get_param("LifecycleHookName"),
            self._get_param("LifecycleActionToken"),
            self._get_param("InstanceId"),
        )
        return EmptyResult()

    AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action  # type: ignore[attr-defined]
    AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat  # type: ignore[attr-defined]


def _patch_instances() -> None:
    """moto's Instance addresses, empty once ``unaddress`` ran (``terminated_addresses``)."""
    from moto.ec2.models.instances import Instance

    def blank(name: str, empty: Any) -> None:
        original = getattr(Instance, name)
        _ORIG[f"Instance.{name}"] = original

        def getter(self: Any) -> Any:
            if getattr(self, "_local_unaddressed", False):
                return empty() if callable(empty) else empty
            return original.fget(self)

        setattr(Instance, name, property(getter))

    blank("private_ip", None)
    blank("private_ip_address", None)
    blank("private_dns_name", "")
    blank("network_interfaces", list)


def _patch_describes() -> None:
    """Describe calls answered from an older view (``stale_describes``), and observations after each request."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses import EC2Response
    from moto.ec2.responses.instances import InstanceResponse

    asg_call = AutoScalingResponse.call_action

    def asg_call_action(self: AutoScalingResponse) -> Any:
        try:
            return asg_call(self)
        finally:
            engine = _engine()
            if engine is not None:
                with engine.lock:
                    engine.observe()

    def ec2_call_action(self: Any) -> Any:
        try:
            return super(EC2Response, self).call_action()
        finally:
            engine = _engine()
            if engine is not None:
                with engine.lock:
                    engine.observe()

    AutoScalingResponse.call_action = asg_call_action  # type: ignore[method-assign]
    EC2Response.call_action = ec2_call_action  # type: ignore[method-assign]

    orig_groups = AutoScalingResponse.describe_auto_scaling_groups
    orig_instances = AutoScalingResponse.describe_auto_scaling_instances
    orig_ec2 = InstanceResponse.describe_instances
    orig_warm = AutoScalingResponse.describe_warm_pool

    def describe_auto_scaling_groups(self: AutoScalingResponse) -> Any:
        engine = _engine()
        when = engine.stale_time() if engine is not None else None
        if when is None:
            return orig_groups(self)
        with engine.lock:  # type: ignore[union-attr]
            backend = self.autoscaling_backend
            names = self._get_param("AutoScalingGroupNames", [])
            groups = backend.describe_auto_scaling_groups(names, filters=self._get_param("Filters", []))
            token = self._get_param("NextToken")
            start = [g.name for g in groups].index(token) + 1 if token else 0
            max_records = self._get_int_param("MaxRecords", 50)
            page = groups[start : start + max_records]
            next_token = page[-1].name if max_records and len(groups) > start + max_records else None
            views = engine.stale_groups(page, when)  # type: ignore[union-attr]
            return ActionResult({"AutoScalingGroups": views, "NextToken": next_token})

    def describe_auto_scaling_instances(self: AutoScalingResponse) -> Any:
        engine = _engine()
        when = engine.stale_time() if engine is not None else None
        if when is None:
            return orig_instances(self)
        with engine.lock:  # type: ignore[union-attr]
            ids = self._get_param("InstanceIds", [])
            return ActionResult({"AutoScalingInstances": engine.stale_instance_states(ids, when)})  # type: ignore[union-attr]

    def describe_instances(self: Any) -> Any:
        engine = _engine()
        when = engine.stale_time() if engine is not None else None
        if when is None:
            return orig_ec2(self)
        self.error_on_dryrun()
        with engine.lock:  # type: ignore[union-attr]
            filters = self._filters_from_querystring()
            ids = self._get_param("InstanceIds", [])
            reservations = engine.stale_reservations(ids, filters, when)  # type: ignore[union-attr]
            token = self._get_param("NextToken")
            start = [r.id for r in reservations].index(token) + 1 if token else 0
            max_results = int(self._get_param("MaxResults", 100))
            page = reservations[start : start + max_results]
            next_token = page[-1].id if max_results and len(reservations) > start + max_results else None
            return ActionResult({"Reservations": page, "NextToken": next_token})

    def describe_warm_pool(self: AutoScalingResponse) -> Any:
        engine = _engine()
        if engine is None or not engine.opt("warm_pools"):
            return orig_warm(self)
        group_name = self._get_param("AutoScalingGroupName")
        with engine.lock:
            pool = self.autoscaling_backend.describe_warm_pool(group_name=group_name)
            members = list(engine.warm.get(group_name, [])) if pool is not None else []
            return ActionResult({"WarmPoolConfiguration": pool, "Instances": members})

    AutoScalingResponse.describe_auto_scaling_groups = describe_auto_scaling_groups  # type: ignore[method-assign]
    AutoScalingResponse.describe_auto_scaling_instances = describe_auto_scaling_instances  # type: ignore[method-assign]
    InstanceResponse.describe_instances = describe_instances  # type: ignore[method-assign]
    AutoScalingResponse.describe_warm_pool = describe_warm_pool  # type: ignore[method-assign]
