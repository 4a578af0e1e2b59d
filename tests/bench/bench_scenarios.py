"""The scenarios: an initial cluster already in service, then what the group does from t0.

A scenario's ``drive`` runs as a task on the simulated clock from t0 (the harness waits for the
system to go quiet afterwards). It acts through the Auto Scaling API, as an operator or a scaling
policy would; it never touches Route 53.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Driver:
    """What a scenario may do: scale, terminate, wait. ``members`` is the initial cluster, oldest first."""

    aws: Any
    stack: Any
    members: list[str]
    action_index: int  # lifecycle actions before this index belong to the set-up

    def scale(self, desired: int) -> None:
        self.stack.scale(desired)

    def terminate(self, instance_id: str, *, replace: bool) -> None:
        """Terminate through the group; ``replace`` keeps the desired capacity (the group launches a new one)."""
        self.stack.terminate(instance_id, decrement=not replace)

    def sleep(self, seconds: float) -> None:
        self.aws.clock.sleep(seconds)

    def wait_until_quiet(self, poll: float = 1.0) -> None:
        """Sleep until no lifecycle action of the scenario is active (reads emulator state, no API call)."""
        while any(a.active for a in self.aws.lifecycle_actions[self.action_index :]):
            self.aws.clock.sleep(poll)


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    initial: int  # members in service (and in the record) before t0
    drive: Callable[[Driver], None]
    note: str


def burst(n: int) -> Callable[[Driver], None]:
    def drive(d: Driver) -> None:
        d.scale(len(d.members) + n)

    return drive


def rolling(d: Driver) -> None:
    """Replace every initial member, one at a time: terminate (the group launches a replacement), wait, repeat."""
    for instance_id in list(d.members):
        d.terminate(instance_id, replace=True)
        d.wait_until_quiet()


def mixed(d: Driver) -> None:
    """t0: two scale-in terminations and four launches; t0 + 15 s: one more termination, replaced."""
    d.terminate(d.members[0], replace=False)
    d.terminate(d.members[1], replace=False)
    d.scale(len(d.members) - 2 + 4)
    d.sleep(15.0)
    d.terminate(d.members[2], replace=True)


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario("single", "single launch", 3, burst(1), "1 launch into a 3-member cluster"),
        Scenario("burst-3", "burst of 3", 3, burst(3), "3 simultaneous launches into a 3-member cluster"),
        Scenario("burst-10", "burst of 10", 3, burst(10), "10 simultaneous launches into a 3-member cluster"),
        Scenario("burst-50", "burst of 50", 3, burst(50), "50 simultaneous launches into a 3-member cluster"),
        Scenario("burst-100", "burst of 100", 3, burst(100), "100 simultaneous launches into a 3-member cluster"),
        Scenario(
            "rolling-5",
            "rolling replacement",
            5,
            rolling,
            "5-member group: terminate one (replaced at once), wait for both actions to end, repeat x5",
        ),
        Scenario(
            "mixed",
            "mixed launches/terminations",
            6,
            mixed,
            "6-member group: t0 2 scale-in terminations + 4 launches; t0+15 s 1 termination with replacement",
        ),
    )
}
