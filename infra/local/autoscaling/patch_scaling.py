"""moto's group capacity and instance removal, patched to follow the engine: what counts toward capacity,
launches (warm pool first, then Pending), scale-in through the terminate hooks (or the custom termination policy),
TerminateInstanceInAutoScalingGroup, EC2-level termination and addresses, deleting a group or a hook."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    InstanceState,
    TerminateInstanceActivity,
)
from moto.ec2.models import EC2Backend

from infra.local import termination
from infra.local.account import flag
from infra.local.autoscaling.addressing import patch_instances, unaddress
from infra.local.autoscaling.engine import Lifecycle, running
from infra.local.autoscaling.model import CAPACITY_STATES, LAUNCHING, LifecycleValidationError
from infra.local.autoscaling.patching import wrap

# Per thread, a stack of the instance ids moto terminated inside a patched SetDesiredCapacity (the engine, not
# moto, decides when they die).
_CAPTURE = threading.local()


def install() -> None:
    patch_instances()
    wrap(FakeAutoScalingGroup, "active_instances", _active_instances)
    wrap(FakeAutoScalingGroup, "replace_autoscaling_group_instances", _replace_instances)
    wrap(FakeAutoScalingGroup, "set_desired_capacity", _set_desired_capacity)
    wrap(EC2Backend, "terminate_instances", _ec2_terminate_instances)
    wrap(EC2Backend, "run_instances", _ec2_run_instances)
    wrap(AutoScalingBackend, "terminate_instance", _terminate_instance)
    wrap(AutoScalingBackend, "notify_terminate_instances", _notify_terminate)
    wrap(AutoScalingBackend, "delete_auto_scaling_group", _delete_group)
    wrap(AutoScalingBackend, "delete_lifecycle_hook", _delete_hook)


# -- group capacity -------------------------------------------------------------------
def _active_instances(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: FakeAutoScalingGroup) -> list[InstanceState]:
        if running() is None:
            return orig(self)
        return [s for s in self.instance_states if s.lifecycle_state in CAPACITY_STATES]

    return patched


def _replace_instances(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: FakeAutoScalingGroup, count_needed: int, propagated_tags: dict[str, str]) -> None:
        engine = running()
        if engine is None:
            return orig(self, count_needed, propagated_tags)
        with engine.lock:
            ready = engine.pool.take(self, count_needed)
            if ready:
                engine.transitions.launched(self, ready, origin="WarmPool")
            count_needed -= len(ready)
            if count_needed <= 0:
                return None
            before = set(map(id, self.instance_states))
            orig(self, count_needed, propagated_tags)
            new = [s for s in self.instance_states if id(s) not in before]
            engine.transitions.launched(self, new)
        return None

    return patched


def _set_desired_capacity(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: FakeAutoScalingGroup, new_capacity: int | None) -> None:
        engine = running()
        if engine is None:
            return orig(self, new_capacity)
        with engine.lock:
            counted = [s for s in self.instance_states if s.lifecycle_state in CAPACITY_STATES]
            target = self.min_size if new_capacity is None else new_capacity
            policy = termination.caller()
            if policy is not None and policy.function(self) is not None and len(counted) > (target or 0):
                # A custom termination policy chooses the victims: the group asks it after this call returns.
                self.desired_capacity = target
                policy.scale_in(self)
            else:
                _scale(engine, self, orig, new_capacity, counted)
            engine.pool.refill(self)
        return None

    return patched


def _scale(
    engine: Lifecycle,
    group: FakeAutoScalingGroup,
    orig: Callable[..., Any],
    new_capacity: int | None,
    counted: list[InstanceState],
) -> None:
    """moto's SetDesiredCapacity on the instances that count; those it drops leave through the terminate hooks."""
    full = list(group.instance_states)
    group.instance_states = counted
    stack = getattr(_CAPTURE, "stack", None) or []
    _CAPTURE.stack = stack
    stack.append([])
    try:
        orig(group, new_capacity)
    finally:
        stack.pop()
    now = group.instance_states
    kept = {id(s) for s in now}
    known = {id(s) for s in full}
    # moto rebuilds the list through a set: keep launch order (deterministic runs); the
    # states it dropped stay until the lifecycle engine lets them go.
    group.instance_states = full + [s for s in now if id(s) not in known]
    removed = [s for s in counted if id(s) not in kept]
    for state in removed:
        engine.transitions.begin_termination(group, state)


