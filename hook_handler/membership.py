"""The membership decision, on plain values: which etcd member is which instance, which members may go,
and the next step of each joining or leaving member. No I/O here (``coordinator`` applies).

A member *is* an instance. The start script names every member after its instance id, and the
coordinator records the etcd member ID on the instance (tag ``etcd-member-id``) right after
``member add``, with the phase recorded *before* it (``etcd-member-phase=adding``). So a member is
identified, in this order, by: its name (an instance id), the ID recorded on an instance, an
unstarted member whose peer host is an instance in phase ``adding`` (an add whose answer was lost),
and finally by peer host (a DNS name or an IP address) of a running instance — for clusters attached
with members named otherwise. A URL match never outranks a name: a replacement that reuses a dead
instance's IP is not the dead member.

A member may be removed only when the APIs say its instance is terminating, terminated, stopped or
gone (``departure``) — never because a setting changed, a lookup failed or a URL did not match.

The phases of a member's life and their steps are in ``hook_handler.phases``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from hook_handler.etcd import Member
from hook_handler.members import DATA_LOST_TAG, Instance

PHASE_TAG = "etcd-member-phase"
MEMBER_ID_TAG = "etcd-member-id"
SINCE_TAG = "etcd-member-since"
ADDING = "adding"
ADDED = "added"

_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
_STOPPED_EC2 = frozenset({"shutting-down", "terminated", "stopping", "stopped"})


def is_instance_id(name: str) -> bool:
    """
    >>> is_instance_id("i-0123456789abcdef0"), is_instance_id("etcd-0")
    (True, False)
    """
    return bool(_INSTANCE_ID.match(name))


def departure(instance: Instance | None) -> str | None:
    """Why the APIs say this instance is leaving for good, or None when they do not.

    Only terminating, terminated, stopped or gone (unknown to EC2 by id, ids are never reused) count.
    Not being in a served group, a tag that no longer matches or a lookup by address that finds nothing
    are *not* departures: they are what a wrong setting looks like.

    >>> departure(Instance("i-1", group="g", lifecycle_state="InService", ec2_state="running")) is None
    True
    >>> departure(Instance("i-1", group="g", lifecycle_state="Terminating:Wait", ec2_state="running"))
    'instance is Terminating:Wait'
    >>> departure(Instance("i-1"))
    'instance is gone (EC2 does not know it)'

    A running instance whose start script found its member's data lost (``etcd-data-lost``: etcd listed the member
    as started, its data directory holds no WAL) leaves too: etcd's procedure for a member that lost its data is
    remove, then add as a new member — here, its instance replaced.
    """
    if instance is None or instance.ec2_state is None:
        return "instance is gone (EC2 does not know it)"
    if instance.ec2_state in _STOPPED_EC2:
        return f"instance is {instance.ec2_state}"
    state = instance.lifecycle_state or ""
    if state.startswith("Terminating") or state == "Terminated" or state.startswith("Warmed:"):
        return f"instance is {state}"
    if DATA_LOST_TAG in instance.tags:
        return f"its etcd data is lost ({DATA_LOST_TAG}={instance.tags[DATA_LOST_TAG]})"
    return None


def member_id_of(instance: Instance) -> str | None:
    """The etcd member ID recorded on the instance (decimal), if any."""
    raw = instance.tags.get(MEMBER_ID_TAG, "")
    try:
        return str(int(raw, 16)) if raw else None
    except ValueError:
        return None


def hosts_of(instance: Instance) -> frozenset[str]:
    """Every host an instance's peer URL may name: its private DNS name and its private IP."""
    return frozenset(h.lower().rstrip(".") for h in (instance.private_dns, instance.private_ip) if h)


@dataclass(frozen=True)
class EtcdView:
    """What etcd said in this pass. ``healthy``: member IDs whose own endpoint answered with a leader."""

    members: tuple[Member, ...]
    healthy: frozenset[str] = frozenset()
    leader: str | None = None
    raft_index: Mapping[str, int] = field(default_factory=dict)
    learners: bool = True  # the cluster version supports learners (3.4+)
    cluster_id: str = ""  # hex, as the healthy members report it ("" when none answered with a leader)

    def voters(self) -> list[Member]:
        return [m for m in self.members if not m.learner]

    def lag(self, member_id: str) -> int | None:
        """Raft index behind the leader (None when either did not answer)."""
        if self.leader is None or self.leader not in self.raft_index or member_id not in self.raft_index:
            return None
        return max(0, self.raft_index[self.leader] - self.raft_index[member_id])


