"""The coordinator with etcd membership on, against the etcd 3.5 model on simulated time.

Each world is the emulated stack (``infra.local.stack.deploy``, EventBridge → function, reserved
concurrency 1), an ``EtcdModel`` the coordinator reaches through its ``Transport``, and a ``SimFleet``
running the bootstrap script's protocol on every instance. Tests assert what etcd says (member list,
started/learner, one cluster ID, quorum), what Route 53 says (the record) and what Auto Scaling says
(lifecycle states, how each action ended). Defects of issue 10 are named in the docstrings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from hook_handler.coordinator import LAG_LOOKS
from hook_handler.etcd import EtcdRefused
from infra.local import LocalAWS
from infra.local.clock import SimClock
from infra.local.etcd_model import EtcdModel
from infra.local.sim_fleet import SimFleet
from infra.local.stack import Stack, deploy

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATE = "autoscaling:EC2_INSTANCE_TERMINATING"


@dataclass
class World:
    aws: LocalAWS
    stack: Stack
    model: EtcdModel
    fleet: SimFleet

    # -- etcd's view (no API call) -------------------------------------------------------------
    def clusters(self) -> dict[int, list[Any]]:
        return {cid: ms for cid, ms in self.model.clusters().items() if any(m.running for m in ms)}

    def members(self) -> list[Any]:
        clusters = self.clusters()
        assert len(clusters) == 1, f"expected one running cluster, etcd has {len(clusters)}: {clusters}"
        (members,) = clusters.values()
        return members

    def member_names(self) -> set[str]:
        return {m.name for m in self.members()}

    # -- the group's and the zone's view ----------------------------------------------------------
    def in_service(self) -> set[str]:
        return {i for i, s in self.stack.instances().items() if s in ("InService", "Standby")}

    def record_ids(self) -> set[str]:
        dns = self.stack.private_dns(set(self.stack.instances()))
        by_target = {t: i for i, t in dns.items()}
        return {by_target.get(t, t) for t in self.stack.targets()}

    def assert_in_step(self) -> None:
        """Member list = record = the group's serving instances; every member started, no learner left."""
        members = self.members()
        assert all(m.started and not m.learner for m in members), members
        assert {m.name for m in members} == self.in_service() == self.record_ids()
        (cid,) = self.clusters()
        assert not self.model.quorum_lost(cid)

    def reconcile(self) -> None:
        self.stack.reconcile()

    def actions(self, transition: str) -> list[Any]:
        return [a for a in self.aws.lifecycle_actions if a.transition == transition]


def make_world(
    aws: LocalAWS, *, settings=None, transport=None, seed: int = 1, timeout: float = 300.0, **fleet_options
) -> World:
    model = EtcdModel(aws.clock, seed=seed, start_seconds=fleet_options.pop("start_seconds", (1.0, 3.0)))
    stack = deploy(
        aws,
        mode="eventbridge",
        timeout=timeout,
        etcd=transport(model) if transport else model.transport(),
        settings={"poll_interval_seconds": "2", **(settings or {})},
    )
    fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain, **fleet_options).start()
    return World(aws, stack, model, fleet)


pytestmark = pytest.mark.local_aws(propagation=(5.0, 15.0))  # the shared ``aws`` fixture (tests/conftest.py)


def grow(world: World, n: int, wait: float = 300.0) -> None:
    world.stack.scale(n)
    world.aws.clock.advance(wait)


def test_a_cluster_is_founded_grown_and_shrunk_with_member_list_record_and_group_in_step(aws):
    world = make_world(aws)
    grow(world, 3)
    world.assert_in_step()
    founders = world.member_names()
    grow(world, 5, 600)
    world.assert_in_step()
    # every joiner was added as a learner and promoted; the founders were never re-added
    adds = [r for r in world.model.history if r.kind == "add"]
    assert len(adds) == 2 and all(r.learner for r in adds)
    assert {r.kind for r in world.model.history} >= {"add", "promote"}
    grow(world, 3, 300)
    world.assert_in_step()
    assert world.member_names() != founders or len(founders) == 3
    launches = world.actions(LAUNCH)
    assert all(a.ended_by in ("complete", "terminated") for a in launches)
    assert all(a.result == "CONTINUE" for a in launches if a.ended_by == "complete")


def test_a_launch_completes_only_once_its_member_is_started_and_healthy(aws):
    """Health-gated completion: InService means a healthy etcd member (a voter)."""
    world = make_world(aws, start_seconds=(20.0, 20.0))
    grow(world, 3)
    world.stack.scale(4)
    joined_at = None
    for _ in range(300):
        aws.clock.advance(1.0)
        members = {m.name: m for m in world.members()}
        done = [a for a in world.actions(LAUNCH)[3:] if a.ended_by == "complete"]
        if done:
            joined_at = done[0].ended_at
            member = members.get(done[0].instance_id)
            assert member is not None and member.started and not member.learner
            break
    assert joined_at is not None
    aws.clock.advance(10.0)  # Pending:Proceed (1-5 s), then InService
    world.assert_in_step()


