"""The cluster identity record's rules, as pure functions (``hook_handler.identity``): its format, the configurations
it keeps around voter changes, and the proof that quorum is lost for good."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hook_handler.identity import (
    ClusterIdentity,
    ClusterState,
    covering,
    founding_allowed,
    lost_for_good,
    parse,
    quorum,
    seen,
    voter_instances,
)

IDS = [f"i-{n:017x}" for n in range(1, 10)]
configs = st.frozensets(st.sampled_from(IDS), min_size=1, max_size=7)


@given(
    state=st.sampled_from(list(ClusterState)),
    since=st.integers(0, 2**33),
    cluster=st.text("0123456789abcdef", max_size=16),
    voters=st.lists(configs, max_size=3),
    snapshot=st.sampled_from(["", "etcd-snapshots/8203331325417_20261207T183754.582Z_d1cf_r452.db"]),
)
def test_the_record_reads_back_what_was_written(state, since, cluster, voters, snapshot):
    identity = ClusterIdentity(state, float(since), cluster, tuple(voters), snapshot=snapshot, token="t-1", seed="")
    assert parse([identity.value()], 0.0) == identity
    assert all(len(s) <= 255 for s in identity.strings())


def test_many_voters_split_across_strings_and_read_back():
    many = frozenset(f"i-{n:017x}" for n in range(40))  # 40 x 20 characters: past one TXT string
    identity = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", (many,))
    assert len(identity.strings()) > 4
    assert parse([identity.value()], 0.0).configs == (many,)


@pytest.mark.parametrize("values", [['"hello"'], ['"etcd-asg-cluster=1" "state=gone"'], ["unquoted"], ['"a" b "c"']])
def test_a_record_that_does_not_parse_counts_as_a_cluster_that_existed_with_voters_unknown(values):
    identity = parse(values, 7.0)
    assert not identity.readable and identity.existed
    assert not founding_allowed(identity)
    assert lost_for_good(identity, {}) is None  # never recovered automatically: an unknown voter counts alive
    assert voter_instances(identity) == set()


def test_founding_is_allowed_only_where_no_cluster_existed():
    assert founding_allowed(None)
    assert founding_allowed(ClusterIdentity(ClusterState.FOUNDING, 0.0))
    assert not founding_allowed(ClusterIdentity(ClusterState.RUNNING, 0.0, "c", (frozenset({"i-1"}),)))
    assert not founding_allowed(ClusterIdentity(ClusterState.RESTORING, 0.0, snapshot="k"))


steps = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove"]),
        st.sampled_from(IDS),
        st.sampled_from(["done", "answered", "not done"]),
        st.integers(0, 20),
    ),
    max_size=12,
)


@settings(max_examples=500)
@given(first=configs, ops=steps)
def test_etcd_s_voters_are_always_a_listed_configuration_wherever_a_pass_stops(first, ops):
    """Each step: ``covering`` written before it; the step not done (a pass killed in between), done with its answer
    lost, or done and answered; then a pass looks — with a member list that may lag any number of steps (any
    earlier configuration) or none. Whatever happened, etcd's voters are one of the configurations listed."""
    real = first
    history = [real]
    identity = seen(None, "c", real, 0.0)
    for op, iid, outcome, lag in ops:
        after = real | {iid} if op == "add" else real - {iid}
        if not after or after == real:
            continue
        identity = covering(identity, real, after) or identity
        assert real in identity.configs and after in identity.configs
        proven = None
        if outcome != "not done":
            real = after
            history.append(real)
            proven = real if outcome == "answered" else None
        looked = history[max(0, len(history) - 1 - lag)]
        identity = seen(identity, "c", looked, 1.0, proven)
        assert real in identity.configs, (real, identity.configs)


@settings(max_examples=400)
@given(
    real=configs,
    others=st.lists(configs, max_size=2),
    states=st.dictionaries(
        st.sampled_from(IDS), st.sampled_from(["running", "stopped", "shutting-down", "terminated"])
    ),
)
def test_quorum_is_proven_lost_only_when_etcd_s_voters_have_lost_it(real, others, states):
    """Whatever the other listed configurations, a loss is proven only when fewer than a quorum of the real voters
    have an instance that may still run (running, stopped: its disk keeps the data)."""
    identity = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", (*others, real))
    loss = lost_for_good(identity, states)
    alive = {v for v in real if states.get(v) in ("running", "stopped")}
    if loss is not None:
        assert len(alive) < quorum(len(real))
        assert set(loss.alive) >= alive
    if not others:
        assert (loss is None) == (len(alive) >= quorum(len(real)))


def test_a_voter_whose_instance_is_unknown_counts_alive():
    identity = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", (frozenset({"i-1", "i-2", "?abcd"}),))
    assert lost_for_good(identity, {"i-1": "running"}) is None
    assert lost_for_good(identity, {"i-1": "terminated"}) is not None
    assert voter_instances(identity) == {"i-1", "i-2"}


def test_the_newest_step_seen_done_drops_the_history_and_a_lagging_list_keeps_it():
    a, b, c = frozenset({"i-1", "i-2", "i-3"}), frozenset({"i-1", "i-2"}), frozenset({"i-1", "i-2", "i-4"})
    start = seen(None, "c", a, 0.0)
    assert start.configs == (a,) and start.state is ClusterState.RUNNING
    two = covering(start, a, b)
    assert two is not None and two.configs == (a, b)
    assert seen(two, "c", a, 1.0) == two  # the step may not have happened yet (or the list lags): both stay
    assert seen(two, "c", b, 1.0) == two  # a look alone drops nothing: a lagging list may show any configuration
    assert seen(two, "c", b, 1.0, proven=b).configs == (b,)  # etcd's answer to the step: it happened
    three = covering(two, b, c)
    assert three is not None and three.configs == (a, b, c)
    assert covering(three, b, c) is None  # already said
    assert seen(three, "other", a, 2.0).configs == (a,)  # another cluster: named afresh