@dataclass(frozen=True)
class Identity:
    """Which instance each member is (None: unknown — never removed on that basis)."""

    owner: Mapping[str, str | None]  # member id -> instance id
    how: Mapping[str, str]  # member id -> "name" | "tag" | "adopt" | "host" | "unknown"

    def member_of(self, instance_id: str, view: EtcdView) -> Member | None:
        for member in view.members:
            if self.owner.get(member.id) == instance_id:
                return member
        return None


def identify(view: EtcdView, instances: Mapping[str, Instance]) -> Identity:
    """Map every member to its instance (see the module docstring for the order).

    ``instances`` must include the instances named by members (looked up by id, so a gone one is an
    ``Instance`` with ``ec2_state=None``) and those carrying a member-ID tag.
    """
    owner: dict[str, str | None] = {}
    how: dict[str, str] = {}
    by_tag = {mid: i.instance_id for i in instances.values() if (mid := member_id_of(i))}
    running = [i for i in instances.values() if not i.gone]
    for member in view.members:
        if member.name and is_instance_id(member.name):
            owner[member.id], how[member.id] = member.name, "name"
        elif member.id in by_tag:
            owner[member.id], how[member.id] = by_tag[member.id], "tag"
        else:
            host_match = [i for i in running if hosts_of(i) & member.peer_hosts]
            adopting = [i for i in host_match if i.tags.get(PHASE_TAG) == ADDING and not member_id_of(i)]
            if not member.started and len(adopting) == 1:
                owner[member.id], how[member.id] = adopting[0].instance_id, "adopt"
            elif len(host_match) == 1 and not _named_elsewhere(member, host_match[0]):
                owner[member.id], how[member.id] = host_match[0].instance_id, "host"
            else:
                owner[member.id], how[member.id] = None, "unknown"
    return Identity(owner=owner, how=how)


def _named_elsewhere(member: Member, instance: Instance) -> bool:
    return bool(member.name) and is_instance_id(member.name) and member.name != instance.instance_id


def quorum_after(view: EtcdView, removing: Iterable[str]) -> tuple[bool, str]:
    """Whether the voters left after removing ``removing`` (member IDs) keep a healthy quorum.

    >>> from hook_handler.etcd import Member
    >>> v = EtcdView(tuple(Member(str(n), f"i-{n:08x}", (), ()) for n in (1, 2, 3)), healthy=frozenset({"1", "2"}))
    >>> quorum_after(v, ["1"])
    (False, '1 of 2 voters left would be healthy; quorum needs 2')
    >>> quorum_after(v, ["3"])[0]
    True
    """
    gone = set(removing)
    left = [m for m in view.voters() if m.id not in gone]
    if not left:
        return True, "no voter left: the cluster ends with its last member"
    healthy = sum(1 for m in left if m.id in view.healthy)
    need = len(left) // 2 + 1
    detail = f"{healthy} of {len(left)} voters left would be healthy; quorum needs {need}"
    return healthy >= need, detail


def _voters_after(view: EtcdView, removing: Sequence[str]) -> list[Member]:
    gone = set(removing)
    return [m for m in view.voters() if m.id not in gone]


class HeldBy(StrEnum):
    """Why a departed member's removal waits (``NONE``: it may go now)."""

    NONE = ""
    QUORUM = "quorum"  # the voters left would lack a healthy quorum
    JOINER = "joiner"  # a joiner is on its way in: add before remove
    KEPT = "kept"  # the last voter of a cluster the group still wants: kept until a new member is in
    LAST = "last"  # every instance leaves (a dismantle): the cluster ends with its last voter

    @property
    def holds_termination(self) -> bool:
        """Whether the leaving instance's termination waits (heartbeated, still listed) for this hold."""
        return self is not HeldBy.NONE and self is not HeldBy.LAST


@dataclass(frozen=True)
class Removal:
    """A member to remove, why, and whether quorum allows it now."""

    member: Member
    instance_id: str | None
    why: str
    allowed: bool
    quorum: str
    held_by: HeldBy = HeldBy.NONE


