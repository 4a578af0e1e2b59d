"""The coordinator's pure decisions (``hook_handler.decide``, ``phases``, ``heartbeat.interval_problem``), on plain
values: no AWS, no etcd, no clock. Hypothesis walks the spaces too large to list."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hook_handler.decide import (
    PENDING,
    HandOff,
    ProofKind,
    as_completed,
    fallback,
    judge,
    launch_under_way,
    may_be_member,
    nothing_to_do,
    proof,
    refusal,
    write_marks,
)
from hook_handler.etcd import Member
from hook_handler.events import Kind, LifecycleEvent
from hook_handler.heartbeat import interval_problem
from hook_handler.lifecycle import CHANGE_TAG, LAUNCHING, TARGET_TAG, TERMINATING
from hook_handler.members import LEAVE_CHANGE_TAG, STATE_TAG, Group, Instance
from hook_handler.membership import PHASE_TAG, SINCE_TAG, EtcdView
from hook_handler.phases import FoundAction, JoinAction, found_step, join_step
from hook_handler.plan import Observation, Plan, RecordSet
from hook_handler.report import Status
from hook_handler.settings import load_settings

SETTINGS = load_settings(
    {"r53_zone_id": "Z1", "domain_name": "example.com", "asg_names": "etcd", "action_timeout_seconds": "300"}
)
STATES = [
    None,
    "Pending",
    "Pending:Wait",
    "Pending:Proceed",
    "InService",
    "Standby",
    "Terminating",
    "Terminating:Wait",
    "Terminating:Proceed",
    "Terminated",
    "Warmed:Pending:Wait",
]
EC2_STATES = [None, "pending", "running", "stopped", "shutting-down", "terminated"]


def event(kind: Kind, iid: str = "i-00000001", group: str | None = "etcd", **kw: object) -> LifecycleEvent:
    transition = LAUNCHING if kind is Kind.JOIN else TERMINATING
    return LifecycleEvent(kind, "eventbridge", group, iid, "hook", "tok", transition, **kw)  # type: ignore[arg-type]


def observe(*instances: Instance, desired: int = 3) -> Observation:
    return Observation({"etcd": Group("etcd", desired)}, {i.instance_id: i for i in instances}, now=1000.0)


# -- judging events -----------------------------------------------------------------------------------------------
@given(
    kind=st.sampled_from([Kind.JOIN, Kind.LEAVE]),
    state=st.sampled_from(STATES),
    ec2=st.sampled_from(EC2_STATES),
    group=st.sampled_from([None, "etcd"]),  # ``observe`` places an instance only in a served group, or none
    event_group=st.sampled_from([None, "etcd", "other"]),
    final=st.booleans(),
)
def test_every_action_event_gets_exactly_one_verdict(kind, state, ec2, group, event_group, final):
    inst = Instance("i-00000001", group=group, lifecycle_state=state if group else None, ec2_state=ec2)
    obs = observe(inst)
    e = event(kind, group=event_group)
    j = judge([e], obs, final=final)
    assert len(j.pending) + len(j.lagging) + len(j.outcomes) == 1
    if final:
        assert not j.lagging  # the last look settles or hands off every event
    if j.pending:  # only an action the APIs show waiting for us is worked on
        assert (state == "Pending:Wait" and kind is Kind.JOIN) or (
            kind is Kind.LEAVE and state in ("Terminating:Wait", "Warmed:Pending:Wait")
        )
        assert group == "etcd" and event_group in (None, "etcd")
    for o in j.outcomes:
        assert o.ok == (o.status not in (Status.REJECTED, Status.UNCONFIRMED, Status.HANDOFF))


def test_a_foreign_group_is_refused_and_a_group_mismatch_is_rejected():
    assert "not served" in refusal(event(Kind.JOIN, group="other"), SETTINGS, account=None, region=None)
    assert refusal(event(Kind.JOIN, account="111"), SETTINGS, account="222", region=None).startswith("account 111")
    obs = observe(Instance("i-00000001", group="etcd", lifecycle_state="Pending:Wait", ec2_state="running"))
    assert judge([event(Kind.JOIN)], obs).pending
    obs_other = Observation(
        {"etcd": Group("etcd", 3), "b": Group("b", 1)},
        {"i-00000001": Instance("i-00000001", group="b", lifecycle_state="Pending:Wait", ec2_state="running")},
        now=0.0,
    )
    (o,) = judge([event(Kind.JOIN)], obs_other).outcomes
    assert o.status is Status.REJECTED and "belongs to 'b'" in o.detail


def test_a_duplicate_ends_the_pass_unless_another_action_waits():
    me = Instance("i-00000001", group="etcd", lifecycle_state="InService", ec2_state="running")
    other = Instance("i-00000002", group="etcd", lifecycle_state="Pending:Wait", ec2_state="running")
    e = event(Kind.JOIN)
    late = judge([e], observe(me)).outcomes
    assert late[0].status is Status.ALREADY_DONE
    assert nothing_to_do([e], [], late, observe(me))
    assert not nothing_to_do([e], [], late, observe(me, other))  # it reconciles: the other may be starved


# -- fallback -------------------------------------------------------------------------------------------------------
@given(
    kind=st.sampled_from([Kind.JOIN, Kind.LEAVE]),
    age=st.floats(0, 10_000),
    held=st.booleans(),
    under_way=st.booleans(),
    membership=st.booleans(),
)
def test_a_fallback_only_ends_an_action_past_its_timeout_that_is_neither_held_nor_under_way(
    kind, age, held, under_way, membership
):
    result = fallback(
        event(kind), started=0.0, now=age, settings=SETTINGS, membership=membership, held=held, under_way=under_way
    )
    if held:
        assert result is HandOff.HOLD
    elif under_way or age < SETTINGS.action_timeout_seconds:
        assert result is HandOff.RETRY
    elif kind is Kind.LEAVE:
        assert result is HandOff.CONTINUE
    else:
        assert result == ("ABANDON" if membership else SETTINGS.launch_failure_result)


@given(age=st.floats(0, 10_000), membership=st.booleans())
def test_a_termination_that_may_take_a_member_never_falls_back_to_continue(age, membership):
    result = fallback(
        event(Kind.LEAVE),
        started=0.0,
        now=age,
        settings=SETTINGS,
        membership=membership,
        held=False,
        under_way=False,
        member=True,
    )
    assert result is not HandOff.CONTINUE or not membership
    assert result in (HandOff.RETRY, HandOff.HOLD) or not membership


def test_a_tag_written_before_each_membership_step_makes_an_instance_a_possible_member():
    assert not may_be_member(Instance("i-1")) and not may_be_member(None)
    for tag in (STATE_TAG, PHASE_TAG, "etcd-member-id", TARGET_TAG):
        assert may_be_member(Instance("i-1", tags={tag: "x"}))


def test_a_launch_told_to_start_is_under_way_until_its_start_timeout():
    go = Instance("i-1", ec2_state="running", tags={STATE_TAG: "existing", SINCE_TAG: "1000"})
    assert launch_under_way(go, queued=False, listed=False, now=1100, start_timeout=300, action_timeout=60)
    assert not launch_under_way(go, queued=False, listed=False, now=1301, start_timeout=300, action_timeout=60)
    adding = Instance("i-1", ec2_state="running", tags={PHASE_TAG: "adding", SINCE_TAG: "1000"})
    assert launch_under_way(adding, queued=False, listed=False, now=1059, start_timeout=300, action_timeout=60)
    assert not launch_under_way(adding, queued=False, listed=False, now=1061, start_timeout=300, action_timeout=60)
    assert launch_under_way(None, queued=True, listed=False, now=0, start_timeout=1, action_timeout=1)


# -- proofs -----------------------------------------------------------------------------------------------------------
TAG_VALUES = st.sampled_from([None, PENDING, "/change/A", "/change/B"])


@given(launch_tags=st.lists(TAG_VALUES, max_size=3), leave_tags=st.lists(TAG_VALUES, max_size=3), peer=st.booleans())
def test_a_change_proves_an_action_only_when_every_action_names_one(launch_tags, leave_tags, peer):
    launches = [Instance(f"i-{n}", tags={CHANGE_TAG: t} if t else {}) for n, t in enumerate(launch_tags)]
    leaves = [Instance(f"i-l{n}", tags={LEAVE_CHANGE_TAG: t} if t else {}) for n, t in enumerate(leave_tags)]
    record = RecordSet.of("_etcd-server._tcp.example.com", "SRV", 60, ["0 0 2380 a.example.com."]) if peer else None
    found = proof(None, launches, leaves, record)
    tags = set(launch_tags) | set(leave_tags)
    if tags and not tags & {None, PENDING}:
        assert found.kind is ProofKind.FOLLOW and found.changes == tags
    elif peer:
        assert found.kind is ProofKind.REWRITE
    else:  # the record is gone: a launch is never completed on an absence; leaves wait on a marker change
        assert found.kind is (ProofKind.UNPROVEN if launches else ProofKind.MARKER)
    assert proof("/change/OWN", launches, leaves, record).changes == {"/change/OWN"}


def test_marks_before_a_change_name_every_dropped_leaver_and_every_listed_target():
    leaver = Instance("i-1", group="etcd", lifecycle_state="Terminating:Wait", ec2_state="running")
    marked = Instance("i-2", group="etcd", lifecycle_state="Terminating", tags={LEAVE_CHANGE_TAG: PENDING})
    joiner = Instance(
        "i-3", group="etcd", lifecycle_state="Pending:Wait", ec2_state="running", private_dns="ip-10-0-0-3.ec2.internal"
    )
    plan = Plan((), {}, {}, (), (), added=("i-3",), removed=(), dropped=("i-1", "i-2"))
    marks = write_marks(plan, observe(leaver, marked, joiner), SETTINGS)
    assert marks == {"i-1": {LEAVE_CHANGE_TAG: PENDING}, "i-3": {TARGET_TAG: "ip-10-0-0-3.ec2.internal."}}


def test_completed_actions_are_seen_as_the_group_has_them_now():
    waiting = Instance("i-1", group="etcd", lifecycle_state="Pending:Wait")
    leaving = Instance("i-2", group="etcd", lifecycle_state="Terminating:Wait")
    obs = as_completed(observe(waiting, leaving), [("i-1", "CONTINUE"), ("i-2", "ABANDON")])
    assert obs.instances["i-1"].lifecycle_state == "Pending:Proceed"
    assert obs.instances["i-2"].lifecycle_state == "Terminating:Proceed"


# -- phases -----------------------------------------------------------------------------------------------------------
MEMBER = Member("7", "i-1", ("http://a:2380",), ("http://a:2379",))


@given(
    started=st.booleans(),
    learner=st.booleans(),
    healthy=st.booleans(),
    go=st.booleans(),
    tagged=st.booleans(),
    age=st.floats(0, 1000),
)
def test_a_joiner_completes_only_as_a_healthy_started_voter_and_times_out_only_past_its_limit(
    started, learner, healthy, go, tagged, age
):
    member = Member("7", "i-1" if started else "", ("http://a:2380",), ("http://a:2379",) if started else (), learner)
    view = EtcdView((member,), healthy=frozenset({"7"} if healthy else ()))
    tags = {SINCE_TAG: "0", **({"etcd-member-id": "7"} if tagged else {})}
    step = join_step(Instance("i-1", tags=tags), member, view, now=age, start_timeout=300, go_written=go)
    if step.step is JoinAction.COMPLETE:
        assert started and not learner and healthy and tagged and go
    if step.step is JoinAction.TIMEOUT:
        assert age > 300 and not (started and not learner and healthy)
        assert age > 600 or not (started and learner and healthy)  # a learner that answers gets twice as long
    if not tagged:
        assert step.step in (JoinAction.TAG_ID, JoinAction.TIMEOUT)


@given(started=st.booleans(), healthy=st.booleans(), go=st.booleans(), since=st.sampled_from([None, 0.0, 500.0]))
def test_a_founder_completes_only_started_and_healthy_and_is_abandoned_only_past_its_timeout(
    started, healthy, go, since
):
    tags = {**({STATE_TAG: "new"} if go else {}), **({SINCE_TAG: f"{since:.0f}"} if since is not None else {})}
    member = Member("7", "i-1" if started else "0", ("http://a:2380",), ("http://a:2379",) if started else ())
    view = EtcdView((member,), healthy=frozenset({"7"} if healthy else ()))
    step = found_step(Instance("i-1", tags=tags), member, view, now=600.0, start_timeout=300)
    if started and healthy:
        assert step.step is FoundAction.COMPLETE
    elif since == 0.0:
        assert step.step is FoundAction.ABANDON
    elif not go:
        assert step.step is FoundAction.GO
    else:
        assert step.step is FoundAction.WAIT_START


# -- heartbeats -------------------------------------------------------------------------------------------------------
def test_an_interval_that_cannot_beat_the_hooks_timeout_is_named():
    assert interval_problem(60, 300) is None
    assert interval_problem(60, None) is None  # a hook we cannot describe: nothing to judge
    problem = interval_problem(60, 60)
    assert problem is not None and "heartbeat_interval_seconds (60)" in problem and "HeartbeatTimeout (60)" in problem


class _Hooks:
    """What a keeper asks of Auto Scaling: heartbeats (recorded) and the hook's timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout, self.beats, self.described = timeout, [], 0

    def heartbeat(self, action, deadline):
        self.beats.append(action.instance_id)
        return True

    def heartbeat_timeout(self, group, hook, deadline):
        self.described += 1
        return self.timeout


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message, extra=None):
        self.warnings.append(message)


def test_a_keeper_warns_once_per_hook_when_its_interval_cannot_beat_the_hooks_timeout():
    from hook_handler.clock import SystemClock
    from hook_handler.heartbeat import Keeper
    from hook_handler.lifecycle import Action

    hooks, log, warned = _Hooks(timeout=60), _Log(), set()
    for n in range(3):  # three passes of one sandbox, each holding an action of the same hook
        keeper = Keeper(hooks, SystemClock(), 60, deadline=0.0, log=log, warned=warned)
        keeper.hold(Action("etcd", "etcd-launch", f"i-{n}", LAUNCHING))
    assert len(log.warnings) == 1 and "cannot beat the hook's HeartbeatTimeout (60)" in log.warnings[0]
    assert hooks.beats == ["i-0", "i-1", "i-2"] and hooks.described == 1
    quiet, fine = _Log(), _Hooks(timeout=600)
    Keeper(fine, SystemClock(), 60, deadline=0.0, log=quiet).hold(Action("etcd", "etcd-launch", "i-9", LAUNCHING))
    assert quiet.warnings == []
