"""Standby (``standby_states``): EnterStandby takes an InService instance to EnteringStandby then Standby;
ExitStandby takes it to Pending then InService.

https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-enter-exit-standby.html. No lifecycle hook runs on either:
AWS's answer in https://github.com/aws-samples/aws-codedeploy-samples/issues/30 ("lifecycle hooks were applied to
spot instances when they were attached ... or when they were exiting Standby. That was incorrect behavior as
lifecycle hooks should only be applied to newly launched instances. The fix for this issue has been deployed to all
public regions as of Nov 3 [2015]").
"""

from __future__ import annotations

from moto.autoscaling.models import InstanceState

from infra.local.autoscaling.states import InstanceStates


class Standby:
    """EnterStandby and ExitStandby of one account's instances (moto moves them in and out of the group)."""

    def __init__(self, states: InstanceStates) -> None:
        self.states = states

    def enter(self, states: list[InstanceState]) -> None:
        for state in states:
            self.states.set_state(state, "EnteringStandby")
            self.states.later(state, lambda s=state: self.states.set_state(s, "Standby"))

    def exit(self, states: list[InstanceState]) -> None:
        for state in states:
            self.states.set_state(state, "Pending")
            self.states.later(state, lambda s=state: self.states.set_state(s, "InService"))
