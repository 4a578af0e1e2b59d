"""Run one strategy on one scenario on the emulated AWS (simulated time) and measure it.

Everything is deterministic for a seed: the emulator's rng, moto's ids, the global ``random``
(tenacity's and the per-event strategies' jitter) and the propagation delays, which come from
their own rng seeded by (seed, scenario) so that every strategy sees the same sequence of delays
for its 1st, 2nd, ... change.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench_scenarios import Driver, Scenario
from bench_strategies import LAUNCHING, Context, Strategy, Switch, waiter_on_clock
from moto.moto_api._internal import mock_random

from hook_handler.members import MEMBER_STATES
from infra.local import LocalAWS
from infra.local.clock import SimClock
from infra.local.stack import Stack, deploy

DEFAULT_HORIZON = 1200.0  # simulated seconds after t0 before a run that never goes quiet is cut off
STEP = 10.0
SETUP_SETTLE = 30.0  # simulated seconds for the set-up's notifications to be delivered (and dropped)
SRV_TTL = 60


class Propagation:
    """Route 53 propagation delays: fixed, or uniform in a range from a dedicated seeded rng."""

    def __init__(self, spec: float | tuple[float, float], seed: str) -> None:
        self.spec = spec
        self.rng = random.Random(seed)
        self.draws: list[float] = []

    def __call__(self) -> float:
        delay = self.rng.uniform(*self.spec) if isinstance(self.spec, tuple) else float(self.spec)
        self.draws.append(delay)
        return delay


@dataclass
class ActionFigure:
    """One lifecycle action, as measured."""

    instance_id: str
    transition: str
    started: float  # seconds after t0
    ended: float | None
    ended_by: str | None
    result: str | None
    insync: float | None  # seconds after t0: INSYNC of the change that settles it; None: never
    early: bool = False

    @property
    def completed(self) -> bool:
        return self.ended_by == "complete"

    @property
    def added_delay(self) -> float | None:
        if not self.completed or self.early or self.insync is None or self.ended is None:
            return None
        return self.ended - self.insync


@dataclass
class RunResult:
    """The figures of one strategy x scenario run (times in seconds after t0)."""

    strategy: str
    scenario: str
    seed: int
    actions: int
    instances: int
    completed: int  # actions completed with CompleteLifecycleAction (any result)
    continued: int  # ... of which CONTINUE
    timed_out: int  # actions ended by their hook's timeout (DefaultResult)
    abandoned: int  # actions that ended ABANDON (by completion or timeout)
    still_active: int  # actions active when the run was cut off at the horizon
    delay_p50: float | None
    delay_p95: float | None
    delay_max: float | None
    last_done: float | None  # when the last action ended (any way)
    last_completed: float | None  # when the last action was completed, if every action was
    r53_requests: int
    r53_per_instance: float
    r53_peak_per_second: int
    throttled: int
    r53_changes: int
    missing: list[str]
    extra: list[str]
    early: int
    slowest_propagation: float
    invocations: int
    failed_invocations: int
    dead_letters: int
    horizon_hit: bool
    sim_seconds: float
    figures: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    """
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def peak_per_second(times: Sequence[float]) -> int:
    """Most requests in any 1-second window [t, t + 1) starting at a request."""
    ordered = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(ordered):
        while j < len(ordered) and ordered[j] < t + 1.0:
            j += 1
        best = max(best, j - i)
    return best


def srv_targets(values: Sequence[str]) -> set[str]:
    return {v.split()[3].lower() for v in values if len(v.split()) == 4}


def setup_cluster(aws: LocalAWS, stack: Stack, size: int) -> list[str]:
    """Bring ``size`` instances in service and list them in the record, with no Route 53 call.

    Their lifecycle events reach the (still silent) handler and are dropped; the set-up completes
    the actions itself and writes the record directly (``aws.set_records``).
    """
    if size == 0:
        return []
    stack.scale(size)
    aws.clock.advance(SETUP_SETTLE)
    asg = stack.client("autoscaling")
    for action in [a for a in aws.lifecycle_actions if a.active]:
        asg.complete_lifecycle_action(
            AutoScalingGroupName=action.group,
            LifecycleHookName=action.hook,
            LifecycleActionToken=action.token,
            LifecycleActionResult="CONTINUE",
        )
    aws.clock.advance(SETUP_SETTLE)
    members = [iid for iid, state in stack.instances().items() if state == "InService"]
    dns = stack.private_dns(members)
    aws.set_records(stack.zone_id, stack.srv_name, "SRV", SRV_TTL, sorted(f"0 0 2380 {dns[i]}" for i in members))
    return members


