"""The benchmark's measurements on cases small enough to check by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from bench_harness import action_figure, peak_per_second, percentile, run
from bench_scenarios import SCENARIOS
from bench_strategies import LAUNCHING, STRATEGIES

SRV = "_etcd-server._tcp.example.com."


def test_single_launch_with_fixed_propagation_is_measured_exactly():
    # The launch spends 1-5 s in Pending; from its action's start: delivery at 0.5 s, one change at 0.5 s,
    # INSYNC at 30.5 s; polls at 1.5, 2.5, ... 30.5 s after the change.
    result = run(STRATEGIES["coord-eventbridge"], SCENARIOS["single"], seed=3, propagation=30.0)

    assert (result.actions, result.continued, result.early) == (1, 1, 0)
    assert result.r53_changes == 1
    (figure,) = result.figures
    assert 1.0 <= figure["started"] <= 5.0
    # ... plus 2 s per look again while the eventually consistent describe lags behind the event (<= 3).
    relooks = (figure["insync"] - figure["started"] - 30.5) / 2.0
    assert relooks == pytest.approx(round(relooks)) and 0 <= round(relooks) <= 3
    assert 0.0 <= result.delay_p95 <= 1.0
    assert figure["ended"] == pytest.approx(figure["insync"] + result.delay_p95)
    assert result.last_completed == pytest.approx(figure["ended"])
    assert result.r53_requests == 2 + 30  # List + Change + one GetChange a second from 1.5 s to 30.5 s
    assert (result.throttled, result.missing, result.extra) == (0, [], [])
    assert result.slowest_propagation == 30.0
    assert not result.horizon_hit


def test_read_modify_write_single_launch_polls_every_one_and_a_half_seconds():
    result = run(STRATEGIES["rmw-1.5s"], SCENARIOS["single"], seed=3, propagation=30.0)

    assert result.continued == 1 and result.early == 0
    # UPSERT at 0.5 s; GetChange at 2.0, 3.5, ..., 30.5 s (20 polls), completion at once.
    assert result.r53_requests == 2 + 20
    assert result.delay_p50 == pytest.approx(0.0)


def test_a_completion_before_insync_counts_as_early():
    change = SimpleNamespace(
        submitted_at=10.0, insync_at=40.0, records_after={(SRV, "SRV"): (60, ("0 0 2380 ip-a.ec2.internal.",))}
    )
    action = SimpleNamespace(
        instance_id="i-a",
        transition=LAUNCHING,
        started_at=5.0,
        ended_at=12.0,
        ended_by="complete",
        result="CONTINUE",
    )
    figure = action_figure(action, "ip-a.ec2.internal.", [change], set(), SRV, t0=0.0)
    assert figure.early and figure.insync == 40.0 and figure.added_delay is None


def test_percentiles_and_peak_rate():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    assert percentile([], 50) is None
    assert peak_per_second([0.0, 0.5, 0.99, 1.0, 1.2, 3.0]) == 4  # [0.5, 1.5) holds 0.5, 0.99, 1.0, 1.2


def test_a_single_join_with_membership_is_measured_against_its_own_draws():
    """Issue 13's membership bench on its smallest case: one launch joins a running 3-member cluster. The bound is
    the run's own propagation + etcd start + 5 s; the coordinator cannot beat propagation + start; the client's
    acknowledged writes are all in the final keyspace; the coordinator loses no quorum."""
    from bench_membership import HEALTH_INTERVAL
    from bench_membership import run as mrun

    for strategy in ("coordinator", "per-event"):
        r = mrun(strategy, "m-join-1", seed=2)
        assert r.in_step and (r.completed, r.actions, r.changed) == (1, 1, 1)
        (term,) = r.bound_terms
        assert term["kind"] == "join" and 20.0 <= term["propagation"] <= 60.0 and term["etcd_start"] > 0
        assert r.bound == pytest.approx(term["propagation"] + term["etcd_start"] + HEALTH_INTERVAL, abs=0.1)
        # The coordinator gives the go signal only once the listing change is INSYNC: it cannot beat propagation +
        # start. The per-event baseline tags ``existing`` before it writes the record, so its etcd starts during the
        # propagation: it cannot beat the longer of the two (it completes after INSYNC).
        floor = term["propagation"] + term["etcd_start"]
        if strategy == "per-event":
            floor = max(term["propagation"], term["etcd_start"])
        assert r.total >= floor - 0.1
        assert r.acked > 20 and r.lost == 0 and r.quorum_losses == 0 and r.splits == 0