def test_queued_joiners_are_kept_alive_while_the_earlier_ones_start(aws):
    """Defect 7 of issue 10: joins queue one at a time, but heartbeats covered only the current one:
    3 → 9 with a 40 s etcd start abandoned launches at the 300 s hook timeout.

    Issue 11: with Lambda's throttle backoff (AWS's default: a throttled event is retried 1 s .. 5 min
    later) the queued joiners' own events may come after their heartbeat timeout; the pass that holds
    the queue now works it down itself (three launches timed out ABANDON before)."""
    world = make_world(aws, start_seconds=(60.0, 60.0))
    grow(world, 3, 200)
    grow(world, 9, 1800)
    assert [a.ended_by for a in world.actions(LAUNCH)] == ["complete"] * 9
    long = [a for a in world.actions(LAUNCH)[3:] if a.ended_at - a.started_at > 120]
    assert long and all(a.heartbeats > 0 for a in long)  # the queue was heartbeated, not lucky
    assert not any(a.ended_by == "timeout" for a in aws.lifecycle_actions)
    world.assert_in_step()
    assert len(world.members()) == 9


def test_scale_in_while_a_member_is_down_is_held_until_it_is_back(aws):
    """Defect 8 of issue 10: when etcd refused the remove (another member down) the coordinator retried
    without heartbeats until the hook timed out with CONTINUE: the instance died still a member. Now the
    quorum guard holds the termination alive (heartbeats, QuorumHold) and completes it once quorum allows."""
    world = make_world(aws)
    grow(world, 3)
    ids = sorted(world.in_service())
    down, leaving = ids[0], ids[1]
    world.fleet.restart_delay = 900.0
    world.fleet.crash(down)
    aws.clock.advance(10)
    world.stack.terminate(leaving, decrement=True)
    for _ in range(6):  # 12 minutes: far past the hook's 300 s heartbeat timeout
        aws.clock.advance(110)
        world.reconcile()
        assert world.stack.instances().get(leaving) == "Terminating:Wait"
        assert leaving in world.member_names()
        (cid,) = world.clusters()
        assert not world.model.quorum_lost(cid)
    (action,) = [a for a in world.actions(TERMINATE) if a.instance_id == leaving]
    assert action.active and action.heartbeats > 0
    for _ in range(6):  # the crashed member restarts (systemd, 900 s); a reconcile then lets the termination go
        aws.clock.advance(110)
        world.reconcile()
    aws.clock.advance(60)
    assert action.ended_by == "complete" and action.result == "CONTINUE"
    assert leaving not in world.member_names()
    world.assert_in_step()


def test_a_termination_completes_only_after_a_change_submitted_after_it_began_is_insync(aws):
    """Defect 9 of issue 10: a retried termination trusted the instance's `etcd-srv-change` tag, which
    still named the change that *listed* it at launch (the pass that dropped it failed before tagging),
    and completed up to 139 s before the record without it was INSYNC."""
    world = make_world(aws)
    grow(world, 3)
    aws.propagation = 200.0
    leaving = sorted(world.in_service())[0]
    target = world.stack.private_dns([leaving])[leaving]
    aws.faults.fail_next("CreateTags", 1, code="UnauthorizedOperation")  # the tag after the write fails
    world.stack.terminate(leaving, decrement=True)
    aws.clock.advance(600)
    (action,) = [a for a in world.actions(TERMINATE) if a.instance_id == leaving]
    assert action.ended_by == "complete"
    dropped = next(c for c in aws.route53_changes if target not in str(c.records_after) and c.submitted_at > 0)
    assert action.ended_at >= dropped.insync_at


def test_a_member_that_never_starts_is_removed_and_its_launch_abandoned_and_the_next_join_succeeds(aws):
    world = make_world(aws, settings={"member_start_timeout_seconds": "120"})
    grow(world, 3)
    world.stack.scale(4)
    aws.clock.advance(5.5)  # Pending (up to 5 s), then Pending:Wait
    (broken,) = set(world.stack.instances()) - world.in_service()
    world.fleet.never_start.add(broken)
    aws.clock.advance(900)
    (action,) = [a for a in world.actions(LAUNCH) if a.instance_id == broken]
    assert action.ended_by == "complete" and action.result == "ABANDON"
    assert broken not in world.stack.instances()
    world.assert_in_step()
    assert len(world.members()) == 4  # the replacement joined
    assert all(m.started for m in world.members())  # no added-but-unstarted member left behind


def test_a_replacement_that_reuses_a_dead_instances_ip_is_not_the_dead_member():
    """Defect 5 of issue 10: the replacement matched the dead member by URL, was told `existing`, took
    over the dead member's raft ID and panicked; the dead member was never removed."""
    ips = ["10.0.9.1", "10.0.9.2", "10.0.9.3", "10.0.9.1", "10.0.9.4", "10.0.9.5"]
    with LocalAWS(clock=SimClock(), propagation=(5.0, 15.0), instance_ips=ips) as aws:
        _ip_reuse(aws)


