"""One coordination pass: observe → plan → apply → tag → wait → complete.

A pass takes every event of an invocation together (one for EventBridge/SNS, a batch for SQS,
none for a reconcile), so a burst costs one write and one poll loop. Correctness rests on three
rules: membership comes from the APIs, never from the event; every write is a compare-and-swap;
an action completes only after a change whose record says the right thing is INSYNC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from hook_handler.clock import Clock
from hook_handler.etcd import MembershipError, peer_url
from hook_handler.events import Kind, LifecycleEvent
from hook_handler.exceptions import DeadlineReached
from hook_handler.lifecycle import CHANGE_TAG, LAUNCHING, STATE_TAG, TERMINATING, AutoScaling
from hook_handler.members import LEAVING_STATES, MEMBER_STATES, leaving_explained
from hook_handler.plan import Observation, Plan, RecordSet, build_plan, peer_targets, record_keys, target_of
from hook_handler.retry import error_code, error_message
from hook_handler.route53 import Conflict, Route53
from hook_handler.settings import Settings, fqdn
from hook_handler.srv import SrvValue
from hook_handler.telemetry import MetricUnit

MAX_CAS_ATTEMPTS = 8
FOLLOWER_POLL_SECONDS = 5.0


@dataclass
class Outcome:
    """What became of one event. ``ok=False`` asks the caller to retry (or dead-letter) it."""

    event: LifecycleEvent
    status: str  # completed | already-done | held | ignored | rejected | unconfirmed | handoff | fallback
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
    held: tuple[str, ...] = ()
    dry_run: bool = False
    plan: Plan | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "change_id": self.change_id,
            "before": list(self.before),
            "after": list(self.after),
            "completed": [list(c) for c in self.completed],
            "held": list(self.held),
            "dry_run": self.dry_run,
            "outcomes": [
                {"instance": o.event.instance_id, "kind": o.event.kind.value, "status": o.status, "detail": o.detail}
                for o in self.outcomes
            ],
        }


class Coordinator:
    """Runs passes. Clients, clock, logger and metrics are passed in (see ``app``)."""

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
        membership: Any | None = None,
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

        observation = self.asg.observe({e.instance_id for e in live if e.instance_id}, deadline)
        pending = self._judge(live, observation, report)
        if not pending and not any(e.kind is Kind.RECONCILE for e in live) and any(e.is_action for e in live):
            return report  # every action was already settled (a duplicate or a late delivery): nothing to do
        reconcile = not pending
        # One round per joiner while launches queue for a running cluster (``Plan.queued``: etcd takes one new
        # member at a time); otherwise a single round. Each round completes at least one action or stops.
        while True:
            try:
                plan, change_id, observation = self._publish(
                    observation, pending, deadline, report, reconcile=reconcile
                )
            except (DeadlineReached, MembershipError, ClientError) as exc:
                if not pending:
                    raise  # a reconcile that cannot finish must fail loudly (the Errors alarm)
                self._hand_off(pending, _why(exc), deadline, report)
                return report
            report.plan = plan
            if dry_run:
                for event in pending:
                    report.outcomes.append(Outcome(event, "dry-run", "nothing applied"))
                return report

            held, queued = set(plan.held), set(plan.queued)
            if held and not pending:
                self._keep_alive(plan, observation, deadline)
            settle = [e for e in pending if not (e.kind is Kind.JOIN and e.instance_id in held | queued)]
            waiting = [e for e in pending if e.kind is Kind.JOIN and e.instance_id in queued]
            for event in pending:
                if event.kind is Kind.JOIN and event.instance_id in held:
                    report.outcomes.append(
                        Outcome(
                            event, "held", f"bootstrap barrier: {len(plan.members) + len(held)}/{plan.expected} present"
                        )
                    )
            completed = len(report.completed)
            try:
                self._wait_and_complete(plan, observation, settle, change_id, deadline, report)
            except (DeadlineReached, MembershipError, ClientError) as exc:
                self._hand_off([*settle, *waiting], _why(exc), deadline, report)
                return report
            if not queued:
                return report
            if len(report.completed) == completed:
                self._hand_off(waiting, "an earlier joiner is not settled yet", deadline, report)
                return report
            if self.membership is not None:
                # The joiner just completed must start before the record lists the next one (see Plan.queued).
                try:
                    self.membership.wait_started(self._endpoints(plan, exclude=set()), deadline)
                except MembershipError as exc:
                    self._hand_off(waiting, _why(exc), deadline, report)
                    return report
            self.log.info("next joiner", extra={"queued": sorted(queued)})
            observation = self.asg.observe({e.instance_id for e in waiting if e.instance_id}, deadline)
            pending = self._judge(waiting, observation, report)

    # -- steps ------------------------------------------------------------------------------
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

    def _judge(self, events: Sequence[LifecycleEvent], obs: Observation, report: Report) -> list[LifecycleEvent]:
        """Check each action against what the APIs say; keep those still waiting for us."""
        pending: list[LifecycleEvent] = []
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
                    report.outcomes.append(self._reject(event, why, status="unconfirmed"))
            elif event.group and inst.group != event.group:
                report.outcomes.append(self._reject(event, f"instance belongs to {inst.group!r}, not {event.group!r}"))
            elif event.kind is Kind.JOIN:
                if state == "Pending:Wait":
                    pending.append(event)
                elif state in MEMBER_STATES:
                    report.outcomes.append(Outcome(event, "already-done", f"instance is {state}"))
                else:
                    report.outcomes.append(Outcome(event, "already-done", f"stale launch: instance is {state}"))
            elif event.kind is Kind.LEAVE:
                if state == "Terminating:Wait" or (state or "").startswith("Warmed:"):
                    pending.append(event)
                elif state in LEAVING_STATES:
                    report.outcomes.append(Outcome(event, "already-done", f"instance is {state}"))
                else:
                    report.outcomes.append(self._reject(event, f"termination event but the instance is {state}"))
            else:  # PASS: warm-pool moves that change no membership
                pending.append(event)
        return pending

    def _reject(self, event: LifecycleEvent, why: str, *, status: str = "rejected", ok: bool = False) -> Outcome:
        """Log and count a refused event. ``ok=False`` fails it (retry, then the dead-letter queue)."""
        self.log.error("event refused", extra={"instance": event.instance_id, "group": event.group, "why": why})
        self.metrics.add_metric(name="RejectedEvents", unit=MetricUnit.Count, value=1)
        return Outcome(event, status, why, ok=ok)

    def _publish(
        self,
        obs: Observation,
        pending: Sequence[LifecycleEvent],
        deadline: float,
        report: Report,
        *,
        reconcile: bool = False,
    ) -> tuple[Plan, str | None, Observation]:
        """Plan and write with compare-and-swap; on a conflict, observe and read again."""
        for attempt in range(1, MAX_CAS_ATTEMPTS + 1):
            targets = {t for i in obs.instances.values() if (t := target_of(i, self.settings))}
            current = self.route53.read(record_keys(self.settings, targets), deadline)
            obs = self._resolve_unknown_targets(obs, current, deadline)
            if self.settings.target_mode == "a-record":
                old = peer_targets(current.get((self.settings.srv_fqdn, "SRV")))
                missing = record_keys(self.settings, old) - record_keys(self.settings, targets)
                current = {**current, **self.route53.read(missing, deadline)} if missing else current
            plan = build_plan(self.settings, obs, current, pending)
            report.before = tuple(sorted(peer_targets(current.get((self.settings.srv_fqdn, "SRV")))))
            report.after = plan.targets
            report.held = plan.held
            self._log_plan(plan, pending)
            if plan.guard_kept:
                self.log.error("removal guard refused", extra={"kept": plan.guard_kept, "why": plan.guard_reasons})
                self.metrics.add_metric(name="GuardRefused", unit=MetricUnit.Count, value=len(plan.guard_kept))
            if report.dry_run:
                return plan, None, obs
            if self.membership is not None:
                self._remove_members(plan, obs, deadline, drift=reconcile)
            if not plan.changes:
                return plan, None, obs
            try:
                change = self.route53.apply(plan.changes, _comment(plan), deadline)
            except Conflict as exc:
                self.metrics.add_metric(name="Conflicts", unit=MetricUnit.Count, value=1)
                self.log.warning("record changed under us; re-reading", extra={"attempt": attempt, "error": str(exc)})
                self.clock.sleep(min(2.0, 0.1 * attempt))
                obs = self.asg.observe({e.instance_id for e in pending if e.instance_id}, deadline)
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
        """Look up record targets no observed instance owns, so the guard can judge their removal."""
        known = {t for i in obs.instances.values() if (t := target_of(i, self.settings))}
        unknown = peer_targets(current.get((self.settings.srv_fqdn, "SRV"))) - known
        if not unknown or self.settings.target_mode == "a-record":
            return obs
        names = [t.rstrip(".") for t in unknown]
        found = self.asg.describe_instances(names, deadline, by="private-dns-name")
        if not found:
            return obs
        return Observation(groups=obs.groups, instances={**found, **obs.instances}, now=obs.now)

    def _wait_and_complete(
        self,
        plan: Plan,
        obs: Observation,
        settle: Sequence[LifecycleEvent],
        change_id: str | None,
        deadline: float,
        report: Report,
    ) -> None:
        actions = self._actions(plan, obs, settle, deadline)
        if not actions:
            for event in settle:
                report.outcomes.append(Outcome(event, "already-done", "no action waits"))
            return
        if change_id is not None:
            proofs = {change_id}
            self._tag_change(change_id, actions, obs, deadline)
        else:
            proofs = self._existing_proofs(plan, obs, actions, deadline)
        # A pass waiting on a change another pass wrote (its tag names it) follows at a slower pace:
        # the writer polls and completes these actions too; the follower only covers for a writer
        # that died, and so does not double the account's Route 53 polling.
        follower = (
            change_id is None and bool(proofs) and proofs <= {obs.instances[i].tags.get(CHANGE_TAG) for i in actions}
        )
        interval = self.settings.poll_interval_seconds
        if follower:
            interval = max(interval, FOLLOWER_POLL_SECONDS)
        last_beat = self.clock.now()

        def beat() -> None:
            nonlocal last_beat
            if self.clock.now() - last_beat >= self.settings.heartbeat_interval_seconds:
                last_beat = self.clock.now()
                for action in actions.values():
                    self.asg.heartbeat(action, deadline)

        for proof in sorted(proofs):
            waited = self.route53.wait_insync(
                proof,
                deadline=deadline,
                initial_delay=self.settings.poll_initial_delay_seconds,
                interval=interval,
                while_waiting=beat,
            )
            self.metrics.add_metric(name="PropagationSeconds", unit=MetricUnit.Seconds, value=waited)
            self.log.info("change insync", extra={"change_id": proof, "waited": round(waited, 3)})
        self.metrics.add_metric(name="Members", unit=MetricUnit.Count, value=len(plan.targets))

        by_instance = {e.instance_id: e for e in settle}
        if self.membership is not None and plan.cluster_state == "existing":
            for iid in self._add_members(plan, obs, [i for i in actions if i in plan.launches], deadline):
                del actions[iid]
                event = by_instance.pop(iid, None)
                if event is not None:
                    report.outcomes.append(Outcome(event, "handoff", "etcd member add did not succeed yet", ok=False))

        # The go signal for the instance: written only now, when the record that lists it is
        # INSYNC (and, joining a running cluster, its member added). IMDS's target lifecycle
        # state already says InService during Pending:Wait, so it cannot be the signal.
        go = {
            iid: {STATE_TAG: plan.cluster_state}
            for iid in actions
            if iid in plan.launches and STATE_TAG not in obs.instances[iid].tags
        }
        if go:
            self.asg.tag(go, deadline)

        for iid, action in sorted(actions.items()):
            done = self.asg.complete(action, "CONTINUE", deadline)
            if done:
                report.completed.append((iid, "CONTINUE"))
            self.log.info(
                "lifecycle action completed" if done else "lifecycle action already finished",
                extra={"instance": iid, "group": action["group"], "hook": action["hook"], "result": "CONTINUE"},
            )
            event = by_instance.pop(iid, None)
            if event is None:
                continue
            if not done and action.get("token") and self.asg.heartbeat({**action, "token": ""}, deadline):
                # Our hook still has an active action for this instance, under another token: the
                # event is stale or forged. Its token completes nothing; the real action's own
                # delivery (or the reconcile) settles it.
                why = "the event's token is not the instance's active lifecycle action (stale or forged event)"
                report.outcomes.append(self._reject(event, why, ok=True))
                continue
            report.outcomes.append(Outcome(event, "completed" if done else "already-done", action["transition"]))
        for event in by_instance.values():
            report.outcomes.append(Outcome(event, "already-done", "not covered by the record; nothing to complete"))

    def _actions(
        self, plan: Plan, obs: Observation, settle: Sequence[LifecycleEvent], deadline: float
    ) -> dict[str, dict[str, str]]:
        """Every action this pass settles: the events' own, and the others the change covers."""
        actions: dict[str, dict[str, str]] = {}
        for event in settle:
            if event.instance_id and event.group and event.hook_name:
                if event.kind is Kind.JOIN and event.instance_id not in plan.launches:
                    continue
                if event.kind is Kind.LEAVE and event.instance_id not in plan.leaves:
                    continue
                actions[event.instance_id] = {
                    "group": event.group,
                    "hook": event.hook_name,
                    "token": event.token or "",
                    "instance_id": event.instance_id,
                    "transition": event.transition or "",
                }
        for ids, transition, configured in (
            (plan.launches, LAUNCHING, self.settings.launch_hook_name),
            (plan.leaves, TERMINATING, self.settings.terminate_hook_name),
        ):
            for iid in ids:
                group = obs.instances[iid].group
                if iid in actions or group is None:
                    continue
                hook = self.asg.hook_name(group, transition, configured, deadline)
                if hook:
                    actions[iid] = {"group": group, "hook": hook, "instance_id": iid, "transition": transition}
        return actions

    def _keep_alive(self, plan: Plan, obs: Observation, deadline: float) -> None:
        """A reconcile heartbeats the launches the bootstrap barrier holds, so they outlive the wait."""
        for iid in plan.held:
            group = obs.instances[iid].group
            hook = group and self.asg.hook_name(group, LAUNCHING, self.settings.launch_hook_name, deadline)
            if group and hook:
                alive = self.asg.heartbeat({"group": group, "hook": hook, "instance_id": iid}, deadline)
                self.log.info("held launch kept alive", extra={"instance": iid, "active": alive})

    def _tag_change(self, change_id: str, actions: Mapping[str, Any], obs: Observation, deadline: float) -> None:
        """Name the change on every instance it settles, before waiting: a retry that finds the
        record already right waits on this change instead of writing again."""
        tags = {iid: {CHANGE_TAG: change_id} for iid in actions if obs.instances[iid].tags.get(CHANGE_TAG) != change_id}
        if tags:
            self.asg.tag(tags, deadline)

    def _existing_proofs(self, plan: Plan, obs: Observation, actions: Mapping[str, Any], deadline: float) -> set[str]:
        """The records are already right: find the change that made them so, or rewrite to get one."""
        ids = {obs.instances[i].tags.get(CHANGE_TAG) for i in actions}
        if ids and None not in ids:
            return {i for i in ids if i}
        peer = plan.current.get((self.settings.srv_fqdn, "SRV"))
        if peer is None:
            # Nothing left to rewrite (the record was deleted): the removal already happened.
            self.log.warning("no change id proves the deletion; completing on the record's absence")
            self.metrics.add_metric(name="UnprovenCompletions", unit=MetricUnit.Count, value=1)
            return set()
        rewrite = [
            {"Action": "DELETE", "ResourceRecordSet": peer.to_route53()},
            {"Action": "CREATE", "ResourceRecordSet": peer.to_route53()},
        ]
        try:
            change = self.route53.apply(rewrite, "etcd-asg-coordinator: prove propagation", deadline)
        except Conflict:
            raise DeadlineReached("record changed while proving propagation; retrying") from None
        self._tag_change(change.id, actions, obs, deadline)
        return {change.id}

    # -- etcd membership ---------------------------------------------------------------------
    def _endpoints(self, plan: Plan, exclude: set[str]) -> list[str]:
        """Client URLs of members that stay: configured, from the client SRV record, or in service."""
        s = self.settings
        if s.etcd_endpoints:
            return list(s.etcd_endpoints)
        urls: list[str] = []
        if s.etcd_client_srv:
            record = plan.current.get((fqdn(s.etcd_client_srv, s.domain_name), "SRV"))
            for value in record.values if record else ():
                try:
                    srv = SrvValue.parse(value)
                except ValueError:
                    continue
                if srv.target not in exclude:
                    urls.append(f"{s.etcd_peer_scheme}://{srv.target.rstrip('.')}:{srv.port}")
        if not urls:
            urls = [
                f"{s.etcd_peer_scheme}://{m.private_ip}:{s.etcd_client_port}"
                for m in plan.members
                if m.lifecycle_state == "InService" and m.private_ip and target_of(m, s) not in exclude
            ]
        return urls

    def _remove_members(self, plan: Plan, obs: Observation, deadline: float, *, drift: bool) -> None:
        """Remove the leaving instances' etcd members before the record drops them.

        Only members whose peer URL names a target the APIs explain as gone or leaving; on a
        reconcile (``drift``) also members no record lists whose instance the APIs say is gone.
        """
        s = self.settings
        gone = set(plan.removed) | {t for iid in plan.leaves if (t := target_of(obs.instances[iid], s))}
        endpoints = self._endpoints(plan, exclude=gone)
        if not endpoints:
            return
        if drift:
            listed = set(plan.targets)
            by_target = {t: i for i in obs.instances.values() if (t := target_of(i, s))}
            for member in self.membership.members(endpoints, deadline):
                for url in member.peer_urls:
                    host = (urlsplit(url).hostname or "") + "."
                    if host in listed or host in gone:
                        continue
                    instance = by_target.get(host)
                    if instance is None and s.target_mode == "private-dns":
                        found = self.asg.describe_instances([host.rstrip(".")], deadline, by="private-dns-name")
                        instance = next(iter(found.values()), None)
                    if leaving_explained(instance, obs.served):
                        gone.add(host)
        for target in sorted(gone):
            url = peer_url(target, s.etcd_port, s.etcd_peer_scheme)
            if self.membership.remove(url, endpoints, deadline):
                self.metrics.add_metric(name="MembersRemoved", unit=MetricUnit.Count, value=1)
                self.log.info("etcd member removed", extra={"peer_url": url})

    def _add_members(self, plan: Plan, obs: Observation, launches: Sequence[str], deadline: float) -> list[str]:
        """``member add`` each joining instance; return those not added (retried by a later pass)."""
        s = self.settings
        targets = {iid: target_of(obs.instances[iid], s) or "" for iid in launches}
        endpoints = self._endpoints(plan, exclude=set(targets.values()))
        for n, iid in enumerate(sorted(launches)):
            url = peer_url(targets[iid], s.etcd_port, s.etcd_peer_scheme)
            try:
                added = self.membership.add(url, endpoints, deadline)
            except MembershipError as exc:
                self.log.error("etcd member add failed", extra={"instance": iid, "peer_url": url, "error": str(exc)})
                self.metrics.add_metric(name="MembershipErrors", unit=MetricUnit.Count, value=1)
                return sorted(launches)[n:]
            self.log.info("etcd member added" if added else "etcd member already present", extra={"peer_url": url})
        return []

    def _hand_off(self, settle: Sequence[LifecycleEvent], why: str, deadline: float, report: Report) -> None:
        """Out of time: give up on actions past their own timeout, hand the rest to a retry."""
        now = self.clock.now()
        for event in settle:
            if any(o.event == event for o in report.outcomes):
                continue
            started = _parse_time(event.time) or now
            if now - started < self.settings.action_timeout_seconds or not event.hook_name or not event.group:
                self.log.warning("handing off to a retry", extra={"instance": event.instance_id, "why": why})
                report.outcomes.append(Outcome(event, "handoff", why, ok=False))
                continue
            result = self.settings.launch_failure_result if event.kind is Kind.JOIN else "CONTINUE"
            action = {
                "group": event.group,
                "hook": event.hook_name,
                "token": event.token or "",
                "instance_id": event.instance_id or "",
            }
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
