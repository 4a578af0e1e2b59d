"""The group's custom termination policy, decided on plain values: which of the instances Auto Scaling wants to
terminate may go, in which order, so that etcd keeps its quorum. No I/O here (``termination_policy`` looks).

AWS's contract (https://docs.aws.amazon.com/autoscaling/latest/userguide/lambda-custom-termination-policy.html,
sections "Input data", "Response data", "Considerations", "Limitations"):
- the group sends ``AutoScalingGroupARN``, ``AutoScalingGroupName``, ``CapacityToTerminate`` (per AZ and market
  option: ``AvailabilityZone``, ``Capacity``, ``InstanceMarketOption``), ``Instances`` (the ones it suggests, each
  ``AvailabilityZone``, ``InstanceId``, ``InstanceType``, ``InstanceMarketOption``), ``Cause`` (``SCALE_IN``,
  ``INSTANCE_REFRESH``, ``MAX_INSTANCE_LIFETIME``, ``REBALANCE``) and, past 30,000 instances,
  ``HasMoreInstances: true``;
- the function answers ``{"InstanceIDs": [...]}``: the instances ready to terminate; it may name others than the
  suggested ones, or none;
- "Returning an instance first in the response data does not guarantee its termination": when more are returned
  than needed, the group picks among them with its next termination policies. So the answer holds at most the
  capacity to terminate, best first: the group then has nothing left to pick;
- "If no instances are returned or your Lambda function times out, then Amazon EC2 Auto Scaling waits a short time
  before invoking your function again": a scale-in keeps trying while desired capacity is below current capacity,
  an instance refresh for an hour (then it fails), maximum instance lifetime keeps trying. An empty answer is
  therefore a *hold*, not a veto for good: the scale-in happens once the cluster can afford it;
- the function runs at most two seconds (2000 ms).

The order (``rank``): instances that run no etcd member, then members that never started and learners (neither
votes), then voters that are not healthy, then healthy followers (most behind the leader first), the leader last;
the group's own suggestions before others of the same rank. Each is taken only when ``membership.quorum_after``
says the voters left (after the ones taken before it) keep a healthy quorum, and a healthy voter goes only when
enough healthy voters stay. A cluster without quorum gives up nothing, not even a down member (recovery may need
its disk). An instance whose member cannot be told (``identify`` says unknown) is never taken: it may be a healthy
voter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hook_handler.exceptions import EventError
from hook_handler.members import Instance
from hook_handler.membership import EtcdView, Identity, is_instance_id, quorum_after

CAUSES = frozenset({"SCALE_IN", "INSTANCE_REFRESH", "MAX_INSTANCE_LIFETIME", "REBALANCE"})
# Ranks, best victim first.
NOT_A_MEMBER, NOT_VOTING, DOWN, FOLLOWER, LEADER, UNKNOWN = 0, 1, 2, 3, 4, 9
RANK_NAMES = {
    NOT_A_MEMBER: "runs no etcd member",
    NOT_VOTING: "member not started or a learner (not a voter)",
    DOWN: "voter not healthy",
    FOLLOWER: "healthy follower",
    LEADER: "healthy leader",
    UNKNOWN: "member identity unknown",
}


@dataclass(frozen=True)
class PolicyRequest:
    """What the group asked (the payload, validated)."""

    group: str
    cause: str
    suggested: tuple[str, ...]  # Instances[].InstanceId, in the group's order
    capacity: int  # sum of CapacityToTerminate[].Capacity
    zones: Mapping[str, str] = field(default_factory=dict)  # instance id -> AvailabilityZone
    has_more: bool = False

    def answer(self, instance_ids: Sequence[str]) -> dict[str, list[str]]:
        return {"InstanceIDs": list(instance_ids)}


def parse_request(raw: Any) -> PolicyRequest:
    """The payload as AWS documents it; ``EventError`` names the field at fault (the group retries an error)."""
    if not isinstance(raw, Mapping):
        raise EventError(f"a termination policy request is a JSON object, got {type(raw).__name__}")
    group = raw.get("AutoScalingGroupName")
    if not isinstance(group, str) or not group:
        raise EventError("missing or empty; is this Auto Scaling's termination policy request?", "AutoScalingGroupName")
    cause = raw.get("Cause")
    if cause not in CAUSES:
        raise EventError(f"{cause!r} is not one of {sorted(CAUSES)}", "Cause")
    capacity_items = raw.get("CapacityToTerminate")
    if not isinstance(capacity_items, list):
        raise EventError("must be a list of {AvailabilityZone, Capacity, InstanceMarketOption}", "CapacityToTerminate")
    capacity = 0
    for n, item in enumerate(capacity_items):
        value = item.get("Capacity") if isinstance(item, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EventError(f"must be a non-negative integer, got {value!r}", f"CapacityToTerminate[{n}].Capacity")
        capacity += value
    instances = raw.get("Instances")
    if not isinstance(instances, list):
        raise EventError(
            "must be a list of {AvailabilityZone, InstanceId, InstanceType, InstanceMarketOption}", "Instances"
        )
    suggested: list[str] = []
    zones: dict[str, str] = {}
    for n, item in enumerate(instances):
        iid = item.get("InstanceId") if isinstance(item, Mapping) else None
        if not isinstance(iid, str) or not is_instance_id(iid):
            raise EventError(f"{iid!r} is not an instance id", f"Instances[{n}].InstanceId")
        if iid not in zones:
            suggested.append(iid)
            zones[iid] = str(item.get("AvailabilityZone", "") or "")
    return PolicyRequest(group, cause, tuple(suggested), capacity, zones, bool(raw.get("HasMoreInstances", False)))


@dataclass(frozen=True)
class Verdict:
    """The answer and, for every instance considered, why it was taken or kept."""

    instance_ids: tuple[str, ...]
    why: Mapping[str, str]  # instance id -> reason (taken or held)
    summary: str


def rank(instance_id: str, view: EtcdView, identity: Identity) -> tuple[int, str | None]:
    """``(rank, member id)`` of one instance (see the module docstring)."""
    mine = [m for m in view.members if identity.owner.get(m.id) == instance_id]
    if not mine:
        # No member is this instance's. A member nobody can be told of might be it: never take it then.
        if any(identity.owner.get(m.id) is None and not m.learner for m in view.members):
            return UNKNOWN, None
        return NOT_A_MEMBER, None
    member = mine[0]
    if member.learner or not member.started:
        return NOT_VOTING, member.id
    if member.id not in view.healthy:
        return DOWN, member.id
    return (LEADER if member.id == view.leader else FOLLOWER), member.id


def choose(
    request: PolicyRequest,
    view: EtcdView,
    identity: Identity,
    instances: Mapping[str, Instance],
) -> Verdict:
    """The instances that may go now, best first, at most ``request.capacity`` of them.

    Candidates: the group's suggestions that are in service, and — on a scale-in only — any other instance of
    the group in service whose member is not a healthy voter (a member that is down goes before a healthy one,
    wherever it runs; the group rebalances its zones afterwards, as AWS documents for an overriding answer).
    A refresh, a rebalance and a lifetime replacement name the instances they mean: only those are candidates.
    """
    why: dict[str, str] = {}
    quorate, detail = quorum_after(view, [])
    if not quorate:
        # Arithmetic alone may allow a down member to go (4 voters, 2 healthy: 3 left, 2 healthy, quorum 2), but a
        # cluster without quorum has no leader to remove it, and recovery (a snapshot restore) may need that disk.
        return Verdict((), {}, f"0 of {request.capacity} to terminate ({request.cause}): quorum is lost ({detail})")
    candidates: list[tuple[int, int, int, str, str | None]] = []  # (rank, not suggested, -lag, id, member)
    suggested = set(request.suggested)
    pool = list(request.suggested)
    if request.cause == "SCALE_IN":
        pool += sorted(
            i.instance_id
            for i in instances.values()
            if i.group == request.group and i.instance_id not in suggested and i.lifecycle_state == "InService"
        )
    for iid in pool:
        inst = instances.get(iid)
        if inst is None or inst.lifecycle_state != "InService" or inst.gone:
            why[iid] = f"not in service ({inst.lifecycle_state if inst else 'not in the group'})"
            continue
        r, member_id = rank(iid, view, identity)
        if iid not in suggested and r > DOWN:
            continue  # not suggested and healthy: the group did not ask for it
        if r == UNKNOWN:
            why[iid] = RANK_NAMES[UNKNOWN] + ": it may be a healthy voter"
            continue
        lag = view.lag(member_id) if member_id else None
        candidates.append((r, iid not in suggested, -(lag or 0), iid, member_id))
    candidates.sort()
    taken: list[str] = []
    removing: list[str] = []
    for r, _, _, iid, member_id in candidates:
        if len(taken) >= request.capacity:
            why[iid] = f"{RANK_NAMES[r]}; not needed (capacity to terminate {request.capacity})"
            continue
        ok, detail = quorum_after(view, [*removing, member_id] if member_id else removing)
        if not ok:
            why[iid] = f"{RANK_NAMES[r]}; held: {detail}"
            continue
        taken.append(iid)
        if member_id:
            removing.append(member_id)
        why[iid] = f"{RANK_NAMES[r]}; may go: {detail}"
    summary = f"{len(taken)} of {request.capacity} to terminate ({request.cause})"
    if len(taken) < request.capacity:
        summary += "; the group asks again shortly"
    return Verdict(tuple(taken), why, summary)


def unchanged(request: PolicyRequest) -> Verdict:
    """The group's own suggestion (no etcd membership to protect: DNS-only mode)."""
    return Verdict(request.suggested, {}, "membership off: the group's own suggestion")


def nothing(request: PolicyRequest, why: str) -> Verdict:
    """No instance may go now (etcd did not answer): the group asks again shortly."""
    return Verdict((), {}, f"0 of {request.capacity} to terminate ({request.cause}): {why}")
