"""The coordinator's promises (issue 6) as checks over what the emulated AWS recorded.

Each check reads only the emulator's logs and state — ``aws.route53_changes`` (with
``insync_at`` and ``records_after``), ``aws.lifecycle_actions``, ``aws.calls`` and the group as
moto holds it — plus a ``History`` the schedule runner keeps of what it did to the group (kills,
desired capacity). A check returns the violations it found as sentences; an empty list means the
promise held.

Example::

    problems = check_all(world)          # after every step of a schedule
    problems += check_quiescence(world)  # once events stopped and a reconcile ran
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
SERVED_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})
FALLBACK_LINES = ("action timed out; falling back",)
UNPROVEN_LINES = ("no change id proves the deletion; completing on the record's absence",)


@dataclass
class History:
    """What the schedule did to the group, with simulated times."""

    desired: list[tuple[float, int]] = field(default_factory=list)  # (time, desired capacity)
    kills: dict[str, float] = field(default_factory=dict)  # instance id -> killed at
    targets: dict[str, str] = field(default_factory=dict)  # SRV target -> instance id (every instance seen)
    fallbacks: list[dict[str, Any]] = field(default_factory=list)  # log lines of documented fallbacks
    unproven: list[dict[str, Any]] = field(default_factory=list)  # completions on the record's absence

    def desired_at(self, when: float) -> int:
        value = 0
        for t, d in self.desired:
            if t <= when:
                value = d
        return value

    def fell_back(self, instance_id: str) -> bool:
        return any(line.get("instance") == instance_id for line in self.fallbacks)


@dataclass(frozen=True)
class View:
    """What the invariants need from a running world (see ``schedules.World``)."""

    aws: Any
    zone_id: str
    srv_name: str
    group: str
    history: History
    bootstrap_timeout: float
    served: Callable[[], set[str]]  # SRV targets of the group's served members now (no API call)
    cluster_size: int | None = None


# -- helpers -------------------------------------------------------------------------------
def zone_changes(view: View) -> list[Any]:
    """Accepted changes of the world's zone, in submission order."""
    zone = view.zone_id.split("/")[-1]
    return [c for c in view.aws.route53_changes if c.zone_id.split("/")[-1] == zone]


def record_targets(change: Any, srv_name: str) -> frozenset[str]:
    """SRV targets the zone's peer record lists after ``change`` (empty: no record)."""
    entry = change.records_after.get((srv_name, "SRV"))
    if entry is None:
        return frozenset()
    return frozenset(v.split()[-1].lower() for v in entry[1])


def group_actions(view: View) -> list[Any]:
    return [a for a in view.aws.lifecycle_actions if a.group == view.group]


def _target_of(view: View, instance_id: str) -> str | None:
    for target, iid in view.history.targets.items():
        if iid == instance_id:
            return target
    return None


def _proven(changes: Sequence[Any], srv: str, target: str, when: float, *, listed: bool) -> tuple[bool, str]:
    """Is the record at ``when`` (the last change submitted by then) saying ``target`` is (not) listed,
    and has a change saying so since the record last said otherwise been INSYNC by ``when``?"""
    upto = [c for c in changes if c.submitted_at <= when]
    if not upto:
        return (not listed), "no change was ever made to the zone"
    run_start = None
    for change in reversed(upto):
        if (target in record_targets(change, srv)) == listed:
            run_start = change
        else:
            break
    if run_start is None:
        last = upto[-1]
        return False, f"the record at that time ({last.id}) {'lacks' if listed else 'still lists'} it"
    if not listed and run_start is upto[0]:
        return True, "never listed"
    if run_start.insync_at <= when:
        return True, ""
    return False, f"change {run_start.id} was INSYNC only at {run_start.insync_at:.1f}"


# -- (a) completion waits for INSYNC ---------------------------------------------------------
def check_completions(view: View) -> list[str]:
    """(a) Launch CONTINUE only after a change listing it is INSYNC; termination only after one lacking it."""
    problems: list[str] = []
    changes = zone_changes(view)
    for action in group_actions(view):
        if action.ended_by != "complete":
            continue
        target = _target_of(view, action.instance_id)
        when = action.ended_at
        if action.transition == LAUNCHING and action.result == "CONTINUE":
            if view.history.fell_back(action.instance_id):
                continue  # launch_failure_result=CONTINUE: documented, logged, counted
            ok, why = (
                (False, "no SRV target known")
                if target is None
                else _proven(changes, view.srv_name, target, when, listed=True)
            )
            if not ok:
                problems.append(f"launch of {action.instance_id} completed CONTINUE at {when:.1f} but {why}")
        elif action.transition == TERMINATING:
            if view.history.fell_back(action.instance_id) or target is None:
                continue
            ok, why = _proven(changes, view.srv_name, target, when, listed=False)
            if not ok and not _unproven_absence(view, changes, when):
                problems.append(f"termination of {action.instance_id} completed at {when:.1f} but {why}")
    return problems


def _unproven_absence(view: View, changes: Sequence[Any], when: float) -> bool:
    """The documented completion on the record's absence: logged, counted, and the record is gone."""
    upto = [c for c in changes if c.submitted_at <= when]
    gone = bool(upto) and not record_targets(upto[-1], view.srv_name)
    return gone and bool(view.history.unproven) and upto[-1].insync_at <= when


