"""Retention tiers (hook_handler.backup.retention): what is kept, by property over random snapshot histories."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from hook_handler.backup.retention import DEFAULT_RETENTION, RetentionError, parse_tiers, prune, tier_of
from hook_handler.settings import SETTINGS_SPEC

TIERS = parse_tiers(DEFAULT_RETENTION)
DAY = 86400.0
NOW = 1_800_000_000.0

# Snapshot times up to 120 days back (some older than every tier), millisecond precision like the keys.
times = st.lists(st.integers(0, int(120 * DAY * 1000)).map(lambda ms: NOW - ms / 1000), max_size=60, unique=True)


def kept(history: list[float], now: float = NOW) -> set[float]:
    return set(history) - prune(history, now, TIERS)


@given(times)
@hsettings(max_examples=300, deadline=None)
def test_the_newest_snapshot_is_never_pruned_and_nothing_unknown_is(history):
    doomed = prune(history, NOW, TIERS)
    assert doomed <= set(history)
    if history:
        assert max(history) not in doomed


@given(times)
@hsettings(max_examples=300, deadline=None)
def test_every_snapshot_of_the_last_hour_is_kept(history):
    assert {t for t in history if NOW - t < 3600} <= kept(history)


@given(times)
@hsettings(max_examples=300, deadline=None)
def test_each_hour_of_the_week_and_each_day_of_90_days_keeps_exactly_its_oldest(history):
    survivors = kept(history)
    for name, period in (("hourly", 3600.0), ("daily", DAY)):
        slots: dict[int, list[float]] = {}
        for t in history:
            tier = tier_of(NOW - t, TIERS)
            if tier is not None and tier.name == name:
                slots.setdefault(math.floor(t / period), []).append(t)
        for members in slots.values():
            assert survivors & set(members) - {max(history)} <= {min(members)}
            assert min(members) in survivors


@given(times)
@hsettings(max_examples=300, deadline=None)
def test_older_than_every_tier_only_the_newest_survives(history):
    old = {t for t in history if NOW - t >= 90 * DAY}
    assert kept(history) & old <= {max(history)} if history else True


@given(times)
@hsettings(max_examples=200, deadline=None)
def test_pruning_again_at_the_same_time_deletes_nothing(history):
    assert prune(kept(history), NOW, TIERS) == set()


@given(times, st.floats(0, 30 * DAY))
@hsettings(max_examples=300, deadline=None)
def test_pruning_now_and_later_keeps_what_pruning_once_later_keeps(history, later):
    """Periods nest (an hour lies in one UTC day), so the oldest kept on entering a tier stays kept."""
    assert kept(sorted(kept(history)), NOW + later) == kept(history, NOW + later)


def test_a_clock_that_moved_back_keeps_the_snapshots_from_the_future():
    future = [NOW + 10, NOW + 20]
    assert prune([*future, NOW - 100 * DAY], NOW, TIERS) == {NOW - 100 * DAY}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("weekly=4w", "tier=duration"),
        ("hourly=7d,all=1h", "list tiers once each"),
        ("all=2h,hourly=1h", "reach further back"),
        ("daily=12h", "shorter than one day"),
        ("all=1h,all=2h", "list tiers once each"),
        ("all=1x", "tier=duration"),
    ],
)
def test_unreadable_retention_is_refused_with_what_to_write(text, problem):
    with pytest.raises(RetentionError, match=problem):
        parse_tiers(text)


def test_the_default_is_the_settings_default_and_reads_as_documented():
    (spec,) = [s for s in SETTINGS_SPEC if s.name == "snapshot_retention"]
    assert spec.default == DEFAULT_RETENTION
    assert [(t.name, t.period, t.horizon) for t in TIERS] == [
        ("all", 0.0, 3600.0),
        ("hourly", 3600.0, 7 * DAY),
        ("daily", DAY, 90 * DAY),
    ]
