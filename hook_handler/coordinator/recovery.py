"""Disaster recovery at the edge of a pass (``hook_handler.recovery`` decides): when no etcd member answers, whether
the record may found a cluster, must restore one onto a seed, or must hold its launches. The identity record says
``restoring`` (snapshot, token, seed) before the seed is told anything, so any later pass resumes the phase."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hook_handler.coordinator.cluster import ClusterRecord
from hook_handler.coordinator.context import Pass, Services
from hook_handler.decide import RecordInputs
from hook_handler.identity import ClusterState, Loss
from hook_handler.members import Instance, is_member
from hook_handler.recovery import Recovery, recovery_step, restore_token


class Restorer:
    def __init__(self, services: Services, cluster: ClusterRecord, coordinator: Any) -> None:
        self.s = services
        self.cluster = cluster
        self.coordinator = coordinator  # its ``snapshots`` (``backup.take.SnapshotTaker``) is set after construction

    def inputs(self, p: Pass, loss: Loss | None) -> RecordInputs:
        """What the record plan is told when no etcd member answered this pass (see ``recovery.recovery_step``)."""
        identity = self.cluster.read(p)
        launching = self._launching(p)
        ended = {i for i, inst in p.obs.instances.items() if inst.gone}
        if identity is not None and identity.seed and identity.seed not in p.obs.instances:
            ended.add(identity.seed)  # no longer described: long gone
        snapshot = None
        if identity is not None and identity.existed and identity.state is not ClusterState.RESTORING and loss:
            snapshot = self._newest(p)
        step = recovery_step(
            identity, loss, launching, ended=ended, mode=self.s.settings.disaster_recovery, snapshot=snapshot
        )
        if step.step is Recovery.NONE:
            return RecordInputs()
        if step.step is Recovery.HOLD:
            if launching:
                self.s.log.error("founding held: a cluster existed for this record", extra={"why": step.why})
                self.s.count("RecoveryHeld")
            return RecordInputs(hold_founding=True)
        assert identity is not None and step.seed is not None
        now = self.s.clock.now()
        if step.step is Recovery.BEGIN:
            assert snapshot is not None
            self.s.log.error("disaster recovery: restoring", extra={"snapshot": snapshot, "seed": step.seed})
            self.s.count("Restores")
            restoring = replace(
                identity, state=ClusterState.RESTORING, since=now, snapshot=snapshot, moving={},
                seed=step.seed, token=restore_token(identity, step.seed, now),
            )  # fmt: skip
            self.cluster.update(p, lambda _before: restoring)
        elif step.seed != identity.seed:  # the seed before never started: a new one, with a token never used
            self.s.log.warning("restore seed replaced", extra={"before": identity.seed, "seed": step.seed})
            reseeded = replace(identity, seed=step.seed, token=restore_token(identity, step.seed, now))
            self.cluster.update(p, lambda _before: reseeded)
        return RecordInputs(restore_seed=step.seed)

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
