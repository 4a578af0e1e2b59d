"""The vocabulary of the emulated Auto Scaling: transitions, results, limits, lifecycle states counted toward
capacity, the records a test reads (``aws.lifecycle_actions``, ``aws.notifications``) and the API's error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moto.core.exceptions import ServiceException

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
TRANSITIONS = (LAUNCHING, TERMINATING)
RESULTS = ("CONTINUE", "ABANDON")
HEARTBEAT_MIN, HEARTBEAT_MAX, HEARTBEAT_DEFAULT = 30, 7200, 3600
GLOBAL_TIMEOUT_CAP = 48 * 3600
# Lifecycle states that count toward the group's capacity (moto counts only InService).
CAPACITY_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})
# A warm-pool instance ready to leave the pool (the pool's PoolState after its launch actions).
WARMED_READY = frozenset({"Warmed:Stopped", "Warmed:Running", "Warmed:Hibernated"})


class LifecycleValidationError(ServiceException):
    """``ValidationError`` as Auto Scaling returns it (HTTP 400, query protocol)."""

    code = "ValidationError"


@dataclass
class LifecycleActionRecord:
    """One lifecycle action (one instance, one hook): what ``aws.lifecycle_actions`` holds."""

    token: str
    group: str
    hook: str
    instance_id: str
    transition: str
    started_at: float
    heartbeat_timeout: int
    deadline: float
    global_deadline: float
    ended_at: float | None = None
    result: str | None = None
    ended_by: str | None = None  # "complete" | "timeout" | "terminated" | "hook-deleted" | "group-deleted"
    heartbeats: int = 0
    origin: str = ""  # EC2 | AutoScalingGroup | WarmPool (the notification's Origin)
    destination: str = ""  # AutoScalingGroup | EC2 | WarmPool (the notification's Destination)
    generation: int = field(default=0, repr=False)

    @property
    def active(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True)
class Notification:
    """One message the group sent: ``channel`` is ``eventbridge``, ``sqs`` or ``sns``."""

    time: float
    channel: str
    target: str
    payload: dict[str, Any]
