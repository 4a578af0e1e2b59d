"""Randomized schedules over the emulated stack: the coordinator's invariants hold after every step.

hypothesis generates a ``Config`` (wiring, concurrency, Lambda timeout, propagation, etcd membership on
— in about 85 % — or DNS-only, etcd start time, member start timeout, peer URLs by name or IP) and a list
of steps (scale out/in, terminations, kills that bypass hooks, kills whose replacement reuses the IP,
duplicate/late deliveries, throttling bursts, PriorRequestNotComplete, slow propagation up to 200 s,
crashed invocations — at a moment or right after a given etcd request or AWS call — reconciles, Standby
round trips, members that never start, etcd crashes (some staying down for 10 minutes), settings changed
for a while, time passing; and from issue 11: lost events, lost responses, a propagation tail to 7 minutes)
in AWS's world as the emulator now has it by default (transitional states, stale describes, the health
check's terminate hook on a killed instance, throttle backoff, several SQS pollers);
``schedules.run_schedule`` applies them on simulated time and checks
``invariants`` after each step and at quiescence. A schedule that ever broke an invariant is kept below
in ``REGRESSIONS``: replayed once by ``test_regression_schedules`` (and as ``@example``s in the soak's first chunk).

``make test`` runs ``SCHEDULES`` (default 1000) random schedules split over two worker processes;
``make soak`` runs 20,000 (``SOAK_SCHEDULES``) and writes the counts to ``soak-results.json``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
import traceback
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from schedules import (
    FAULTS,
    KILL_POINTS,
    LONG_TAIL,
    LOST_RESPONSES,
    POOL,
    SETTING_CHANGES,
    Config,
    quiet_logs,
    run_schedule,
)

HERE = Path(__file__).resolve().parent
SCHEDULES = int(os.environ.get("SCHEDULES", "1000"))
WORKERS = int(os.environ.get("SCHEDULE_WORKERS", "2"))
BAD_WORLDS = int(os.environ.get("BAD_WORLDS", "0") or 0)
SOAK_RESULTS = HERE / "soak-results.json"

configs = st.builds(
    Config,
    mode=st.sampled_from(["eventbridge", "eventbridge", "sqs", "sns"]),
    reserved_concurrency=st.sampled_from([1, 1, 2, None]),
    timeout=st.sampled_from([300.0, 300.0, 40.0, 15.0]),
    # issue 11: a long tail — 20-60 s often, sometimes 200 s
    propagation=st.sampled_from(
        [(2.0, 8.0), (2.0, 8.0), (1.0, 3.0), (20.0, 60.0), (20.0, 60.0), (60.0, 200.0), LONG_TAIL]
    ),
    prior_request_window=st.sampled_from([0.0, 0.0, 2.0]),
    launch_failure_result=st.sampled_from(["ABANDON", "ABANDON", "CONTINUE"]),
    poll_interval=st.sampled_from([5.0, 5.0, 2.0, 1.0]),
    action_timeout=st.sampled_from([900.0, 900.0, 900.0, 45.0]),  # 1 s is the default; longer keeps runs cheap
    membership=st.sampled_from([True] * 6 + [False]),  # DNS-only stays covered
    etcd_start=st.sampled_from([(1.0, 3.0), (1.0, 3.0), (0.5, 1.0), (5.0, 20.0)]),
    member_start_timeout=st.sampled_from([300.0, 300.0, 120.0, 60.0]),
    peer_host=st.sampled_from(["dns", "dns", "dns", "ip"]),
).map(
    # A 45 s action timeout under 60-200 s propagation can never be met (every launch falls back, for ever):
    # the long tail runs with the default action timeout.
    lambda c: replace(c, action_timeout=900.0) if c.propagation == LONG_TAIL or c.propagation[1] > 60.0 else c
)

step = st.one_of(
    st.tuples(st.just("scale"), st.integers(0, 4)),
    st.tuples(st.just("scale"), st.integers(1, 4)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 2.0, 5.0, 15.0, 40.0, 90.0, 200.0])),
    st.tuples(st.just("terminate"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("kill"), st.integers(0, 3)),
    st.tuples(st.just("reconcile")),
    st.builds(lambda f, n: ("fault", f[0], f[1], n), st.sampled_from(FAULTS), st.integers(1, 4)),
    st.builds(lambda f, n: ("fault", f[0], f[1], n), st.sampled_from(FAULTS), st.integers(1, 4)),
    st.tuples(st.just("slow"), st.just(20.0), st.just(60.0)),
    st.tuples(st.just("prior"), st.sampled_from([0.0, 5.0])),
    st.tuples(st.just("delivery"), st.sampled_from([0.0, 0.5, 1.0]), st.sampled_from([0.0, 30.0])),
    st.tuples(st.just("killlambda"), st.sampled_from([0.6, 1.0, 2.5, 6.0, 20.0])),
    st.tuples(st.just("slow"), st.just(60.0), st.just(200.0)),
    # etcd and the instances
    st.tuples(st.just("killat"), st.sampled_from(KILL_POINTS), st.integers(1, 3)),
    st.tuples(st.just("killat"), st.sampled_from(KILL_POINTS[:4]), st.just(1)),
    st.tuples(st.just("killreuse"), st.integers(0, 3)),
    st.tuples(st.just("reuse"), st.integers(0, 3)),
    st.tuples(st.just("standby"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("unstandby"), st.integers(0, 3)),
    st.tuples(st.just("neverstart"), st.integers(0, 3)),
    st.tuples(st.just("crash"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("setting"), st.sampled_from(SETTING_CHANGES), st.sampled_from([60.0, 200.0, 600.0])),
    # AWS as it behaves (issue 11): lost events, lost responses, a long propagation tail
    st.tuples(st.just("lose"), st.sampled_from([0.3, 1.0])),
    st.builds(lambda f, n: ("loseresp", f[0], f[1], n), st.sampled_from(LOST_RESPONSES), st.integers(1, 2)),
    st.tuples(st.just("tail")),
)
steps_lists = st.lists(step, min_size=1, max_size=8).map(tuple)
# The bad worlds, drawn on purpose: a running cluster of 3 (or 1, or 5), then a majority lost at once, every etcd
# silent for a while, a lost data directory, or a scale to zero and back — mixed with the ordinary steps.
bad_step = st.one_of(
    st.tuples(st.just("killmany"), st.integers(2, 3)),
    st.tuples(st.just("silent"), st.sampled_from([30.0, 600.0, 1800.0])),
    st.tuples(st.just("crash"), st.integers(0, 4), st.booleans()),
    st.just(("scale", 0)),
)
bad_worlds = st.builds(
    lambda size, bad, more: (("scale", size), ("advance", 200.0), ("reconcile",), ("advance", 90.0), *bad, *more),
    st.sampled_from([3, 3, 1, 5]),
    st.lists(st.one_of(bad_step, st.tuples(st.just("advance"), st.sampled_from([5.0, 60.0, 200.0]))), min_size=1,
             max_size=4),
    st.lists(st.one_of(step, st.just(("scale", 3))), max_size=3),
)  # fmt: skip

TOTALS: Counter[str] = Counter()
LAST_FAILURE: list[tuple[Config, tuple]] = []


def check(config: Config, steps: tuple) -> None:
    result = run_schedule(config, steps)
    TOTALS.update(result.counts)
    if result.violations:
        LAST_FAILURE[:] = [(config, steps)]
        raise AssertionError("\n".join(result.violations))


_SLOW_LAMBDA = Config(timeout=15.0, propagation=(20.0, 60.0), poll_interval=5.0, action_timeout=45.0, membership=True)


# Schedules that once broke an invariant (see the report in GUARANTEES.md), replayed on every run.
REGRESSIONS: list[tuple[Config, tuple]] = [
    # A launch scaled in before its event arrived: the coordinator called the event "unconfirmed"
    # and failed it, so SQS redelivered it for hours and it ended in the DLQ (never quiescent).
    # Fixed in coordinator._judge: a launch whose instance EC2 reports terminated is already done.
    (Config(mode="sqs"), (("scale", 1), ("scale", 0))),
    # A batch invocation killed mid-wait: SQS redelivers it after the visibility timeout (30 min) and
    # the redelivery settles nothing new. (It once read as "never quiescent": a harness bug, since
    # fixed, that took an idle queue poll for work; kept for the kill-and-redeliver path.)
    (Config(mode="sqs", poll_interval=5.0), (("scale", 4), ("killlambda", 0.6), ("scale", 0), ("scale", 2))),
    # -- with etcd membership (issue 10); open until the coordinator is fixed -----------------------------
    # A founding launch handed off past action_timeout with launch_failure_result=CONTINUE completes
    # without its go signal (no etcd-cluster-state tag): its etcd never starts, and every reconcile then
    # fails (EtcdUnavailable: an instance is in service, no etcd answers) — the cluster never forms.
    # (Fixed: with membership a launch falls back to ABANDON, never CONTINUE without a member. Propagation
    # always above the action timeout would now churn for good, as it must: some draws here are below it.)
    (
        Config(timeout=15.0, propagation=(20.0, 60.0), launch_failure_result="CONTINUE", action_timeout=45.0),
        (("scale", 1),),
    ),
    # Replacing the only member (terminate without decrement): the termination pass's `member remove` goes
    # to the joiner's endpoint only (the leaver's own is excluded), which does not answer yet; Membership
    # retries it until the Lambda deadline without heartbeats, so the termination and the queued launch
    # expire, and the next replacement bootstraps a new, empty cluster.
    (Config(), (("scale", 1), ("advance", 60.0), ("terminate", 0, False), ("advance", 400.0))),
    # target_mode changed to a-record for a minute, then back: the A-record aliases of running members stay
    # in the SRV record for good (the guard: "no instance found for it"), so every later joiner sees two
    # targets per member.
    (
        Config(),
        (
            ("scale", 2),
            ("advance", 30.0),
            ("setting", (("target_mode", "a-record"),), 60.0),
            ("reconcile",),
            ("advance", 90.0),
        ),
    ),
    # A founder whose etcd never starts, launch_failure_result=CONTINUE, action_timeout 45 s < the member
    # start timeout: the hand-off fallback completes it CONTINUE (no health gate, no ABANDON), so it stays
    # InService without etcd; no etcd ever answers, every reconcile fails, the group never replaces it.
    (Config(launch_failure_result="CONTINUE", action_timeout=45.0), (("neverstart", 0),)),
    # A founding launch scaled in at once: the founding pass waits for it to start ("founding members have
    # not started") until its Lambda deadline, though it is Terminating:Wait and will never start; the
    # termination event waits behind it (reserved concurrency 1) unheartbeated and its action expires.
    (Config(poll_interval=5.0), (("scale", 1), ("advance", 0.5), ("scale", 0))),
    # -- the soak of 2026-12-02 (commit f97f383) ------------------------------------------------------------------
    # A 15 s Lambda under 20-60 s propagation with a 45 s action timeout: every pass handed off before INSYNC and
    # a later one ABANDONed the founders; their replacements waited the same (never quiescent). Fixed: a launch
    # on its way in is governed by the member start timeout, not the action timeout.
    (replace(_SLOW_LAMBDA, etcd_start=(5.0, 20.0), peer_host="ip"), (("scale", 3),)),
    (replace(_SLOW_LAMBDA, poll_interval=1.0), (("scale", 4),)),
    # Two etcd clusters among served instances (a split brain): no etcd answer while nothing was in service read
    # as "no cluster yet" though a founder told `new` was still starting. Fixed in Coordinator._view (and
    # test_a_launch_while_the_founder_is_still_starting_joins_its_cluster_not_a_new_one).
    (replace(_SLOW_LAMBDA, peer_host="ip"), (("unstandby", 0), ("scale", 4), ("neverstart", 0))),
    (
        Config(mode="sns", timeout=15.0, propagation=(20.0, 60.0), poll_interval=5.0, action_timeout=45.0),
        (("scale", 4), ("scale", 4), ("killat", "move-leader", 1)),
    ),
    # Scale to 0 with slow propagation during founding: etcd refuses to remove a cluster's last member, the pass
    # retried it unheartbeated until its deadline, the terminations expired (and earlier: completed before the
    # deletion was INSYNC on a stale describe's missing mark). Fixed: a dismantle keeps the last voter, deletes
    # the record and completes every termination after its INSYNC; leavers are heartbeated while etcd refuses.
    (
        Config(propagation=(20.0, 60.0), poll_interval=1.0, etcd_start=(5.0, 20.0), member_start_timeout=120.0),
        (
            ("advance", 200.0),
            ("slow", 60.0, 200.0),
            ("scale", 4),
            ("advance", 200.0),
            ("scale", 0),
            ("standby", 1, True),
            ("fault", "GetChange", "Throttling", 2),
            ("standby", 2, True),
        ),
    ),  # A cluster founded while target_mode=a-record, then private-dns again: the record listed each member twice
    # (the A-record name its etcd member advertises, kept, and its DNS name, added); every joiner's SRV
    # discovery failed ("member count is unequal"), its learner never started, retries never drained. Fixed:
    # a member is listed by the peer host it advertises (plan.listed_name).
    (
        Config(poll_interval=5.0),
        (
            ("crash", 0, True),
            ("scale", 3),
            ("kill", 1),
            ("killat", "move-leader", 1),
            ("setting", (("target_mode", "a-record"),), 60.0),
            ("advance", 90.0),
            ("kill", 1),
            ("scale", 3),
        ),
    ),
    (Config(), (("setting", (("target_mode", "a-record"),), 600.0), ("scale", 3), ("advance", 700.0), ("scale", 4))),
    (Config(poll_interval=5.0), (("scale", 1), ("setting", (("target_mode", "a-record"),), 60.0), ("advance", 0.5))),
    # -- the soak of 2026-12-02, second run (commit d2e8fb0, AWS's world) ------------------------------------------
    # Four launches scaled in before they were listed while a founding pass waited (reserved concurrency 1) for a
    # founder that never starts: their terminations sat behind it unheartbeated and expired. Fixed: a waiting
    # pass heartbeats every other waiting action of the served groups (Coordinator._drop_ended).
    (
        replace(_SLOW_LAMBDA, timeout=300.0, propagation=(2.0, 8.0)),
        (("scale", 4), ("crash", 0, False), ("scale", 1), ("scale", 0), ("neverstart", 0), ("slow", 60.0, 200.0)),
    ),
    (
        Config(propagation=(20.0, 60.0), poll_interval=2.0, action_timeout=45.0, etcd_start=(5.0, 20.0)),
        (
            ("reuse", 0),
            ("scale", 3),
            ("reuse", 0),
            ("scale", 1),
            ("scale", 1),
            ("reuse", 0),
            ("neverstart", 1),
            ("delivery", 0.5, 30.0),
        ),
    ),
    # A tag_selector mistake for a minute while the group grew: the launches it excluded were dropped as "no action
    # waits" and expired unexplained. Now they are logged (`launch excluded by tag_selector`) and left to the hook's
    # timeout, as the README documents (not ours to complete).
    (
        Config(poll_interval=5.0),
        (
            ("killlambda", 0.6),
            ("setting", (("tag_selector", "Role=etcd"),), 60.0),
            ("scale", 4),
            ("advance", 200.0),
            ("advance", 200.0),
            ("standby", 0, True),
        ),
    ),  # IP reuse (killreuse): the health check's terminate hook on the killed instance completed while the record
    # listed its DNS name — which its replacement, on the same IP, had taken over. The checker now reads a name a
    # live replacement took over as the replacement's (invariants._taken_over); kept for the reuse path.
    (
        Config(timeout=15.0, poll_interval=5.0),
        (("scale", 0), ("scale", 1), ("advance", 90.0), ("killreuse", 3)),
    ),
    (
        Config(
            mode="sqs",
            reserved_concurrency=2,
            propagation=(20.0, 60.0),
            prior_request_window=2.0,
            poll_interval=5.0,
            etcd_start=(5.0, 20.0),
        ),
        (("scale", 4), ("advance", 90.0), ("prior", 5.0), ("killreuse", 2), ("prior", 5.0)),
    ),  # A single founder that never starts, abandoned at the member start timeout: its name stayed in the record for
    # good beside the replacement (its addresses gone, the tag naming its target lost to a fault), kept by the
    # removal guard as "no instance found". Fixed: with etcd's word, a name no member advertises and no instance
    # has goes (plan.build_plan).
    (
        Config(reserved_concurrency=None, poll_interval=5.0, member_start_timeout=60.0),
        (("killlambda", 2.5), ("prior", 0.0), ("fault", "*", "InternalError", 1), ("prior", 5.0), ("neverstart", 3)),
    ),
    (
        Config(
            propagation=(20.0, 60.0),
            launch_failure_result="CONTINUE",
            poll_interval=2.0,
            action_timeout=45.0,
            member_start_timeout=60.0,
        ),
        (
            ("loseresp", "ChangeResourceRecordSets", "InternalError", 2),
            ("neverstart", 3),
            ("advance", 90.0),
            ("loseresp", "CreateTags", "InternalError", 2),
            ("kill", 0),
            ("unstandby", 2),
            ("killat", "member-add", 1),
        ),
    ),
    # Soak at bd64179 (AWS's world): "a founding published with 1 of 3 expected targets" after a scale 1 -> 3. The
    # pass's describe answered desired 1 (a stale view, as AWS's may): founding a cluster of one that the later
    # launches join is right. The checker judged by the group's desired capacity at the call; it now reads what
    # the describe answered (invariants._expected_at, faults.answered_desired).
    (
        Config(poll_interval=5.0, etcd_start=(0.5, 1.0)),
        (
            ("scale", 1),
            ("terminate", 1, True),
            ("reconcile",),
            ("killlambda", 0.6),
            ("advance", 5.0),
            ("fault", "DescribeAutoScalingGroups", "Throttling", 3),
            ("scale", 3),
            ("loseresp", "GetChange", "ServiceUnavailable", 2),
        ),
    ),
    # Soak at bd64179: two members down for 600 s (quorum lost), then scale 0 and back to 4: the first pass
    # waited out its deadline on a removal no member could answer, and the actions that began meanwhile were
    # never heartbeated (they expired; old members died with the data). Fixed: Keeper.discover holds them.
    (
        Config(poll_interval=5.0),
        (
            ("scale", 4),
            ("advance", 40.0),
            ("crash", 0, True),
            ("neverstart", 0),
            ("scale", 0),
            ("scale", 4),
            ("crash", 1, True),
        ),
    ),
    # make test (2026-12-03, a thousand schedules): a founder's record write landed but its answer was lost,
    # and so was the CreateTags naming the target the instance is listed as; the founder was then killed (a
    # terminated instance has no addresses). Its target was nobody's: the removal guard kept it for good, the
    # replacement founded beside a dead name. Fixed: each instance a change lists is tagged with its target
    # before the write (write before mutate), so the dead target is told to be the dead instance's.
    (
        Config(),
        (
            ("loseresp", "ChangeResourceRecordSets", "InternalError", 1),
            ("loseresp", "CreateTags", "InternalError", 2),
            ("scale", 1),
            ("advance", 20.0),
            ("kill", 0),
        ),
    ),
    # -- the soak of 2026-12-04b (commit 2ab9e87, session 7): the checker's ------------------------------------------
    # A completion whose answer was lost (applied; the caller timed out and its retry found no active action) did
    # not count as landed, and mid-run a call still waiting out its lost answer is not logged yet: "1 successful
    # CompleteLifecycleAction calls for 2 completed actions". The coordinator completed each action once.
    (
        Config(poll_interval=5.0, propagation=(2.0, 8.0)),
        (("scale", 2), ("loseresp", "CompleteLifecycleAction", "timeout", 1), ("advance", 40.0)),
    ),
    # -- the soak of 2026-12-04 (commit 3916efe, session 7) ----------------------------------------------------------
    # target_mode switched to a-record at 200 s while a cluster was being founded: the record listed each founder
    # under both names, a founder's SRV discovery bootstrapped a six-member cluster (three placeholders for one
    # instance's second name) that never had a quorum; three launches stayed Pending:Wait for good. Fixed: while
    # no cluster runs, a listed instance's other name goes (plan.build_plan).
    (
        Config(
            mode="eventbridge",
            reserved_concurrency=1,
            timeout=40.0,
            propagation=(20.0, 60.0),
            poll_interval=2.0,
            membership=True,
            etcd_start=(1.0, 3.0),
            member_start_timeout=300.0,
            peer_host="ip",
        ),
        (
            ("killat", "member-add", 1),
            ("scale", 3),
            ("setting", (("target_mode", "a-record"),), 200.0),
            ("fault", "ChangeResourceRecordSets", "Throttling", 3),
            ("crash", 1, True),
            ("killlambda", 1.0),
            ("advance", 15.0),
            ("killat", "member-add", 1),
        ),
    ),
    # Soak of 2ab9e87 (session 7), chunk seed 20033 (fails only after the chunk's earlier schedules, ~1 min:
    # `python -c "import test_schedules as t; print(t._worker((500, 20033, False))['failure'])"` in this folder):
    # scale 3, a kill, scale to 1; a pass whose describes did not show the replacement yet (stale) (1) removed
    # both old members — the last one as if dismantling, completing its termination: the cluster ended with its
    # data (fixed in membership.removals: held_by "kept", a hold) — and (2) dropped the replacement's target,
    # listed by another pass and not in etcd yet, as "no instance found, no member advertises it" (fixed:
    # dropped only by a look ORPHAN_GRACE_SECONDS after the first). Deterministic tests in
    # test_coordinator_membership (the last voter kept; a later look drops a stray target, not the first).
    (
        Config(
            reserved_concurrency=None,
            prior_request_window=2.0,
            launch_failure_result="CONTINUE",
            poll_interval=5.0,
            peer_host="ip",
        ),
        (
            ("lose", 0.3),
            ("slow", 20.0, 60.0),
            ("scale", 3),
            ("fault", "DescribeInstances", "RequestLimitExceeded", 4),
            ("standby", 1, True),
            ("advance", 40.0),
            ("kill", 3),
            ("scale", 1),
        ),
    ),
]


def schedule_property(examples: int, worker_seed: int, regressions: bool = True):
    """The hypothesis test for one worker: ``examples`` schedules from a fixed seed (reproducible),
    plus (``regressions``) every schedule in ``REGRESSIONS`` replayed first."""

    @seed(worker_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(config=configs, steps=steps_lists)
    def schedules_hold(config: Config, steps: tuple) -> None:
        check(config, steps)

    for config, steps in REGRESSIONS if regressions else ():
        schedules_hold = example(config=config, steps=steps)(schedules_hold)
    return schedules_hold


def _worker(args: tuple[int, int] | tuple[int, int, bool]) -> dict:
    examples, worker_seed, *regressions = args
    quiet_logs()
    TOTALS.clear()
    failure = None
    try:
        schedule_property(examples, worker_seed, *regressions)()
    except Exception:  # noqa: BLE001 - reported to the parent with the shrunk schedule
        failure = {"traceback": traceback.format_exc()[-6000:], "schedule": repr(LAST_FAILURE[:1])}
    finally:
        POOL.close()
    return {"seed": worker_seed, "totals": dict(TOTALS), "failure": failure}


def run_parallel(total: int, workers: int, base_seed: int = 6) -> tuple[Counter[str], list[dict], float]:
    """``total`` schedules over ``workers`` processes; returns totals, failures and wall seconds."""
    start = time.monotonic()
    share = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    # REGRESSIONS are replayed once, by test_regression_schedules, not again in every worker here.
    jobs = [(n, base_seed * 1000 + i, False) for i, n in enumerate(share) if n]
    if workers == 1:
        outputs = [_worker(job) for job in jobs]
    else:
        with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
            outputs = pool.map(_worker, jobs)
    totals: Counter[str] = Counter()
    failures = []
    for out in outputs:
        totals.update(out["totals"])
        if out["failure"]:
            failures.append(out["failure"])
    return totals, failures, time.monotonic() - start


@pytest.mark.soak
@pytest.mark.skipif(
    not os.environ.get("BAD_WORLDS"), reason="BAD_WORLDS=150: open findings (SOAK_FINDINGS) break it for now"
)
@pytest.mark.timeout(0)
def test_bad_worlds_hold_invariants() -> None:
    """Schedules built around the bad worlds (a majority lost at once, every etcd silent, a lost data directory,
    scale to zero and back, on a running cluster) hold every invariant: the cluster and its acknowledged data come
    back, or nothing is founded over data that is gone."""
    restore = quiet_logs()

    @seed(77)
    @settings(max_examples=BAD_WORLDS, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(config=configs.filter(lambda c: c.membership), steps=bad_worlds)
    def bad_worlds_hold(config: Config, steps: tuple) -> None:
        check(config, steps)

    try:
        bad_worlds_hold()
    finally:
        POOL.close()
        restore()


def test_regression_schedules_hold_invariants() -> None:
    """Every schedule that once found a bug, replayed on its own so its failure is easy to read."""
    restore = quiet_logs()
    try:
        for config, steps in REGRESSIONS:
            check(config, steps)
    finally:
        POOL.close()
        restore()


@pytest.mark.timeout(900)  # ~4 min on two cores with etcd on; more while hypothesis shrinks a failure
def test_a_thousand_random_schedules_hold_invariants() -> None:
    """≥ 1,000 randomized schedules (two processes), no invariant broken after any step."""
    totals, failures, wall = run_parallel(SCHEDULES, WORKERS)
    print(f"\nschedules: {totals['schedules']} in {wall:.1f}s; " + json.dumps(dict(sorted(totals.items()))))
    assert not failures, "\n\n".join(f["schedule"] + "\n" + f["traceback"] for f in failures)
    assert totals["schedules"] >= SCHEDULES
    assert totals["violations"] == 0


# Schedules a soak broke and that are not fixed yet, as hypothesis shrank them (each may fail in some runs only:
# instance ids and IPs are not seeded). Replayed by `SOAK_FINDINGS=1 pytest tests/reliability/test_schedules.py
# -k findings`; once fixed, each moves to REGRESSIONS (the 2026-12-02 soak's six are there now).
SOAK_FINDINGS: list[tuple[Config, tuple]] = [
    # A member's data directory lost on a running 3-member cluster (``wipe``, the bad-worlds step not drawn yet): its
    # start script tags the instance etcd-data-lost, yet the scheduled reconciles that follow neither remove the
    # member nor replace the instance (tests/hook_handler/test_durability.py's data-lost test, on the same model,
    # does both): "member ... is not running at the end".
    (
        Config(timeout=300.0, poll_interval=5.0),
        (("scale", 3), ("advance", 200.0), ("reconcile",), ("advance", 90.0), ("wipe", 0)),
    ),
    # A majority lost at once, then scale-ins and a scale-out while Route 53 propagates slowly (60-200 s): a
    # termination's action timed out unheld during the recovery ("timed out with nothing to explain it").
    (
        Config(propagation=(60.0, 200.0), poll_interval=5.0),
        (
            ("scale", 3),
            ("advance", 200.0),
            ("reconcile",),
            ("advance", 90.0),
            ("killmany", 2),
            ("scale", 1),
            ("scale", 2),
        ),
    ),
]


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("SOAK_FINDINGS"), reason="SOAK_FINDINGS=1: the soak's open findings")
@pytest.mark.parametrize("n", range(len(SOAK_FINDINGS)))
def test_soak_findings(n: int) -> None:
    """Each open soak finding, five times (its failure depends on unseeded ids and addresses)."""
    restore = quiet_logs()
    try:
        for _ in range(5):
            check(*SOAK_FINDINGS[n])
    finally:
        POOL.close()
        restore()


SOAK_CHUNK = 500  # schedules per checkpoint


def run_soak(total: int, base_seed: int, progress: Path) -> tuple[Counter[str], list[dict], float]:
    """``total`` schedules in chunks of ``SOAK_CHUNK`` (each its own seed) over ``WORKERS`` processes,
    every finished chunk checkpointed to ``progress``: a soak cut short (a session ends) resumes where it
    stopped when run again with the same ``total`` and seed. Returns totals, failures and wall seconds
    (summed over every run that contributed)."""
    key = {"schedules": total, "seed": base_seed}
    state = json.loads(progress.read_text()) if progress.exists() else {}
    if state.get("key") != key:
        state = {"key": key, "chunks": {}, "wall_seconds": 0.0}
    jobs = []
    for i in range((total + SOAK_CHUNK - 1) // SOAK_CHUNK):
        chunk_seed = base_seed * 1000 + i
        if str(chunk_seed) not in state["chunks"]:
            jobs.append((min(SOAK_CHUNK, total - i * SOAK_CHUNK), chunk_seed, i == 0))
    if jobs:
        print(f"\nsoak: {len(jobs)} chunks of {SOAK_CHUNK} to run ({len(state['chunks'])} already done)")
    chunks = len(state["chunks"]) + len(jobs)
    start = time.monotonic()
    with multiprocessing.get_context("fork").Pool(min(WORKERS, max(1, len(jobs)))) as pool:
        for out in pool.imap_unordered(_worker, jobs):
            state["chunks"][str(out["seed"])] = out
            state["wall_seconds"] += time.monotonic() - start
            start = time.monotonic()
            progress.write_text(json.dumps(state) + "\n")
            failed = "FAILED" if out["failure"] else "ok"
            print(f"soak: chunk seed {out['seed']} {failed} ({len(state['chunks'])}/{chunks})", flush=True)
    totals: Counter[str] = Counter()
    failures = []
    for out in state["chunks"].values():
        totals.update(out["totals"])
        if out["failure"]:
            failures.append(out["failure"])
    return totals, failures, state["wall_seconds"]


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("SOAK_SCHEDULES"), reason="make soak (SOAK_SCHEDULES=20000)")
def test_soak() -> None:
    """The long run: ``SOAK_SCHEDULES`` schedules; counts printed and written to soak-results.json.
    Checkpointed per chunk in ``soak-progress.json`` (git-ignored): run it again to resume."""
    total = int(os.environ["SOAK_SCHEDULES"])
    base_seed = int(os.environ.get("SOAK_SEED", "20"))
    totals, failures, wall = run_soak(total, base_seed, HERE / "soak-progress.json")
    figures = {
        "command": f"make soak  (SOAK_SCHEDULES={total} SOAK_SEED={base_seed})",
        "commit": os.environ.get("SOAK_COMMIT", ""),
        "wall_seconds": round(wall, 1),
        "schedules": totals["schedules"],
        "events_delivered": totals["events_delivered"],
        "invocations": totals["invocations"],
        "faults_injected": totals["faults_injected"],
        "throttled_by_rate_limit": totals["throttled"],
        "lambda_kills": totals["lambda_kills"],
        "lambda_timeouts": totals["lambda_timeouts"],
        "route53_changes": totals["route53_changes"],
        "api_calls": totals["api_calls"],
        "actions": totals["actions"],
        "actions_completed": totals["actions_completed"],
        "actions_timed_out": totals["actions_timed_out"],
        "fallback_completions": totals["fallback_completions"],
        "unproven_completions": totals["unproven_completions"],
        "dead_letters": totals["dead_letters"],
        "violations": totals["violations"] + len(failures),
    }
    SOAK_RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print("\n" + json.dumps(figures, indent=2))
    assert not failures, "\n\n".join(f["schedule"] + "\n" + f["traceback"] for f in failures)
