"""The continuous client's accounting (infra/local/traffic.py): acknowledged writes, failures and the longest
outage of a period, from its log (the end-to-end test runs it against real etcd)."""

from __future__ import annotations

from infra.local.traffic import ContinuousClient


def test_a_window_counts_its_own_requests_and_its_longest_time_without_a_success():
    client = ContinuousClient(list)
    log = client.log
    log.acked += [(100.0, 1), (100.5, 2), (103.0, 3), (110.0, 4)]
    log.ok += [100.0, 100.1, 100.5, 100.6, 103.0, 110.0]
    log.failed += [(101.0, "a"), (102.0, "b"), (109.0, "c")]
    w = client.window(100.0, 104.0)
    assert (w.acked, w.failed) == (3, 2)
    assert w.longest_outage == 2.4  # 100.6 -> 103.0
    assert client.window(103.0, 112.0).longest_outage == 7.0  # 103.0 -> 110.0
    assert client.window(111.0, 115.0).longest_outage == 4.0  # nothing succeeded: the whole window
    assert client.acknowledged() == [1, 2, 3, 4]
