"""The pure decision: from what the APIs say and what the zone holds, what the records must say,
which compare-and-swap batch gets there, and which lifecycle actions that change settles.

No I/O here: ``build_plan`` takes plain values and returns a ``Plan``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from hook_handler.members import IN_SERVICE_STATES, LEAVE_CHANGE_TAG, STATE_TAG, Group, Instance, is_member
from hook_handler.membership import departure
from hook_handler.settings import Settings, fqdn
from hook_handler.srv import SrvValue, a_record_name, absolute

Key = tuple[str, str]  # (fqdn, record type)


@dataclass(frozen=True)
class RecordSet:
    """A Route 53 record set with its values in a canonical (sorted) order."""

    name: str
    type: str
    ttl: int
    values: tuple[str, ...]

    @classmethod
    def of(cls, name: str, rtype: str, ttl: int, values: Iterable[str]) -> RecordSet:
        return cls(absolute(name), rtype, ttl, tuple(sorted(set(values))))

    @property
    def key(self) -> Key:
        return (self.name, self.type)

    def to_route53(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Type": self.type,
            "TTL": self.ttl,
            "ResourceRecords": [{"Value": v} for v in self.values],
        }


@dataclass(frozen=True)
class Observation:
    """What the Auto Scaling and EC2 APIs said, at ``now``."""

    groups: Mapping[str, Group]
    instances: Mapping[str, Instance]
    now: float

    @property
    def served(self) -> frozenset[str]:
        return frozenset(self.groups)


@dataclass(frozen=True)
class Plan:
    """What to write and what it settles. ``changes`` is empty when the records are already right."""

    members: tuple[Instance, ...]
    current: Mapping[Key, RecordSet]
    desired: Mapping[Key, RecordSet | None]
    changes: tuple[dict[str, Any], ...]
    targets: tuple[str, ...]  # peer SRV targets after the change
    added: tuple[str, ...]  # instance ids newly listed
    removed: tuple[str, ...]  # targets dropped, each explained
    guard_kept: tuple[str, ...] = ()  # targets the removal guard refused to drop
    guard_reasons: tuple[str, ...] = ()
    held: tuple[str, ...] = ()  # launching instance ids held by the bootstrap barrier
    queued: tuple[str, ...] = ()  # launches into a running cluster waiting for an earlier joiner (one at a time)
    bootstrap: bool = False  # this change publishes a new cluster's founding record
    expected: int = 0  # members a new cluster waits for
    restoring: bool = False  # the founding record lists a restore's seed alone
    launches: tuple[str, ...] = ()  # Pending:Wait instance ids the published record lists
    leaves: tuple[str, ...] = ()  # Terminating:Wait instance ids the published record lacks
    # Every leaving instance (Terminating, Terminating:Wait, returning to a warm pool) the published record lacks:
    # the change proves their leave, also for one whose lifecycle action has not begun yet (marked and tagged).
    dropped: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    # Targets no instance is found for and no etcd member advertises (dropped once ``orphans_ripe`` says so).
    orphans: tuple[str, ...] = ()

    @property
    def cluster_state(self) -> str:
        """What a launching member is told: found a new cluster, or join the running one."""
        if self.restoring:
            return "restore"
        return "new" if self.bootstrap else "existing"


def _returning_to_warm_pool(instance: Instance, old_targets: set[str], settings: Settings) -> bool:
    """A member going back to the warm pool (its terminate hook, ``Warmed:Pending:Wait``), not a new instance
    entering the pool: it is still listed, or a pass already marked it leaving (``etcd-leave-change``)."""
    return instance.lifecycle_state == "Warmed:Pending:Wait" and (
        bool(aliases(instance, settings) & old_targets) or LEAVE_CHANGE_TAG in instance.tags
    )


def aliases(instance: Instance, settings: Settings) -> set[str]:
    """Every target form an instance may have been listed under: its private DNS name and its A-record name."""
    out = {absolute(instance.private_dns)} if instance.private_dns else set()
    if instance.private_ip:
        out.add(
            a_record_name(settings.a_record_template, instance.instance_id, instance.private_ip, settings.domain_name)
        )
    return out


def target_of(instance: Instance, settings: Settings) -> str | None:
    """The SRV target naming ``instance`` (None when it has no address yet)."""
    if settings.target_mode == "a-record":
        if not instance.private_ip:
            return None
        return a_record_name(
            settings.a_record_template, instance.instance_id, instance.private_ip, settings.domain_name
        )
    return absolute(instance.private_dns) if instance.private_dns else None


def listed_name(instance: Instance, settings: Settings, advertised: AbstractSet[str] | None) -> str | None:
    """The SRV target the record lists ``instance`` by: the name its etcd member advertises as its peer host
    when that is one of the instance's names (a member keeps the peer URL it was added with, whatever
    ``target_mode`` says now: a record listing it under another name as well would make a joiner's SRV
    discovery count one member twice — "member count is unequal"), else ``target_of``. ``advertised``:
    lower-case peer hosts without the trailing dot (None: DNS-only)."""
    current = target_of(instance, settings)
    if advertised is None or current is None or current.rstrip(".") in advertised:
        return current
    if STATE_TAG not in instance.tags:
        return current  # not admitted yet: no member of its own (an alias may be a dead member's, a reused IP)
    for alias in sorted(aliases(instance, settings)):
        if alias.rstrip(".") in advertised:
            return alias
    return current


def peer_targets(record: RecordSet | None) -> set[str]:
    """Targets of an SRV record set; values that do not parse are left out (and so replaced)."""
    targets: set[str] = set()
    for value in record.values if record else ():
        try:
            targets.add(SrvValue.parse(value).target)
        except ValueError:
            continue
    return targets


def record_keys(settings: Settings, targets: Iterable[str] = ()) -> set[Key]:
    """Every record the coordinator owns for these targets: its SRV sets and, in a-record mode, A sets."""
    keys = {(name, "SRV") for name, _ in settings.srv_records}
    if settings.etcd_client_srv:
        keys.add((fqdn(settings.etcd_client_srv, settings.domain_name), "SRV"))
    if settings.target_mode == "a-record":
        keys |= {(t, "A") for t in targets if t.endswith("." + settings.domain_name) or t == settings.domain_name}
    return keys


def build_plan(
    settings: Settings,
    observation: Observation,
    current: Mapping[Key, RecordSet],
    *,
    keep: Iterable[str] = (),
    running: bool = False,
    owners: Mapping[str, Instance] | None = None,
    advertised: Iterable[str] | None = None,
    members_known: bool = False,
    orphans_ripe: Collection[str] | None = None,
    restore_seed: str | None = None,
    hold_founding: bool = False,
) -> Plan:
    """Decide the records and the change (module docstring; ``restore_seed``, ``hold_founding``: ``RecordInputs``).
    ``current``: the zone's record sets now (missing key = no such set). ``keep``: targets that stay listed whatever
    the instances say (members whose removal from etcd is held: the record lists exactly etcd's members).
    ``running``: etcd says a cluster runs, so nothing is being founded even if no instance is in service yet.
    ``owners``: the instance a target belongs to when its addresses no longer say so (the ``etcd-srv-target`` tag,
    etcd's member names). ``advertised``: the peer hosts etcd's members advertise (None: DNS-only).
    ``members_known``: every etcd member is identified with an observed instance — only then does "no member
    advertises it" prove a name names nobody. ``orphans_ripe``: of the targets that rule would drop
    (``Plan.orphans``), those found so long enough that a lagging describe cannot explain it (None: all).
    """
    c = _Context.of(settings, observation, current, advertised, owners)
    members = _members(settings, observation)
    notes: list[str] = []
    # A cluster with no member in service is being founded: its first record's members are told 'new'.
    founding = not running and not any(m.lifecycle_state in IN_SERVICE_STATES for m in members)
    expected = settings.cluster_size or sum(g.desired_capacity for g in observation.groups.values())
    held, listed = _founders(c, members, founding, expected, notes, restore_seed, hold_founding)
    queued, listed = _queue(c, listed, founding)
    new_targets = {t for m in listed if (t := c.named(m))}
    guard = _guard(c, new_targets, {absolute(t) for t in keep}, founding, members_known, orphans_ripe)
    if guard.waiting:
        notes.append(f"kept until no instance shows for them past the grace: {', '.join(guard.waiting)}")
    final_targets = new_targets | set(guard.kept) | set(guard.waiting) | guard.pinned
    desired = _desired(c, listed, final_targets, guard.removed)
    return Plan(
        members=tuple(listed),
        current=dict(current),
        desired=desired,
        changes=_changes(current, desired),
        targets=tuple(sorted(final_targets)),
        added=tuple(m.instance_id for m in listed if c.named(m) not in c.old_targets),
        removed=tuple(guard.removed),
        guard_kept=tuple(guard.kept),
        guard_reasons=tuple(guard.reasons),
        orphans=tuple(guard.orphans),
        held=held,
        queued=queued,
        bootstrap=founding and (not held or restore_seed is not None),
        expected=expected,
        restoring=founding and restore_seed is not None and bool(listed),
        launches=_launches(c, listed, final_targets),
        leaves=_leaving(c, final_targets, ("Terminating:Wait",)),
        dropped=_leaving(c, final_targets, ("Terminating", "Terminating:Wait")),
        notes=tuple(notes),
    )


def _founders(
    c: _Context,
    members: list[Instance],
    founding: bool,
    expected: int,
    notes: list[str],
    seed: str | None,
    hold: bool,
) -> tuple[tuple[str, ...], list[Instance]]:
    """Who a founding lists and who it holds: the bootstrap barrier's answer; where a cluster existed, the restore's
    seed listed alone (or nobody: held), the others held. Returns (held, listed)."""
    if not founding or (seed is None and not hold):
        return _barrier(c, members, founding, expected, notes)
    notes.append(f"restore onto {seed}" if seed else "founding held: a cluster existed")
    return tuple(m.instance_id for m in members if m.instance_id != seed), [m for m in members if m.instance_id == seed]


def _launches(c: _Context, listed: list[Instance], targets: set[str]) -> tuple[str, ...]:
    """Pending:Wait instance ids the published record lists."""
    return tuple(m.instance_id for m in listed if m.lifecycle_state == "Pending:Wait" and c.named(m) in targets)


def _members(settings: Settings, obs: Observation) -> list[Instance]:
    """The instances the record should list (``members.is_member``, with an address), by instance id."""
    found = (i for i in obs.instances.values() if is_member(i, obs.served, settings.instance_tags))
    return sorted((i for i in found if target_of(i, settings)), key=lambda i: i.instance_id)


@dataclass(frozen=True)
class _Context:
    """What every part of one plan reads."""

    settings: Settings
    obs: Observation
    old_targets: frozenset[str]
    advertised: frozenset[str] | None  # lower-case peer hosts without the trailing dot (None: DNS-only)
    by_target: Mapping[str, Instance]  # every target (all of an instance's namings) -> its instance

    @classmethod
    def of(
        cls,
        settings: Settings,
        obs: Observation,
        current: Mapping[Key, RecordSet],
        advertised: Iterable[str] | None,
        owners: Mapping[str, Instance] | None,
    ) -> _Context:
        by_target = {absolute(t): i for t, i in (owners or {}).items()}
        for inst in obs.instances.values():  # the other target naming of each instance (a target_mode change)
            for alias in aliases(inst, settings):
                by_target.setdefault(alias, inst)
        by_target.update({t: i for i in obs.instances.values() if (t := target_of(i, settings))})
        return cls(
            settings,
            obs,
            frozenset(peer_targets(current.get((settings.srv_fqdn, "SRV")))),
            None if advertised is None else frozenset(h.lower().rstrip(".") for h in advertised),
            by_target,
        )

    def named(self, instance: Instance) -> str | None:
        return listed_name(instance, self.settings, self.advertised)


def _barrier(
    c: _Context, members: list[Instance], founding: bool, expected: int, notes: list[str]
) -> tuple[tuple[str, ...], list[Instance]]:
    """The bootstrap barrier: a new cluster is published whole, or not at all. Returns (held, listed)."""
    settings, obs = c.settings, c.obs
    if not (settings.bootstrap_barrier and founding):
        return (), members
    joining = [m for m in members if m.lifecycle_state == "Pending:Wait" and c.named(m) not in c.old_targets]
    if not joining or len(members) >= expected:
        return (), members
    first = min((m.launch_time for m in members if m.launch_time is not None), default=obs.now)
    if obs.now - first < settings.bootstrap_timeout_seconds:
        held = tuple(m.instance_id for m in joining)
        return held, [m for m in members if m.instance_id not in held]
    notes.append(
        f"bootstrap timeout: publishing {len(members)} of {expected} expected members "
        f"after {settings.bootstrap_timeout_seconds:g}s"
    )
    return (), members


def _queue(c: _Context, listed: list[Instance], founding: bool) -> tuple[tuple[str, ...], list[Instance]]:
    """With membership on, a running cluster grows one member at a time: etcd refuses the next `member add`
    ("unhealthy cluster") until the member added before it has started, and a member starting from the record
    must find it listing exactly the members. So at most one listed joiner is unsettled; the others queue (the
    coordinator serves them in turn). Returns (queued, listed)."""
    if not c.settings.membership_enabled or founding:
        return (), listed
    joining = [m for m in listed if m.lifecycle_state == "Pending:Wait"]
    unsettled = [m for m in joining if c.named(m) in c.old_targets]
    fresh = sorted(
        (m for m in joining if c.named(m) not in c.old_targets),
        key=lambda m: (m.launch_time or 0.0, m.instance_id),
    )
    queued = tuple(m.instance_id for m in fresh[0 if unsettled else 1 :])
    return queued, [m for m in listed if m.instance_id not in queued]


@dataclass
class _Guarded:
    """The removal guard's verdict on the targets the record would drop."""

    pinned: set[str]  # kept whatever the instances say (etcd still has their members)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # refused: not explained by the APIs
    reasons: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # orphans not ripe yet: listed as they are, not refusals


def _guard(
    c: _Context,
    new_targets: set[str],
    pinned: set[str],
    founding: bool,
    members_known: bool,
    orphans_ripe: Collection[str] | None,
) -> _Guarded:
    """The removal guard: drop only what the APIs explain (terminating, terminated, stopped, gone). A target no
    instance can be found for, or whose instance still runs (a selector, group or naming setting changed), is kept
    and reported: a setting mistake may change what is added, never what is removed."""
    out = _Guarded(pinned & c.old_targets)
    for target in sorted(c.old_targets - new_targets - pinned):
        instance = c.by_target.get(target)
        why = _drop_reason(c, target, instance, new_targets, founding, members_known)
        if why is _ORPHAN:
            out.orphans.append(target)
            if orphans_ripe is not None and target not in orphans_ripe:
                # The record is read after the describes, and describes lag: a joiner another pass has just listed
                # (not added to etcd yet) looks exactly like this until the describes show it (a replacement's
                # target was once dropped while it joined). Dropped only once it stays so past the grace (a cleanup
                # is never urgent).
                out.waiting.append(target)
                continue
        if why is None:
            out.kept.append(target)
            if instance is None:
                out.reasons.append(f"{target}: no instance found for it (a changed target naming, or not ours)")
            else:
                out.reasons.append(
                    f"{target}: {instance.instance_id} still runs ({instance.lifecycle_state or 'no group'})"
                )
        else:
            out.removed.append(target)
    if len(out.kept) <= c.settings.max_unexplained_removals:
        out.removed.extend(out.kept)
        out.kept, out.reasons = [], []
    return out


_ORPHAN = "no instance found for it and no etcd member advertises it"


def _drop_reason(
    c: _Context, target: str, instance: Instance | None, new_targets: set[str], founding: bool, members_known: bool
) -> str | None:
    """Why ``target`` may leave the record (None: nothing explains it; ``_ORPHAN``: it names no member)."""
    why = departure(instance) if instance is not None else None
    if why is not None:
        return why
    host = target.rstrip(".")
    if instance is not None and c.advertised is not None and host not in c.advertised:
        # Another name of a member that is listed under the name its etcd member advertises (e.g. left by a
        # target_mode that was changed and changed back): the member stays listed. Only with etcd's word for which
        # name is the member's; DNS-only keeps every name (a naming change never removes).
        listed_as = c.named(instance)
        if listed_as is not None and listed_as != target and listed_as in new_targets:
            return f"another name of {instance.instance_id}, listed as {listed_as}"
    if instance is not None and founding:
        # No cluster runs yet, so the record is what founders discover each other from: an instance listed under
        # two names (a target_mode change while founding) would be two members to etcd's SRV discovery — an initial
        # cluster no quorum can ever form (six members, three of them one instance's second name). The instance
        # stays listed under its current name; dropping the other removes nobody (no member exists yet).
        listed_as = c.named(instance)
        if listed_as is not None and listed_as != target and listed_as in new_targets:
            return f"another name of {instance.instance_id}, listed as {listed_as} (no cluster runs yet)"
    if instance is None and members_known and c.advertised and host not in c.advertised:
        # No instance found for it (a terminated instance loses its addresses; a tag naming its target may be
        # missing), and etcd, which answered, has no member advertising it: it names no member of the running
        # cluster, so dropping it removes nobody (a live instance is found by its name; a joiner is listed under
        # its own). Left, it would outlive the instance for good.
        return _ORPHAN
    return None


def _desired(
    c: _Context, listed: list[Instance], final_targets: set[str], removed: list[str]
) -> dict[Key, RecordSet | None]:
    settings = c.settings
    desired: dict[Key, RecordSet | None] = {}
    for name, port in settings.srv_records:
        values = [str(SrvValue(settings.srv_priority, settings.srv_weight, port, t)) for t in final_targets]
        desired[(name, "SRV")] = RecordSet.of(name, "SRV", settings.srv_record_ttl, values) if values else None
    if settings.target_mode == "a-record":
        for m in listed:
            a_name = target_of(m, settings)
            if a_name and m.private_ip and c.named(m) == a_name:  # not for a member listed by the name it advertises
                desired[(a_name, "A")] = RecordSet.of(a_name, "A", settings.srv_record_ttl, [m.private_ip])
        for target in removed:
            desired[(target, "A")] = None
    return desired


def _changes(current: Mapping[Key, RecordSet], desired: Mapping[Key, RecordSet | None]) -> tuple[dict[str, Any], ...]:
    """The compare-and-swap batch: DELETE each set's exact current values, CREATE its new ones."""
    changes: list[dict[str, Any]] = []
    for key in sorted(desired):
        before, after = current.get(key), desired[key]
        if before == after:
            continue
        if before is not None:
            changes.append({"Action": "DELETE", "ResourceRecordSet": before.to_route53()})
        if after is not None:
            changes.append({"Action": "CREATE", "ResourceRecordSet": after.to_route53()})
    return tuple(changes)


def _leaving(c: _Context, final_targets: set[str], states: tuple[str, ...]) -> tuple[str, ...]:
    """Instances of the served groups in ``states`` (or returning to a warm pool) the record no longer lists."""
    return tuple(
        sorted(
            i.instance_id
            for i in c.obs.instances.values()
            if i.group in c.obs.served
            and (i.lifecycle_state in states or _returning_to_warm_pool(i, set(c.old_targets), c.settings))
            and c.named(i) not in final_targets
        )
    )
