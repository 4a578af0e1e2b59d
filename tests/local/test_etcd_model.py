"""The etcd 3.5 model on simulated time: each rule of ``infra.local.etcd_model`` as an outcome (member lists,
etcd's error strings, cluster IDs, who leads), and ``SimFleet`` running the bootstrap protocol on a LocalAWS."""

from __future__ import annotations

import pytest

from hook_handler.etcd import EtcdRefused, EtcdUnavailable, Membership
from infra.local import LocalAWS
from infra.local.clock import SimClock
from infra.local.etcd_model import Discovery, EtcdModel, cluster_id, member_id
from infra.local.sim_fleet import SimFleet
from infra.local.stack import deploy

HOSTS = {f"n{i}.example.com": f"10.0.0.{i}" for i in range(1, 10)}
TOKEN = "tok1"
pytestmark = pytest.mark.local_aws(propagation=1.0)  # the SimFleet tests' ``aws`` (tests/conftest.py)


class World:
    """A model with helpers: ``start(1, "new", [1, 2, 3])`` starts n1 with the record listing n1..n3."""

    def __init__(self, seed: int = 1, **kwargs: object) -> None:
        self.clock = SimClock()
        self.model = EtcdModel(self.clock, seed=seed, **kwargs)  # type: ignore[arg-type]
        self.t = self.model.transport()

    def start(self, i: int, state: str, record: list[int] | None, token: str = TOKEN) -> None:
        discovery = None
        if record is not None:
            discovery = Discovery([(f"n{j}.example.com", 2380) for j in record], HOSTS)
        self.model.start(
            f"n{i}",
            name=f"n{i}",
            ip=f"10.0.0.{i}",
            peer_url=f"http://n{i}.example.com:2380",
            discovery=discovery,
            cluster_state=state,  # type: ignore[arg-type]
            token=token,
        )

    def ep(self, i: int) -> str:
        return f"http://10.0.0.{i}:2379"

    def post(self, i: int, path: str, body: dict[str, object] | None = None, timeout: float = 5.0) -> dict:
        return self.t.post(self.ep(i), path, body or {}, timeout)

    def refused(self, i: int, path: str, body: dict[str, object], timeout: float = 5.0) -> str:
        with pytest.raises(EtcdRefused) as info:
            self.post(i, path, body, timeout)
        return info.value.message

    def members(self, i: int) -> list[dict]:
        return self.post(i, "/v3/cluster/member/list")["members"]

    def mid(self, i: int) -> str:
        return str(self.model.process(f"n{i}").member_id)

    def add(self, i: int, n: int, learner: bool = False) -> dict:
        body: dict[str, object] = {"peerURLs": [f"http://n{n}.example.com:2380"]}
        if learner:
            body["isLearner"] = True
        return self.post(i, "/v3/cluster/member/add", body)

    def add_refused(self, i: int, n: int, learner: bool = False) -> str:
        body: dict[str, object] = {"peerURLs": [f"http://n{n}.example.com:2380"]}
        if learner:
            body["isLearner"] = True
        return self.refused(i, "/v3/cluster/member/add", body)

    def leader_index(self) -> int:
        status = self.post(1, "/v3/maintenance/status")
        return next(i for i in range(1, 10) if f"n{i}" in self.model.processes and self.mid(i) == status["leader"])


def three(seed: int = 1) -> World:
    w = World(seed)
    for i in (1, 2, 3):
        w.start(i, "new", [1, 2, 3])
    w.clock.advance(4)
    return w


# -- IDs and bootstrap --------------------------------------------------------------------------------
def test_ids_are_etcds_own_hashes():
    # Values captured from real etcd 3.5.1 (token tok1, peers http://n1..n3.example.com:2380).
    ids = [member_id([f"http://n{i}.example.com:2380"], "tok1") for i in (1, 2, 3)]
    assert ids == [15266092204079536164, 7998273848249185845, 3290336037526408576]
    assert cluster_id(ids) == 12829141539692158793