def _ip_reuse(aws: LocalAWS) -> None:
    world = make_world(aws)
    grow(world, 3)
    victim = next(i for i, d in world.stack.private_dns(world.in_service()).items() if d.startswith("ip-10-0-9-1."))
    dead_member = next(m for m in world.members() if m.name == victim)
    aws.kill_instance(victim)
    aws.clock.advance(40)  # the health check notices within 10-30 s; the replacement launches then
    (replacement,) = set(world.stack.instances()) - world.in_service() - {victim}
    assert world.stack.private_dns([replacement])[replacement].startswith("ip-10-0-9-1.")
    world.reconcile()
    aws.clock.advance(400)
    world.assert_in_step()
    assert replacement in world.member_names() and victim not in world.member_names()
    assert dead_member.id not in {m.id for m in world.members()}


def test_a_standby_round_trip_changes_neither_the_member_list_nor_the_record(aws):
    """Defect 6 of issue 10: EnterStandby removed the etcd member; ExitStandby listed it again without a
    `member add`, so record and member list disagreed and the next joiner failed."""
    world = make_world(aws)
    grow(world, 3)
    changes, history = len(aws.route53_changes), len(world.model.history)
    iid = sorted(world.in_service())[0]
    asg = aws.client("autoscaling")
    asg.enter_standby(InstanceIds=[iid], AutoScalingGroupName=world.stack.group, ShouldDecrementDesiredCapacity=True)
    world.reconcile()
    aws.clock.advance(130)
    assert iid in world.member_names() and world.stack.instances()[iid] == "Standby"
    asg.exit_standby(InstanceIds=[iid], AutoScalingGroupName=world.stack.group)
    world.reconcile()
    aws.clock.advance(130)
    assert len(aws.route53_changes) == changes and len(world.model.history) == history
    world.assert_in_step()
    grow(world, 4, 300)  # and the next joiner still gets in
    world.assert_in_step()


@pytest.mark.parametrize(
    ("change", "tagged"),
    [
        ({"target_mode": "a-record"}, 0),
        ({"tag_selector": "Role=etcd"}, 0),
        # one member unexplained while others still give endpoints: the old code `member remove`d it
        ({"tag_selector": "Role=etcd", "max_unexplained_removals": "1"}, 2),
    ],
)
def test_a_setting_mistake_removes_no_etcd_member(aws, change, tagged):
    """Defects 4 and 10 of issue 10: changing `target_mode` made every old-form target an explained
    removal and every one was `member remove`d; `max_unexplained_removals` ≥ 1 also removed healthy
    members from etcd. A setting may change what is added, never who is removed from etcd."""
    world = make_world(aws)
    grow(world, 3)
    if tagged:
        keep = sorted(world.in_service())[:tagged]
        aws.client("ec2").create_tags(Resources=keep, Tags=[{"Key": "Role", "Value": "etcd"}])
    members = {m.id for m in world.members()}
    record = world.stack.targets()
    from hook_handler.app import Runtime
    from hook_handler.settings import load_settings

    wrong = Runtime(
        load_settings({**world.stack.env, **change}),
        world.stack.runtime.coordinator.route53.client and _clients(world),
        aws.clock,
        region=aws.region,
        etcd_transport=world.model.transport(),
    )
    task = aws.clock.spawn(wrong.handle, {"action": "reconcile"}, None)
    aws.clock.advance(120)
    assert task.done
    assert {m.id for m in world.members()} == members
    assert not any(r.kind == "remove" for r in world.model.history)
    assert record <= world.stack.targets()  # the record keeps listing every live member (a new naming may add)


def _clients(world: World) -> Any:
    from hook_handler.app import Clients

    return Clients(
        route53=world.aws.client("route53"), autoscaling=world.aws.client("autoscaling"), ec2=world.aws.client("ec2")
    )


class RefusingAdds:
    """A transport whose `member add` etcd refuses for good (e.g. an auth error)."""

    def __init__(self, model: EtcdModel) -> None:
        self.inner = model.transport()

    def post(self, endpoint: str, path: str, body: Any, timeout: float) -> dict[str, Any]:
        if path == "/v3/cluster/member/add":
            raise EtcdRefused(endpoint, "etcdserver: permission denied", 7)
        return self.inner.post(endpoint, path, body, timeout)

    def get(self, endpoint: str, path: str, timeout: float) -> dict[str, Any]:
        return self.inner.get(endpoint, path, timeout)


