"""The coordinator's promises (issues 6 and 10) as checks over what the emulated AWS and etcd recorded.

Each check reads only the emulator's logs and state — ``aws.route53_changes`` (with
``insync_at`` and ``records_after``), ``aws.lifecycle_actions``, ``aws.calls``, ``aws.invocations``
and the group and instances as moto holds them — the etcd model's introspection
(``model.clusters()``, ``model.quorum_lost(cid)``, ``model.history``, ``model.processes`` and their
logs), plus a ``History`` the schedule runner keeps of what it did (kills, etcd crashes, Lambda kills,
desired capacity, setting changes). A check returns the violations it found as sentences; an empty
list means the promise held.

DNS (every schedule): (a) completion waits for INSYNC, (b) every action ends once, (c) quiescence,
(d) no foreign targets and no unexplained losses, (e) a new cluster bootstraps whole.
etcd (schedules with membership on, ``check_etcd`` after every step, ``check_etcd_quiescence`` at the end):
(f) the coordinator never causes quorum loss — no reconfiguration it makes takes a cluster with a quorum
of running voters to one without, unless etcd processes the schedule itself crashed or killed just before
explain it, and no termination it completes leaves its instance's member in the cluster;
(g) no member without a running instance, except while being removed: once a scheduled reconcile that
began after the instance died has finished, its member is gone;
(h) no added-but-unstarted member older than ``member_start_timeout_seconds`` (+ ``START_GRACE``) once a
scheduled reconcile that began after that age has finished;
(i) every running etcd process of a served instance is in one cluster (one cluster ID);
(j) once quiet: etcd's member list = the record's targets = the served members (Standby included), no
learner left, every member started and running, quorum held.

Example::

    problems = check_all(view)                 # after every step of a schedule: (a), (b), (d), (e), (f)-(i)
    problems += check_quiescence(view)         # once events stopped and a reconcile ran: (c)
    problems += check_etcd_quiescence(view)    # (j)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.local.faults import answered_desired

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
# Lifecycle states of a served member (the record lists it, etcd keeps its member): Standby included.
SERVED = frozenset({"Pending:Wait", "Pending:Proceed", "InService", "Standby"})
FALLBACK_LINES = ("action timed out; falling back",)
UNPROVEN_LINES = ("no change id proves the deletion; completing on the record's absence",)
QUORUM_EXCUSE_SECONDS = 20.0  # a crash/kill this long before a reconfiguration may have outdated the pass's view
START_GRACE = 30.0  # (h): beyond member_start_timeout_seconds, for the pass that removes the member
SETTING_GRACE = 300.0  # an invocation started under changed settings may run this long after they are restored
_RUNNING = re.compile(r"^running: member ([0-9a-f]+) of cluster ([0-9a-f]+)$")


@dataclass
class History:
    """What the schedule did to the group, with simulated times."""

    started: float = 0.0
    desired: list[tuple[float, int]] = field(default_factory=list)  # (time, desired capacity)
    kills: dict[str, float] = field(default_factory=dict)  # instance id -> killed at (EC2, no hook)
    # SRV target -> instances that had it (private DNS name and A-record name; a reused IP gives one target two)
    targets: dict[str, list[str]] = field(default_factory=dict)
    target_of: dict[str, list[str]] = field(default_factory=dict)  # instance id -> its target forms
    fallbacks: list[dict[str, Any]] = field(default_factory=list)  # log lines of documented fallbacks
    unproven: list[dict[str, Any]] = field(default_factory=list)  # completions on the record's absence
    crashes: list[tuple[float, str]] = field(default_factory=list)  # (time, instance id): etcd killed, instance runs
    lambda_kills: list[float] = field(default_factory=list)  # times an invocation was killed
    never_start: set[str] = field(default_factory=set)  # instances whose etcd never starts
    settings: list[list[Any]] = field(default_factory=list)  # [from, until (None: still), ((key, value), ...)]
    settle_start: float | None = None
    disaster: str | None = None  # the schedule's own failures cost the cluster its quorum for good

    def learn(self, instance_id: str, target: str) -> None:
        owners = self.targets.setdefault(target, [])
        if instance_id not in owners:
            owners.append(instance_id)
        forms = self.target_of.setdefault(instance_id, [])
        if target not in forms:
            forms.append(target)

    def changed_settings(self, when: float, grace: float = SETTING_GRACE) -> list[tuple[tuple[str, str], ...]]:
        """Setting changes in effect at ``when`` (or whose invocations may still run then)."""
        out = []
        for start, until, pairs in self.settings:
            end = (until if until is not None else float("inf")) + grace
            if start <= when <= end:
                out.append(pairs)
        return out

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
    model: Any = None  # the EtcdModel (None: DNS-only, the etcd checks are skipped)
    instances: Callable[[], dict[str, InstanceFacts]] | None = None  # every instance the group launched
    member_start_timeout: float = 300.0
    function: str = "etcd-asg-coordinator"
    start_invocations: int = 0  # the world's first entry of ``aws.invocations``


@dataclass(frozen=True)
class InstanceFacts:
    """One instance as the emulator holds it: Auto Scaling state (None: not in the group), EC2 state, tags."""

    instance_id: str
    lifecycle: str | None
    ec2_state: str
    ip: str
    dns: str
    tags: dict[str, str]

    @property
    def served(self) -> bool:
        return self.lifecycle in SERVED and self.ec2_state == "running"

    @property
    def dead(self) -> bool:
        return self.ec2_state not in ("pending", "running") or self.lifecycle in ("Terminating:Proceed", "Terminated")


# -- helpers -------------------------------------------------------------------------------
def zone_changes(view: View) -> list[Any]:
    """Accepted changes of the world's zone, in submission order."""
    zone = view.zone_id.split("/")[-1]
    return [c for c in view.aws.route53_changes if c.zone_id.split("/")[-1] == zone]


