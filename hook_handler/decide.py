"""The coordinator's decisions, on plain values: which events stand, what the record's inputs are, which
change proves what, what to write before a change, and what becomes of an action a pass cannot finish.

No I/O here (the pass in ``hook_handler.coordinator`` reads, asks these functions, then acts); the membership
rules are in ``membership`` (identity, departure, quorum guard) and ``phases`` (each member's next step), the
record's in ``plan``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from hook_handler.etcd import LEARNER_NOT_READY, NOT_ENOUGH_STARTED, TOO_MANY_LEARNERS, UNHEALTHY, EtcdRefused
from hook_handler.events import Kind, LifecycleEvent
from hook_handler.lifecycle import CHANGE_TAG, LAUNCHING, TARGET_TAG
from hook_handler.members import LEAVE_CHANGE_TAG, LEAVING_STATES, MEMBER_STATES, STATE_TAG, Instance, tag_seconds
from hook_handler.membership import MEMBER_ID_TAG, PHASE_TAG, SINCE_TAG, EtcdView, Identity, departure, identify
from hook_handler.plan import Key, Observation, Plan, RecordSet, build_plan, peer_targets, target_of
from hook_handler.report import Outcome, Status
from hook_handler.settings import Settings

PENDING = "pending"  # etcd-leave-change value between marking a leaver and naming the change that drops it
WAIT_STATES = frozenset({"Pending:Wait", "Terminating:Wait"})  # a lifecycle action of ours waits


# -- 1. events ----------------------------------------------------------------------------------------------------
def refusal(event: LifecycleEvent, settings: Settings, *, account: str | None, region: str | None) -> str | None:
    """Why an event is refused before any API call (wrong account, region or group), or None."""
    problems = []
    if event.account and account and event.account != account:
        problems.append(f"account {event.account} is not this function's account {account}")
    if event.region and region and event.region != region:
        problems.append(f"region {event.region} is not this function's region {region}")
    if event.group and settings.asg_names and event.group not in settings.asg_names:
        problems.append(f"group {event.group!r} is not served (asg_names={','.join(settings.asg_names)})")
    if event.is_action and event.hook_name:
        setting, configured = hook_setting(event.transition, settings)
        if configured and event.hook_name != configured:
            problems.append(foreign_hook(event, f"the coordinator's is {configured!r} ({setting})", setting))
    return "; ".join(problems) or None


def hook_setting(transition: str | None, settings: Settings) -> tuple[str, str]:
    """The setting naming the coordinator's hook for ``transition``, and its value (empty: discovered)."""
    if transition == LAUNCHING:
        return "launch_hook_name", settings.launch_hook_name
    return "terminate_hook_name", settings.terminate_hook_name


def foreign_hook(event: LifecycleEvent, ours: str, setting: str) -> str:
    """Why an event naming a hook that is not the coordinator's is refused: another hook's actions are another's to
    complete (a configuration gate, a drain), and completing or heartbeating them would skip what they wait for."""
    return (
        f"hook {event.hook_name!r} on group {event.group!r} is not the coordinator's: {ours}; its actions are left "
        f"alone. If the coordinator should serve this hook, set {setting}={event.hook_name}"
    )


@dataclass
class Judgement:
    """Events judged against the APIs: still waiting for us (``pending``), not visible yet (``lagging``), and
    the settled ones' outcomes (``REJECTED``/``UNCONFIRMED`` ones are refusals the caller logs and counts)."""

    pending: list[LifecycleEvent] = field(default_factory=list)
    lagging: list[LifecycleEvent] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)


def judge(events: Sequence[LifecycleEvent], obs: Observation, *, final: bool = True) -> Judgement:
    """Check each action against what the APIs say.

    Describe calls are eventually consistent and an action's event can arrive before the APIs show the wait state
    it was sent for (a launch still ``Pending``, a termination still ``InService`` or ``Terminating``, an instance
    not listed yet): unless ``final``, such events come back as ``lagging`` for the caller to look again; when
    ``final``, they are handed to a retry.
    """
    out = Judgement()
    for event in events:
        if not event.is_action:
            continue
        verdict = _verdict(event, obs)
        if verdict is None:
            out.pending.append(event)
        elif isinstance(verdict, _Lag) and not final:
            out.lagging.append(event)
        else:
            out.outcomes.append(verdict.outcome)
    return out


