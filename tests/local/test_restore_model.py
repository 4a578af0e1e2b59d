"""The restore go signal and lost data on simulated instances: the etcd model's snapshot stream (read as the real
gateway's is read) and restore, and ``SimFleet`` running the start script's new branches. The same two scenarios
run against real etcd in tests/e2e/test_restore_real.py, which also checks that both agree."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from hook_handler.backup.retention import parse_tiers
from hook_handler.backup.store import SnapshotStore
from hook_handler.backup.stream import GatewaySnapshot
from hook_handler.backup.take import SnapshotTaker
from hook_handler.etcd import EtcdUnavailable
from hook_handler.retry import RetryPolicy
from infra.local import LocalAWS, SimClock
from infra.local.etcd_model import SNAPSHOT_CHUNK, Discovery, EtcdModel, decode_snapshot
from infra.local.sim_fleet import SimFleet
from infra.local.stack import deploy
from tests.local.restore_scenarios import BUCKET, KEYS, LOST, RESTORED, TOKEN, put, sim_lost_data, sim_restore

HOSTS = {"n1": "10.0.0.1", "n2": "10.0.0.2", "n3": "10.0.0.3"}


def _one_member(model: EtcdModel, clock: SimClock, name: str = "n1") -> str:
    model.start(name, name=name, ip=HOSTS[name], peer_url=f"http://{name}:2380",
                discovery=Discovery([(name, 2380)], HOSTS), cluster_state="new", token="tok")  # fmt: skip
    clock.advance(5)
    return model.process(name).client_url


# -- the model: snapshot stream (R24) and restore (R25) ----------------------------------------------------------
def test_the_model_streams_its_snapshot_as_the_gateway_does_and_restores_it_into_a_new_one_member_cluster():
    clock = SimClock()
    model = EtcdModel(clock, seed=1)
    t = model.transport()
    endpoint = _one_member(model, clock)
    for key, value in KEYS.items():
        put(t, endpoint, key, value * 30)  # ~100 KB: several 32 KiB messages
    lines = t.session.post(endpoint + "/v3/maintenance/snapshot", json={}, stream=True).iter_lines()
    messages = [json.loads(line)["result"] for line in lines]
    assert len(messages) >= 4
    assert all(len(base64.b64decode(m["blob"])) <= SNAPSHOT_CHUNK for m in messages)
    assert "remaining_bytes" not in messages[-2] and "remaining_bytes" not in messages[-1]
    with GatewaySnapshot(t, endpoint) as source:  # the coordinator's own reader, its checks passing
        snapshot = b"".join(source.stream)
    assert snapshot == model.snapshot_bytes("n1")
    assert hashlib.sha256(snapshot[:-32]).hexdigest() == source.stream.sha256
    assert source.stream.total == len(snapshot) - 32
    _, revision, kv = decode_snapshot(snapshot)
    assert revision == model.process("n1").view_revision and {k.decode() for k in kv} == set(KEYS)

    restored = model.restore("n2", snapshot, name="n2", ip=HOSTS["n2"], peer_url="http://n2:2380", token="new-tok")
    model.start("n2", name="n2", ip=HOSTS["n2"], peer_url="http://n2:2380")  # a restart: no discovery
    clock.advance(5)
    assert restored.running and restored.cluster_id != model.process("n1").cluster_id
    (member,) = model.clusters()[restored.cluster_id]
    assert (member.name, member.peer_urls, member.running, member.leader) == ("n2", ("http://n2:2380",), True, True)
    assert model.kv(restored.cluster_id) == {k: v * 30 for k, v in KEYS.items()}
    status = t.post(restored.client_url, "/v3/maintenance/status", {}, 5)
    assert int(status["header"]["revision"]) == revision


def test_the_models_restore_refuses_what_etcdutl_refuses_and_changes_nothing():
    clock = SimClock()
    model = EtcdModel(clock, seed=2)
    _one_member(model, clock)
    snapshot = model.snapshot_bytes("n1")
    before = dict(model.cluster_states)
    flipped = snapshot[:10] + bytes([snapshot[10] ^ 1]) + snapshot[11:]
    with pytest.raises(ValueError, match="integrity check failed"):
        model.restore("n2", flipped, name="n2", ip=HOSTS["n2"], peer_url="http://n2:2380", token="t2")
    with pytest.raises(RuntimeError, match="is running"):
        model.restore("n1", snapshot, name="n1", ip=HOSTS["n1"], peer_url="http://n1:2380", token="t2")
    model.kill("n1")
    with pytest.raises(ValueError, match="not empty"):  # its WAL
        model.restore("n1", snapshot, name="n1", ip=HOSTS["n1"], peer_url="http://n1:2380", token="t2")
    model.restore("n2", snapshot, name="n2", ip=HOSTS["n2"], peer_url="http://n2:2380", token="t2")
    with pytest.raises(ValueError, match="exists already"):  # the same token and peer URL again: the same cluster
        model.restore("n3", snapshot, name="n2", ip=HOSTS["n3"], peer_url="http://n2:2380", token="t2")
    assert set(model.cluster_states) == set(before) | {model.process("n2").cluster_id}
    assert "n3" not in model.processes


def test_a_learner_and_a_stopped_member_give_no_snapshot():
    clock = SimClock()
    model = EtcdModel(clock, seed=3)
    t = model.transport()
    endpoint = _one_member(model, clock)
    model.kill("n1")
    with pytest.raises(EtcdUnavailable), GatewaySnapshot(t, endpoint):
        pass
    model.start("n1", name="n1", ip=HOSTS["n1"], peer_url="http://n1:2380")
    clock.advance(12)
    t.post(endpoint, "/v3/cluster/member/add", {"peerURLs": ["http://n2:2380"], "isLearner": True}, 5)
    both = Discovery([("n1", 2380), ("n2", 2380)], HOSTS)
    model.start("n2", name="n2", ip=HOSTS["n2"], peer_url="http://n2:2380", discovery=both, cluster_state="existing",
                token="tok")  # fmt: skip
    clock.advance(5)
    with (
        pytest.raises(EtcdUnavailable, match="rpc not supported for learner"),
        GatewaySnapshot(t, model.process("n2").client_url),
    ):
        pass


# -- SimFleet: the two scenarios ------------------------------------------------------------------------------
def test_a_simulated_instance_told_restore_starts_a_one_member_cluster_holding_exactly_the_snapshots_keys():
    assert sim_restore() == RESTORED


def test_a_simulated_member_whose_data_is_wiped_is_not_started_and_tags_itself_data_lost():
    assert sim_lost_data() == LOST


@pytest.fixture
def world():
    with LocalAWS(SimClock(), propagation=1.0) as aws:
        aws.client("s3").create_bucket(Bucket=BUCKET)
        stack = deploy(aws, mode="none", launch_default_result="CONTINUE", heartbeat_timeout=30)
        model = EtcdModel(aws.clock, seed=21)
        yield aws, stack, model


def _tag(aws, ids, **tags):
    aws.client("ec2").create_tags(Resources=ids, Tags=[{"Key": k.replace("_", "-"), "Value": v}
                                                       for k, v in tags.items()])  # fmt: skip


@pytest.mark.parametrize(
    ("bucket", "tags", "fragment"),
    [
        ("", {"etcd_restore_snapshot": "etcd-snapshots/x.db", "etcd_restore_token": TOKEN}, "SNAPSHOT_BUCKET"),
        (BUCKET, {"etcd_restore_token": TOKEN}, "needs the instance tags"),
        (BUCKET, {"etcd_restore_snapshot": "other/x.db", "etcd_restore_token": TOKEN}, "not a snapshot key"),
        (
            BUCKET,
            {"etcd_restore_snapshot": "etcd-snapshots/x.db", "etcd_restore_token": "etcd-example.com"},
            "the founding token",
        ),
        (
            BUCKET,
            {"etcd_restore_snapshot": "etcd-snapshots/absent.db", "etcd_restore_token": TOKEN},
            "the restore failed: cannot read",
        ),
    ],
    ids=["no-bucket", "no-snapshot-tag", "key-outside-prefix", "founding-token", "no-such-snapshot"],
)
def test_a_simulated_restore_it_cannot_do_is_refused_and_makes_nothing(world, bucket, tags, fragment):
    aws, stack, model = world
    fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain, snapshot_bucket=bucket)
    fleet.start()
    stack.scale(1)
    aws.clock.advance(5)
    (iid,) = stack.instances()
    _tag(aws, [iid], etcd_cluster_state="restore", **tags)
    aws.clock.advance(30)
    inst = fleet.instances[iid]
    assert inst.refusals >= 2 and inst.starts == 0  # refused again on every run, never started
    assert any(fragment in message for _, message in inst.log), inst.log
    assert iid not in model.processes and model.cluster_states == {}


def test_a_restored_cluster_takes_a_joiner_and_a_restored_member_restarts_on_its_own_data(world):
    """After the restore the coordinator adds the others one at a time as ordinary joiners (existing)."""
    aws, stack, model = world
    fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain, snapshot_bucket=BUCKET)
    fleet.start()
    t = model.transport()
    stack.scale(1)
    aws.clock.advance(5)
    (source,) = stack.instances()
    dns = stack.private_dns([source])
    aws.set_records(stack.zone_id, stack.srv_name, "SRV", 5, [f"0 0 2380 {dns[source]}"])
    _tag(aws, [source], etcd_cluster_state="new")
    aws.clock.advance(30)
    put(t, model.process(source).client_url, "/kept", "yes")
    store = SnapshotStore(aws.client("s3"), BUCKET, "etcd-snapshots/", RetryPolicy(aws.clock), aws.clock)
    key = SnapshotTaker(store, t, aws.clock, interval=60, tiers=parse_tiers(""), protocol="gateway").run(
        [model.process(source).client_url], aws.clock.now() + 60).newest.key  # fmt: skip
    stack.scale(3)
    aws.clock.advance(5)
    restorer, joiner = sorted(set(stack.instances()) - {source})
    _tag(aws, [restorer], etcd_cluster_state="restore", etcd_restore_snapshot=key, etcd_restore_token=TOKEN)
    aws.clock.advance(30)
    restored = model.process(restorer)
    assert restored.running
    # the joiner: the record lists both, member add, then existing
    dns = stack.private_dns([restorer, joiner])
    aws.set_records(stack.zone_id, stack.srv_name, "SRV", 5, [f"0 0 2380 {dns[i]}" for i in (restorer, joiner)])
    aws.clock.advance(6)
    t.post(restored.client_url, "/v3/cluster/member/add", {"peerURLs": [f"http://{dns[joiner].rstrip('.')}:2380"]}, 5)
    _tag(aws, [joiner], etcd_cluster_state="existing")
    aws.clock.advance(30)
    members = model.clusters()[restored.cluster_id]
    assert sorted(m.name for m in members if m.running) == sorted([restorer, joiner])
    assert model.kv(restored.cluster_id) == {"/kept": "yes"}
    # the restored member's etcd dies: systemd restarts it on its own (restored) data, nothing restored again
    fleet.crash(restorer)
    aws.clock.advance(20)
    assert restored.running and fleet.instances[restorer].starts == 2
    assert sum("restored s3://" in m for _, m in fleet.instances[restorer].log) == 1
    assert len(model.clusters()[restored.cluster_id]) == 2


def test_a_simulated_joiner_asks_until_a_member_answers_and_never_starts_blind(world):
    aws, stack, model = world
    fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain, tag_timeout=60)
    fleet.start()
    stack.scale(2)
    aws.clock.advance(5)
    a, b = sorted(stack.instances())
    dns = stack.private_dns([a, b])
    aws.set_records(stack.zone_id, stack.srv_name, "SRV", 5, [f"0 0 2380 {dns[i]}" for i in (a, b)])
    _tag(aws, [a], etcd_cluster_state="existing")  # no member runs anywhere: nobody answers its member list
    aws.clock.advance(30)
    assert fleet.instances[a].phase == "checking" and a not in model.processes
    aws.clock.advance(40)  # past tag_timeout: refused (the script exits 1), never started blind
    assert fleet.instances[a].refusals >= 1 and a not in model.processes
    _tag(aws, [b], etcd_cluster_state="new")  # a member runs now, and lists a (unstarted, a discovery placeholder)
    aws.clock.advance(30)
    assert fleet.instances[a].starts == 1 and model.process(a).running
    (members,) = model.clusters().values()
    assert sorted(m.name for m in members if m.running) == sorted([a, b])
