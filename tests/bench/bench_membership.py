"""Membership on (issue 13): the coordinator with etcd membership beside a per-event strategy with membership and
the physical bound, on simulated time with the etcd 3.5 model (``infra.local.etcd_model``) and the instances'
bootstrap protocol (``infra.local.sim_fleet``).

Each run: a fresh emulated account (AWS's world: transitional states, stale describes), the coordinator deployed
(EventBridge, reserved concurrency 1) founds the initial cluster (set-up, not measured); at t0 the strategy under
test takes over the function and the scenario plays. A continuous client writes one key a second through whichever
member answers (as an application with every client URL would) and every write etcd acknowledged is looked up in
the final cluster's keyspace: an acknowledged write missing there is lost. A sampler looks at etcd every second:
a quorum loss is a moment the initial cluster has fewer running voters than its quorum.

The physical bound for the same draw (issue 13): one membership change at a time, each joiner costs the Route 53
propagation of the change that lists it, its etcd start and etcd's 5 s health interval (the leader's
connected-since check before the next add); a leaver with no joiner to ride along costs the propagation of the
change that drops it. Every draw is the run's own: the propagation of the change that listed each joiner (its
INSYNC minus its submission), the model's start time of each joiner's successful etcd start. Beside it, the
safe-order bound: add before remove (the coordinator's order: a replacement's old member leaves etcd only once
the new one is in, and its drop from the record follows) puts every leaver's drop propagation on the path as
well. The ratio is the run's total time (the first lifecycle action's start to the last action ended and the
last etcd start served, with the cluster in step) over that sum. AWS's own transitions inside a run (an instance
refresh's next launch, ``Pending`` before ``Pending:Wait``) are in the measured time and not in the bound: the
ratio errs against us.

The per-event strategy is what users write when they add membership to a per-event handler: on a launch,
``member add`` (backed off while etcd refuses), the go-signal tag, read-modify-write of the record, boto3's
waiter, complete; on a termination, ``member remove`` (backed off), read-modify-write, wait, complete. No queue,
no health gate, no quorum guard, no termination policy (the group's default picks the victim).
"""

from __future__ import annotations

import base64
import itertools
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench_harness import SRV_TTL, Propagation, srv_targets, stop_tasks
from bench_strategies import (
    BACKOFF_ATTEMPTS,
    BACKOFF_BASE,
    BACKOFF_CAP,
    LAUNCHING,
    RETRYABLE,
    Context,
    Switch,
    complete_action,
    event_detail,
    private_dns_of,
    rmw_write,
    waiter_on_clock,
)
from botocore.exceptions import WaiterError
from moto.moto_api._internal import mock_random

from hook_handler.etcd import EtcdRefused, EtcdUnavailable
from infra.local import LocalAWS
from infra.local.clock import SimClock
from infra.local.etcd_model import EtcdModel
from infra.local.sim_fleet import SimFleet
from infra.local.stack import deploy

HEALTH_INTERVAL = 5.0  # etcd's leader checks a voter connected for 5 s before the next add (the bound's term)
ETCD_START = (2.0, 8.0)  # seconds an etcd process takes to serve (the model's draw per start)
PROPAGATION = (20.0, 60.0)
HORIZON = 2400.0
SETUP_LIMIT = 900.0
STEP = 5.0
WRITE_EVERY = 1.0


# -- scenarios ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MScenario:
    key: str
    label: str
    initial: int
    note: str


REFRESH_NOTE = "StartInstanceRefresh, MinHealthyPercentage 90 (one at a time), InstanceWarmup 0"
MSCENARIOS: dict[str, MScenario] = {
    s.key: s
    for s in (
        MScenario("m-join-1", "single join", 3, "3 → 4: one launch joins a running 3-member cluster"),
        MScenario("m-grow-3-5", "3 → 5", 3, "two launches at once join a running 3-member cluster"),
        MScenario("m-refresh-3", "instance refresh of 3", 3, REFRESH_NOTE),
        MScenario("m-refresh-5", "instance refresh of 5", 5, REFRESH_NOTE),
        MScenario(
            "m-scale-in-down",
            "scale-in with a member down",
            5,
            "one follower's etcd is down for good (the instance runs); 5 → 4",
        ),
    )
}