@dataclass(frozen=True)
class _Settled:
    outcome: Outcome


@dataclass(frozen=True)
class _Lag:
    outcome: Outcome  # what becomes of it when the last look still does not show it


def _verdict(event: LifecycleEvent, obs: Observation) -> _Settled | _Lag | None:
    """None: the action waits for us; else settled now, or not visible yet."""
    inst = obs.instances.get(event.instance_id or "")
    if event.group and event.group not in obs.served:
        return _Settled(Outcome(event, Status.REJECTED, f"group {event.group!r} is not a served group", ok=False))
    if inst is None or inst.group is None:
        if event.kind is Kind.LEAVE and (inst is None or inst.gone):
            return _Settled(Outcome(event, Status.ALREADY_DONE, "instance is gone"))
        if event.kind is Kind.JOIN and inst is not None and inst.ec2_state is not None and inst.gone:
            # A launch scaled in (or killed) before its event arrived: its action ended with it. Retrying would
            # only walk a settled event to the dead-letter queue.
            return _Settled(Outcome(event, Status.ALREADY_DONE, f"instance is {inst.ec2_state}"))
        why = "the Auto Scaling API does not place this instance in a served group"
        return _Lag(Outcome(event, Status.UNCONFIRMED, why, ok=False))
    if event.group and inst.group != event.group:
        return _Settled(
            Outcome(event, Status.REJECTED, f"instance belongs to {inst.group!r}, not {event.group!r}", ok=False)
        )
    if event.kind is Kind.JOIN:
        return _launch_verdict(event, inst.lifecycle_state)
    if event.kind is Kind.LEAVE:
        return _leave_verdict(event, inst.lifecycle_state)
    return None  # PASS: warm-pool moves that change no membership


def _launch_verdict(event: LifecycleEvent, state: str | None) -> _Settled | _Lag | None:
    if state == "Pending:Wait":
        return None
    if state == "Pending":
        return _Lag(Outcome(event, Status.HANDOFF, "the APIs do not show Pending:Wait yet", ok=False))
    if state in MEMBER_STATES:
        return _Settled(Outcome(event, Status.ALREADY_DONE, f"instance is {state}"))
    return _Settled(Outcome(event, Status.ALREADY_DONE, f"stale launch: instance is {state}"))


def _leave_verdict(event: LifecycleEvent, state: str | None) -> _Settled | _Lag | None:
    if state == "Terminating:Wait" or (state or "").startswith("Warmed:"):
        return None
    if state == "Terminating":
        return _Lag(Outcome(event, Status.HANDOFF, "the APIs do not show Terminating:Wait yet", ok=False))
    if state in LEAVING_STATES:
        return _Settled(Outcome(event, Status.ALREADY_DONE, f"instance is {state}"))
    return _Lag(Outcome(event, Status.REJECTED, f"termination event but the instance is {state}", ok=False))


def nothing_to_do(
    live: Sequence[LifecycleEvent], pending: Sequence[LifecycleEvent], outcomes: Sequence[Outcome], obs: Observation
) -> bool:
    """Every action was already settled (a duplicate or a late delivery): the pass ends — unless other actions
    wait (queued joiners, held leaves) whose own events may come too late (throttled with backoff up to 5 minutes,
    or lost): then it reconciles, which keeps them alive and serves the next one. A refused event (forged,
    foreign) never starts that work."""
    if pending or any(e.kind is Kind.RECONCILE for e in live) or not any(e.is_action for e in live):
        return False
    late = any(o.status is Status.ALREADY_DONE for o in outcomes)
    refused = any(o.status is Status.REJECTED for o in outcomes)
    return refused or not late or not others_waiting(obs, {e.instance_id for e in live})


def others_waiting(obs: Observation, handled: set[str | None]) -> bool:
    """Whether an instance of a served group other than ``handled`` waits on a lifecycle action."""
    return any(
        inst.group in obs.served and inst.lifecycle_state in WAIT_STATES and inst.instance_id not in handled
        for inst in obs.instances.values()
    )


