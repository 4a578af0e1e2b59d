"""A custom termination policy (a Lambda function) called by the emulated groups, as AWS documents it.

https://docs.aws.amazon.com/autoscaling/latest/userguide/lambda-custom-termination-policy.html: when a group's
``TerminationPolicies`` starts with a Lambda function ARN (here: one registered with ``aws.register_function``),
the group calls it synchronously before a scale-in (``SetDesiredCapacity`` / ``UpdateAutoScalingGroup`` lowering
capacity: cause ``SCALE_IN``) and before each instance refresh batch (``INSTANCE_REFRESH``, see ``refresh``), with
``AutoScalingGroupARN``, ``AutoScalingGroupName``, ``CapacityToTerminate`` [{AvailabilityZone, Capacity,
InstanceMarketOption}], ``Instances`` [{AvailabilityZone, InstanceId, InstanceType, InstanceMarketOption}] and
``Cause``, and honours ``{"InstanceIDs": [...]}``:
- the answered instances (in service in the group, not protected from scale-in) go, at most the capacity to
  terminate; "Returning an instance first in the response data does not guarantee its termination": when more are
  answered than needed, the group's next termination policies pick (``OldestInstance``, ``NewestInstance``; any
  other — ``Default`` — is a seeded random pick: its AZ / launch template / billing-hour criteria are not modelled);
- "If no instances are returned or your Lambda function times out, then Amazon EC2 Auto Scaling waits a short time
  before invoking your function again. For any scale-in event, it keeps trying as long as the group's desired
  capacity is less than its current capacity. For instance refresh-based terminations, it keeps trying for an hour.
  After that, if it continues to fail to terminate any instances, the instance refresh operation fails." A short
  time is not given: ``LocalAWS.policy_retry`` seconds (default drawn in 5-15 s). An answer with fewer instances
  than needed terminates those and asks again for the rest (the same rule: desired still below current);
- "The maximum run time for your Lambda function is two seconds": the call is cut at min(function timeout, 2 s).
Assumptions where AWS is silent, each conservative: a function error (an exception) and a malformed answer count
as no answer (AWS: "Because your function is retried repeatedly, make sure to test and fix any permanent errors");
instance ids that are not in service in the group are ignored. ``Instances`` follows AWS's AZ rule: only the zones
with the most instances when the zones are out of balance, every zone when balanced. Not modelled: rebalancing
launches after an answer that unbalances the zones, maximum instance lifetime, ``HasMoreInstances`` (30,000), spot.
Every call is in ``aws.policy_calls`` (``PolicyCall``) and ``aws.invocations`` (source ``termination-policy``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from moto.autoscaling.models import autoscaling_backends
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.exceptions import ServiceException

from infra.local import state
from infra.local.account import Account, seconds

MAX_RUN_SECONDS = 2.0  # AWS: "The maximum run time for your Lambda function is two seconds (2000 milliseconds)"
REFRESH_PATIENCE = 3600.0  # AWS: "For instance refresh-based terminations, it keeps trying for an hour"
DEFAULT_RETRY = (5.0, 15.0)  # AWS: "waits a short time" (no figure given)
SOURCE = "termination-policy"
CAPACITY_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})


@dataclass
class PolicyCall:
    """One call of a group's termination policy: what was asked, answered and terminated."""

    time: float
    group: str
    cause: str
    payload: dict[str, Any]
    outcome: str  # "ok" | "error" | "timeout" | "invalid"
    answer: list[str] | None  # InstanceIDs as answered (None: no usable answer)
    terminated: list[str] = field(default_factory=list)
    error: str = ""


def policy_arn(group: Any) -> str | None:
    """The Lambda function ARN a group's termination policies start with (AWS: it must come first)."""
    policies = list(getattr(group, "termination_policies", None) or [])
    return policies[0] if policies and str(policies[0]).startswith("arn:aws:lambda:") else None


