"""One answer of the group's custom termination policy: look at the group and at etcd, within AWS's two seconds,
and let ``termination.choose`` decide. Reads only (DescribeAutoScalingGroups, DescribeInstances, etcd's member
list and each member's status): it writes nothing, removes no member and completes no lifecycle action.

A look that cannot finish (etcd unreachable, an AWS call failing, the time budget spent) answers no instance: the
group asks again shortly (AWS: "waits a short time before invoking your function again"), and nothing that could
cost quorum goes on a guess.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hook_handler.clock import Clock
from hook_handler.etcd import EtcdTlsError, Membership, MembershipError
from hook_handler.exceptions import DeadlineReached
from hook_handler.lifecycle import AutoScaling
from hook_handler.look import Looker
from hook_handler.members import Instance
from hook_handler.membership import identify
from hook_handler.retry import RetryPolicy
from hook_handler.settings import Settings
from hook_handler.termination import PolicyRequest, Verdict, choose, nothing, parse_request, unchanged

# AWS: "The maximum run time for your Lambda function is two seconds (2000 milliseconds)". The look stops this
# long before the invocation's own deadline, and never takes longer than BUDGET_SECONDS.
BUDGET_SECONDS = 1.5
MARGIN_SECONDS = 0.3
# One member's status (etcd.Membership asks no shorter): a LAN round trip is milliseconds; a silent member
# costs this much.
STATUS_SECONDS = 0.5


class TerminationPolicy:
    """The policy's edge: clients in, an answer out. ``answer`` never raises for etcd or AWS trouble."""

    def __init__(
        self,
        settings: Settings,
        autoscaling: Any,
        ec2: Any,
        clock: Clock,
        *,
        membership: Membership | None,
        logger: Any,
    ) -> None:
        self.settings = settings
        self.autoscaling = autoscaling
        self.ec2 = ec2
        self.clock = clock
        self.membership = membership
        self.log = logger

    def answer(self, raw: Any, deadline: float) -> dict[str, list[str]]:
        """``{"InstanceIDs": [...]}`` for one request (a malformed request raises ``EventError``, which says why)."""
        request = parse_request(raw)
        deadline = min(deadline - MARGIN_SECONDS, self.clock.now() + BUDGET_SECONDS)
        verdict = self.decide(request, deadline)
        self.log.info(
            "termination policy answered",
            extra={
                "group": request.group,
                "cause": request.cause,
                "capacity": request.capacity,
                "suggested": list(request.suggested),
                "answer": list(verdict.instance_ids),
                "why": dict(verdict.why),
                "summary": verdict.summary,
            },
        )
        return request.answer(verdict.instance_ids)

    def decide(self, request: PolicyRequest, deadline: float) -> Verdict:
        if self.membership is None:
            return unchanged(request)
        if request.capacity == 0:
            return nothing(request, "no capacity to terminate")
        try:
            asg = AutoScaling(
                self.autoscaling, self.ec2, RetryPolicy(self.clock), self.clock, group_names=[request.group]
            )
            looker = Looker(self.settings, asg, None, self.clock, self.membership, log=self.log, budget=STATUS_SECONDS)
            obs = looker.observe(request.suggested, deadline)
            view = looker.etcd(obs, deadline)
        except (MembershipError, EtcdTlsError, ClientError, BotoCoreError, DeadlineReached) as exc:
            self.log.warning(
                "termination policy could not look", extra={"group": request.group, "error": str(exc)[:300]}
            )
            return nothing(request, f"could not look ({type(exc).__name__}); no instance goes on a guess")
        assert view is not None  # a budgeted look raises when etcd does not answer
        instances = dict(obs.instances)
        named = {m.name for m in view.members if m.name.startswith("i-")} - set(instances)
        for iid in named:  # a member named after an instance the group no longer lists: it is not a candidate
            instances[iid] = Instance(iid)
        return choose(request, view, identify(view, instances), instances)
