"""Run one randomized schedule against the emulated stack and check the invariants after every step.

A schedule is plain data — a ``Config`` and a tuple of steps such as ``("scale", 3)`` or
``("fault", "GetChange", "Throttling", 2)`` — so hypothesis can generate and shrink it and a
failing one can be kept verbatim as a regression example. ``run_schedule`` deploys a fresh stack
(``infra.local.stack.deploy``, new group and zone) into a shared ``LocalAWS`` that is recycled
every ``RECYCLE`` schedules (starting moto costs far more than a schedule), applies the steps on
simulated time, then lets events stop: faults cleared, the scheduled reconcile every two minutes
as the template deploys it, until nothing is in flight — and checks quiescence.

Example::

    result = run_schedule(Config(mode="sqs"), (("scale", 3), ("advance", 30), ("kill", 0)))
    assert not result.violations, result.violations
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from invariants import FALLBACK_LINES, UNPROVEN_LINES, History, View, check_all, check_quiescence

from hook_handler.telemetry import logger as coordinator_logger
from infra.local import LocalAWS
from infra.local.autoscaling import iso
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


@dataclass(frozen=True)
class Config:
    """What a schedule deploys: wiring, concurrency, Lambda timeout, Route 53 behaviour."""

    mode: str = "eventbridge"  # eventbridge | sqs | sns
    reserved_concurrency: int | None = 1  # eventbridge/sns; None: unreserved
    timeout: float = 300.0  # Lambda timeout (small vs propagation: hand-offs to retries)
    propagation: tuple[float, float] = (2.0, 8.0)
    prior_request_window: float = 0.0
    launch_failure_result: str = "ABANDON"
    poll_interval: float = 1.0
    action_timeout: float = 900.0  # short: the documented fallback after Lambda's retries


@dataclass
class Result:
    """What a schedule did and what it broke."""

    violations: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)


class _Capture(logging.Handler):
    """Collects the coordinator's warning/error lines (fallbacks, unproven completions)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append({"message": record.getMessage(), **getattr(record, "__dict__", {})})


_CAPTURE = _Capture()


class _Pool:
    """One LocalAWS per process, recycled; boto3 clients are cached per LocalAWS."""

    def __init__(self) -> None:
        self.aws: LocalAWS | None = None
        self.used = 0
        self.serial = itertools.count()

    def get(self, config: Config) -> LocalAWS:
        if self.aws is None or self.used >= RECYCLE:
            self.close()
            aws = LocalAWS(seed=next(self.serial))
            aws.start()
            plain = aws.client
            cache: dict[str, Any] = {}

            def client(service: str, **kwargs: Any) -> Any:
                if kwargs:
                    return plain(service, **kwargs)
                if service not in cache:
                    cache[service] = plain(service)
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
        return aws

    def close(self) -> None:
        if self.aws is not None:
            self.aws.stop()
            self.aws = None


POOL = _Pool()


