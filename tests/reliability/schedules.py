"""Run one randomized schedule against the emulated stack and check the invariants after every step.

A schedule is plain data — a ``Config`` and a tuple of steps such as ``("scale", 3)`` or
``("fault", "GetChange", "Throttling", 2)`` — so hypothesis can generate and shrink it and a
failing one can be kept verbatim as a regression example. ``run_schedule`` deploys a fresh stack
(``infra.local.stack.deploy``, new group and zone) into a shared ``LocalAWS`` that is recycled
every ``RECYCLE`` schedules (starting moto costs far more than a schedule), applies the steps on
simulated time, then lets events stop: faults cleared, settings restored, the scheduled reconcile
every two minutes as the template deploys it, until nothing is in flight — and checks quiescence.

With ``Config.membership`` (the default) the world also has etcd: an ``EtcdModel`` (etcd 3.5's rules)
on the emulator's clock, reached by the coordinator through ``model.transport()``, and a ``SimFleet``
running the bootstrap script on every instance of the group; the invariants then also read etcd's
member list (``invariants.check_etcd``). Without it the stack is DNS-only (``etcd_membership=false``).

Steps (``World.do_<kind>``):
  scale n · terminate i decrement · kill i · killreuse i (kill; the replacement gets its IP) ·
  reuse i (the next launch gets the IP of the i-th dead instance) · advance s · reconcile ·
  fault op code n · slow lo hi · prior window · delivery duplicate delay ·
  killlambda after (kill the running invocation after s) · killat point n (kill the invocation right
  after its n-th successful call at ``point``: an etcd request such as ``member-add`` or an AWS
  operation such as ``CreateTags`` — e.g. between ``member add`` and the tag recording it) ·
  standby i decrement · unstandby i · neverstart i (a Pending instance's etcd never starts; none
  pending: scale out by one and pick the new one) · crash i long (etcd dies; systemd restarts it after
  5 s, or 600 s when ``long``) · setting pairs seconds (the function runs with changed settings for a
  while, then its own again).

Example::

    result = run_schedule(Config(mode="sqs"), (("scale", 3), ("advance", 30), ("kill", 0)))
    assert not result.violations, result.violations
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from invariants import (
    FALLBACK_LINES,
    SERVED,
    UNPROVEN_LINES,
    History,
    InstanceFacts,
    View,
    check_all,
    check_etcd_quiescence,
    check_quiescence,
)

from hook_handler.app import Clients, Runtime
from hook_handler.members import tags_match
from hook_handler.settings import load_settings, parse_tag_selector
from hook_handler.srv import a_record_name
from hook_handler.telemetry import logger as coordinator_logger
from infra.local import LocalAWS
from infra.local.autoscaling.addressing import addresses
from infra.local.clock import TaskKilled
from infra.local.etcd_model import EtcdModel
from infra.local.sim_fleet import SimFleet
from infra.local.stack import deploy

RECYCLE = 40  # schedules per LocalAWS before a fresh one (moto's state grows with every group)
RECONCILE_EVERY = 120.0  # the template's ReconcileSchedule: rate(2 minutes)
SETTLE_LIMIT = 3600.0  # simulated seconds the settle phase may take before it is a violation
FUNCTION = "etcd-asg-coordinator"

# Faults a step can inject: (operation, code). Retryable ones are what AWS answers under load.
FAULTS = (
    ("ChangeResourceRecordSets", "PriorRequestNotComplete"),
    ("ChangeResourceRecordSets", "Throttling"),
    ("GetChange", "Throttling"),
    ("ListResourceRecordSets", "Throttling"),
    ("DescribeAutoScalingGroups", "Throttling"),
    ("DescribeInstances", "RequestLimitExceeded"),
    ("CompleteLifecycleAction", "ResourceContention"),
    ("CreateTags", "RequestLimitExceeded"),
    ("RecordLifecycleActionHeartbeat", "Throttling"),
    ("*", "InternalError"),
    ("*", "Throttling"),
)

# Where ``killat`` may kill a pass: right after a successful etcd request or AWS call (its effect applied,
# its answer lost), e.g. between ``member add`` and the ``CreateTags`` recording the new member's ID.
# Writes that land while the caller sees a failure (issue 11: a read timeout, or a 5xx after the fact).
LOST_RESPONSES = (
    ("ChangeResourceRecordSets", "timeout"),
    ("ChangeResourceRecordSets", "InternalError"),
    ("CompleteLifecycleAction", "timeout"),
    ("CompleteLifecycleAction", "InternalFailure"),
    ("RecordLifecycleActionHeartbeat", "InternalFailure"),
    ("CreateTags", "InternalError"),
    ("DeleteTags", "InternalError"),
    ("GetChange", "ServiceUnavailable"),
)
LONG_TAIL = ("lognormal", 30.0, 240.0, 420.0)  # Route 53 propagation: median 30 s, p99 4 min, at most 7 min
KILL_POINTS = (
    "member-add",
    "member-remove",
    "member-promote",
    "move-leader",
    "CreateTags",
    "ChangeResourceRecordSets",
    "CompleteLifecycleAction",
    "RecordLifecycleActionHeartbeat",
    "GetChange",
)
_ETCD_POINTS = {
    "/v3/cluster/member/add": "member-add",
    "/v3/cluster/member/remove": "member-remove",
    "/v3/cluster/member/promote": "member-promote",
    "/v3/maintenance/transfer-leadership": "move-leader",
}
# Settings a ``setting`` step may change for a while (operator mistakes: they may change what is added,
# never who is removed from etcd).
SETTING_CHANGES = (
    (("tag_selector", "Role=etcd"),),
    (("target_mode", "a-record"),),
    (("max_unexplained_removals", "3"),),
    (("tag_selector", "Role=etcd"), ("max_unexplained_removals", "3")),
    (("asg_names", "{group}-typo"),),
)
LONG_RESTART = 600.0  # a crashed member that stays down this long (systemd's restart much later)


@dataclass(frozen=True)
class Config:
    """What a schedule deploys: wiring, concurrency, Lambda timeout, Route 53 behaviour."""

    mode: str = "eventbridge"  # eventbridge | sqs | sns
    reserved_concurrency: int | None = 1  # eventbridge/sns; None: unreserved
    timeout: float = 300.0  # Lambda timeout (small vs propagation: hand-offs to retries)
    propagation: Any = (2.0, 8.0)  # (low, high) uniform, or LONG_TAIL
    prior_request_window: float = 0.0
    launch_failure_result: str = "ABANDON"
    poll_interval: float = 1.0
    action_timeout: float = 900.0  # short: the documented fallback after Lambda's retries
    membership: bool = True  # etcd membership on (model + fleet); False: the DNS-only mode
    etcd_start: tuple[float, float] = (1.0, 3.0)  # seconds an etcd process takes to boot
    member_start_timeout: float = 300.0  # member_start_timeout_seconds
    peer_host: str = "dns"  # what the members advertise: their private DNS name, or "ip"


@dataclass
class Result:
    """What a schedule did and what it broke."""

    violations: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    world: Any = None  # the World it ran in (for reading a failure; its fleet is stopped)


class _Capture(logging.Handler):
    """Collects the coordinator's warning/error lines (fallbacks, unproven completions)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append({"message": record.getMessage(), **getattr(record, "__dict__", {})})


