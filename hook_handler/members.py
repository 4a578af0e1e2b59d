"""Who belongs: the instance model and the membership rule, on plain values.

A member is an instance that the Auto Scaling API places in a served group in a lifecycle
state that is joining or in service, that EC2 reports running, and that carries every tag the
selector asks for. Nothing here trusts an event: events only say which actions to complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

JOINING_STATES = frozenset({"Pending:Wait", "Pending:Proceed"})
# Standby keeps its etcd member and its place in the record: the instance still runs etcd (EnterStandby and
# ExitStandby run no hooks), and dropping it would shrink the cluster for good.
SERVING_STATES = frozenset({"InService", "Standby"})
# A launch completed CONTINUE (``Pending:Proceed``, 1-5 s on AWS before ``InService``) is a member in service: with
# etcd membership it was completed only as a healthy member. A pass that judges "is a cluster running / being
# founded" by lifecycle states must count it (a later launch told `new` beside it would found a second cluster).
IN_SERVICE_STATES = SERVING_STATES | {"Pending:Proceed"}
MEMBER_STATES = JOINING_STATES | SERVING_STATES
# The go signal (``etcd-cluster-state``): an instance that carries it was admitted. On its way into and out of
# Standby it passes EnteringStandby and, on ExitStandby, Pending (no hooks): still a member.
STATE_TAG = "etcd-cluster-state"
# The go signal's values (the start script refuses any other): found a cluster, join one (after its member add), or
# seed this member's data from a snapshot in S3 and start a one-member cluster the others then join.
CLUSTER_STATES = ("new", "existing", "restore")
# Written with ``etcd-cluster-state=restore`` in the same CreateTags: the snapshot's full S3 object key (as
# ``hook_handler.backup.naming`` makes them) and the restored cluster's new ``--initial-cluster-token``.
RESTORE_SNAPSHOT_TAG = "etcd-restore-snapshot"
RESTORE_TOKEN_TAG = "etcd-restore-token"
# Written by the instance (UTC ISO-8601 time): it carries the go signal, its data dir has no WAL, and the running
# cluster lists its member as started — its data is lost. It never starts etcd while the tag is there.
DATA_LOST_TAG = "etcd-data-lost"
# Written ``pending`` before the change that drops a leaver is sent, then its change id (see coordinator).
LEAVE_CHANGE_TAG = "etcd-leave-change"
ADMITTED_PASSING_STATES = frozenset({"EnteringStandby", "Pending"})
LEAVING_STATES = frozenset({"Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated"})
RUNNING_EC2_STATES = frozenset({"pending", "running"})
# A describe is eventually consistent: now and then it answers a view from before the last one. Within one pass
# (seconds), along a launch (Pending → Pending:Wait → Pending:Proceed → InService), a termination (InService →
# Terminating → Terminating:Wait → Terminating:Proceed) and their warm-pool forms, an answer that goes back to an
# earlier state is stale. Only these pairs count: the real ways back to Pending (ExitStandby, leaving a warm pool)
# pass through Standby or Warmed:* and take longer than a pass, and a re-launched instance has a new id.
_TERMINATING = frozenset({"Terminating", "Terminating:Wait", "Terminating:Proceed"})
_LATER_STATES = {
    "Pending": frozenset({"Pending:Wait", "Pending:Proceed"}),
    "Pending:Wait": frozenset({"Pending:Proceed"}),
    "InService": _TERMINATING,
    "Terminating": frozenset({"Terminating:Wait", "Terminating:Proceed"}),
    "Terminating:Wait": frozenset({"Terminating:Proceed"}),
    "Warmed:Pending": frozenset({"Warmed:Pending:Wait", "Warmed:Pending:Proceed"}),
    "Warmed:Pending:Wait": frozenset({"Warmed:Pending:Proceed"}),
    "Warmed:Terminating": frozenset({"Warmed:Terminating:Wait", "Warmed:Terminating:Proceed"}),
    "Warmed:Terminating:Wait": frozenset({"Warmed:Terminating:Proceed"}),
}


@dataclass(frozen=True)
class Instance:
    """What the APIs say about one instance.

    ``group``/``lifecycle_state`` come from Auto Scaling (None: not in any observed group);
    ``ec2_state``/addresses/tags from EC2 (None: EC2 does not know it).
    """

    instance_id: str
    group: str | None = None
    lifecycle_state: str | None = None
    ec2_state: str | None = None
    private_ip: str | None = None
    private_dns: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    launch_time: float | None = None

    @property
    def gone(self) -> bool:
        """EC2 no longer runs it (or never knew it)."""
        return self.ec2_state not in RUNNING_EC2_STATES


@dataclass(frozen=True)
class Group:
    """A served Auto Scaling group: its desired capacity and its instances."""

    name: str
    desired_capacity: int
    instance_ids: tuple[str, ...] = ()


def tags_match(tags: Mapping[str, str], selector: Iterable[tuple[str, str]]) -> bool:
    """True when every ``(key, value)`` of the selector is on the instance (value ``*``: any).

    >>> tags_match({"Project": "p", "etcd": "true"}, [("Project", "p"), ("etcd", "*")])
    True
    >>> tags_match({"Project": "q"}, [("Project", "p")])
    False
    """
    return all(key in tags and (value == "*" or tags[key] == value) for key, value in selector)


def is_member(instance: Instance, served_groups: Iterable[str], selector: Iterable[tuple[str, str]]) -> bool:
    """The membership rule (see module docstring)."""
    return (
        instance.group is not None
        and instance.group in set(served_groups)
        and (
            instance.lifecycle_state in MEMBER_STATES
            or (instance.lifecycle_state in ADMITTED_PASSING_STATES and STATE_TAG in instance.tags)
        )
        and not instance.gone
        and tags_match(instance.tags, selector)
    )


def never_older(fresh: Mapping[str, Instance], seen: Mapping[str, Instance]) -> dict[str, Instance]:
    """``fresh``, except that an instance a stale describe shows a step back along its launch or termination
    (``Pending`` after ``Pending:Wait`` was seen) keeps the state already seen."""
    out = dict(fresh)
    for iid, inst in fresh.items():
        before = seen.get(iid)
        if before is not None and before.lifecycle_state in _LATER_STATES.get(inst.lifecycle_state or "", ()):
            out[iid] = replace(inst, lifecycle_state=before.lifecycle_state)
    return out


def tag_seconds(value: str | None) -> float | None:
    """Epoch seconds written in a tag (``etcd-member-since``), None when absent or not a number.

    >>> tag_seconds("1700000000"), tag_seconds(None), tag_seconds("soon")
    (1700000000.0, None, None)
    """
    try:
        return float(value) if value else None
    except ValueError:
        return None
