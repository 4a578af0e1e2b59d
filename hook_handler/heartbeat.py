"""Heartbeats for every lifecycle action a pass holds: the ones it settles, queued joiners, quorum holds.

A held action's hook times out ``HeartbeatTimeout`` seconds after its last heartbeat; the keeper beats every
``heartbeat_interval_seconds`` while the pass waits (INSYNC polls, an etcd start, a removal etcd refuses), and says
so loudly when that interval cannot beat a hook's timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hook_handler.clock import Clock
from hook_handler.exceptions import DeadlineReached
from hook_handler.lifecycle import Action, AutoScaling


def interval_problem(interval: float, heartbeat_timeout: float | None) -> str | None:
    """Why heartbeats every ``interval`` seconds cannot keep a hook with this ``HeartbeatTimeout`` alive, or None.

    A beat is due ``interval`` after the last and may itself wait on a poll or an AWS call: an interval that is not
    well under the timeout lets the action expire between two beats.

    >>> interval_problem(60, 300) is None, interval_problem(60, 60) is not None
    (True, True)
    """
    if heartbeat_timeout is None or interval < heartbeat_timeout * 0.8:
        return None
    return (
        f"heartbeat_interval_seconds ({interval:g}) cannot beat the hook's HeartbeatTimeout ({heartbeat_timeout:g}): "
        "held actions may expire between heartbeats; set heartbeat_interval_seconds well under the timeout "
        "(at most a third of it is usual)"
    )


class Keeper:
    """Heartbeats for every action a pass holds.

    ``discover`` (when given) runs before each round of heartbeats and holds the actions that began waiting
    since the pass looked: a pass may wait minutes (INSYNC, an etcd start, a removal etcd cannot answer
    while quorum is lost) while new launches and terminations queue behind it (reserved concurrency); their
    own events come after it ends, possibly past their hooks' heartbeat timeout (a pass once waited out its
    deadline on a cluster without quorum while eight actions it never saw expired).
    """

    def __init__(
        self,
        asg: AutoScaling,
        clock: Clock,
        interval: float,
        deadline: float,
        discover: Callable[[Keeper], None] | None = None,
        *,
        log: Any = None,
        warned: set[tuple[str, str]] | None = None,
    ) -> None:
        self.asg = asg
        self.clock = clock
        self.interval = interval
        self.deadline = deadline
        self.discover = discover
        self.log = log
        self.warned = warned if warned is not None else set()  # (group, hook) warned about: once per sandbox
        self.actions: dict[str, Action] = {}
        self.released: set[tuple[str, str]] = set()  # (instance, transition) settled or ended: not rediscovered
        self.last = clock.now()

    def hold(self, action: Action, *, fresh: bool = False) -> None:
        """Hold ``action`` from now on, and heartbeat it at once when this keeper did not hold it yet (unless
        ``fresh``: its own event says it began less than a beat interval ago): a pass that takes an action over
        cannot know when it was last heartbeated — possibly almost a heartbeat timeout ago, by a pass that ended
        at its deadline (a queued launch once expired 53 s after the next pass "held" it, its first beat due a
        poll interval later)."""
        if action.instance_id in self.actions:
            return
        self.actions[action.instance_id] = action
        self._check_interval(action)
        if not fresh and not self.asg.heartbeat(action, self.deadline):
            self.release(action.instance_id)  # it ended (completed elsewhere, or its instance went)

    def release(self, instance_id: str, transition: str = "") -> None:
        action = self.actions.pop(instance_id, None)
        self.released.add((instance_id, transition or (action.transition if action is not None else "")))

    def beat(self, *, force: bool = False) -> None:
        if not force and self.clock.now() - self.last < self.interval:
            return
        self.last = self.clock.now()
        if self.discover is not None and not force:  # a forced beat ends a pass: what it holds outlives it
            self.discover(self)
        for iid, action in sorted(self.actions.items()):
            if not self.asg.heartbeat(action, self.deadline):
                self.release(iid)  # it ended (completed elsewhere, or its instance went)

    def _check_interval(self, action: Action) -> None:
        """Warn (once per hook and sandbox: the hook's description is cached) when the interval cannot beat it."""
        if self.log is None or (action.group, action.hook) in self.warned:
            return
        try:
            timeout = self.asg.heartbeat_timeout(action.group, action.hook, self.deadline)
        except (ClientError, BotoCoreError, DeadlineReached):
            return  # best effort: the hook's own calls report a broken API
        problem = interval_problem(self.interval, timeout)
        self.warned.add((action.group, action.hook))
        if problem is not None:
            self.log.warning(problem, extra={"group": action.group, "hook": action.hook})