# -- 2. etcd's picture, as the record and the guards need it ---------------------------------------------------
def running(view: EtcdView | None) -> bool:
    """A cluster runs: some member has started."""
    return view is not None and any(m.started for m in view.members)


def members_known(view: EtcdView, obs: Observation) -> bool:
    """Every etcd member is identified with an instance the observation holds (by name, tag or peer host)."""
    identity = identify(view, obs.instances)
    return all(identity.owner.get(m.id) in obs.instances for m in view.members)


def dismantling(obs: Observation) -> bool:
    """The cluster is being taken down on purpose: every served group's desired capacity is 0 (a scale to zero)
    and every instance of them is leaving or gone. Only then is no cluster left to keep, so its last voter is not
    removed (etcd refuses to remove a cluster's last member). Leaving instances alone prove nothing: a
    replacement (health check, instance refresh with MinHealthyPercentage 0) starts while the old instance
    terminates, and a describe may not list it yet — its cluster must be kept for it."""
    served = [i for i in obs.instances.values() if i.group in obs.served]
    return (
        bool(served)
        and all(g.desired_capacity == 0 for g in obs.groups.values())
        and all(i.gone or departure(i) is not None for i in served)
    )


def joiners_pending(view: EtcdView, identity: Identity, obs: Observation) -> bool:
    """Whether an instance is on its way into this cluster: launching in a served group and not yet a healthy
    voting member (a replacement, a scale-out)."""
    for inst in obs.instances.values():
        if inst.group not in obs.served or inst.gone or inst.lifecycle_state not in ("Pending", "Pending:Wait"):
            continue
        member = identity.member_of(inst.instance_id, view)
        if member is None or member.learner or member.id not in view.healthy:
            return True
    return False


def listed_hosts(view: EtcdView, gone: Iterable[str]) -> set[str]:
    """Peer hosts the record goes on listing: every member etcd still has once ``gone`` (member IDs removed, or
    the last voter a dismantled cluster ends with) are out — held removals, members no instance can be found
    for: a joiner starting from the record must find exactly the members, and no setting
    (``max_unexplained_removals`` included) may drop a live member from it."""
    out = set(gone)
    return {h for m in view.members if m.id not in out for h in m.peer_hosts}


def member_owners(view: EtcdView | None, obs: Observation) -> dict[str, Instance]:
    """Record targets etcd says belong to an instance: the peer host of a member named after it (or whose ID it
    carries)."""
    if view is None:
        return {}
    identity = identify(view, obs.instances)
    out: dict[str, Instance] = {}
    for member in view.members:
        iid = identity.owner.get(member.id)
        if iid and iid in obs.instances and identity.how.get(member.id) in ("name", "tag"):
            for host in member.peer_hosts:
                out[host + "."] = obs.instances[iid]
    return out


def tagged_owners(obs: Observation) -> dict[str, Instance]:
    """Targets named by the ``etcd-srv-target`` tag of each observed instance."""
    return {inst.tags[TARGET_TAG]: inst for inst in obs.instances.values() if inst.tags.get(TARGET_TAG)}


def supports_learners(version: str) -> bool:
    """etcd 3.4 introduced learners.

    >>> supports_learners("3.5.0"), supports_learners("3.3.25"), supports_learners("")
    (True, False, False)
    """
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (3, 4)


def waitable(exc: EtcdRefused) -> bool:
    """etcd refusing for now, for the cluster's safety: the caller waits for the cluster to change."""
    text = exc.message.lower()
    return any(t in text for t in (UNHEALTHY, NOT_ENOUGH_STARTED, LEARNER_NOT_READY, TOO_MANY_LEARNERS))


