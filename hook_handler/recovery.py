"""Disaster recovery's decisions, pure: whether a pass that finds no etcd member answering may found a cluster,
must restore one, or must hold its launches; and which launching instance seeds a restore.

The facts come from the look: the cluster identity record (``hook_handler.identity``: a cluster existed, its
voters), what EC2 says about the voters' instances (``identity.lost_for_good``), the launching instances, the
newest snapshot. The phase itself (``coordinator.recovery``) writes ``restoring`` into the identity record before
the go signal, so a pass killed anywhere resumes it:

1. ``BEGIN``: the identity says a cluster existed, no member answers, and no voter's instance runs any more — its
   data is only in the snapshots. The identity becomes ``restoring`` (the newest snapshot's key, a new cluster
   token, a seed) by compare-and-swap.
2. ``SEED``: the record lists the seed alone (the other launches held); once it is INSYNC the seed is told
   ``restore`` with the snapshot and the token in the same CreateTags; it restores the snapshot as the one member of
   a new cluster and starts.
3. Once the seed's etcd is healthy with a leader, the identity becomes ``running`` with the new cluster's ID and the
   seed's launch completes; the held launches join it as any joiner does. A seed that never starts is abandoned
   and the next launching instance seeds, with a new token.

Where voters' instances still run but too few for a quorum (proven from EC2), their data is the freshest there is:
a survivor that answers gives its snapshot (etcd serves one without quorum; the one with the highest revision, unless
the bucket's newest is as fresh), which is restored the same way, and the survivors are replaced by the group
(their data is in the snapshot; they would never join the new cluster). Survivors that do not answer hold the
launches: their disks may hold newer data than any snapshot.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from hook_handler.identity import ClusterIdentity, ClusterState, Loss
from hook_handler.members import Instance


class Recovery(StrEnum):
    NONE = "none"  # nothing to recover here: found (no cluster existed) or run as usual
    BEGIN = "begin"  # write the identity ``restoring`` with the newest snapshot and a seed
    SEED = "seed"  # restoring: the record lists the seed alone; the seed is told ``restore``
    HOLD = "hold"  # a cluster existed and cannot be restored now: launches wait, nothing is founded


@dataclass(frozen=True)
class RecoveryStep:
    step: Recovery
    seed: str | None = None
    why: str = ""
    from_survivors: bool = False  # BEGIN: the survivors' data (their snapshot, or S3's newest if as fresh)


def recovery_step(
    identity: ClusterIdentity | None,
    loss: Loss | None,
    launching: Sequence[Instance],
    *,
    ended: Collection[str],
    mode: str,
    snapshot: str | None,
    survivors_answer: bool = False,
) -> RecoveryStep:
    """What a pass whose etcd look found no cluster with a quorum does about founding (see the module docstring).
    ``launching``: the served groups' instances waiting in their launch hook, oldest first; ``ended``: instance
    ids EC2 reports ended (or no longer describes); ``snapshot``: the newest snapshot's key (None: none, or no
    bucket); ``mode``: the ``disaster_recovery`` setting; ``survivors_answer``: a surviving member's etcd answers
    (its snapshot can be taken without quorum).

    >>> i = ClusterIdentity(ClusterState.RUNNING, 0.0, "c1", frozenset({"i-1"}))
    >>> recovery_step(i, Loss((), "0 of 1"), [Instance("i-2")], ended={"i-1"}, mode="auto", snapshot="k").step
    <Recovery.BEGIN: 'begin'>
    >>> recovery_step(None, None, [Instance("i-2")], ended=(), mode="auto", snapshot=None).step
    <Recovery.NONE: 'none'>
    """
    if identity is None or not identity.existed:
        return RecoveryStep(Recovery.NONE, why="no cluster has existed for this record: a founding may go on")
    if identity.state is ClusterState.RESTORING:
        seed = choose_seed(identity, launching, ended)
        if seed is None:
            return RecoveryStep(Recovery.HOLD, why="restoring: no launching instance to seed the restore yet")
        return RecoveryStep(Recovery.SEED, seed, f"restoring {identity.snapshot} onto {seed}")
    if loss is None:
        return RecoveryStep(Recovery.HOLD, why="a cluster existed and its quorum is not proven lost for good")
    if mode != "auto":
        return RecoveryStep(Recovery.HOLD, why="quorum lost for good and disaster_recovery is manual: restore by hand")
    seed = launching[0].instance_id if launching else None
    if loss.alive:
        if not survivors_answer:
            return RecoveryStep(
                Recovery.HOLD,
                why=f"quorum lost for good; survivors {', '.join(loss.alive)} do not answer and their disks may hold "
                "newer data than any snapshot: start their etcd, or restore by hand",
            )
        why = f"quorum lost for good: restoring the survivors' data ({', '.join(loss.alive)})"
        return RecoveryStep(Recovery.BEGIN, seed, why, from_survivors=True)
    if not snapshot:
        return RecoveryStep(Recovery.HOLD, why="every voter is gone and there is no snapshot to restore")
    if seed is None:
        return RecoveryStep(Recovery.HOLD, why="every voter is gone; no launching instance to seed a restore yet")
    return RecoveryStep(Recovery.BEGIN, seed, f"every voter is gone: restoring {snapshot}")


def choose_seed(identity: ClusterIdentity, launching: Sequence[Instance], ended: Collection[str]) -> str | None:
    """The restore's seed: the one the identity names while its instance still launches (or has not ended: it may
    be restoring right now), else the oldest launching instance."""
    ids = [i.instance_id for i in launching]
    if identity.seed and (identity.seed in ids or identity.seed not in ended):
        return identity.seed
    return ids[0] if ids else None


def restore_token(identity: ClusterIdentity, seed: str, now: float) -> str:
    """A new ``--initial-cluster-token`` for a restore onto ``seed``: never the founding token, never reused.

    >>> restore_token(ClusterIdentity(ClusterState.RUNNING, 0.0, "d1cf"), "i-0abc", 1765152000.0)
    'etcd-restore-1765152000-i-0abc'
    """
    return f"etcd-restore-{int(now)}-{seed}"


@dataclass(frozen=True)
class RestoreCheck:
    """Whether an operator's restore may go on (``refused``: why not, and what to do) and what it destroys."""

    refused: str = ""
    destroys: str = ""


