"""The termination policy's decision on plain values: the request AWS sends, the order, the quorum guard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from hook_handler.etcd import Member
from hook_handler.exceptions import EventError
from hook_handler.members import Instance
from hook_handler.membership import EtcdView, identify, quorum_after
from hook_handler.termination import PolicyRequest, choose, parse_request


def iid(n: int) -> str:
    return f"i-{n:017x}"


def inst(n: int, state: str = "InService") -> Instance:
    return Instance(iid(n), group="etcd", lifecycle_state=state, ec2_state="running", private_ip=f"10.0.0.{n}")


def member(n: int, *, started: bool = True, learner: bool = False) -> Member:
    urls = (f"http://10.0.0.{n}:2379",) if started else ()
    return Member(str(n), iid(n) if started else "", (f"http://10.0.0.{n}:2380",), urls, learner)


def world(n: int, *, down=(), unstarted=(), learners=(), leader: int = 1, lag=None):
    members = tuple(member(k, started=k not in unstarted, learner=k in learners) for k in range(1, n + 1))
    healthy = frozenset(str(k) for k in range(1, n + 1) if k not in down and k not in unstarted)
    index = {str(k): 100 - (lag or {}).get(k, 0) for k in range(1, n + 1) if str(k) in healthy}
    voters = healthy - {str(k) for k in learners}  # a learner never leads
    view = EtcdView(members, healthy, str(leader) if str(leader) in voters else None, index)
    instances = {iid(k): inst(k) for k in range(1, n + 1)}
    return view, instances


def request(suggested, capacity: int, cause: str = "SCALE_IN") -> PolicyRequest:
    return PolicyRequest("etcd", cause, tuple(iid(k) for k in suggested), capacity)


def decide(view, instances, req):
    return choose(req, view, identify(view, instances), instances).instance_ids


PAYLOAD = {
    "AutoScalingGroupARN": "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:d4:autoScalingGroupName/my-asg",
    "AutoScalingGroupName": "my-asg",
    "CapacityToTerminate": [
        {"AvailabilityZone": "us-east-1b", "Capacity": 2, "InstanceMarketOption": "on-demand"},
        {"AvailabilityZone": "us-east-1c", "Capacity": 1, "InstanceMarketOption": "on-demand"},
    ],
    "Instances": [
        {
            "AvailabilityZone": "us-east-1b",
            "InstanceId": "i-0056faf8da3e1f75d",
            "InstanceType": "t2.nano",
            "InstanceMarketOption": "on-demand",
        },
        {
            "AvailabilityZone": "us-east-1c",
            "InstanceId": "i-02e1c69383a3ed501",
            "InstanceType": "t2.nano",
            "InstanceMarketOption": "on-demand",
        },
    ],
    "Cause": "SCALE_IN",
}


def test_the_documented_payload_parses_into_group_cause_suggestions_and_capacity():
    req = parse_request(PAYLOAD)
    assert (req.group, req.cause, req.capacity, req.has_more) == ("my-asg", "SCALE_IN", 3, False)
    assert req.suggested == ("i-0056faf8da3e1f75d", "i-02e1c69383a3ed501")
    assert req.zones["i-02e1c69383a3ed501"] == "us-east-1c"
    assert req.answer(["i-0056faf8da3e1f75d"]) == {"InstanceIDs": ["i-0056faf8da3e1f75d"]}
    assert parse_request({**PAYLOAD, "HasMoreInstances": True}).has_more


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"AutoScalingGroupName": ""}, "AutoScalingGroupName"),
        ({"Cause": "SCALE_OUT"}, "Cause"),
        ({"CapacityToTerminate": None}, "CapacityToTerminate"),
        ({"CapacityToTerminate": [{"Capacity": -1}]}, "CapacityToTerminate[0].Capacity"),
        ({"Instances": [{"InstanceId": "web-1"}]}, "Instances[0].InstanceId"),
        ({"Instances": "i-0056faf8da3e1f75d"}, "Instances"),
    ],
)
def test_a_malformed_request_fails_naming_the_field(change, field):
    with pytest.raises(EventError) as caught:
        parse_request({**PAYLOAD, **change})
    assert caught.value.field == field
    assert field in str(caught.value)


def test_a_request_that_is_not_an_object_fails_saying_so():
    with pytest.raises(EventError, match="JSON object"):
        parse_request(["i-0056faf8da3e1f75d"])


def test_a_healthy_cluster_gives_up_a_follower_and_never_the_leader_first():
    view, instances = world(3, leader=1)
    assert decide(view, instances, request([1, 2, 3], 1)) == (iid(2),)


def test_the_follower_furthest_behind_goes_first():
    view, instances = world(5, leader=1, lag={2: 0, 3: 40, 4: 5})
    assert decide(view, instances, request([1, 2, 3, 4, 5], 2)) == (iid(3), iid(4))


def test_a_member_that_is_down_goes_before_any_healthy_one_even_when_the_group_did_not_suggest_it():
    view, instances = world(5, down={4})
    assert decide(view, instances, request([1, 2], 1)) == (iid(4),)


def test_an_unstarted_member_goes_before_a_down_one():
    view, instances = world(5, down={4}, unstarted={5})
    assert decide(view, instances, request([1, 2, 3, 4, 5], 2)) == (iid(5), iid(4))


def test_an_instance_that_runs_no_member_goes_first():
    view, instances = world(3)
    instances[iid(9)] = inst(9)
    assert decide(view, instances, request([1, 2, 9], 1)) == (iid(9),)


def test_a_cluster_without_quorum_gives_up_nothing():
    view, instances = world(5, down={3, 4, 5})
    verdict = choose(request([1, 2, 3, 4, 5], 1), view, identify(view, instances), instances)
    assert verdict.instance_ids == ()
    assert "quorum is lost (2 of 5 voters left would be healthy; quorum needs 3)" in verdict.summary


def test_with_two_of_five_down_only_down_members_go_and_never_a_healthy_one():
    view, instances = world(5, down={4, 5})
    assert decide(view, instances, request([1, 2, 3], 1)) == (iid(4),)
    # 5 -> 2: both down members first; then 3 healthy voters of 3 may lose one (2 of 2 keep quorum)
    assert decide(view, instances, request([1, 2, 3], 3)) == (iid(4), iid(5), iid(2))


def test_a_healthy_voter_is_held_when_it_would_cost_quorum():
    view, instances = world(3, down={3})
    # 3 -> 1 asked: the down member may go; then a healthy one would leave 1 healthy of 1 voter: allowed
    assert decide(view, instances, request([1, 2, 3], 2)) == (iid(3), iid(2))
    view, instances = world(4, down={3, 4})  # 2 healthy of 4: quorum lost (removing 3 would leave 2 of 3, quorate)
    verdict = choose(request([1, 2, 3, 4], 1), view, identify(view, instances), instances)
    assert verdict.instance_ids == ()
    assert "quorum is lost" in verdict.summary


def test_a_refresh_takes_only_what_the_group_names():
    view, instances = world(5, down={4})
    assert decide(view, instances, request([1, 2], 1, "INSTANCE_REFRESH")) == (iid(2),)
    assert decide(view, instances, request([1], 1, "MAX_INSTANCE_LIFETIME")) == (iid(1),)


def test_an_instance_not_in_service_is_never_answered():
    view, instances = world(3)
    instances[iid(2)] = inst(2, "Terminating:Wait")
    verdict = choose(request([2, 3], 1), view, identify(view, instances), instances)
    assert verdict.instance_ids == (iid(3),)
    assert "not in service" in verdict.why[iid(2)]


def test_an_instance_that_may_own_an_unidentified_member_is_never_answered():
    view, instances = world(3)
    stranger = Member("77", "etcd-x", ("http://10.9.9.9:2380",), ("http://10.9.9.9:2379",))
    view = EtcdView((*view.members, stranger), view.healthy | {"77"}, view.leader, view.raft_index)
    instances[iid(9)] = inst(9)
    verdict = choose(request([9], 1), view, identify(view, instances), instances)
    assert verdict.instance_ids == ()
    assert "identity unknown" in verdict.why[iid(9)]


def test_the_whole_cluster_may_go_when_the_group_scales_to_zero():
    view, instances = world(3, leader=2)
    assert decide(view, instances, request([1, 2, 3], 3)) == (iid(1), iid(3), iid(2))


@st.composite
def clusters(draw):
    n = draw(st.integers(1, 7))
    states = draw(st.lists(st.sampled_from(["healthy", "down", "unstarted", "learner"]), min_size=n, max_size=n))
    leader = draw(st.integers(1, n))
    suggested = draw(st.lists(st.integers(1, n), unique=True, max_size=n))
    capacity = draw(st.integers(0, n))
    cause = draw(st.sampled_from(["SCALE_IN", "INSTANCE_REFRESH", "MAX_INSTANCE_LIFETIME", "REBALANCE"]))
    down = {k for k, s in enumerate(states, 1) if s == "down"}
    unstarted = {k for k, s in enumerate(states, 1) if s == "unstarted"}
    learners = {k for k, s in enumerate(states, 1) if s == "learner"}
    view, instances = world(n, down=down, unstarted=unstarted, learners=learners, leader=leader)
    return view, instances, request(suggested, capacity, cause)


@hsettings(max_examples=400, deadline=None)
@given(clusters())
def test_every_answer_keeps_a_healthy_quorum_stays_within_capacity_and_takes_the_worst_first(case):
    view, instances, req = case
    identity = identify(view, instances)
    answer = choose(req, view, identity, instances).instance_ids
    assert len(answer) <= req.capacity
    assert len(set(answer)) == len(answer)
    if req.cause != "SCALE_IN":
        assert set(answer) <= set(req.suggested)
    ids = {iid: m.id for m in view.members if (iid := identity.owner.get(m.id))}
    if answer:  # a cluster without quorum gives up nothing; any answer keeps a healthy quorum
        assert quorum_after(view, [])[0]
        ok, detail = quorum_after(view, [ids[i] for i in answer if i in ids])
        assert ok, detail
    healthy_voters = [i for i in answer if ids.get(i) in view.healthy]
    # A healthy voter never goes while a candidate that is not one stays behind unanswered with room left
    if healthy_voters and len(answer) < req.capacity:
        pool = set(req.suggested) | ({i for i in instances} if req.cause == "SCALE_IN" else set())
        worse = [i for i in pool if ids.get(i) not in view.healthy and i not in answer]
        for i in worse:
            assert not quorum_after(view, [ids[j] for j in answer if j in ids] + [ids[i]])[0]
    # The leader goes only after every suggested healthy follower that could
    leader_iid = next((i for i, m in ids.items() if m == view.leader), None)
    if leader_iid in answer:
        followers = [i for i in req.suggested if ids.get(i) in view.healthy and i != leader_iid]
        assert all(f in answer for f in followers)
