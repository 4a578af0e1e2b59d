"""One coordination pass: judge → etcd's departed members out → the record → INSYNC → complete and admit →
the next queued joiner. The steps read top to bottom in ``Coordinator.run`` and ``Coordinator._round``; each
decision is a pure function (``decide``, ``membership``, ``phases``, ``plan``) and each effect is one module of
this package (``record``, ``etcd_steps``, ``actions``, ``certificates``).

A pass takes every event of an invocation together (one for EventBridge/SNS, a batch for SQS, none for a
reconcile), so a burst costs one write and one poll loop. Correctness rests on four rules: membership comes from
the APIs and etcd's member list, never from the event; every write is a compare-and-swap; an action completes only
after a change whose record says the right thing is INSYNC; etcd's membership changes one member at a time, each
checked against quorum first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hook_handler.backup.errors import SnapshotError
from hook_handler.certs import CertificateError, MemberCertificates
from hook_handler.clock import Clock
from hook_handler.coordinator.actions import Actions
from hook_handler.coordinator.certificates import Issuer
from hook_handler.coordinator.cluster import ClusterRecord
from hook_handler.coordinator.context import Pass, Services
from hook_handler.coordinator.etcd_steps import EtcdSteps
from hook_handler.coordinator.record import Publisher
from hook_handler.coordinator.recovery import Restorer
from hook_handler.decide import (
    RecordInputs,
    as_completed,
    earlier_leave_proof,
    foreign_hook,
    hook_setting,
    judge,
    member_owners,
    nothing_to_do,
    parse_time,
    refusal,
)
from hook_handler.etcd import EtcdTlsError, Membership, MembershipError
from hook_handler.events import Kind, LifecycleEvent
from hook_handler.exceptions import DeadlineReached
from hook_handler.heartbeat import Keeper
from hook_handler.identity import ClusterIdentity, ClusterState, Loss
from hook_handler.lifecycle import LAUNCHING, Action, AutoScaling
from hook_handler.look import Look, Looker
from hook_handler.members import LEAVE_CHANGE_TAG as LEAVE_CHANGE
from hook_handler.membership import EtcdView
from hook_handler.plan import Observation, Plan
from hook_handler.report import Outcome, Report, Status
from hook_handler.retry import error_code, error_message
from hook_handler.route53 import Route53
from hook_handler.settings import Settings

MAX_ROUNDS = 8  # extra rounds a pass may take for leavers that waited on its joiners
LAG_LOOKS = 3  # looks again at an event the describes do not show yet ...
LAG_PAUSE_SECONDS = 2.0  # ... this long apart
SNAPSHOT_BEFORE_CHANGE_SECONDS = 60.0  # the most a membership change waits on its snapshot
_PASS_ERRORS = (DeadlineReached, MembershipError, ClientError, CertificateError)


class Coordinator:
    """Runs passes. Clients, clock, logger, metrics and etcd are passed in (see ``app``)."""

    def __init__(
        self,
        settings: Settings,
        route53: Route53,
        autoscaling: AutoScaling,
        clock: Clock,
        *,
        logger: Any,
        metrics: Any,
        account: str | None = None,
        region: str | None = None,
        membership: Membership | None = None,
        certificates: MemberCertificates | None = None,
        snapshots: Any = None,
    ) -> None:
        self.settings = settings
        self.snapshots = snapshots  # ``backup.take.SnapshotTaker`` (snapshot_bucket): a round per scheduled reconcile
        self.route53 = route53
        self.asg = autoscaling
        self.clock = clock
        self.account = account
        self.region = region
        self.membership = membership
        self.certificates = certificates  # member certificates (etcd_ca_secret), issued before the go signal
        self.look = Looker(settings, autoscaling, route53, clock, membership, log=logger)
        self.services = Services(
            settings, route53, autoscaling, clock, logger, metrics, self.look, membership, certificates
        )
        self.issuer = Issuer(self.services)
        self.actions = Actions(self.services, self.issuer)
        self.cluster = ClusterRecord(self.services)
        self.record = Publisher(self.services, self.cluster)
        self.steps = EtcdSteps(self.services, self.actions, self.issuer, self.cluster)
        self.restorer = Restorer(self.services, self.cluster, self)
        self.steps.before_change = self._snapshot_before_change
        self._warned: set[tuple[str, str]] = set()  # hooks whose heartbeat timeout was checked (once per sandbox)

    # -- the pass ---------------------------------------------------------------------------------------------------
    def run(self, events: Sequence[LifecycleEvent], deadline: float, *, dry_run: bool = False) -> Report:
        """Handle ``events`` (empty = reconcile) before ``deadline`` (epoch seconds, margin included)."""
        report = Report(dry_run=dry_run)
        live = [e for e in events if self._refused(e, report) is None]
        if events and not live:
            return report
        self.actions.seen(live)
        if not dry_run and all(e.kind is Kind.RECONCILE for e in live):  # a reconcile (CLI or schedule)
            self.issuer.sweep(deadline)
        # 1. Judge the events against what the APIs say (looking again, briefly, while they lag behind).
        obs, pending = self._judge(live, report, deadline)
        pending = self._own_hooks(pending, report, deadline)
        # Warm-pool moves that change no membership need no record and no etcd: completed at once.
        passing = [e for e in pending if e.kind is Kind.PASS]
        pending = [e for e in pending if e.kind is not Kind.PASS]
        if passing and not dry_run:
            self.actions.complete_passing(passing, report, deadline)
        if nothing_to_do(live, pending, report.outcomes, obs):
            return report
        keeper = Keeper(
            self.asg,
            self.clock,
            self.settings.heartbeat_interval_seconds,
            deadline,
            log=self.services.log,
            warned=self._warned,
        )
        p = Pass(deadline, report, keeper, obs, started=self.clock.now())
        keeper.discover = lambda _keeper: self.actions.discover(p)
        rounds = 0
        # One round per joiner while launches queue for a running cluster (``Plan.queued``: etcd takes one new
        # member at a time); otherwise a single round, or a few more for leavers that waited on a joiner.
        while pending is not None:
            pending, rounds = self._round(p, pending, rounds)
        if not dry_run:
            self._confirm(p)
            keeper.beat(force=True)  # held terminations and launches outlive this pass
            if not events or all(e.kind is Kind.RECONCILE for e in events):
                self._snapshot(p)
        return report

    def _confirm(self, p: Pass) -> None:
        """The identity names the cluster this pass saw with a leader, and its voters — written here when no record
        change of the pass carried it. Best effort: the next pass confirms it."""
        try:
            self.cluster.confirm(p, p.view)
        except _PASS_ERRORS as exc:
            self.services.log.warning("cluster identity not confirmed", extra={"error": _why(exc)})

    def write_identity(self, new: ClusterIdentity, look: Look, deadline: float) -> None:
        """Replace the identity ``look`` read with ``new`` by compare-and-swap (the restore command's one write)."""
        p = Pass(deadline, Report(), Keeper(self.asg, self.clock, 60.0, deadline), look.obs, started=self.clock.now())
        self.cluster.take(p, look.records)
        self.cluster.update(p, lambda before: new if before == look.identity else None)
        if p.identity != new:
            raise DeadlineReached("the cluster identity record changed under the restore: run it again")

    def _snapshot_before_change(self, p: Pass) -> None:
        """Right before the pass's first membership change: a snapshot unless the newest already holds etcd's data
        (``force``: taken whatever the interval, skipped only while the revision has not moved). Best effort and
        bounded: a change never waits on S3 for long, nor fails because of it."""
        if self.snapshots is None or p.snapshotted:
            return
        p.snapshotted = True
        try:
            bound = min(p.deadline, self.clock.now() + SNAPSHOT_BEFORE_CHANGE_SECONDS)
            self.snapshots.run(self.look.endpoints(p.obs), bound, force=True)
        except (SnapshotError, MembershipError, EtcdTlsError, ClientError, BotoCoreError, DeadlineReached) as exc:
            self.services.log.warning("snapshot before a membership change failed", extra={"error": str(exc)[:300]})
            self.services.count("SnapshotFailures")

    def _snapshot(self, p: Pass) -> None:
        """A snapshot round after a reconcile (``backup.take``: taken when due, skipped while the revision has not
        moved, then retention). Best effort: a failure is logged and counted, and the next reconcile tries again;
        the ``SnapshotAgeSeconds`` alarm says when they keep failing."""
        if self.snapshots is None:
            return
        try:
            self.snapshots.run(self.look.endpoints(p.obs), p.deadline)
        except (SnapshotError, MembershipError, EtcdTlsError, ClientError, BotoCoreError, DeadlineReached) as exc:
            self.services.log.warning("snapshot round failed", extra={"error": str(exc)[:300]})
            self.services.count("SnapshotFailures")

    def _round(self, p: Pass, pending: list[LifecycleEvent], rounds: int) -> tuple[list[LifecycleEvent] | None, int]:
        """One round; returns the events of the next round (None: the pass ends) and the extra rounds taken."""
        report = p.report
        try:
            # 2. etcd: members whose instances left go first (each only if quorum allows).
            inputs = self._reconfigure(p)
            # 3. The record: plan and compare-and-swap.
            plan, change_id = self.record.publish(p, pending, inputs)
        except _PASS_ERRORS as exc:
            self.actions.hold_leaving_members(p)  # whatever failed, no member's termination goes on a timeout
            if not pending:
                raise  # a reconcile that cannot finish must fail loudly (the Errors alarm)
            self.actions.hand_off(pending, _why(exc), p)
            return None, rounds
        report.plan = plan
        if report.dry_run:
            report.outcomes += [Outcome(e, Status.DRY_RUN, "nothing applied") for e in pending]
            return None, rounds
        settle, waiting = self._hold_unsettled(plan, pending, p)
        before = report.settled
        try:
            # 4-5. Wait INSYNC, complete the leaves, bring the joiners in.
            self._settle(plan, settle, change_id, p)
        except _PASS_ERRORS as exc:
            self.actions.hold_leaving_members(p)
            self.actions.hand_off([*settle, *waiting], _why(exc), p)
            return None, rounds
        if not plan.queued:
            completed = {c[0] for c in report.completed}
            held_leaves = [iid for iid in report.quorum_held if iid not in completed]
            if not held_leaves or report.settled == before or rounds >= MAX_ROUNDS:
                return None, rounds
            # A leaver waited for this round's joiner (add before remove): go round once more, so the member that
            # may now go goes in this pass rather than at the next reconcile.
            report.quorum_held = []
            p.obs = as_completed(self.look.observe(set(), p.deadline), [*report.completed, *report.finished])
            return [], rounds + 1
        if report.settled == before:
            self.actions.hand_off(waiting, "an earlier joiner is not settled yet", p)
            return None, rounds
        # 6. The next joiner — this pass's own, or another launch's whose event is late, throttled or lost: Lambda
        # retries a throttled event with backoff up to 5 minutes, past the hook's heartbeat timeout, so the pass that
        # holds the queue works it down (until its deadline) rather than leaving it to events that may come too late.
        self.services.log.info("next joiner", extra={"queued": sorted(plan.queued)})
        obs = self.look.observe({e.instance_id for e in waiting if e.instance_id}, p.deadline)
        p.obs = as_completed(obs, [*report.completed, *report.finished])
        judged = judge(waiting, p.obs)
        self._record(judged.outcomes, report)
        return judged.pending, rounds

    # -- 1. events --------------------------------------------------------------------------------------------------
    def _refused(self, event: LifecycleEvent, report: Report) -> Outcome | None:
        """Refusals that need no API call: ignored kinds, wrong account/region, unserved group."""
        if event.kind is Kind.IGNORE:
            self.services.log.info("ignored", extra={"reason": event.reason, "group": event.group})
            report.outcomes.append(Outcome(event, Status.IGNORED, event.reason))
            return report.outcomes[-1]
        why = refusal(event, self.settings, account=self.account, region=self.region)
        if why is None:
            return None
        report.outcomes.append(self.services.reject(Outcome(event, Status.REJECTED, why, ok=False)))
        return report.outcomes[-1]

    def _own_hooks(self, pending: Sequence[LifecycleEvent], report: Report, deadline: float) -> list[LifecycleEvent]:
        """Only the coordinator's hooks are completed or heartbeated: with a hook name set, ``refusal`` checked it
        before any call; without one, the coordinator's hook is the group's only hook for the transition. An event
        naming any other hook is refused and changes nothing."""
        own = []
        for event in pending:
            setting, configured = hook_setting(event.transition, self.settings)
            if configured or not (event.group and event.hook_name and event.transition):
                own.append(event)
                continue
            names = self.asg.hook_names(event.group, event.transition, deadline, expect=event.hook_name)
            if names == [event.hook_name]:
                own.append(event)
                continue
            kind = "launching" if event.transition == LAUNCHING else "terminating"
            ours = (
                f"the group has {len(names)} {kind} hooks ({', '.join(sorted(names))}) and {setting} is not set"
                if len(names) > 1
                else f"the group's only {kind} hook is {names[0]!r}"
                if names
                else f"the group has no {kind} hook"
            )
            why = foreign_hook(event, ours, setting)
            report.outcomes.append(self.services.reject(Outcome(event, Status.REJECTED, why, ok=False)))
        return own

    def _judge(
        self, live: Sequence[LifecycleEvent], report: Report, deadline: float
    ) -> tuple[Observation, list[LifecycleEvent]]:
        ids = {e.instance_id for e in live if e.instance_id}
        obs = self.look.observe(ids, deadline)
        judged = judge(live, obs, final=False)
        self._record(judged.outcomes, report)
        pending, lagging = judged.pending, judged.lagging
        for attempt in range(1, LAG_LOOKS + 1):
            if not lagging or self.clock.now() + LAG_PAUSE_SECONDS >= deadline:
                break
            self.clock.sleep(LAG_PAUSE_SECONDS)
            obs = self.look.observe(ids, deadline)
            judged = judge(lagging, obs, final=attempt == LAG_LOOKS)
            self._record(judged.outcomes, report)
            pending, lagging = pending + judged.pending, judged.lagging
        if lagging:
            self._record(judge(lagging, obs).outcomes, report)
        return obs, pending

    def _record(self, outcomes: Sequence[Outcome], report: Report) -> None:
        for outcome in outcomes:
            if outcome.status in (Status.REJECTED, Status.UNCONFIRMED):
                self.services.reject(outcome)
            report.outcomes.append(outcome)

    # -- 2. etcd ----------------------------------------------------------------------------------------------------
    def _reconfigure(self, p: Pass) -> RecordInputs:
        """Look at etcd, remove departed members where quorum allows; what etcd then tells the record."""
        if self.membership is None:
            return RecordInputs()
        try:
            view = self.look.etcd(p.obs, p.deadline)
        except MembershipError:
            self._judge_loss(p)
            raise
        loss = self._judge_loss(p) if view is None or view.leader is None else None
        if view is None or loss is not None or self._restoring(p, view):
            inputs = self.restorer.inputs(p, loss, view)
            if loss is not None and inputs.restore_seed is None:
                self._lost(p, loss)
            if view is None or inputs.restore_seed is not None or self._restoring(p, view):
                return inputs  # the old cluster is being replaced: nothing of it to reconfigure
        p.obs = self.look.owners(p.obs, view, p.deadline)
        owners = member_owners(view, p.obs)  # before any member goes
        view, gone = self.steps.reconfigure(p, view)
        self.steps.replace_lost(p, view)
        p.view = view
        return RecordInputs.of(view, gone, owners, p.obs)

    def _restoring(self, p: Pass, view: EtcdView) -> bool:
        """A restore is under way and what answers has no leader (survivors of the old cluster). A view with a leader
        is the restored cluster (its seed), served as any running cluster — and costs no extra read."""
        if view.leader is not None:
            return False
        identity = self.cluster.read(p)
        return identity is not None and identity.state is ClusterState.RESTORING

    def _judge_loss(self, p: Pass) -> Loss | None:
        """etcd gave no view, or one without a leader: whether the identity says a cluster existed and EC2 proves its
        quorum lost for good (``identity.lost_for_good``)."""
        identity = self.cluster.read(p)
        if identity is None or identity.state is ClusterState.RESTORING:
            return None  # no cluster existed, or the old one's loss is being recovered from
        return self.look.loss(identity, p.obs, p.deadline)

    def _lost(self, p: Pass, loss: Loss) -> None:
        """Say that quorum is lost for good and nothing recovers it by itself (log, ``ClusterLost`` metric and alarm,
        ``status``) — unless the served groups were scaled to zero: a dormant cluster, whose next launch restores."""
        identity = p.identity
        extra = {"cluster": identity.cluster_id if identity else "", "survivors": loss.alive, "why": loss.why}
        p.report.cluster_lost = loss.why
        if p.obs.groups and all(g.desired_capacity == 0 for g in p.obs.groups.values()):
            self.services.log.info("etcd cluster dormant: the groups are scaled to zero", extra=extra)
            return
        self.services.log.error("etcd quorum lost for good", extra=extra)
        self.services.count("ClusterLost")

    # -- 4-5. wait, complete, admit ---------------------------------------------------------------------------------
    def _hold_unsettled(
        self, plan: Plan, pending: Sequence[LifecycleEvent], p: Pass
    ) -> tuple[list[LifecycleEvent], list[LifecycleEvent]]:
        """Hold the launches this change does not settle (bootstrap barrier, join queue); the events it settles,
        and the queued joiners' events."""
        held, queued = set(plan.held), set(plan.queued)
        self.actions.hold(plan.held, LAUNCHING, p)
        self.actions.hold(plan.queued, LAUNCHING, p)
        settle = [e for e in pending if not (e.kind is Kind.JOIN and e.instance_id in held | queued)]
        waiting = [e for e in pending if e.kind is Kind.JOIN and e.instance_id in queued]
        barrier = f"bootstrap barrier: {len(plan.members) + len(held)}/{plan.expected} present"
        p.report.outcomes += [
            Outcome(e, Status.HELD, barrier) for e in pending if e.kind is Kind.JOIN and e.instance_id in held
        ]
        return settle, waiting

    def _settle(self, plan: Plan, settle: Sequence[LifecycleEvent], change_id: str | None, p: Pass) -> None:
        p.events = {e.instance_id: e for e in settle}
        actions = self.actions.of_plan(plan, p, settle)
        excluded = self.actions.excluded_by_selector(settle, p.obs)
        if not actions:
            for event in settle:
                status, why = (
                    (Status.IGNORED, excluded[event.instance_id])
                    if event.instance_id in excluded
                    else (Status.ALREADY_DONE, "no action waits")
                )
                p.report.outcomes.append(Outcome(event, status, why))
            return
        now = self.clock.now()
        for iid, action in actions.items():
            began = parse_time(p.events[iid].time) if iid in p.events else None
            p.keeper.hold(action, fresh=began is not None and now - began < p.keeper.interval)
        leaves = {iid: a for iid, a in actions.items() if iid not in plan.launches}
        launches = {iid: a for iid, a in actions.items() if iid in plan.launches}
        if change_id is not None:
            leaves = self._settle_early_leaves(leaves, change_id, p)
        proven = self.record.prove(p, plan, launches, leaves, change_id)
        if proven is None:
            # The record is already gone and no change id proves when: the pass that deleted it tags its change
            # right after writing. Wait for that proof (a retry), never complete on the absence.
            self.actions.hand_off(settle, "no change id proves the record's deletion yet", p)
            return
        self.record.wait(proven[0], p, follower=proven[1])
        self.services.count("Members", len(plan.targets))
        # Leaves and warm-pool moves: the record without them is INSYNC (their members are out of etcd).
        self.actions.settle_leaves(leaves, p)
        if launches:
            self._admit(plan, launches, p)
        self.actions.not_covered(p)

    def _settle_early_leaves(self, leaves: Mapping[str, Action], change_id: str, p: Pass) -> dict[str, Action]:
        """Leaves an earlier change already dropped (its id on the instance: written only by a pass that saw them
        leaving) settle on that change, not on this pass's own (a joiner's, with a propagation of its own): completed
        as soon as it is INSYNC. Returns the other leaves."""
        early = {iid: a for iid, a in leaves.items() if earlier_leave_proof(p.obs.instances[iid], change_id)}
        if early:
            proofs = {p.obs.instances[iid].tags[LEAVE_CHANGE] for iid in early}
            self.record.wait(proofs, p, initial_delay=0.0)
            self.actions.settle_leaves(early, p)
        return {iid: a for iid, a in leaves.items() if iid not in early}

    def _admit(self, plan: Plan, launches: Mapping[str, Action], p: Pass) -> None:
        if self.membership is None:
            # DNS only: a founding member is told 'new'; a joiner into a running cluster is told nothing (whatever
            # manages membership must add it), never 'existing' without a member add.
            if plan.cluster_state == "new":
                self.steps.go(launches, p, "new")
            self.actions.complete(launches, "CONTINUE", p)
        elif plan.cluster_state == "new":
            self.steps.found(launches, p)
        elif plan.cluster_state == "restore":
            self.steps.found(launches, p, state="restore", tags=self.restorer.go_tags(p))
        else:
            self.steps.join(launches, p)


def _why(exc: BaseException) -> str:
    code = error_code(exc)
    return f"{code}: {error_message(exc)}" if code else str(exc)
