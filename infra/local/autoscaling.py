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

import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from infra.local.aws import LocalAWS

log = logging.getLogger(__name__)

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
TRANSITIONS = (LAUNCHING, TERMINATING)
RESULTS = ("CONTINUE", "ABANDON")
HEARTBEAT_MIN, HEARTBEAT_MAX, HEARTBEAT_DEFAULT = 30, 7200, 3600
GLOBAL_TIMEOUT_CAP = 48 * 3600
# Lifecycle states that count toward the group's capacity (moto counts only InService).
CAPACITY_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})


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

    def __init__(self, aws: LocalAWS) -> None:
        self.aws = aws
        self.lock = threading.RLock()
        self.active: dict[str, LifecycleActionRecord] = {}
        self.bypass_hooks = False
        ips = getattr(aws, "instance_ips", None)
        self._ips: Iterator[str] | None = iter(ips) if ips is not None else None

    # -- helpers ----------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.aws.clock.now()

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self.aws.rng.getrandbits(128), version=4))

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

    # -- launching --------------------------------------------------------------------
    def launched(self, group: FakeAutoScalingGroup, states: list[InstanceState]) -> None:
        hooks = self.hooks(group, LAUNCHING)
        for state in states:
            if hooks and not self.bypass_hooks:
                state.lifecycle_state = "Pending:Wait"
                self.start_action(group, state, hooks[0], LAUNCHING)
            else:
                state.lifecycle_state = "InService"
                self.activity_event(group, state, "EC2 Instance Launch Successful")

    # -- terminating ------------------------------------------------------------------
    def begin_termination(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        """Scale-in / TerminateInstanceInAutoScalingGroup: Terminating:Wait per hook, or gone."""
        self.cancel([state.instance.id], "terminated")
        hooks = self.hooks(group, TERMINATING)
        if hooks and not self.bypass_hooks:
            state.lifecycle_state = "Terminating:Wait"
            self.start_action(group, state, hooks[0], TERMINATING)
        else:
            self.terminate_now(group, state)

    def terminate_now(self, group: FakeAutoScalingGroup, state: InstanceState, *, event: bool = True) -> None:
        state.lifecycle_state = "Terminated"
        group.instance_states = [s for s in group.instance_states if s is not state]
        group.autoscaling_backend.ec2_backend.terminate_instances([state.instance.id])
        if event:
            self.activity_event(group, state, "EC2 Instance Terminate Successful")

    # -- actions ----------------------------------------------------------------------
    def start_action(
        self, group: FakeAutoScalingGroup, state: InstanceState, hook: LifecycleHook, transition: str
    ) -> None:
        now = self.now
        timeout = int(hook.heartbeat_timeout)
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
        state = self.state_of(group, action.instance_id) if group is not None else None
        if group is None or state is None:
            return
        hooks = self.hooks(group, action.transition)
        names = [h.name for h in hooks]
        following = hooks[names.index(action.hook) + 1 :] if action.hook in names else []
        if action.transition == LAUNCHING:
            if result == "CONTINUE":
                if following:
                    self.start_action(group, state, following[0], LAUNCHING)
                else:
                    state.lifecycle_state = "InService"
                    self.activity_event(group, state, "EC2 Instance Launch Successful")
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
            self.start_action(group, state, following[0], TERMINATING)
        else:
            self.terminate_now(group, state)

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
            "Origin": "EC2" if launching else "AutoScalingGroup",
            "Destination": "AutoScalingGroup" if launching else "EC2",
        }
        instance_arn = f"arn:aws:ec2:{self.aws.region}:{self.aws.account}:instance/{instance.id}"
        self.put_event(detail_type, detail, [group.arn, instance_arn])

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
# Patches (installed once per process)
# ---------------------------------------------------------------------------------------
_INSTALLED = False
_CAPTURE = threading.local()
_ORIG: dict[str, Callable[..., Any]] = {}


def _engine() -> Lifecycle | None:
    from infra.local import aws as aws_module

    running = aws_module._CURRENT
    if running is None:
        return None
    return getattr(running, "_lifecycle", None)


def install(aws: LocalAWS) -> Lifecycle:
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


def kill_instance(aws: LocalAWS, instance_id: str) -> None:
    """Terminate an instance at the EC2 level, bypassing hooks; its group drops and replaces it."""
    from moto.ec2.models import ec2_backends

    ec2_backends[aws.account][aws.region].terminate_instances([instance_id])
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
            return None

        return patched

    def ec2_terminate_instances(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: EC2Backend, instance_ids: list[str]) -> Any:
            stack = getattr(_CAPTURE, "stack", None)
            if stack and _engine() is not None:
                # A group's scale-in inside moto: the lifecycle engine decides when they die.
                stack[-1].extend(instance_ids)
                return []
            return orig(self, instance_ids)

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
                    engine.begin_termination(group, state)
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
