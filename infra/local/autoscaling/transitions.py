"""The hook state machine: how an instance enters a group (Pending -> Pending:Wait per launch hook -> InService)
and leaves it (Terminating -> Terminating:Wait per terminate hook -> Terminated), and what an action's result does.

Hooks of one transition run one after the other, in creation order. With ``transitional_states`` the states
``Pending``, ``Pending:Proceed``, ``Terminating`` and ``Terminating:Proceed`` last ``transition_delay`` seconds.
"""

from __future__ import annotations

from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState

from infra.local.account import flag
from infra.local.autoscaling.actions import Actions
from infra.local.autoscaling.model import LAUNCHING, TERMINATING, LifecycleActionRecord
from infra.local.autoscaling.notifications import Notifier
from infra.local.autoscaling.states import InstanceStates
from infra.local.autoscaling.warm_pool import WarmPool


class Transitions:
    """Launches into and terminations out of one account's groups, through their lifecycle hooks."""

    def __init__(self, states: InstanceStates, actions: Actions, notifier: Notifier, pool: WarmPool) -> None:
        self.states = states
        self.aws = states.aws
        self.actions = actions
        self.notifier = notifier
        self.pool = pool

    # -- launching --------------------------------------------------------------------
    def launched(self, group: FakeAutoScalingGroup, states: list[InstanceState], *, origin: str = "EC2") -> None:
        """New members of the group (from EC2, or from the warm pool): ``Pending`` first."""
        for state in states:
            if flag(self.aws, "transitional_states") and not self.states.bypass_hooks:
                self.states.set_state(state, "Pending")
                self.states.later(
                    state, lambda s=state: self.enter_launch(group, s, origin) if self.states.alive(group) else None
                )
            else:
                self.enter_launch(group, state, origin)

    def enter_launch(self, group: FakeAutoScalingGroup, state: InstanceState, origin: str = "EC2") -> None:
        hooks = self.states.hooks(group, LAUNCHING)
        if hooks and not self.states.bypass_hooks:
            self.states.set_state(state, "Pending:Wait")
            self.actions.start(group, state, hooks[0], LAUNCHING, origin, "AutoScalingGroup")
        else:
            self.in_service(group, state, origin)

    def in_service(self, group: FakeAutoScalingGroup, state: InstanceState, origin: str = "EC2") -> None:
        self.states.set_state(state, "InService")
        self.notifier.activity(group, state, "EC2 Instance Launch Successful", origin=origin)

    # -- terminating ------------------------------------------------------------------
    def begin_termination(self, group: FakeAutoScalingGroup, state: InstanceState, *, cause: str = "scale-in") -> None:
        """Scale-in / TerminateInstanceInAutoScalingGroup / unhealthy: Terminating:Wait per hook, or gone.

        ``cause`` is ``scale-in`` (SetDesiredCapacity & co: may return to the warm pool with
        ``ReuseOnScaleIn``), ``terminate`` (TerminateInstanceInAutoScalingGroup) or ``unhealthy``.
        """
        self.actions.cancel([state.instance.id], "terminated")
        if self.states.bypass_hooks:
            self.terminate_now(group, state)
            return
        if cause == "scale-in" and self.pool.reuse_on_scale_in(group):
            self.pool.take_back(group, state)
            return
        if flag(self.aws, "transitional_states"):
            self.states.set_state(state, "Terminating")
            self.states.later(state, lambda: self.enter_terminate(group, state))
        else:
            self.enter_terminate(group, state)

    def enter_terminate(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        hooks = self.states.hooks(group, TERMINATING)
        if hooks and self.states.alive(group):
            self.states.set_state(state, "Terminating:Wait")
            self.actions.start(group, state, hooks[0], TERMINATING, "AutoScalingGroup", "EC2")
        else:
            self.terminate_now(group, state)

    def terminate_now(self, group: FakeAutoScalingGroup, state: InstanceState, *, event: bool = True) -> None:
        """Out of the group (and its warm pool) and terminated in EC2."""
        self.states.set_state(state, "Terminated")
        group.instance_states = [s for s in group.instance_states if s is not state]
        warm = self.states.warm
        if group.name in warm:
            warm[group.name] = [s for s in warm[group.name] if s is not state]
        if state.instance.state != "terminated":
            group.autoscaling_backend.ec2_backend.terminate_instances([state.instance.id])
        if event:
            self.notifier.activity(group, state, "EC2 Instance Terminate Successful")
        self.states.observe()

    # -- results ----------------------------------------------------------------------
    def apply(self, action: LifecycleActionRecord, result: str) -> None:
        """An action ended with ``result``: the next hook of the transition, InService, Terminated, or abandon +
        replace; into the warm pool for an action whose destination is the pool."""
        group = self.states.backend().autoscaling_groups.get(action.group)
        state = self.states.locate(group, action.instance_id) if group is not None else None
        if group is None or state is None:
            return
        hooks = self.states.hooks(group, action.transition)
        names = [h.name for h in hooks]
        following = hooks[names.index(action.hook) + 1 :] if action.hook in names else []
        if result == "CONTINUE" and following:
            self.actions.start(group, state, following[0], action.transition, action.origin, action.destination)
        elif action.destination == "WarmPool":
            self._into_pool(group, state, action, result)
        elif action.transition == LAUNCHING:
            self._launch_result(group, state, action, result)
        elif flag(self.aws, "transitional_states"):
            self.states.set_state(state, "Terminating:Proceed")
            self.states.later(state, lambda: self.terminate_now(group, state))
        else:
            self.terminate_now(group, state)

    def _into_pool(
        self, group: FakeAutoScalingGroup, state: InstanceState, action: LifecycleActionRecord, result: str
    ) -> None:
        """The last hook on the way into the warm pool (a launch into it, or a return on scale-in)."""
        if result == "ABANDON" and action.transition == LAUNCHING:
            self.terminate_now(group, state, event=False)
            self.pool.refill(group)
        else:
            self.pool.warmed(group, state)

    def _launch_result(
        self, group: FakeAutoScalingGroup, state: InstanceState, action: LifecycleActionRecord, result: str
    ) -> None:
        """The last launch hook: CONTINUE -> InService (through Pending:Proceed); ABANDON -> terminated, replaced."""
        if result == "CONTINUE":
            if flag(self.aws, "transitional_states"):
                self.states.set_state(state, "Pending:Proceed")
                self.states.later(
                    state, lambda: self.in_service(group, state, action.origin) if self.states.alive(group) else None
                )
            else:
                self.in_service(group, state, action.origin)
            return
        reason = (
            "Instance failed to complete user's Lifecycle Action: Lifecycle Action with token "
            f"{action.token} was abandoned: Lifecycle Action Completed with ABANDON Result"
        )
        self.notifier.activity(group, state, "EC2 Instance Launch Unsuccessful", status="Cancelled", message=reason)
        self.terminate_now(group, state, event=False)
        group.set_desired_capacity(group.desired_capacity)  # the group replaces it