# -- 3. the record -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordInputs:
    """What etcd tells the record (all empty in DNS-only mode or while no cluster answers)."""

    keep_hosts: frozenset[str] = frozenset()  # peer hosts the record goes on listing (held removals, unknowns)
    running: bool = False
    owners: Mapping[str, Instance] = field(default_factory=dict)  # record targets etcd says are an instance's
    advertised: frozenset[str] | None = None  # every member's peer hosts (None: etcd not asked)
    members_known: bool = False
    restore_seed: str | None = None  # restoring: the record lists this launching instance alone
    hold_founding: bool = False  # a cluster existed and cannot be restored now: nothing is founded

    @classmethod
    def of(
        cls, view: EtcdView | None, gone: Iterable[str], owners: Mapping[str, Instance], obs: Observation
    ) -> RecordInputs:
        """From the etcd view after this pass's removals; ``gone``: member IDs out of the record's keep list (removed,
        or the last voter a dismantled cluster ends with); ``owners``: ``decide.member_owners`` before removals."""
        if view is None:
            return cls()
        return cls(
            keep_hosts=frozenset(listed_hosts(view, gone)),
            running=running(view),
            owners=owners,
            advertised=frozenset(h for m in view.members for h in m.peer_hosts),
            members_known=members_known(view, obs),
        )


def record_plan(
    settings: Settings,
    obs: Observation,
    current: Mapping[Key, RecordSet],
    inputs: RecordInputs,
    *,
    orphans_ripe: Iterable[str] = (),
) -> Plan:
    """The record's plan as a pass builds it after its member removals (``plan.build_plan`` with etcd's inputs)."""
    old_targets = peer_targets(current.get((settings.srv_fqdn, "SRV")))
    return build_plan(
        settings,
        obs,
        current,
        keep={t for t in old_targets if t.rstrip(".") in inputs.keep_hosts},
        running=inputs.running,
        owners={**dict(inputs.owners), **tagged_owners(obs)},
        advertised=None if inputs.advertised is None else set(inputs.advertised),
        members_known=inputs.members_known,
        orphans_ripe=set(orphans_ripe),
        restore_seed=inputs.restore_seed,
        hold_founding=inputs.hold_founding,
    )


def write_marks(plan: Plan, obs: Observation, settings: Settings) -> dict[str, dict[str, str]]:
    """The tags to write before a change is sent (write before mutate). Every leaver it drops is marked
    ``pending``, so a pass that later finds the record already without it (or deleted) knows a change is on its
    way and waits for its id; every instance it lists gets the target it is listed as, so a pass that dies (or
    loses the response) between the write and the proof tag leaves a target a later pass can still tell is this
    instance's after its addresses are gone (a terminated instance has none) — never an unexplained target the
    guard must keep for good."""
    marks: dict[str, dict[str, str]] = {
        iid: {LEAVE_CHANGE_TAG: PENDING}
        for iid in plan.dropped
        if iid in obs.instances and obs.instances[iid].tags.get(LEAVE_CHANGE_TAG) != PENDING
    }
    for iid in plan.added:
        inst = obs.instances.get(iid)
        target = target_of(inst, settings) if inst is not None else None
        if target and inst is not None and inst.tags.get(TARGET_TAG) != target:
            marks.setdefault(iid, {})[TARGET_TAG] = target
    return marks


def with_tags(obs: Observation, tags: Mapping[str, Mapping[str, str]]) -> Observation:
    """``obs`` with ``tags`` written on its instances (what the pass just wrote, before a describe shows it)."""
    if not tags:
        return obs
    return replace(
        obs,
        instances={
            iid: replace(inst, tags={**inst.tags, **tags[iid]}) if iid in tags else inst
            for iid, inst in obs.instances.items()
        },
    )


def change_comment(plan: Plan) -> str:
    parts = ["etcd-asg-coordinator"]
    if plan.added:
        parts.append("add " + ",".join(plan.added))
    if plan.removed:
        parts.append("remove " + ",".join(t.split(".")[0] for t in plan.removed))
    return "; ".join(parts)


# -- 4. which change proves what ----------------------------------------------------------------------------------
class ProofKind(StrEnum):
    OWN = "own"  # this pass's own change
    FOLLOW = "follow"  # changes other passes wrote and named on the instances
    REWRITE = "rewrite"  # submit the peer record rewritten with its own values
    MARKER = "marker"  # the record is gone: submit a change to the marker set
    UNPROVEN = "unproven"  # nothing proves the record for a launch yet: wait for a retry