def restores(view: View) -> list[tuple[float, str, str]]:
    """Every restore the coordinator recorded (the cluster identity record saying ``restoring`` in an accepted
    change), as (submitted at, the cluster restored from in hex, the seed instance or ""), in submission order: the
    only way a new cluster may replace one that existed."""
    from hook_handler.identity import ClusterState, identity_name, parse

    key = (identity_name(view.srv_name), "TXT")
    out: list[tuple[float, str, str]] = []
    for change in zone_changes(view):
        entry = change.records_after.get(key)
        if entry is None:
            continue
        identity = parse(entry[1], change.submitted_at)
        if identity.state is ClusterState.RESTORING:
            out.append((change.submitted_at, identity.cluster_id, identity.seed))
    return out


def record_targets(change: Any, srv_name: str) -> frozenset[str]:
    """SRV targets the zone's peer record lists after ``change`` (empty: no record)."""
    entry = change.records_after.get((srv_name, "SRV"))
    if entry is None:
        return frozenset()
    return frozenset(v.split()[-1].lower() for v in entry[1])


def group_actions(view: View) -> list[Any]:
    return [a for a in view.aws.lifecycle_actions if a.group == view.group]


def _targets_of(view: View, instance_id: str) -> list[str]:
    """Every SRV target form of the instance (private DNS name; A-record name while target_mode changed)."""
    return view.history.target_of.get(instance_id, [])


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
    launched = {a.instance_id: a.started_at for a in group_actions(view) if a.transition == LAUNCHING}
    for action in group_actions(view):
        if action.ended_by != "complete":
            continue
        targets = _targets_of(view, action.instance_id)
        when = action.ended_at
        if action.transition == LAUNCHING and action.result == "CONTINUE":
            if view.history.fell_back(action.instance_id):
                continue  # launch_failure_result=CONTINUE: documented, logged, counted
            # Listed under any of its target forms (an A-record name while target_mode was changed).
            proofs = [_proven(changes, view.srv_name, t, when, listed=True) for t in targets]
            ok, why = next((p for p in proofs if p[0]), proofs[0] if proofs else (False, "no SRV target known"))
            if not ok:
                problems.append(f"launch of {action.instance_id} completed CONTINUE at {when:.1f} but {why}")
        elif action.transition == TERMINATING:
            if view.history.fell_back(action.instance_id) or not targets:
                continue
            # A name a live replacement took over (IP reuse: same private IP, same DNS name) names the replacement
            # now: the record listing it lists the new instance, not the one leaving.
            targets = [t for t in targets if not _taken_over(view, launched, action.instance_id, t, when)]
            if not targets:
                continue
            # Unlisted under every form.
            proofs = [_proven(changes, view.srv_name, t, when, listed=False) for t in targets]
            ok, why = next((p for p in proofs if not p[0]), proofs[0])
            if not ok and not _unproven_absence(view, changes, when):
                problems.append(f"termination of {action.instance_id} completed at {when:.1f} but {why}")
    return problems


