"""The record at the edge of a pass: plan and compare-and-swap (``publish``), name the change on the instances it
settles, and wait for the changes that prove the record's state to be INSYNC (``prove``, ``wait``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from hook_handler.coordinator.cluster import ClusterRecord
from hook_handler.coordinator.context import Pass, Services
from hook_handler.decide import (
    Proof,
    ProofKind,
    RecordInputs,
    change_comment,
    proof,
    record_plan,
    with_tags,
    write_marks,
)
from hook_handler.events import LifecycleEvent
from hook_handler.exceptions import DeadlineReached
from hook_handler.identity import ClusterIdentity, ClusterState, founding_allowed
from hook_handler.lifecycle import CHANGE_TAG, TARGET_TAG
from hook_handler.members import LEAVE_CHANGE_TAG, never_older
from hook_handler.plan import Key, Plan, RecordSet, absolute, peer_targets, target_of
from hook_handler.route53 import Conflict
from hook_handler.telemetry import MetricUnit

MAX_CAS_ATTEMPTS = 8
FOLLOWER_POLL_SECONDS = 5.0  # a pass following another pass's change polls at this slower pace
MARKER_LABEL = "_etcd-asg-coordinator"  # the proof marker set: <label>.<peer record> (see ``marker_change``)
MARKER_TARGET = "etcd-asg-coordinator.invalid."
MARKER_TTL = 60
# A record target no instance is found for and no etcd member advertises is dropped only when a look this long
# after the record read still finds no instance for it (describes lag behind launches: seconds on AWS).
ORPHAN_GRACE_SECONDS = 60.0


class Publisher:
    def __init__(self, services: Services, cluster: ClusterRecord) -> None:
        self.s = services
        self.cluster = cluster
        # Record targets no instance was found for and no etcd member advertises → when first found so (after the
        # record read). Sandbox memory: a cold start only delays their drop by one more look.
        self.orphans: dict[str, float] = {}

    def publish(self, p: Pass, pending: Sequence[LifecycleEvent], inputs: RecordInputs) -> tuple[Plan, str | None]:
        """Plan and write with compare-and-swap; on a conflict, observe and read again (``p.obs`` follows)."""
        for attempt in range(1, MAX_CAS_ATTEMPTS + 1):
            p.obs, current = self.s.look.records(p.obs, p.deadline)
            self.cluster.take(p, current)
            plan = self._plan(p, current, inputs, pending)
            if p.report.dry_run or not plan.changes:
                return plan, None
            # The cluster identity rides in the record's change: a founding's, or the cluster seen with a leader.
            joining = plan.launches if self.s.membership is not None and not plan.bootstrap else ()
            identity = self._founding(p, plan) or self.cluster.seen(p, p.view, joining)
            if identity is not None:
                plan = replace(plan, changes=(*plan.changes, *self.cluster.changes(p, identity)))
            marks = write_marks(plan, p.obs, self.s.settings)
            if marks:  # write before mutate
                self.s.asg.tag(marks, p.deadline)
                p.obs = with_tags(p.obs, marks)
            try:
                change = self.s.route53.apply(plan.changes, change_comment(plan), p.deadline)
            except Conflict as exc:
                self.s.count("Conflicts")
                self.s.log.warning("record changed under us; re-reading", extra={"attempt": attempt, "error": str(exc)})
                self.s.clock.sleep(min(2.0, 0.1 * attempt))
                # The describe may answer from before the last one (a launch back in Pending): what was seen stays.
                fresh = self.s.look.observe({e.instance_id for e in pending if e.instance_id}, p.deadline)
                p.obs = type(fresh)(fresh.groups, never_older(fresh.instances, p.obs.instances), fresh.now)
                continue
            extra = {
                "change_id": change.id,
                "before": p.report.before,
                "after": plan.targets,
                "changes": len(plan.changes),
            }
            if identity is not None:
                self.cluster.wrote(p, identity)
            self.s.log.info("record changed", extra=extra)
            p.report.change_id = change.id
            return plan, change.id
        raise DeadlineReached(f"record kept changing under us ({MAX_CAS_ATTEMPTS} conflicts)")

    def _founding(self, p: Pass, plan: Plan) -> ClusterIdentity | None:
        """A founding record's identity (``founding``), written in the same change. Founding where the identity says
        a cluster has existed is logged and counted (``FoundedOverExisting``): a new, empty cluster over one whose
        members are all gone."""
        if not plan.bootstrap or not plan.targets or self.s.membership is None or plan.restoring:
            return None  # not a founding (a deletion), DNS only (etcd unseen), or a restore (its identity says so)
        if not founding_allowed(p.identity):
            assert p.identity is not None
            self.s.log.error("founding where a cluster existed", extra={"identity": p.identity.value()})
            self.s.count("FoundedOverExisting")
        return ClusterIdentity(ClusterState.FOUNDING, self.s.clock.now())

    def _plan(
        self, p: Pass, current: Mapping[Key, RecordSet], inputs: RecordInputs, pending: Sequence[LifecycleEvent]
    ) -> Plan:
        obs = p.obs
        ripe = {t for t, since in self.orphans.items() if obs.now - since >= ORPHAN_GRACE_SECONDS}
        plan = record_plan(self.s.settings, obs, current, inputs, orphans_ripe=ripe)
        if not p.report.dry_run:
            now = self.s.clock.now()  # after the record read: a describe this much later shows a joiner it lists
            self.orphans = {t: self.orphans.get(t, now) for t in plan.orphans if t not in plan.removed}
        p.report.before = tuple(sorted(peer_targets(current.get((self.s.settings.srv_fqdn, "SRV")))))
        p.report.after = plan.targets
        p.report.held = plan.held
        self._log_plan(plan, pending)
        if plan.guard_kept:
            self.s.log.error("removal guard refused", extra={"kept": plan.guard_kept, "why": plan.guard_reasons})
            self.s.count("GuardRefused", len(plan.guard_kept))
        return plan

    def _log_plan(self, plan: Plan, pending: Sequence[LifecycleEvent]) -> None:
        fields = ("targets", "added", "removed", "held", "queued", "bootstrap", "notes")
        extra: dict[str, Any] = {"events": [f"{e.kind.value}:{e.instance_id}" for e in pending]}
        extra.update({name: getattr(plan, name) for name in fields})
        extra.update(members=[m.instance_id for m in plan.members], changes=len(plan.changes))
        self.s.log.info("plan", extra=extra)

    # -- proofs ---------------------------------------------------------------------------------------------------
    def prove(
        self, p: Pass, plan: Plan, launches: Iterable[str], leaves: Iterable[str], change_id: str | None
    ) -> tuple[set[str], bool] | None:
        """The changes to wait for, and whether they are another pass's (follower); None: nothing proves the
        record's state yet (it was deleted, and the deleting pass has not tagged its change). See ``decide.proof``."""
        launches, leaves = list(launches), list(leaves)
        inst = p.obs.instances
        found = proof(
            change_id,
            [inst[i] for i in launches],
            [inst[i] for i in leaves],
            plan.current.get((self.s.settings.srv_fqdn, "SRV")),
        )
        if found.kind is ProofKind.OWN:
            self.tag_proof(change_id or "", launches, CHANGE_TAG, p)
            # Every leaver this change dropped, with an action or not yet (seen in `Terminating`, before its
            # `Terminating:Wait`): its own pass then follows this change instead of writing another.
            self.tag_proof(change_id or "", [*leaves, *(i for i in plan.dropped if i in inst)], LEAVE_CHANGE_TAG, p)
            return set(found.changes), False
        if found.kind is ProofKind.FOLLOW:
            return set(found.changes), True
        if found.kind is ProofKind.UNPROVEN:
            self.s.log.warning("no change id proves the record for a launch; waiting for a retry")
            self.s.count("UnprovenDeletions")
            return None
        change = self._fresh_change(found, p.deadline)
        self.tag_proof(change, launches, CHANGE_TAG, p)
        self.tag_proof(change, leaves, LEAVE_CHANGE_TAG, p)
        return {change}, False

    def _fresh_change(self, found: Proof, deadline: float) -> str:
        """Submit a change whose INSYNC proves every earlier change to the zone INSYNC: the peer record rewritten
        with its own values, or, when it is gone, a change to the marker set."""
        if found.kind is ProofKind.REWRITE and found.peer is not None:
            peer = found.peer.to_route53()
            rewrite = [{"Action": "DELETE", "ResourceRecordSet": peer}, {"Action": "CREATE", "ResourceRecordSet": peer}]
        else:
            rewrite = self.marker_change(deadline)
        try:
            return self.s.route53.apply(rewrite, "etcd-asg-coordinator: prove propagation", deadline).id
        except Conflict:
            raise DeadlineReached("record changed while proving propagation; retrying") from None

    def marker_change(self, deadline: float) -> list[dict[str, Any]]:
        """A change to the marker set ``_etcd-asg-coordinator.<peer record>`` (one SRV value whose port counts the
        proofs). It names no host a member could read as a peer (``etcd-asg-coordinator.invalid.``, RFC 2606)."""
        name = f"{MARKER_LABEL}.{self.s.settings.srv_fqdn}"
        current = self.s.route53.read([(name, "SRV")], deadline).get((absolute(name), "SRV"))
        port = 1
        changes: list[dict[str, Any]] = []
        if current is not None:
            changes.append({"Action": "DELETE", "ResourceRecordSet": current.to_route53()})
            try:
                port = int(current.values[0].split()[2]) % 65535 + 1
            except (IndexError, ValueError):
                port = 1
        marker = RecordSet.of(name, "SRV", MARKER_TTL, [f"0 0 {port} {MARKER_TARGET}"])
        changes.append({"Action": "CREATE", "ResourceRecordSet": marker.to_route53()})
        return changes

    def tag_proof(self, change_id: str, instances: Iterable[str], key: str, p: Pass) -> None:
        """Name the change on every instance it settles, before waiting: a retry that finds the record already
        right waits on this change instead of writing again."""
        tags: dict[str, dict[str, str]] = {}
        for iid in dict.fromkeys(instances):
            inst = p.obs.instances[iid]
            want = {key: change_id}
            target = target_of(inst, self.s.settings) if key == CHANGE_TAG else None
            if target and inst.tags.get(TARGET_TAG) != target:
                want[TARGET_TAG] = target  # so the target can be told to be this instance's after its addresses go
            if any(inst.tags.get(k) != v for k, v in want.items()):
                tags[iid] = want
        if tags:
            self.s.asg.tag(tags, p.deadline)

    def wait(
        self, changes: Iterable[str], p: Pass, *, follower: bool = False, initial_delay: float | None = None
    ) -> None:
        """Poll each change until INSYNC, heartbeating every held action meanwhile."""
        settings = self.s.settings
        # A pass waiting on a change another pass wrote follows at a slower pace: the writer polls and completes
        # these actions too; the follower only covers for a writer that died.
        interval = (
            max(settings.poll_interval_seconds, FOLLOWER_POLL_SECONDS) if follower else settings.poll_interval_seconds
        )
        delay = settings.poll_initial_delay_seconds if initial_delay is None else initial_delay
        for change in sorted(changes):
            waited = self.s.route53.wait_insync(
                change, deadline=p.deadline, initial_delay=delay, interval=interval, while_waiting=p.keeper.beat
            )
            if initial_delay is None:
                self.s.count("PropagationSeconds", waited, MetricUnit.Seconds)
                self.s.log.info("change insync", extra={"change_id": change, "waited": round(waited, 3)})
