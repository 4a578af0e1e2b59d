"""etcd's membership at the edge of a pass: each member phase's next step (``hook_handler.phases``,
``membership.removals``) performed, one idempotent step at a time, each checked against the live member list
first and its phase tag written before the step that needs it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from hook_handler.coordinator.actions import ADMISSION_TAGS, Actions
from hook_handler.coordinator.certificates import Issuer
from hook_handler.coordinator.cluster import ClusterRecord
from hook_handler.coordinator.context import Pass, Services
from hook_handler.decide import dismantling, joiners_pending, waitable
from hook_handler.etcd import EtcdRefused, EtcdUnavailable, Member, Membership, MembershipError, peer_url
from hook_handler.lifecycle import CHANGE_TAG, TARGET_TAG, TERMINATING, Action
from hook_handler.members import DATA_LOST_TAG, LEAVE_CHANGE_TAG, STATE_TAG, Instance
from hook_handler.membership import (
    ADDED,
    ADDING,
    MEMBER_ID_TAG,
    PHASE_TAG,
    SINCE_TAG,
    EtcdView,
    HeldBy,
    Removal,
    identify,
    leader_target,
    quorum_after,
    removals,
)
from hook_handler.phases import FoundAction, JoinAction, JoinStep, found_step, join_step
from hook_handler.plan import target_of

RELOOK_SECONDS = 10.0  # while waiting on a launch, how often to check it is still launching
LEADER_MOVE_SECONDS = 10.0


class EtcdSteps:
    def __init__(self, services: Services, actions: Actions, issuer: Issuer, cluster: ClusterRecord) -> None:
        self.s = services
        self.actions = actions
        self.issuer = issuer
        self.cluster = cluster
        self.before_change: Callable[[Pass], None] = lambda _p: None  # a snapshot first (the coordinator's)

    def _view(self, p: Pass) -> EtcdView | None:
        return self.s.look.etcd(p.obs, p.deadline)

    # -- LEAVING ---------------------------------------------------------------------------------------------------
    def reconfigure(self, p: Pass, view: EtcdView) -> tuple[EtcdView, set[str]]:
        """Remove, one at a time, the members whose instances the APIs say are gone or leaving, each only when the
        voters left keep a healthy quorum; hold the others (their terminations heartbeated). Returns etcd's view
        after, and the member IDs the record no longer keeps (removed, or the last voter a dismantle ends with).
        ``p.obs`` already holds the owners of the view's members (``Looker.owners``)."""
        done: set[str] = set()
        ending_dismantle = dismantling(p.obs)
        while True:
            found = self._removals(view, p, ending_dismantle)
            allowed = [r for r in found if r.allowed and r.member.id not in done]
            if not allowed:
                break
            removal = allowed[0]
            done.add(removal.member.id)
            if p.report.dry_run:
                self.s.log.info("would remove etcd member", extra={"member": removal.member.hex_id, "why": removal.why})
                continue
            leaver = p.obs.instances.get(removal.instance_id or "")
            if leaver is not None and leaver.lifecycle_state == "Terminating:Wait":
                self.actions.hold([leaver.instance_id], TERMINATING, p)  # alive while etcd refuses
            self.remove_member(removal.member, removal.instance_id, removal.why, view, p)
            view = self._view(p) or replace(view, members=())
        ending = {r.member.id for r in found if r.held_by is HeldBy.LAST}
        for removal in self._removals(view, p, ending_dismantle):
            if not removal.allowed and removal.member.id not in done:
                ending |= self._held(removal, p)
        return view, done | ending

    def replace_lost(self, p: Pass, view: EtcdView) -> None:
        """Instances whose member lost its data (``etcd-data-lost``), in service, once etcd no longer has that member
        (removed just now, or never added): replaced by the group — the new instance joins as a new member."""
        owners = identify(view, p.obs.instances).owner
        still = {iid for iid in owners.values() if iid}
        for inst in p.obs.instances.values():
            if inst.group not in p.obs.served or DATA_LOST_TAG not in inst.tags or inst.instance_id in still:
                continue
            if inst.gone or (inst.lifecycle_state or "").startswith(("Terminat", "Warmed")):
                continue
            if p.report.dry_run:
                self.s.log.info(
                    "would replace an instance whose etcd data is lost", extra={"instance": inst.instance_id}
                )
                continue
            self.s.asg.replace(inst.instance_id, p.deadline)
            self.s.count("DataLostReplaced")
            self.s.log.warning(
                "instance replaced: its etcd data is lost and its member removed",
                extra={"instance": inst.instance_id, "since": inst.tags[DATA_LOST_TAG]},
            )

    def _removals(self, view: EtcdView, p: Pass, ending_dismantle: bool) -> list[Removal]:
        identity = identify(view, p.obs.instances)
        joining = joiners_pending(view, identity, p.obs)
        return removals(view, identity, p.obs.instances, joiners_pending=joining, dismantling=ending_dismantle)

    def _held(self, removal: Removal, p: Pass) -> set[str]:
        """Log a held removal and keep its termination alive; returns the member when the cluster ends with it."""
        iid = removal.instance_id
        extra = {"instance": iid, "member": removal.member.hex_id, "why": removal.why, "quorum": removal.quorum}
        if removal.held_by is HeldBy.LAST:
            self.before_change(p)  # the data's last copy outside its disk: what scaling back up restores
            self.s.log.info("the cluster ends with its last member", extra=extra)
            return {removal.member.id}
        if removal.held_by is HeldBy.QUORUM:
            self.s.log.error("quorum guard: member removal held", extra=extra)
            self.s.count("QuorumHold")
        elif removal.held_by is HeldBy.KEPT:
            self.s.log.warning("member removal held: the cluster's last voter", extra=extra)
        else:
            self.s.log.info("member removal waits for the joiner", extra=extra)
        inst = p.obs.instances.get(iid or "")
        if inst is not None and inst.lifecycle_state == "Terminating:Wait" and iid:
            p.report.quorum_held.append(iid)
            self.actions.hold([iid], TERMINATING, p)
        return set()

    def remove_member(self, member: Member, instance_id: str | None, why: str, view: EtcdView, p: Pass) -> None:
        """``member remove``, leadership handed to a healthy voter first when the member leads."""
        self.before_change(p)
        voter = self.cluster.voter_key(view, p, member)
        if not member.learner:  # the identity lists its instance as moving first
            self.cluster.cover(p, view, voter)
        self._move_leader(member, view, p)
        while True:
            # etcd judges a reconfiguration on the member that receives it ("unhealthy cluster" from a member not
            # yet connected to its peers for 5 s, e.g. one that just joined): ask the leader first. The member itself
            # last: the only member left (scale to zero) removes itself.
            endpoints = [*self.s.look.member_endpoints(view, p.obs, exclude=member), *member.client_urls[:1]]
            try:
                self.cluster.answered(
                    p, view, voter, self._membership.remove(member.id, endpoints, p.call_deadline(self.s.clock))
                )
                break
            except EtcdUnavailable as exc:
                p.pause(self.s.clock, f"no etcd member answers the removal of {member.hex_id}: {exc}")
            except EtcdRefused as exc:
                if "not found" in exc.message.lower():
                    break
                if not waitable(exc):
                    raise
                self.s.log.info("member remove refused for now", extra={"member": member.hex_id, "why": exc.message})
                p.pause(self.s.clock, f"etcd refuses to remove {member.hex_id}: {exc.message}")
            view = self._view(p) or view
            if not any(m.id == member.id for m in view.members):
                break
        p.report.members_removed.append(member.hex_id)
        self.s.count("MembersRemoved")
        self.s.log.info("etcd member removed", extra={"member": member.hex_id, "instance": instance_id, "why": why})

    def _move_leader(self, member: Member, view: EtcdView, p: Pass) -> None:
        """Only a live leader can hand over (a dead one may still be named leader by members that have not noticed
        yet); bounded, best effort: removing the leader is safe, only slower for clients."""
        if view.leader != member.id or not member.client_urls or member.id not in view.healthy:
            return
        target = leader_target(view, [member.id])
        if target is None:
            self.s.log.warning("leader leaves with no healthy voter to take over", extra={"member": member.hex_id})
            return
        try:
            bound = min(p.deadline, self.s.clock.now() + LEADER_MOVE_SECONDS)
            self._membership.move_leader(member.client_urls[0], target.id, bound)
            self.s.log.info("leadership moved", extra={"from": member.hex_id, "to": target.hex_id})
            self.s.count("LeaderMoves")
        except MembershipError as exc:  # best effort: removing the leader is safe, only slower
            self.s.log.warning("could not move leadership", extra={"member": member.hex_id, "error": str(exc)})

    @property
    def _membership(self) -> Membership:
        assert self.s.membership is not None  # the steps run only with etcd membership on
        return self.s.membership

    # -- FOUNDING --------------------------------------------------------------------------------------------------
    def go(
        self, launches: Mapping[str, Action], p: Pass, state: str, tags: Mapping[str, str] | None = None
    ) -> dict[str, dict[str, str]]:
        """The go signal: ``etcd-cluster-state`` on each launching instance that lacks it (with its certificate, and
        ``tags``: a restore's snapshot and token, in the same CreateTags). Returns the tags written."""
        now = f"{self.s.clock.now():.0f}"
        go = {
            iid: {STATE_TAG: state, SINCE_TAG: now, **(tags or {}), **self.issuer.tag_for(p.obs.instances[iid])}
            for iid in launches
            if STATE_TAG not in p.obs.instances[iid].tags
        }
        if go:
            self.s.asg.tag(go, p.deadline)
        return go

    def found(
        self, launches: Mapping[str, Action], p: Pass, *, state: str = "new", tags: Mapping[str, str] | None = None
    ) -> None:
        """A new cluster: every founding member is told 'new' (a restore's seed: 'restore', with ``tags``), then each
        completes once it has started and is healthy; one that has not within the start timeout is abandoned (the
        group replaces it, and the replacement joins the running cluster, or seeds the restore again).

        etcd is read with the observation from before the go signal: while founders start, no answer means no
        cluster yet (``Looker.etcd``), not a failure."""
        written = self.go(launches, p, state, tags)
        # The start timer runs from the go signal, or from a start time the instance already carried.
        founders = {
            iid: replace(inst, tags={**inst.tags, **written.get(iid, {}), **_since(inst)})
            for iid, inst in p.obs.instances.items()
            if iid in launches
        }
        left = dict(launches)
        looked = self.s.clock.now()
        while left:
            if self.s.clock.now() - looked >= RELOOK_SECONDS:
                looked = self.s.clock.now()
                for iid in self.actions.drop_ended(left, p):
                    left.pop(iid)
                if not left:
                    return
            view = self._view(p)
            by_name = {m.name: m for m in view.members} if view is not None else {}
            timeout = self.s.settings.member_start_timeout_seconds
            for iid in sorted(left):
                step = found_step(founders[iid], by_name.get(iid), view, now=self.s.clock.now(), start_timeout=timeout)
                if step.step is FoundAction.COMPLETE:
                    self.cluster.confirm(p, view)  # the founding's identity names the cluster now
                    self.actions.complete({iid: left.pop(iid)}, "CONTINUE", p)
                elif step.step is FoundAction.ABANDON:
                    self.actions.abandon(left.pop(iid), "founding member did not start in time", p)
            if left:
                p.pause(self.s.clock, "founding members have not started")

    # -- JOINING and PROMOTING -------------------------------------------------------------------------------------
    def join(self, launches: Mapping[str, Action], p: Pass) -> None:
        """Bring each listed joiner into the running cluster, one at a time (see ``phases.join_step``)."""
        for iid in sorted(launches, key=lambda i: (p.obs.instances[i].launch_time or 0.0, i)):
            tags = self._fresh_start(iid, p)
            looked = self.s.clock.now()
            while True:
                if self.s.clock.now() - looked >= RELOOK_SECONDS:
                    looked = self.s.clock.now()
                    if self.actions.drop_ended([iid], p):
                        break
                view = self._view(p)
                if view is None:
                    raise EtcdUnavailable("(none)", "no etcd member answers: cannot add a joiner")
                instance = replace(p.obs.instances[iid], tags=tags)
                step = self._join_step(instance, view, p)
                self.s.log.info("join step", extra={"instance": iid, "step": step.step.value, "detail": step.detail})
                if step.step is JoinAction.COMPLETE:
                    self.actions.complete({iid: launches[iid]}, "CONTINUE", p)
                    break
                if step.step is JoinAction.TIMEOUT:
                    if step.member is not None:
                        self._drop_joiner(step.member, iid, view, p)
                    self.actions.abandon(launches[iid], step.detail, p)
                    break
                self._join_once(step, instance, view, tags, p)

    def _join_step(self, instance: Instance, view: EtcdView, p: Pass) -> JoinStep:
        identity = identify(view, {**p.obs.instances, instance.instance_id: instance})
        return join_step(
            instance,
            identity.member_of(instance.instance_id, view),
            view,
            now=self.s.clock.now(),
            start_timeout=self.s.settings.member_start_timeout_seconds,
            go_written=STATE_TAG in instance.tags,
        )

    def _fresh_start(self, iid: str, p: Pass) -> dict[str, str]:
        """The joiner's tags; an instance that was a member before (back from the warm pool) has old phase tags that
        describe a member etcd no longer has: its join starts from scratch. (etcd-srv-change and etcd-srv-target were
        just rewritten by this pass for this join.)"""
        tags = dict(p.obs.instances[iid].tags)
        if LEAVE_CHANGE_TAG in tags:
            stale = [k for k in (*ADMISSION_TAGS, LEAVE_CHANGE_TAG) if k in tags and k not in (CHANGE_TAG, TARGET_TAG)]
            self.s.asg.untag([iid], stale, p.deadline)
            tags = {k: v for k, v in tags.items() if k not in stale}
        return tags

    def _join_once(self, step: JoinStep, instance: Instance, view: EtcdView, tags: dict[str, str], p: Pass) -> None:
        """One idempotent step of a joiner (``tags`` is updated with what was written)."""
        iid = instance.instance_id

        def write(values: dict[str, str]) -> None:
            self.s.asg.tag({iid: values}, p.deadline)
            tags.update(values)

        if step.step is JoinAction.ADD:
            if tags.get(PHASE_TAG) != ADDING or SINCE_TAG not in tags:
                write({PHASE_TAG: ADDING, SINCE_TAG: f"{self.s.clock.now():.0f}"})  # write before mutate
            self._add(instance, view, tags, write, p)
        elif step.step is JoinAction.TAG_ID and step.member is not None:
            write({MEMBER_ID_TAG: step.member.hex_id, PHASE_TAG: ADDED})
        elif step.step is JoinAction.GO:
            # The go signal, only now: the record that lists the instance is INSYNC and its member added.
            write({STATE_TAG: "existing", **self.issuer.tag_for(replace(instance, tags=tags))})
        elif step.step is JoinAction.PROMOTE and step.member is not None:
            self._promote(step.member, iid, view, p)
        else:  # WAIT_START
            p.pause(self.s.clock, f"member of {iid} has not started and become healthy yet")

    def _add(
        self, instance: Instance, view: EtcdView, tags: dict[str, str], write: Callable[[dict[str, str]], None], p: Pass
    ) -> None:
        """``member add`` (a learner where etcd has them); then the member ID and the go signal in one CreateTags."""
        iid = instance.instance_id
        # Its certificate before its member: a member that could never start would block every later add.
        certificate = self.issuer.tag_for(replace(instance, tags=tags))
        settings = self.s.settings
        url = peer_url(target_of(instance, settings) or "", settings.etcd_port, settings.etcd_peer_scheme)
        endpoints = self.s.look.member_endpoints(view, p.obs)
        self.before_change(p)
        if not view.learners:  # a voter from the start: the identity lists it as moving first
            self.cluster.cover(p, view, iid)
        try:
            added = self._membership.add([url], endpoints, p.call_deadline(self.s.clock), learner=view.learners)
        except EtcdUnavailable as exc:  # the add may have landed: the next look adopts it (phase adding)
            p.pause(self.s.clock, f"no etcd member answers member add: {exc}")
            return
        except EtcdRefused as exc:
            if not waitable(exc):
                raise
            self.s.log.info("member add refused for now", extra={"instance": iid, "why": exc.message})
            p.pause(self.s.clock, f"etcd refuses member add: {exc.message}")
            return
        p.report.members_added.append(added.hex_id)
        self.s.count("MembersAdded")
        self.s.log.info("etcd member added", extra={"instance": iid, "member": added.hex_id, "peer_url": url})
        # The member ID and, in the same CreateTags, the go signal: the record that lists the instance is INSYNC and
        # its member is added, so its etcd may start now.
        write({MEMBER_ID_TAG: added.hex_id, PHASE_TAG: ADDED, STATE_TAG: "existing", **certificate})

    def _promote(self, member: Member, iid: str, view: EtcdView, p: Pass) -> None:
        self.cluster.cover(p, view, iid)  # listed as moving first
        try:
            endpoints = self.s.look.member_endpoints(view, p.obs)
            self.cluster.answered(
                p, view, iid, self._membership.promote(member.id, endpoints, p.call_deadline(self.s.clock))
            )
            self.s.log.info("learner promoted", extra={"instance": iid, "member": member.hex_id})
        except EtcdUnavailable as exc:
            p.pause(self.s.clock, f"no etcd member answers the promotion: {exc}")
        except EtcdRefused as exc:
            if not waitable(exc) and "not a learner" not in exc.message:
                raise
            p.pause(self.s.clock, f"learner {member.hex_id} not promotable yet: {exc.message}")

    def _drop_joiner(self, member: Member, iid: str, view: EtcdView, p: Pass) -> None:
        """Remove a joiner that never became a healthy voter, before its launch is abandoned (no added-but-unstarted
        member is left behind). Learners and unstarted members never count toward quorum; a started voter is
        removed only if quorum allows, else the removal happens on termination."""
        ok, detail = quorum_after(view, [member.id])
        if member.learner or not member.started or ok:
            self.remove_member(member, iid, "did not start in time", view, p)
        else:
            self.s.log.error("quorum guard: joiner kept until termination", extra={"instance": iid, "quorum": detail})


def _since(instance: Instance) -> dict[str, str]:
    return {SINCE_TAG: instance.tags[SINCE_TAG]} if SINCE_TAG in instance.tags else {}
