"""Disaster recovery at the edge of a pass (``hook_handler.recovery`` decides): when no etcd member answers, whether
the record may found a cluster, must restore one onto a seed, or must hold its launches. The identity record says
``restoring`` (snapshot, token, seed) before the seed is told anything, so any later pass resumes the phase."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hook_handler.coordinator.cluster import ClusterRecord
from hook_handler.coordinator.context import Pass, Services
from hook_handler.decide import RecordInputs
from hook_handler.identity import ClusterIdentity, ClusterState, Loss
from hook_handler.members import Instance, is_member
from hook_handler.membership import EtcdView
from hook_handler.recovery import Recovery, RecoveryStep, recovery_step, restore_token


class Restorer:
    def __init__(self, services: Services, cluster: ClusterRecord, coordinator: Any) -> None:
        self.s = services
        self.cluster = cluster
        self.coordinator = coordinator  # its ``snapshots`` (``backup.take.SnapshotTaker``) is set after construction

    def inputs(self, p: Pass, loss: Loss | None, view: EtcdView | None) -> RecordInputs:
        """What the record plan is told when no etcd cluster with a quorum answered this pass, or a restore is under
        way (see ``recovery.recovery_step``). ``view``: what answered (survivors of the old cluster), if anything."""
        identity = self.cluster.read(p)
        launching = self._launching(p)
        ended = {i for i, inst in p.obs.instances.items() if inst.gone}
        if identity is not None and identity.seed and identity.seed not in p.obs.instances:
            ended.add(identity.seed)  # no longer described: long gone
        snapshot = None
        if identity is not None and identity.existed and identity.state is not ClusterState.RESTORING and loss:
            snapshot = None if loss.alive else self._newest(p)
        step = recovery_step(
            identity, loss, launching, ended=ended, mode=self.s.settings.disaster_recovery, snapshot=snapshot,
            survivors_answer=view is not None and bool(view.raft_index),
        )  # fmt: skip
        if step.step is Recovery.NONE:
            return RecordInputs()
        if step.step is Recovery.HOLD:
            if launching:
                self.s.log.error("founding held: a cluster existed for this record", extra={"why": step.why})
                self.s.count("RecoveryHeld")
            if identity is not None and identity.state is ClusterState.RESTORING:
                self._replace_old(p, identity)
            return RecordInputs(hold_founding=True)
        assert identity is not None
        if step.step is Recovery.BEGIN:
            identity = self._begin(p, identity, step, snapshot)
            if identity is None:
                return RecordInputs(hold_founding=True)
        elif step.seed != identity.seed:  # the seed before never started: a new one, with a token never used
            self.s.log.warning("restore seed replaced", extra={"before": identity.seed, "seed": step.seed})
            now = self.s.clock.now()
            reseeded = replace(identity, seed=step.seed or "", token=restore_token(identity, step.seed or "", now))
            self.cluster.update(p, lambda _before: reseeded)
        self._replace_old(p, identity)
        return RecordInputs(restore_seed=step.seed) if step.seed else RecordInputs(hold_founding=True)

    def _begin(
        self, p: Pass, identity: ClusterIdentity, step: RecoveryStep, snapshot: str | None
    ) -> ClusterIdentity | None:
        """The identity ``restoring``, written before anything else: the snapshot (the survivors' freshest copy when
        they answer), a new token, the seed. None: no snapshot could be had (the launches wait)."""
        key = snapshot
        if step.from_survivors:
            taker = self.coordinator.snapshots
            if taker is None:
                self.s.log.error("founding held: survivors' data, but no snapshot bucket to restore it through")
                self.s.count("RecoveryHeld")
                return None
            taken = taker.from_survivors(self.s.look.endpoints(p.obs), p.deadline)
            key = taken.newest.key if taken.newest is not None else None
        if not key:
            return None
        now = self.s.clock.now()
        seed = step.seed or ""
        self.s.log.error("disaster recovery: restoring", extra={"snapshot": key, "seed": seed, "why": step.why})
        self.s.count("Restores")
        restoring = replace(
            identity, state=ClusterState.RESTORING, since=now, snapshot=key, moving={}, seed=seed,
            token=restore_token(identity, seed or "next", now),
        )  # fmt: skip
        self.cluster.update(p, lambda _before: restoring)
        return restoring

    def _replace_old(self, p: Pass, identity: ClusterIdentity) -> None:
        """The old cluster's members still in service (survivors: their data is in the snapshot being restored, and
        they would never join the new cluster) are replaced by their group; the pass then looks again."""
        old = [
            inst for iid in sorted(identity.voters - {identity.seed})
            if (inst := p.obs.instances.get(iid)) is not None and inst.group in p.obs.served and not inst.gone
            and inst.lifecycle_state in ("InService", "Standby")
        ]  # fmt: skip
        if not old or p.report.dry_run:
            return
        for inst in old:
            self.s.asg.replace(inst.instance_id, p.deadline)
            self.s.count("SurvivorsReplaced")
            self.s.log.warning(
                "old cluster's member replaced: its data is in the snapshot being restored",
                extra={"instance": inst.instance_id, "snapshot": identity.snapshot},
            )
        p.obs = self.s.look.observe(set(), p.deadline)

    def go_tags(self, p: Pass) -> dict[str, str]:
        """What the seed is told with ``etcd-cluster-state=restore``: the snapshot and the new cluster's token."""
        from hook_handler.members import RESTORE_SNAPSHOT_TAG, RESTORE_TOKEN_TAG

        identity = self.cluster.read(p)
        assert identity is not None and identity.state is ClusterState.RESTORING
        return {RESTORE_SNAPSHOT_TAG: identity.snapshot, RESTORE_TOKEN_TAG: identity.token}

    def _launching(self, p: Pass) -> list[Instance]:
        obs, tags = p.obs, self.s.settings.instance_tags
        found = [
            i
            for i in obs.instances.values()
            if i.lifecycle_state == "Pending:Wait" and not i.gone and is_member(i, obs.served, tags)
        ]
        return sorted(found, key=lambda i: (i.launch_time or 0.0, i.instance_id))

    def _newest(self, p: Pass) -> str | None:
        taker = self.coordinator.snapshots
        if taker is None:
            return None
        newest = taker.store.newest(p.deadline)
        return newest.key if newest is not None else None