_CAPTURE = _Capture()


class IpPool:
    """Private IPs for one LocalAWS's new instances (``LocalAWS(instance_ips=pool)``): fresh ones in order, or,
    when a world asks (``reuse``), a dead instance's — EC2 hands a released address to a later launch."""

    def __init__(self) -> None:
        self.fresh = itertools.count()
        self.reuse: deque[str] = deque()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.reuse:
            return self.reuse.popleft()
        n = next(self.fresh)
        return f"10.{n // 62500 % 250 + 1}.{n // 250 % 250}.{n % 250 + 1}"


class _Pool:
    """One LocalAWS per process, recycled; boto3 clients are cached per LocalAWS (and carry the kill points)."""

    def __init__(self) -> None:
        self.aws: LocalAWS | None = None
        self.ips = IpPool()
        self.world: World | None = None
        self.used = 0
        self.serial = itertools.count()

    def get(self, config: Config) -> LocalAWS:
        if self.aws is None or self.used >= RECYCLE:
            self.close()
            self.ips = IpPool()
            aws = LocalAWS(seed=next(self.serial), instance_ips=self.ips)
            aws.start()
            plain = aws.client
            cache: dict[str, Any] = {}

            def client(service: str, **kwargs: Any) -> Any:
                if kwargs:
                    return plain(service, **kwargs)
                if service not in cache:
                    cache[service] = plain(service)
                    cache[service].meta.events.register("after-call", self._after_call)
                return cache[service]

            aws.client = client  # type: ignore[method-assign]
            self.aws, self.used = aws, 0
        self.used += 1
        aws = self.aws
        aws.clock.advance(5.0)  # the previous schedule's Route 53 requests leave the rate limit's bucket
        aws.propagation = config.propagation
        aws.prior_request_window = config.prior_request_window
        aws.faults.clear()
        aws.delivery_options()
        aws._delivery.mappings.clear()  # type: ignore[attr-defined]
        self.ips.reuse.clear()
        return aws

    def _after_call(self, model: Any = None, http_response: Any = None, **_: Any) -> None:
        if self.world is not None and model is not None and getattr(http_response, "status_code", 500) < 300:
            self.world.after_call(model.name)

    def close(self) -> None:
        self.world = None
        if self.aws is not None:
            self.aws.stop()
            self.aws = None


POOL = _Pool()


class _EtcdLink:
    """The coordinator's etcd transport: the model's, with the world's kill points after each request."""

    def __init__(self, world: World, model: EtcdModel) -> None:
        self.world = world
        self.inner = model.transport()

    def post(self, endpoint: str, path: str, body: Any, timeout: float) -> dict[str, Any]:
        out = self.inner.post(endpoint, path, body, timeout)
        point = _ETCD_POINTS.get(path)
        if point is not None:
            self.world.after_call(point)
        return out

    def get(self, endpoint: str, path: str, timeout: float) -> dict[str, Any]:
        return self.inner.get(endpoint, path, timeout)


