"""What every step of a pass shares: the sandbox's collaborators (``Services``) and the pass's own state
(``Pass``: its deadline, report, heartbeats, the observation it acts on and the events it settles)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hook_handler.certs import MemberCertificates
from hook_handler.clock import Clock
from hook_handler.etcd import Membership
from hook_handler.events import LifecycleEvent
from hook_handler.exceptions import DeadlineReached
from hook_handler.heartbeat import Keeper
from hook_handler.identity import ClusterIdentity, Proof
from hook_handler.lifecycle import AutoScaling
from hook_handler.look import Looker
from hook_handler.membership import EtcdView
from hook_handler.plan import Observation, RecordSet
from hook_handler.report import Outcome, Report, Status
from hook_handler.route53 import Route53
from hook_handler.settings import Settings
from hook_handler.telemetry import MetricUnit

MEMBER_POLL_SECONDS = 1.0  # between looks at etcd while a member starts, or while etcd refuses a change for now
RECONFIG_CALL_SECONDS = 20.0  # one member add/remove/promote call (retried inside) before the pass pauses


@dataclass
class Services:
    """The clients, clock and telemetry one sandbox's passes use (passed in: see ``hook_handler.app``)."""

    settings: Settings
    route53: Route53
    asg: AutoScaling
    clock: Clock
    log: Any
    metrics: Any
    look: Looker
    membership: Membership | None = None
    certificates: MemberCertificates | None = None

    def count(self, name: str, value: float = 1, unit: Any = MetricUnit.Count) -> None:
        self.metrics.add_metric(name=name, unit=unit, value=value)

    def reject(self, outcome: Outcome) -> Outcome:
        """Log and count a refused event (its outcome already says why)."""
        event = outcome.event
        self.log.error(
            "event refused", extra={"instance": event.instance_id, "group": event.group, "why": outcome.detail}
        )
        self.count("RejectedEvents")
        return outcome


@dataclass
class Pass:
    """One pass's state. ``obs`` is what the pass acts on (replaced as it looks again); ``events`` maps instance
    ids to the events this round settles (removed as each gets its outcome)."""

    deadline: float
    report: Report
    keeper: Keeper
    obs: Observation
    events: dict[str | None, LifecycleEvent] = field(default_factory=dict)
    view: EtcdView | None = None  # etcd as the pass last saw it (after its removals)
    identity: ClusterIdentity | None = None  # the cluster identity record (``coordinator.cluster``) ...
    identity_set: RecordSet | None = None  # ... as stored ...
    identity_read: bool = False  # ... once read in this pass
    proven: Proof | None = None  # etcd's voters as its answer to the pass's last voter step said
    started: float = 0.0  # when the pass began (a moving entry written since covers its steps)
    fresh: set[str] = field(default_factory=set)  # instances this pass's own writes started moving
    snapshotted: bool = False  # the snapshot before the pass's first membership change was tried

    def pause(self, clock: Clock, why: str) -> None:
        """Wait a moment for etcd to change, heartbeating; DeadlineReached when the pass is out of time."""
        if clock.now() + MEMBER_POLL_SECONDS >= self.deadline:
            raise DeadlineReached(why)
        clock.sleep(MEMBER_POLL_SECONDS)
        self.keeper.beat()

    def call_deadline(self, clock: Clock) -> float:
        """One etcd call's own bound, short of the pass's: the caller waits (heartbeating) and asks again."""
        return min(self.deadline, clock.now() + RECONFIG_CALL_SECONDS)

    def outcome(self, instance_id: str | None, status: Status, detail: str, *, ok: bool = True) -> None:
        """Report the outcome of the event of ``instance_id`` this round settles, if it has one."""
        event = self.events.pop(instance_id, None)
        if event is not None:
            self.report.outcomes.append(Outcome(event, status, detail, ok=ok))
