"""Every way a lifecycle action can arrive, turned into one internal event type.

Sources: EventBridge (direct), SNS records, SQS bodies (raw lifecycle message or a whole
EventBridge event), direct invocation with the lifecycle fields, scheduled events and other
Auto Scaling events (meaning "reconcile now"), and the test notification (ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    """What an event asks the coordinator to do, by meaning (warm pools included)."""

    JOIN = "join"  # an instance is entering the group's membership: add it, then complete
    LEAVE = "leave"  # an instance is leaving the group (terminating, or back to a warm pool): drop it, then complete
    PASS = "pass"  # a lifecycle action that changes no membership (warm-pool entry/exit): complete it
    RECONCILE = "reconcile"  # rebuild the record from the source of truth; no action to complete
    IGNORE = "ignore"  # acknowledged and ignored (autoscaling:TEST_NOTIFICATION)


@dataclass(frozen=True)
class LifecycleEvent:
    """The one internal event type. Every parser returns this; nothing downstream sees raw events.

    Fields are ``None`` when the source does not carry them (a reconcile has no instance).
    """

    kind: Kind
    source: str  # "eventbridge" | "sns" | "sqs" | "direct" | "schedule"
    group: str | None = None
    instance_id: str | None = None
    hook_name: str | None = None
    token: str | None = None
    transition: str | None = None  # autoscaling:EC2_INSTANCE_LAUNCHING | ..._TERMINATING
    origin: str | None = None
    destination: str | None = None
    metadata: str | None = None
    account: str | None = None
    region: str | None = None
    time: str | None = None  # ISO-8601 as sent
    reason: str = ""  # why this kind (e.g. "warm pool entry", "EC2 Instance Launch Successful")
    message_id: str | None = None  # SQS messageId / SNS MessageId / EventBridge id, for logs

    @property
    def is_action(self) -> bool:
        """True when a lifecycle action waits for completion (has a hook and an instance)."""
        return self.kind in (Kind.JOIN, Kind.LEAVE, Kind.PASS)