def test_a_member_add_that_keeps_failing_falls_back_to_abandon_after_the_action_timeout(aws):
    """Defect 10 of issue 10: `member add` failures skipped the `action_timeout_seconds` fallback (no
    AbandonedActions): the launch waited out its hook instead of being abandoned and replaced."""
    world = make_world(aws, transport=RefusingAdds, settings={"action_timeout_seconds": "60"})
    grow(world, 3)
    world.stack.scale(4)
    aws.clock.advance(400)
    joiner_actions = world.actions(LAUNCH)[3:]
    assert joiner_actions and joiner_actions[0].ended_by == "complete" and joiner_actions[0].result == "ABANDON"
    assert len(world.members()) == 3 and all(m.started for m in world.members())


class Counting:
    """A transport that counts etcd requests by path."""

    def __init__(self, model: EtcdModel) -> None:
        from collections import Counter

        self.inner = model.transport()
        self.counts: Counter[str] = Counter()

    def post(self, endpoint: str, path: str, body: Any, timeout: float) -> dict[str, Any]:
        self.counts[path] += 1
        return self.inner.post(endpoint, path, body, timeout)

    def get(self, endpoint: str, path: str, timeout: float) -> dict[str, Any]:
        self.counts[path] += 1
        return self.inner.get(endpoint, path, timeout)


def test_one_join_into_a_running_cluster_costs_the_calls_the_readme_lists(aws):
    """README, "Calls per lifecycle event": the AWS calls of one join into a running cluster of three."""
    transports: list[Counting] = []

    def counting(model: EtcdModel) -> Counting:
        transports.append(Counting(model))
        return transports[-1]

    world = make_world(aws, transport=counting)
    grow(world, 3)
    mark = len(aws.calls)
    transports[0].counts.clear()
    grow(world, 4)
    calls: dict[str, int] = {}
    for call in aws.calls[mark:]:
        if call.operation != "SetDesiredCapacity":
            calls[call.operation] = calls.get(call.operation, 0) + 1
    world.assert_in_step()
    polls = calls.pop("GetChange")
    # Describes are eventually consistent (issue 11): while they answer a view from before the event, the
    # pass looks again (LAG_LOOKS, 2 s apart); each look is one DescribeAutoScalingGroups + DescribeInstances.
    looks = calls.pop("DescribeAutoScalingGroups")
    assert 1 <= looks <= 1 + LAG_LOOKS and calls.pop("DescribeInstances") == looks
    print("describe looks for one join:", looks)
    assert calls == {
        "ListResourceRecordSets": 1,
        "ChangeResourceRecordSets": 1,
        "CreateTags": 4,
        "CompleteLifecycleAction": 1,
    }
    assert 1 <= polls <= 16  # one per poll_interval_seconds (2 s here) of a 5-15 s propagation
    etcd = transports[0].counts
    assert etcd["/v3/cluster/member/add"] == 1 and etcd["/v3/cluster/member/promote"] >= 1
    print("etcd requests for one join:", dict(etcd))


class Recording(Counting):
    """A counting transport that also keeps the order of requests with their bodies."""

    def __init__(self, model: EtcdModel) -> None:
        super().__init__(model)
        self.requests: list[tuple[str, str, Any]] = []

    def post(self, endpoint: str, path: str, body: Any, timeout: float) -> dict[str, Any]:
        self.requests.append((endpoint, path, dict(body)))
        return super().post(endpoint, path, body, timeout)


def test_leadership_is_handed_to_a_healthy_voter_before_the_leader_is_removed(aws):
    """README, the quorum guard: the leader hands leadership to the healthiest caught-up voter first
    (MoveLeader, sent to the leader itself), so the cluster is never left without a leader by the removal."""
    transports: list[Recording] = []

    def recording(model: EtcdModel) -> Recording:
        transports.append(Recording(model))
        return transports[-1]

    world = make_world(aws, transport=recording)
    grow(world, 3)
    (leader,) = [m for m in world.members() if m.leader]
    mark = len(transports[0].requests)
    world.stack.terminate(leader.name, decrement=True)
    aws.clock.advance(300)
    requests = transports[0].requests[mark:]
    paths = [p for _, p, _ in requests]
    moved = paths.index("/v3/maintenance/transfer-leadership")
    removed = next(
        i for i, (_, p, b) in enumerate(requests) if p == "/v3/cluster/member/remove" and b["ID"] == leader.id
    )
    assert moved < removed
    endpoint, _, body = requests[moved]
    assert endpoint in leader.client_urls and body["targetID"] != leader.id
    world.assert_in_step()
    assert leader.name not in world.member_names()
    (new_leader,) = [m for m in world.members() if m.leader]
    assert new_leader.id == body["targetID"]


