"""Time as a dependency: the coordinator never calls ``time`` directly.

Every wait (GetChange polls, heartbeats, retry backoff, deadlines) goes through a
``Clock`` so tests and benchmarks can run it on simulated time
(``infra.local.clock.SimClock``) while Lambda uses the wall clock.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What the coordinator needs of time.

    Example:
        >>> clock = SystemClock()
        >>> t0 = clock.now(); clock.sleep(0); clock.now() >= t0
        True
    """

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the caller for ``seconds``."""
        ...


class SystemClock:
    """The wall clock, for Lambda and the demo."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