def test_bootstrap_from_the_whole_record_forms_one_cluster_with_a_leader():
    w = three()
    members = w.members(1)
    assert [m["name"] for m in members] == ["n3", "n2", "n1"]  # sorted by ID
    assert members[0] == {
        "ID": "3290336037526408576",
        "name": "n3",
        "peerURLs": ["http://n3.example.com:2380"],
        "clientURLs": ["http://10.0.0.3:2379"],
    }
    assert list(w.model.clusters()) == [12829141539692158793]
    assert sum(m.leader for m in w.model.clusters()[12829141539692158793]) == 1
    assert w.t.get(w.ep(2), "/health", 1) == {"health": "true", "reason": ""}
    assert w.t.get(w.ep(2), "/version", 1) == {"etcdserver": "3.5.1", "etcdcluster": "3.5.0"}


def test_members_that_see_different_records_form_different_clusters():
    w = World()
    w.start(1, "new", [1, 2])
    w.start(2, "new", [1, 2])
    w.start(3, "new", [1, 2, 3])
    w.clock.advance(5)
    assert len(w.model.clusters()) == 2
    assert (
        w.post(1, "/v3/cluster/member/list")["header"]["cluster_id"]
        != w.post(3, "/v3/maintenance/status")["header"]["cluster_id"]
    )
    lonely = w.model.process("n3").cluster_id
    assert w.model.quorum_lost(lonely)  # 1 of 3 of its own cluster runs: never a leader
    assert w.post(3, "/v3/maintenance/status")["errors"] == ["etcdserver: no leader"]
    assert w.t.get(w.ep(3), "/health", 1) == {"health": "false", "reason": "RAFT NO LEADER"}


def test_an_unstarted_founder_is_listed_with_its_srv_temp_name_and_no_client_urls():
    w = World()
    w.start(1, "new", [1, 2, 3])
    w.start(2, "new", [1, 2, 3])
    w.clock.advance(4)
    n3 = next(m for m in w.members(1) if m["peerURLs"] == ["http://n3.example.com:2380"])
    assert n3 == {"ID": str(member_id(["http://n3.example.com:2380"], TOKEN)), "name": "1", "peerURLs": n3["peerURLs"]}


def test_cannot_find_itself_in_the_record_exits_without_touching_the_data_dir():
    w = World()
    w.start(4, "new", [1, 2, 3])
    w.clock.advance(3)
    proc = w.model.process("n4")
    assert proc.status == "exited" and proc.exit_code == 1
    assert 'cannot find local etcd member "n4" in SRV records' in proc.exit_reason
    assert proc.data.state == "empty"


def test_unresolvable_targets_are_skipped():
    w = World()
    discovery = Discovery([("nowhere.example.com", 2380), ("n1.example.com", 2380)], HOSTS)
    w.model.start("n1", name="n1", ip="10.0.0.1", peer_url="http://n1.example.com:2380", discovery=discovery)
    w.clock.advance(4)
    assert [m["name"] for m in w.members(1)] == ["n1"]


# -- adds ----------------------------------------------------------------------------------------------
def test_voter_add_is_refused_within_5_s_of_the_bootstrap_then_accepted():
    w = three()
    assert w.add_refused(1, 4) == "etcdserver: unhealthy cluster"
    assert w.add_refused(1, 4, learner=True) == "etcdserver: unhealthy cluster"  # learners too (3.5.1)
    w.clock.advance(6)
    out = w.add(1, 4)
    assert out["member"] == {"ID": out["member"]["ID"], "peerURLs": ["http://n4.example.com:2380"]}
    added = next(m for m in out["members"] if m["ID"] == out["member"]["ID"])
    assert added == {"ID": out["member"]["ID"], "peerURLs": ["http://n4.example.com:2380"]}  # no name: unstarted
    # The unstarted voter blocks the next add until it runs and has been connected for 5 s.
    assert w.add_refused(1, 5) == "etcdserver: unhealthy cluster"


def test_add_while_one_of_three_is_down_is_refused():
    w = three()
    w.clock.advance(6)
    w.model.kill("n3")
    w.clock.advance(3)
    assert w.add_refused(1, 4) == "etcdserver: unhealthy cluster"
    assert w.add_refused(1, 4, learner=True) == "etcdserver: unhealthy cluster"