# -- EC2 --------------------------------------------------------------------------------
def _ec2_terminate_instances(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: EC2Backend, instance_ids: list[str]) -> Any:
        stack = getattr(_CAPTURE, "stack", None)
        engine = running()
        if stack and engine is not None:
            # A group's scale-in inside moto: the lifecycle engine decides when they die.
            stack[-1].extend(instance_ids)
            return []
        result = orig(self, instance_ids)
        if engine is not None and flag(engine.aws, "terminated_addresses"):
            for instance_id in instance_ids:
                unaddress(engine.aws, self.get_instance(instance_id), engine.states.observe)
        return result

    return patched


def _ec2_run_instances(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: EC2Backend, *args: Any, **kwargs: Any) -> Any:
        reservation = orig(self, *args, **kwargs)
        engine = running()
        if engine is not None:
            launched = datetime.fromtimestamp(engine.aws.clock.now(), UTC).replace(tzinfo=None)
            for instance in reservation.instances:
                engine.addresses.assign(instance)
                # EC2's LaunchTime on the emulator's clock (moto stamps the machine's): the coordinator dates a
                # launch's action by it (``decide.action_started``).
                instance.launch_time = launched
        return reservation

    return patched


# -- instances leaving ------------------------------------------------------------------
def _terminate_instance(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: AutoScalingBackend, instance_id: str, should_decrement: bool) -> Any:
        engine = running()
        state = next(
            (s for g in self.autoscaling_groups.values() for s in g.instance_states if s.instance.id == instance_id),
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
                engine.transitions.begin_termination(group, state, cause="terminate")
            activity = TerminateInstanceActivity(state.instance, original_size)
            group.set_desired_capacity(group.desired_capacity)
            return activity

    return patched


def _notify_terminate(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: AutoScalingBackend, instance_ids: list[str]) -> None:
        engine = running()
        if engine is None:
            return orig(self, instance_ids)
        with engine.lock:
            engine.actions.cancel(list(instance_ids), "terminated")
            for group in list(self.autoscaling_groups.values()):
                for state in group.instance_states:
                    if state.instance.id in instance_ids:
                        engine.notifier.activity(group, state, "EC2 Instance Terminate Successful")
            orig(self, instance_ids)
        return None

    return patched


def _delete_group(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: AutoScalingBackend, group_name: str) -> None:
        engine = running()
        group = self.autoscaling_groups.get(group_name)
        if engine is None or group is None:
            return orig(self, group_name)
        with engine.lock:
            engine.pool.delete(group)
            engine.actions.cancel([s.instance.id for s in group.instance_states], "group-deleted")
            for state in list(group.instance_states):
                if state.lifecycle_state not in CAPACITY_STATES and state.lifecycle_state != "Standby":
                    engine.transitions.terminate_now(group, state)
            engine.bypass_hooks = True
            try:
                orig(self, group_name)
            finally:
                engine.bypass_hooks = False
            for key in [k for k, h in self.lifecycle_hooks.items() if h.auto_scaling_group_name == group_name]:
                del self.lifecycle_hooks[key]
        return None

    return patched


def _delete_hook(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: AutoScalingBackend, as_name: str, name: str) -> None:
        engine = running()
        if engine is None:
            return orig(self, as_name, name)
        with engine.lock:
            # AWS completes outstanding actions first: ABANDON for launching, CONTINUE for terminating.
            for action in [a for a in engine.actions.active.values() if a.group == as_name and a.hook == name]:
                result = "ABANDON" if action.transition == LAUNCHING else "CONTINUE"
                engine.actions.finish(action, result, "hook-deleted")
            orig(self, as_name, name)
        return None

    return patched