def _drive(scenario: str, world: World) -> None:
    stack, clock = world.stack, world.aws.clock
    world.t0 = clock.now()  # the operation starts (after the scenario's own preparation, below)
    if scenario == "m-join-1":
        stack.scale(4)
    elif scenario == "m-grow-3-5":
        stack.scale(5)
    elif scenario.startswith("m-refresh"):
        stack.client("autoscaling").start_instance_refresh(
            AutoScalingGroupName=stack.group,
            Preferences={"MinHealthyPercentage": 90, "InstanceWarmup": 0},  # one at a time for 3 and 5
        )
    elif scenario == "m-scale-in-down":
        leader = world.model.leader(world.cluster)
        down = next(i for i, p in sorted(world.model.processes.items()) if p.running and p.member_id != leader)
        world.fleet.crash(down, restart_delay=10**9)
        world.down = down
        clock.sleep(30.0)  # the cluster has noticed (etcd's health, the coordinator's next look)
        world.t0 = clock.now()
        stack.scale(4)
    else:
        raise ValueError(scenario)


# -- strategies ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MStrategy:
    key: str
    label: str
    note: str


MSTRATEGIES: dict[str, MStrategy] = {
    s.key: s
    for s in (
        MStrategy(
            "coordinator",
            "coordinator (membership on)",
            "EventBridge, reserved concurrency 1, its termination policy named first in the group's",
        ),
        MStrategy(
            "per-event",
            "per-event with membership",
            "member add/remove per event, RMW record, boto3 waiter, complete; no queue, no guard; unreserved",
        ),
    )
}