def test_voter_add_needs_enough_started_members():
    w = World()
    w.start(1, "new", [1])
    w.clock.advance(8)
    w.add(1, 2)  # 1 started of a 1-member cluster: allowed (restore case)
    # Two voters, one running: no quorum, and the next voter add is refused on started members.
    w.clock.advance(10)
    assert w.model.quorum_lost(w.model.process("n1").cluster_id)
    assert w.add_refused(1, 3) == "etcdserver: re-configuration failed due to not enough started members"


def test_one_learner_at_a_time_and_same_url_twice():
    w = three()
    w.clock.advance(6)
    w.add(1, 4, learner=True)
    assert w.add_refused(1, 5, learner=True) == "etcdserver: too many learner members in cluster"
    assert w.add_refused(1, 4) == "etcdserver: member ID already exist"  # same URLs, same second
    w.clock.advance(1)
    assert w.add_refused(1, 4) == "etcdserver: Peer URLs already exists"


def test_promote_refused_until_the_learner_started_and_caught_up():
    w = World(catchup_seconds=3.0)
    for i in (1, 2, 3):
        w.start(i, "new", [1, 2, 3])
    w.clock.advance(10)
    learner = w.add(1, 4, learner=True)["member"]["ID"]
    sync = "etcdserver: can only promote a learner member which is in sync with leader"
    assert w.refused(2, "/v3/cluster/member/promote", {"ID": learner}) == sync
    w.start(4, "existing", [1, 2, 3, 4])
    w.clock.advance(2)
    assert next(m for m in w.members(1) if m["ID"] == learner)["name"] == "n4"
    assert w.refused(2, "/v3/cluster/member/promote", {"ID": learner}) == sync  # still catching up
    assert w.post(4, "/v3/maintenance/status")["isLearner"] is True
    w.clock.advance(3)
    w.post(2, "/v3/cluster/member/promote", {"ID": learner})
    assert "isLearner" not in next(m for m in w.members(1) if m["ID"] == learner)
    assert (
        w.refused(1, "/v3/cluster/member/promote", {"ID": learner}) == "etcdserver: can only promote a learner member"
    )
    assert w.refused(1, "/v3/cluster/member/promote", {"ID": "12345"}) == "etcdserver: member not found"


def test_learner_serves_only_serializable_reads():
    w = three()
    w.clock.advance(6)
    w.add(1, 4, learner=True)
    w.start(4, "existing", [1, 2, 3, 4])
    w.clock.advance(2)
    w.post(1, "/v3/kv/put", {"key": "Zm9v", "value": "YmFy"})
    refused = w.refused(4, "/v3/kv/range", {"key": "Zm9v"})
    assert refused == "etcdserver: rpc not supported for learner"
    assert w.post(4, "/v3/kv/range", {"key": "Zm9v", "serializable": True})["kvs"][0]["value"] == "YmFy"
    for path in ("/v3/cluster/member/list", "/v3/cluster/member/add", "/v3/cluster/member/remove"):
        assert w.refused(4, path, {"peerURLs": ["http://n5.example.com:2380"]}) == (
            "etcdserver: rpc not supported for learner"
        ), path  # real etcd: tests/e2e/test_membership_real.py's learner in the client record
    assert w.post(4, "/v3/maintenance/status")["isLearner"] is True


def test_the_membership_client_asks_the_next_member_when_a_learner_refuses():
    """A just-added learner listed first (the client record lists it): its refusal sends the client on to a voter
    instead of failing the pass (found by the real-etcd IP-reuse scenario)."""
    w = three()
    w.clock.advance(6)
    w.add(1, 4, learner=True)
    w.start(4, "existing", [1, 2, 3, 4])
    w.clock.advance(2)
    client = Membership(w.clock, w.t)
    members = client.members([w.ep(4), w.ep(1)], w.clock.now() + 10)
    assert sorted(m.name for m in members) == ["n1", "n2", "n3", "n4"]
    with pytest.raises(EtcdRefused, match="not supported for learner"):  # only a learner to ask: no guess
        client.members([w.ep(4)], w.clock.now() + 3)


# -- joins -----------------------------------------------------------------------------------------------
def test_joiner_whose_record_lists_one_member_too_many_exits_leaving_member_without_wal():
    w = three()
    w.clock.advance(6)
    w.start(5, "existing", [1, 2, 3, 5])  # never added
    w.clock.advance(3)
    proc = w.model.process("n5")
    assert proc.exit_code == 1 and proc.exit_reason.endswith("member count is unequal")
    assert proc.data.state == "partial"