@dataclass(frozen=True)
class Proof:
    kind: ProofKind
    changes: frozenset[str] = frozenset()  # OWN / FOLLOW: the change ids to wait for
    peer: RecordSet | None = None  # REWRITE: the record to rewrite


def proof(
    change_id: str | None,
    launches: Iterable[Instance],
    leaves: Iterable[Instance],
    peer: RecordSet | None,
) -> Proof:
    """The changes that prove the record's state for these actions.

    A launch's proof is a change whose record lists it (tag ``etcd-srv-change``); a leave's, a change submitted
    after its termination began (tag ``etcd-leave-change``: only a pass that saw it leaving writes that id, after
    the change that drops it; ``pending`` from just before). A tag that names a change is followed. Without one —
    no tag, or ``pending`` — the pass submits a fresh change: the record rewritten with its own values, or, when
    the record is gone, the marker set; a zone's changes propagate in order, so its INSYNC means the deletion's
    too. A missing mark proves nothing: tags are read through eventually consistent describes, and a view older
    than the deleting pass's ``pending`` mark shows none (terminations were once completed before the deletion
    was INSYNC by taking such leavers for never listed).
    """
    if change_id is not None:
        return Proof(ProofKind.OWN, frozenset({change_id}))
    launches = list(launches)
    tags = {i.tags.get(CHANGE_TAG) for i in launches} | {i.tags.get(LEAVE_CHANGE_TAG) for i in leaves}
    if tags and not tags & {None, PENDING}:
        return Proof(ProofKind.FOLLOW, frozenset(t for t in tags if t))
    if peer is not None:
        return Proof(ProofKind.REWRITE, peer=peer)
    # The record was deleted under a launch that a change once listed: wait for a pass to list it.
    return Proof(ProofKind.UNPROVEN) if launches else Proof(ProofKind.MARKER)


def earlier_leave_proof(inst: Instance, change_id: str) -> bool:
    """Whether the instance names an earlier change that dropped it (not ``pending``, not this pass's)."""
    tag = inst.tags.get(LEAVE_CHANGE_TAG)
    return tag is not None and tag not in (PENDING, change_id)


# -- 5. actions a pass cannot finish ----------------------------------------------------------------------------
def may_be_member(instance: Instance | None) -> bool:
    """Whether an instance is, or may be, an etcd member or listed in the record: it was told to start etcd (the
    go signal), its ``member add`` began or landed, or a change listed it. Each tag is written before the step it
    records (write before mutate), so without them it never was. Its termination completes only once its removal
    is proven safe: never on a fallback."""
    return instance is not None and any(t in instance.tags for t in (STATE_TAG, PHASE_TAG, MEMBER_ID_TAG, TARGET_TAG))


def launch_under_way(
    instance: Instance | None, *, queued: bool, listed: bool, now: float, start_timeout: float, action_timeout: float
) -> bool:
    """Whether a launch is progressing through its membership phases (so the action timeout does not apply):
    queued behind an earlier joiner, listed (by this pass's plan or a recorded change) and waiting for INSYNC,
    or told to start (the go signal) less than ``start_timeout`` ago (``etcd-member-since``; the join and
    founding phases abandon it there). A ``member add`` that keeps failing (phase ``adding``, no go signal) gets
    ``action_timeout`` counted from the add's start, not the launch's: a joiner that waited its turn longer than
    the action timeout is not abandoned at its first transient refusal."""
    if queued:
        return True
    if instance is None or instance.gone:
        return False
    since = tag_seconds(instance.tags.get(SINCE_TAG))
    if STATE_TAG in instance.tags:
        return since is not None and now - since < start_timeout
    if PHASE_TAG in instance.tags:  # `member add` under way: its own failures get the action timeout, from the add
        return since is not None and now - since < action_timeout
    return listed or CHANGE_TAG in instance.tags


class HandOff(StrEnum):
    """What becomes of an action a pass could not finish."""

    RETRY = "retry"  # handed to a retry (the event's, or the next pass)
    HOLD = "hold"  # kept waiting on purpose, heartbeated (its removal is held or not proven safe)
    CONTINUE = "CONTINUE"  # its action timed out: completed with this result
    ABANDON = "ABANDON"