class World:
    """A deployed stack plus the history the invariants need."""

    def __init__(self, config: Config, serial: int) -> None:
        self.config = config
        self.aws = POOL.get(config)
        self.group = f"etcd{serial}"
        self.history = History()
        self.faults = 0
        self.kills = 0
        settings = {
            "poll_interval_seconds": str(config.poll_interval),
            "launch_failure_result": config.launch_failure_result,
            "deadline_margin_seconds": "5",
            "action_timeout_seconds": str(config.action_timeout),
        }
        self.stack = deploy(
            self.aws,
            mode=config.mode,
            domain=f"s{serial}.example.com",
            group=self.group,
            settings=settings,
            timeout=config.timeout,
            reserved_concurrency=config.reserved_concurrency,
        )
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
        )
        self.capture_from = len(_CAPTURE.lines)

    # -- moto's view, without API calls ---------------------------------------------------
    def _group(self) -> Any:
        from moto.autoscaling.models import autoscaling_backends

        return autoscaling_backends[self.aws.account][self.aws.region].autoscaling_groups[self.group]

    def states(self) -> list[Any]:
        return list(self._group().instance_states)

    def learn(self) -> None:
        """Remember the SRV target of every instance the group ever launched, gone ones included
        (invariants map targets back to instances)."""
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[self.aws.account][self.aws.region]
        for reservation in backend.reservations.values():
            for instance in reservation.instances:
                group = getattr(instance, "autoscaling_group", None)
                if getattr(group, "name", None) == self.group and instance.private_dns_name:
                    self.history.targets[instance.private_dns_name.lower().rstrip(".") + "."] = instance.id

    def served(self) -> set[str]:
        return {
            s.instance.private_dns_name.lower().rstrip(".") + "."
            for s in self.states()
            if s.lifecycle_state in ("Pending:Wait", "Pending:Proceed", "InService") and s.instance.state == "running"
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

    def do_kill(self, index: int) -> None:
        members = [s for s in self.states() if s.instance.state == "running"]
        if not members:
            return
        iid = members[index % len(members)].instance.id
        self.history.kills[iid] = self.aws.clock.now()
        self.aws.kill_instance(iid)

    def do_advance(self, seconds: float) -> None:
        self.aws.clock.advance(seconds)

    def do_reconcile(self) -> None:
        event = {
            "version": "0",
            "id": self.aws._delivery.new_uuid(),  # type: ignore[attr-defined]
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.aws.account,
            "time": iso(self.aws.clock.now()),
            "region": self.aws.region,
            "resources": [f"arn:aws:events:{self.aws.region}:{self.aws.account}:rule/{self.group}-reconcile"],
            "detail": {},
        }
        self.aws._delivery.invoke_async(self.stack.function_arn, event, "eventbridge")  # type: ignore[attr-defined]

    def do_fault(self, operation: str, code: str, count: int) -> None:
        self.aws.faults.fail_next(operation, count, code=code, status=500 if code == "InternalError" else None)
        self.faults += count

    def do_slow(self, low: float, high: float) -> None:
        self.aws.propagation = (low, high)

    def do_prior(self, window: float) -> None:
        self.aws.prior_request_window = window

    def do_delivery(self, duplicate: float, delay: float) -> None:
        self.aws.delivery_options(duplicate_probability=duplicate, delay=(0.0, delay))

    def do_killlambda(self, after: float = 0.0) -> None:
        """Kill whatever invocation of the coordinator runs ``after`` seconds from now (crash, OOM)."""

        def kill() -> None:
            for task in self.aws.clock.live_tasks():
                if task.name.startswith(FUNCTION) and task.thread is not None:
                    task.kill("sandbox crashed")
                    self.kills += 1

        self.aws.clock.call_later(after, kill)

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
        """Events stop: faults cleared, deliveries normal, the scheduled reconcile runs until all is quiet."""
        aws = self.aws
        aws.faults.clear()
        aws.delivery_options()
        aws.prior_request_window = 0.0
        start = aws.clock.now()
        aws.clock.advance(1.0)
        quiet_before = self.quiet()
        while aws.clock.now() - start < SETTLE_LIMIT:
            self.do_reconcile()
            aws.clock.advance(RECONCILE_EVERY)
            self.learn()
            quiet = self.quiet()
            if quiet and quiet_before:  # a whole reconcile ran after the last event
                break
            quiet_before = quiet
        else:
            return [f"not quiescent after {SETTLE_LIMIT:.0f}s of scheduled reconciles"]
        aws.clock.run()
        return []

    def unexplained_timeouts(self) -> list[str]:
        """(b) An action may expire only where the README documents it: the Lambda killed or timed out
        (its retries exhausted), injected faults, or a bootstrap barrier holding a launch too long."""
        c = self.counts()
        if c["lambda_kills"] or c["lambda_timeouts"] or c["dead_letters"] or c["faults_injected"]:
            return []
        held = {line.get("instance") for line in _CAPTURE.lines if line.get("message") == "held launch kept alive"}
        return [
            f"action of {a.instance_id} ({a.hook}) timed out with nothing to explain it"
            for a in self.aws.lifecycle_actions
            if a.group == self.group and a.ended_by == "timeout" and a.instance_id not in held
        ]

    def quiet(self) -> bool:
        """Nothing in flight: no invocation or queue poll alive, no open action, last change INSYNC."""
        aws = self.aws
        if any(t.name.startswith(FUNCTION) for t in aws.clock.live_tasks()):
            return False
        delivery = aws._delivery  # type: ignore[attr-defined]
        for mapping in delivery.mappings:
            # A queue poll still scheduled for a message since deleted is idle, not work.
            if mapping.running or delivery.sqs().get_queue(mapping.queue_name)._messages:
                return False
        return not any(a.active for a in aws.lifecycle_actions if a.group == self.group) and not self.in_flight()

    def in_flight(self) -> bool:
        changes = [c for c in self.aws.route53_changes if c.zone_id.split("/")[-1] == self.stack.zone_id]
        return bool(changes) and changes[-1].insync_at > self.aws.clock.now()

    def counts(self) -> Counter[str]:
        calls = self.aws.calls[self.start_calls :]
        invocations = self.aws.invocations[self.start_invocations :]
        actions = [a for a in self.aws.lifecycle_actions if a.group == self.group]
        return Counter(
            schedules=1,
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
            actions_timed_out=sum(1 for a in actions if a.ended_by == "timeout"),
            fallback_completions=len(self.history.fallbacks),
            unproven_completions=len(self.history.unproven),
            dead_letters=len(self.aws.dead_letters) - self.start_dead,
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
    for n, step in enumerate(steps):
        world.step(step)
        problems = world.check()
        if problems:
            result.violations += [f"after step {n} {step}: {p}" for p in problems]
            break
    else:
        problems = world.settle()
        problems += world.check(final=True)
        problems += check_quiescence(world.view)
        problems += world.unexplained_timeouts()
        result.violations += [f"at the end: {p}" for p in problems]
    result.counts = world.counts()
    result.counts["violations"] = len(result.violations)
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