def test_restart_without_discovery_on_a_failed_first_start_forms_a_rogue_cluster():
    w = three()
    w.post(1, "/v3/kv/put", {"key": "a2V5", "value": "dg=="})
    w.start(5, "existing", [1, 2, 3, 5])
    w.clock.advance(3)
    w.start(5, "new", None)  # the naive restart: no discovery flags
    w.clock.advance(5)
    assert [m["name"] for m in w.members(5)] == ["n5"]
    rogue = w.model.process("n5").cluster_id
    assert rogue != w.model.process("n1").cluster_id and rogue == 17048550113785099861  # as real etcd
    assert "kvs" not in w.post(5, "/v3/kv/range", {"key": "a2V5"})  # an empty keyspace
    assert w.post(1, "/v3/kv/range", {"key": "a2V5"})["kvs"][0]["value"] == "dg=="


def test_added_member_adopted_on_existing_start_and_restart_ignores_discovery():
    w = three()
    w.clock.advance(6)
    added = w.add(1, 4)["member"]["ID"]
    w.start(4, "existing", [1, 2, 3, 4])
    w.clock.advance(2)
    assert w.mid(4) == added
    assert next(m for m in w.members(2) if m["ID"] == added)["name"] == "n4"
    w.model.kill("n4")
    w.start(4, "existing", [9])  # a WAL: discovery (even a wrong record) is ignored
    w.clock.advance(2)
    assert w.model.process("n4").running and w.mid(4) == added


def test_existing_start_with_no_peer_answering_exits():
    w = World()
    w.start(2, "existing", [1, 2])
    w.clock.advance(3)
    assert "could not retrieve cluster information" in w.model.process("n2").exit_reason


# -- removes ---------------------------------------------------------------------------------------------
def test_remove_that_would_leave_fewer_started_than_quorum_is_refused():
    # One member plus an added voter that never started: removing the started one leaves 0 started of 1.
    w = World()
    w.start(1, "new", [1])
    w.clock.advance(8)
    w.add(1, 2)
    message = w.refused(1, "/v3/cluster/member/remove", {"ID": w.mid(1)})
    assert message == "etcdserver: re-configuration failed due to not enough started members"


def test_remove_of_a_live_member_needs_the_rest_connected_for_5_s():
    w = three()
    w.clock.advance(6)
    w.model.kill("n3")
    w.clock.advance(1)
    # n1 sees n2 (connected long enough) and itself: 2 active - 1 < quorum of 3 (2): refused.
    assert w.refused(1, "/v3/cluster/member/remove", {"ID": w.mid(2)}) == "etcdserver: unhealthy cluster"
    # The dead one is not part of the active quorum: removable at once.
    w.post(1, "/v3/cluster/member/remove", {"ID": w.mid(3)}, timeout=5)


def test_remove_of_a_dead_member_is_allowed_and_the_removed_process_exits():
    w = three()
    w.clock.advance(6)
    w.model.kill("n3")
    w.clock.advance(3)
    out = w.post(1, "/v3/cluster/member/remove", {"ID": w.mid(3)})
    assert sorted(m["name"] for m in out["members"]) == ["n1", "n2"]
    w.start(3, "new", [1, 2, 3])  # its WAL says it was a member: peers refuse it
    w.clock.advance(3)
    proc = w.model.process("n3")
    assert proc.exit_code == 0 and proc.exit_reason == "the member has been permanently removed from the cluster"
    assert w.refused(1, "/v3/cluster/member/remove", {"ID": w.mid(3)}) == "etcdserver: member not found"


def test_removing_the_leader_leaves_the_cluster_leaderless_until_an_election():
    w = three()
    w.clock.advance(6)
    lead = w.leader_index()
    other = next(i for i in (1, 2, 3) if i != lead)
    w.post(other, "/v3/cluster/member/remove", {"ID": w.mid(lead)})
    w.clock.advance(0.1)
    assert w.model.process(f"n{lead}").status == "exited"
    assert "leader" not in w.post(other, "/v3/maintenance/status")
    w.clock.advance(3)
    assert "leader" in w.post(other, "/v3/maintenance/status")


