"""PutLifecycleHook's validation, as Auto Scaling answers it: the transition, HeartbeatTimeout (30-7200 s),
DefaultResult, NotificationTargetARN and RoleARN together, a target that exists; unset fields keep the values of
the hook being updated."""

from __future__ import annotations

from moto.autoscaling.models import AutoScalingBackend, LifecycleHook

from infra.local.autoscaling.model import (
    GLOBAL_TIMEOUT_CAP,
    HEARTBEAT_DEFAULT,
    HEARTBEAT_MAX,
    HEARTBEAT_MIN,
    LAUNCHING,
    RESULTS,
    TERMINATING,
    TRANSITIONS,
    LifecycleValidationError,
)
from infra.local.autoscaling.notifications import target_exists


def put_hook(
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
        raise LifecycleValidationError(f"AutoScalingGroup name not found - AutoScalingGroup '{group_name}' not found")
    existing = backend.lifecycle_hooks.get(f"{group_name}_{name}")
    transition = _transition(transition, existing)
    heartbeat_timeout = _heartbeat_timeout(heartbeat_timeout, existing)
    if default_result is None:
        default_result = existing.default_result if existing is not None else "ABANDON"
    if default_result not in RESULTS:
        raise LifecycleValidationError(
            f"Invalid value '{default_result}' for DefaultResult. Valid values are CONTINUE and ABANDON."
        )
    new_target, new_role = _target_and_role(target, role, existing)
    hook = LifecycleHook(name, group_name, transition, heartbeat_timeout, default_result)
    hook.notification_target_arn = new_target
    hook.role_arn = new_role
    hook.notification_metadata = metadata if metadata is not None else getattr(existing, "notification_metadata", None)
    hook.global_timeout = min(GLOBAL_TIMEOUT_CAP, 100 * heartbeat_timeout)
    backend.lifecycle_hooks[f"{group_name}_{name}"] = hook
    return hook


def _transition(transition: str | None, existing: LifecycleHook | None) -> str:
    if transition is None and existing is None:
        raise LifecycleValidationError("LifecycleTransition is required for a new lifecycle hook.")
    transition = transition if transition is not None else existing.lifecycle_transition  # type: ignore[union-attr]
    if transition not in TRANSITIONS:
        raise LifecycleValidationError(
            f"Invalid value '{transition}' for LifecycleTransition. Valid values are {LAUNCHING} and {TERMINATING}."
        )
    return transition


def _heartbeat_timeout(heartbeat_timeout: int | None, existing: LifecycleHook | None) -> int:
    if heartbeat_timeout is None:
        heartbeat_timeout = existing.heartbeat_timeout if existing is not None else HEARTBEAT_DEFAULT
    if not HEARTBEAT_MIN <= int(heartbeat_timeout) <= HEARTBEAT_MAX:
        raise LifecycleValidationError(
            f"HeartbeatTimeout must be between {HEARTBEAT_MIN} and {HEARTBEAT_MAX} seconds, got {heartbeat_timeout}."
        )
    return int(heartbeat_timeout)


def _target_and_role(
    target: str | None, role: str | None, existing: LifecycleHook | None
) -> tuple[str | None, str | None]:
    """The hook's NotificationTargetARN and RoleARN: given together, the target one that exists."""
    old_target = getattr(existing, "notification_target_arn", None)
    old_role = getattr(existing, "role_arn", None)
    new_target = old_target if target is None else (target or None)
    new_role = old_role if role is None else (role or None)
    if bool(new_target) != bool(new_role):
        raise LifecycleValidationError(
            "NotificationTargetARN and RoleARN must be specified together: "
            "the role lets Auto Scaling publish to the target."
        )
    if new_target and target and not target_exists(new_target):
        raise LifecycleValidationError(
            f"Unable to publish test message to notification target {new_target} using IAM role {new_role}. "
            "Please check your target and role configuration and try to put lifecycle hook again."
        )
    return new_target, new_role
