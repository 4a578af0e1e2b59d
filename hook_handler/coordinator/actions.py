"""Lifecycle actions at the edge of a pass: which actions it holds and settles, heartbeats (through the pass's
``Keeper``), CONTINUE / ABANDON, and the hand-off to a retry when a pass cannot finish."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from hook_handler.certs import CERT_TAG
from hook_handler.coordinator.certificates import Issuer
from hook_handler.coordinator.context import Pass, Services
from hook_handler.decide import WAIT_STATES, HandOff, action_started, fallback, launch_under_way, may_be_member
from hook_handler.events import Kind, LifecycleEvent
from hook_handler.exceptions import DeadlineReached
from hook_handler.lifecycle import CHANGE_TAG, LAUNCHING, TARGET_TAG, TERMINATING, Action
from hook_handler.members import STATE_TAG, Instance, tags_match
from hook_handler.membership import MEMBER_ID_TAG, PHASE_TAG, SINCE_TAG
from hook_handler.plan import Observation, Plan
from hook_handler.report import Outcome, Report, Status

# What makes an instance an admitted member, revoked when it goes back to the warm pool (etcd-member-cert too: the
# secret it names is deleted when the member leaves for the warm pool; a return is issued a new one).
ADMISSION_TAGS = (STATE_TAG, MEMBER_ID_TAG, PHASE_TAG, SINCE_TAG, CHANGE_TAG, TARGET_TAG, CERT_TAG)

ENDED_KEPT = 4096  # tokens of ended actions a sandbox remembers (``Actions.ended``), the oldest forgotten first


def event_action(event: LifecycleEvent) -> Action:
    """The action an event names (by its token when it has one)."""
    return Action(
        event.group or "", event.hook_name or "", event.instance_id or "", event.transition or "", event.token or ""
    )


class Actions:
    def __init__(self, services: Services, issuer: Issuer) -> None:
        self.s = services
        self.issuer = issuer
        # (instance, transition) -> when this sandbox first saw the action: an action's age never rests on the event's
        # own Time alone (``decide.action_started``).
        self.first_seen: dict[tuple[str, str], float] = {}
        # Tokens of actions this sandbox saw end (completed, or found finished by someone else): a pass that cannot
        # finish hands no event of theirs to a retry (``hand_off``) — the retry could only find it done.
        self.ended: dict[str, None] = {}

    def seen(self, events: Iterable[LifecycleEvent]) -> None:
        """Note when this sandbox first saw each action (sandbox memory: a cold start sees them anew, later)."""
        now = self.s.clock.now()
        for event in events:
            if event.is_action and event.instance_id:
                self.first_seen.setdefault((event.instance_id, event.transition or ""), now)

    def _ended(self, action: Action) -> None:
        """Note that the action (by its token) is no longer active: a token never becomes active again."""
        if action.token:
            self.ended.pop(action.token, None)
            self.ended[action.token] = None
            while len(self.ended) > ENDED_KEPT:
                del self.ended[next(iter(self.ended))]

    # -- which actions --------------------------------------------------------------------------------------------
    def action_for(self, iid: str, transition: str, obs: Observation, deadline: float) -> Action | None:
        group = obs.instances[iid].group if iid in obs.instances else None
        if group is None:
            return None
        s = self.s.settings
        configured = s.launch_hook_name if transition == LAUNCHING else s.terminate_hook_name
        hook = self.s.asg.hook_name(group, transition, configured, deadline)
        return Action(group, hook, iid, transition) if hook else None

    def of_plan(self, plan: Plan, p: Pass, settle: Sequence[LifecycleEvent]) -> dict[str, Action]:
        """Every action this pass settles: the events' own, and the others the change covers."""
        actions: dict[str, Action] = {}
        for event in settle:
            if event.instance_id and event.group and event.hook_name:
                if event.kind is Kind.JOIN and event.instance_id not in plan.launches:
                    continue
                if event.kind is Kind.LEAVE and event.instance_id not in plan.leaves:
                    continue
                actions[event.instance_id] = event_action(event)
        for ids, transition in ((plan.launches, LAUNCHING), (plan.leaves, TERMINATING)):
            for iid in ids:
                if iid not in actions and (action := self.action_for(iid, transition, p.obs, p.deadline)) is not None:
                    actions[iid] = action
        return actions

    def excluded_by_selector(self, settle: Sequence[LifecycleEvent], obs: Observation) -> dict[str, str]:
        """Launches in a served group whose instance lacks a tag ``tag_selector`` asks for: not ours to list or
        complete (another coordinator's, or a selector mistake) — left to the hook's timeout, and said loudly."""
        selector = self.s.settings.instance_tags
        out: dict[str, str] = {}
        for event in settle:
            inst = obs.instances.get(event.instance_id or "")
            if event.kind is not Kind.JOIN or inst is None or inst.group not in obs.served or inst.gone:
                continue
            if not tags_match(inst.tags, selector):
                why = (
                    "instance does not carry the tags the selector asks for "
                    f"({','.join(f'{k}={v}' for k, v in selector)}): "
                    "not a member; its action is left to the hook's timeout"
                )
                self.s.log.warning("launch excluded by tag_selector", extra={"instance": inst.instance_id, "why": why})
                out[inst.instance_id] = why
        return out

    # -- holding --------------------------------------------------------------------------------------------------
    def hold(self, ids: Iterable[str], transition: str, p: Pass, obs: Observation | None = None) -> None:
        """Keep actions this pass cannot settle yet alive (bootstrap barrier, join queue, quorum guard)."""
        for iid in ids:
            action = self.action_for(iid, transition, obs or p.obs, p.deadline)
            if action is not None:
                p.keeper.hold(action)
                self.s.log.info("held action kept alive", extra={"instance": iid, "transition": transition})

    def hold_waiting(self, obs: Observation, p: Pass, *, skip: Iterable[str] = ()) -> None:
        """Hold every waiting action of the served groups in ``obs`` the pass does not hold yet (launches the tag
        selector excludes are not ours: left to their hook's timeout)."""
        skip = set(skip)
        for inst in sorted(obs.instances.values(), key=lambda i: i.instance_id):
            iid = inst.instance_id
            if inst.group not in obs.served or inst.gone or iid in skip or iid in p.keeper.actions:
                continue
            if not tags_match(inst.tags, self.s.settings.instance_tags) or inst.lifecycle_state not in WAIT_STATES:
                continue
            transition = LAUNCHING if inst.lifecycle_state == "Pending:Wait" else TERMINATING
            if (iid, transition) not in p.keeper.released:  # a stale describe may still show one just settled
                self.hold([iid], transition, p, obs)

    def discover(self, p: Pass) -> None:
        """``Keeper.discover``: look again and hold what began waiting since (best effort: a failed look leaves the
        held set as it was, and the next round looks again)."""
        try:
            self.hold_waiting(self.s.asg.observe((), p.deadline), p)
        except (ClientError, BotoCoreError, DeadlineReached) as exc:
            self.s.log.warning("could not look for newly waiting actions", extra={"error": str(exc)})

    def drop_ended(self, ids: Iterable[str], p: Pass) -> list[str]:
        """Of these launches, those the APIs no longer show in ``Pending:Wait`` (scaled in, killed, abandoned
        elsewhere): let them go — no more heartbeats, their events are settled. Returns them.

        The same look keeps every *other* waiting action of the served groups alive while this pass waits on a
        founder's or joiner's start (minutes): their own events may sit behind this pass (reserved concurrency)
        past the hook's heartbeat timeout (terminations of instances scaled in before they were listed once
        expired that way). Their own passes (or the next reconcile) settle them."""
        ids = list(ids)
        fresh = self.s.asg.observe(set(ids), p.deadline)
        ended = [iid for iid in ids if (fresh.instances.get(iid) or Instance(iid)).lifecycle_state != "Pending:Wait"]
        for iid in ended:
            p.keeper.release(iid, LAUNCHING)
            p.outcome(iid, Status.ALREADY_DONE, "the launch ended elsewhere")
        self.hold_waiting(fresh, p, skip=set(ids))
        return ended

    # -- settling -------------------------------------------------------------------------------------------------
    def complete(self, actions: Mapping[str, Action], result: str, p: Pass) -> None:
        for iid, action in sorted(actions.items()):
            p.keeper.release(iid, action.transition)
            self.first_seen.pop((iid, action.transition), None)
            done = self.s.asg.complete(action, result, p.deadline)
            if done:
                p.report.completed.append((iid, result))
            if action.transition == TERMINATING and result == "CONTINUE":
                self.issuer.forget(iid)
            self.s.log.info(
                "lifecycle action completed" if done else "lifecycle action already finished",
                extra={"instance": iid, "group": action.group, "hook": action.hook, "result": result},
            )
            event = p.events.pop(iid, None)
            stale = (
                not done
                and event is not None
                and action.token
                and self.s.asg.heartbeat(action.by_instance(), p.deadline)
            )
            if not done and not stale:
                p.report.finished.append((iid, result))  # settled by someone else: progress all the same
            if not stale:
                self._ended(action)
            if event is None:
                continue
            if stale:
                # Our hook still has an active action for this instance, under another token: the event is stale or
                # forged. Its token completes nothing; the real action's own delivery (or the reconcile) settles it.
                why = "the event's token is not the instance's active lifecycle action (stale or forged event)"
                p.report.outcomes.append(self.s.reject(Outcome(event, Status.REJECTED, why)))
                continue
            p.report.outcomes.append(
                Outcome(event, Status.COMPLETED if done else Status.ALREADY_DONE, action.transition)
            )

    def settle_leaves(self, leaves: Mapping[str, Action], p: Pass) -> None:
        """Complete leaves whose record without them is INSYNC (their members are out of etcd)."""
        self.complete(leaves, "CONTINUE", p)
        returning = [iid for iid in leaves if (p.obs.instances[iid].lifecycle_state or "").startswith("Warmed:")]
        if returning:
            # Back to the warm pool: its membership is revoked, so when it leaves the pool again its start script
            # finds no go signal (and clears the removed member's data) and it joins as a new member.
            self.s.asg.untag(returning, ADMISSION_TAGS, p.deadline)

    def abandon(self, action: Action, why: str, p: Pass) -> None:
        settings = self.s.settings
        done = self.s.asg.complete(action, "ABANDON", self.s.clock.now() + settings.deadline_margin_seconds)
        self.s.count("MemberStartTimeouts")
        self.s.count("AbandonedActions")
        self.s.log.error("launch abandoned: member did not start", extra={"instance": action.instance_id, "why": why})
        if done:
            p.report.completed.append((action.instance_id, "ABANDON"))
        self.issuer.forget(action.instance_id)
        p.outcome(action.instance_id, Status.ABANDONED, why)

    def complete_passing(self, events: Sequence[LifecycleEvent], report: Report, deadline: float) -> None:
        """Warm-pool moves that change no membership (into the pool, out of it to termination): completed at once."""
        for event in events:
            if not (event.group and event.hook_name and event.instance_id):
                report.outcomes.append(
                    self.s.reject(
                        Outcome(event, Status.REJECTED, "a warm-pool action without group, hook or instance", ok=False)
                    )
                )
                continue
            done = self.s.asg.complete(event_action(event), "CONTINUE", deadline)
            if done:
                report.completed.append((event.instance_id, "CONTINUE"))
            self.s.log.info("warm-pool action completed", extra={"instance": event.instance_id, "why": event.reason})
            report.outcomes.append(Outcome(event, Status.COMPLETED if done else Status.ALREADY_DONE, event.reason))

    @staticmethod
    def not_covered(p: Pass) -> None:
        for event in p.events.values():
            p.report.outcomes.append(
                Outcome(event, Status.ALREADY_DONE, "not covered by the record; nothing to complete")
            )
        p.events.clear()

    def hand_off(self, settle: Sequence[LifecycleEvent], why: str, p: Pass) -> None:
        """Out of time: complete actions past their own timeout with their fallback result (``decide.fallback``),
        hand the rest to a retry. A launch abandoned here first loses its etcd member, if any, on its termination
        pass (the member is identified by the tag recorded at ``member add``)."""
        now = self.s.clock.now()
        report = p.report
        queued = set(report.plan.queued) if report.plan is not None else set()
        listed = {m.instance_id for m in report.plan.members} if report.plan is not None else set()
        for event in settle:
            if report.reported(event):
                continue
            if event.token and event.token in self.ended:
                # A duplicate of an action this sandbox already saw end (a pass beside this one completed it): a
                # retry could only find it done. Without this, the age check below (rightly: never from the
                # event's Time) sends every throttled duplicate of a fresh launch back to the queue.
                report.outcomes.append(Outcome(event, Status.ALREADY_DONE, f"its action has ended; {why}"))
                continue
            held = event.instance_id in report.quorum_held
            under_way = (
                self.s.membership is not None
                and event.kind is Kind.JOIN
                and launch_under_way(
                    p.obs.instances.get(event.instance_id or ""),
                    queued=event.instance_id in queued,
                    listed=event.instance_id in listed,
                    now=now,
                    start_timeout=self.s.settings.member_start_timeout_seconds,
                    action_timeout=self.s.settings.action_timeout_seconds,
                )
            )
            inst = p.obs.instances.get(event.instance_id or "")
            member = self.s.membership is not None and event.kind is Kind.LEAVE and may_be_member(inst)
            first_seen = self.first_seen.get((event.instance_id or "", event.transition or ""), now)
            result = fallback(
                event,
                started=action_started(event, inst, first_seen=first_seen, now=now),
                now=now,
                settings=self.s.settings,
                membership=self.s.membership is not None,
                held=held,
                under_way=under_way,
                member=member,
            )
            if result is HandOff.RETRY or (result is HandOff.HOLD and held):
                self.s.log.warning("handing off to a retry", extra={"instance": event.instance_id, "why": why})
                report.outcomes.append(Outcome(event, Status.HELD if held else Status.HANDOFF, why, ok=held))
            elif result is HandOff.HOLD:
                self._hold_leaver(event, why, p)
            else:
                self._fall_back(event, result.value, why, p)

    def hold_leaving_members(self, p: Pass) -> None:
        """A pass that failed (etcd silent, quorum lost, an AWS error) still heartbeats every waiting termination of
        an instance that is or may be a member: nothing proves its removal safe, and left alone its hook would time
        out and let it go (with its data). The next pass — an event's retry, the scheduled reconcile — does the same
        until one proves it."""
        if self.s.membership is None:
            return
        for inst in sorted(p.obs.instances.values(), key=lambda i: i.instance_id):
            leaving = inst.group in p.obs.served and inst.lifecycle_state == "Terminating:Wait"
            if leaving and may_be_member(inst) and inst.instance_id not in p.keeper.actions:
                self.hold([inst.instance_id], TERMINATING, p)

    def _hold_leaver(self, event: LifecycleEvent, why: str, p: Pass) -> None:
        """A leaver past its action timeout whose removal nothing proves safe: held (heartbeated), never completed."""
        self.hold([event.instance_id or ""], TERMINATING, p)
        self.s.count("QuorumHold")
        self.s.log.error(
            "termination held: its member's removal cannot be proven safe",
            extra={"instance": event.instance_id, "why": why},
        )
        p.report.outcomes.append(Outcome(event, Status.HELD, f"removal not proven safe: {why}"))

    def _fall_back(self, event: LifecycleEvent, result: str, why: str, p: Pass) -> None:
        done = self.s.asg.complete(event_action(event), result, p.deadline + self.s.settings.deadline_margin_seconds)
        if result == "ABANDON":
            self.s.count("AbandonedActions")
        self.s.count("FallbackCompletions")
        self.s.log.error(
            "action timed out; falling back",
            extra={"instance": event.instance_id, "result": result, "why": why, "completed": done},
        )
        if done:
            self._ended(event_action(event))
            p.report.completed.append((event.instance_id or "", result))
        p.report.outcomes.append(Outcome(event, Status.FALLBACK, f"{result}: {why}"))
