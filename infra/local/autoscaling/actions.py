"""Lifecycle actions: one per instance and hook, with its token, heartbeat timer and global timeout.

An action starts when an instance enters a wait state (its notifications go out), is kept alive by
RecordLifecycleActionHeartbeat, and ends by CompleteLifecycleAction, by its timeout (the hook's DefaultResult),
or without a result when the instance leaves by another path. What a result does to the instance is the owner's
``apply`` (``transitions.Transitions.apply``).
"""

from __future__ import annotations

from collections.abc import Callable

from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState, LifecycleHook

from infra.local.account import new_uuid
from infra.local.autoscaling.model import (
    GLOBAL_TIMEOUT_CAP,
    LAUNCHING,
    RESULTS,
    LifecycleActionRecord,
    LifecycleValidationError,
)
from infra.local.autoscaling.notifications import Notifier
from infra.local.autoscaling.states import InstanceStates


class Actions:
    """The lifecycle actions of one account (``active`` by token; every one in ``aws.lifecycle_actions``)."""

    def __init__(self, states: InstanceStates, notifier: Notifier) -> None:
        self.states = states
        self.aws = states.aws
        self.lock = states.lock
        self.notifier = notifier
        self.active: dict[str, LifecycleActionRecord] = {}
        # What a result does to the instance (set by the engine: transitions.Transitions.apply).
        self.apply: Callable[[LifecycleActionRecord, str], None] = lambda action, result: None

    def start(
        self,
        group: FakeAutoScalingGroup,
        state: InstanceState,
        hook: LifecycleHook,
        transition: str,
        origin: str = "",
        destination: str = "",
    ) -> None:
        """The instance waits for ``hook``: a new action, its timer, its notifications."""
        now = self.states.now
        timeout = int(hook.heartbeat_timeout)
        if not origin:
            origin, destination = (
                ("EC2", "AutoScalingGroup") if transition == LAUNCHING else ("AutoScalingGroup", "EC2")
            )
        action = LifecycleActionRecord(
            token=new_uuid(self.aws),
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
        self.notifier.lifecycle_action(group, hook, action)

    def arm(self, action: LifecycleActionRecord) -> None:
        """(Re)start the action's timer; an older timer of the action no longer fires."""
        action.generation += 1
        generation = action.generation
        self.aws.clock.call_at(action.deadline, lambda: self.expire(action, generation))

    def expire(self, action: LifecycleActionRecord, generation: int) -> None:
        """The timer fired: the hook's DefaultResult (ABANDON when the hook is gone)."""
        with self.lock:
            if action.active and action.generation == generation:
                hook = self.states.hook_named(action.group, action.hook)
                result = hook.default_result if hook is not None else "ABANDON"
                self.finish(action, result, "timeout")

    def find(self, group: str, hook: str, token: str | None, instance_id: str | None) -> LifecycleActionRecord:
        """The active action a Complete/Heartbeat call names (by token, else by instance id), as AWS finds it."""
        if not token and not instance_id:
            raise LifecycleValidationError("Either LifecycleActionToken or InstanceId must be specified.")
        for action in list(self.active.values()):
            if action.group != group or action.hook != hook:
                continue
            if (token and action.token == token) or (not token and action.instance_id == instance_id):
                if self.states.now >= min(action.deadline, action.global_deadline):
                    # The timer has not fired yet (wall clock): the action is expired all the same.
                    self.expire(action, action.generation)
                    break
                return action
        if token:
            raise LifecycleValidationError(f"No active Lifecycle Action found with token {token}")
        raise LifecycleValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")

    def complete(self, group: str, hook: str, result: str, token: str | None, instance_id: str | None) -> None:
        """CompleteLifecycleAction."""
        with self.lock:
            if result not in RESULTS:
                raise LifecycleValidationError(
                    f"Invalid LifecycleActionResult: {result}. Valid values are CONTINUE and ABANDON."
                )
            self.finish(self.find(group, hook, token, instance_id), result, "complete")

    def heartbeat(self, group: str, hook: str, token: str | None, instance_id: str | None) -> None:
        """RecordLifecycleActionHeartbeat: the timeout starts again, never past the global timeout."""
        with self.lock:
            action = self.find(group, hook, token, instance_id)
            action.heartbeats += 1
            action.deadline = min(self.states.now + action.heartbeat_timeout, action.global_deadline)
            self.arm(action)

    def cancel(self, instance_ids: list[str], reason: str) -> None:
        """End the actions of instances that are leaving by another path (no notification, no result)."""
        for action in list(self.active.values()):
            if action.instance_id in instance_ids:
                self.end(action, None, reason)

    def end(self, action: LifecycleActionRecord, result: str | None, by: str) -> None:
        action.ended_at = self.states.now
        action.result = result
        action.ended_by = by
        self.active.pop(action.token, None)

    def finish(self, action: LifecycleActionRecord, result: str, by: str) -> None:
        """End the action with ``result`` and apply it to the instance."""
        self.end(action, result, by)
        self.apply(action, result)
