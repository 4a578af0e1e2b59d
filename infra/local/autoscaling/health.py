"""EC2-level deaths and the group's health check (``health_check_replacement``): ``aws.kill_instance``.

AWS: an instance that stopped or terminated at EC2 level fails the group's EC2 health check; Auto Scaling marks it
``Unhealthy`` and replaces it: a termination activity (which runs the group's terminate lifecycle hooks, although
the instance is already gone) while another activity launches the replacement.
https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-health-checks.html
https://docs.aws.amazon.com/autoscaling/ec2/userguide/replace-unhealthy-instance.html ("By default, Amazon EC2 Auto
Scaling creates a new scaling activity for terminating the unhealthy instance and then terminates it. While the
instance is terminating, another scaling activity launches a new instance.") The delay until the check notices is
``health_check_delay`` (s, drawn from ``aws.rng``). Only an ``InService`` instance is health-checked; one that dies
in another state leaves the group at once (no hooks).
"""

from __future__ import annotations

from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState

from infra.local.account import flag, seconds
from infra.local.autoscaling.actions import Actions
from infra.local.autoscaling.states import InstanceStates
from infra.local.autoscaling.transitions import Transitions


class HealthChecks:
    """The EC2 health checks of one account's groups."""

    def __init__(self, states: InstanceStates, actions: Actions, transitions: Transitions) -> None:
        self.states = states
        self.aws = states.aws
        self.actions = actions
        self.transitions = transitions

    def kill(self, instance_id: str) -> None:
        """``aws.kill_instance``: terminate an instance at the EC2 level (a crash, EC2 TerminateInstances).

        Without ``health_check_replacement`` its group drops and replaces it at once, no hooks; with it the group's
        health check finds it later and terminates it through its hooks (``killed``).
        """
        from moto.ec2.models import ec2_backends

        ec2_backends[self.aws.account][self.aws.region].terminate_instances([instance_id])
        if flag(self.aws, "health_check_replacement"):
            with self.states.lock:
                self.killed(instance_id)
                self.states.observe()
            return
        self.states.backend().notify_terminate_instances([instance_id])

    def killed(self, instance_id: str) -> None:
        """The instance died at EC2 level: its group's health check notices after ``health_check_delay``."""
        for group in list(self.states.backend().autoscaling_groups.values()):
            state = self.states.state_of(group, instance_id)
            if state is None:
                continue
            if state.lifecycle_state != "InService":
                self.actions.cancel([instance_id], "terminated")
                self.transitions.terminate_now(group, state)
                group.set_desired_capacity(group.desired_capacity)
                return
            when = self.states.now + seconds(self.aws, "health_check_delay", (10.0, 30.0))
            self.aws.clock.call_at(when, lambda g=group, s=state: self.check(g, s), work=True)
            return

    def check(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        """The health check: an instance still InService in its group is marked Unhealthy and replaced."""
        with self.states.lock:
            if not self.states.alive(group) or self.states.state_of(group, state.instance.id) is not state:
                return
            if state.lifecycle_state != "InService":
                return  # already leaving by another path
            state.health_status = "Unhealthy"
            self.transitions.begin_termination(group, state, cause="unhealthy")
            group.set_desired_capacity(group.desired_capacity)  # the replacement launches meanwhile