def test_a_late_duplicate_serves_the_launches_whose_events_were_lost(aws):
    """Issue 11: a pass whose own event was already settled (a duplicate or a late delivery) returned at
    once, even while other launches waited on events that Lambda's throttle backoff (up to 5 minutes) or
    EventBridge's best-effort delivery would bring too late or never: they timed out (ABANDON). Now such
    a pass reconciles: it keeps them alive and brings them in."""
    world = make_world(aws)
    grow(world, 3)
    founder_event = next(
        n.payload
        for n in aws.notifications
        if n.channel == "eventbridge" and n.payload.get("detail", {}).get("LifecycleTransition") == LAUNCH
    )
    aws.delivery_options(loss_probability=1.0)  # every lifecycle event from now on is lost
    world.stack.scale(5)
    aws.clock.advance(30)
    joiners = [a for a in world.actions(LAUNCH)[3:]]
    assert len(joiners) == 2 and all(a.active for a in joiners) and len(aws.lost_events) == 2
    aws._delivery.invoke_async(world.stack.function_arn, founder_event, "eventbridge")  # the late duplicate
    aws.clock.advance(400)  # past the hook's 300 s heartbeat timeout
    assert [(a.ended_by, a.result) for a in joiners] == [("complete", "CONTINUE")] * 2
    aws.clock.advance(10)  # Pending:Proceed, then InService
    world.assert_in_step()
    assert len(world.members()) == 5


def test_a_launch_while_the_founder_is_still_starting_joins_its_cluster_not_a_new_one(aws):
    """Soak finding (issue 10, 2026-12-02; a split brain): two etcd clusters among the served instances. A pass
    that got no answer from etcd while nothing was in service took the cluster for not founded yet — though an
    instance had been told `new` and was still starting (its pass ended at the Lambda deadline) — and founded
    another. No answer while a live instance carries the go signal is now an error (a retry looks again),
    never a founding."""
    # The founder's etcd takes 400 s to start: longer than a pass (Lambda timeout 300 s), within the start timeout.
    world = make_world(aws, start_seconds=(400.0, 400.0), settings={"member_start_timeout_seconds": "900"})
    world.stack.scale(1)
    aws.clock.advance(320)  # the founder was told `new`; its pass has ended (a retry will follow)
    (founder,) = world.stack.instances()
    assert world.stack.tags(founder)["etcd-cluster-state"] == "new" and world.clusters() == {}
    world.stack.scale(2)
    aws.clock.advance(1200)
    (second,) = set(world.stack.instances()) - {founder}
    assert world.stack.tags(second)["etcd-cluster-state"] == "existing"
    world.assert_in_step()  # one cluster: both members, started, voters
    assert world.member_names() == {founder, second}


def test_a_founding_whose_record_outlasts_the_action_timeout_is_not_abandoned_but_completes():
    """Soak finding (issue 10, 2026-12-02): a 15 s Lambda, a 45 s action timeout and 60 s propagation. Each pass
    handed off before INSYNC and the next one, past the action timeout, ABANDONed the founders; their
    replacements waited the same, so the group churned for good (never quiescent). A launch on its way in
    (listed and waiting for INSYNC, queued, or told to start within the member start timeout) is not given up by
    the action timeout: the founders complete once started, first time."""
    with LocalAWS(clock=SimClock(), propagation=60.0) as aws:
        world = make_world(aws, timeout=15.0, settings={"action_timeout_seconds": "45"})
        grow(world, 3, 900)
        launches = world.actions(LAUNCH)
        assert [(a.ended_by, a.result) for a in launches] == [("complete", "CONTINUE")] * 3
        world.assert_in_step()
        assert len(world.member_names()) == 3


@pytest.mark.parametrize("founding", [False, True], ids=["running", "founding"])
def test_a_scale_to_zero_settles_every_termination_though_etcd_keeps_its_last_member(founding):
    """Soak finding (issue 10, 2026-12-02): scaled to 0, etcd refuses to remove the cluster's last member ("re-
    configuration failed due to not enough started members": it always does). The pass retried until its
    deadline without heartbeating the terminations it worked on; they expired, and no later pass settled them.
    Now every instance leaving is a dismantle: the last voter is not removed, the record is deleted, and every
    termination completes CONTINUE once that is INSYNC. (``running`` fails on the code before the fix; ``founding``
    — scaled in while the founders' etcd still starts, where the soak saw terminations expire in some runs —
    passed before too and guards the dismantle path when etcd does not answer yet.)"""
    with LocalAWS(clock=SimClock(), propagation=(20.0, 60.0)) as aws:
        world = make_world(aws, start_seconds=(20.0, 20.0))
        world.stack.scale(4)
        if founding:  # scaled in right after the go signal: the founders' etcd is still starting
            for _ in range(600):
                aws.clock.advance(1.0)
                tags = [world.stack.tags(i) for i in world.stack.instances()]
                if len(tags) == 4 and all("etcd-cluster-state" in t for t in tags):
                    break
            else:
                raise AssertionError("the founders never got their go signal")
        else:
            aws.clock.advance(600)
            world.assert_in_step()
        world.stack.scale(0)
        aws.clock.advance(1200)
        leaves = world.actions(TERMINATE)
        assert len(leaves) == 4
        assert [(a.ended_by, a.result) for a in leaves] == [("complete", "CONTINUE")] * 4
        assert not world.stack.targets() and not world.stack.instances()
        last = leaves[-1].ended_at
        # Completed after the deletion INSYNC: every change to the SRV record (the cluster identity's TXT set, which
        # proves nothing to a member, is written on its own after the record's last change).
        record = [c for c in aws.route53_changes if any(x["ResourceRecordSet"]["Type"] == "SRV" for x in c.changes)]
        assert record and all(aws.insync_at(c.id) <= last for c in record)