def fallback(
    event: LifecycleEvent,
    *,
    started: float,
    now: float,
    settings: Settings,
    membership: bool,
    held: bool,
    under_way: bool,
    member: bool = False,
) -> HandOff:
    """What becomes of an action a pass could not finish: retried until its action timeout, then completed with a
    fallback result — except what must never go on a timeout.

    A termination whose member removal is held is held (its hook's global timeout ends it); so is, with etcd
    membership on, the termination of an instance that is or may be a member (``member``: ``may_be_member``): the
    pass could not prove its removal safe (etcd silent, quorum lost, a removal refused), and completing it would
    take a member, possibly the last copy of the data, with it. A launch on its way in (``launch_under_way``) is
    retried: its phases have their own timeout, and abandoning it would only make the group launch another that
    waits the same. With etcd membership a launch completes CONTINUE only as a healthy member (an instance in
    service without etcd would hold a place no member fills): it falls back to ABANDON."""
    if held:
        return HandOff.HOLD
    timed_out = now - started >= settings.action_timeout_seconds and not under_way
    if not timed_out or not event.hook_name or not event.group:
        return HandOff.RETRY
    if event.kind is not Kind.JOIN:
        return HandOff.HOLD if membership and member else HandOff.CONTINUE
    return HandOff.ABANDON if membership else HandOff(settings.launch_failure_result)


def action_started(event: LifecycleEvent, instance: Instance | None, *, first_seen: float, now: float) -> float:
    """When an action began, for its action timeout: never from the event's ``Time`` alone, which whoever can
    deliver an event could forge (a time years ago would turn the first failed step's retry into a fallback).

    A launch out of EC2 began after its instance launched (EC2's ``LaunchTime``): the event's time counts only where
    it is not earlier than that, and the launch time stands in when it is absent. Any other action (a termination, a
    launch out of the warm pool, whose instance launched long before) counts from the first time this coordinator
    saw it (``first_seen``; a later look only makes it younger, so the fallback can come late, never early).

    >>> from hook_handler.events import Kind, LifecycleEvent, LAUNCHING
    >>> event = LifecycleEvent(Kind.JOIN, "sqs", transition=LAUNCHING, time="2000-01-01T00:00:00Z", origin="EC2")
    >>> action_started(event, Instance("i-1", launch_time=1000.0), first_seen=1060.0, now=1100.0)
    1000.0
    """
    if event.kind is Kind.JOIN and event.origin != "WarmPool" and instance is not None and instance.launch_time:
        claimed = parse_time(event.time)
        if claimed is None or claimed > now:
            return instance.launch_time
        return max(claimed, instance.launch_time)
    return first_seen


def parse_time(value: str | None) -> float | None:
    """An event's ISO-8601 time as epoch seconds (None when absent or unreadable).

    >>> parse_time("2026-01-01T00:00:00Z"), parse_time("yesterday")
    (1767225600.0, None)
    """
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


_AFTER_COMPLETION = {
    ("Pending:Wait", "CONTINUE"): "Pending:Proceed",
    ("Terminating:Wait", "CONTINUE"): "Terminating:Proceed",
    ("Terminating:Wait", "ABANDON"): "Terminating:Proceed",
}


def as_completed(obs: Observation, settled: Iterable[tuple[str, str]]) -> Observation:
    """``obs`` with the actions a pass completed (``(instance id, result)``) as the group now has them: describes
    are eventually consistent, and a look seconds after a completion may still show the instance waiting (the next
    round would take the joiner it just completed for the one to serve, and leave the queued one waiting)."""
    changed = {}
    for iid, result in settled:
        inst = obs.instances.get(iid)
        after = _AFTER_COMPLETION.get((inst.lifecycle_state or "", result)) if inst is not None else None
        if after is not None:
            changed[iid] = replace(inst, lifecycle_state=after)
    if not changed:
        return obs
    return Observation(groups=obs.groups, instances={**obs.instances, **changed}, now=obs.now)
