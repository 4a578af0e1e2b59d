"""One coordination pass: observe → remove departed members → plan → apply → tag → wait → join → complete.

A pass takes every event of an invocation together (one for EventBridge/SNS, a batch for SQS,
none for a reconcile), so a burst costs one write and one poll loop. Correctness rests on four
rules: membership comes from the APIs and etcd's member list, never from the event; every write is a
compare-and-swap; an action completes only after a change whose record says the right thing is
INSYNC; etcd's membership changes one member at a time, each checked against quorum first.

``Coordinator.run`` reads as the sequence (see ``hook_handler.membership`` for the phases):
  1. judge the events against the APIs (``_judge``)
  2. etcd: remove members whose instances are gone or leaving, when quorum allows (``_reconfigure``)
  3. the record: plan and compare-and-swap (``_publish``), tag the change on the instances
  4. wait INSYNC, heartbeating every action the pass holds (``Keeper``)
  5. complete leaves; joiners: ``member add`` → go signal → started → promoted → healthy → complete
     (``_join``), founding members: go signal → started and healthy → complete (``_found``)
  6. the next queued joiner, or done
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hook_handler.certs import CERT_TAG, CertificateError, MemberCertificates, member_identity
from hook_handler.clock import Clock
from hook_handler.etcd import (
    LEARNER_NOT_READY,
    NOT_ENOUGH_STARTED,
    TOO_MANY_LEARNERS,
    UNHEALTHY,
    EtcdRefused,
    EtcdUnavailable,
    Member,
    Membership,
    MembershipError,
    peer_url,
)
from hook_handler.events import Kind, LifecycleEvent
from hook_handler.exceptions import DeadlineReached
from hook_handler.lifecycle import (
    CHANGE_TAG,
    LAUNCHING,
    TARGET_TAG,
    TERMINATING,
    Action,
    AutoScaling,
)
from hook_handler.members import (
    IN_SERVICE_STATES,
    LEAVE_CHANGE_TAG,
    LEAVING_STATES,
    MEMBER_STATES,
    STATE_TAG,
    Instance,
    never_older,
    tags_match,
)
from hook_handler.membership import (
    ADDED,
    ADDING,
    MEMBER_ID_TAG,
    PHASE_TAG,
    SINCE_TAG,
    EtcdView,
    Identity,
    departure,
    identify,
    is_instance_id,
    join_step,
    leader_target,
    quorum_after,
    removals,
)
from hook_handler.plan import (
    Observation,
    Plan,
    RecordSet,
    absolute,
    build_plan,
    peer_targets,
    record_keys,
    target_of,
)
from hook_handler.retry import error_code, error_message
from hook_handler.route53 import Conflict, Route53
from hook_handler.settings import Settings, fqdn
from hook_handler.srv import SrvValue
from hook_handler.telemetry import MetricUnit

MAX_CAS_ATTEMPTS = 8
MAX_ROUNDS = 8  # extra rounds a pass may take for leavers that waited on its joiners
PENDING = "pending"  # etcd-leave-change value between marking a leaver and naming the change that drops it
FOLLOWER_POLL_SECONDS = 5.0
MEMBER_POLL_SECONDS = 1.0  # between looks at a joiner's member while it starts
RELOOK_SECONDS = 10.0  # while waiting on a launch, how often to check it is still launching
LAG_LOOKS = 3  # looks again at an event the describes do not show yet ...
LAG_PAUSE_SECONDS = 2.0  # ... this long apart
VIEW_READ_SECONDS = 15.0  # how long a look at etcd may take before the pass treats etcd as unreachable
RECONFIG_CALL_SECONDS = 20.0  # one member add/remove/promote call (retried inside) before the pass pauses
_PASS_ERRORS = (DeadlineReached, MembershipError, ClientError, CertificateError)
# What makes an instance an admitted member, revoked when it goes back to the warm pool.
MARKER_LABEL = "_etcd-asg-coordinator"  # the proof marker set: <label>.<peer record> (see _marker_change)
MARKER_TARGET = "etcd-asg-coordinator.invalid."
MARKER_TTL = 60
SWEEP_AGE_SECONDS = 3600.0  # a member secret younger than this is never swept (describes lag behind launches)
CLIENT_RECORD_SECONDS = 60.0  # how long client URLs read from etcd_client_srv are used before it is read again
CLIENT_RECORD_READ_SECONDS = 5.0
# A record target no instance is found for and no etcd member advertises is dropped only when a look this long
# after the record read still finds no instance for it (describes lag behind launches: seconds on AWS).
ORPHAN_GRACE_SECONDS = 60.0
WAIT_STATES = frozenset({"Pending:Wait", "Terminating:Wait"})  # a lifecycle action of ours waits
# (etcd-member-cert too: the secret it names is deleted when the member leaves for the warm pool; a return is issued
# a new one.)
ADMISSION_TAGS = (STATE_TAG, MEMBER_ID_TAG, PHASE_TAG, SINCE_TAG, CHANGE_TAG, TARGET_TAG, CERT_TAG)


@dataclass
class Outcome:
    """What became of one event. ``ok=False`` asks the caller to retry (or dead-letter) it."""

    event: LifecycleEvent
    status: str  # completed | already-done | held | ignored | rejected | unconfirmed | handoff | fallback | abandoned
    detail: str = ""
    ok: bool = True


@dataclass
class Report:
    """The result of a pass, for logs, the CLI and tests."""

    outcomes: list[Outcome] = field(default_factory=list)
    change_id: str | None = None
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    completed: list[tuple[str, str]] = field(default_factory=list)  # (instance id, result)
    # (instance id, result) this pass went to complete and found already finished (another pass did, or the
    # describe that showed it waiting was stale): settled all the same
    finished: list[tuple[str, str]] = field(default_factory=list)
    held: tuple[str, ...] = ()
    quorum_held: list[str] = field(default_factory=list)  # instance ids whose member removal quorum refused
    members_removed: list[str] = field(default_factory=list)  # hex member ids
    members_added: list[str] = field(default_factory=list)
    dry_run: bool = False
    plan: Plan | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "change_id": self.change_id,
            "before": list(self.before),
            "after": list(self.after),
            "completed": [list(c) for c in self.completed],
            "held": list(self.held),
            "quorum_held": list(self.quorum_held),
            "members_removed": list(self.members_removed),
            "members_added": list(self.members_added),
            "dry_run": self.dry_run,
            "outcomes": [
                {"instance": o.event.instance_id, "kind": o.event.kind.value, "status": o.status, "detail": o.detail}
                for o in self.outcomes
            ],
        }


class Keeper:
    """Heartbeats for every action a pass holds: the ones it settles, queued joiners, quorum holds.

    ``discover`` (when given) runs before each round of heartbeats and holds the actions that began waiting
    since the pass looked: a pass may wait minutes (INSYNC, an etcd start, a removal etcd cannot answer
    while quorum is lost) while new launches and terminations queue behind it (reserved concurrency); their
    own events come after it ends, possibly past their hooks' heartbeat timeout (the soak at bd64179 saw a
    pass wait out its deadline on a cluster without quorum while eight actions it never saw expired).
    """

    def __init__(
        self,
        asg: AutoScaling,
        clock: Clock,
        interval: float,
        deadline: float,
        discover: Callable[[Keeper], None] | None = None,
    ) -> None:
        self.asg = asg
        self.clock = clock
        self.interval = interval
        self.deadline = deadline
        self.discover = discover
        self.actions: dict[str, Action] = {}
        self.released: set[tuple[str, str]] = set()  # (instance, transition) settled or ended: not rediscovered
        self.last = clock.now()

    def hold(self, action: Action, *, fresh: bool = False) -> None:
        """Hold ``action`` from now on, and heartbeat it at once when this keeper did not hold it yet (unless
        ``fresh``: its own event says it began less than a beat interval ago): a pass that takes an action over
        cannot know when it was last heartbeated — possibly almost a heartbeat timeout ago, by a pass that ended
        at its deadline (found by `make test`: a queued launch expired 53 s after the next pass "held" it, its
        first beat due a poll interval later)."""
        if action.instance_id in self.actions:
            return
        self.actions[action.instance_id] = action
        if not fresh and not self.asg.heartbeat(action, self.deadline):
            self.release(action.instance_id)  # it ended (completed elsewhere, or its instance went)

    def release(self, instance_id: str, transition: str = "") -> None:
        action = self.actions.pop(instance_id, None)
        self.released.add((instance_id, transition or (action.transition if action is not None else "")))

    def beat(self, *, force: bool = False) -> None:
        if not force and self.clock.now() - self.last < self.interval:
            return
        self.last = self.clock.now()
        if self.discover is not None and not force:  # a forced beat ends a pass: what it holds outlives it
            self.discover(self)
        for iid, action in sorted(self.actions.items()):
            if not self.asg.heartbeat(action, self.deadline):
                self.release(iid)  # it ended (completed elsewhere, or its instance went)


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
    ) -> None:
        self.settings = settings
        self.route53 = route53
        self.asg = autoscaling
        self.clock = clock
        self.log = logger
        self.metrics = metrics
        self.account = account
        self.region = region
        self.membership = membership
        self.certificates = certificates  # member certificates (etcd_ca_secret), issued before the go signal
        # Record targets no instance was found for and no etcd member advertises → when first found so (after the
        # record read). Sandbox memory: a cold start only delays their drop by one more look.
        self._orphans: dict[str, float] = {}
        self._issued: dict[str, str] = {}  # instance id -> its member secret's ARN, made by this sandbox
        self._learners: bool | None = None  # cluster version supports learners (asked once per cold start)
        self._client_urls: tuple[float, list[str]] | None = None  # (read at, URLs) from the client SRV record

    # -- the pass ---------------------------------------------------------------------------
    def run(self, events: Sequence[LifecycleEvent], deadline: float, *, dry_run: bool = False) -> Report:
        """Handle ``events`` (empty = reconcile) before ``deadline`` (epoch seconds, margin included)."""
        report = Report(dry_run=dry_run)
        live: list[LifecycleEvent] = []
        for event in events:
            refusal = self._refuse_early(event)
            if refusal is not None:
                report.outcomes.append(refusal)
            else:
                live.append(event)
        if events and not live:
            return report
        if not dry_run and all(e.kind is Kind.RECONCILE for e in live):  # a reconcile (CLI or schedule)
            self._sweep_certificates(deadline)

        # 1. Judge the events against what the APIs say (looking again, briefly, while they lag behind).
        ids = {e.instance_id for e in live if e.instance_id}
        observation = self.asg.observe(ids, deadline)
        pending, lagging = self._judge(live, observation, report, final=False)
        for attempt in range(1, LAG_LOOKS + 1):
            if not lagging or self.clock.now() + LAG_PAUSE_SECONDS >= deadline:
                break
            self.clock.sleep(LAG_PAUSE_SECONDS)
            observation = self.asg.observe(ids, deadline)
            more, lagging = self._judge(lagging, observation, report, final=attempt == LAG_LOOKS)
            pending += more
        if lagging:
            self._judge(lagging, observation, report)
        # Warm-pool moves that change no membership (into the pool, out of it to termination) need no record
        # and no etcd: completed at once.
        passing = [e for e in pending if e.kind is Kind.PASS]
        pending = [e for e in pending if e.kind is not Kind.PASS]
        if passing and not dry_run:
            self._complete_passing(passing, deadline, report)
        # Every action was already settled (a duplicate or a late delivery): nothing to do — unless other actions
        # wait (queued joiners, held leaves) whose own events may come too late (throttled with backoff up to 5
        # minutes, or lost): then this pass reconciles, which keeps them alive and serves the next one.
        # A refused event (forged, foreign) never starts that work.
        settled = not pending and not any(e.kind is Kind.RECONCILE for e in live) and any(e.is_action for e in live)
        late = any(o.status == "already-done" for o in report.outcomes)
        refused = any(o.status == "rejected" for o in report.outcomes)
        if settled and (refused or not late or not _others_waiting(observation, {e.instance_id for e in live})):
            return report
        keeper = Keeper(
            self.asg,
            self.clock,
            self.settings.heartbeat_interval_seconds,
            deadline,
            discover=lambda k: self._hold_newly_waiting(k, deadline),
        )
        rounds = 0
        # One round per joiner while launches queue for a running cluster (``Plan.queued``: etcd takes one new
        # member at a time); otherwise a single round. Each round completes at least one action or stops.
        while True:
            try:
                # 2. etcd: members whose instances left go first (each only if quorum allows).
                view, held_hosts, owners = None, frozenset[str](), {}
                if self.membership is not None:
                    view = self._view(observation, deadline)
                    if view is not None:
                        observation = self._with_owners(observation, view, deadline)
                        owners = self._member_owners(view, observation)  # before any member goes
                        observation, view, held_hosts = self._reconfigure(observation, view, keeper, deadline, report)
                # 3. The record.
                plan, change_id, observation = self._publish(
                    observation,
                    pending,
                    deadline,
                    report,
                    keep_hosts=held_hosts,
                    running=_running(view),
                    member_owners=owners,
                    advertised=None if view is None else {h for m in view.members for h in m.peer_hosts},
                    members_known=view is not None and _members_known(view, observation),
                )
            except _PASS_ERRORS as exc:
                if not pending:
                    raise  # a reconcile that cannot finish must fail loudly (the Errors alarm)
                self._hand_off(pending, _why(exc), observation, deadline, report)
                keeper.beat(force=True)
                return report
            report.plan = plan
            if dry_run:
                for event in pending:
                    report.outcomes.append(Outcome(event, "dry-run", "nothing applied"))
                return report

            held, queued = set(plan.held), set(plan.queued)
            self._hold(plan.held, LAUNCHING, observation, keeper, deadline)
            self._hold(plan.queued, LAUNCHING, observation, keeper, deadline)
            settle = [e for e in pending if not (e.kind is Kind.JOIN and e.instance_id in held | queued)]
            waiting = [e for e in pending if e.kind is Kind.JOIN and e.instance_id in queued]
            for event in pending:
                if event.kind is Kind.JOIN and event.instance_id in held:
                    report.outcomes.append(
                        Outcome(
                            event, "held", f"bootstrap barrier: {len(plan.members) + len(held)}/{plan.expected} present"
                        )
                    )
            completed = len(report.completed) + len(report.finished)
            try:
                # 4-5. Wait INSYNC, complete the leaves, bring the joiners in.
                self._settle(plan, observation, settle, change_id, keeper, deadline, report)
            except _PASS_ERRORS as exc:
                self._hand_off([*settle, *waiting], _why(exc), observation, deadline, report)
                keeper.beat(force=True)
                return report
            if not queued:
                held_leaves = [iid for iid in report.quorum_held if iid not in {c[0] for c in report.completed}]
                if held_leaves and len(report.completed) + len(report.finished) > completed and rounds < MAX_ROUNDS:
                    # A leaver waited for this round's joiner (add before remove): go round once more, so the
                    # member that may now go goes in this pass rather than at the next reconcile.
                    rounds += 1
                    report.quorum_held = []
                    observation = _as_completed(self.asg.observe(set(), deadline), report)
                    pending = []
                    continue
                keeper.beat(force=True)  # held terminations and launches outlive this pass
                return report
            if len(report.completed) + len(report.finished) == completed:
                self._hand_off(waiting, "an earlier joiner is not settled yet", observation, deadline, report)
                keeper.beat(force=True)
                return report
            # 6. The next joiner — this pass's own, or another launch's whose event is late, throttled or
            # lost: Lambda retries a throttled event with backoff up to 5 minutes, past the hook's heartbeat
            # timeout, so the pass that holds the queue works it down (until its deadline) rather than
            # leaving it to events that may come too late.
            self.log.info("next joiner", extra={"queued": sorted(queued)})
            observation = self.asg.observe({e.instance_id for e in waiting if e.instance_id}, deadline)
            observation = _as_completed(observation, report)
            pending, _ = self._judge(waiting, observation, report)

    # -- 1. events ----------------------------------------------------------------------------
    def _refuse_early(self, event: LifecycleEvent) -> Outcome | None:
        """Refusals that need no API call: ignored kinds, wrong account/region, unserved group."""
        if event.kind is Kind.IGNORE:
            self.log.info("ignored", extra={"reason": event.reason, "group": event.group})
            return Outcome(event, "ignored", event.reason)
        problems = []
        if event.account and self.account and event.account != self.account:
            problems.append(f"account {event.account} is not this function's account {self.account}")
        if event.region and self.region and event.region != self.region:
            problems.append(f"region {event.region} is not this function's region {self.region}")
        if event.group and self.settings.asg_names and event.group not in self.settings.asg_names:
            problems.append(f"group {event.group!r} is not served (asg_names={','.join(self.settings.asg_names)})")
        if not problems:
            return None
        return self._reject(event, "; ".join(problems))

    def _judge(
        self, events: Sequence[LifecycleEvent], obs: Observation, report: Report, *, final: bool = True
    ) -> tuple[list[LifecycleEvent], list[LifecycleEvent]]:
        """Check each action against what the APIs say: (still waiting for us, not visible yet).

        Describe calls are eventually consistent and an action's event can arrive before the APIs show
        the wait state it was sent for (a launch still ``Pending``, a termination still ``InService`` or
        ``Terminating``, an instance not listed yet): unless ``final``, such events come back as "not
        visible yet" for the caller to look again; when ``final``, they are handed to a retry.
        """
        pending: list[LifecycleEvent] = []
        lagging: list[LifecycleEvent] = []

        def lag(event: LifecycleEvent, outcome: Outcome) -> None:
            if final:
                report.outcomes.append(outcome)
            else:
                lagging.append(event)

        for event in events:
            if not event.is_action:
                continue
            inst = obs.instances.get(event.instance_id or "")
            state = inst.lifecycle_state if inst else None
            if event.group and event.group not in obs.served:
                report.outcomes.append(self._reject(event, f"group {event.group!r} is not a served group"))
            elif inst is None or inst.group is None:
                if event.kind is Kind.LEAVE and (inst is None or inst.gone):
                    report.outcomes.append(Outcome(event, "already-done", "instance is gone"))
                elif event.kind is Kind.JOIN and inst is not None and inst.ec2_state is not None and inst.gone:
                    # A launch scaled in (or killed) before its event arrived: its action ended with it.
                    # Retrying would only walk a settled event to the dead-letter queue.
                    report.outcomes.append(Outcome(event, "already-done", f"instance is {inst.ec2_state}"))
                else:
                    why = "the Auto Scaling API does not place this instance in a served group"
                    lag(event, self._reject(event, why, status="unconfirmed"))
            elif event.group and inst.group != event.group:
                report.outcomes.append(self._reject(event, f"instance belongs to {inst.group!r}, not {event.group!r}"))
            elif event.kind is Kind.JOIN:
                if state == "Pending:Wait":
                    pending.append(event)
                elif state == "Pending":
                    lag(event, Outcome(event, "handoff", "the APIs do not show Pending:Wait yet", ok=False))
                elif state in MEMBER_STATES:
                    report.outcomes.append(Outcome(event, "already-done", f"instance is {state}"))
                else:
                    report.outcomes.append(Outcome(event, "already-done", f"stale launch: instance is {state}"))
            elif event.kind is Kind.LEAVE:
                if state == "Terminating:Wait" or (state or "").startswith("Warmed:"):
                    pending.append(event)
                elif state == "Terminating":
                    lag(event, Outcome(event, "handoff", "the APIs do not show Terminating:Wait yet", ok=False))
                elif state in LEAVING_STATES:
                    report.outcomes.append(Outcome(event, "already-done", f"instance is {state}"))
                else:
                    lag(event, self._reject(event, f"termination event but the instance is {state}"))
            else:  # PASS: warm-pool moves that change no membership
                pending.append(event)
        return pending, lagging

    def _complete_passing(self, events: Sequence[LifecycleEvent], deadline: float, report: Report) -> None:
        for event in events:
            if not (event.group and event.hook_name and event.instance_id):
                report.outcomes.append(self._reject(event, "a warm-pool action without group, hook or instance"))
                continue
            action = Action(event.group, event.hook_name, event.instance_id, event.transition or "", event.token or "")
            done = self.asg.complete(action, "CONTINUE", deadline)
            if done:
                report.completed.append((event.instance_id, "CONTINUE"))
            self.log.info("warm-pool action completed", extra={"instance": event.instance_id, "why": event.reason})
            report.outcomes.append(Outcome(event, "completed" if done else "already-done", event.reason))

    def _reject(self, event: LifecycleEvent, why: str, *, status: str = "rejected", ok: bool = False) -> Outcome:
        """Log and count a refused event. ``ok=False`` fails it (retry, then the dead-letter queue)."""
        self.log.error("event refused", extra={"instance": event.instance_id, "group": event.group, "why": why})
        self.metrics.add_metric(name="RejectedEvents", unit=MetricUnit.Count, value=1)
        return Outcome(event, status, why, ok=ok)

    # -- 2. etcd: look, and remove departed members ----------------------------------------------
    def _endpoints(self, obs: Observation) -> list[str]:
        """Client URLs to reach etcd: configured ones, else every running served instance's private IP
        (in service first; a member being founded or joining answers too, or is skipped)."""
        s = self.settings
        if s.etcd_endpoints:
            return list(s.etcd_endpoints)
        from_record = self._client_record_urls()
        order = {"InService": 0, "Standby": 1}
        running = sorted(
            (
                i
                for i in obs.instances.values()
                if i.group in obs.served
                and not i.gone
                and i.private_ip
                and not (i.lifecycle_state or "").startswith("Warmed:")  # a warm-pool instance runs no member
            ),
            key=lambda i: (order.get(i.lifecycle_state or "", 2), i.instance_id),
        )
        by_ip = [f"{s.etcd_client_scheme}://{i.private_ip}:{s.etcd_client_port}" for i in running]
        return list(dict.fromkeys([*from_record, *by_ip]))  # the client record first; the members' IPs if it is stale

    def _client_record_urls(self) -> list[str]:
        """Client URLs from ``etcd_client_srv`` (e.g. ``_etcd-client-ssl._tcp``), read through Route 53 at most once
        per ``CLIENT_RECORD_SECONDS``; a read that fails keeps the last answer (the members' IPs follow anyway)."""
        s = self.settings
        if not s.etcd_client_srv:
            return []
        now = self.clock.now()
        if self._client_urls is not None and now - self._client_urls[0] < CLIENT_RECORD_SECONDS:
            return self._client_urls[1]
        name = fqdn(s.etcd_client_srv, s.domain_name)
        try:
            record = self.route53.read([(name, "SRV")], now + CLIENT_RECORD_READ_SECONDS).get((name, "SRV"))
        except (ClientError, BotoCoreError, DeadlineReached) as exc:
            self.log.warning(
                "client record unreadable; using members' IPs", extra={"record": name, "error": str(exc)[:200]}
            )
            return self._client_urls[1] if self._client_urls else []
        return self._remember_client_record(record, now)

    def _remember_client_record(self, record: RecordSet | None, now: float) -> list[str]:
        """Client URLs from the client SRV record as read (by ``_client_record_urls``, or by the plan's own read,
        which includes that record: no second ListResourceRecordSets while the answer is fresh)."""
        s = self.settings
        urls = []
        for value in record.values if record is not None else ():
            try:
                srv = SrvValue.parse(value)
            except ValueError:
                continue
            urls.append(f"{s.etcd_client_scheme}://{srv.target.rstrip('.')}:{srv.port}")
        self._client_urls = (now, urls)
        return urls

    def _view(self, obs: Observation, deadline: float) -> EtcdView | None:
        """etcd's member list and each member's own health; None when there is no cluster to ask yet.

        No answer while an instance is in service (or on standby) is an error: the pass cannot judge
        quorum or add a member, so it stops and a retry tries again. So is no answer while a live instance
        that is not leaving carries the go signal (``etcd-cluster-state``): it was told to start etcd, so
        a cluster may run (founders starting, or started and not yet completed) — founding another would
        split it (the soak of 2026-12-02 found two clusters that way). No answer, nothing in service and
        no instance told to start that stays is a cluster not founded yet (or one every instance leaves):
        the record bootstraps a new one.
        """
        assert self.membership is not None
        endpoints = self._endpoints(obs)
        served = [i for i in obs.instances.values() if i.group in obs.served]
        serving = any(i.lifecycle_state in IN_SERVICE_STATES for i in served)
        admitted = any(STATE_TAG in i.tags and not i.gone and departure(i) is None for i in served)
        if not endpoints:
            if serving or admitted:
                raise EtcdUnavailable("(none)", "no endpoint: instances told to run etcd have no private IP")
            return None
        try:
            if serving:
                members = self.membership.members(endpoints, min(deadline, self.clock.now() + VIEW_READ_SECONDS))
            else:  # a cluster being founded (or none yet): one look, no retries
                members = self.membership.members(endpoints, deadline, once=True)
        except EtcdUnavailable:
            if serving or admitted:
                raise
            return None
        healthy: set[str] = set()
        leaders: dict[str, int] = {}
        index: dict[str, int] = {}
        for member in members:
            if not member.client_urls:
                continue
            status = self.membership.status(member.client_urls[0], deadline)
            if status is None:
                continue
            index[member.id] = status.raft_index
            if status.has_leader and not status.errors:
                healthy.add(member.id)
                leaders[status.leader] = leaders.get(status.leader, 0) + 1
        leader = max(leaders, key=lambda k: leaders[k]) if leaders else None
        if self._learners is None and healthy:
            self._learners = _supports_learners(self.membership.version(endpoints, deadline))
        return EtcdView(
            members=tuple(members),
            healthy=frozenset(healthy),
            leader=leader,
            raft_index=index,
            learners=bool(self._learners),
        )

    def _with_owners(self, obs: Observation, view: EtcdView, deadline: float) -> Observation:
        """Add to the observation every instance a member names (by id) or that carries a member-ID tag,
        so identity and departure are judged on what EC2 says about *that* instance."""
        named = {m.name for m in view.members if is_instance_id(m.name)} - set(obs.instances)
        found = self.asg.describe_instances(named, deadline) if named else {}
        # Members not named after an instance (not started yet, or named otherwise): the ID recorded at add.
        tagged_ids = {m.hex_id for m in view.members if not is_instance_id(m.name)} - {
            i.tags.get(MEMBER_ID_TAG, "") for i in obs.instances.values()
        }
        if tagged_ids:
            found.update(self.asg.describe_instances(tagged_ids, deadline, by=f"tag:{MEMBER_ID_TAG}"))
        extra = {iid: found.get(iid, Instance(iid)) for iid in named} | {
            iid: inst for iid, inst in found.items() if iid not in obs.instances
        }
        if not extra:
            return obs
        return Observation(groups=obs.groups, instances={**extra, **obs.instances}, now=obs.now)

    def _reconfigure(
        self, obs: Observation, view: EtcdView, keeper: Keeper, deadline: float, report: Report
    ) -> tuple[Observation, EtcdView, frozenset[str]]:
        """Remove, one at a time, the members whose instances the APIs say are gone or leaving, each only
        when the voters left keep a healthy quorum; hold the others. Returns the peer hosts of members
        whose removal is held (the record keeps listing them)."""
        obs = self._with_owners(obs, view, deadline)
        done: set[str] = set()
        ending: set[str] = set()  # the last voter of a cluster every instance leaves: etcd never removes it
        dismantling = _dismantling(obs)
        while True:
            identity = identify(view, obs.instances)
            joining = _joiners_pending(view, identity, obs)
            found = removals(view, identity, obs.instances, joiners_pending=joining, dismantling=dismantling)
            ending = {r.member.id for r in found if r.held_by == "last"}
            allowed = [r for r in found if r.allowed and r.member.id not in done]
            if not allowed:
                break
            removal = allowed[0]
            done.add(removal.member.id)
            if report.dry_run:
                self.log.info("would remove etcd member", extra={"member": removal.member.hex_id, "why": removal.why})
                continue
            leaver = obs.instances.get(removal.instance_id or "")
            if leaver is not None and leaver.lifecycle_state == "Terminating:Wait":
                self._hold([leaver.instance_id], TERMINATING, obs, keeper, deadline)  # alive while etcd refuses
            self._remove_member(removal.member, removal.instance_id, removal.why, view, obs, keeper, deadline, report)
            view = self._view(obs, deadline) or replace(view, members=())
        held_hosts: set[str] = set()
        identity = identify(view, obs.instances)
        joining = _joiners_pending(view, identity, obs)
        for removal in removals(view, identity, obs.instances, joiners_pending=joining, dismantling=dismantling):
            if removal.allowed or removal.member.id in done:
                continue
            if removal.held_by == "last":
                ending.add(removal.member.id)
                self.log.info(
                    "the cluster ends with its last member",
                    extra={"instance": removal.instance_id, "member": removal.member.hex_id, "why": removal.why},
                )
                continue
            held_hosts |= removal.member.peer_hosts
            iid = removal.instance_id
            inst = obs.instances.get(iid or "")
            extra = {"instance": iid, "member": removal.member.hex_id, "why": removal.why, "quorum": removal.quorum}
            if removal.held_by == "quorum":
                self.log.error("quorum guard: member removal held", extra=extra)
                self.metrics.add_metric(name="QuorumHold", unit=MetricUnit.Count, value=1)
            elif removal.held_by == "kept":
                self.log.warning("member removal held: the cluster's last voter", extra=extra)
            else:
                self.log.info("member removal waits for the joiner", extra=extra)
            if inst is not None and inst.lifecycle_state == "Terminating:Wait" and iid:
                report.quorum_held.append(iid)
                self._hold([iid], TERMINATING, obs, keeper, deadline)
        # The record goes on listing every member etcd still has (held removals, members no instance can be
        # found for): a joiner starting from the record must find exactly the members, and no setting
        # (`max_unexplained_removals` included) may drop a live member from it.
        held_hosts |= listed_hosts(view, done | ending)
        return obs, view, frozenset(held_hosts)

    def _remove_member(
        self,
        member: Member,
        instance_id: str | None,
        why: str,
        view: EtcdView,
        obs: Observation,
        keeper: Keeper,
        deadline: float,
        report: Report,
    ) -> None:
        """``member remove``, leadership handed to a healthy voter first when the member leads."""
        assert self.membership is not None
        # Only a live leader can hand over (a dead one may still be named leader by members that have not
        # noticed yet); bounded, best effort: removing the leader is safe, only slower for clients.
        if view.leader == member.id and member.client_urls and member.id in view.healthy:
            target = leader_target(view, [member.id])
            if target is None:
                self.log.warning("leader leaves with no healthy voter to take over", extra={"member": member.hex_id})
            else:
                try:
                    self.membership.move_leader(member.client_urls[0], target.id, min(deadline, self.clock.now() + 10))
                    self.log.info("leadership moved", extra={"from": member.hex_id, "to": target.hex_id})
                    self.metrics.add_metric(name="LeaderMoves", unit=MetricUnit.Count, value=1)
                except MembershipError as exc:  # best effort: removing the leader is safe, only slower
                    self.log.warning("could not move leadership", extra={"member": member.hex_id, "error": str(exc)})
        while True:
            # etcd judges a reconfiguration on the member that receives it ("unhealthy cluster" from a member
            # not yet connected to its peers for 5 s, e.g. one that just joined): ask the leader first.
            # The member itself last: the only member left (scale to zero) removes itself.
            endpoints = [*self._reconfig_endpoints(view, obs, exclude=member), *member.client_urls[:1]]
            try:
                self.membership.remove(member.id, endpoints, self._call_deadline(deadline))
                break
            except EtcdUnavailable as exc:
                self._pause(keeper, deadline, f"no etcd member answers the removal of {member.hex_id}: {exc}")
                view = self._view(obs, deadline) or view
                if not any(m.id == member.id for m in view.members):
                    break
            except EtcdRefused as exc:
                if "not found" in exc.message.lower():
                    break
                if not _waitable(exc):
                    raise
                self.log.info("member remove refused for now", extra={"member": member.hex_id, "why": exc.message})
                self._pause(keeper, deadline, f"etcd refuses to remove {member.hex_id}: {exc.message}")
                view = self._view(obs, deadline) or view
                if not any(m.id == member.id for m in view.members):
                    break
        report.members_removed.append(member.hex_id)
        self.metrics.add_metric(name="MembersRemoved", unit=MetricUnit.Count, value=1)
        self.log.info("etcd member removed", extra={"member": member.hex_id, "instance": instance_id, "why": why})

    def _call_deadline(self, deadline: float) -> float:
        """One etcd call's own bound, short of the pass's: the caller waits (heartbeating) and asks again."""
        return min(deadline, self.clock.now() + RECONFIG_CALL_SECONDS)

    def _reconfig_endpoints(self, view: EtcdView, obs: Observation, *, exclude: Member | None = None) -> list[str]:
        """Where to send a membership change: the leader, then the other healthy members (longest in the
        cluster first: a member that has just joined refuses changes for its first 5 s), then the rest."""
        by_id = {m.id: m for m in view.members}
        launched = {m.id: obs.instances[m.name].launch_time or 0.0 for m in view.members if m.name in obs.instances}
        order: list[str] = []
        if view.leader in by_id:
            order.append(view.leader)
        order += sorted((m for m in view.healthy if m not in order), key=lambda mid: (launched.get(mid, 0.0), mid))
        urls = [
            u
            for mid in order
            if mid in by_id and (exclude is None or mid != exclude.id)
            for u in by_id[mid].client_urls[:1]
        ]
        rest = [e for e in self._endpoints(obs) if e not in urls and (exclude is None or e not in exclude.client_urls)]
        return urls + rest or self._endpoints(obs)

    def _member_owners(self, view: EtcdView | None, obs: Observation) -> dict[str, Instance]:
        """Record targets etcd says belong to an instance (``member_owners``)."""
        return {} if view is None else member_owners(view, obs)

    # -- 3. the record ----------------------------------------------------------------------------
    def _publish(
        self,
        obs: Observation,
        pending: Sequence[LifecycleEvent],
        deadline: float,
        report: Report,
        *,
        keep_hosts: Iterable[str] = (),
        running: bool = False,
        member_owners: Mapping[str, Instance] | None = None,
        advertised: Iterable[str] | None = None,
        members_known: bool = False,
    ) -> tuple[Plan, str | None, Observation]:
        """Plan and write with compare-and-swap; on a conflict, observe and read again."""
        member_owners = member_owners or {}
        hosts = {h.lower().rstrip(".") for h in keep_hosts}
        for attempt in range(1, MAX_CAS_ATTEMPTS + 1):
            targets = {t for i in obs.instances.values() if (t := target_of(i, self.settings))}
            current = self.route53.read(record_keys(self.settings, targets), deadline)
            if self.settings.etcd_client_srv:
                client_record = current.get((fqdn(self.settings.etcd_client_srv, self.settings.domain_name), "SRV"))
                self._remember_client_record(client_record, self.clock.now())
            obs = self._resolve_unknown_targets(obs, current, deadline)
            if self.settings.target_mode == "a-record":
                old = peer_targets(current.get((self.settings.srv_fqdn, "SRV")))
                missing = record_keys(self.settings, old) - record_keys(self.settings, targets)
                current = {**current, **self.route53.read(missing, deadline)} if missing else current
            old_targets = peer_targets(current.get((self.settings.srv_fqdn, "SRV")))
            keep = {t for t in old_targets if t.rstrip(".") in hosts}
            owners = {**dict(member_owners), **_tagged_owners(obs)}
            plan = build_plan(
                self.settings,
                obs,
                current,
                keep=keep,
                running=running,
                owners=owners,
                advertised=advertised,
                members_known=members_known,
                orphans_ripe={t for t, since in self._orphans.items() if obs.now - since >= ORPHAN_GRACE_SECONDS},
            )
            if not report.dry_run:
                now = self.clock.now()  # after the record read: a describe this much later shows a joiner it lists
                self._orphans = {t: self._orphans.get(t, now) for t in plan.orphans if t not in plan.removed}
            report.before = tuple(sorted(old_targets))
            report.after = plan.targets
            report.held = plan.held
            self._log_plan(plan, pending)
            if plan.guard_kept:
                self.log.error("removal guard refused", extra={"kept": plan.guard_kept, "why": plan.guard_reasons})
                self.metrics.add_metric(name="GuardRefused", unit=MetricUnit.Count, value=len(plan.guard_kept))
            if report.dry_run or not plan.changes:
                return plan, None, obs
            # Write before mutate: every leaver this change drops is marked first, so a pass that later finds
            # the record already without it (or deleted) knows a change is on its way and waits for its id.
            marks: dict[str, dict[str, str]] = {
                iid: {LEAVE_CHANGE_TAG: PENDING}
                for iid in plan.dropped
                if iid in obs.instances and obs.instances[iid].tags.get(LEAVE_CHANGE_TAG) != PENDING
            }
            # ... and every instance it lists is tagged with the target it is listed as: a pass that dies (or loses
            # the response) between the write and the proof tag leaves a target a later pass can still tell is
            # this instance's, after its addresses are gone (a terminated instance has none) — never an
            # unexplained target the guard must keep for good.
            for iid in plan.added:
                inst = obs.instances.get(iid)
                target = target_of(inst, self.settings) if inst is not None else None
                if target and inst is not None and inst.tags.get(TARGET_TAG) != target:
                    marks.setdefault(iid, {})[TARGET_TAG] = target
            if marks:
                self.asg.tag(marks, deadline)
                obs = replace(
                    obs,
                    instances={
                        iid: replace(inst, tags={**inst.tags, **marks[iid]}) if iid in marks else inst
                        for iid, inst in obs.instances.items()
                    },
                )
            try:
                change = self.route53.apply(plan.changes, _comment(plan), deadline)
            except Conflict as exc:
                self.metrics.add_metric(name="Conflicts", unit=MetricUnit.Count, value=1)
                self.log.warning("record changed under us; re-reading", extra={"attempt": attempt, "error": str(exc)})
                self.clock.sleep(min(2.0, 0.1 * attempt))
                # The describe may answer from before the last one (a launch back in Pending): what was seen stays.
                fresh = self.asg.observe({e.instance_id for e in pending if e.instance_id}, deadline)
                obs = replace(fresh, instances=never_older(fresh.instances, obs.instances))
                continue
            self.log.info(
                "record changed",
                extra={
                    "change_id": change.id,
                    "before": report.before,
                    "after": plan.targets,
                    "changes": len(plan.changes),
                },
            )
            report.change_id = change.id
            return plan, change.id, obs
        raise DeadlineReached(f"record kept changing under us ({MAX_CAS_ATTEMPTS} conflicts)")

    def _resolve_unknown_targets(
        self, obs: Observation, current: Mapping[Any, RecordSet], deadline: float
    ) -> Observation:
        """Look up record targets no observed instance owns, so the guard can judge their removal: by
        instance id when the target's first label is one (a-record mode), else by private DNS name; what
        is still unowned, by the ``etcd-srv-target`` tag (a terminated instance has no addresses left,
        but its tags stay while EC2 still describes it)."""
        known = {t for i in obs.instances.values() if (t := target_of(i, self.settings))}
        known |= {absolute(t) for t in _tagged_owners(obs)}
        unknown = peer_targets(current.get((self.settings.srv_fqdn, "SRV"))) - known
        if not unknown:
            return obs
        by_id = {t.split(".")[0]: t for t in unknown if is_instance_id(t.split(".")[0])}
        found: dict[str, Instance] = {}
        if by_id:
            found.update(self.asg.describe_instances(list(by_id), deadline))
        names = [t.rstrip(".") for t in unknown if t.split(".")[0] not in by_id]
        if names and self.settings.target_mode == "private-dns":
            found.update(self.asg.describe_instances(names, deadline, by="private-dns-name"))
        owned = {t for i in found.values() if (t := target_of(i, self.settings))}
        owned |= {absolute(i.tags[TARGET_TAG]) for i in found.values() if i.tags.get(TARGET_TAG)}
        rest = sorted(unknown - owned)
        if rest:
            values = {v for t in rest for v in (t, t.rstrip("."))}
            found.update(self.asg.describe_instances(values, deadline, by=f"tag:{TARGET_TAG}"))
        if not found:
            return obs
        return Observation(groups=obs.groups, instances={**found, **obs.instances}, now=obs.now)

    # -- 4-5. wait, complete, join --------------------------------------------------------------
    def _settle(
        self,
        plan: Plan,
        obs: Observation,
        settle: Sequence[LifecycleEvent],
        change_id: str | None,
        keeper: Keeper,
        deadline: float,
        report: Report,
    ) -> None:
        actions = self._actions(plan, obs, settle, deadline)
        by_instance = {e.instance_id: e for e in settle}
        excluded = self._excluded_by_selector(settle, obs)
        if not actions:
            for event in settle:
                if event.instance_id in excluded:
                    report.outcomes.append(Outcome(event, "ignored", excluded[event.instance_id]))
                else:
                    report.outcomes.append(Outcome(event, "already-done", "no action waits"))
            return
        now = self.clock.now()
        for iid, action in actions.items():
            began = _parse_time(by_instance[iid].time) if iid in by_instance else None
            keeper.hold(action, fresh=began is not None and now - began < keeper.interval)
        leaves = {iid: a for iid, a in actions.items() if iid not in plan.launches}
        launches = {iid: a for iid, a in actions.items() if iid in plan.launches}
        if change_id is not None:
            # Leaves an earlier change already dropped (its id on the instance: written only by a pass that saw
            # them leaving) settle on that change, not on this pass's own (a joiner's, with a propagation of its
            # own): completed as soon as it is INSYNC.
            early = {iid: a for iid, a in leaves.items() if _earlier_leave_proof(obs.instances[iid], change_id)}
            if early:
                for proof in sorted({obs.instances[iid].tags[LEAVE_CHANGE_TAG] for iid in early}):
                    self.route53.wait_insync(
                        proof,
                        deadline=deadline,
                        initial_delay=0.0,
                        interval=self.settings.poll_interval_seconds,
                        while_waiting=keeper.beat,
                    )
                self._settle_leaves(early, obs, by_instance, keeper, deadline, report)
                leaves = {iid: a for iid, a in leaves.items() if iid not in early}
        proven = self._proofs(plan, obs, launches, leaves, change_id, deadline)
        if proven is None:
            # The record is already gone and no change id proves when: the pass that deleted it tags its
            # change right after writing. Wait for that proof (a retry), never complete on the absence.
            self._hand_off(settle, "no change id proves the record's deletion yet", obs, deadline, report)
            return
        proofs, follower = proven
        interval = self.settings.poll_interval_seconds
        if follower:
            # A pass waiting on a change another pass wrote follows at a slower pace: the writer polls and
            # completes these actions too; the follower only covers for a writer that died.
            interval = max(interval, FOLLOWER_POLL_SECONDS)
        for proof in sorted(proofs):
            waited = self.route53.wait_insync(
                proof,
                deadline=deadline,
                initial_delay=self.settings.poll_initial_delay_seconds,
                interval=interval,
                while_waiting=keeper.beat,
            )
            self.metrics.add_metric(name="PropagationSeconds", unit=MetricUnit.Seconds, value=waited)
            self.log.info("change insync", extra={"change_id": proof, "waited": round(waited, 3)})
        self.metrics.add_metric(name="Members", unit=MetricUnit.Count, value=len(plan.targets))

        # Leaves and warm-pool moves: the record without them is INSYNC (their members are out of etcd).
        self._settle_leaves(leaves, obs, by_instance, keeper, deadline, report)
        if not launches:
            self._not_covered(by_instance, report)
            return
        if self.membership is None:
            # DNS only: a founding member is told 'new'; a joiner into a running cluster is told nothing
            # (whatever manages membership must add it), never 'existing' without a member add.
            if plan.cluster_state == "new":
                self._go(launches, obs, "new", deadline)
            self._complete(launches, "CONTINUE", by_instance, keeper, deadline, report)
        elif plan.cluster_state == "new":
            self._found(plan, obs, launches, by_instance, keeper, deadline, report)
        else:
            self._join(plan, obs, launches, by_instance, keeper, deadline, report)
        self._not_covered(by_instance, report)

    def _settle_leaves(
        self,
        leaves: Mapping[str, Action],
        obs: Observation,
        by_instance: Mapping[str | None, LifecycleEvent],
        keeper: Keeper,
        deadline: float,
        report: Report,
    ) -> None:
        """Complete leaves whose record without them is INSYNC (their members are out of etcd)."""
        self._complete(leaves, "CONTINUE", by_instance, keeper, deadline, report)
        returning = [iid for iid in leaves if (obs.instances[iid].lifecycle_state or "").startswith("Warmed:")]
        if returning:
            # Back to the warm pool: its membership is revoked, so when it leaves the pool again its start
            # script finds no go signal (and clears the removed member's data) and it joins as a new member.
            self.asg.untag(returning, ADMISSION_TAGS, deadline)

    def _proofs(
        self,
        plan: Plan,
        obs: Observation,
        launches: Mapping[str, Action],
        leaves: Mapping[str, Action],
        change_id: str | None,
        deadline: float,
    ) -> tuple[set[str], bool] | None:
        """The changes to wait for, and whether they are another pass's (follower); None: nothing proves
        the record's state yet (it was deleted, and the deleting pass has not tagged its change).

        A launch's proof is a change whose record lists it (tag ``etcd-srv-change``); a leave's, a change
        submitted after its termination began (tag ``etcd-leave-change``: only a pass that saw it leaving
        writes that id, after the change that drops it; ``pending`` from just before). A tag that names a
        change is followed. Without one — no tag, or ``pending`` — the pass submits a fresh change: the
        record rewritten with its own values, or, when the record is gone, the marker set
        ``_etcd-asg-coordinator.<peer record>`` (SRV, CREATE/DELETE like every write); a zone's changes
        propagate in order, so its INSYNC means the deletion's too. A missing mark proves nothing: tags
        are read through eventually consistent describes, and a view older than the deleting pass's
        ``pending`` mark shows none (the soak of 2026-12-02 completed terminations before the deletion was
        INSYNC by taking such leavers for never listed).
        """
        if change_id is not None:
            self._tag_proof(change_id, launches, CHANGE_TAG, obs, deadline)
            # Every leaver this change dropped, with an action or not yet (seen in `Terminating`, before its
            # `Terminating:Wait`): its own pass then follows this change instead of writing another.
            dropped = [iid for iid in plan.dropped if iid in obs.instances]
            self._tag_proof(change_id, [*leaves, *dropped], LEAVE_CHANGE_TAG, obs, deadline)
            return {change_id}, False
        launch_tags = {obs.instances[i].tags.get(CHANGE_TAG) for i in launches}
        leave_tags = {obs.instances[i].tags.get(LEAVE_CHANGE_TAG) for i in leaves}
        tags = launch_tags | leave_tags
        if tags and not tags & {None, PENDING}:
            return {t for t in tags if t}, True
        peer = plan.current.get((self.settings.srv_fqdn, "SRV"))
        if peer is None:
            if launches:
                # The record was deleted under a launch that a change once listed: wait for a pass to list it.
                self.log.warning("no change id proves the record for a launch; waiting for a retry")
                self.metrics.add_metric(name="UnprovenDeletions", unit=MetricUnit.Count, value=1)
                return None
            rewrite = self._marker_change(deadline)
        else:
            rewrite = [
                {"Action": "DELETE", "ResourceRecordSet": peer.to_route53()},
                {"Action": "CREATE", "ResourceRecordSet": peer.to_route53()},
            ]
        try:
            change = self.route53.apply(rewrite, "etcd-asg-coordinator: prove propagation", deadline)
        except Conflict:
            raise DeadlineReached("record changed while proving propagation; retrying") from None
        self._tag_proof(change.id, launches, CHANGE_TAG, obs, deadline)
        self._tag_proof(change.id, leaves, LEAVE_CHANGE_TAG, obs, deadline)
        return {change.id}, False

    def _marker_change(self, deadline: float) -> list[dict[str, Any]]:
        """A change to the marker set ``_etcd-asg-coordinator.<peer record>`` (one SRV value whose port counts
        the proofs): submitted now, so its INSYNC proves every earlier change to the zone INSYNC. It names
        no host a member could read as a peer (``etcd-asg-coordinator.invalid.``, RFC 2606)."""
        name = f"{MARKER_LABEL}.{self.settings.srv_fqdn}"
        current = self.route53.read([(name, "SRV")], deadline).get((absolute(name), "SRV"))
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

    def _tag_proof(self, change_id: str, instances: Iterable[str], key: str, obs: Observation, deadline: float) -> None:
        """Name the change on every instance it settles, before waiting: a retry that finds the record
        already right waits on this change instead of writing again."""
        tags: dict[str, dict[str, str]] = {}
        for iid in dict.fromkeys(instances):
            inst = obs.instances[iid]
            want = {key: change_id}
            target = target_of(inst, self.settings) if key == CHANGE_TAG else None
            if target and inst.tags.get(TARGET_TAG) != target:
                want[TARGET_TAG] = target  # so the target can be told to be this instance's after its addresses go
            if any(inst.tags.get(k) != v for k, v in want.items()):
                tags[iid] = want
        if tags:
            self.asg.tag(tags, deadline)

    def _go(self, launches: Iterable[str], obs: Observation, state: str, deadline: float) -> None:
        """The go signal: ``etcd-cluster-state`` on each launching instance that lacks it."""
        go = {
            iid: {STATE_TAG: state, SINCE_TAG: f"{self.clock.now():.0f}", **self._certificate(obs.instances[iid])}
            for iid in launches
            if STATE_TAG not in obs.instances[iid].tags
        }
        if go:
            self.asg.tag(go, deadline)

    def _certificate(self, instance: Instance) -> dict[str, str]:
        """The instance's member certificate secret, made if needed: ``{etcd-member-cert: arn}`` to write with
        (never after) its go signal; ``{}`` without member certificates or when the tag is there already."""
        if self.certificates is None or CERT_TAG in instance.tags:
            return {}
        iid = instance.instance_id
        if iid not in self._issued:  # once per sandbox: a joiner waiting on its add looks every second
            hosts = (target_of(instance, self.settings), instance.private_dns, instance.private_ip)
            self._issued[iid] = self.certificates.ensure(member_identity(iid, hosts, self.settings.domain_name))
            self.log.info("member certificate issued", extra={"instance": iid, "secret": self._issued[iid]})
        return {CERT_TAG: self._issued[iid]}

    def _forget_certificate(self, instance_id: str) -> None:
        """Delete a leaving (or abandoned) instance's member secret; best-effort: the reconcile's sweep retries."""
        if self.certificates is None:
            return
        self._issued.pop(instance_id, None)
        try:
            if self.certificates.delete(instance_id):
                self.log.info("member certificate deleted", extra={"instance": instance_id})
        except CertificateError as exc:
            self.log.warning("member certificate not deleted", extra={"instance": instance_id, "error": str(exc)})

    def _sweep_certificates(self, deadline: float) -> None:
        """A reconcile deletes the member secrets of instances EC2 no longer runs (a deletion that failed, an
        instance that died before its termination completed). Only secrets older than ``SWEEP_AGE_SECONDS``:
        DescribeInstances is eventually consistent and may not show an instance launched a moment ago."""
        if self.certificates is None:
            return
        try:
            owners = self.certificates.owners()
            old = {iid for iid, created in owners.items() if self.clock.now() - created > SWEEP_AGE_SECONDS}
            found = self.asg.describe_instances(old, deadline) if old else {}
        except (CertificateError, ClientError, DeadlineReached) as exc:
            self.log.warning("member certificates not swept", extra={"error": str(exc)})
            return
        for iid in sorted(old):
            inst = found.get(iid)
            if inst is None or inst.ec2_state in ("terminated", "shutting-down"):
                self._forget_certificate(iid)

    def _found(
        self,
        plan: Plan,
        obs: Observation,
        launches: Mapping[str, Action],
        by_instance: dict[str | None, LifecycleEvent],
        keeper: Keeper,
        deadline: float,
        report: Report,
    ) -> None:
        """A new cluster: every founding member is told 'new', then each completes once it has started
        and is healthy; one that has not within the start timeout is abandoned (the group replaces it,
        and the replacement joins the running cluster)."""
        self._go(launches, obs, "new", deadline)
        tagged = {iid: self.clock.now() for iid in launches}
        for iid in launches:
            since = _float(obs.instances[iid].tags.get(SINCE_TAG))
            if since is not None:
                tagged[iid] = since
        left = dict(launches)
        looked = self.clock.now()
        while left:
            if self.clock.now() - looked >= RELOOK_SECONDS:
                looked = self.clock.now()
                for iid in self._drop_ended(left, keeper, by_instance, deadline, report):
                    left.pop(iid)
                if not left:
                    return
            view = self._view(obs, deadline)
            ready = {m.name for m in view.members if m.started and m.id in view.healthy} if view else set()
            for iid in sorted(set(left) & ready):
                self._complete({iid: left.pop(iid)}, "CONTINUE", by_instance, keeper, deadline, report)
            for iid in sorted(left):
                if self.clock.now() - tagged[iid] > self.settings.member_start_timeout_seconds:
                    self._abandon(left.pop(iid), "founding member did not start in time", by_instance, report)
            if not left:
                return
            self._pause(keeper, deadline, "founding members have not started")

    def _join(
        self,
        plan: Plan,
        obs: Observation,
        launches: Mapping[str, Action],
        by_instance: dict[str | None, LifecycleEvent],
        keeper: Keeper,
        deadline: float,
        report: Report,
    ) -> None:
        """Bring each listed joiner into the running cluster, one at a time (see ``membership.join_step``)."""
        assert self.membership is not None
        for iid in sorted(launches, key=lambda i: (obs.instances[i].launch_time or 0.0, i)):
            action = launches[iid]
            tags = dict(obs.instances[iid].tags)
            if LEAVE_CHANGE_TAG in tags:
                # An instance that was a member before (back from the warm pool): its old phase tags describe a
                # member etcd no longer has. Start its join from scratch.
                # (etcd-srv-change and etcd-srv-target were just rewritten by this pass for this join.)
                stale = [
                    k for k in (*ADMISSION_TAGS, LEAVE_CHANGE_TAG) if k in tags and k not in (CHANGE_TAG, TARGET_TAG)
                ]
                self.asg.untag([iid], stale, deadline)
                tags = {k: v for k, v in tags.items() if k not in stale}
            looked = self.clock.now()
            while True:
                if self.clock.now() - looked >= RELOOK_SECONDS:
                    looked = self.clock.now()
                    if self._drop_ended([iid], keeper, by_instance, deadline, report):
                        break
                view = self._view(obs, deadline)
                if view is None:
                    raise EtcdUnavailable("(none)", "no etcd member answers: cannot add a joiner")
                instance = replace(obs.instances[iid], tags=tags)
                identity = identify(view, {**obs.instances, iid: instance})
                member = identity.member_of(iid, view)
                step = join_step(
                    instance,
                    member,
                    view,
                    now=self.clock.now(),
                    start_timeout=self.settings.member_start_timeout_seconds,
                    go_written=STATE_TAG in tags,
                )
                self.log.info("join step", extra={"instance": iid, "step": step.step, "detail": step.detail})
                if step.step == "complete":
                    self._complete({iid: action}, "CONTINUE", by_instance, keeper, deadline, report)
                    break
                if step.step == "timeout":
                    if step.member is not None:
                        self._drop_joiner(step.member, iid, view, identity, obs, keeper, deadline, report)
                    self._abandon(action, step.detail, by_instance, report)
                    break
                self._join_once(step.step, instance, step.member, view, tags, obs, keeper, deadline, report)

    def _join_once(
        self,
        step: str,
        instance: Instance,
        member: Member | None,
        view: EtcdView,
        tags: dict[str, str],
        obs: Observation,
        keeper: Keeper,
        deadline: float,
        report: Report,
    ) -> None:
        """One idempotent step of a joiner (``tags`` is updated with what was written)."""
        assert self.membership is not None
        iid = instance.instance_id

        def write(values: dict[str, str]) -> None:
            self.asg.tag({iid: values}, deadline)
            tags.update(values)

        if step == "add":
            if tags.get(PHASE_TAG) != ADDING or SINCE_TAG not in tags:
                write({PHASE_TAG: ADDING, SINCE_TAG: f"{self.clock.now():.0f}"})  # write before mutate
            # Its certificate before its member: a member that could never start would block every later add.
            certificate = self._certificate(replace(instance, tags=tags))
            target = target_of(instance, self.settings) or ""
            url = peer_url(target, self.settings.etcd_port, self.settings.etcd_peer_scheme)
            try:
                added = self.membership.add(
                    [url], self._reconfig_endpoints(view, obs), self._call_deadline(deadline), learner=view.learners
                )
            except EtcdUnavailable as exc:  # the add may have landed: the next look adopts it (phase adding)
                self._pause(keeper, deadline, f"no etcd member answers member add: {exc}")
                return
            except EtcdRefused as exc:
                if _waitable(exc):
                    self.log.info("member add refused for now", extra={"instance": iid, "why": exc.message})
                    self._pause(keeper, deadline, f"etcd refuses member add: {exc.message}")
                    return
                raise
            report.members_added.append(added.hex_id)
            self.metrics.add_metric(name="MembersAdded", unit=MetricUnit.Count, value=1)
            self.log.info("etcd member added", extra={"instance": iid, "member": added.hex_id, "peer_url": url})
            # The member ID and, in the same CreateTags, the go signal: the record that lists the instance is
            # INSYNC and its member is added, so its etcd may start now.
            write({MEMBER_ID_TAG: added.hex_id, PHASE_TAG: ADDED, STATE_TAG: "existing", **certificate})
        elif step == "tag-id" and member is not None:
            write({MEMBER_ID_TAG: member.hex_id, PHASE_TAG: ADDED})
        elif step == "go":
            # The go signal, only now: the record that lists the instance is INSYNC and its member added.
            write({STATE_TAG: "existing", **self._certificate(replace(instance, tags=tags))})
        elif step == "promote" and member is not None:
            try:
                self.membership.promote(member.id, self._reconfig_endpoints(view, obs), self._call_deadline(deadline))
                self.log.info("learner promoted", extra={"instance": iid, "member": member.hex_id})
            except EtcdUnavailable as exc:
                self._pause(keeper, deadline, f"no etcd member answers the promotion: {exc}")
            except EtcdRefused as exc:
                if not _waitable(exc) and "not a learner" not in exc.message:
                    raise
                self._pause(keeper, deadline, f"learner {member.hex_id} not promotable yet: {exc.message}")
        else:  # wait-start
            self._pause(keeper, deadline, f"member of {iid} has not started and become healthy yet")

    def _drop_joiner(
        self,
        member: Member,
        iid: str,
        view: EtcdView,
        identity: Identity,
        obs: Observation,
        keeper: Keeper,
        deadline: float,
        report: Report,
    ) -> None:
        """Remove a joiner that never became a healthy voter, before its launch is abandoned (no
        added-but-unstarted member is left behind). Learners and unstarted members never count toward
        quorum; a started voter is removed only if quorum allows, else the removal happens on termination."""
        ok, detail = quorum_after(view, [member.id])
        if member.learner or not member.started or ok:
            self._remove_member(member, iid, "did not start in time", view, obs, keeper, deadline, report)
        else:
            self.log.error("quorum guard: joiner kept until termination", extra={"instance": iid, "quorum": detail})

    def _drop_ended(
        self,
        ids: Iterable[str],
        keeper: Keeper,
        by_instance: dict[str | None, LifecycleEvent],
        deadline: float,
        report: Report,
    ) -> list[str]:
        """Of these launches, those the APIs no longer show in ``Pending:Wait`` (scaled in, killed, abandoned
        elsewhere): let them go — no more heartbeats, their events are settled. Returns them.

        The same look keeps every *other* waiting action of the served groups alive while this pass waits on a
        founder's or joiner's start (minutes): their own events may sit behind this pass (reserved concurrency)
        past the hook's heartbeat timeout — the soak of 2026-12-02 saw the terminations of instances scaled in
        before they were listed expire that way. Their own passes (or the next reconcile) settle them. Launches
        the tag selector excludes are not ours: left to their hook's timeout."""
        ids = list(ids)
        fresh = self.asg.observe(set(ids), deadline)
        ended = [iid for iid in ids if (fresh.instances.get(iid) or Instance(iid)).lifecycle_state != "Pending:Wait"]
        for iid in ended:
            keeper.release(iid, LAUNCHING)
            if (event := by_instance.pop(iid, None)) is not None:
                report.outcomes.append(Outcome(event, "already-done", "the launch ended elsewhere"))
        self._hold_waiting(fresh, keeper, deadline, skip=set(ids))
        return ended

    def _hold_waiting(self, obs: Observation, keeper: Keeper, deadline: float, *, skip: Iterable[str] = ()) -> None:
        """Hold every waiting action of the served groups in ``obs`` this keeper does not hold yet (launches
        the tag selector excludes are not ours: left to their hook's timeout)."""
        skip = set(skip)
        for inst in sorted(obs.instances.values(), key=lambda i: i.instance_id):
            iid = inst.instance_id
            if inst.group not in obs.served or inst.gone or iid in skip or iid in keeper.actions:
                continue
            if not tags_match(inst.tags, self.settings.instance_tags):
                continue
            if inst.lifecycle_state in WAIT_STATES:
                transition = LAUNCHING if inst.lifecycle_state == "Pending:Wait" else TERMINATING
                if (iid, transition) not in keeper.released:  # a stale describe may still show one just settled
                    self._hold([iid], transition, obs, keeper, deadline)

    def _hold_newly_waiting(self, keeper: Keeper, deadline: float) -> None:
        """``Keeper.discover``: look again and hold what began waiting since (best effort: a failed look
        leaves the held set as it was, and the next round looks again)."""
        try:
            self._hold_waiting(self.asg.observe((), deadline), keeper, deadline)
        except (ClientError, BotoCoreError, DeadlineReached) as exc:
            self.log.warning("could not look for newly waiting actions", extra={"error": str(exc)})

    def _pause(self, keeper: Keeper, deadline: float, why: str) -> None:
        """Wait a moment for etcd to change, heartbeating; DeadlineReached when the pass is out of time."""
        if self.clock.now() + MEMBER_POLL_SECONDS >= deadline:
            raise DeadlineReached(why)
        self.clock.sleep(MEMBER_POLL_SECONDS)
        keeper.beat()

    def _complete(
        self,
        actions: Mapping[str, Action],
        result: str,
        by_instance: dict[str | None, LifecycleEvent],
        keeper: Keeper,
        deadline: float,
        report: Report,
    ) -> None:
        for iid, action in sorted(actions.items()):
            keeper.release(iid, action.transition)
            done = self.asg.complete(action, result, deadline)
            if done:
                report.completed.append((iid, result))
            if action.transition == TERMINATING and result == "CONTINUE":
                self._forget_certificate(iid)
            self.log.info(
                "lifecycle action completed" if done else "lifecycle action already finished",
                extra={"instance": iid, "group": action.group, "hook": action.hook, "result": result},
            )
            event = by_instance.pop(iid, None)
            stale = (
                not done and event is not None and action.token and self.asg.heartbeat(action.by_instance(), deadline)
            )
            if not done and not stale:
                report.finished.append((iid, result))  # settled by someone else: progress all the same
            if event is None:
                continue
            if stale:
                # Our hook still has an active action for this instance, under another token: the event
                # is stale or forged. Its token completes nothing; the real action's own delivery (or the
                # reconcile) settles it.
                why = "the event's token is not the instance's active lifecycle action (stale or forged event)"
                report.outcomes.append(self._reject(event, why, ok=True))
                continue
            report.outcomes.append(Outcome(event, "completed" if done else "already-done", action.transition))

    def _abandon(self, action: Action, why: str, by_instance: dict[str | None, LifecycleEvent], report: Report) -> None:
        done = self.asg.complete(action, "ABANDON", self.clock.now() + self.settings.deadline_margin_seconds)
        self.metrics.add_metric(name="MemberStartTimeouts", unit=MetricUnit.Count, value=1)
        self.metrics.add_metric(name="AbandonedActions", unit=MetricUnit.Count, value=1)
        self.log.error("launch abandoned: member did not start", extra={"instance": action.instance_id, "why": why})
        if done:
            report.completed.append((action.instance_id, "ABANDON"))
        self._forget_certificate(action.instance_id)
        event = by_instance.pop(action.instance_id, None)
        if event is not None:
            report.outcomes.append(Outcome(event, "abandoned", why))

    @staticmethod
    def _not_covered(by_instance: dict[str | None, LifecycleEvent], report: Report) -> None:
        for event in by_instance.values():
            report.outcomes.append(Outcome(event, "already-done", "not covered by the record; nothing to complete"))
        by_instance.clear()

    def _excluded_by_selector(self, settle: Sequence[LifecycleEvent], obs: Observation) -> dict[str, str]:
        """Launches in a served group whose instance lacks a tag ``tag_selector`` asks for: not ours to list or
        complete (another coordinator's, or a selector mistake) — left to the hook's timeout, and said loudly."""
        out: dict[str, str] = {}
        for event in settle:
            inst = obs.instances.get(event.instance_id or "")
            if event.kind is not Kind.JOIN or inst is None or inst.group not in obs.served or inst.gone:
                continue
            if not tags_match(inst.tags, self.settings.instance_tags):
                why = (
                    "instance does not carry the tags the selector asks for "
                    f"({','.join(f'{k}={v}' for k, v in self.settings.instance_tags)}): "
                    "not a member; its action is left to the hook's timeout"
                )
                self.log.warning("launch excluded by tag_selector", extra={"instance": inst.instance_id, "why": why})
                out[inst.instance_id] = why
        return out

    def _actions(
        self, plan: Plan, obs: Observation, settle: Sequence[LifecycleEvent], deadline: float
    ) -> dict[str, Action]:
        """Every action this pass settles: the events' own, and the others the change covers."""
        actions: dict[str, Action] = {}
        for event in settle:
            if event.instance_id and event.group and event.hook_name:
                if event.kind is Kind.JOIN and event.instance_id not in plan.launches:
                    continue
                if event.kind is Kind.LEAVE and event.instance_id not in plan.leaves:
                    continue
                actions[event.instance_id] = Action(
                    event.group, event.hook_name, event.instance_id, event.transition or "", event.token or ""
                )
        for ids, transition in ((plan.launches, LAUNCHING), (plan.leaves, TERMINATING)):
            for iid in ids:
                if iid in actions:
                    continue
                action = self._action_for(iid, transition, obs, deadline)
                if action is not None:
                    actions[iid] = action
        return actions

    def _action_for(self, iid: str, transition: str, obs: Observation, deadline: float) -> Action | None:
        group = obs.instances[iid].group if iid in obs.instances else None
        if group is None:
            return None
        configured = self.settings.launch_hook_name if transition == LAUNCHING else self.settings.terminate_hook_name
        hook = self.asg.hook_name(group, transition, configured, deadline)
        return Action(group, hook, iid, transition) if hook else None

    def _hold(self, ids: Iterable[str], transition: str, obs: Observation, keeper: Keeper, deadline: float) -> None:
        """Keep actions this pass cannot settle yet alive (bootstrap barrier, join queue, quorum guard)."""
        for iid in ids:
            action = self._action_for(iid, transition, obs, deadline)
            if action is not None:
                keeper.hold(action)
                self.log.info("held action kept alive", extra={"instance": iid, "transition": transition})

    def _hand_off(
        self, settle: Sequence[LifecycleEvent], why: str, obs: Observation, deadline: float, report: Report
    ) -> None:
        """Out of time: give up on actions past their own timeout, hand the rest to a retry.

        A termination whose member removal quorum holds never falls back: the hook's global timeout ends it
        (see README, Failure behaviour). With etcd membership a launch on its way in (queued, listed and
        waiting for INSYNC, or told to start less than ``member_start_timeout_seconds`` ago) never falls back
        either: its phases have their own timeout, and abandoning it would only make the group launch another
        that waits the same (founding churned for good that way with a 45 s action timeout under 20-60 s
        propagation). A launch abandoned here first loses its etcd member, if any, on its termination pass
        (the member is identified by the tag recorded at ``member add``).
        """
        now = self.clock.now()
        queued = set(report.plan.queued) if report.plan is not None else set()
        listed = {m.instance_id for m in report.plan.members} if report.plan is not None else set()
        for event in settle:
            if any(o.event == event for o in report.outcomes):
                continue
            started = _parse_time(event.time) or now
            held = event.instance_id in report.quorum_held
            under_way = (
                self.membership is not None
                and event.kind is Kind.JOIN
                and _launch_under_way(
                    obs.instances.get(event.instance_id or ""),
                    queued=event.instance_id in queued,
                    listed=event.instance_id in listed,
                    now=now,
                    start_timeout=self.settings.member_start_timeout_seconds,
                    action_timeout=self.settings.action_timeout_seconds,
                )
            )
            timed_out = now - started >= self.settings.action_timeout_seconds and not under_way
            if held or not timed_out or not event.hook_name or not event.group:
                self.log.warning("handing off to a retry", extra={"instance": event.instance_id, "why": why})
                report.outcomes.append(Outcome(event, "held" if held else "handoff", why, ok=held))
                continue
            result = "CONTINUE"
            if event.kind is Kind.JOIN:
                # With etcd membership a launch completes CONTINUE only as a healthy member: an instance in
                # service without etcd would hold a place in the group no member fills. So always ABANDON.
                result = "ABANDON" if self.membership is not None else self.settings.launch_failure_result
            action = Action(
                event.group, event.hook_name, event.instance_id or "", event.transition or "", event.token or ""
            )
            done = self.asg.complete(action, result, deadline + self.settings.deadline_margin_seconds)
            if result == "ABANDON":
                self.metrics.add_metric(name="AbandonedActions", unit=MetricUnit.Count, value=1)
            self.metrics.add_metric(name="FallbackCompletions", unit=MetricUnit.Count, value=1)
            self.log.error(
                "action timed out; falling back",
                extra={"instance": event.instance_id, "result": result, "why": why, "completed": done},
            )
            if done:
                report.completed.append((event.instance_id or "", result))
            report.outcomes.append(Outcome(event, "fallback", f"{result}: {why}"))

    def _log_plan(self, plan: Plan, pending: Sequence[LifecycleEvent]) -> None:
        self.log.info(
            "plan",
            extra={
                "events": [f"{e.kind.value}:{e.instance_id}" for e in pending],
                "members": [m.instance_id for m in plan.members],
                "targets": plan.targets,
                "added": plan.added,
                "removed": plan.removed,
                "held": plan.held,
                "queued": plan.queued,
                "bootstrap": plan.bootstrap,
                "changes": len(plan.changes),
                "notes": plan.notes,
            },
        )


# Pure helpers a pass and ``status`` share (``status`` shows what a pass would do, from the same rules).
def listed_hosts(view: EtcdView, gone: Iterable[str]) -> set[str]:
    """Peer hosts the record goes on listing: every member etcd still has once ``gone`` (member IDs removed, or
    the last voter a dismantled cluster ends with) are out — held removals, members no instance can be found
    for: a joiner starting from the record must find exactly the members, and no setting
    (``max_unexplained_removals`` included) may drop a live member from it."""
    out = set(gone)
    return {h for m in view.members if m.id not in out for h in m.peer_hosts}


def member_owners(view: EtcdView, obs: Observation) -> dict[str, Instance]:
    """Record targets etcd says belong to an instance: the peer host of a member named after it (or whose ID it
    carries)."""
    identity = identify(view, obs.instances)
    out: dict[str, Instance] = {}
    for member in view.members:
        iid = identity.owner.get(member.id)
        if iid and iid in obs.instances and identity.how.get(member.id) in ("name", "tag"):
            for host in member.peer_hosts:
                out[host + "."] = obs.instances[iid]
    return out


def _members_known(view: EtcdView, obs: Observation) -> bool:
    """Every etcd member is identified with an instance the observation holds (by name, tag or peer host)."""
    identity = identify(view, obs.instances)
    return all(identity.owner.get(m.id) in obs.instances for m in view.members)


def _dismantling(obs: Observation) -> bool:
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


def _launch_under_way(
    instance: Instance | None, *, queued: bool, listed: bool, now: float, start_timeout: float, action_timeout: float
) -> bool:
    """Whether a launch is progressing through its membership phases (so the action timeout does not apply):
    queued behind an earlier joiner, listed (by this pass's plan or a recorded change) and waiting for INSYNC,
    or told to start (the go signal) less than ``start_timeout`` ago (``etcd-member-since``; ``join_step`` and the
    founding loop abandon it there). A ``member add`` that keeps failing (phase ``adding``, no go signal) gets
    ``action_timeout`` counted from the add's start, not the launch's: a joiner that waited its turn longer than
    the action timeout is not abandoned at its first transient refusal."""
    if queued:
        return True
    if instance is None or instance.gone:
        return False
    since = _float(instance.tags.get(SINCE_TAG))
    if STATE_TAG in instance.tags:
        return since is not None and now - since < start_timeout
    if PHASE_TAG in instance.tags:  # `member add` under way: its own failures get the action timeout, from the add
        return since is not None and now - since < action_timeout
    return listed or CHANGE_TAG in instance.tags


def _joiners_pending(view: EtcdView, identity: Identity, obs: Observation) -> bool:
    """Whether an instance is on its way into this cluster: launching in a served group and not yet a healthy
    voting member (a replacement, a scale-out)."""
    for inst in obs.instances.values():
        if inst.group not in obs.served or inst.gone or inst.lifecycle_state not in ("Pending", "Pending:Wait"):
            continue
        member = identity.member_of(inst.instance_id, view)
        if member is None or member.learner or member.id not in view.healthy:
            return True
    return False


_AFTER_COMPLETION = {
    ("Pending:Wait", "CONTINUE"): "Pending:Proceed",
    ("Terminating:Wait", "CONTINUE"): "Terminating:Proceed",
    ("Terminating:Wait", "ABANDON"): "Terminating:Proceed",
}


def _as_completed(obs: Observation, report: Report) -> Observation:
    """``obs`` with the actions this pass completed as the group now has them: describes are eventually
    consistent, and a look seconds after a completion may still show the instance waiting (the next round
    would take the joiner it just completed for the one to serve, and leave the queued one waiting)."""
    changed = {}
    for iid, result in [*report.completed, *report.finished]:
        inst = obs.instances.get(iid)
        after = _AFTER_COMPLETION.get((inst.lifecycle_state or "", result)) if inst is not None else None
        if after is not None:
            changed[iid] = replace(inst, lifecycle_state=after)
    if not changed:
        return obs
    return Observation(groups=obs.groups, instances={**obs.instances, **changed}, now=obs.now)


def _earlier_leave_proof(inst: Instance, change_id: str) -> bool:
    """Whether the instance names an earlier change that dropped it (not ``pending``, not this pass's)."""
    tag = inst.tags.get(LEAVE_CHANGE_TAG)
    return tag is not None and tag not in (PENDING, change_id)


def _others_waiting(obs: Observation, handled: set[str | None]) -> bool:
    """Whether an instance of a served group other than ``handled`` waits on a lifecycle action."""
    return any(
        inst.group in obs.served and inst.lifecycle_state in WAIT_STATES and inst.instance_id not in handled
        for inst in obs.instances.values()
    )


def _tagged_owners(obs: Observation) -> dict[str, Instance]:
    """Targets named by the ``etcd-srv-target`` tag of each observed instance."""
    return {inst.tags[TARGET_TAG]: inst for inst in obs.instances.values() if inst.tags.get(TARGET_TAG)}


def _running(view: EtcdView | None) -> bool:
    return view is not None and any(m.started for m in view.members)


def _supports_learners(version: str) -> bool:
    """etcd 3.4 introduced learners.

    >>> _supports_learners("3.5.0"), _supports_learners("3.3.25"), _supports_learners("")
    (True, False, False)
    """
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (3, 4)


def _waitable(exc: EtcdRefused) -> bool:
    """etcd refusing for now, for the cluster's safety: the caller waits for the cluster to change."""
    text = exc.message.lower()
    return any(t in text for t in (UNHEALTHY, NOT_ENOUGH_STARTED, LEARNER_NOT_READY, TOO_MANY_LEARNERS))


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _comment(plan: Plan) -> str:
    parts = ["etcd-asg-coordinator"]
    if plan.added:
        parts.append("add " + ",".join(plan.added))
    if plan.removed:
        parts.append("remove " + ",".join(t.split(".")[0] for t in plan.removed))
    return "; ".join(parts)


def _why(exc: BaseException) -> str:
    code = error_code(exc)
    return f"{code}: {error_message(exc)}" if code else str(exc)


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
