"""The cluster identity record's rules, as pure functions (``hook_handler.identity``): its format, what it allows
etcd's voters to be around voter steps (proven voters, moving instances), and the proof that quorum is lost for
good."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hook_handler.identity import (
    SETTLE_SECONDS,
    ClusterIdentity,
    ClusterState,
    IdentityError,
    Proof,
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


def allows(identity: ClusterIdentity, voters: frozenset[str]) -> bool:
    """etcd having ``voters`` is a configuration the record allows: the proven voters, moving ones in or out."""
    return voters - set(identity.moving) == identity.settled


@given(
    state=st.sampled_from(list(ClusterState)),
    since=st.integers(0, 2**33),
    cluster=st.text("0123456789abcdef", max_size=16),
    voters=st.frozensets(st.sampled_from([*IDS, "?8e9e05c52164694d"])),
    moving=st.dictionaries(st.sampled_from(IDS), st.integers(0, 2**33).map(float), max_size=4),
    snapshot=st.sampled_from(["", "etcd-snapshots/8203331325417_20261207T183754.582Z_d1cf_r452.db"]),
)
def test_the_record_reads_back_what_was_written(state, since, cluster, voters, moving, snapshot):
    identity = ClusterIdentity(state, float(since), cluster, voters, moving, snapshot=snapshot, token="t-1", seed="")
    assert parse([identity.value()], 0.0) == identity
    assert all(len(s) <= 255 for s in identity.strings())


def test_many_voters_split_across_strings_and_read_back():
    many = frozenset(f"i-{n:017x}" for n in range(40))  # 40 x 20 characters: past one TXT string
    identity = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", many, {f"i-{n:017x}": 9.0 for n in range(40, 45)})
    assert len(identity.strings()) > 4
    assert parse([identity.value()], 0.0) == identity


def test_a_record_over_route53_s_value_limit_is_refused_not_truncated():
    too_many = frozenset(f"i-{n:017x}" for n in range(250))  # 250 x 20 characters: past 4,000
    with pytest.raises(IdentityError, match="4000"):
        ClusterIdentity(ClusterState.RUNNING, 0.0, "c", too_many).value()


@pytest.mark.parametrize(
    "values",
    [['"hello"'], ['"etcd-asg-cluster=1" "state=gone"'], ["unquoted"], ['"a" b "c"'],
     ['"etcd-asg-cluster=1" "state=running" "since=2026-12-07T00:00:00Z" "moving=i-1"']],
)  # fmt: skip
def test_a_record_that_does_not_parse_counts_as_a_cluster_that_existed_with_voters_unknown(values):
    identity = parse(values, 7.0)
    assert not identity.readable and identity.existed
    assert not founding_allowed(identity)
    assert lost_for_good(identity, {}) is None  # never recovered automatically: an unknown voter counts alive
    assert voter_instances(identity) == set()


def test_founding_is_allowed_only_where_no_cluster_existed():
    assert founding_allowed(None)
    assert founding_allowed(ClusterIdentity(ClusterState.FOUNDING, 0.0))
    assert not founding_allowed(ClusterIdentity(ClusterState.RUNNING, 0.0, "c", frozenset({"i-1"})))


LAG = 120.0  # a member that answers with a leader has applied every step committed this long ago
ops = st.lists(
    st.one_of(
        # a pass covers a step on an instance, then the step: answered, applied with its answer lost, in flight (etcd
        # applies it later, or never), or never sent (the pass killed in between)
        st.tuples(st.just("step"), st.sampled_from(["add", "remove"]), st.sampled_from(IDS),
                  st.sampled_from(["answered", "lost answer", "in flight", "not sent"]), st.booleans()),
        st.tuples(st.just("apply"), st.integers(0, 5)),  # a step in flight reaches etcd now (steps reorder)
        st.tuples(st.just("look"), st.floats(0, LAG)),  # a pass looks at a member list lagging up to LAG seconds
        st.tuples(st.just("wait"), st.sampled_from([1.0, 30.0, 300.0, 900.0])),
    ),
    max_size=25,
)  # fmt: skip


@settings(max_examples=600)
@given(first=configs, ops=ops)
def test_etcd_s_voters_are_always_a_configuration_the_record_allows(first, ops):
    """Passes cover steps and send them; a step is answered, applied with its answer lost, applied later out of order
    (two passes' steps interleaving; a proposal etcd holds), or never sent; passes look at member lists that lag. A
    step in flight reaches etcd within a pass's life (900 s) plus a commit's, or never; its pass may learn its answer
    only then. Whatever happened, etcd's voters are always a configuration the record allows."""
    now = 0.0
    real = first
    history = [(now, real)]
    identity = seen(None, "c", real, now)
    in_flight: list[tuple[str, str, float, bool]] = []  # (op, instance, when covered, reaches etcd at all)

    def apply(op: str, iid: str, when: float | None = None) -> frozenset[str]:
        nonlocal real
        after = real | {iid} if op == "add" else real - {iid}
        if after:  # etcd never removes its last voter
            real = after
            history.append((now if when is None else when, real))
        return real

    for action in ops:
        if action[0] == "step":
            _, op, iid, outcome, lands = action
            fresh = iid not in identity.moving  # no other step on it in flight: its answer may prove
            identity = covering(identity, iid, now)
            assert allows(identity, real)
            if outcome == "answered":
                after = apply(op, iid)
                proof = Proof(iid, identity.moving[iid], after) if fresh else None
                identity = seen(identity, "c", after, now, proof)
            elif outcome == "lost answer":
                apply(op, iid)
            elif outcome == "in flight":
                in_flight.append((op, iid, now, lands))
        elif action[0] == "apply":
            if in_flight:
                op, iid, _, _ = in_flight.pop(action[1] % len(in_flight))
                apply(op, iid)
        elif action[0] == "look":
            shown = [v for t, v in history if t <= now - action[1]] or [history[0][1]]
            identity = seen(identity, "c", shown[-1], now)
        else:
            # a step still in flight when its window ends has reached etcd by then, or never will
            late = sorted((s for s in in_flight if now + action[1] - s[2] >= SETTLE_SECONDS - LAG), key=lambda s: s[2])
            for s in late:
                in_flight.remove(s)
                if s[3]:
                    apply(s[0], s[1], max(now, s[2] + SETTLE_SECONDS - LAG))
            now += action[1]
        assert allows(identity, real), (sorted(real), identity)


@settings(max_examples=400)
@given(
    voters=configs,
    moving=st.frozensets(st.sampled_from(IDS), max_size=3),
    real_moving=st.data(),
    states=st.dictionaries(
        st.sampled_from(IDS), st.sampled_from(["running", "stopped", "shutting-down", "terminated"])
    ),
)
def test_quorum_is_proven_lost_only_when_etcd_s_voters_have_lost_it(voters, moving, real_moving, states):
    """Whatever configuration the record allows etcd actually has, a loss is proven only when fewer than a quorum
    of the real voters have an instance that may still run (running, stopped: its disk keeps the data); and with no
    instance moving, exactly then."""
    identity = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", voters, dict.fromkeys(moving, 1.0))
    inside = real_moving.draw(st.frozensets(st.sampled_from(sorted(moving))) if moving else st.just(frozenset()))
    real = identity.settled | inside
    loss = lost_for_good(identity, states)
    alive = {v for v in real if states.get(v) in ("running", "stopped")}
    if loss is not None and real:
        assert len(alive) < quorum(len(real))
        assert set(loss.alive) >= alive
    if not moving:
        assert (loss is None) == (len(alive) >= quorum(len(real)))


def test_a_voter_whose_instance_is_unknown_counts_alive():
    identity = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", frozenset({"i-1", "i-2", "?abcd"}))
    assert lost_for_good(identity, {"i-1": "running"}) is None
    assert lost_for_good(identity, {"i-1": "terminated"}) is not None
    assert voter_instances(identity) == {"i-1", "i-2"}


def test_a_step_s_answer_ends_its_move_a_lagging_look_never_narrows_and_old_entries_settle():
    a = frozenset({"i-1", "i-2", "i-3"})
    start = seen(None, "c", a, 0.0)
    assert start.voters == a and not start.moving and start.state is ClusterState.RUNNING
    two = covering(start, "i-3", 10.0)  # remove i-3
    assert two.voters == a and two.moving == {"i-3": 10.0}
    assert seen(two, "c", a, 20.0) == two  # the step may not have happened yet (or the list lags): still moving
    assert seen(two, "c", a - {"i-3"}, 20.0) == two  # a look alone ends nothing
    done = seen(two, "c", a - {"i-3"}, 20.0, Proof("i-3", 10.0, a - {"i-3"}))
    assert done.voters == a - {"i-3"} and not done.moving  # etcd's answer to the step: it happened
    again = covering(two, "i-3", 10.0)  # another pass covered the same instance since: an older proof ends nothing
    assert again.moving == {"i-3": 11.0}
    assert seen(again, "c", a - {"i-3"}, 40.0, Proof("i-3", 10.0, a - {"i-3"})).moving == {"i-3": 11.0}
    lagging = seen(done, "c", a, 50.0)  # a list lagging behind the answer: i-3 moves again, never narrowed
    assert lagging.moving == {"i-3": 50.0} and allows(lagging, a - {"i-3"})
    settled = seen(lagging, "c", a - {"i-3"}, 50.0 + SETTLE_SECONDS)
    assert settled.voters == a - {"i-3"} and not settled.moving
    assert seen(done, "other", a, 60.0).voters == a  # another cluster: named afresh
    assert seen(done, "other", a, 60.0).cluster_id == "other"


def test_the_best_allowed_configuration_decides_a_loss():
    """Voters i-1..i-3 proven, i-4 being added: i-2 and i-3 ended. Without i-4 the one survivor of three has no
    quorum; with i-4 running, two of four alive is not more than two ended either: lost. With i-4 and i-5 both
    moving and running, three alive of five: not lost."""
    identity = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", frozenset({"i-1", "i-2", "i-3"}), {"i-4": 5.0})
    states = {"i-1": "running", "i-2": "terminated", "i-3": "shutting-down", "i-4": "running", "i-5": "running"}
    loss = lost_for_good(identity, states)
    assert loss is not None and loss.alive == ("i-1", "i-4")
    assert lost_for_good(covering(identity, "i-5", 6.0), states) is None
