"""Where each instance of one account's groups is in its lifecycle: its state (in the group or in the group's
warm pool), the timed steps between states, and what every part of the engine looks up on moto's groups."""

from __future__ import annotations

from collections.abc import Callable

from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    InstanceState,
    LifecycleHook,
    autoscaling_backends,
)

from infra.local.account import Account, seconds
from infra.local.autoscaling.describes import StaleDescribes


class InstanceStates:
    """The lifecycle states of one account's instances; every change is observed for the stale describes.

    ``bypass_hooks``: while True, instances enter and leave at once, no hook runs (group deletion; a test
    building a group "before any coordinator was attached"). ``terminating_since``: when each instance first
    entered a Terminating* state (for tests: no API shows it).
    """

    def __init__(self, aws: Account) -> None:
        self.aws = aws
        # The account's lock (held by every API call, infra.local.faults): a timer's change to an instance never
        # interleaves with a call reading it.
        self.lock = aws.lock
        self.warm: dict[str, list[InstanceState]] = {}  # group name -> its warm pool's instances
        self.describes = StaleDescribes(aws, self.warm)
        self.bypass_hooks = False
        self.terminating_since: dict[str, float] = {}

    @property
    def now(self) -> float:
        return self.aws.clock.now()

    def backend(self) -> AutoScalingBackend:
        return autoscaling_backends[self.aws.account][self.aws.region]

    def alive(self, group: FakeAutoScalingGroup) -> bool:
        """Whether ``group`` still exists (a timer may fire after DeleteAutoScalingGroup)."""
        return self.backend().autoscaling_groups.get(group.name) is group

    @staticmethod
    def hooks(group: FakeAutoScalingGroup, transition: str) -> list[LifecycleHook]:
        """The group's hooks of ``transition``, in creation order (they run one after the other)."""
        backend = group.autoscaling_backend
        return [
            h
            for h in backend.lifecycle_hooks.values()
            if h.auto_scaling_group_name == group.name and h.lifecycle_transition == transition
        ]

    def hook_named(self, group_name: str, hook_name: str) -> LifecycleHook | None:
        return self.backend().lifecycle_hooks.get(f"{group_name}_{hook_name}")

    @staticmethod
    def state_of(group: FakeAutoScalingGroup, instance_id: str) -> InstanceState | None:
        """The instance's state among the group's instances (not its warm pool)."""
        return next((s for s in group.instance_states if s.instance.id == instance_id), None)

    def locate(self, group: FakeAutoScalingGroup, instance_id: str) -> InstanceState | None:
        """The instance's state in the group or in its warm pool."""
        return self.state_of(group, instance_id) or next(
            (s for s in self.warm.get(group.name, []) if s.instance.id == instance_id), None
        )

    def observe(self) -> None:
        self.describes.observe()

    def set_state(self, state: InstanceState, lifecycle_state: str) -> None:
        """Change an instance's lifecycle state; invalidates transitions scheduled for the old one."""
        state.lifecycle_state = lifecycle_state
        if lifecycle_state.startswith("Terminating"):
            self.terminating_since.setdefault(state.instance.id, self.now)
        state._local_gen = getattr(state, "_local_gen", 0) + 1  # type: ignore[attr-defined]
        self.observe()

    def later(self, state: InstanceState, fn: Callable[[], None]) -> None:
        """Run ``fn`` after ``transition_delay`` unless the instance's state changed meanwhile.

        With ``transitional_states`` the states ``Pending``, ``Pending:Proceed``, ``Terminating``,
        ``Terminating:Proceed`` (and ``Warmed:Pending``/``Warmed:Pending:Proceed``,
        ``EnteringStandby``) last this long, as in AWS's lifecycle diagrams:
        https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-lifecycle.html and
        https://docs.aws.amazon.com/autoscaling/ec2/userguide/lifecycle-hooks-overview.html
        """
        generation = getattr(state, "_local_gen", 0)

        def fire() -> None:
            with self.lock:
                if getattr(state, "_local_gen", 0) == generation:
                    fn()

        self.aws.clock.call_at(self.now + seconds(self.aws, "transition_delay", (1.0, 5.0)), fire, work=True)