def _taken_over(view: View, launched: Mapping[str, float], instance_id: str, target: str, when: float) -> bool:
    """Another instance has ``target`` too (a reused IP), had launched by ``when`` and was not leaving then
    (``launched``: instance id -> when its launch action began)."""
    for other in view.history.targets.get(target, []):
        if other == instance_id or other not in launched or launched[other] > when:
            continue
        left = explained_at(view, other)
        if left is None or left > when:
            return True
    return False


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
        # A completion landed when AWS answered it, or when it was applied and only its answer was lost (the caller
        # saw a timeout or an error; its retry then finds no active action): each counts once.
        landed = (call.status == 200 and not call.injected) or (call.result or "").startswith("applied, response lost")
        if (
            call.operation == "CompleteLifecycleAction"
            and landed
            and call.params.get("AutoScalingGroupName") == view.group
        ):
            key = call.params.get("LifecycleActionToken") or call.params.get("InstanceId") or ""
            ok_completions[key] = ok_completions.get(key, 0) + 1
    completed = [a for a in actions if a.ended_by == "complete"]
    # More landed calls than completed actions is a double completion. Fewer is one only at the end: a call whose
    # answer is being lost (the caller still waits out its timeout) is logged when it returns, after its action
    # ended (found by the soak of 2ab9e87: "0 successful calls for 1 completed action" mid-run).
    landed_calls = sum(ok_completions.values())
    if landed_calls > len(completed) or (final and landed_calls != len(completed)):
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
    """(c) Once events stopped and a reconcile ran, the record lists exactly the served members (with etcd
    membership: each once, by whichever of its names its etcd member advertises)."""
    changes = zone_changes(view)
    listed = record_targets(changes[-1], view.srv_name) if changes else frozenset()
    live = view.aws.records(view.zone_id).get((view.srv_name, "SRV"))
    now_listed = frozenset(v.split()[-1].lower() for v in live[1]) if live else frozenset()
    problems = []
    if now_listed != listed:
        problems.append(f"zone record {sorted(now_listed)} differs from the last change's {sorted(listed)}")
    want = view.served()
    if view.model is not None:
        # With etcd membership a member is listed by the peer host its etcd member advertises — the name it was
        # added with, which a target_mode changed since does not change: each served instance once, by one name.
        facts = view.instances() if view.instances else {}
        by_instance: dict[str, list[str]] = {}
        for target in now_listed:
            for iid in view.history.targets.get(target, []):
                if iid in facts and facts[iid].served:
                    by_instance.setdefault(iid, []).append(target)
        served = {iid for iid, f in facts.items() if f.served}
        twice = {iid: names for iid, names in by_instance.items() if len(names) > 1}
        if set(by_instance) != served or twice or len(now_listed) != len(by_instance):
            problems.append(
                f"quiescent record lists {sorted(now_listed)} but the served members are {sorted(want)} "
                f"(instances listed: {sorted(by_instance)}, listed twice: {twice})"
            )
    elif now_listed != want:
        problems.append(
            f"quiescent record lists {sorted(now_listed)} but the served members are {sorted(want)} "
            f"(missing {sorted(want - now_listed)}, extra {sorted(now_listed - want)})"
        )
    # The record members read has settled: its last change is INSYNC (a change to the cluster identity's TXT set
    # alone, written at the end of a pass, is read by the coordinator only, from Route 53's API, never through DNS).
    record = [c for c in changes if any(x["ResourceRecordSet"]["Type"] != "TXT" for x in c.changes)]
    if record and record[-1].insync_at > view.aws.clock.now():
        problems.append(f"last change {record[-1].id} not INSYNC at the end")
    return problems