class TerminationPolicyCaller:
    """The termination policy calls of one emulated account."""

    def __init__(self, aws: Account) -> None:
        self.aws = aws
        self.scaling_in: set[str] = set()  # groups with a scale-in attempt scheduled or under way

    @property
    def engine(self) -> Any:
        return self.aws._lifecycle  # type: ignore[attr-defined]

    def function(self, group: Any) -> Any:
        arn = policy_arn(group)
        delivery = getattr(self.aws, "_delivery", None)
        return delivery.function_for_arn(arn) if arn and delivery is not None else None

    def backend(self) -> Any:
        return autoscaling_backends[self.aws.account][self.aws.region]

    # -- scale-in ---------------------------------------------------------------------
    def scale_in(self, group: Any) -> None:
        """Capacity went below the instances counted: ask the policy (now), unless an attempt is on its way."""
        if group.name in self.scaling_in:
            return
        self.scaling_in.add(group.name)
        self._spawn(lambda: self._scale_in_attempt(group.name), f"{SOURCE}-{group.name}")

    def _scale_in_attempt(self, name: str) -> None:
        with self.engine.lock:
            group = self.backend().autoscaling_groups.get(name)
            fn = self.function(group) if group is not None else None
            excess = _excess(group) if group is not None else 0
            if fn is None or excess <= 0:
                self.scaling_in.discard(name)
                return
            payload = _payload(group, _terminable(group), excess, "SCALE_IN")
        answer, call = self._call(fn, name, "SCALE_IN", payload)
        with self.engine.lock:
            group = self.backend().autoscaling_groups.get(name)
            if group is None:
                self.scaling_in.discard(name)
                return
            excess = _excess(group)
            chosen = self._pick(group, answer, _terminable(group), excess)
            for s in chosen:
                self.engine.transitions.begin_termination(group, s, cause="scale-in")
            call.terminated = [s.instance.id for s in chosen]
            if len(chosen) < excess:  # "keeps trying as long as the group's desired capacity is less than current"
                self._later(lambda: self._scale_in_attempt(name), f"{SOURCE}-{name}")
            else:
                self.scaling_in.discard(name)

    # -- instance refresh (called by refresh.Refresher) -------------------------------------
    def refresh_batch(self, group: Any, old: list[Any], size: int, take: Any) -> None:
        """Ask which of ``old`` (in service, still to replace) may go in this batch of ``size``; ``take(chosen)``
        is called under the account lock with what may go (possibly nothing: the refresher asks again later)."""
        fn = self.function(group)
        payload = _payload(group, old, min(size, len(old)), "INSTANCE_REFRESH")
        name = group.name
        old_ids = {s.instance.id for s in old}

        def body() -> None:
            answer, call = self._call(fn, name, "INSTANCE_REFRESH", payload)
            with self.engine.lock:
                group_now = self.backend().autoscaling_groups.get(name)
                if group_now is None:
                    take([])
                    return
                still = [s for s in _terminable(group_now) if s.instance.id in old_ids]
                chosen = self._pick(group_now, answer, still, size)
                call.terminated = [s.instance.id for s in chosen]
                take(chosen)

        self._spawn(body, f"{SOURCE}-{name}-refresh")

    def retry_delay(self) -> float:
        return seconds(self.aws, "policy_retry", DEFAULT_RETRY)

    # -- internals ----------------------------------------------------------------------
    def _spawn(self, body: Any, name: str) -> None:
        self.aws._delivery.start(body, name)  # type: ignore[attr-defined]

    def _later(self, body: Any, name: str) -> None:
        # A plain timer, not work: a policy that holds for good must not keep SimClock.run() busy for ever.
        self.aws.clock.call_later(self.retry_delay(), lambda: self._spawn(body, name))

    def _call(self, fn: Any, group: str, cause: str, payload: dict[str, Any]) -> tuple[list[str] | None, PolicyCall]:
        limited = dataclasses.replace(fn, timeout=min(fn.timeout, MAX_RUN_SECONDS))
        record = self.aws._delivery.call(limited, payload, SOURCE, 0)  # type: ignore[attr-defined]
        call = PolicyCall(record.time, group, cause, payload, record.outcome, None, error=record.error)
        if record.outcome == "ok":
            ids = record.response.get("InstanceIDs") if isinstance(record.response, dict) else None
            if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
                call.answer = list(ids)
            else:
                call.outcome, call.error = "invalid", f"not {{'InstanceIDs': [...]}}: {record.response!r}"[:300]
        self.aws.policy_calls.append(call)  # type: ignore[attr-defined]
        return call.answer, call

    def _pick(self, group: Any, answer: list[str] | None, allowed: list[Any], needed: int) -> list[Any]:
        by_id = {s.instance.id: s for s in allowed}
        answered = [by_id[i] for i in dict.fromkeys(answer or []) if i in by_id]
        if len(answered) <= needed:
            return answered
        following = [p for p in (group.termination_policies or [])[1:]]
        rule = following[0] if following else "Default"
        if rule == "OldestInstance":
            answered.sort(key=lambda s: (s.instance.launch_time, s.instance.id))
        elif rule == "NewestInstance":
            answered.sort(key=lambda s: (s.instance.launch_time, s.instance.id), reverse=True)
        else:
            self.aws.rng.shuffle(answered)
        return answered[:needed]