# -- leader and timeouts -------------------------------------------------------------------------------
def test_without_a_leader_writes_time_out_on_the_clock_and_member_list_answers():
    w = three()
    w.clock.advance(6)
    w.model.kill("n2")
    w.model.kill("n3")
    w.clock.advance(2)
    t0 = w.clock.now()
    assert w.refused(1, "/v3/kv/put", {"key": "Zm9v", "value": "YmFy"}, timeout=10) == "context deadline exceeded"
    assert w.clock.now() - t0 == pytest.approx(7.0)
    assert w.refused(1, "/v3/kv/range", {"key": "Zm9v"}, timeout=10) == "etcdserver: request timed out"
    t0 = w.clock.now()
    with pytest.raises(EtcdUnavailable):
        w.post(1, "/v3/cluster/member/remove", {"ID": "1"}, timeout=3)
    assert w.clock.now() - t0 == pytest.approx(3.0)
    assert w.refused(1, "/v3/cluster/member/promote", {"ID": "1"}, timeout=9) == "etcdserver: no leader"
    assert len(w.members(1)) == 3


def test_a_blocked_write_goes_through_once_a_leader_is_elected():
    w = three()
    w.clock.advance(6)
    lead = w.leader_index()
    w.model.kill(f"n{lead}")
    other = next(i for i in (1, 2, 3) if i != lead)
    w.post(other, "/v3/kv/put", {"key": "Zm9v", "value": "YmFy"}, timeout=5)  # waits out the election
    assert w.model.kv(w.model.process(f"n{other}").cluster_id) == {"foo": "bar"}


def test_move_leader_only_on_the_leader_to_a_voter_and_sigterm_hands_over():
    w = three()
    w.clock.advance(6)
    lead = w.leader_index()
    follower = next(i for i in (1, 2, 3) if i != lead)
    assert w.refused(follower, "/v3/maintenance/transfer-leadership", {"targetID": w.mid(lead)}) == (
        "etcdserver: not leader"
    )
    assert w.refused(lead, "/v3/maintenance/transfer-leadership", {"targetID": "12345"}) == (
        "etcdserver: bad leader transferee"
    )
    assert w.post(lead, "/v3/maintenance/transfer-leadership", {"targetID": w.mid(follower)}) == {}
    assert w.leader_index() == follower
    w.model.stop(f"n{follower}")  # graceful: hands leadership over at once
    survivor = next(i for i in (1, 2, 3) if i != follower)
    assert w.post(survivor, "/v3/maintenance/status")["leader"] in {w.mid(i) for i in (1, 2, 3) if i != follower}


def test_membership_client_runs_against_the_model():
    w = three()
    client = Membership(w.clock, w.t)
    deadline = w.clock.now() + 30
    members = client.members([w.ep(1)], deadline)
    assert sorted(m.name for m in members) == ["n1", "n2", "n3"]
    assert client.version([w.ep(2)], deadline) == "3.5.0"
    w.clock.advance(6)
    added = client.add(["http://n4.example.com:2380"], [w.ep(1)], deadline, learner=True)
    assert added.learner and not added.started


# -- SimFleet on a LocalAWS ------------------------------------------------------------------------------
def _publish(aws: LocalAWS, stack, ids: list[str], state: str) -> None:
    dns = stack.private_dns(ids)
    aws.set_records(stack.zone_id, stack.srv_name, "SRV", 5, [f"0 0 2380 {dns[i]}" for i in ids])
    aws.client("ec2").create_tags(Resources=ids, Tags=[{"Key": "etcd-cluster-state", "Value": state}])


