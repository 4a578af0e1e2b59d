"""Warm pools (``warm_pools``): PutWarmPool fills a pool of prepared instances beside the group, scale-out takes
ready ones first, and with ReuseOnScaleIn a scaled-in instance goes back to the pool.

https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-warm-pools.html
https://docs.aws.amazon.com/autoscaling/ec2/userguide/warm-pool-instance-lifecycle.html: a launch hook pauses a new
instance at Warmed:Pending:Wait (Origin EC2, Destination WarmPool) and again at Pending:Wait when it leaves the pool
(Origin WarmPool, Destination AutoScalingGroup); with ReuseOnScaleIn a scaled-in instance returning to the pool
pauses at Warmed:Pending:Wait for the *terminate* hook (Origin AutoScalingGroup, Destination WarmPool); once the
pool is empty, instances launch straight into the group (Pending:Wait only).
"""

from __future__ import annotations

from typing import Any

from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState

from infra.local.account import flag
from infra.local.autoscaling.actions import Actions
from infra.local.autoscaling.model import LAUNCHING, TERMINATING, WARMED_READY
from infra.local.autoscaling.patching import original
from infra.local.autoscaling.states import InstanceStates


class WarmPool:
    """The warm pools of one account's groups (members in ``states.warm``)."""

    def __init__(self, states: InstanceStates, actions: Actions) -> None:
        self.states = states
        self.aws = states.aws
        self.actions = actions

    def of(self, group: FakeAutoScalingGroup) -> Any:
        """The group's warm pool configuration, or None (none, or ``warm_pools`` off)."""
        return getattr(group, "warm_pool", None) if flag(self.aws, "warm_pools") else None

    def reuse_on_scale_in(self, group: FakeAutoScalingGroup) -> bool:
        pool = self.of(group)
        policy = (getattr(pool, "instance_reuse_policy", None) or {}) if pool is not None else {}
        return str(policy.get("ReuseOnScaleIn", False)).lower() == "true"

    def target(self, group: FakeAutoScalingGroup) -> int:
        """Warm pool size: MaxGroupPreparedCapacity (default MaxSize) - DesiredCapacity, at least MinSize."""
        pool = self.of(group)
        if pool is None:
            return 0
        prepared = pool.max_group_prepared_capacity
        prepared = int(prepared) if prepared not in (None, "", -1, "-1") else int(group.max_size or 0)
        return max(int(pool.min_size or 0), prepared - int(group.desired_capacity or 0))

    def refill(self, group: FakeAutoScalingGroup) -> None:
        """Launch instances into the warm pool until it has ``target`` members."""
        if self.of(group) is None or self.states.bypass_hooks or not self.states.alive(group):
            return
        members = self.states.warm.setdefault(group.name, [])
        missing = self.target(group) - len(members)
        if missing <= 0:
            return
        before = set(map(id, group.instance_states))
        launch = original(FakeAutoScalingGroup, "replace_autoscaling_group_instances")
        launch(group, missing, group.get_propagated_tags())
        new = [s for s in group.instance_states if id(s) not in before]
        group.instance_states = [s for s in group.instance_states if id(s) in before]
        members.extend(new)
        for state in new:
            if flag(self.aws, "transitional_states"):
                self.states.set_state(state, "Warmed:Pending")
                self.states.later(state, lambda s=state: self.enter(group, s) if self.states.alive(group) else None)
            else:
                self.enter(group, state)

    def enter(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        """A new pool instance: the launch hook (Warmed:Pending:Wait), else warmed."""
        hooks = self.states.hooks(group, LAUNCHING)
        if hooks:
            self.states.set_state(state, "Warmed:Pending:Wait")
            self.actions.start(group, state, hooks[0], LAUNCHING, "EC2", "WarmPool")
        else:
            self.warmed(group, state)

    def warmed(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        """The pool's PoolState: ``Warmed:Stopped`` (EC2 stopped), ``Warmed:Running``, ``Warmed:Hibernated``."""
        pool = self.of(group)
        pool_state = (getattr(pool, "pool_state", None) or "Stopped") if pool is not None else "Stopped"

        def settle() -> None:
            if state.instance.state == "running" and pool_state != "Running":
                state.instance.stop()
            self.states.set_state(state, f"Warmed:{pool_state}")

        if flag(self.aws, "transitional_states") and state.lifecycle_state == "Warmed:Pending:Wait":
            self.states.set_state(state, "Warmed:Pending:Proceed")
            self.states.later(state, settle)
        else:
            settle()

    def take_back(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        """Scale-in with ``ReuseOnScaleIn``: back to the pool via the terminate hook (Warmed:Pending:Wait)."""
        group.instance_states = [s for s in group.instance_states if s is not state]
        self.states.warm.setdefault(group.name, []).append(state)
        hooks = self.states.hooks(group, TERMINATING)
        if hooks:
            self.states.set_state(state, "Warmed:Pending:Wait")
            self.actions.start(group, state, hooks[0], TERMINATING, "AutoScalingGroup", "WarmPool")
        else:
            self.warmed(group, state)

    def take(self, group: FakeAutoScalingGroup, count: int) -> list[InstanceState]:
        """Scale-out: move up to ``count`` ready pool instances into the group (EC2 starts them); returns them,
        for the caller to launch into the group."""
        if self.of(group) is None or count <= 0:
            return []
        ready = [s for s in self.states.warm.get(group.name, []) if s.lifecycle_state in WARMED_READY][:count]
        if not ready:
            return []
        self.states.warm[group.name] = [s for s in self.states.warm[group.name] if s not in ready]
        group.instance_states.extend(ready)
        for state in ready:
            if state.instance.state != "running":
                state.instance.start()
        return ready

    def delete(self, group: FakeAutoScalingGroup) -> None:
        """DeleteWarmPool: the pool's instances are terminated (their lifecycle actions end)."""
        members = self.states.warm.pop(group.name, [])
        self.actions.cancel([s.instance.id for s in members], "terminated")
        for state in members:
            self.states.set_state(state, "Warmed:Terminated")
            if state.instance.state != "terminated":
                group.autoscaling_backend.ec2_backend.terminate_instances([state.instance.id])
