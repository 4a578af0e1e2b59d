"""Which snapshots to keep: retention tiers, decided on plain values (no S3 here).

A tier keeps either every snapshot younger than its horizon (``all``) or one snapshot per period (``hourly``,
``daily``) among those whose age falls in it. The default, ``all=1h,hourly=7d,daily=90d``, keeps every
snapshot of the last hour, one per hour for a week and one per day for 90 days; older ones go. The one kept in
a period is its *oldest*: periods nest (an hour lies within one UTC day), so the oldest of a day is also the
oldest of its first hour, and a snapshot kept when it enters a tier stays kept until it leaves it — pruning
now and again later keeps the same as pruning once later. The newest snapshot is never pruned, however old:
losing the last copy is never a retention decision.

    >>> tiers = parse_tiers("all=1h,hourly=7d,daily=90d")
    >>> now = 100 * 86400.0
    >>> ages = [10, 3000, 3700, 5000, 8000, 30 * 86400 - 120, 30 * 86400 - 60, 95 * 86400]
    >>> sorted(now - t for t in prune([now - a for a in ages], now, tiers))  # ages of the pruned
    [3700.0, 2591880.0, 8208000.0]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_RETENTION = "all=1h,hourly=7d,daily=90d"
PERIODS = {"all": 0.0, "hourly": 3600.0, "daily": 86400.0}
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ITEM = re.compile(r"^(?P<tier>[a-z]+)=(?P<n>\d{1,6})(?P<unit>[smhd])$")


@dataclass(frozen=True)
class Tier:
    """Snapshots younger than ``horizon`` seconds (and no younger than the previous tier's): all of them
    (``period`` 0) or the oldest in each ``period``-long UTC interval."""

    name: str
    period: float
    horizon: float


class RetentionError(ValueError):
    """A retention setting that cannot be read; the message says what is expected."""


def parse_tiers(text: str) -> tuple[Tier, ...]:
    """Tiers from ``all=1h,hourly=7d,daily=90d`` (units s, m, h, d; each tier at most once, in this order,
    horizons increasing). An empty text is the default."""
    text = text.strip() or DEFAULT_RETENTION
    tiers: list[Tier] = []
    for item in (i.strip() for i in text.split(",")):
        match = _ITEM.match(item)
        if not match or match["tier"] not in PERIODS:
            raise RetentionError(f"{item!r} is not tier=duration with tier all, hourly or daily (e.g. hourly=7d)")
        horizon = int(match["n"]) * _UNITS[match["unit"]]
        tier = Tier(match["tier"], PERIODS[match["tier"]], horizon)
        if tiers and (tier.period < tiers[-1].period or tier.name == tiers[-1].name):
            raise RetentionError(f"{item!r} comes after {tiers[-1].name}: list tiers once each, all, hourly, daily")
        if tiers and horizon <= tiers[-1].horizon:
            raise RetentionError(f"{item!r} must reach further back than {tiers[-1].name}={tiers[-1].horizon:g}s")
        if tier.period and horizon < tier.period:
            unit = {"hourly": "hour", "daily": "day"}[tier.name]
            raise RetentionError(f"{item!r} is shorter than one {unit}: it could keep nothing of its own")
        tiers.append(tier)
    return tuple(tiers)


def tier_of(age: float, tiers: tuple[Tier, ...]) -> Tier | None:
    """The tier a snapshot of this age falls in (None: older than every horizon)."""
    return next((t for t in tiers if age < t.horizon), None)


def prune(taken: Iterable[float], now: float, tiers: tuple[Tier, ...]) -> set[float]:
    """The times (``taken_at``) of the snapshots to delete. Snapshots from the future (a clock that moved
    back) count as new and are kept."""
    times = sorted(set(taken))
    if not times:
        return set()
    newest = times[-1]
    kept_in: dict[tuple[str, int], float] = {}  # (tier, period index) -> oldest time seen, times ascending
    doomed: set[float] = set()
    for t in times:
        tier = tier_of(max(0.0, now - t), tiers)
        if tier is None:
            doomed.add(t)
        elif tier.period:
            slot = (tier.name, math.floor(t / tier.period))
            if slot in kept_in:
                doomed.add(t)
            else:
                kept_in[slot] = t
    doomed.discard(newest)
    return doomed
