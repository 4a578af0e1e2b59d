"""Auto Scaling's API operations moto lacks or gets wrong, served by the engine: PutLifecycleHook and
CreateAutoScalingGroup's hooks (validated, test notification), CompleteLifecycleAction,
RecordLifecycleActionHeartbeat, EnterStandby/ExitStandby, PutWarmPool/DeleteWarmPool and the warm pool's instances
in DescribeAutoScalingInstances."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.autoscaling.models import AutoScalingBackend, LifecycleHook
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import EmptyResult

from infra.local.account import flag
from infra.local.autoscaling.engine import running
from infra.local.autoscaling.hooks import put_hook
from infra.local.autoscaling.patching import wrap


def install() -> None:
    wrap(AutoScalingBackend, "enter_standby_instances", lambda orig: _standby(orig, True))
    wrap(AutoScalingBackend, "exit_standby_instances", lambda orig: _standby(orig, False))
    wrap(AutoScalingBackend, "put_warm_pool", _put_warm_pool)
    wrap(AutoScalingBackend, "delete_warm_pool", _delete_warm_pool)
    wrap(AutoScalingBackend, "describe_auto_scaling_instances", _describe_instances_with_pool)
    wrap(AutoScalingResponse, "put_lifecycle_hook", _put_lifecycle_hook)
    wrap(AutoScalingResponse, "create_auto_scaling_group", _create_group)
    AutoScalingResponse.complete_lifecycle_action = _complete_lifecycle_action  # type: ignore[attr-defined]
    AutoScalingResponse.record_lifecycle_action_heartbeat = _record_heartbeat  # type: ignore[attr-defined]


# -- standby and warm pools -----------------------------------------------------------
def _standby(orig: Callable[..., Any], entering: bool) -> Callable[..., Any]:
    def patched(self: AutoScalingBackend, group_name: str, instance_ids: list[str], *args: Any) -> Any:
        engine = running()
        if engine is None or not flag(engine.aws, "standby_states"):
            return orig(self, group_name, instance_ids, *args)
        with engine.lock:
            activities = orig(self, group_name, instance_ids, *args)
            group = self.autoscaling_groups[group_name]
            states = [s for s in group.instance_states if s.instance.id in instance_ids]
            (engine.standby.enter if entering else engine.standby.exit)(states)
            return activities

    return patched


def _put_warm_pool(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: AutoScalingBackend, group_name: str, *args: Any, **kwargs: Any) -> Any:
        engine = running()
        result = orig(self, group_name, *args, **kwargs)
        if engine is not None:
            with engine.lock:
                engine.pool.refill(self.autoscaling_groups[group_name])
        return result

    return patched


def _delete_warm_pool(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: AutoScalingBackend, group_name: str) -> Any:
        engine = running()
        if engine is not None and group_name in self.autoscaling_groups:
            with engine.lock:
                engine.pool.delete(self.autoscaling_groups[group_name])
        return orig(self, group_name)

    return patched


def _describe_instances_with_pool(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: AutoScalingBackend, instance_ids: list[str]) -> Any:
        found = orig(self, instance_ids)
        engine = running()
        if engine is not None and flag(engine.aws, "warm_pools"):
            # Warm-pool instances are Auto Scaling instances too (LifecycleState Warmed:*):
            # https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_AutoScalingInstanceDetails.html
            for members in engine.states.warm.values():
                found.extend(s for s in members if not instance_ids or s.instance.id in instance_ids)
        return found

    return patched


# -- lifecycle hooks ----------------------------------------------------------------------
def _put_lifecycle_hook(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: AutoScalingResponse) -> Any:
        engine = running()
        if engine is None:
            return orig(self)
        group_name = self._get_param("AutoScalingGroupName")
        with engine.lock:
            hook = put_hook(
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
                engine.notifier.test_notification(group_name, group.arn, hook)
        return EmptyResult()

    return patched


def _create_group(orig: Callable[..., Any]) -> Callable[..., Any]:
    def patched(self: AutoScalingResponse) -> Any:
        engine = running()
        specs = self._get_param("LifecycleHookSpecificationList", []) or []
        group_name = self._get_param("AutoScalingGroupName")
        backend = self.autoscaling_backend
        if engine is None or not specs or group_name in backend.autoscaling_groups:
            return orig(self)
        with engine.lock:
            # Hooks given with the group exist before its first instances launch.
            hooks = [_hook_of_spec(backend, group_name, spec) for spec in specs]
            try:
                response = orig(self)
            except BaseException:
                for hook in hooks:
                    backend.lifecycle_hooks.pop(f"{group_name}_{hook.name}", None)
                raise
            group = backend.autoscaling_groups[group_name]
            for hook in hooks:
                if hook.notification_target_arn:
                    engine.notifier.test_notification(group_name, group.arn, hook)
            return response

    return patched


def _hook_of_spec(backend: AutoScalingBackend, group_name: str, spec: dict[str, Any]) -> LifecycleHook:
    """One entry of CreateAutoScalingGroup's LifecycleHookSpecificationList, validated and stored."""
    return put_hook(
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


# -- lifecycle actions (moto has neither operation) ----------------------------------------
def _complete_lifecycle_action(self: AutoScalingResponse) -> Any:
    engine = running()
    if engine is None:
        raise NotImplementedError("CompleteLifecycleAction needs a running infra.local.LocalAWS")
    engine.actions.complete(
        self._get_param("AutoScalingGroupName"),
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionResult"),
        self._get_param("LifecycleActionToken"),
        self._get_param("InstanceId"),
    )
    return EmptyResult()


def _record_heartbeat(self: AutoScalingResponse) -> Any:
    engine = running()
    if engine is None:
        raise NotImplementedError("RecordLifecycleActionHeartbeat needs a running infra.local.LocalAWS")
    engine.actions.heartbeat(
        self._get_param("AutoScalingGroupName"),
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionToken"),
        self._get_param("InstanceId"),
    )
    return EmptyResult()