def _backoff_etcd(clock: Any, fn: Callable[[], Any]) -> Any:
    """``fn()`` retried with full-jitter backoff while etcd refuses or does not answer (then the error)."""
    for attempt in range(BACKOFF_ATTEMPTS):
        try:
            return fn()
        except (EtcdRefused, EtcdUnavailable):
            if attempt == BACKOFF_ATTEMPTS - 1:
                raise
            clock.sleep(random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
    raise AssertionError("unreachable")


def per_event_membership(ctx: Context, fleet: SimFleet, transport: Any) -> Callable[[dict[str, Any], Any], Any]:
    """See the module docstring."""

    def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception = EtcdUnavailable("(none)", "no etcd member runs")
        for endpoint in fleet.client_endpoints():
            try:
                return transport.post(endpoint, path, body, 5.0)
            except EtcdUnavailable as exc:
                last = exc
        raise last

    def handler(event: dict[str, Any], context: Any) -> None:
        detail = event_detail(event)
        if detail is None:
            return
        iid = detail["EC2InstanceId"]
        peer = f"http://{private_dns_of(ctx, iid).lower().rstrip('.')}:2380"

        def mine(m: dict[str, Any]) -> bool:
            return m.get("name") == iid or peer in m.get("peerURLs", [])

        if detail["LifecycleTransition"] == LAUNCHING:
            members = call("/v3/cluster/member/list", {}).get("members", [])
            if not any(mine(m) for m in members):
                _backoff_etcd(ctx.clock, lambda: call("/v3/cluster/member/add", {"peerURLs": [peer]}))
            ctx.ec2.create_tags(Resources=[iid], Tags=[{"Key": "etcd-cluster-state", "Value": "existing"}])
        else:
            members = call("/v3/cluster/member/list", {}).get("members", [])
            for m in [m for m in members if mine(m)]:
                _backoff_etcd(ctx.clock, lambda m=m: call("/v3/cluster/member/remove", {"ID": int(m["ID"])}))
        change_id = rmw_write(ctx, detail)
        if change_id is not None:
            waiter = ctx.r53.get_waiter("resource_record_sets_changed")
            for attempt in range(BACKOFF_ATTEMPTS):
                try:
                    waiter.wait(Id=change_id)
                    break
                except WaiterError as exc:
                    code = str((exc.last_response or {}).get("Error", {}).get("Code", ""))
                    if code not in RETRYABLE or attempt == BACKOFF_ATTEMPTS - 1:
                        raise
                    ctx.clock.sleep(random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
        complete_action(ctx, detail)

    return handler


# -- the world, the client, the sampler ---------------------------------------------------------------------
@dataclass
class World:
    aws: LocalAWS
    stack: Any
    model: EtcdModel
    fleet: SimFleet
    cluster: int = 0
    down: str | None = None
    t0: float = 0.0  # when the scenario's operation began (the measured time starts there)
    acked: list[tuple[float, str]] = field(default_factory=list)
    failed: int = 0
    ok_times: list[float] = field(default_factory=list)
    quorum_lost_at: list[float] = field(default_factory=list)
    split_at: list[float] = field(default_factory=list)
    stop: bool = False

    def running_clusters(self) -> dict[int, list[Any]]:
        return {cid: ms for cid, ms in self.model.clusters().items() if any(m.running for m in ms)}

    def in_step(self) -> bool:
        """One running cluster; its members = the group's serving instances (a down member's excepted), started."""
        clusters = self.running_clusters()
        if set(clusters) != {self.cluster}:
            return False
        members = clusters[self.cluster]
        serving = {i for i, s in self.stack.instances().items() if s in ("InService", "Standby")}
        names = {m.name for m in members}
        return (
            all(m.started and not m.learner for m in members)
            and names - {self.down} == serving - {self.down}
            and srv_targets((self.stack.record() or (0, ()))[1])
            == {t for i, t in self.stack.private_dns(names & serving).items()}
        )


def _writer(world: World) -> None:
    """One put a second through the first member that answers; every acknowledged key is kept."""
    transport = world.model.transport()
    clock = world.aws.clock
    seq = 0
    while not world.stop:
        seq += 1
        key = f"/bench/{seq:06d}"
        body = {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(b"v").decode()}
        for endpoint in world.fleet.client_endpoints():
            try:
                transport.post(endpoint, "/v3/kv/put", body, 2.0)
            except (EtcdRefused, EtcdUnavailable):
                world.failed += 1
                continue
            world.acked.append((clock.now(), key))
            world.ok_times.append(clock.now())
            break
        clock.sleep(WRITE_EVERY)


def _sampler(world: World) -> None:
    clock = world.aws.clock
    while not world.stop:
        clusters = world.running_clusters()
        if len(clusters) > 1:
            world.split_at.append(clock.now())
        if world.cluster in world.model.cluster_states and world.model.quorum_lost(world.cluster):
            world.quorum_lost_at.append(clock.now())
        clock.sleep(1.0)


def _episodes(times: list[float], gap: float = 1.5) -> int:
    """How many separate stretches a list of per-second sample times forms."""
    return sum(1 for i, t in enumerate(times) if i == 0 or t - times[i - 1] > gap)


# -- one run -------------------------------------------------------------------------------------------------
@dataclass
class MResult:
    strategy: str
    scenario: str
    seed: int
    changed: int  # members added + removed after t0
    total: float | None  # t0 → last action ended with the cluster in step (None: never within the horizon)
    per_member: float | None
    bound: float
    ratio: float | None
    safe_bound: float  # the bound with every leaver's drop on the path (add before remove)
    safe_ratio: float | None
    bound_terms: list[dict[str, Any]]
    quorum_losses: int
    quorum_lost_seconds: int
    splits: int
    acked: int
    lost: int
    failed_requests: int
    longest_outage: float
    actions: int
    completed: int
    abandoned: int
    timed_out: int
    in_step: bool
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run(strategy: str, scenario: str, *, seed: int = 1) -> MResult:
    random.seed(f"{seed}/{scenario}/membership")
    mock_random.seed(seed)
    clock = SimClock()
    aws = LocalAWS(clock, seed=seed, propagation=PROPAGATION)
    with aws, waiter_on_clock(clock):
        delays = Propagation(PROPAGATION, f"{seed}/{scenario}/propagation")
        aws.propagation_delay = delays  # type: ignore[method-assign]
        model = EtcdModel(clock, seed=seed, start_seconds=ETCD_START)
        switch = Switch()
        stack = deploy(
            aws,
            mode="eventbridge",
            handler=switch,
            etcd=model.transport(),
            reserved_concurrency=1 if strategy == "coordinator" else None,
        )
        fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain).start()
        world = World(aws, stack, model, fleet)
        switch.target = stack.runtime.handle
        spec = MSCENARIOS[scenario]
        _setup(world, spec.initial)
        if strategy == "coordinator":
            _wire_policy(world)
        elif strategy == "per-event":
            ctx = Context(
                clock=clock,
                r53=aws.client("route53"),
                ec2=aws.client("ec2"),
                asg=aws.client("autoscaling"),
                zone_id=stack.zone_id,
                srv_name=stack.srv_name,
                ttl=SRV_TTL,
            )
            switch.target = per_event_membership(ctx, fleet, model.transport())
        else:
            raise ValueError(strategy)
        t0 = clock.now()
        actions0, changes0 = len(aws.lifecycle_actions), len(aws.route53_changes)
        procs0 = {iid: len(p.log) for iid, p in model.processes.items()}
        initial_members = {m.name for m in world.running_clusters()[world.cluster]}
        clock.spawn(_writer, world, name="bench-writer")
        clock.spawn(_sampler, world, name="bench-sampler")
        driver = clock.spawn(_drive, scenario, world, name="scenario")
        settled_at: float | None = None
        while clock.now() < t0 + HORIZON:
            clock.run(until=clock.now() + STEP)
            actions = aws.lifecycle_actions[actions0:]
            quiet = driver.done and actions and not any(a.active for a in actions) and not _refreshing(aws)
            if quiet and world.in_step():
                settled_at = clock.now()
                break
        if driver.done:
            driver.value()
        ended = [a.ended_at for a in aws.lifecycle_actions[actions0:] if a.ended_at is not None]
        started = [_running_at(p, procs0.get(i, 0)) for i, p in model.processes.items()]
        last = max([*ended, *(t for t in started if t is not None)], default=t0)
        # From the first lifecycle action's start (the hooks are where any strategy can begin; AWS's own launch
        # before Pending:Wait is in neither strategy's hands) to the last action ended and the last etcd start.
        first = min((a.started_at for a in aws.lifecycle_actions[actions0:]), default=world.t0)
        total = None if settled_at is None else last - first
        world.stop = True
        clock.run(until=clock.now() + 3.0)
        actions = list(aws.lifecycle_actions[actions0:])
        changes = list(aws.route53_changes[changes0:])
        final = world.running_clusters()
        survivors = final.get(world.cluster) or (max(final.values(), key=len) if final else [])
        cid = world.cluster if world.cluster in final else (next(iter(final)) if final else None)
        kv = model.kv(cid) if cid is not None else {}
        lost = [k for _, k in world.acked if k not in kv]
        terms = _bound_terms(world, actions, changes, procs0, initial_members, t0, stack.srv_name)
        members_after = {m.name for m in survivors}
        changed = len(members_after - initial_members) + len(initial_members - members_after)
        in_step = settled_at is not None
        stop_tasks(clock)
    bound = sum(t["seconds"] for t in terms if not t.get("paired"))
    safe_bound = sum(t["seconds"] for t in terms)
    ok = [t0, *world.ok_times, world.t0 + (total or HORIZON)]
    return MResult(
        strategy=strategy,
        scenario=scenario,
        seed=seed,
        changed=changed,
        total=total,
        per_member=None if total is None or not changed else total / changed,
        bound=round(bound, 1),
        ratio=None if total is None or bound <= 0 else total / bound,
        safe_bound=round(safe_bound, 1),
        safe_ratio=None if total is None or safe_bound <= 0 else total / safe_bound,
        bound_terms=terms,
        quorum_losses=_episodes(world.quorum_lost_at),
        quorum_lost_seconds=len(world.quorum_lost_at),
        splits=_episodes(world.split_at),
        acked=len(world.acked),
        lost=len(lost),
        failed_requests=world.failed,
        longest_outage=max((b - a for a, b in itertools.pairwise(ok)), default=0.0),
        actions=len(actions),
        completed=sum(a.ended_by == "complete" for a in actions),
        abandoned=sum(a.result == "ABANDON" for a in actions),
        timed_out=sum(a.ended_by == "timeout" for a in actions),
        in_step=in_step,
    )


def _setup(world: World, size: int) -> None:
    """The coordinator founds the initial cluster (0 → ``size``) and everything settles."""
    clock = world.aws.clock
    world.stack.scale(size)
    start = clock.now()
    while clock.now() - start < SETUP_LIMIT:
        clock.run(until=clock.now() + 10.0)
        clusters = world.running_clusters()
        if len(clusters) == 1:
            world.cluster = next(iter(clusters))
            if world.in_step() and not any(a.active for a in world.aws.lifecycle_actions):
                clock.run(until=clock.now() + 30.0)  # etcd's connected-since settles; stray events end
                return
    raise RuntimeError(f"set-up: no settled {size}-member cluster after {SETUP_LIMIT:.0f}s")


def _wire_policy(world: World) -> None:
    """The coordinator's termination policy, named first in the group's TerminationPolicies (etcd-cluster.yaml)."""
    from hook_handler.app import Clients, PolicyRuntime
    from hook_handler.settings import load_settings

    aws, stack = world.aws, world.stack
    policy = PolicyRuntime(
        load_settings(stack.env),
        Clients(route53=None, autoscaling=aws.client("autoscaling"), ec2=aws.client("ec2")),
        aws.clock,
        etcd_transport=world.model.transport(),
    )
    arn = aws.register_function("etcd-termination-policy", policy.handle, timeout=10)
    aws.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName=stack.group, TerminationPolicies=[arn, "Default"]
    )


