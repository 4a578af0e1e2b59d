"""Taking a snapshot: pick a member, skip when nothing changed, stream it to S3, prune, report its age.

``decide`` is the rule (pure); ``SnapshotTaker.run`` does one round of it: the members' status, the newest
snapshot (one short listing), then — when due — etcd's snapshot stream (gRPC, or the JSON gateway) straight
into a multipart upload, then retention. The ``SnapshotAgeSeconds`` metric (the newest snapshot's age, 0 right
after one was taken) is added on every round that could list the bucket, so an alarm on it also fires when
rounds stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hook_handler.backup.grpc import GrpcSnapshot
from hook_handler.backup.naming import Snapshot, cluster_hex
from hook_handler.backup.retention import Tier
from hook_handler.backup.store import SnapshotMeta, SnapshotStore
from hook_handler.backup.stream import EtcdStatus, GatewaySnapshot, ReadAhead, read_status
from hook_handler.clock import Clock
from hook_handler.etcd import EtcdTlsError, HttpTransport, MembershipError
from hook_handler.telemetry import MetricUnit

AGE_METRIC = "SnapshotAgeSeconds"
# Where the snapshot's bytes come from: etcd's gRPC (as etcdctl reads it; the default: several times less of
# etcd's CPU and about etcdctl's speed) or its JSON gateway (the transport the rest of the coordinator uses).
SOURCES: dict[str, type[GrpcSnapshot] | type[GatewaySnapshot]] = {"grpc": GrpcSnapshot, "gateway": GatewaySnapshot}


@dataclass(frozen=True)
class Decision:
    take: bool
    reason: str


def decide(newest: Snapshot | None, status: EtcdStatus, now: float, interval: float, *, force: bool) -> Decision:
    """Whether to take a snapshot now. Never when the newest one is of the same cluster at the same revision
    (the data is the same: not even when ``force``d before a change); else when there is none, when it is of
    another cluster, when ``force``d, or once ``interval`` seconds have passed since it.

    >>> s = EtcdStatus("e", "15118495548433857066", "1", 452, "3.5.1", 0)
    >>> newest = Snapshot("k", 1000.0, "d1cfaf999eb97a2a", 452)
    >>> decide(newest, s, 5000.0, 60, force=True).take, decide(None, s, 5000.0, 60, force=False).reason
    (False, 'no snapshot yet')
    """
    if newest is None:
        return Decision(True, "no snapshot yet")
    if newest.cluster_id != cluster_hex(status.cluster_id):
        return Decision(True, f"the newest snapshot is of cluster {newest.cluster_id}")
    if newest.revision == status.revision:
        return Decision(False, f"revision {status.revision} unchanged since the newest snapshot")
    if force:
        return Decision(True, "requested before a change")
    if now - newest.taken_at >= interval:
        return Decision(True, f"revision {newest.revision} -> {status.revision}")
    return Decision(False, f"the newest snapshot is {now - newest.taken_at:.0f} s old (interval {interval:g} s)")


def pick_member(statuses: Sequence[EtcdStatus]) -> EtcdStatus | None:
    """The member to take the snapshot from: a voter that sees a leader, with the highest revision (the
    freshest data), a follower before the leader (the snapshot's disk and network load stays off the leader).

    >>> a = EtcdStatus("a", "1", "7", 10, "3.5.1", 0, leader="7")
    >>> b = EtcdStatus("b", "1", "8", 10, "3.5.1", 0, leader="7")
    >>> pick_member([a, b]).endpoint, pick_member([EtcdStatus("c", "1", "9", 11, "3.5.1", 0)])
    ('b', None)
    """
    usable = [s for s in statuses if s.has_leader and not s.learner]
    if not usable:
        return None
    return max(usable, key=lambda s: (s.revision, s.leader != s.member_id))


@dataclass(frozen=True)
class Round:
    """What one round did: ``taken`` (the new snapshot), or why not; the newest snapshot after it."""

    taken: bool
    reason: str
    newest: Snapshot | None
    endpoint: str = ""
    db_size: int = 0
    sha256: str = ""
    seconds: float = 0.0
    pruned: tuple[str, ...] = ()


class SnapshotTaker:
    """One snapshot round against the given client endpoints; see the module docstring."""

    def __init__(
        self,
        store: SnapshotStore,
        transport: HttpTransport,
        clock: Clock,
        *,
        interval: float,
        tiers: tuple[Tier, ...],
        logger: Any = None,
        metrics: Any = None,
        status_timeout: float = 2.0,
        read_timeout: float = 30.0,
        protocol: str = "grpc",
    ) -> None:
        if protocol not in SOURCES:
            raise ValueError(f"protocol {protocol!r}: grpc or gateway")
        self.store = store
        self.transport = transport
        self.clock = clock
        self.interval = interval
        self.tiers = tiers
        self.logger = logger
        self.metrics = metrics
        self.status_timeout = status_timeout
        self.read_timeout = read_timeout
        self.source = SOURCES[protocol]

    def run(self, endpoints: Sequence[str], deadline: float, *, force: bool = False) -> Round:
        """Take a snapshot if one is due (``force``: unless the data is unchanged), then prune."""
        member = pick_member(self._statuses(endpoints))
        newest = self.store.newest(deadline)
        if member is None:
            self._age(newest)
            raise MembershipError(f"no etcd member with a leader answered among {list(endpoints)}: no snapshot taken")
        now = self.clock.now()
        decision = decide(newest, member, now, self.interval, force=force)
        if not decision.take:
            self._age(newest)
            self._log("snapshot skipped", reason=decision.reason, newest=newest.key if newest else None)
            return Round(False, decision.reason, newest, member.endpoint)
        meta = SnapshotMeta(now, member.cluster_id, member.member_id, member.revision, member.version)
        with self.source(self.transport, member.endpoint, read_timeout=self.read_timeout) as source:
            # etcd is read one part ahead of the upload: memory stays about two parts
            uploaded = self.store.upload(ReadAhead(source.stream, self.store.part_size), meta, deadline)
        seconds = self.clock.now() - now
        self._age(uploaded.snapshot)
        self._log(
            "snapshot taken",
            key=uploaded.snapshot.key,
            endpoint=member.endpoint,
            revision=member.revision,
            db_size=uploaded.db_size,
            sha256=uploaded.sha256,
            parts=uploaded.parts,
            seconds=round(seconds, 3),
            reason=decision.reason,
        )
        pruned = self._prune(deadline)
        return Round(
            True, decision.reason, uploaded.snapshot, member.endpoint, uploaded.db_size, uploaded.sha256, seconds,
            tuple(s.key for s in pruned),
        )  # fmt: skip

    def from_survivors(self, endpoints: Sequence[str], deadline: float) -> Round:
        """Disaster recovery's source: the freshest copy there is. Every member that answers, leader or not (etcd
        serves its snapshot without quorum), the one with the highest revision; its snapshot is taken unless the
        newest in the bucket is of the same cluster at that revision or later (then that one is the freshest).
        ``MembershipError`` when no member answers."""
        statuses = [s for s in self._statuses(endpoints) if not s.learner]
        newest = self.store.newest(deadline)
        if not statuses:
            raise MembershipError(f"no etcd member answered among {list(endpoints)}: no survivor's snapshot")
        member = max(statuses, key=lambda s: s.revision)
        same = newest is not None and newest.cluster_id == cluster_hex(member.cluster_id)
        if same and newest is not None and newest.revision >= member.revision:
            reason = f"the bucket's newest (revision {newest.revision}) is as fresh as the survivors"
            return Round(False, reason, newest, member.endpoint)
        now = self.clock.now()
        meta = SnapshotMeta(now, member.cluster_id, member.member_id, member.revision, member.version)
        with self.source(self.transport, member.endpoint, read_timeout=self.read_timeout) as source:
            uploaded = self.store.upload(ReadAhead(source.stream, self.store.part_size), meta, deadline)
        self._log("survivor's snapshot taken", key=uploaded.snapshot.key, endpoint=member.endpoint,
                  revision=member.revision)  # fmt: skip
        return Round(True, f"survivor at revision {member.revision}", uploaded.snapshot, member.endpoint,
                     uploaded.db_size, uploaded.sha256, self.clock.now() - now)  # fmt: skip

    def _statuses(self, endpoints: Sequence[str]) -> list[EtcdStatus]:
        statuses: list[EtcdStatus] = []
        for endpoint in endpoints:
            try:
                statuses.append(read_status(self.transport, endpoint, self.status_timeout))
            except (MembershipError, EtcdTlsError) as exc:
                self._log("snapshot: member did not answer", endpoint=endpoint, error=str(exc)[:200])
        return statuses

    def _prune(self, deadline: float) -> list[Snapshot]:
        try:
            pruned = self.store.prune(self.clock.now(), self.tiers, deadline)
        except Exception as exc:  # noqa: BLE001 - the snapshot is stored; pruning is tried again next round
            self._log("snapshot retention failed", error=str(exc)[:300])
            return []
        if pruned:
            self._log("snapshots pruned", keys=[s.key for s in pruned])
        return pruned

    def _age(self, newest: Snapshot | None) -> None:
        if self.metrics is None or newest is None:
            return  # no snapshot at all: no datum, which the alarm treats as breaching
        self.metrics.add_metric(
            name=AGE_METRIC, unit=MetricUnit.Seconds, value=max(0.0, self.clock.now() - newest.taken_at)
        )

    def _log(self, message: str, **fields: Any) -> None:
        if self.logger is not None:
            self.logger.info(message, extra=fields)


__all__ = ["AGE_METRIC", "Decision", "Round", "SnapshotTaker", "decide", "pick_member", "read_status"]