def restore_check(
    identity: ClusterIdentity | None,
    answering: Sequence[str],
    loss: Loss | None,
    running: Sequence[str],
    *,
    force: bool,
) -> RestoreCheck:
    """The checks of ``python -m hook_handler restore`` before it writes anything. ``answering``: etcd members that
    answered the look (any cluster); ``loss``: quorum proven lost for good (``identity.lost_for_good``); ``running``:
    instances of the identity's voters that EC2 does not report ended.

    A restore never replaces a cluster whose members answer: the coordinator restores only where none does. Where
    none answers but voters' instances still run (etcd silent, or stopped), their disks may hold writes newer than
    any snapshot: refused unless ``force``, which says what it destroys.

    >>> restore_check(None, [], None, [], force=False).refused
    ''
    >>> i = ClusterIdentity(ClusterState.RUNNING, 0.0, "c1", frozenset({"i-1", "i-2", "i-3"}))
    >>> restore_check(i, [], None, ["i-1", "i-2"], force=False).refused[:40]
    'the voters of cluster c1 still run on i-'
    """
    if answering:
        return RestoreCheck(
            f"etcd members answer ({', '.join(answering)}): a restore replaces a cluster only when none of its "
            "members answers. To replace a cluster that answers, take a snapshot of it first (the next scheduled "
            "reconcile does), terminate its instances, then restore; nothing was changed"
        )
    if identity is not None and identity.state is ClusterState.RESTORING and not force:
        return RestoreCheck(
            f"a restore of {identity.snapshot} onto {identity.seed or 'the next launch'} is under way; --force "
            "starts over with the snapshot given; nothing was changed"
        )
    if identity is None or not identity.existed or (loss is not None and not loss.alive):
        return RestoreCheck()
    survivors = ", ".join(sorted(running)) or "instances EC2 still describes"
    destroys = (
        f"the data on {survivors} (voters of cluster {identity.cluster_id or '?'} whose etcd does not answer): every "
        "write acknowledged after the snapshot"
    )
    if force:
        return RestoreCheck(destroys=destroys)
    return RestoreCheck(
        f"the voters of cluster {identity.cluster_id or '?'} still run on {survivors}: their disks may hold writes "
        "newer than any snapshot. Start their etcd, or take a snapshot of one (etcdctl snapshot save serves without "
        "quorum) into the bucket, or pass --force to destroy them; nothing was changed"
    )