def test_a_pass_waiting_on_a_cluster_without_quorum_keeps_the_actions_that_begin_meanwhile_alive(aws):
    """Soak finding (issue 10, bd64179): two of four members crashed for ten minutes (quorum lost), then the
    group was scaled to 0 and back to 4. The first termination's pass waited out its deadline on a removal no
    member could answer; the terminations and launches that began after it looked were never heartbeated, and
    with reserved concurrency 1 their own events came after the hooks' 300 s timeout: the old members were
    terminated (CONTINUE) with the cluster's data, and the launches were abandoned in churn. Now a waiting pass
    looks again at each heartbeat round and holds every action that began waiting meanwhile: nothing expires,
    and once the crashed members are back the old cluster hands over to the new instances, whole."""
    world = make_world(aws)
    grow(world, 4)
    world.assert_in_step()
    old = sorted(world.in_service())
    for iid in old[:2]:
        world.fleet.crash(iid, 600.0)
    (cid,) = {c for c, ms in world.model.clusters().items() if any(m.running for m in ms)}
    assert world.model.quorum_lost(cid)
    world.stack.scale(0)
    world.stack.scale(4)
    aws.clock.advance(660)  # past the hooks' 300 s timeout twice over; the crashed members restart at 600 s
    assert [a.instance_id for a in aws.lifecycle_actions if a.ended_by == "timeout"] == []
    aws.clock.advance(1800)
    assert [a.instance_id for a in aws.lifecycle_actions if a.ended_by == "timeout"] == []
    leaves = world.actions(TERMINATE)
    assert sorted(a.instance_id for a in leaves) == old
    assert all(a.ended_by == "complete" and a.result == "CONTINUE" for a in leaves)
    assert not set(old) & world.member_names()
    assert len(world.in_service()) == 4
    world.assert_in_step()
    (now,) = world.clusters()
    assert now == cid  # the same cluster, handed over member by member: its data went with it


def test_a_stale_describe_after_a_record_conflict_does_not_drop_the_pass_s_own_launch(aws, monkeypatch):
    """Regression (make test, a thousand schedules): the founder's record write landed but its answer was
    lost; the retry met "already exists", and the describe after it answered from before the launch hook
    (``Pending``). The re-planned pass no longer counted the joiner, wrote nothing, and ended without
    completing or heartbeating its action: it waited for the hook timeout. A state the instance was already
    seen past does not come back."""
    from hook_handler.lifecycle import AutoScaling
    from hook_handler.route53 import Conflict, Route53

    conflicts: list[int] = []
    stale: list[int] = []
    apply, observe = Route53.apply, AutoScaling.observe

    def counting_apply(self, *args, **kwargs):
        try:
            return apply(self, *args, **kwargs)
        except Conflict:
            conflicts.append(1)
            raise

    def stale_after_conflict(self, ids, deadline):
        obs = observe(self, ids, deadline)
        if conflicts and not stale:  # the first look after the conflict answers from before the hook
            stale.append(1)
            back = {
                i: replace(x, lifecycle_state="Pending") if x.lifecycle_state == "Pending:Wait" else x
                for i, x in obs.instances.items()
            }
            obs = replace(obs, instances=back)
        return obs

    monkeypatch.setattr(Route53, "apply", counting_apply)
    monkeypatch.setattr(AutoScaling, "observe", stale_after_conflict)
    world = make_world(aws)
    aws.faults.lose_response("ChangeResourceRecordSets", code="InternalError")
    grow(world, 1, 120)
    assert conflicts and stale  # the path under test ran
    (launch,) = world.actions(LAUNCH)
    assert (launch.ended_by, launch.result) == ("complete", "CONTINUE")
    assert launch.ended_at - launch.started_at < 120  # by the pass, not by the 300 s hook timeout
    world.assert_in_step()


