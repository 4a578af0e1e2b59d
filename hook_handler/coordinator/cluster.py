"""The cluster's identity record at the edge of a pass (``hook_handler.identity`` decides what it says): read once
per pass, written by compare-and-swap — in the founding change itself, when a pass sees the cluster with a leader,
and before every step that changes etcd's voters (the instance it changes listed as moving)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from hook_handler.coordinator.context import Pass, Services
from hook_handler.etcd import Member
from hook_handler.exceptions import DeadlineReached
from hook_handler.identity import (
    IDENTITY_TTL,
    UNKNOWN_VOTER,
    ClusterIdentity,
    ClusterState,
    Proof,
    covering,
    identity_name,
    parse,
    seen,
)
from hook_handler.membership import EtcdView, identify
from hook_handler.plan import Key, RecordSet
from hook_handler.route53 import Conflict

WRITE_ATTEMPTS = 3


class ClusterRecord:
    def __init__(self, services: Services) -> None:
        self.s = services

    @property
    def key(self) -> Key:
        return (identity_name(self.s.settings.srv_fqdn), "TXT")

    # -- read ---------------------------------------------------------------------------------------------------------
    def read(self, p: Pass) -> ClusterIdentity | None:
        """The identity record, read at most once per pass (the pass's record read also fills it: ``take``)."""
        if not p.identity_read:
            self.take(p, self.s.route53.read({self.key}, p.deadline))
        return p.identity

    def take(self, p: Pass, current: Mapping[Key, RecordSet]) -> None:
        """Remember the identity from a read of the zone that included its key."""
        found = current.get(self.key)
        p.identity_set = found
        p.identity = parse(found.values, self.s.clock.now()) if found is not None else None
        p.identity_read = True

    # -- write --------------------------------------------------------------------------------------------------------
    def changes(self, p: Pass, new: ClusterIdentity) -> list[dict[str, Any]]:
        """The compare-and-swap entries that replace the identity read in this pass with ``new``."""
        out: list[dict[str, Any]] = []
        if p.identity_set is not None:
            out.append({"Action": "DELETE", "ResourceRecordSet": p.identity_set.to_route53()})
        out.append({"Action": "CREATE", "ResourceRecordSet": self._set(new).to_route53()})
        return out

    def wrote(self, p: Pass, new: ClusterIdentity) -> None:
        """A change carrying ``changes(p, new)`` was accepted. An instance this write started moving is the pass's
        own: no other step on it was in flight, so etcd's answer to the pass's step on it proves what it did."""
        p.fresh |= set(new.moving) - set(p.identity.moving if p.identity is not None else ())
        p.identity, p.identity_set = new, self._set(new)
        self.s.log.info("cluster identity written", extra={"identity": new.value()})

    def update(self, p: Pass, make: Callable[[ClusterIdentity | None], ClusterIdentity | None]) -> None:
        """Write ``make(identity)`` (None: nothing to write), re-reading on a conflict."""
        for _ in range(WRITE_ATTEMPTS):
            new = make(self.read(p))
            if new is None or new == p.identity:
                return
            try:
                self.s.route53.apply(self.changes(p, new), f"etcd cluster identity: {new.state.value}", p.deadline)
            except Conflict:
                self.s.count("Conflicts")
                p.identity_read = False
                continue
            self.wrote(p, new)
            return
        raise DeadlineReached("the cluster identity record kept changing under us")

    def answered(self, p: Pass, view: EtcdView, instance: str, members: tuple[Member, ...]) -> None:
        """etcd's answer to the pass's voter step on ``instance``: the member list after it, from the member that
        applied it (empty: no proof)."""
        at = p.identity.moving.get(instance) if p.identity is not None else None
        if members and at is not None and instance in p.fresh:
            p.proven = Proof(instance, at, self.voters(replace(view, members=members), p))

    def _set(self, identity: ClusterIdentity) -> RecordSet:
        return RecordSet.of(self.key[0], "TXT", IDENTITY_TTL, [identity.value()])

    # -- the rules' inputs --------------------------------------------------------------------------------------------
    def voters(self, view: EtcdView, p: Pass) -> frozenset[str]:
        """etcd's voters as instance ids (``?<member id>`` where no instance is known)."""
        return frozenset(self.voter_key(view, p, m) for m in view.voters())

    def voter_key(self, view: EtcdView, p: Pass, member: Member) -> str:
        """The member's instance id as the identity lists it (``?<member id>`` where no instance is known)."""
        return identify(view, p.obs.instances).owner.get(member.id) or f"{UNKNOWN_VOTER}{member.hex_id}"

    def seen(self, p: Pass, view: EtcdView | None, joining: Iterable[str] = ()) -> ClusterIdentity | None:
        """The identity once this pass saw ``view`` (``identity.seen``), with each of ``joining`` (this change's
        joiners) moving, so their promotion needs no write of its own; None: nothing to write (etcd not seen with a
        leader and a healthy quorum, or the record agrees). A restore's seed running its new cluster ends a restore."""
        if view is None or not view.cluster_id or view.leader is None or not _quorum_healthy(view):
            return None
        before = self.read(p)
        now = self.s.clock.now()
        if before is not None and before.state is ClusterState.RESTORING:
            # The restore is done once its seed runs a cluster other than the one restored from: that one now.
            voters = self.voters(view, p)
            if view.cluster_id == before.cluster_id or before.seed not in voters:
                return None
            return ClusterIdentity(ClusterState.RUNNING, now, view.cluster_id, voters)
        new = seen(before, view.cluster_id, self.voters(view, p), now, p.proven)
        for iid in joining:
            new = covering(new, iid, now)
        return None if new == before else new

    def confirm(self, p: Pass, view: EtcdView | None) -> None:
        """Write what ``seen`` says on its own (no record change carried it) — only when the record is not safe as
        it is: no cluster or another one named, or an instance etcd shows otherwise than the record allows. Dropping
        what etcd's answers proved, or what has settled, waits for the next record change to ride in."""
        new = self.seen(p, view)
        before = p.identity
        if new is None or (
            before is not None
            and before.state is ClusterState.RUNNING
            and before.cluster_id == new.cluster_id
            and set(new.moving) <= set(before.moving)
        ):
            return
        self.update(p, lambda _before: self.seen(p, view))

    def cover(self, p: Pass, view: EtcdView, instance: str) -> None:
        """Before a step that may add or remove ``instance`` as a voter: the identity lists it as moving (once per
        pass: an entry this pass wrote already covers a retry)."""
        now = self.s.clock.now()
        p.proven = None  # only etcd's answer to this step proves what it did
        if p.identity is not None and p.identity.moving.get(instance, -1.0) >= p.started:
            return

        def make(before: ClusterIdentity | None) -> ClusterIdentity | None:
            if before is not None and before.moving.get(instance, -1.0) >= p.started:
                return None
            if before is None or not before.existed:  # a founding not confirmed yet, or a cluster without one
                before = ClusterIdentity(ClusterState.RUNNING, now, view.cluster_id, self.voters(view, p))
            return covering(before, instance, now)

        self.update(p, make)


def _quorum_healthy(view: EtcdView) -> bool:
    voters = view.voters()
    return sum(1 for m in voters if m.id in view.healthy) >= len(voters) // 2 + 1