# -- (d) no foreign targets, no unexplained losses ----------------------------------------------
def explained_at(view: View, instance_id: str) -> float | None:
    """Earliest time the APIs could explain the instance leaving: termination began (its ``Terminating``
    state, which precedes the terminate hook's action), killed, abandoned."""
    times = []
    if instance_id in view.history.kills:
        times.append(view.history.kills[instance_id])
    engine = getattr(view.aws, "_lifecycle", None)
    if engine is not None and instance_id in engine.terminating_since:
        times.append(engine.terminating_since[instance_id])
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


def _leaving_by(view: View, instance_id: str, when: float) -> bool:
    at = explained_at(view, instance_id)
    return at is not None and at <= when


def check_record_changes(view: View, changes: Iterable[Any]) -> list[str]:
    """(d) Every change lists only instances of the served group and drops only explained ones.

    A target several instances had (a reused IP) is explained when any of them is; a name dropped while its
    instance stays listed under another name removes nobody. While a changed
    ``max_unexplained_removals`` is in effect, a change may drop that many unexplained targets (the guard's
    documented allowance)."""
    problems: list[str] = []
    previous: frozenset[str] | None = None
    for change in changes:
        after = record_targets(change, view.srv_name)
        for target in after:
            if target not in view.history.targets:
                problems.append(f"change {change.id} lists {target}, not an instance of group {view.group}")
        if previous is not None:
            allowance = max(
                (
                    int(v)
                    for pairs in view.history.changed_settings(change.submitted_at)
                    for k, v in pairs
                    if k == "max_unexplained_removals"
                ),
                default=0,
            )
            unexplained = []
            # Each instance's names in the record after the change: dropping one name of an instance that the
            # same record still lists under another (a target naming changed and changed back) drops nobody.
            listed_after = {iid for t in after for iid in view.history.targets.get(t, [])}
            for target in sorted(previous - after):
                owners = view.history.targets.get(target, [])
                if owners and all(iid in listed_after for iid in owners):
                    continue
                times = [t for t in (explained_at(view, iid) for iid in owners) if t is not None]
                if not times or min(times) > change.submitted_at + 1e-6:
                    unexplained.append(f"{target} ({','.join(owners) or '?'})")
            if len(unexplained) > allowance:
                problems.append(
                    f"change {change.id} at {change.submitted_at:.1f} dropped {', '.join(unexplained)} "
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

    recorded = restores(view)
    for a in sorted(actions, key=lambda a: a.ended_at or float("inf")):
        if not (a.transition == LAUNCHING and a.ended_by == "complete" and a.result == "CONTINUE"):
            continue
        t = a.ended_at
        running = [i for i, since in in_service_from.items() if since < t and left_at(i) > t and i != a.instance_id]
        if running:
            continue  # joining a running cluster
        if any(seed == a.instance_id and at <= t for at, _, seed in recorded):
            continue  # a recorded restore's seed: a cluster of one by design, the others join it
        upto = [c for c in changes if c.submitted_at <= t]
        if not upto:
            continue  # (a) reports it
        # The record the instance was founded from: the first change that listed it (with health-gated
        # completion a founder may complete after the record has grown again).
        forms = set(_targets_of(view, a.instance_id))
        founded = next((c for c in upto if forms & set(record_targets(c, view.srv_name))), upto[-1])
        founding = record_targets(founded, view.srv_name)
        expected = view.cluster_size or _expected_at(view, founded.submitted_at)
        first_launch = min(
            (x.started_at for x in actions if x.transition == LAUNCHING and x.started_at <= founded.submitted_at),
            default=founded.submitted_at,
        )
        if len(founding) < expected and founded.submitted_at - first_launch < view.bootstrap_timeout:
            problems.append(
                f"new cluster: launch of {a.instance_id} completed at {t:.1f} with a record of {len(founding)} "
                f"targets, {expected} expected"
            )
    return problems


def _expected_at(view: View, when: float) -> int:
    """Desired capacity the pass that wrote at ``when`` saw: the smaller of the one its last successful
    DescribeAutoScalingGroups answered and the one at its write (a scale-out in between joins later).

    What the describe *answered*, not the group's desired capacity at the call: a describe may answer an
    older view (``stale_describes``, AWS's eventual consistency), and a pass that saw desired 1 rightly
    founds a cluster of one that later launches join (the soak at bd64179 flagged that as a barrier breach).
    """
    answered = [
        (c.time, d) for c in view.aws.calls if c.time <= when and (d := answered_desired(c, view.group)) is not None
    ]
    seen = max(answered)[1] if answered else view.history.desired_at(when)
    return min(seen, view.history.desired_at(when))


def check_all(view: View, *, final: bool = False) -> list[str]:
    """Every per-step invariant: (a), (b), (d), (e) and, with etcd, (f)-(i)."""
    return (
        check_completions(view)
        + check_actions_end_once(view, final=final)
        + check_record_changes(view, zone_changes(view))
        + check_bootstrap(view)
        + check_etcd(view)
    )


# -- etcd (membership on) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Up:
    """One stretch of an etcd process running as a member of a cluster (from the process's log)."""

    instance_id: str
    cluster: int
    member: int
    start: float
    end: float  # inf: still running


def etcd_runs(model: Any) -> list[Up]:
    """Every stretch any etcd process ran, as the model's process logs record them."""
    out = []
    for iid, proc in model.processes.items():
        current: tuple[int, int, float] | None = None
        for t, message in proc.log:
            match = _RUNNING.match(message)
            if match:
                current = (int(match.group(2), 16), int(match.group(1), 16), t)
            elif message.startswith("exit ") and current is not None:
                out.append(Up(iid, current[0], current[1], current[2], t))
                current = None
        if current is not None:
            out.append(Up(iid, current[0], current[1], current[2], float("inf")))
    return out


def _apply(members: dict[int, bool], entry: Any) -> None:
    """One ``model.history`` entry applied to a member map (member id -> learner)."""
    if entry.kind in ("bootstrap", "add"):
        members[entry.member_id] = bool(entry.learner)
    elif entry.kind == "remove":
        members.pop(entry.member_id, None)
    elif entry.kind == "promote" and entry.member_id in members:
        members[entry.member_id] = False


def members_at(model: Any, cluster: int, when: float) -> dict[int, bool]:
    """The cluster's members (id -> learner) after every reconfiguration applied by ``when``."""
    members: dict[int, bool] = {}
    for entry in model.history:
        if entry.time > when:
            break
        if entry.cluster_id == cluster:
            _apply(members, entry)
    return members


def _running_at(runs: Sequence[Up], cluster: int, when: float) -> set[int]:
    return {u.member for u in runs if u.cluster == cluster and u.start <= when < u.end}


def has_quorum(members: dict[int, bool], running: set[int]) -> bool:
    """A quorum (voters // 2 + 1) of the voters runs (a cluster without voters has nothing to lose)."""
    voters = [m for m, learner in members.items() if not learner]
    return not voters or sum(1 for m in voters if m in running) >= len(voters) // 2 + 1


def _quorum_note(members: dict[int, bool], running: set[int]) -> str:
    voters = [m for m, learner in members.items() if not learner]
    return f"{sum(1 for m in voters if m in running)}/{len(voters)} voters running"


def _schedule_stopped(view: View, runs: Sequence[Up], cluster: int, start: float, end: float) -> set[int]:
    """Members of ``cluster`` whose process the schedule itself stopped in [start, end]: an etcd crash, or
    its instance killed (the fleet notices within a second or two)."""
    crashes = view.history.crashes
    out = set()
    for u in runs:
        if u.cluster != cluster or not (start <= u.end <= end):
            continue
        crashed = any(iid == u.instance_id and abs(t - u.end) < 1e-6 for t, iid in crashes)
        killed = u.instance_id in view.history.kills and 0 <= u.end - view.history.kills[u.instance_id] <= 3.0
        if crashed or killed:
            out.add(u.member)
    return out


def _launched(view: View) -> dict[str, float]:
    out: dict[str, float] = {}
    for a in group_actions(view):
        if a.transition == LAUNCHING:
            out.setdefault(a.instance_id, a.started_at)
    return out


def _host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.rsplit(":", 1)[0].lower().rstrip(".")


def member_owner(
    view: View, cluster: int, member: int, facts: dict[str, InstanceFacts], runs: Sequence[Up]
) -> str | None:
    """The instance a member is: the one it is named after now, the one whose etcd ran as it last, the one
    whose ``etcd-member-id`` tag records it, else the last instance launched before it was added whose private
    DNS name or IP its peer URL names (None: no instance of the group). The name comes first: an unstarted
    member is adopted by whichever instance starts with its peer URL (a replacement reusing the IP), and
    from then on it is that instance's."""
    state = view.model.cluster_states.get(cluster)
    current = state.members.get(member) if state is not None else None
    if current is not None and current.name in facts:
        return current.name
    for u in reversed(list(runs)):
        if u.cluster == cluster and u.member == member:
            return u.instance_id
    hex_id = f"{member:x}"
    for iid, f in facts.items():
        if f.tags.get("etcd-member-id", "").lower().lstrip("0") == hex_id.lstrip("0"):
            return iid
    entry = next(
        (r for r in reversed(view.model.history) if r.cluster_id == cluster and r.member_id == member and r.peer_urls),
        None,
    )
    if entry is None:
        return None
    hosts = {_host(u) for u in entry.peer_urls}
    launched = _launched(view)
    candidates = sorted(
        (launched.get(iid, 0.0), iid)
        for iid, f in facts.items()
        if (f.dns in hosts or f.ip in hosts) and launched.get(iid, 0.0) <= entry.time + 1e-6
    )
    return candidates[-1][1] if candidates else None


def died_at(view: View, iid: str, runs: Sequence[Up]) -> float | None:
    """When the instance stopped for good: killed, its termination ended, its launch abandoned; else the end
    of its etcd's last run."""
    times = []
    if iid in view.history.kills:
        times.append(view.history.kills[iid])
    for a in group_actions(view):
        if a.instance_id != iid or a.ended_at is None:
            continue
        if a.transition == TERMINATING or a.result == "ABANDON" or a.ended_by in ("terminated", "group-deleted"):
            times.append(a.ended_at)
    if times:
        return min(times)
    ends = [u.end for u in runs if u.instance_id == iid and u.end != float("inf")]
    return max(ends) if ends else None


def finished_reconciles(view: View) -> list[Any]:
    """Scheduled reconciles of the world's function that finished ok, under the function's own settings."""
    out = []
    for inv in view.aws.invocations[view.start_invocations :]:
        if inv.function != view.function or inv.outcome != "ok" or inv.ended_at is None:
            continue
        if (inv.event or {}).get("detail-type") != "Scheduled Event":
            continue
        if view.history.changed_settings(inv.time):
            continue
        out.append(inv)
    return out


def check_quorum(view: View, runs: Sequence[Up]) -> list[str]:
    """(f) The coordinator never causes quorum loss.

    Every reconfiguration in etcd (``member add``/``remove``/``promote``: only the coordinator makes them)
    that found its cluster with a quorum of running voters leaves it with one — unless a member the
    schedule crashed or killed within ``QUORUM_EXCUSE_SECONDS`` before it would have kept the quorum (the
    pass's look at etcd was outdated by the schedule, not wrong). And no termination the coordinator
    completes (CONTINUE, not a documented fallback) leaves its instance's member in a cluster that runs — except
    in a dismantle (desired capacity 0 and every member's instance leaving: nothing is left to protect, and etcd
    refuses to remove a cluster's last member)."""
    model = view.model
    problems: list[str] = []
    state: dict[int, dict[int, bool]] = {}
    for entry in model.history:
        members = state.setdefault(entry.cluster_id, {})
        before = dict(members)
        _apply(members, entry)
        if entry.kind not in ("add", "remove", "promote"):
            continue
        running = _running_at(runs, entry.cluster_id, entry.time)
        if not has_quorum(before, running) or has_quorum(members, running):
            continue
        excused = _schedule_stopped(view, runs, entry.cluster_id, entry.time - QUORUM_EXCUSE_SECONDS, entry.time)
        if has_quorum(members, running | excused):
            continue
        problems.append(
            f"etcd cluster {entry.cluster_id:x} lost its quorum at {entry.time:.1f}: {entry.kind} of member "
            f"{entry.member_id:x} left {_quorum_note(members, running)} (before: {_quorum_note(before, running)})"
        )
    facts = view.instances() if view.instances else {}
    recorded = restores(view)
    for a in group_actions(view):
        if not (a.transition == TERMINATING and a.ended_by == "complete" and a.result == "CONTINUE"):
            continue
        if view.history.fell_back(a.instance_id):
            continue
        for cluster in {u.cluster for u in runs if u.start <= a.ended_at < u.end}:
            if any(f"{cluster:x}" == old and at <= a.ended_at for at, old, _ in recorded):
                continue  # a recorded restore replaces that cluster (its quorum was lost for good): nothing to keep
            members = members_at(model, cluster, a.ended_at)
            owners = {m: member_owner(view, cluster, m, facts, runs) for m in members}
            if view.history.desired_at(a.ended_at) == 0 and all(
                o is not None and _leaving_by(view, o, a.ended_at) for o in owners.values()
            ):
                continue  # a dismantle: scaled to zero, every member's instance leaves, nothing left to protect
            for member, learner in members.items():
                if owners[member] == a.instance_id:
                    kind = "learner" if learner else "voter"
                    problems.append(
                        f"termination of {a.instance_id} completed at {a.ended_at:.1f} while its etcd {kind} "
                        f"{member:x} was still a member of cluster {cluster:x}"
                    )
    return problems


def check_member_instances(view: View, runs: Sequence[Up]) -> list[str]:
    """(g) No member without a running instance, except while it is being removed; (h) no added-but-unstarted
    member older than ``member_start_timeout_seconds`` + ``START_GRACE``.

    "Being removed" is bounded by the next scheduled reconcile: once a reconcile that began after the
    instance died (for (h): after the member reached the timeout) has finished ok, under the function's own
    settings and with the cluster's quorum up (etcd removes nothing without a leader), the member must be
    gone. A member that is in no instance's name, tag or peer URL counts as having no instance since its add.
    """
    model = view.model
    now = view.aws.clock.now()
    facts = view.instances() if view.instances else {}
    reconciles = finished_reconciles(view)
    problems: list[str] = []
    for cluster, infos in model.clusters().items():
        if not any(u.cluster == cluster and u.end == float("inf") for u in runs):
            continue  # nothing runs this cluster any more
        for info in infos:
            member = int(info.id)
            added = next(
                (
                    r.time
                    for r in reversed(model.history)
                    if r.cluster_id == cluster and r.member_id == member and r.kind in ("add", "bootstrap")
                ),
                None,
            )
            owner = member_owner(view, cluster, member, facts, runs)
            since = None
            why = ""
            if owner is None:
                since, why = added, "no instance of the group"
            elif facts[owner].dead:
                since, why = (
                    died_at(view, owner, runs),
                    f"instance {owner} is {facts[owner].lifecycle or facts[owner].ec2_state}",
                )
            if since is not None:
                late = _after_reconcile(view, runs, reconciles, cluster, since + 1.0)
                if late is not None:
                    problems.append(
                        f"etcd member {member:x} ({info.name or 'unstarted'}) of cluster {cluster:x} is still a member "
                        f"at {now:.1f}: {why} since {since:.1f}, and the reconcile of "
                        f"{late.time:.1f}-{late.ended_at:.1f} did not remove it"
                    )
                    continue
            if not info.started and added is not None and now - added > view.member_start_timeout + START_GRACE:
                late = _after_reconcile(view, runs, reconciles, cluster, added + view.member_start_timeout + 1.0)
                if late is not None:
                    problems.append(
                        f"etcd member {member:x} of {owner or 'no instance'} added at {added:.1f} has not started "
                        f"{now - added:.0f}s later (member_start_timeout_seconds={view.member_start_timeout:.0f}), "
                        f"and the reconcile of {late.time:.1f}-{late.ended_at:.1f} did not remove it"
                    )
    return problems


def _after_reconcile(view: View, runs: Sequence[Up], reconciles: Sequence[Any], cluster: int, since: float) -> Any:
    """The first finished reconcile that began after ``since`` with the cluster's quorum up throughout."""
    for inv in reconciles:
        if inv.time < since:
            continue
        members = members_at(view.model, cluster, inv.time)
        if has_quorum(members, _running_at(runs, cluster, inv.time)) and has_quorum(
            members_at(view.model, cluster, inv.ended_at), _running_at(runs, cluster, inv.ended_at)
        ):
            return inv
    return None


def check_one_cluster(view: View) -> list[str]:
    """(i) Every running etcd process of a served instance is in one cluster (one cluster ID)."""
    facts = view.instances() if view.instances else {}
    by_cluster: dict[int, list[str]] = {}
    for iid, proc in view.model.processes.items():
        if proc.running and iid in facts and facts[iid].served:
            by_cluster.setdefault(proc.cluster_id, []).append(iid)
    if len(by_cluster) <= 1:
        return []
    parts = "; ".join(f"{cid:x}: {', '.join(sorted(ids))}" for cid, ids in sorted(by_cluster.items()))
    return [f"served instances run etcd in {len(by_cluster)} clusters ({parts})"]


def check_etcd(view: View) -> list[str]:
    """The per-step etcd invariants (f)-(i); nothing in a DNS-only world."""
    if view.model is None:
        return []
    runs = etcd_runs(view.model)
    return check_quorum(view, runs) + check_member_instances(view, runs) + check_one_cluster(view)


def check_etcd_quiescence(view: View) -> list[str]:
    """(j) Once quiet: etcd's member list = the record's targets = the served members (Standby included),
    no learner left, every member started and running, and the cluster has its quorum."""
    if view.model is None:
        return []
    facts = view.instances() if view.instances else {}
    served = {iid for iid, f in facts.items() if f.served}
    clusters = {cid: ms for cid, ms in view.model.clusters().items() if any(m.running for m in ms)}
    changes = zone_changes(view)
    listed = record_targets(changes[-1], view.srv_name) if changes else frozenset()
    in_record = {iid for t in listed for iid in view.history.targets.get(t, []) if iid in served}
    problems: list[str] = []
    if in_record != served:
        problems.append(f"quiescent record names {sorted(in_record)} but the served members are {sorted(served)}")
    if not served:
        if clusters:
            problems.append(f"no served instance, yet etcd cluster(s) {', '.join(f'{c:x}' for c in clusters)} run")
        return problems
    if len(clusters) != 1:
        problems.append(f"{len(clusters)} etcd clusters run at the end: {sorted(f'{c:x}' for c in clusters)}")
        return problems
    ((cid, members),) = clusters.items()
    names = {m.name for m in members}
    if names != served:
        problems.append(
            f"quiescent member list {sorted(names)} but the served members are {sorted(served)} "
            f"(missing {sorted(served - names)}, extra {sorted(names - served)})"
        )
    for m in members:
        if m.learner:
            problems.append(f"member {int(m.id):x} ({m.name or 'unstarted'}) is still a learner at the end")
        if not m.started:
            problems.append(f"member {int(m.id):x} was added but never started")
        elif not m.running:
            problems.append(f"member {int(m.id):x} ({m.name}) is not running at the end")
    if view.model.quorum_lost(cid):
        problems.append(f"cluster {cid:x} has no quorum at the end")
    return problems
