"""Where the cluster stands and what the coordinator will do next: ``python -m hook_handler status``.

``build`` is pure: one row per instance of the served groups, per etcd member no such instance owns and per record
target no instance explains, each with the coordinator's next step and why — decided by the coordinator's own rules
(``membership.removals`` with the quorum guard, ``membership.join_step``, ``plan.build_plan``), never a copy of
them. ``collect`` is the shell: the reads a pass makes (describes, etcd's member list and status, the records),
no write of any kind, then ``build``.

Example:
    >>> # report = collect(Runtime.from_environment().coordinator, deadline=time.time() + 30)
    >>> # print(render(report))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hook_handler.coordinator.record import ORPHAN_GRACE_SECONDS
from hook_handler.decide import (
    WAIT_STATES,
    RecordInputs,
    dismantling,
    joiners_pending,
    member_owners,
    record_plan,
    tagged_owners,
)
from hook_handler.etcd import Member
from hook_handler.identity import ClusterIdentity, Loss
from hook_handler.lifecycle import launch_default_warnings
from hook_handler.look import Look, Looker
from hook_handler.members import IN_SERVICE_STATES, STATE_TAG, Instance, tags_match
from hook_handler.membership import EtcdView, HeldBy, Identity, Removal, departure, identify, leader_target, removals
from hook_handler.phases import FoundAction, JoinAction, found_step, join_step
from hook_handler.plan import Key, Observation, Plan, RecordSet, aliases, listed_name, peer_targets, target_of
from hook_handler.settings import Settings

# What the coordinator does next for a row. ``hold``: it keeps the lifecycle action waiting (heartbeats) and
# changes nothing for it yet; ``add``: lists it / adds its etcd member / tells it to start; ``remove``: removes
# its etcd member and/or drops it from the record; ``complete``: completes its lifecycle action.
ACTIONS = ("hold", "add", "promote", "remove", "complete", "nothing")
EXIT_ETCD_UNREACHABLE = 3  # the CLI's exit code when etcd did not answer (the table is printed all the same)


@dataclass(frozen=True)
class MemberInfo:
    """An etcd member as the status shows it. ``lag``: raft index behind the leader (None: it or the leader
    did not answer its status)."""

    id: str  # hex, as etcdctl shows it
    name: str
    started: bool
    learner: bool
    leader: bool
    healthy: bool
    lag: int | None


@dataclass(frozen=True)
class Row:
    """One line of the table. ``kind``: ``instance`` (of a served group), ``member`` (an etcd member no such
    instance owns) or ``target`` (a record target no instance or member explains)."""

    kind: str
    instance_id: str | None
    group: str | None
    state: str | None  # lifecycle state; for an instance no served group lists: EC2's state, or "gone"
    listed: bool
    target: str | None  # the SRV target it is listed as (or would be)
    member: MemberInfo | None
    next: str  # one of ACTIONS
    reason: str


@dataclass(frozen=True)
class StatusReport:
    """The whole picture at ``now``. ``etcd``: ``ok``, ``off`` (DNS-only), ``none`` (no cluster yet) or
    ``unreachable`` (``etcd_detail`` says why). ``warnings``: what is set up so that the coordinator cannot keep
    its promises (a launch hook whose DefaultResult is CONTINUE), each saying what to do."""

    now: float
    record: str
    targets: tuple[str, ...]  # the peer record's targets now
    record_change: tuple[str, ...]  # what the next pass's change does: "+target" / "-target" / "rewrite"
    etcd: str
    etcd_detail: str
    voters: int
    healthy_voters: int
    leader: str | None  # hex
    rows: tuple[Row, ...]
    warnings: tuple[str, ...] = ()
    # The cluster identity record (``hook_handler.identity``): state, cluster ID, voter configurations; and, when
    # etcd gave no view, whether EC2 proves its quorum lost for good (``lost``: why; ``survivors``: instance ids).
    cluster: Mapping[str, Any] = field(default_factory=dict)

    @property
    def quorum(self) -> int:
        return self.voters // 2 + 1 if self.voters else 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["quorum"] = self.quorum
        return out


@dataclass(frozen=True)
class _Context:
    """What every row is judged against (built once by ``build``)."""

    settings: Settings
    obs: Observation
    view: EtcdView | None
    identity: Identity | None
    by_member: Mapping[str, Removal]
    plan: Plan | None
    old_targets: frozenset[str]
    advertised: set[str] | None
    etcd_error: str | None


def build(
    settings: Settings,
    observation: Observation,
    view: EtcdView | None,
    current: Mapping[Key, RecordSet],
    *,
    etcd_error: str | None = None,
    hooks: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
) -> StatusReport:
    """The status from one look: ``observation`` with the owners of etcd's members added (as a pass adds them),
    etcd's ``view`` (None: DNS-only, no cluster yet, or ``etcd_error``), the zone's ``current`` record sets, and
    each served group's lifecycle ``hooks`` (DescribeLifecycleHooks; for the warnings).

    The record plan is built as a pass builds it after its member removals: members whose removal the quorum
    guard allows are out, held ones stay listed."""
    obs = observation
    old_targets = frozenset(peer_targets(current.get((settings.srv_fqdn, "SRV"))))
    identity: Identity | None = None
    found: list[Removal] = []
    advertised: set[str] | None = None
    plan: Plan | None = None
    if view is not None:
        identity = identify(view, obs.instances)
        joining = joiners_pending(view, identity, obs)
        found = removals(view, identity, obs.instances, joiners_pending=joining, dismantling=dismantling(obs))
        gone = {r.member.id for r in found if r.allowed or r.held_by is HeldBy.LAST}
        inputs = RecordInputs.of(view, gone, member_owners(view, obs), obs)
        advertised = set(inputs.advertised or ())
        plan = record_plan(settings, obs, current, inputs)
    elif etcd_error is None:
        plan = record_plan(settings, obs, current, RecordInputs())
    ctx = _Context(
        settings, obs, view, identity, {r.member.id: r for r in found}, plan, old_targets, advertised, etcd_error
    )
    claimed: set[str] = set()  # record targets a row explains
    rows = _instance_rows(ctx, claimed)
    rows += _member_rows(ctx, {r.instance_id for r in rows}, claimed)
    rows += _target_rows(ctx, claimed)
    voters = view.voters() if view is not None else []
    return StatusReport(
        now=obs.now,
        record=settings.srv_fqdn,
        targets=tuple(sorted(old_targets)),
        record_change=_record_change(plan, old_targets),
        etcd=_etcd_state(settings, view, etcd_error),
        etcd_detail=etcd_error or "",
        voters=len(voters),
        healthy_voters=sum(1 for m in voters if view is not None and m.id in view.healthy),
        leader=_hex(view.leader) if view is not None and view.leader else None,
        rows=tuple(rows),
        warnings=tuple(
            w
            for group, group_hooks in sorted((hooks or {}).items())
            for w in launch_default_warnings(group, group_hooks, settings.launch_hook_name)
        ),
    )


def _instance_rows(ctx: _Context, claimed: set[str]) -> list[Row]:
    """One row per instance of the served groups (``claimed`` gains the record targets each explains)."""
    obs, settings, view, identity = ctx.obs, ctx.settings, ctx.view, ctx.identity
    rows: list[Row] = []
    for inst in sorted(
        (i for i in obs.instances.values() if i.group in obs.served), key=lambda i: (i.group or "", i.instance_id)
    ):
        names = _names(inst, settings)
        claimed |= names
        member = identity.member_of(inst.instance_id, view) if identity is not None and view is not None else None
        if member is not None:
            claimed |= {t for t in ctx.old_targets if t.rstrip(".") in member.peer_hosts}
        listed_as = sorted(names & ctx.old_targets)
        target = listed_as[0] if listed_as else listed_name(inst, settings, ctx.advertised)
        action, reason = _instance_next(inst, member, ctx)
        info = _member_info(member, view)
        rows.append(
            Row(
                "instance",
                inst.instance_id,
                inst.group,
                inst.lifecycle_state,
                bool(listed_as),
                target,
                info,
                action,
                reason,
            )
        )
    return rows


def _member_rows(ctx: _Context, served_ids: set[str | None], claimed: set[str]) -> list[Row]:
    """One row per etcd member no instance of the served groups owns."""
    view, identity = ctx.view, ctx.identity
    if view is None or identity is None:
        return []
    rows: list[Row] = []
    for member in view.members:
        owner = identity.owner.get(member.id)
        if owner in served_ids:
            continue
        listed_as = sorted(t for t in ctx.old_targets if t.rstrip(".") in member.peer_hosts)
        claimed |= set(listed_as)
        inst = ctx.obs.instances.get(owner or "")
        state = "gone" if inst is None or inst.ec2_state is None else inst.ec2_state
        action, reason = _member_next(member, owner, inst, ctx)
        target = listed_as[0] if listed_as else None
        info = _member_info(member, view)
        rows.append(Row("member", owner, None, state if owner else None, bool(listed_as), target, info, action, reason))
    return rows


def _target_rows(ctx: _Context, claimed: set[str]) -> list[Row]:
    """One row per record target no instance or member explains."""
    by_target = {t: i for i in ctx.obs.instances.values() for t in _names(i, ctx.settings)}
    by_target.update({t if t.endswith(".") else t + ".": i for t, i in tagged_owners(ctx.obs).items()})
    rows: list[Row] = []
    for target in sorted(ctx.old_targets - claimed):
        inst = by_target.get(target)
        action, reason = _target_next(target, inst, ctx)
        state = None if inst is None else ("gone" if inst.ec2_state is None else inst.ec2_state)
        rows.append(Row("target", inst.instance_id if inst else None, None, state, True, target, None, action, reason))
    return rows


# -- the next step of each row (the coordinator's rules, applied to what one look saw) ------------------------
def _instance_next(inst: Instance, member: Member | None, ctx: _Context) -> tuple[str, str]:
    state = inst.lifecycle_state or ""
    if ctx.etcd_error is not None:
        if state in WAIT_STATES:
            return "hold", "etcd did not answer: a pass stops before any change; its event is retried"
        return "nothing", "etcd did not answer: a pass changes nothing until it does"
    removal = ctx.by_member.get(member.id) if member is not None else None
    if removal is not None:
        return _removal_next(removal, ctx)
    plan = ctx.plan
    assert plan is not None
    names = _names(inst, ctx.settings)
    listed = bool(names & ctx.old_targets)
    why_leaving = departure(inst)
    if why_leaving is not None or inst.instance_id in plan.leaves:
        guarded = [r for r in plan.guard_reasons if any(r.startswith(t + ":") for t in names)]
        if guarded:
            return "hold", f"removal guard keeps it listed: {guarded[0]}"
        if listed and names & set(plan.removed):
            return "remove", f"drop from the record ({why_leaving or 'back to the warm pool'})"
        if listed:
            return "hold", f"still listed: the record keeps every member etcd has ({why_leaving})"
        if inst.instance_id in plan.leaves:
            return "complete", "out of etcd and the record: CONTINUE once a change without it is INSYNC"
        return "nothing", why_leaving or "leaving"
    if state == "Pending:Wait":
        return _launch_next(inst, member, listed, ctx)
    if state == "Pending":
        return "nothing", "launching: its launch hook has not begun"
    if state in IN_SERVICE_STATES or STATE_TAG in inst.tags:
        if not tags_match(inst.tags, ctx.settings.instance_tags):
            return "nothing", "excluded by tag_selector"
        if not listed and inst.instance_id in plan.added:
            return "add", "the record does not list it: the next pass lists it"
        if ctx.view is None:
            return "nothing", "in service and listed" if listed else "in service"
        if member is None:
            return "nothing", "no etcd member: members are added only while a launch waits"
        if not member.started:
            return "nothing", "member not started"
        if member.learner:
            return "nothing", "a learner in service: learners are promoted while their launch waits"
        if member.id not in ctx.view.healthy:
            return "nothing", "member not healthy (the quorum guard counts it as down)"
        return "nothing", "in service, listed, healthy voter" if listed else "in service, healthy voter"
    return "nothing", state or "no lifecycle state"


def _launch_next(inst: Instance, member: Member | None, listed: bool, ctx: _Context) -> tuple[str, str]:
    """A launch waiting on our hook: barrier, queue, record, then the founding or the join phases."""
    plan, settings, view = ctx.plan, ctx.settings, ctx.view
    assert plan is not None
    iid = inst.instance_id
    if iid in plan.held:
        return "hold", f"bootstrap barrier: {len(plan.members) + len(plan.held)}/{plan.expected} present"
    if iid in plan.queued:
        return "hold", "queued: one joiner at a time, an earlier one first"
    if iid not in plan.launches:
        if not tags_match(inst.tags, settings.instance_tags):
            return "nothing", "excluded by tag_selector: left to its hook's timeout"
        return "nothing", "not in the record's plan (no address yet?)"
    if not listed:
        if not settings.membership_enabled:
            return "add", "list in the record; CONTINUE once INSYNC"
        if plan.cluster_state == "new":
            return "add", "list in the founding record; then the go signal (new)"
        return "add", "list in the record; member add once the change is INSYNC"
    if not settings.membership_enabled:
        return "complete", "listed: CONTINUE once the change listing it is INSYNC"
    now, timeout = ctx.obs.now, settings.member_start_timeout_seconds
    if plan.cluster_state == "new":
        found = found_step(inst, member, view, now=now, start_timeout=timeout)
        if found.step is FoundAction.COMPLETE:
            return "complete", "founding member started and healthy: CONTINUE"
        if found.step is FoundAction.ABANDON:
            return "complete", f"ABANDON: {found.detail}"
        if found.step is FoundAction.GO:
            return "add", "listed: the go signal (new) once INSYNC"
        return "hold", found.detail
    assert view is not None  # a running cluster
    step = join_step(inst, member, view, now=now, start_timeout=timeout, go_written=STATE_TAG in inst.tags)
    if step.step is JoinAction.COMPLETE:
        return "complete", "healthy voting member: CONTINUE"
    if step.step is JoinAction.TIMEOUT:
        if step.member is not None:
            return "remove", f"{step.detail}: member removed, launch abandoned"
        return "complete", f"ABANDON: {step.detail}"
    if step.step is JoinAction.PROMOTE:
        return "promote", step.detail
    if step.step is JoinAction.WAIT_START:
        return "hold", step.detail
    labels = {
        JoinAction.ADD: "member add",
        JoinAction.TAG_ID: "record the member id",
        JoinAction.GO: "the go signal (existing)",
    }
    return "add", f"{labels[step.step]}: {step.detail}"


def _removal_next(removal: Removal, ctx: _Context) -> tuple[str, str]:
    if removal.allowed:
        reason = f"member remove: {removal.why}"
        view = ctx.view
        member = removal.member
        if view is not None and view.leader == member.id and member.id in view.healthy and member.client_urls:
            target = leader_target(view, [member.id])
            reason += f"; leadership moves to {target.hex_id} first" if target else "; no healthy voter to lead"
        return "remove", reason
    if removal.held_by is HeldBy.LAST:
        return "complete", f"{removal.quorum}; the record is deleted, then the termination completes"
    if removal.held_by is HeldBy.QUORUM:
        return "hold", f"quorum guard: {removal.quorum} ({removal.why})"
    return "hold", f"{removal.quorum} ({removal.why})"


def _member_next(member: Member, owner: str | None, inst: Instance | None, ctx: _Context) -> tuple[str, str]:
    if ctx.etcd_error is not None:
        return "nothing", "etcd did not answer"
    removal = ctx.by_member.get(member.id)
    if removal is not None:
        return _removal_next(removal, ctx)
    if owner is None:
        return "nothing", "no instance owns it: never removed on that basis"
    return "nothing", f"{owner} runs outside the served groups: not a departure"


def _target_next(target: str, inst: Instance | None, ctx: _Context) -> tuple[str, str]:
    plan = ctx.plan
    if plan is None:
        return "nothing", "etcd did not answer"
    guarded = [r for r in plan.guard_reasons if r.startswith(target + ":")]
    if guarded:
        return "hold", f"removal guard keeps it: {guarded[0]}"
    if target in plan.orphans:
        return "remove", (
            f"drop from the record once a look {ORPHAN_GRACE_SECONDS:.0f}s after the first still finds no instance "
            "for it (no etcd member advertises it)"
        )
    if target in plan.removed:
        why = departure(inst) if inst is not None else None
        return "remove", f"drop from the record ({why or 'no instance found for it'})"
    return "nothing", "kept in the record"


# -- helpers ---------------------------------------------------------------------------------------------------
def _names(inst: Instance, settings: Settings) -> set[str]:
    """Every target the record may list ``inst`` as (its private DNS name, its A-record name, its target tag)."""
    names = set(aliases(inst, settings))
    if (target := target_of(inst, settings)) is not None:
        names.add(target)
    return names


def _member_info(member: Member | None, view: EtcdView | None) -> MemberInfo | None:
    if member is None or view is None:
        return None
    return MemberInfo(
        id=member.hex_id,
        name=member.name,
        started=member.started,
        learner=member.learner,
        leader=view.leader == member.id,
        healthy=member.id in view.healthy,
        lag=view.lag(member.id),
    )


def _record_change(plan: Plan | None, old: Iterable[str]) -> tuple[str, ...]:
    if plan is None or not plan.changes:
        return ()
    before, after = set(old), set(plan.targets)
    out = tuple(f"+{t}" for t in sorted(after - before)) + tuple(f"-{t}" for t in sorted(before - after))
    return out or ("rewrite",)


def _etcd_state(settings: Settings, view: EtcdView | None, error: str | None) -> str:
    if not settings.membership_enabled:
        return "off"
    if error is not None:
        return "unreachable"
    return "none" if view is None else "ok"


def _hex(member_id: str) -> str:
    return Member(member_id, "", (), ()).hex_id


# -- the shell: the reads of a pass, nothing else ------------------------------------------------------------
def collect(source: Looker | Any, deadline: float) -> StatusReport:
    """Look as a pass looks (``look.Looker``: describes, etcd's member list and each member's status, the records)
    and ``build`` the status (``source``: a ``Looker``, or a coordinator: its ``look``). Writes nothing: no tag, no
    record change, no etcd change, no lifecycle heartbeat or completion. etcd not answering is reported
    (``etcd == "unreachable"``), not raised; AWS errors raise."""
    looker = source if isinstance(source, Looker) else source.look
    look = looker.look(deadline)
    hooks = {group: looker.asg.lifecycle_hooks(group, deadline) for group in sorted(look.obs.served)}
    return from_look(looker.settings, look, hooks)


def from_look(
    settings: Settings, look: Look, hooks: Mapping[str, Iterable[Mapping[str, Any]]] | None = None
) -> StatusReport:
    report = build(settings, look.obs, look.view, look.records, etcd_error=look.etcd_error, hooks=hooks)
    return replace(report, cluster=_cluster(look.identity, look.loss))


def _cluster(identity: ClusterIdentity | None, loss: Loss | None) -> dict[str, Any]:
    if identity is None:
        return {}
    return {
        "state": identity.state.value,
        "cluster_id": identity.cluster_id,
        "voters": sorted(identity.voters),
        "moving": sorted(identity.moving),
        "readable": identity.readable,
        "lost": loss.why if loss is not None else "",
        "survivors": list(loss.alive) if loss is not None else [],
        "snapshot": identity.snapshot,  # restoring: the snapshot ...
        "seed": identity.seed,  # ... and the instance that restores it
    }


# -- rendering (plain text: the Lambda zip carries no table library) -----------------------------------------
COLUMNS = ("INSTANCE", "STATE", "LISTED", "MEMBER", "NAME", "STARTED", "LEARNER", "LEADER", "HEALTHY", "LAG", "NEXT")


def render(report: StatusReport) -> str:
    """The table an operator reads: a summary of the record and etcd, then one line per row."""
    change = ", ".join(report.record_change) or "none"
    lines = [f"record {report.record}: {len(report.targets)} target(s); next change: {change}"]
    if report.etcd == "ok":
        leader = report.leader or "none"
        lines.append(
            f"etcd: {report.voters} voter(s), {report.healthy_voters} healthy (quorum {report.quorum}); leader {leader}"
        )
    elif report.etcd == "unreachable":
        lines.append(f"etcd: UNREACHABLE: {report.etcd_detail}")
    else:
        lines.append({"off": "etcd: membership off (DNS only)", "none": "etcd: no cluster yet"}[report.etcd])
    lines += _cluster_lines(report.cluster)
    lines += [f"warning: {w}" for w in report.warnings]
    groups = {r.group for r in report.rows if r.group}
    header = ("GROUP", *COLUMNS) if len(groups) > 1 else COLUMNS
    table = [(*header, "REASON")]
    for row in report.rows:
        cells = [_label(row), row.state or "-", _yes(row.listed)]
        m = row.member
        if m is None:
            cells += ["-"] * 7
        else:
            lag = "-" if m.lag is None else str(m.lag)
            cells += [m.id, m.name or "-", _yes(m.started), _yes(m.learner), _yes(m.leader), _yes(m.healthy), lag]
        if len(groups) > 1:
            cells.insert(0, row.group or "-")
        table.append((*cells, row.next, row.reason))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
    for r in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return "\n".join(line.rstrip() for line in lines)


def _cluster_lines(cluster: Mapping[str, Any]) -> list[str]:
    if not cluster:
        return []
    name = f" {cluster['cluster_id']}" if cluster.get("cluster_id") else ""
    voters = ",".join(cluster.get("voters", [])) or "unknown"
    moving = ",".join(cluster.get("moving", []))
    lines = [f"cluster{name}: {cluster['state']}; voters {voters}" + (f" (moving: {moving})" if moving else "")]
    if not cluster.get("readable", True):
        lines[0] += " (identity record unreadable: counted as a cluster that existed, voters unknown)"
    if cluster["state"] == "restoring":
        lines.append(f"RESTORING {cluster.get('snapshot')} onto {cluster.get('seed') or 'the next launching instance'}")
    if cluster.get("lost"):
        survivors = ", ".join(cluster.get("survivors", [])) or "none"
        lines.append(f"QUORUM LOST FOR GOOD: {cluster['lost']} (survivors: {survivors})")
        if not cluster.get("survivors"):
            lines.append(
                "to restore the newest snapshot: python -m hook_handler restore --snapshot latest "
                "(with disaster_recovery=auto the next launch restores it by itself)"
            )
    return lines


def _label(row: Row) -> str:
    if row.kind == "instance":
        return row.instance_id or "-"
    if row.kind == "member":
        return f"({row.instance_id or 'unknown'})"
    return f"({row.target})"


def _yes(value: bool) -> str:
    return "yes" if value else "no"