def _excess(group: Any) -> int:
    counted = [s for s in group.instance_states if s.lifecycle_state in CAPACITY_STATES]
    return len(counted) - int(group.desired_capacity or 0)


def _terminable(group: Any) -> list[Any]:
    return [s for s in group.instance_states if s.lifecycle_state == "InService" and not s.protected_from_scale_in]


def _payload(group: Any, candidates: list[Any], capacity: int, cause: str) -> dict[str, Any]:
    """AWS's request: ``CapacityToTerminate`` taken from the zones with the most instances first; ``Instances``
    the candidates in those zones (every zone when they are balanced)."""
    counts: dict[str, int] = {}
    for s in candidates:
        counts[s.instance.placement.zone] = counts.get(s.instance.placement.zone, 0) + 1
    take: dict[str, int] = {}
    left = dict(counts)
    for _ in range(max(0, min(capacity, len(candidates)))):
        zone = max(sorted(left), key=lambda z: left[z])
        left[zone] -= 1
        take[zone] = take.get(zone, 0) + 1
    balanced = len(set(counts.values())) <= 1
    shown = [s for s in candidates if balanced or s.instance.placement.zone in take]
    return {
        "AutoScalingGroupARN": group.arn,
        "AutoScalingGroupName": group.name,
        "CapacityToTerminate": [
            {"AvailabilityZone": z, "Capacity": n, "InstanceMarketOption": "on-demand"} for z, n in sorted(take.items())
        ],
        "Instances": [
            {
                "AvailabilityZone": s.instance.placement.zone,
                "InstanceId": s.instance.id,
                "InstanceType": s.instance.instance_type,
                "InstanceMarketOption": "on-demand",
            }
            for s in shown
        ],
        "Cause": cause,
    }


class TerminationPolicyValidationError(ServiceException):
    code = "ValidationError"


def check_policies(policies: list[str]) -> None:
    """AWS's limitations: one Lambda function at most, first in the list, not qualified with ``$LATEST``."""
    lambdas = [p for p in policies if str(p).startswith("arn:aws:lambda:")]
    if len(lambdas) > 1:
        raise TerminationPolicyValidationError("Only one Lambda function can be specified as a termination policy")
    if lambdas and policies[0] != lambdas[0]:
        raise TerminationPolicyValidationError("A Lambda function termination policy must be specified first")
    if lambdas and lambdas[0].endswith(":$LATEST"):
        raise TerminationPolicyValidationError("A Lambda function termination policy cannot use the $LATEST qualifier")


def caller() -> TerminationPolicyCaller | None:
    aws = state.running()
    return getattr(aws, "_termination_policy", None) if aws is not None else None


def install(aws: Account) -> TerminationPolicyCaller:
    found = TerminationPolicyCaller(aws)
    aws._termination_policy = found  # type: ignore[attr-defined]
    if not hasattr(aws, "policy_calls"):
        aws.policy_calls = []  # type: ignore[attr-defined]
    _patch()
    return found


_INSTALLED = False


def _patch() -> None:
    """Create/UpdateAutoScalingGroup: AWS's limitations checked; moto's update forgets ``TerminationPolicies``."""
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    create = AutoScalingResponse.create_auto_scaling_group
    update = AutoScalingResponse.update_auto_scaling_group

    def create_auto_scaling_group(self: AutoScalingResponse) -> Any:
        if state.running() is not None:
            check_policies(list(self._get_param("TerminationPolicies", []) or []))
        return create(self)

    def update_auto_scaling_group(self: AutoScalingResponse) -> Any:
        policies = list(self._get_param("TerminationPolicies", []) or [])
        if state.running() is not None and policies:
            check_policies(policies)
        out = update(self)
        if state.running() is not None and policies:
            group = self.autoscaling_backend.autoscaling_groups[self._get_param("AutoScalingGroupName")]
            group.termination_policies = policies
        return out

    AutoScalingResponse.create_auto_scaling_group = create_auto_scaling_group  # type: ignore[method-assign]
    AutoScalingResponse.update_auto_scaling_group = update_auto_scaling_group  # type: ignore[method-assign]