# -- (b) every action ends exactly once -------------------------------------------------------
def check_actions_end_once(view: View, *, final: bool = False) -> list[str]:
    """(b) No action completed twice; at the end none is left open; timeouts only where documented."""
    problems: list[str] = []
    actions = group_actions(view)
    ok_completions: dict[str, int] = {}
    for call in view.aws.calls:
        if (
            call.operation == "CompleteLifecycleAction"
            and call.status == 200
            and not call.injected
            and call.params.get("AutoScalingGroupName") == view.group
        ):
            key = call.params.get("LifecycleActionToken") or call.params.get("InstanceId") or ""
            ok_completions[key] = ok_completions.get(key, 0) + 1
    completed = [a for a in actions if a.ended_by == "complete"]
    if sum(ok_completions.values()) != len(completed):
        problems.append(
            f"{sum(ok_completions.values())} successful CompleteLifecycleAction calls "
            f"for {len(completed)} completed actions"
        )
    if final:
        for action in actions:
            if action.active:
                problems.append(f"action of {action.instance_id} ({action.hook}) still open at the end")
    return problems


def timeouts(view: View) -> list[Any]:
    return [a for a in group_actions(view) if a.ended_by == "timeout"]


# -- (c) quiescence --------------------------------------------------------------------------
def check_quiescence(view: View) -> list[str]:
    """(c) Once events stopped and a reconcile ran, the record lists exactly the served members."""
    changes = zone_changes(view)
    listed = record_targets(changes[-1], view.srv_name) if changes else frozenset()
    live = view.aws.records(view.zone_id).get((view.srv_name, "SRV"))
    now_listed = frozenset(v.split()[-1].lower() for v in live[1]) if live else frozenset()
    problems = []
    if now_listed != listed:
        problems.append(f"zone record {sorted(now_listed)} differs from the last change's {sorted(listed)}")
    want = view.served()
    if now_listed != want:
        problems.append(
            f"quiescent record lists {sorted(now_listed)} but the served members are {sorted(want)} "
            f"(missing {sorted(want - now_listed)}, extra {sorted(now_listed - want)})"
        )
    if changes and changes[-1].insync_at > view.aws.clock.now():
        problems.append(f"last change {changes[-1].id} not INSYNC at the end")
    return problems


# -- (d) no foreign targets, no unexplained losses ----------------------------------------------
def explained_at(view: View, instance_id: str) -> float | None:
    """Earliest time the APIs could explain the instance leaving: termination began, killed, abandoned."""
    times = []
    if instance_id in view.history.kills:
        times.append(view.history.kills[instance_id])
    for action in group_actions(view):
        if action.instance_id != instance_id:
            continue
        if action.transition == TERMINATING:
            times.append(action.started_at)
        elif action.ended_at is not None and (
            action.result == "ABANDON" or action.ended_by in ("terminated", "group-deleted")
        ):
            times.append(action.ended_at)
    return min(times) if times else None


def check_record_changes(view: View, changes: Iterable[Any]) -> list[str]:
    """(d) Every change lists only instances of the served group and drops only explained ones."""
    problems: list[str] = []
    previous: frozenset[str] | None = None
    for change in changes:
        after = record_targets(change, view.srv_name)
        for target in after:
            if target not in view.history.targets:
                problems.append(f"change {change.id} lists {target}, not an instance of group {view.group}")
        if previous is not None:
            for target in previous - after:
                iid = view.history.targets.get(target)
                when = explained_at(view, iid) if iid else None
                if when is None or when > change.submitted_at + 1e-6:
                    problems.append(
                        f"change {change.id} at {change.submitted_at:.1f} dropped {target} ({iid}) "
                        "while nothing explained its leaving"
                    )
        previous = after
    return problems


# -- (e) a new cluster bootstraps whole ----------------------------------------------------------
def check_bootstrap(view: View) -> list[str]:
    """(e) The first launch completed into an empty cluster follows a record listing all founders."""
    problems: list[str] = []
    changes = zone_changes(view)
    actions = group_actions(view)
    in_service_from: dict[str, float] = {}
    for a in actions:
        if a.transition == LAUNCHING and a.ended_by == "complete" and a.result == "CONTINUE":
            in_service_from[a.instance_id] = a.ended_at

    def left_at(iid: str) -> float:
        return explained_at(view, iid) or float("inf")

    for a in sorted(actions, key=lambda a: a.ended_at or float("inf")):
        if not (a.transition == LAUNCHING and a.ended_by == "complete" and a.result == "CONTINUE"):
            continue
        t = a.ended_at
        running = [i for i, since in in_service_from.items() if since < t and left_at(i) > t and i != a.instance_id]
        if running:
            continue  # joining a running cluster
        upto = [c for c in changes if c.submitted_at <= t]
        if not upto:
            continue  # (a) reports it
        founding = record_targets(upto[-1], view.srv_name)
        expected = view.cluster_size or _expected_at(view, upto[-1].submitted_at)
        first_launch = min(
            (x.started_at for x in actions if x.transition == LAUNCHING and x.started_at <= upto[-1].submitted_at),
            default=upto[-1].submitted_at,
        )
        if len(founding) < expected and upto[-1].submitted_at - first_launch < view.bootstrap_timeout:
            problems.append(
                f"new cluster: launch of {a.instance_id} completed at {t:.1f} with a record of {len(founding)} "
                f"targets, {expected} expected"
            )
    return problems


def _expected_at(view: View, when: float) -> int:
    """Desired capacity the pass that wrote at ``when`` saw: the smaller of the one at its last
    DescribeAutoScalingGroups and the one at its write (a scale-out in between joins later)."""
    observed = max(
        (c.time for c in view.aws.calls if c.operation == "DescribeAutoScalingGroups" and c.time <= when),
        default=when,
    )
    return min(view.history.desired_at(observed), view.history.desired_at(when))


def check_all(view: View, *, final: bool = False) -> list[str]:
    """Every per-step invariant: (a), (b), (d), (e)."""
    return (
        check_completions(view)
        + check_actions_end_once(view, final=final)
        + check_record_changes(view, zone_changes(view))
        + check_bootstrap(view)
    )
