"""Auto Scaling lifecycle hooks on top of moto: wait states, notifications, completion, timeouts, warm pools,
standby, health checks and eventually consistent describes, as AWS behaves.

moto keeps every instance ``InService``, sends nothing and does not implement
``CompleteLifecycleAction``/``RecordLifecycleActionHeartbeat``. ``install`` gives the account its engine
(``engine.Lifecycle``, one part per concern) and patches moto's (global) Auto Scaling, EC2 and response classes
once per process (``patch_scaling``, ``patch_api``, ``patch_describes``); every patched method asks
``engine.running()`` for the running emulator's engine and behaves like plain moto when none runs.

Example:
    >>> with LocalAWS(clock=SimClock()) as aws:          # doctest: +SKIP
    ...     asg = aws.client("autoscaling")
    ...     # put a launch hook, scale out: the instance waits in Pending:Wait
    ...     asg.complete_lifecycle_action(AutoScalingGroupName="g", LifecycleHookName="h",
    ...                                   InstanceId=iid, LifecycleActionResult="CONTINUE")
"""

from __future__ import annotations

from infra.local.account import Account
from infra.local.autoscaling import patch_api, patch_describes, patch_scaling
from infra.local.autoscaling.engine import Lifecycle

_INSTALLED = False


def install(aws: Account) -> Lifecycle:
    """Attach the lifecycle engine to ``aws`` (``aws._lifecycle``, ``aws.kill_instance``) and patch moto
    (idempotent). Returns the engine."""
    global _INSTALLED
    engine = Lifecycle(aws)
    aws._lifecycle = engine  # type: ignore[attr-defined]
    aws.kill_instance = engine.health.kill  # type: ignore[attr-defined]
    if not _INSTALLED:
        _INSTALLED = True
        patch_api.install()
        patch_describes.install()
        patch_scaling.install()
    return engine