def test_sim_fleet_bootstraps_joins_and_kills_on_terminate(aws):
    stack = deploy(aws, mode="none", launch_default_result="CONTINUE", heartbeat_timeout=30)
    model = EtcdModel(aws.clock, seed=3)
    fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain).start()
    stack.scale(3)
    aws.clock.advance(5)
    ids = sorted(stack.instances())
    assert all(fleet.instances[i].phase == "waiting-tag" for i in ids)  # target InService, no tag yet
    _publish(aws, stack, ids, "new")
    aws.clock.advance(60)
    assert len(model.clusters()) == 1
    (members,) = model.clusters().values()
    assert sorted(m.instance_id for m in members if m.running) == ids
    assert sorted(m.name for m in members) == ids
    t = model.transport()
    # A joiner: added, listed, tagged existing.
    stack.scale(4)
    aws.clock.advance(2)
    (joiner,) = set(stack.instances()) - set(ids)
    dns = stack.private_dns([joiner])[joiner].rstrip(".")
    t.post(fleet.client_endpoints()[0], "/v3/cluster/member/add", {"peerURLs": [f"http://{dns}:2380"]}, 5)
    _publish(aws, stack, [*ids, joiner], "existing")
    aws.clock.advance(40)
    (members,) = model.clusters().values()
    assert sorted(m.name for m in members if m.running) == sorted([*ids, joiner])
    # Crash: systemd restarts it from its WAL.
    fleet.crash(ids[0])
    aws.clock.advance(10)
    assert model.process(ids[0]).running and fleet.instances[ids[0]].starts == 2
    # EC2 terminates one: its etcd is killed, the member stays until someone removes it.
    aws.client("ec2").terminate_instances(InstanceIds=[ids[1]])
    aws.clock.advance(2)
    assert fleet.instances[ids[1]].phase == "killed" and not model.process(ids[1]).running


def test_sim_fleet_retries_a_failed_first_start_on_a_cleared_data_dir(aws):
    stack = deploy(aws, mode="none", launch_default_result="CONTINUE", heartbeat_timeout=30)
    model = EtcdModel(aws.clock, seed=4)
    fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain, never_start=set()).start()
    stack.scale(3)
    aws.clock.advance(3)
    ids = sorted(stack.instances())
    _publish(aws, stack, ids, "new")
    aws.clock.advance(30)
    stack.scale(4)
    aws.clock.advance(2)
    (joiner,) = set(stack.instances()) - set(ids)
    _publish(aws, stack, [*ids, joiner], "existing")  # listed and told existing, but no member add yet
    aws.clock.advance(20)
    assert any("member count is unequal" in message for _, message in fleet.instances[joiner].log)
    assert any("data dir cleared" in message for _, message in fleet.instances[joiner].log)
    dns = stack.private_dns([joiner])[joiner].rstrip(".")
    model.transport().post(
        fleet.client_endpoints()[0], "/v3/cluster/member/add", {"peerURLs": [f"http://{dns}:2380"]}, 5
    )
    aws.clock.advance(30)
    assert len(model.clusters()) == 1  # never a rogue cluster
    (members,) = model.clusters().values()
    assert joiner in {m.name for m in members if m.running}


# -- SimFleet and the warm pool: every boot runs the script; a revoked membership -----------------------
@pytest.fixture
def warm_aws():
    with LocalAWS(SimClock(), propagation=1.0, warm_pools=True) as aws:
        yield aws


def _pool(aws: LocalAWS, stack) -> dict[str, str]:
    out = aws.client("autoscaling").describe_warm_pool(AutoScalingGroupName=stack.group)
    return {i["InstanceId"]: i["LifecycleState"] for i in out["Instances"]}


def _messages(fleet: SimFleet, instance_id: str) -> list[str]:
    return [message for _, message in fleet.instances[instance_id].log]


def test_sim_fleet_runs_the_script_again_on_every_boot_of_a_warm_pool_instance(warm_aws):
    """A launch into the warm pool reads Warmed:* and runs no etcd; stopped in the pool it stays down; when it
    leaves the pool EC2 starts it again and the script runs from the top (it was ``not-joining`` before)."""
    aws = warm_aws
    stack = deploy(aws, mode="none", launch_default_result="CONTINUE", heartbeat_timeout=30)
    model = EtcdModel(aws.clock, seed=5)
    fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain).start()
    aws.client("autoscaling").put_warm_pool(AutoScalingGroupName=stack.group, MinSize=1, MaxGroupPreparedCapacity=1)
    aws.clock.advance(5)
    ((warm, state),) = _pool(aws, stack).items()
    assert state == "Warmed:Pending:Wait" and fleet.instances[warm].phase == "not-joining"
    aws.clock.advance(60)  # the launch hook times out (CONTINUE): Warmed:Stopped, EC2 stopped
    assert _pool(aws, stack) == {warm: "Warmed:Stopped"}
    assert fleet.instances[warm].phase == "stopped" and warm not in model.processes
    # Out of the pool: a boot. The script runs again and waits for the go tag.
    stack.scale(1)
    aws.clock.advance(5)
    inst = fleet.instances[warm]
    assert inst.boots == 2 and inst.phase == "waiting-tag"
    _publish(aws, stack, [warm], "new")
    aws.clock.advance(30)
    assert model.process(warm).running and inst.starts == 1
    log = _messages(fleet, warm)
    assert log[0].startswith("booted (Warmed:") and "target lifecycle state is Warmed:" in log[1]
    assert any(m.startswith("booted again (Pending") for m in log) and "etcd started (discovery new)" in log


