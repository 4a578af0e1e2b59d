"""The cluster's identity record at the edge of a pass (``hook_handler.identity`` decides what it says): read once
per pass, written by compare-and-swap — in the founding change itself, when a pass sees the cluster with a leader,
and before every step that changes etcd's voters (both configurations listed)."""

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
    covering,
    identity_name,
    parse,
    seen,
)
from hook_handler.membership import EtcdView, identify
from hook_handler.plan import Key, RecordSet
from hook_handler.route53 import Conflict

WRITE_ATTEMPTS = 3
MAX_CONFIGS = 3  # configurations kept before a pass writes the identity only to drop those etcd's answers made history


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
        """A change carrying ``changes(p, new)`` was accepted."""
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

    def answered(self, p: Pass, view: EtcdView, members: tuple[Member, ...]) -> None:
        """etcd's answer to a voter change: the member list after it, from the member that applied it."""
        if members:
            p.proven = self.voters(replace(view, members=members), p)

    def _set(self, identity: ClusterIdentity) -> RecordSet:
        return RecordSet.of(self.key[0], "TXT", IDENTITY_TTL, [identity.value()])

    # -- the rules' inputs --------------------------------------------------------------------------------------------
    def voters(self, view: EtcdView, p: Pass, *, without: Member | None = None) -> frozenset[str]:
        """etcd's voters as instance ids (``?<member id>`` where no instance is known), ``without`` one."""
        owner = identify(view, p.obs.instances).owner
        return frozenset(
            owner.get(m.id) or f"{UNKNOWN_VOTER}{m.hex_id}"
            for m in view.voters()
            if without is None or m.id != without.id
        )

    def seen(self, p: Pass, view: EtcdView | None, joining: Iterable[str] = ()) -> ClusterIdentity | None:
        """The identity once this pass saw ``view`` (``identity.seen``), plus a configuration with each of
        ``joining`` (this change's joiners, so their promotion needs no write of its own), when the record says
        otherwise; None: nothing to write (etcd not seen with a leader and a healthy quorum, the record agrees, or a
        restore's seed: its own phase confirms it)."""
        if view is None or not view.cluster_id or view.leader is None or not _quorum_healthy(view):
            return None
        before = self.read(p)
        if before is not None and before.state is ClusterState.RESTORING:
            return None
        voters = self.voters(view, p)
        new = seen(before, view.cluster_id, voters, self.s.clock.now(), p.proven)
        for iid in joining:
            new = covering(new, voters, voters | {iid}) or new
        return None if new == before else new

    def confirm(self, p: Pass, view: EtcdView | None) -> None:
        """Write what ``seen`` says on its own (no record change carried it) — only when the record is not safe as
        it is: no cluster or another one named, or etcd's voters not a listed configuration. Dropping
        configurations that are history waits for the next record change to ride in."""
        new = self.seen(p, view)
        before = p.identity
        if new is None or (
            before is not None
            and before.state is ClusterState.RUNNING
            and before.cluster_id == new.cluster_id
            and all(c in before.configs for c in new.configs)
            and len(before.configs) <= MAX_CONFIGS
        ):
            return
        self.update(p, lambda _before: self.seen(p, view))

    def cover(self, p: Pass, view: EtcdView, after: frozenset[str]) -> None:
        """Before a step that takes etcd's voters to ``after``: the identity lists the voters now and after."""
        current = self.voters(view, p)
        if current == after:
            return
        now = self.s.clock.now()
        p.proven = None  # only etcd's answer to this step proves what it did

        def make(before: ClusterIdentity | None) -> ClusterIdentity | None:
            if before is None or not before.existed:  # a founding not confirmed yet, or a cluster without one
                before = ClusterIdentity(ClusterState.RUNNING, now, view.cluster_id, (current,))
            return covering(before, current, after)

        self.update(p, make)


def _quorum_healthy(view: EtcdView) -> bool:
    voters = view.voters()
    return sum(1 for m in voters if m.id in view.healthy) >= len(voters) // 2 + 1