def _refreshing(aws: LocalAWS) -> bool:
    return any(r.status in ("Pending", "InProgress", "Cancelling") for r in getattr(aws, "instance_refreshes", []))


def _bound_terms(
    world: World,
    actions: list[Any],
    changes: list[Any],
    procs0: dict[str, int],
    initial: set[str],
    t0: float,
    srv_name: str,
) -> list[dict[str, Any]]:
    """The physical bound's terms, from this run's own draws (see the module docstring)."""
    dns = world.stack.private_dns({a.instance_id for a in actions})
    final = {m.name for m in world.running_clusters().get(world.cluster, []) if m.started}

    def listing(target: str, after: float, listed: bool) -> Any:
        for c in changes:
            record = c.records_after.get((srv_name, "SRV"))
            names = srv_targets(record[1]) if record else set()
            if c.submitted_at >= after and (target in names) == listed:
                return c
        return None

    terms: list[dict[str, Any]] = []
    joiners = [a for a in actions if a.transition == LAUNCHING and a.instance_id in final - initial]
    for a in joiners:
        change = listing(dns.get(a.instance_id, ""), a.started_at, True)
        propagation = change.insync_at - change.submitted_at if change is not None else 0.0
        start = _start_seconds(world.model.processes.get(a.instance_id), procs0.get(a.instance_id, 0))
        terms.append(
            {
                "instance": a.instance_id,
                "kind": "join",
                "propagation": round(propagation, 1),
                "etcd_start": round(start, 1),
                "health": HEALTH_INTERVAL,
                "seconds": propagation + start + HEALTH_INTERVAL,
            }
        )
    leavers = [a for a in actions if a.transition != LAUNCHING and a.instance_id in initial]
    for n, a in enumerate(leavers):
        change = listing(dns.get(a.instance_id, ""), a.started_at - 10.0, False)
        propagation = change.insync_at - change.submitted_at if change is not None else 0.0
        # A leaver paired with a joiner rides along in the bound; the safe-order bound (add before
        # remove: the drop follows the joiner's start) counts its drop's propagation too.
        terms.append({"instance": a.instance_id, "kind": "leave", "propagation": round(propagation, 1),
                      "paired": n < len(joiners), "seconds": propagation})  # fmt: skip
    return terms


def _running_at(proc: Any, skip: int) -> float | None:
    """When the process last began to serve after t0 (None: it did not)."""
    times = [when for when, message in proc.log[skip:] if message.startswith("running")]
    return times[-1] if times else None


def _start_seconds(proc: Any, skip: int) -> float:
    """The model's start time of the process's successful start after t0: its last exec before 'running'."""
    if proc is None:
        return 0.0
    exec_at: float | None = None
    for when, message in proc.log[skip:]:
        if message.startswith("exec"):
            exec_at = when
        elif message.startswith("running") and exec_at is not None:
            return when - exec_at
    return 0.0