class World:
    """A deployed stack (with etcd: a model and a fleet) plus the history the invariants need."""

    def __init__(self, config: Config, serial: int) -> None:
        self.config = config
        self.aws = POOL.get(config)
        POOL.world = self
        self.group = f"etcd{serial}"
        self.domain = f"s{serial}.example.com"
        self.history = History(started=self.aws.clock.now())
        self.faults = 0
        self.kills = 0
        self.kill_at: list[Any] | None = None  # [point, calls left] of an armed ``killat``
        self.closed = False
        self.setting_generation = 0
        settings = {
            "poll_interval_seconds": str(config.poll_interval),
            "launch_failure_result": config.launch_failure_result,
            "deadline_margin_seconds": "5",
            "action_timeout_seconds": str(config.action_timeout),
        }
        self.model: EtcdModel | None = None
        self.fleet: SimFleet | None = None
        self.link: _EtcdLink | None = None
        if config.membership:
            settings["member_start_timeout_seconds"] = str(config.member_start_timeout)
            self.model = EtcdModel(self.aws.clock, seed=serial, start_seconds=config.etcd_start)
            self.link = _EtcdLink(self, self.model)
        self.stack = deploy(
            self.aws,
            mode=config.mode,
            domain=self.domain,
            group=self.group,
            settings=settings,
            timeout=config.timeout,
            reserved_concurrency=config.reserved_concurrency,
            handler=self._handle,
            etcd=self.link,
        )
        self.runtime = self.stack.runtime  # the function's code and settings now (``setting`` swaps them)
        self.snapshot_bucket = ""
        if self.model is not None:
            # Snapshots as the stack takes them (each scheduled reconcile, and right before a membership change),
            # through etcd's gateway on the model; the instances restore from the same bucket.
            self.snapshot_bucket = f"etcd-snapshots-w{serial}"
            self.aws.client("s3").create_bucket(Bucket=self.snapshot_bucket)
            self.fleet = SimFleet(
                self.aws,
                self.model,
                self.group,
                zone_id=self.stack.zone_id,
                domain=self.domain,
                peer_host="ip" if config.peer_host == "ip" else "dns",
                poll=1.0,
                snapshot_bucket=self.snapshot_bucket,
            ).start()
            self.stack.runtime.coordinator.snapshots = self._snapshot_taker()
        self.changes_seen = 0
        self.start_calls = len(self.aws.calls)
        self.start_invocations = len(self.aws.invocations)
        self.start_dead = len(self.aws.dead_letters)
        settings_obj = self.stack.runtime.settings
        self.view = View(
            aws=self.aws,
            zone_id=self.stack.zone_id,
            srv_name=self.stack.srv_name,
            group=self.group,
            history=self.history,
            bootstrap_timeout=settings_obj.bootstrap_timeout_seconds,
            served=self.served,
            cluster_size=settings_obj.cluster_size,
            model=self.model,
            instances=self.instances,
            member_start_timeout=settings_obj.member_start_timeout_seconds,
            function=FUNCTION,
            start_invocations=self.start_invocations,
        )
        self.capture_from = len(_CAPTURE.lines)

    def _snapshot_taker(self) -> Any:
        from hook_handler.backup.config import DEFAULT_PREFIX
        from hook_handler.backup.retention import parse_tiers
        from hook_handler.backup.store import SnapshotStore
        from hook_handler.backup.take import SnapshotTaker
        from hook_handler.retry import RetryPolicy

        assert self.link is not None
        clock = self.aws.clock
        store = SnapshotStore(self.aws.client("s3"), self.snapshot_bucket, DEFAULT_PREFIX, RetryPolicy(clock), clock)
        return SnapshotTaker(store, self.link.inner, clock, interval=60, tiers=parse_tiers(""), protocol="gateway")

    def _handle(self, event: Any, context: Any) -> Any:
        if self.closed:
            return {"closed": True}  # a late delivery or retry of a world that ended
        return self.runtime.handle(event, context)

    def close(self) -> None:
        """The world ends: its fleet stops watching (and kills its etcd), the IP pool forgets its reuse.
        A world that ended busy (a violation, a disaster) is torn down so nothing of it runs on in the next
        world sharing the clock: its invocations killed, later deliveries ignored, its group deleted."""
        busy = not self.quiet()
        self.closed = True
        if self.fleet is not None:
            self.fleet.stop()
        POOL.ips.reuse.clear()
        if POOL.world is self:
            POOL.world = None
        if busy:
            for task in self.aws.clock.live_tasks():
                if task.name.startswith(FUNCTION):
                    task.kill("world closed")
            from moto.autoscaling.models import autoscaling_backends

            backend = autoscaling_backends[self.aws.account][self.aws.region]
            if self.group in backend.autoscaling_groups:
                backend.delete_auto_scaling_group(self.group)
            self.aws.clock.advance(1.0)

    # -- moto's view, without API calls ---------------------------------------------------
    def _group(self) -> Any:
        from moto.autoscaling.models import autoscaling_backends

        return autoscaling_backends[self.aws.account][self.aws.region].autoscaling_groups[self.group]

    def _ec2(self) -> Any:
        from moto.ec2.models import ec2_backends

        return ec2_backends[self.aws.account][self.aws.region]

    def states(self) -> list[Any]:
        return list(self._group().instance_states)

    def _all_instances(self) -> list[Any]:
        return [
            i
            for r in self._ec2().reservations.values()
            for i in r.instances
            if getattr(getattr(i, "autoscaling_group", None), "name", None) == self.group
        ]

    def learn(self) -> None:
        """Remember every SRV target form (private DNS, A record) of every instance the group ever launched,
        gone ones included (invariants map targets back to instances; a reused IP gives a target two)."""
        for instance in self._all_instances():
            # The addresses it had: a terminated instance shows none (issue 11), but a change may have listed it.
            ip, dns_name = addresses(instance)
            if instance.id in self.history.target_of or not dns_name:
                continue
            dns = dns_name.lower().rstrip(".") + "."
            self.history.learn(instance.id, dns)
            if ip:
                self.history.learn(instance.id, a_record_name("{instance_id}", instance.id, ip, self.domain))

    def served(self) -> set[str]:
        return {
            s.instance.private_dns_name.lower().rstrip(".") + "."
            for s in self.states()
            if s.lifecycle_state in SERVED and s.instance.state == "running"
        }

    def instances(self) -> dict[str, InstanceFacts]:
        """Every instance the group ever launched as the emulator holds it (no API call)."""
        states = {s.instance.id: s.lifecycle_state for s in self.states()}
        tags = self._ec2().tags
        return {
            i.id: InstanceFacts(
                i.id,
                states.get(i.id),
                i.state,
                i.private_ip or "",
                (i.private_dns_name or "").lower().rstrip("."),
                dict(tags.get(i.id, {})),
            )
            for i in self._all_instances()
        }

    def members(self) -> list[Any]:
        return [s for s in self.states() if s.lifecycle_state in ("Pending:Wait", "Pending:Proceed", "InService")]

    # -- steps ----------------------------------------------------------------------------
    def step(self, step: tuple[Any, ...]) -> None:
        kind, *args = step
        getattr(self, f"do_{kind}")(*args)
        self.learn()

    def operator(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """An operator's own call: retried through injected faults (they target the coordinator)."""
        for _ in range(20):
            try:
                fn(*args, **kwargs)
                return
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ValidationError":
                    return  # e.g. the instance is already terminating
                self.aws.clock.advance(0.2)
        fn(*args, **kwargs)

    def do_scale(self, desired: int) -> None:
        self.operator(self.stack.scale, desired)
        self.history.desired.append((self.aws.clock.now(), desired))

    def do_terminate(self, index: int, decrement: bool = True) -> None:
        members = self.members()
        if not members:
            return
        state = members[index % len(members)]
        group = self._group()
        if decrement and group.desired_capacity <= (group.min_size or 0):
            decrement = False
        self.operator(self.stack.terminate, state.instance.id, decrement=decrement)
        self.history.desired.append((self.aws.clock.now(), self._group().desired_capacity))

    def do_kill(self, index: int, reuse: bool = False) -> None:
        members = [s for s in self.states() if s.instance.state == "running"]
        if not members:
            return
        instance = members[index % len(members)].instance
        self.history.kills[instance.id] = self.aws.clock.now()
        if reuse and instance.private_ip:
            POOL.ips.reuse.append(instance.private_ip)  # the replacement (launched by the kill) gets it
        self.aws.kill_instance(instance.id)

    def do_killreuse(self, index: int) -> None:
        """Kill an instance; its replacement gets its private IP (and so its DNS name and SRV target)."""
        self.do_kill(index, reuse=True)

    def do_reuse(self, index: int) -> None:
        """The next launch gets the private IP of a dead instance of this group (none dead: nothing)."""
        live = {i.private_ip for r in self._ec2().reservations.values() for i in r.instances if i.state != "terminated"}
        dead = sorted(
            {i.private_ip for i in self._all_instances() if i.state == "terminated" and i.private_ip}
            - live
            - set(POOL.ips.reuse)
        )
        if dead:
            POOL.ips.reuse.append(dead[index % len(dead)])

    def do_standby(self, index: int, decrement: bool) -> None:
        """EnterStandby an InService instance (ShouldDecrementDesiredCapacity as given)."""
        ready = sorted(s.instance.id for s in self.states() if s.lifecycle_state == "InService")
        if not ready:
            return
        self.operator(
            self.aws.client("autoscaling").enter_standby,
            InstanceIds=[ready[index % len(ready)]],
            AutoScalingGroupName=self.group,
            ShouldDecrementDesiredCapacity=decrement,
        )
        self.history.desired.append((self.aws.clock.now(), self._group().desired_capacity))

    def do_unstandby(self, index: int) -> None:
        """ExitStandby a Standby instance (the group's desired capacity grows by one)."""
        waiting = sorted(s.instance.id for s in self.states() if s.lifecycle_state == "Standby")
        if not waiting:
            return
        self.operator(
            self.aws.client("autoscaling").exit_standby,
            InstanceIds=[waiting[index % len(waiting)]],
            AutoScalingGroupName=self.group,
        )
        self.history.desired.append((self.aws.clock.now(), self._group().desired_capacity))

    def do_neverstart(self, index: int) -> None:
        """A launching instance whose etcd never starts (a broken image); none launching: scale out by one."""
        if self.fleet is None:
            return
        pending = [s.instance.id for s in self.states() if s.lifecycle_state in ("Pending", "Pending:Wait")]
        if not pending:
            before = {s.instance.id for s in self.states()}
            self.do_scale(self._group().desired_capacity + 1)
            pending = [s.instance.id for s in self.states() if s.instance.id not in before]
        if pending:
            iid = pending[index % len(pending)]
            self.fleet.never_start.add(iid)
            self.history.never_start.add(iid)

    def _crash(self, iid: str, restart_after: float | None) -> None:
        assert self.fleet is not None
        self.history.crashes.append((self.aws.clock.now(), iid))
        self.fleet.crash(iid, restart_after)

    def _running_etcd(self) -> list[str]:
        """Instances whose etcd runs, in id order (none without etcd)."""
        if self.fleet is None or self.model is None:
            return []
        fleet = self.fleet.instances
        return sorted(iid for iid, p in self.model.processes.items() if p.running and iid in fleet)

    def do_crash(self, index: int, long: bool = False) -> None:
        """etcd on a running instance dies; systemd restarts it after 5 s (``long``: after LONG_RESTART)."""
        running = self._running_etcd()
        if running:
            self._crash(running[index % len(running)], LONG_RESTART if long else None)

    def do_killmany(self, count: int) -> None:
        """``count`` running instances die at the EC2 level at once (a majority of a small cluster: quorum lost for
        good; the coordinator recovers from a survivor's or the newest snapshot)."""
        for index in range(count):
            self.do_kill(index)

    def do_silent(self, seconds: float) -> None:
        """Every etcd stops answering at once (each process dies; systemd restarts it ``seconds`` later); the
        instances stay in service."""
        for iid in self._running_etcd():
            self._crash(iid, seconds)

    def do_wipe(self, index: int) -> None:
        """A running member loses its data directory (a replaced disk) and its etcd restarts: its start script must
        refuse to start it under its old member ID (tags the instance ``etcd-data-lost``); the coordinator removes
        the member and has the group replace the instance."""
        running = self._running_etcd()
        if running:
            iid = running[index % len(running)]
            self._crash(iid, 10.0)
            assert self.model is not None
            self.model.clear_data(iid)

    def do_setting(self, pairs: tuple[tuple[str, str], ...], seconds: float) -> None:
        """The function is redeployed with changed settings (an operator's mistake) for ``seconds``, then
        with its own again. In-flight invocations keep the code they started with, as Lambda's do."""
        env = {**self.stack.env, **{k: v.format(group=self.group) for k, v in pairs}}
        clients = Clients(
            route53=self.aws.client("route53"), autoscaling=self.aws.client("autoscaling"), ec2=self.aws.client("ec2")
        )
        self.runtime = Runtime(
            load_settings(env), clients, self.aws.clock, region=self.aws.region, etcd_transport=self.link
        )
        if self.snapshot_bucket:
            self.runtime.coordinator.snapshots = self._snapshot_taker()
        self.setting_generation += 1
        generation = self.setting_generation
        self.history.settings.append([self.aws.clock.now(), None, pairs])
        self.aws.clock.call_later(seconds, lambda: self.restore_settings(generation))

    def restore_settings(self, generation: int | None = None) -> None:
        if generation is not None and generation != self.setting_generation:
            return
        if self.runtime is not self.stack.runtime:
            self.runtime = self.stack.runtime
            self.history.settings[-1][1] = self.aws.clock.now()

    def do_advance(self, seconds: float) -> None:
        self.aws.clock.advance(seconds)

    def do_reconcile(self) -> None:
        self.stack.reconcile()

    def do_fault(self, operation: str, code: str, count: int) -> None:
        self.aws.faults.fail_next(operation, count, code=code, status=500 if code == "InternalError" else None)
        self.faults += count

    def do_slow(self, low: float, high: float) -> None:
        self.aws.propagation = (low, high)

    def do_prior(self, window: float) -> None:
        self.aws.prior_request_window = window

    def do_delivery(self, duplicate: float, delay: float) -> None:
        self.aws.delivery_options(duplicate_probability=duplicate, delay=(0.0, delay))

    def do_lose(self, probability: float) -> None:
        """EventBridge (best effort) and SNS lose lifecycle notifications, until the next delivery step or
        the settle: the scheduled reconcile must find and settle the actions no event announced."""
        self.aws.delivery_options(loss_probability=probability, sns_loss_probability=probability)

    def do_loseresp(self, operation: str, code: str, count: int) -> None:
        """The next ``count`` calls of ``operation`` land, but their callers see ``code`` (a read timeout
        after the coordinator's 15 s, or a 5xx): a retry must meet its own write, not double it."""
        self.aws.faults.lose_response(operation, count, code=code, after=15.0)
        self.faults += count

    def do_tail(self) -> None:
        """Route 53 propagation with a long tail (to several minutes) from now on."""
        self.aws.propagation = LONG_TAIL

    def do_killlambda(self, after: float = 0.0) -> None:
        """Kill whatever invocation of the coordinator runs ``after`` seconds from now (crash, OOM)."""

        def kill() -> None:
            for task in self.aws.clock.live_tasks():
                if task.name.startswith(FUNCTION) and task.thread is not None:
                    task.kill("sandbox crashed")
                    self.kills += 1
                    self.history.lambda_kills.append(self.aws.clock.now())

        self.aws.clock.call_later(after, kill)

    def do_killat(self, point: str, nth: int = 1) -> None:
        """Kill the coordinator's invocation right after its ``nth`` successful call at ``point`` from now."""
        self.kill_at = [point, nth]

    def after_call(self, point: str) -> None:
        """Every successful etcd request and AWS call of anyone; an armed ``killat`` kills the pass here."""
        if self.kill_at is None or self.kill_at[0] != point:
            return
        task = self.aws.clock.current_task()
        if task is None or not task.name.startswith(FUNCTION):
            return  # the operator's or the fleet's own call
        self.kill_at[1] -= 1
        if self.kill_at[1] > 0:
            return
        self.kill_at = None
        self.kills += 1
        self.history.lambda_kills.append(self.aws.clock.now())
        task.kill("sandbox crashed")
        raise TaskKilled("sandbox crashed")

    # -- checks and the end -----------------------------------------------------------------
    def sync_logs(self) -> None:
        for line in _CAPTURE.lines[self.capture_from :]:
            message = line.get("message", "")
            if message in FALLBACK_LINES:
                self.history.fallbacks.append(line)
            elif message in UNPROVEN_LINES:
                self.history.unproven.append(line)
        self.capture_from = len(_CAPTURE.lines)

    def check(self, *, final: bool = False) -> list[str]:
        self.sync_logs()
        return check_all(self.view, final=final)

    def settle(self) -> list[str]:
        """Events stop: faults cleared, deliveries normal, the function's own settings back, no kill armed;
        the scheduled reconcile runs until all is quiet."""
        aws = self.aws
        aws.faults.clear()
        aws.delivery_options()
        aws.prior_request_window = 0.0
        if self.config.action_timeout < 900.0:
            # A `slow` step may have made every change outlast a short action timeout: each launch is then
            # abandoned before its record is INSYNC (with membership, never completed CONTINUE without a
            # member), for good, as it must. Quiescence is judged with the config's own propagation.
            aws.propagation = self.config.propagation
        self.kill_at = None
        self.restore_settings()
        self.setting_generation += 1  # a restore still scheduled changes nothing now
        start = aws.clock.now()
        self.history.settle_start = start
        aws.clock.advance(1.0)
        quiet_before = self.quiet()
        while aws.clock.now() - start < SETTLE_LIMIT:
            self.do_reconcile()
            aws.clock.advance(RECONCILE_EVERY)
            self.learn()
            self.history.disaster = self.disaster()
            if self.history.disaster:
                return []  # nothing can bring that cluster back (etcd needs a human: --force-new-cluster)
            quiet = self.quiet()
            if quiet and quiet_before:  # a whole reconcile ran after the last event
                break
            quiet_before = quiet
        else:
            return [f"not quiescent after {SETTLE_LIMIT:.0f}s of scheduled reconciles: {self.busy()}"]
        aws.clock.run()
        return []

    def disaster(self) -> str | None:
        """The schedule's own failures (instances killed, etcd crashed, members that never start) took a
        majority of the served cluster's voters for good: no leader, nothing restarting. etcd cannot
        remove a member without a leader, so no coordinator can heal it; the end checks do not apply
        (a coordinator-caused quorum loss is caught on the way by ``invariants.check_quorum``)."""
        if self.model is None or self.fleet is None:
            return None
        h = self.history
        if not (h.kills or h.crashes or h.never_start):
            return None
        if any(i.phase == "restart-wait" for i in self.fleet.instances.values()):
            return None
        if any(p.status == "starting" for p in self.model.processes.values()):
            return None
        facts = self.instances()
        clusters = {
            p.cluster_id
            for iid, p in self.model.processes.items()
            if iid in facts and facts[iid].served and p.data.state == "wal"
        }
        lost = sorted(cid for cid in clusters if cid in self.model.cluster_states and self.model.quorum_lost(cid))
        if lost:
            return f"etcd cluster {lost[0]:x} lost its quorum to the schedule's own failures"
        gone = self.unrecoverable()
        if gone is None:
            return None
        return (
            f"every voter of etcd cluster {gone:x} is gone with its data and no snapshot of it exists: "
            "a new cluster only by the operator's choice"
        )

    def unrecoverable(self) -> int | None:
        """A cluster that ran (a launch completed as its member) whose data no served instance holds any more and of
        which no snapshot exists: nothing can bring its data back, and nothing may be founded over it."""
        assert self.model is not None
        facts = self.instances()
        held = {
            p.cluster_id for iid, p in self.model.processes.items()
            if iid in facts and facts[iid].served and p.data.state == "wal"
        }  # fmt: skip
        admitted = {
            a.instance_id for a in self.aws.lifecycle_actions
            if a.group == self.group and a.transition == "autoscaling:EC2_INSTANCE_LAUNCHING" and a.result == "CONTINUE"
        }  # fmt: skip
        ran = {p.cluster_id for iid, p in self.model.processes.items() if iid in admitted and p.cluster_id}
        listed = self.aws.client("s3").list_objects_v2(Bucket=self.snapshot_bucket).get("Contents", [])
        snapped = " ".join(item["Key"] for item in listed)
        for cid in sorted(ran - held):
            if f"_{cid:x}_" not in snapped:
                return cid
        return None

    def founded_over(self) -> list[str]:
        """With a cluster's data gone for good (``unrecoverable``), no cluster may run on served instances: one that
        does was founded over it (the coordinator must hold the launches for the operator)."""
        gone = self.unrecoverable() if self.model is not None and self.snapshot_bucket else None
        if gone is None:
            return []
        facts = self.instances()
        running = {
            p.cluster_id for iid, p in self.model.processes.items()  # type: ignore[union-attr]
            if p.running and iid in facts and facts[iid].served and p.cluster_id != gone
        }  # fmt: skip
        return [f"etcd cluster {c:x} was founded over cluster {gone:x}, whose data is gone" for c in sorted(running)]

    def busy(self) -> str:
        """What keeps the world from being quiet (for the violation's sentence)."""
        aws = self.aws
        parts = []
        tasks = [t.name for t in aws.clock.live_tasks() if t.name.startswith(FUNCTION)]
        if tasks:
            parts.append(f"invocations running: {tasks}")
        states = {s.instance.id: s.lifecycle_state for s in self.states()}
        open_actions = [
            f"{a.instance_id} ({a.transition.split('_')[-1].lower()}, {states.get(a.instance_id)})"
            for a in aws.lifecycle_actions
            if a.group == self.group and a.active
        ]
        if open_actions:
            parts.append(f"open actions: {', '.join(open_actions)}")
        if self.fleet is not None:
            waiting = [i for i, s in self.fleet.instances.items() if s.phase == "restart-wait"]
            if waiting:
                parts.append(f"etcd restarting on {waiting}")
        if self.model is not None:
            starting = [i for i, p in self.model.processes.items() if p.status == "starting"]
            if starting:
                parts.append(f"etcd starting on {starting}")
        if self.in_flight():
            parts.append("last change not INSYNC")
        return "; ".join(parts) or "nothing (quiet only now)"

    def describe(self) -> str:
        """A readable dump of the world for diagnosing a violation: group, record, etcd, fleet, invocations."""
        t0 = self.history.started
        lines = [f"t={self.aws.clock.now() - t0:.1f}s since start (epoch {self.aws.clock.now():.1f})"]
        for iid, f in sorted(self.instances().items()):
            tags = {k: v for k, v in f.tags.items() if k.startswith("etcd")}
            lines.append(f"  instance {iid} {f.lifecycle} ec2={f.ec2_state} ip={f.ip} tags={tags}")
        lines.append(f"  record: {self.stack.record()}")
        if self.model is not None:
            for cid, ms in self.model.clusters().items():
                lines.append(f"  cluster {cid:x}: quorum_lost={self.model.quorum_lost(cid)}")
                for m in ms:
                    lines.append(
                        f"    member {int(m.id):x} name={m.name!r} learner={m.learner} running={m.running} "
                        f"leader={m.leader} peers={m.peer_urls}"
                    )
            for r in self.model.history:
                lines.append(f"  etcd {r.time - t0:8.1f} {r.kind} {r.member_id:x} {r.peer_urls} learner={r.learner}")
        if self.fleet is not None:
            for iid, inst in sorted(self.fleet.instances.items()):
                lines.append(
                    f"  fleet {iid} {inst.phase}: " + " | ".join(f"{t - t0:.1f} {m}" for t, m in inst.log[-8:])
                )
        for inv in self.aws.invocations[self.start_invocations :]:
            lines.append(
                f"  invocation {inv.time - t0:8.1f}-{(inv.ended_at or 0) - t0:8.1f} "
                f"{inv.source} {inv.summary} {inv.outcome} {(inv.error or '')[:160]}"
            )
        for line in _CAPTURE.lines[-40:]:
            why = str(line.get("why", line.get("error", "")))[:160]
            lines.append(f"  log {line.get('message')} {line.get('instance', '')} {why}")
        return "\n".join(lines)

    def unexplained_timeouts(self) -> list[str]:
        """(b) An action may expire only where the README documents it: the Lambda killed or timed out
        (its retries exhausted), injected faults, a bootstrap barrier holding a launch too long, or a launch
        the tag selector excludes (not ours: left to its hook's timeout)."""
        c = self.counts()
        if c["lambda_kills"] or c["lambda_timeouts"] or c["dead_letters"] or c["faults_injected"]:
            return []
        held = {line.get("instance") for line in _CAPTURE.lines if line.get("message") == "held launch kept alive"}
        return [
            f"action of {a.instance_id} ({a.hook}) timed out with nothing to explain it"
            for a in self.aws.lifecycle_actions
            if a.group == self.group
            and a.ended_by == "timeout"
            and a.instance_id not in held
            and not self._excluded_launch(a)
        ]

    def _excluded_launch(self, action: Any) -> bool:
        """A launch that began while the function ran with a ``tag_selector`` its instance's tags do not match
        (judged from the schedule and the instance, not from the coordinator's word): not the coordinator's to
        complete, left to the hook's timeout as documented."""
        if action.transition != "autoscaling:EC2_INSTANCE_LAUNCHING":
            return False
        tags = dict(self._ec2().tags.get(action.instance_id, {}))
        for pairs in self.history.changed_settings(action.started_at):
            selector = dict(pairs).get("tag_selector")
            if selector and not tags_match(tags, parse_tag_selector(selector)):
                return True
        return False

    def quiet(self) -> bool:
        """Nothing in flight: no invocation or queue poll alive, no open action, last change INSYNC, and
        (with etcd) no etcd process booting or waiting for systemd's restart."""
        aws = self.aws
        if any(t.name.startswith(FUNCTION) for t in aws.clock.live_tasks()):
            return False
        delivery = aws._delivery  # type: ignore[attr-defined]
        for mapping in delivery.mappings:
            # A queue poll still scheduled for a message since deleted is idle, not work.
            if mapping.running or delivery.sqs().get_queue(mapping.queue_name)._messages:
                return False
        if self.fleet is not None and self.model is not None:
            if any(i.phase == "restart-wait" for i in self.fleet.instances.values()):
                return False
            if any(p.status == "starting" for p in self.model.processes.values()):
                return False
        return not any(a.active for a in aws.lifecycle_actions if a.group == self.group) and not self.in_flight()

    def in_flight(self) -> bool:
        changes = [c for c in self.aws.route53_changes if c.zone_id.split("/")[-1] == self.stack.zone_id]
        return bool(changes) and changes[-1].insync_at > self.aws.clock.now()

    def counts(self) -> Counter[str]:
        calls = self.aws.calls[self.start_calls :]
        invocations = self.aws.invocations[self.start_invocations :]
        actions = [a for a in self.aws.lifecycle_actions if a.group == self.group]
        etcd = [r.kind for r in self.model.history] if self.model is not None else []
        return Counter(
            schedules=1,
            membership_schedules=int(self.model is not None),
            invocations=len(invocations),
            events_delivered=sum(_events_in(i) for i in invocations),
            faults_injected=sum(1 for c in calls if c.injected),
            throttled=sum(1 for c in calls if c.error == "Throttling" and not c.injected),
            lambda_kills=self.kills,
            lambda_timeouts=sum(1 for i in invocations if i.outcome == "timeout"),
            api_calls=len(calls),
            route53_changes=sum(1 for c in self.aws.route53_changes if c.zone_id.split("/")[-1] == self.stack.zone_id),
            actions=len(actions),
            actions_completed=sum(1 for a in actions if a.ended_by == "complete"),
            actions_abandoned=sum(1 for a in actions if a.ended_by == "complete" and a.result == "ABANDON"),
            actions_timed_out=sum(1 for a in actions if a.ended_by == "timeout"),
            fallback_completions=len(self.history.fallbacks),
            unproven_completions=len(self.history.unproven),
            dead_letters=len(self.aws.dead_letters) - self.start_dead,
            etcd_member_adds=etcd.count("add"),
            etcd_member_removes=etcd.count("remove"),
            etcd_promotes=etcd.count("promote"),
            etcd_crashes=len(self.history.crashes),
            setting_changes=len(self.history.settings),
            etcd_disasters=int(bool(self.history.disaster)),
        )


def _events_in(invocation: Any) -> int:
    event = invocation.event or {}
    records = event.get("Records")
    return len(records) if isinstance(records, list) else 1


_SERIAL = itertools.count()


def run_schedule(config: Config, steps: tuple[tuple[Any, ...], ...]) -> Result:
    """Deploy, run ``steps`` checking every invariant after each, settle, check quiescence."""
    world = World(config, next(_SERIAL))
    result = Result()
    try:
        for n, step in enumerate(steps):
            world.step(step)
            problems = world.check()
            if problems:
                result.violations += [f"after step {n} {step}: {p}" for p in problems]
                break
        else:
            problems = world.settle()
            if world.history.disaster:
                problems += world.check()  # the per-step invariants over the settle phase; no quiescence
                problems += world.founded_over()
            else:
                problems += world.check(final=True)
                problems += check_quiescence(world.view)
                problems += check_etcd_quiescence(world.view)
                problems += world.unexplained_timeouts()
            result.violations += [f"at the end: {p}" for p in problems]
        result.counts = world.counts()
        result.counts["violations"] = len(result.violations)
        result.world = world
    finally:
        world.close()
    return result


def quiet_logs() -> Callable[[], None]:
    """The coordinator logs at WARNING (JSON formatting of every INFO line dominates a run) into a
    capture; returns a function that restores the logger as it was."""
    inner = logging.getLogger(coordinator_logger._logger.name)  # type: ignore[attr-defined]
    saved_level = coordinator_logger.log_level
    saved = [(h, h.level) for h in inner.handlers if h is not _CAPTURE]
    coordinator_logger.setLevel("WARNING")
    if _CAPTURE not in inner.handlers:
        inner.addHandler(_CAPTURE)
    for handler, _ in saved:
        handler.setLevel(logging.CRITICAL)

    def restore() -> None:
        inner.removeHandler(_CAPTURE)
        for handler, level in saved:
            handler.setLevel(level)
        coordinator_logger.setLevel(saved_level)

    return restore
