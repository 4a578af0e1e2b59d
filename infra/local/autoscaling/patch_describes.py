"""moto's describe responses, answered from an older view with ``stale_describes`` (``describes``), and an
observation of the account after every Auto Scaling and EC2 request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult
from moto.ec2.responses import EC2Response
from moto.ec2.responses.instances import InstanceResponse

from infra.local.account import flag
from infra.local.autoscaling.engine import Lifecycle, running
from infra.local.autoscaling.patching import wrap


def install() -> None:
    wrap(AutoScalingResponse, "call_action", _observed)
    EC2Response.call_action = _ec2_call_action  # type: ignore[method-assign]
    wrap(AutoScalingResponse, "describe_auto_scaling_groups", _stale(_groups_as_of))
    wrap(AutoScalingResponse, "describe_auto_scaling_instances", _stale(_instances_as_of))
    wrap(InstanceResponse, "describe_instances", _stale(_reservations_as_of))
    wrap(AutoScalingResponse, "describe_warm_pool", _describe_warm_pool)


def _observe() -> None:
    engine = running()
    if engine is not None:
        with engine.lock:
            engine.states.observe()


def _observed(orig: Any) -> Any:
    def patched(self: AutoScalingResponse) -> Any:
        try:
            return orig(self)
        finally:
            _observe()

    return patched


def _ec2_call_action(self: Any) -> Any:
    try:
        return super(EC2Response, self).call_action()
    finally:
        _observe()


def _stale(answer: Callable[[Any, Lifecycle, float], Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A describe that answers ``answer(response, engine, when)`` as of ``when`` (now - a drawn lag) under the
    account lock, and moto's own answer when it is current (no engine, ``stale_describes`` off, an observer)."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def patched(self: Any) -> Any:
            engine = running()
            when = engine.describes.stale_time() if engine is not None else None
            if engine is None or when is None:
                return orig(self)
            with engine.lock:
                return answer(self, engine, when)

        return patched

    return make


def _groups_as_of(self: AutoScalingResponse, engine: Lifecycle, when: float) -> ActionResult:
    backend = self.autoscaling_backend
    names = self._get_param("AutoScalingGroupNames", [])
    groups = backend.describe_auto_scaling_groups(names, filters=self._get_param("Filters", []))
    token = self._get_param("NextToken")
    start = [g.name for g in groups].index(token) + 1 if token else 0
    max_records = self._get_int_param("MaxRecords", 50)
    page = groups[start : start + max_records]
    next_token = page[-1].name if max_records and len(groups) > start + max_records else None
    views = engine.describes.groups(page, when)
    return ActionResult({"AutoScalingGroups": views, "NextToken": next_token})


def _instances_as_of(self: AutoScalingResponse, engine: Lifecycle, when: float) -> ActionResult:
    ids = self._get_param("InstanceIds", [])
    return ActionResult({"AutoScalingInstances": engine.describes.instance_states(ids, when)})


def _reservations_as_of(self: Any, engine: Lifecycle, when: float) -> ActionResult:
    self.error_on_dryrun()
    filters = self._filters_from_querystring()
    ids = self._get_param("InstanceIds", [])
    reservations = engine.describes.reservations(ids, filters, when)
    token = self._get_param("NextToken")
    start = [r.id for r in reservations].index(token) + 1 if token else 0
    max_results = int(self._get_param("MaxResults", 100))
    page = reservations[start : start + max_results]
    next_token = page[-1].id if max_results and len(reservations) > start + max_results else None
    return ActionResult({"Reservations": page, "NextToken": next_token})


def _describe_warm_pool(orig: Any) -> Any:
    def patched(self: AutoScalingResponse) -> Any:
        engine = running()
        if engine is None or not flag(engine.aws, "warm_pools"):
            return orig(self)
        group_name = self._get_param("AutoScalingGroupName")
        with engine.lock:
            pool = self.autoscaling_backend.describe_warm_pool(group_name=group_name)
            members = list(engine.states.warm.get(group_name, [])) if pool is not None else []
            return ActionResult({"WarmPoolConfiguration": pool, "Instances": members})

    return patched