def test_a_coordinator_given_the_wrong_ca_fails_clearly_and_changes_nothing(aws):
    """Issue 12: a coordinator whose CA does not match the members' certificates (every TLS handshake fails
    on CERTIFICATE_VERIFY_FAILED) stops each pass before it changes anything — no record change, no member
    change, no completion — and the invocation's error names etcd_tls_secret."""
    from hook_handler.etcd import EtcdTlsError

    class WrongCa:
        def __init__(self, inner) -> None:
            self.inner, self.broken = inner, False

        def _check(self, endpoint: str) -> None:
            if self.broken:
                raise EtcdTlsError(endpoint, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")

        def post(self, endpoint, path, body, timeout):
            self._check(endpoint)
            return self.inner.post(endpoint, path, body, timeout)

        def get(self, endpoint, path, timeout):
            self._check(endpoint)
            return self.inner.get(endpoint, path, timeout)

    transports: list[WrongCa] = []

    def wrong_ca(model: EtcdModel) -> WrongCa:
        transports.append(WrongCa(model.transport()))
        return transports[-1]

    world = make_world(aws, transport=wrong_ca)
    grow(world, 3)
    world.assert_in_step()
    members, targets, history = world.member_names(), world.stack.targets(), len(world.model.history)
    mark, invocations = len(aws.calls), len(aws.invocations)
    transports[0].broken = True
    world.stack.scale(4)
    aws.clock.advance(240)  # within the launch hook's 300 s heartbeat timeout
    writes = [
        c.operation for c in aws.calls[mark:] if c.operation in ("ChangeResourceRecordSets", "CompleteLifecycleAction")
    ]
    assert writes == []
    assert world.stack.targets() == targets and world.member_names() == members
    assert len(world.model.history) == history  # no member add, remove or promote
    failed = [i for i in aws.invocations[invocations:] if i.outcome == "error"]
    assert failed and all("etcd_tls_secret" in i.error and "TLS handshake failed" in i.error for i in failed)
    launch = world.actions(LAUNCH)[-1]
    assert launch.active  # left to the hook (its timeout ABANDONs it), never completed on a guess


def test_client_urls_come_from_the_client_record_first_by_name(aws):
    """README, ``etcd_client_srv``: the coordinator dials the targets of the client SRV record (here the one
    it keeps itself through ``extra_srv_records``) by name, before the members' IPs, and reads that record at
    most once a minute."""

    class Resolving(Recording):
        """The VPC's resolver: a private DNS name dialled reaches that instance's IP."""

        def post(self, endpoint: str, path: str, body: Any, timeout: float) -> dict[str, Any]:
            self.requests.append((endpoint, path, dict(body)))
            host = endpoint.split("://")[1].rsplit(":", 1)[0]
            if not host[0].isdigit():
                names = {v.rstrip("."): k for k, v in world.stack.private_dns(set(world.stack.instances())).items()}
                ip = next(
                    i["PrivateIpAddress"]
                    for r in aws.client("ec2").describe_instances(InstanceIds=[names[host]])["Reservations"]
                    for i in r["Instances"]
                )
                endpoint = endpoint.replace(host, ip)
            return Counting.post(self, endpoint, path, body, timeout)

    transports: list[Resolving] = []

    def resolving(model: EtcdModel) -> Resolving:
        transports.append(Resolving(model))
        return transports[-1]

    settings = {"extra_srv_records": "_etcd-client._tcp:2379", "etcd_client_srv": "_etcd-client._tcp"}
    world = make_world(aws, transport=resolving, settings=settings)
    grow(world, 3)
    world.assert_in_step()
    mark = len(aws.calls)
    grow(world, 4)
    world.assert_in_step()
    by_name = [e for e, _, _ in transports[0].requests if ".ec2.internal:2379" in e]
    assert by_name and all(e.startswith("http://ip-") for e in by_name)
    # first: every member-list request once the record lists the members went to a name from it
    lists = [e for e, path, _ in transports[0].requests if path == "/v3/cluster/member/list"]
    assert lists[-1] in by_name and ".ec2.internal:2379" in lists[-1]
    reads = [c for c in aws.calls[mark:] if c.operation == "ListResourceRecordSets"
             and c.params.get("StartRecordName", "").startswith("_etcd-client._tcp")]  # fmt: skip
    span = aws.clock.now() - aws.calls[mark].time
    assert 1 <= len(reads) <= span / 60 + 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_queue_head_another_pass_completed_does_not_send_the_next_joiner_to_a_retry(seed):
    """Found by the TLS demo (AWS's world): the pass of the second joiner's event took the first joiner — completed
    moments before by the previous pass, still ``Pending:Wait`` in its stale describe — for the queue head. Its
    completion found no active action, the pass counted no progress and handed the second joiner off to Lambda's
    retry (60 s and more) while nothing else waited. A head found already finished is progress: the pass serves the
    next joiner itself."""
    with LocalAWS(clock=SimClock(), propagation=(1.0, 1.0), describe_staleness=(2.0, 2.0), seed=seed) as aws:
        world = make_world(aws, seed=seed, start_seconds=(1.0, 1.0))
        grow(world, 3)
        world.assert_in_step()
        start = aws.clock.now()
        world.stack.scale(5)
        aws.clock.advance(55.0)  # less than Lambda's first retry (60 s): no joiner may wait for one
        joins = [a for a in world.actions(LAUNCH) if a.started_at >= start]
        assert len(joins) == 2 and all(a.ended_by == "complete" for a in joins), [
            (a.instance_id, a.ended_by, a.started_at - start) for a in joins
        ]
        handoffs = [i for i in aws.invocations if i.outcome == "error" and "not settled yet" in (i.error or "")]
        assert not handoffs, handoffs


def test_the_last_voter_of_a_cluster_the_group_still_wants_is_kept_and_its_termination_held(aws, monkeypatch):
    """Soak finding (2ab9e87, chunk seed 20033, issue 10): both members of a cluster left while the describes
    did not show their replacements yet (stale), so "add before remove" did not apply. The first fix kept the
    last voter but marked it as a dismantle's last member: the record was deleted and its termination completed
    — the cluster ended with its data while the group still wanted two instances, and the replacements founded
    a new, empty one. Now the last voter is held like a quorum hold: its termination waits (heartbeated), the
    record keeps it, and once the replacements show they join the same cluster before it goes."""
    from hook_handler.lifecycle import AutoScaling

    world = make_world(aws)
    grow(world, 2)
    world.assert_in_step()
    (cluster,) = world.clusters()
    old = set(world.in_service())
    hidden = [True]
    observe = AutoScaling.observe

    def without_replacements(self, ids, deadline):
        obs = observe(self, ids, deadline)
        if hidden[0]:  # stale describes: the replacements launched after the look's view
            obs = replace(obs, instances={i: x for i, x in obs.instances.items() if i in old})
        return obs

    monkeypatch.setattr(AutoScaling, "observe", without_replacements)
    for iid in sorted(old):
        world.stack.terminate(iid, decrement=False)
    aws.clock.advance(90)
    # the cluster the group still wants keeps a voter, the record lists it, and its termination is not done
    members = world.members()
    assert len(members) == 1 and members[0].name in old and members[0].started
    assert world.stack.targets() == set(world.stack.private_dns({members[0].name}).values())
    leaves = {a.instance_id: a for a in world.actions(TERMINATE)}
    assert leaves[members[0].name].ended_by is None
    hidden[0] = False
    aws.clock.advance(600)
    world.reconcile()
    aws.clock.advance(300)
    world.assert_in_step()
    assert set(world.clusters()) == {cluster}  # the same cluster (its data), not a new one
    assert not old & world.in_service()
    assert all(a.result == "CONTINUE" and a.ended_by == "complete" for a in world.actions(TERMINATE))


def test_a_target_nobody_owns_is_dropped_by_a_later_look_not_the_first(aws):
    """The other half of the chunk-20033 soak finding: a target no instance is found for and no etcd member
    advertises may be a joiner another pass has just listed (describes lag behind the record), so the look that
    first finds it so keeps it; a look at least ``ORPHAN_GRACE_SECONDS`` later drops it (the scheduled reconcile
    runs every 2 minutes): a stale name still goes, a joiner is never dropped by a describe's lag."""
    world = make_world(aws)
    grow(world, 2)
    world.assert_in_step()
    ttl, values = world.stack.record()
    stray = "ip-10-1-9-9.ec2.internal."
    world.stack.client("route53").change_resource_record_sets(
        HostedZoneId=world.stack.zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
            "Name": world.stack.srv_name, "Type": "SRV", "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in (*values, f"0 0 2380 {stray}")]}}]},
    )  # fmt: skip
    aws.clock.advance(30)
    world.reconcile()
    aws.clock.advance(10)
    assert stray in world.stack.targets()  # the first look keeps it
    aws.clock.advance(80)
    world.reconcile()
    aws.clock.advance(60)
    assert stray not in world.stack.targets()  # a look past the grace drops it
    world.assert_in_step()


def test_an_action_a_pass_takes_over_is_heartbeated_at_once():
    """Found by `make test` (3 → 9, 60 s etcd starts): a pass that worked the join queue ended at its deadline
    with a final heartbeat; the next pass, 247 s later, "held" the last queued launch but sent its first heartbeat
    only a poll interval later — the hook had expired 53 s after that pass took it over (ABANDON, churn). A pass
    cannot know when an action it takes over was last heartbeated: holding it beats it at once (once)."""
    from hook_handler.heartbeat import Keeper
    from hook_handler.lifecycle import Action

    class Asg:
        def __init__(self) -> None:
            self.beats: list[tuple[str, float]] = []

        def heartbeat(self, action, deadline) -> bool:
            self.beats.append((action.instance_id, clock.now()))
            return action.instance_id != "i-gone"

    clock = SimClock()
    asg = Asg()
    keeper = Keeper(asg, clock, interval=60.0, deadline=clock.now() + 300)  # type: ignore[arg-type]
    keeper.hold(Action("g", "launch", "i-1", LAUNCH))
    assert asg.beats == [("i-1", clock.now())]  # at once, not a poll interval later
    keeper.hold(Action("g", "launch", "i-1", LAUNCH))
    assert len(asg.beats) == 1  # once: later beats follow the interval
    keeper.hold(Action("g", "launch", "i-gone", LAUNCH))
    assert "i-gone" not in keeper.actions  # an action that already ended is not held