def run(
    strategy: Strategy,
    scenario: Scenario,
    *,
    seed: int = 1,
    propagation: float | tuple[float, float] = (20.0, 60.0),
    route53_rate: float | None = 5.0,
    horizon: float | None = None,
) -> RunResult:
    """Deploy ``strategy`` on a fresh emulated account, play ``scenario``, measure.

    The run ends when the scenario is over, no lifecycle action is active and no invocation is
    pending — or at ``horizon`` simulated seconds after t0 (default: the strategy's, else 1200 s).
    """
    if horizon is None:
        horizon = strategy.horizon or DEFAULT_HORIZON
    random.seed(f"{seed}/{scenario.key}")
    mock_random.seed(seed)
    clock = SimClock()
    aws = LocalAWS(clock, seed=seed, propagation=propagation, route53_rate=route53_rate)
    with aws, waiter_on_clock(clock):
        delays = Propagation(propagation, f"{seed}/{scenario.key}/propagation")
        aws.propagation_delay = delays  # type: ignore[method-assign]
        switch = Switch()
        stack = deploy(
            aws,
            mode=strategy.mode,
            handler=switch,
            reserved_concurrency=strategy.reserved_concurrency,
        )
        members = setup_cluster(aws, stack, scenario.initial)
        initial_targets = srv_targets((stack.record() or (0, ()))[1])
        t0 = clock.now()
        calls0, changes0, actions0 = len(aws.calls), len(aws.route53_changes), len(aws.lifecycle_actions)
        invocations0, dead0 = len(aws.invocations), len(aws.dead_letters)
        if strategy.coordinator:
            switch.target = stack.runtime.handle
        else:
            assert strategy.make_handler is not None
            ctx = Context(
                clock=clock,
                r53=aws.client("route53"),
                ec2=aws.client("ec2"),
                asg=aws.client("autoscaling"),
                zone_id=stack.zone_id,
                srv_name=stack.srv_name,
                ttl=SRV_TTL,
            )
            switch.target = strategy.make_handler(ctx)

        driver = clock.spawn(scenario.drive, Driver(aws, stack, members, actions0), name="scenario")
        horizon_hit = False
        while True:
            clock.run(until=min(clock.now() + STEP, t0 + horizon))
            actions = aws.lifecycle_actions[actions0:]
            if driver.done and not any(a.active for a in actions) and not _busy(clock):
                break
            if clock.now() >= t0 + horizon:
                horizon_hit = True
                break
        if driver.done:
            driver.value()  # re-raise a failure of the scenario itself
        end = clock.now()

        calls = [c for c in aws.calls[calls0:] if c.service == "route53"]
        changes = aws.route53_changes[changes0:]
        actions = list(aws.lifecycle_actions[actions0:])
        invocations = aws.invocations[invocations0:]
        dead = aws.dead_letters[dead0:]
        final = stack.record()
        final_targets = srv_targets(final[1]) if final else set()
        states = stack.instances()
        dns = private_dns_of(aws)
        expected = {dns[i] for i, s in states.items() if s in MEMBER_STATES}

        figures = [action_figure(a, dns[a.instance_id], changes, initial_targets, stack.srv_name, t0) for a in actions]
        stop_tasks(clock)

    delays_after = [d for f in figures if (d := f.added_delay) is not None]
    ended = [f.ended for f in figures if f.ended is not None]
    all_completed = bool(figures) and all(f.completed for f in figures)
    instances = len({f.instance_id for f in figures})
    return RunResult(
        strategy=strategy.key,
        scenario=scenario.key,
        seed=seed,
        actions=len(figures),
        instances=instances,
        completed=sum(f.completed for f in figures),
        continued=sum(f.completed and f.result == "CONTINUE" for f in figures),
        timed_out=sum(f.ended_by == "timeout" for f in figures),
        abandoned=sum(f.result == "ABANDON" for f in figures),
        still_active=sum(f.ended is None for f in figures),
        delay_p50=percentile(delays_after, 50),
        delay_p95=percentile(delays_after, 95),
        delay_max=max(delays_after) if delays_after else None,
        last_done=max(ended) if ended else None,
        last_completed=max(ended) if all_completed and ended else None,
        r53_requests=len(calls),
        r53_per_instance=len(calls) / instances if instances else 0.0,
        r53_peak_per_second=peak_per_second([c.time for c in calls]),
        throttled=sum(c.error == "Throttling" for c in calls),
        r53_changes=len(changes),
        missing=sorted(expected - final_targets),
        extra=sorted(final_targets - expected),
        early=sum(f.early for f in figures),
        slowest_propagation=max(delays.draws) if delays.draws else 0.0,
        invocations=len(invocations),
        failed_invocations=sum(i.outcome in ("error", "timeout", "partial") for i in invocations),
        dead_letters=len(dead),
        horizon_hit=horizon_hit,
        sim_seconds=end - t0,
        figures=[asdict(f) for f in figures],
    )


