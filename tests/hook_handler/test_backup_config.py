"""The snapshot settings (hook_handler.backup.config) and the round's rules (hook_handler.backup.take): bad values
name their setting; the decision to take or skip a snapshot."""

from __future__ import annotations

import pytest

from hook_handler.backup.config import SnapshotConfig
from hook_handler.backup.naming import Snapshot, cluster_hex, parse_key, snapshot_key
from hook_handler.backup.stream import EtcdStatus
from hook_handler.backup.take import decide, pick_member
from hook_handler.exceptions import SettingsError
from hook_handler.settings import SETTINGS_SPEC


def test_the_defaults_are_the_settings_tables_and_snapshots_are_off_without_a_bucket():
    config = SnapshotConfig.load({})
    spec = {s.name: s.default for s in SETTINGS_SPEC}
    assert not config.enabled
    assert config.prefix == spec["snapshot_prefix"] and config.interval_seconds == float(
        spec["snapshot_interval_seconds"]
    )
    assert SnapshotConfig.load({"snapshot_bucket": "etcd-snapshots-123"}).enabled


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("snapshot_bucket", "Bad_Bucket"),
        ("snapshot_bucket", "ab"),
        ("snapshot_bucket", "10.0.0.1"),
        ("snapshot_prefix", "/abs/"),
        ("snapshot_prefix", "a//b/"),
        ("snapshot_prefix", "spaces are not/"),
        ("snapshot_interval_seconds", "5"),
        ("snapshot_interval_seconds", "soon"),
        ("snapshot_kms_key", "my-key"),
        ("snapshot_retention", "weekly=4w"),
    ],
)
def test_a_bad_snapshot_setting_is_named_with_what_to_write(name, value):
    with pytest.raises(SettingsError) as info:
        SnapshotConfig.load({"snapshot_bucket": "etcd-snapshots", name: value})
    assert info.value.variable == name and "expected" in str(info.value)


@pytest.mark.parametrize(
    "key",
    ["alias/etcd-snapshots", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
     "1234abcd-12ab-34cd-56ef-1234567890ab", "arn:aws:kms:eu-west-1:123456789012:alias/etcd"],
)  # fmt: skip
def test_every_form_of_kms_key_is_accepted(key):
    assert SnapshotConfig.load({"snapshot_bucket": "b-1", "snapshot_kms_key": key}).kms_key == key


CLUSTER = "15118495548433857066"


def status(revision: int, cluster: str = CLUSTER, *, member: str = "1", leader: str = "1") -> EtcdStatus:
    return EtcdStatus(f"http://{member}:2379", cluster, member, revision, "3.5.1", 0, leader=leader)


def newest(revision: int, at: float, cluster: str = CLUSTER) -> Snapshot:
    return parse_key("p/", snapshot_key("p/", at, cluster, revision))


@pytest.mark.parametrize(
    ("snap", "now", "force", "take", "reason"),
    [
        (None, 100.0, False, True, "no snapshot yet"),
        ("same", 1000.0, True, False, "unchanged"),  # not even before a change: the same data
        ("moved", 130.0, False, False, "old (interval 60 s)"),
        ("moved", 130.0, True, True, "requested before a change"),
        ("moved", 161.0, False, True, "revision 5 -> 9"),
        ("other-cluster", 101.0, False, True, "of cluster"),
    ],
)
def test_a_snapshot_is_taken_when_due_and_never_of_unchanged_data(snap, now, force, take, reason):
    snapshot = {
        None: None,
        "same": newest(9, 100.0),
        "moved": newest(5, 100.0),
        "other-cluster": newest(9, 100.0, cluster="42"),
    }[snap]
    decision = decide(snapshot, status(9), now, 60.0, force=force)
    assert decision.take is take and reason in decision.reason


def test_the_source_is_a_voter_with_a_leader_freshest_first_followers_before_the_leader():
    leader, follower = status(10, member="1", leader="1"), status(10, member="2", leader="1")
    behind = status(9, member="3", leader="1")
    learner = EtcdStatus("http://4:2379", CLUSTER, "4", 11, "3.5.1", 0, leader="1", learner=True)
    alone = status(12, member="5", leader="0")
    assert pick_member([leader, behind, follower, learner, alone]) == follower
    assert pick_member([leader, behind]) == leader
    assert pick_member([alone, learner]) is None


def test_keys_list_newest_first_and_read_back():
    keys = [snapshot_key("p/", t, CLUSTER, r) for t, r in ((1000.0, 1), (2000.5, 2), (1500.25, 3))]
    assert sorted(keys) == [keys[1], keys[2], keys[0]]
    back = parse_key("p/", keys[1])
    assert (back.taken_at, back.revision, back.cluster_id) == (2000.5, 2, cluster_hex(CLUSTER))
    assert parse_key("p/", "p/README") is None and parse_key("q/", keys[0]) is None