def removals(
    view: EtcdView,
    identity: Identity,
    instances: Mapping[str, Instance],
    *,
    targets_of_live: Iterable[str] = (),
    joiners_pending: bool = False,
    dismantling: bool = False,
) -> list[Removal]:
    """Members whose instances the APIs say are gone or leaving, in the order they should go.

    Gone and unhealthy first (each makes the quorum arithmetic better), leaving-but-healthy last, each
    judged against the cluster as it will be after the ones before it. An unstarted member nobody owns
    and whose peer host no running instance has is removed too: nothing can ever start it, and as a
    voter it blocks every later add. While a joiner is on its way in (``joiners_pending``), a healthy
    leaver waits for it — add before remove, as a replacement should: the cluster never drops below the
    fault tolerance it has, and the only member of a one-member cluster is never removed from under
    its replacement (which would bootstrap an empty cluster). While every instance leaves (``dismantling``),
    the last voter is not removed (``HeldBy.LAST``): etcd refuses to remove a cluster's last member
    ("re-configuration failed due to not enough started members", ``IsReadyToRemoveVotingMember``), and the
    cluster ends with it.
    """
    live_hosts = {h.lower().rstrip(".") for h in targets_of_live}
    for inst in instances.values():
        if not inst.gone:
            live_hosts |= hosts_of(inst)
    found = _departed(view, identity, instances, live_hosts)
    out: list[Removal] = []
    planned: list[str] = []
    for member, iid, why in found:
        held_by, detail = _hold(view, member, planned, joiners_pending=joiners_pending, dismantling=dismantling)
        ok = held_by is HeldBy.NONE
        out.append(Removal(member, iid, why, ok, detail, held_by))
        if ok:
            planned.append(member.id)
    return out


def _departed(
    view: EtcdView, identity: Identity, instances: Mapping[str, Instance], live_hosts: set[str]
) -> list[tuple[Member, str | None, str]]:
    """Members to remove and why, gone/unhealthy first, healthy leavers last (learners before voters)."""
    found: list[tuple[int, Member, str | None, str]] = []
    for member in view.members:
        iid = identity.owner.get(member.id)
        if iid is None:
            if not member.started and not (member.peer_hosts & live_hosts):
                found.append((0, member, None, "unstarted member no running instance owns"))
            continue
        why = departure(instances.get(iid))
        if why is None:
            continue
        rank = 1 if member.id in view.healthy else 0
        found.append((rank, member, iid, why))
    found.sort(key=lambda f: (f[0], f[1].learner is False, f[2] or "", f[1].id))
    return [(member, iid, why) for _, member, iid, why in found]


def _hold(
    view: EtcdView, member: Member, planned: Sequence[str], *, joiners_pending: bool, dismantling: bool
) -> tuple[HeldBy, str]:
    """Whether removing ``member`` after the ``planned`` removals must wait, and the quorum arithmetic."""
    ok, detail = quorum_after(view, [*planned, member.id])
    healthy_voter = member.id in view.healthy and not member.learner
    last_voter = not member.learner and not _voters_after(view, [*planned, member.id])
    if not ok and member.id not in view.healthy:
        # Removing a member that is not healthy keeps every healthy voter: if the rest lack a quorum they
        # lacked it before too. It never causes a loss (etcd may still refuse without a leader).
        ok = True
        detail += " (the member is not healthy: removing it costs no healthy voter)"
    if not ok:
        return HeldBy.QUORUM, detail
    if joiners_pending and healthy_voter:
        return HeldBy.JOINER, "a joiner is on its way in: add before remove"
    if dismantling and last_voter:
        return HeldBy.LAST, "every instance leaves: the cluster ends with its last voter (etcd never removes it)"
    if healthy_voter and last_voter:
        # The last healthy voter while the group still wants instances: removing it would end the cluster and
        # its data, and the replacement would found an empty one (a stale describe once hid the joiner, so no
        # "add before remove", and both old members went). It goes once a joiner is in. Held like a quorum
        # hold — the record keeps listing it and its termination waits — never LAST (which completes the
        # termination with its voter still the cluster's only member).
        return HeldBy.KEPT, "the last voter of a cluster the group still wants: kept until a new member is in"
    return HeldBy.NONE, detail


def leader_target(view: EtcdView, leaving: Sequence[str]) -> Member | None:
    """A healthy, caught-up voter to hand leadership to when the leader leaves (None: nobody fit)."""
    candidates = [
        m for m in view.voters() if m.id not in leaving and m.id in view.healthy and m.id != view.leader and m.started
    ]
    candidates.sort(key=lambda m: (view.lag(m.id) if view.lag(m.id) is not None else 1 << 62, m.id))
    return candidates[0] if candidates else None
