"""The two instance-side scenarios of a restore and of lost data, on simulated instances (``SimFleet`` on the etcd
model), and what both kinds of instance are judged by: ``observe`` (what a cluster says through etcd's gateway,
the same calls against real etcd and the model) and the outcomes with instance ids replaced by roles, so that the
real run (tests/e2e/test_restore_real.py, ``Fleet`` on real etcd) and the model's can be compared as they are.

Imported as ``tests.local.restore_scenarios`` by tests/local/test_restore_model.py and the real-etcd test.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

BUCKET = "etcd-snapshots-restore"
TOKEN = "etcd-restored-1"  # the restored cluster's new --initial-cluster-token
KEYS = {f"/app/config/{i:02d}": f"value-{i}-" + "x" * (i * 50) for i in range(12)}
LATER = ("/app/after-the-snapshot", "not in the snapshot")
NOTHING = {"members": [], "keys": {}, "cluster_id": "", "revision": 0, "leader": False}  # no member answered


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def put(transport: Any, endpoint: str, key: str, value: str) -> None:
    transport.post(endpoint, "/v3/kv/put", {"key": b64(key), "value": b64(value)}, 10.0)


def observe(transport: Any, endpoint: str) -> dict[str, Any]:
    """What one member says through the gateway: its cluster and revision, the members (name, peer URLs, started,
    learner), every key (a range over the whole keyspace) and whether it sees a leader."""
    status = transport.post(endpoint, "/v3/maintenance/status", {}, 5.0)
    members = transport.post(endpoint, "/v3/cluster/member/list", {}, 5.0)["members"]
    every = transport.post(endpoint, "/v3/kv/range", {"key": b64("\0"), "range_end": b64("\0")}, 5.0)
    keys = {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
            for kv in every.get("kvs", [])}  # fmt: skip
    return {
        "cluster_id": str(status["header"]["cluster_id"]),
        "revision": int(status["header"]["revision"]),
        "leader": bool(status.get("leader")) and not status.get("errors"),
        "members": [
            {
                "name": m.get("name", ""),
                "peer_urls": m.get("peerURLs", []),
                "published": bool(m.get("clientURLs")),
                "learner": bool(m.get("isLearner")),
            }
            for m in members
        ],
        "keys": keys,
    }


def roles(value: Any, names: Mapping[str, str]) -> Any:
    """``value`` with every instance id (and any text holding one, e.g. a peer URL) replaced by its role."""
    if isinstance(value, dict):
        return {roles(k, names): roles(v, names) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [roles(v, names) for v in value]
    if isinstance(value, str):
        for instance_id, role in names.items():
            value = value.replace(instance_id, role)
        return value
    return value


def restore_outcome(
    names: Mapping[str, str],
    *, source: Mapping[str, Any], snapshot_revision: int, restored: Mapping[str, Any], restorer_peer: str,
    restorer_state: str, occupied_state: str, occupied_kept: bool, occupied_running: bool,
) -> dict[str, Any]:  # fmt: skip
    """What must hold, and agree between real etcd and the model, after the restore scenario (instance ids as
    ``names`` says)."""
    return roles(
        {
            "restorer_state": restorer_state,
            "restored_members": [
                {**m, "peer_urls": ["<restorer>" if u == restorer_peer else u for u in m["peer_urls"]]}
                for m in restored["members"]
            ],
            "keys_exactly_the_snapshot": restored["keys"] == KEYS,
            "later_key_absent": LATER[0] not in restored["keys"] and LATER[0] in source["keys"],
            "new_cluster_id": restored["cluster_id"] != source["cluster_id"],
            "revision_kept": restored["revision"] >= snapshot_revision,
            "leader": restored["leader"],
            "occupied": {"state": occupied_state, "data_dir_kept": occupied_kept, "etcd_running": occupied_running},
        },
        names,
    )


def lost_outcome(
    names: Mapping[str, str],
    *,
    victim_state: str,
    victim_running: bool,
    tag: str,
    survivors: list[Mapping[str, Any]],
    victim_peer: str,
) -> dict[str, Any]:
    """What must hold, and agree between real etcd and the model, after the lost-data scenario (instance ids as
    ``names`` says)."""
    import re

    members = roles(
        [(m["name"], "<victim>" if victim_peer in m["peer_urls"] else "other", m["published"])
         for m in survivors[0]["members"]], names)  # fmt: skip
    return {
        "victim_state": victim_state,
        "victim_running": victim_running,
        "tag_is_utc_iso8601": bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", tag)),
        "survivors_see_a_leader": [s["leader"] for s in survivors],
        "survivors_hold_every_key": [s["keys"] == KEYS for s in survivors],
        "one_cluster": len({s["cluster_id"] for s in survivors}) == 1,
        # the lost member is still listed, as started: the coordinator removes it (when quorum allows)
        "members": sorted(members),
    }


# -- the scenarios on simulated instances -----------------------------------------------------------------------
def _world(seed: int) -> Any:
    from infra.local import LocalAWS, SimClock
    from infra.local.etcd_model import EtcdModel
    from infra.local.sim_fleet import SimFleet
    from infra.local.stack import deploy

    aws = LocalAWS(SimClock(), propagation=1.0).start()
    aws.client("s3").create_bucket(Bucket=BUCKET)
    # No coordinator here (mode none): the tests write what it would. Launches go InService when the hook times out.
    stack = deploy(aws, mode="none", launch_default_result="CONTINUE", heartbeat_timeout=30)
    model = EtcdModel(aws.clock, seed=seed)
    fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain, snapshot_bucket=BUCKET)
    return aws, stack, model, fleet.start()


def _publish(aws: Any, stack: Any, ids: list[str], tags: dict[str, str]) -> None:
    dns = stack.private_dns(ids)
    aws.set_records(stack.zone_id, stack.srv_name, "SRV", 5, [f"0 0 2380 {dns[i]}" for i in ids])
    aws.client("ec2").create_tags(Resources=ids, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def sim_restore(seed: int = 11) -> dict[str, Any]:
    """One founder holds ``KEYS``; a snapshot of it goes to S3 (``SnapshotTaker`` through the gateway); ``LATER``
    is written after it. The restorer is told ``restore`` (the snapshot's key, a new token); a third instance told
    the same has an operator's file in its data dir."""
    from hook_handler.backup.config import DEFAULT_PREFIX
    from hook_handler.backup.retention import parse_tiers
    from hook_handler.backup.store import SnapshotStore
    from hook_handler.backup.take import SnapshotTaker
    from hook_handler.retry import RetryPolicy

    aws, stack, model, fleet = _world(seed)
    try:
        stack.scale(3)
        aws.clock.advance(5)
        source, restorer, occupied = sorted(stack.instances())
        _publish(aws, stack, [source], {"etcd-cluster-state": "new"})
        aws.clock.advance(40)
        t = model.transport()
        endpoint = model.process(source).client_url
        for key, value in KEYS.items():
            put(t, endpoint, key, value)
        store = SnapshotStore(aws.client("s3"), BUCKET, DEFAULT_PREFIX, RetryPolicy(aws.clock), aws.clock)
        taker = SnapshotTaker(store, t, aws.clock, interval=60, tiers=parse_tiers(""), protocol="gateway")
        taken = taker.run([endpoint], aws.clock.now() + 60)
        assert taken.taken and taken.newest is not None
        put(t, endpoint, *LATER)
        fleet.occupied.add(occupied)  # an operator's file in its data dir
        go = {"etcd-cluster-state": "restore", "etcd-restore-snapshot": taken.newest.key, "etcd-restore-token": TOKEN}
        aws.client("ec2").create_tags(
            Resources=[restorer, occupied], Tags=[{"Key": k, "Value": v} for k, v in go.items()]
        )
        aws.clock.advance(40)
        restored = model.process(restorer)
        names = {source: "source", restorer: "restorer", occupied: "occupied"}
        refusing = fleet.instances[occupied]
        # systemd runs the refusing script again and again: refused every time, never started
        occupied_state = "refused" if refusing.refusals and not refusing.starts else refusing.phase
        return restore_outcome(
            names,
            source=observe(t, endpoint),
            snapshot_revision=taken.newest.revision,
            restored=observe(t, restored.client_url) if restored.running else NOTHING,
            restorer_peer=fleet.peer_url(fleet.instances[restorer]),
            restorer_state=_state(fleet.instances[restorer].phase),
            occupied_state=occupied_state,
            occupied_kept=occupied in fleet.occupied and model.processes.get(occupied) is None,
            occupied_running=bool(model.processes.get(occupied) and model.process(occupied).running),
        )
    finally:
        fleet.stop()
        aws.stop()


def sim_lost_data(seed: int = 12) -> dict[str, Any]:
    """Three founders hold ``KEYS``; one member's etcd dies, its data dir is wiped, and it is started again."""
    aws, stack, model, fleet = _world(seed)
    try:
        stack.scale(3)
        aws.clock.advance(5)
        ids = sorted(stack.instances())
        _publish(aws, stack, ids, {"etcd-cluster-state": "new"})
        aws.clock.advance(60)
        t = model.transport()
        for key, value in KEYS.items():
            put(t, model.process(ids[1]).client_url, key, value)
        victim = ids[0]
        fleet.crash(victim, restart_delay=10.0)  # systemd starts the script again in 10 s ...
        model.clear_data(victim)  # ... on a data dir wiped meanwhile (a replaced disk)
        aws.clock.advance(60)
        tags = {t_["Key"]: t_["Value"] for t_ in aws.client("ec2").describe_tags(
            Filters=[{"Name": "resource-id", "Values": [victim]}])["Tags"]}  # fmt: skip
        survivors = [observe(t, model.process(i).client_url) for i in ids[1:]]
        names = {victim: "victim", ids[1]: "survivor-1", ids[2]: "survivor-2"}
        return lost_outcome(
            names,
            victim_state=_state(fleet.instances[victim].phase),
            victim_running=model.process(victim).running,
            tag=tags.get("etcd-data-lost", ""),
            survivors=survivors,
            victim_peer=fleet.peer_url(fleet.instances[victim]),
        )
    finally:
        fleet.stop()
        aws.stop()


def _state(phase: str) -> str:
    """A simulated instance's phase as a launcher's state is named (the same words where they mean the same)."""
    return {"broken": "failed"}.get(phase, phase)


# -- the outcomes both worlds must give (tests/e2e/test_restore_real.py on real etcd, tests/local on the model) ----
RESTORED = {
    "restorer_state": "running",
    "restored_members": [{"name": "restorer", "peer_urls": ["<restorer>"], "published": True, "learner": False}],
    "keys_exactly_the_snapshot": True,
    "later_key_absent": True,
    "new_cluster_id": True,
    "revision_kept": True,
    "leader": True,
    # told the same, with an operator's file in its data dir: refused, nothing changed, never started
    "occupied": {"state": "refused", "data_dir_kept": True, "etcd_running": False},
}
LOST = {
    "victim_state": "data-lost",
    "victim_running": False,
    "tag_is_utc_iso8601": True,
    "survivors_see_a_leader": [True, True],
    "survivors_hold_every_key": [True, True],
    "one_cluster": True,
    "members": [["survivor-1", "other", True], ["survivor-2", "other", True], ["victim", "<victim>", True]],
}
