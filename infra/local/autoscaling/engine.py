"""``Lifecycle``: the Auto Scaling engine of one emulated account (``aws._lifecycle``), made of one part per
concern; ``running()`` finds the running account's engine for the patched moto methods."""

from __future__ import annotations

from infra.local import state
from infra.local.account import Account
from infra.local.autoscaling.actions import Actions
from infra.local.autoscaling.addressing import PrivateAddresses
from infra.local.autoscaling.describes import StaleDescribes
from infra.local.autoscaling.health import HealthChecks
from infra.local.autoscaling.notifications import Notifier
from infra.local.autoscaling.standby import Standby
from infra.local.autoscaling.states import InstanceStates
from infra.local.autoscaling.transitions import Transitions
from infra.local.autoscaling.warm_pool import WarmPool


class Lifecycle:
    """Lifecycle actions, timers and notifications of one emulated account, one part per concern:

    ``states`` (where each instance is), ``describes`` (stale describes), ``notifier`` (events and hook
    messages), ``actions`` (lifecycle actions and their timers), ``pool`` (warm pools), ``transitions`` (the hook
    state machine), ``standby``, ``health`` (EC2 health checks), ``addresses`` (private IPs of new instances).
    """

    def __init__(self, aws: Account) -> None:
        self.aws = aws
        self.lock = aws.lock
        self.states = InstanceStates(aws)
        self.describes: StaleDescribes = self.states.describes
        self.notifier = Notifier(aws)
        self.actions = Actions(self.states, self.notifier)
        self.pool = WarmPool(self.states, self.actions)
        self.transitions = Transitions(self.states, self.actions, self.notifier, self.pool)
        self.actions.apply = self.transitions.apply
        self.standby = Standby(self.states)
        self.health = HealthChecks(self.states, self.actions, self.transitions)
        self.addresses = PrivateAddresses(getattr(aws, "instance_ips", None))

    # What tests read and set on ``aws._lifecycle``.
    @property
    def terminating_since(self) -> dict[str, float]:
        """When each instance first entered a Terminating* state (no API shows it)."""
        return self.states.terminating_since

    @property
    def bypass_hooks(self) -> bool:
        """While True, instances enter and leave at once, no hook runs."""
        return self.states.bypass_hooks

    @bypass_hooks.setter
    def bypass_hooks(self, value: bool) -> None:
        self.states.bypass_hooks = value


def running() -> Lifecycle | None:
    """The running emulator's engine, or None (the patched methods then behave as plain moto)."""
    aws = state.running()
    return None if aws is None else getattr(aws, "_lifecycle", None)
