"""What a pass did: one ``Outcome`` per event and the pass's ``Report``, for logs, the CLI, the batch response and
tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hook_handler.events import LifecycleEvent
from hook_handler.plan import Plan


class Status(StrEnum):
    """What became of one event."""

    COMPLETED = "completed"  # this pass completed its lifecycle action
    ALREADY_DONE = "already-done"  # nothing left to do (another pass, a duplicate, a gone instance)
    HELD = "held"  # kept waiting on purpose (bootstrap barrier, quorum guard): heartbeated
    IGNORED = "ignored"  # not ours (a test notification, a tag selector's exclusion)
    REJECTED = "rejected"  # refused: foreign, forged or contradicted by the APIs
    UNCONFIRMED = "unconfirmed"  # the APIs do not place the instance in a served group (yet)
    HANDOFF = "handoff"  # handed to a retry
    FALLBACK = "fallback"  # its action timed out: completed with the fallback result
    ABANDONED = "abandoned"  # its launch was abandoned (member did not start)
    DRY_RUN = "dry-run"  # a dry run applies nothing


@dataclass
class Outcome:
    """What became of one event. ``ok=False`` asks the caller to retry (or dead-letter) it."""

    event: LifecycleEvent
    status: Status
    detail: str = ""
    ok: bool = True


@dataclass
class Report:
    """The result of a pass, for logs, the CLI and tests."""

    outcomes: list[Outcome] = field(default_factory=list)
    change_id: str | None = None
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    completed: list[tuple[str, str]] = field(default_factory=list)  # (instance id, result)
    # (instance id, result) this pass went to complete and found already finished (another pass did, or the
    # describe that showed it waiting was stale): settled all the same
    finished: list[tuple[str, str]] = field(default_factory=list)
    held: tuple[str, ...] = ()
    quorum_held: list[str] = field(default_factory=list)  # instance ids whose member removal is held
    members_removed: list[str] = field(default_factory=list)  # hex member ids
    members_added: list[str] = field(default_factory=list)
    cluster_lost: str = ""  # why etcd's quorum is lost for good (``identity.lost_for_good``), when it is
    dry_run: bool = False
    plan: Plan | None = None

    @property
    def settled(self) -> int:
        """Actions settled so far (completed here or found finished): a pass that settles none makes no progress."""
        return len(self.completed) + len(self.finished)

    def reported(self, event: LifecycleEvent) -> bool:
        return any(o.event == event for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "change_id": self.change_id,
            "before": list(self.before),
            "after": list(self.after),
            "completed": [list(c) for c in self.completed],
            "held": list(self.held),
            "quorum_held": list(self.quorum_held),
            "members_removed": list(self.members_removed),
            "members_added": list(self.members_added),
            "cluster_lost": self.cluster_lost,
            "dry_run": self.dry_run,
            "outcomes": [
                {"instance": o.event.instance_id, "kind": o.event.kind.value, "status": o.status, "detail": o.detail}
                for o in self.outcomes
            ],
        }