def test_sim_fleet_a_revoked_member_back_from_the_warm_pool_clears_its_data_and_joins_as_a_new_member(warm_aws):
    """What the coordinator does on a return to the warm pool (member remove, admission tags deleted), by hand:
    stopped in the pool, the instance keeps the removed member's WAL; out of the pool its script finds the WAL and
    no ``etcd-cluster-state`` tag, waits for InService, clears the data dir and does the first start (tag, SRV,
    discovery). With the tag still there it would restart on the WAL instead."""
    aws = warm_aws
    stack = deploy(aws, mode="none", launch_default_result="CONTINUE", heartbeat_timeout=30)
    model = EtcdModel(aws.clock, seed=6)
    fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain).start()
    asg, ec2, t = aws.client("autoscaling"), aws.client("ec2"), model.transport()
    stack.scale(3)
    aws.clock.advance(5)
    ids = sorted(stack.instances())
    _publish(aws, stack, ids, "new")
    aws.clock.advance(60)
    (members,) = model.clusters().values()
    assert sorted(m.name for m in members if m.running) == ids
    asg.put_warm_pool(
        AutoScalingGroupName=stack.group,
        MinSize=0,
        MaxGroupPreparedCapacity=3,
        InstanceReusePolicy={"ReuseOnScaleIn": True},
    )
    stack.scale(2)
    aws.clock.advance(2)
    ((back, state),) = _pool(aws, stack).items()
    assert state == "Warmed:Pending:Wait"  # the terminate hook, on its way to the pool: etcd still runs
    assert model.process(back).running and fleet.instances[back].phase == "running"
    old_id = model.process(back).member_id
    rest = sorted(set(ids) - {back})
    endpoint = model.process(rest[0]).client_url
    aws.clock.advance(10)  # the survivors have been connected for the 5 s etcd wants before a remove
    t.post(endpoint, "/v3/cluster/member/remove", {"ID": old_id}, 5)
    ec2.delete_tags(Resources=[back], Tags=[{"Key": "etcd-cluster-state"}])
    _publish(aws, stack, rest, "new")
    aws.clock.advance(60)  # removed: etcd exits 0 and stays down; the hook times out: Warmed:Stopped
    assert _pool(aws, stack) == {back: "Warmed:Stopped"}
    assert fleet.instances[back].phase == "stopped"
    assert model.process(back).data.state == "wal" and model.process(back).member_id == old_id  # EBS kept
    # Out of the pool: the WAL of a removed member and no tag.
    stack.scale(3)
    aws.clock.advance(5)
    inst = fleet.instances[back]
    assert inst.boots == 2 and inst.phase == "waiting-tag"
    assert model.process(back).data.state == "empty" and not model.process(back).running
    log = _messages(fleet, back)
    assert any("no tag etcd-cluster-state: membership revoked, data kept" in m for m in log)
    assert any("membership revoked: the WAL is of a removed member; data dir cleared" in m for m in log)
    assert not any("restart without discovery" in m for m in log)
    # The coordinator's join: member add, record, go tag 'existing'.
    dns = stack.private_dns([back])[back].rstrip(".")
    t.post(endpoint, "/v3/cluster/member/add", {"peerURLs": [f"http://{dns}:2380"]}, 5)
    _publish(aws, stack, ids, "existing")
    aws.clock.advance(60)
    assert len(model.clusters()) == 1
    (members,) = model.clusters().values()
    assert sorted(m.name for m in members if m.running) == ids
    assert model.process(back).member_id not in (0, old_id)  # a new member
    assert fleet.instances[back].starts == 2