def action_figure(
    action: Any, target: str, changes: Sequence[Any], initial: set[str], srv_name: str, t0: float
) -> ActionFigure:
    """When the record that settles ``action`` was INSYNC, and whether it was completed before that.

    Launch: the first change (after the action started) whose record lists the instance.
    Termination: the first change after the start whose record lacks it — or, when the record did not
    list it at the start, the INSYNC of the change that dropped it (no earlier than the start).
    """

    def listed(change: Any) -> bool:
        record = change.records_after.get((srv_name, "SRV"))
        return record is not None and target in srv_targets(record[1])

    insync: float | None = None
    later = [c for c in changes if c.submitted_at >= action.started_at]
    if action.transition == LAUNCHING:
        first = next((c for c in later if listed(c)), None)
        insync = first.insync_at if first else None
    else:
        before = [c for c in changes if c.submitted_at < action.started_at]
        listed_at_start = listed(before[-1]) if before else target in initial
        if not listed_at_start:
            # Dropped before its action began (a pass saw it in `Terminating`, the transitional state before
            # `Terminating:Wait`): settled once the change that dropped it is INSYNC, or at the start if later.
            dropped = None  # the earliest change of the run of changes lacking it, up to the start
            for c in reversed(before):
                if listed(c):
                    break
                dropped = c
            if before and dropped is before[0] and target not in initial:
                dropped = None  # never listed at all
            insync = max(action.started_at, dropped.insync_at) if dropped is not None else action.started_at
        else:
            first = next((c for c in later if not listed(c)), None)
            insync = first.insync_at if first else None
    ended = action.ended_at
    early = action.ended_by == "complete" and (insync is None or (ended is not None and ended < insync - 1e-9))
    return ActionFigure(
        instance_id=action.instance_id,
        transition="launch" if action.transition == LAUNCHING else "terminate",
        started=action.started_at - t0,
        ended=None if ended is None else ended - t0,
        ended_by=action.ended_by,
        result=action.result,
        insync=None if insync is None else insync - t0,
        early=early,
    )


def private_dns_of(aws: LocalAWS) -> dict[str, str]:
    """Instance id → private DNS name (dotted), terminated instances included, without an API call."""
    from moto.ec2.models import ec2_backends

    from infra.local.autoscaling.addressing import addresses

    backend = ec2_backends[aws.account][aws.region]
    # The name each had: a terminated instance shows none (AWS), but the record listed it by that name.
    return {i.id: addresses(i)[1].lower().rstrip(".") + "." for i in backend.all_instances()}


def _busy(clock: SimClock) -> bool:
    """Tasks still to run, other than SQS poll tasks (one stays scheduled at receive + visibility timeout
    after every batch, even when the batch was deleted: see the report)."""
    return any(not t.name.startswith("poll-") for t in clock.live_tasks())


def stop_tasks(clock: SimClock) -> None:
    """Kill what still runs at the horizon so its threads end with the run."""
    for task in clock.live_tasks():
        task.kill("benchmark run over")
    try:
        clock.run(until=clock.now())
    except RuntimeError:
        pass
