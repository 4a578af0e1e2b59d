"""``make demo``: a real etcd cluster scaled by the coordinator on emulated AWS, checked after every step.

The scenario (shared by ``make demo`` and ``tests/e2e/test_cluster.py``, so they cannot drift): inside a
sandbox (``infra.local.sandbox``: private network and mount namespaces, our DNS server on 127.0.0.53:53), the
emulated AWS on the wall clock, the coordinator delivered by the emulator's EventBridge runner with etcd
membership on, and a ``Fleet`` that runs a real etcd per instance of the group on 127.0.1.x. Steps: scale
0 → 3 (bootstrap), 3 → 5 (join: member add, state existing), 5 → 3 (member remove before the record drops
it), one instance killed without a hook then a scheduled reconcile (the group's replacement joins). After
every step: member list (peer URLs) = SRV targets (as DNS answers them and as Route 53 holds them) = the
group's in-service instances, every member healthy and in one cluster, every key written before still
readable.

Command line:
    python -m infra.local.demo            # run it in a sandbox with readable progress; exit 0 when every check holds
    python -m infra.local.demo --quiet    # only the summary table
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DOMAIN = "example.com"
GROUP = "etcd"
PEER_SRV = f"_etcd-server._tcp.{DOMAIN}."
CLIENT_SRV = f"_etcd-client._tcp.{DOMAIN}."
PEER_SRV_TLS = f"_etcd-server-ssl._tcp.{DOMAIN}."
CLIENT_SRV_TLS = f"_etcd-client-ssl._tcp.{DOMAIN}."
NAMESERVER = "127.0.0.53"
# Instance i gets 127.0.1.(10 + i): its private IP, where its etcd listens, and what its private DNS name resolves to.
INSTANCE_IPS = tuple(f"127.0.1.{n}" for n in range(10, 250))
# The coordinator as the demo deploys it: membership on through the client SRV record it also keeps, a short
# propagation (the emulator's) and fast polls, so each step takes seconds, not minutes.
COORDINATOR_SETTINGS = {
    "extra_srv_records": "_etcd-client._tcp:2379",
    "etcd_client_srv": "_etcd-client._tcp",
    "srv_record_ttl": "5",
    "poll_interval_seconds": "0.5",  # 2 GetChange/s: inside the account's 5 requests/s, which stays on
    "poll_initial_delay_seconds": "0.5",
}
STEP_TIMEOUT = 45.0
REFRESH_TIMEOUT = 240.0
SILENCE_SECONDS = 8.0  # a step that has shown nothing for this long says what it still waits for
# What each step waits for, in plain words (said when the step starts, with how long it may take at most).
STEP_WAITS = {
    "0 → 3 bootstrap": "the three launches to be listed together in the record and their etcd to start",
    "3 → 5 join": "each new instance to be added to etcd, started and promoted, one at a time",
    "5 → 3 remove": "each leaving member to leave etcd and the record before its instance terminates",
    "kill + reconcile": "the group's health check to notice the dead instance (10-30 s, as on AWS), its "
    "terminate hook, and a replacement to join",
    "rolling replace": "the instance refresh to replace every member, one at a time",
}


# How a lifecycle action ended, in the progress lines.
ENDED_BY = {
    "complete": "completed by the coordinator",
    "timeout": "ended by the hook's timeout",
    "terminated": "ended: the instance terminated",
}


class CheckFailed(AssertionError):
    """A step did not reach the state the checks demand; the message says what differs."""


@dataclass
class StepResult:
    """What one step did and what the checks found."""

    name: str
    seconds: float = 0.0
    events: list[str] = field(default_factory=list)  # lifecycle actions completed and reconciles, in order
    record: list[str] = field(default_factory=list)  # peer SRV targets (Route 53)
    dns: list[str] = field(default_factory=list)  # peer SRV targets as our DNS server answers them
    in_service: list[str] = field(default_factory=list)  # private DNS names of the group's InService instances
    members: list[str] = field(default_factory=list)  # peer URL hosts of etcd's member list
    peer_urls: list[str] = field(default_factory=list)  # etcd's member list's peer URLs (https with TLS)
    cluster_states: dict[str, str] = field(default_factory=dict)  # instance -> new|existing, for joiners
    healthy: int = 0
    keys_read: int = 0
    # the continuous client (infra/local/traffic.py) during the step; None before it runs (from step 2 on)
    writes_acked: int | None = None
    requests_failed: int | None = None
    longest_outage: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# -- progress ---------------------------------------------------------------------------------------------
class Reporter:
    """Where the scenario says what happens. The base class only collects lines (the test's reporter)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.started = time.time()

    def step(self, title: str) -> None:
        self.lines.append(f"== {title}")

    def event(self, text: str, at: float | None = None) -> None:
        """One line of progress; ``at`` (epoch seconds) is when it happened, default now."""
        self.lines.append(f"{(at or time.time()) - self.started:6.1f}s {text}")

    def result(self, result: StepResult) -> None:
        self.lines.append(f"-- {result.name}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.1f} s")

    def summary(self, results: list[StepResult], total: float) -> None:
        self.lines.append(f"total {total:.1f} s")

    def block(self, title: str, text: str) -> None:
        """A block of output as it is (the status table)."""
        self.lines.append(f"== {title}")
        self.lines.extend(text.splitlines())


class RichReporter(Reporter):
    """Readable progress on a terminal (or plain text in a pipe) with rich."""

    def __init__(self, console: Any, *, quiet: bool = False) -> None:
        super().__init__()
        self.console = console
        self.quiet = quiet

    def step(self, title: str) -> None:
        super().step(title)
        if not self.quiet:
            self.console.rule(f"[bold]{title}")

    def event(self, text: str, at: float | None = None) -> None:
        super().event(text, at)
        if not self.quiet:
            self.console.print(f"[dim]{(at or time.time()) - self.started:6.1f}s[/] {text}", highlight=False)

    def result(self, result: StepResult) -> None:
        super().result(result)
        if self.quiet:
            return
        mark = "[green]✓ checks hold[/]" if result.ok else "[red]✗ check failed[/]"
        self.console.print(f"{mark} after {result.seconds:.1f} s: record = DNS = in service = member list:")
        for target in result.record:
            self.console.print(f"    {target}", highlight=False)
        if result.peer_urls:
            self.console.print(f"    etcd peer URLs: {', '.join(result.peer_urls)}", highlight=False)
        for problem in result.problems:
            self.console.print(f"    [red]{problem}[/]", highlight=False)

    def block(self, title: str, text: str) -> None:
        super().block(title, text)
        if not self.quiet:
            self.console.rule(f"[bold]{title}")
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def summary(self, results: list[StepResult], total: float) -> None:
        from rich.table import Table

        super().summary(results, total)
        self.lines.extend(SUMMARY_NOTES)
        table = Table(title=f"etcd on emulated AWS: {len(results)} steps in {total:.1f} s")
        columns = ("step", "events", "record", "members", "healthy", "keys", "acked", "failed", "outage s", "seconds")
        for column in (*columns, "checks"):
            table.add_column(column, justify="left" if column in ("step", "events") else "right", no_wrap=True)
        for r in results:
            table.add_row(
                r.name,
                _count(r.events),
                str(len(r.record)),
                str(len(r.members)),
                f"{r.healthy}/{len(r.in_service)}",
                str(r.keys_read),
                "-" if r.writes_acked is None else str(r.writes_acked),
                "-" if r.requests_failed is None else str(r.requests_failed),
                "-" if r.longest_outage is None else f"{r.longest_outage:.2f}",
                f"{r.seconds:.1f}",
                "[green]ok[/]" if r.ok else "[red]FAILED[/]",
            )
        self.console.print(table)
        for note in SUMMARY_NOTES:
            self.console.print(f"[dim]{note}[/]", highlight=False)


SUMMARY_NOTES = (
    "record, members, healthy: what the Route 53 record lists, etcd's member list and its healthy members; "
    "keys: keys written before the step, each read back through every member.",
    "acked, failed, outage s: the continuous client's writes etcd acknowledged, its requests that failed, and its "
    "longest time without a successful request. Failures are expected while members leave or join: the client "
    "moves to the next member, and the last check reads every acknowledged write back through every member.",
)


def _count(events: list[str]) -> str:
    """``['launch a', 'launch b', 'reconcile']`` -> ``2 launch, 1 reconcile``."""
    kinds: dict[str, int] = {}
    for event in events:
        kinds[event.split()[0]] = kinds.get(event.split()[0], 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in kinds.items()) or "-"


# -- the world inside the sandbox -------------------------------------------------------------------------
def short(name: str) -> str:
    """``ip-127-0-1-10.ec2.internal.`` -> ``127.0.1.10`` (how the progress lines name instances)."""
    label = name.split(".")[0]
    return label[3:].replace("-", ".") if label.startswith("ip-") else label


class Cluster:
    """Emulated AWS + DNS server + coordinator (EventBridge runner) + a fleet of real etcd members.

    Use as a context manager inside a sandbox; ``close()`` stops every etcd and server it started.

    Variants for tests (the defaults are the demo's): ``heartbeat_timeout`` of the hooks (30 s at least),
    ``instance_ips`` (a repeated address makes a replacement reuse a dead instance's IP), ``launcher_options``
    (``Fleet`` options: extra ``Launcher`` arguments per new instance, e.g. a static bootstrap or an etcd that
    never starts) and ``before_fleet(cluster)``, called once AWS, the stack and DNS run and before the fleet
    watches the group (e.g. to create instances an operator bootstrapped without the coordinator).
    ``snapshot_bucket``: an S3 bucket (made here) the coordinator snapshots into (``SnapshotTaker`` through etcd's
    gateway, every ``snapshot_interval`` seconds at a scheduled reconcile and right before a membership change) and
    the instances restore from (disaster recovery); ``self.snapshots`` is the store.
    """

    def __init__(
        self,
        workdir: Path,
        reporter: Reporter,
        *,
        settings: dict[str, str] | None = None,
        propagation: float | tuple[float, float] = 1.0,
        poll: float = 0.2,
        heartbeat_timeout: int = 300,
        instance_ips: Sequence[str] = INSTANCE_IPS,
        launcher_options: Callable[[str], dict[str, Any]] | None = None,
        before_fleet: Callable[[Cluster], None] | None = None,
        tls: bool = True,
        snapshot_bucket: str = "",
        snapshot_interval: float = 60.0,
    ) -> None:
        self.tls = tls
        self.snapshot_bucket = snapshot_bucket
        self.snapshot_interval = snapshot_interval
        self.snapshots: Any = None  # hook_handler.backup.store.SnapshotStore (with a snapshot_bucket)
        self.peer_srv = PEER_SRV_TLS if tls else PEER_SRV
        self.client_srv = CLIENT_SRV_TLS if tls else CLIENT_SRV
        self.scheme = "https" if tls else "http"
        self.client_tls: Any = None  # the client certificate of the checks and the continuous client (TLS)
        self.must_be_gone: set[str] = set()  # instances a rolling replacement must have replaced
        self.workdir = Path(workdir)
        self.reporter = reporter
        self.settings = {**COORDINATOR_SETTINGS, **(settings or {})}
        self.propagation = propagation
        self.poll = poll
        self.heartbeat_timeout = heartbeat_timeout
        self.instance_ips = tuple(instance_ips)
        self.launcher_options = launcher_options
        self.before_fleet = before_fleet
        self.keys: dict[str, str] = {}
        self._stack: contextlib.ExitStack | None = None
        self._seen_actions: set[tuple[str, str]] = set()
        self._names: dict[str, str] = {}
        self._seen_invocations = 0
        self._seen_changes = 0
        self._seen_launchers: dict[str, str] = {}
        self._step_events: list[str] = []
        self._killed: set[str] = set()  # instances killed at EC2 level (the health check has to notice)
        self._last_event = time.monotonic()  # when the progress last said something

    # -- start and stop -------------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        from infra.local.aws import LocalAWS
        from infra.local.clock import WallClock
        from infra.local.dns import LocalZoneResolver, serve
        from infra.local.fleet import Fleet
        from infra.local.launcher import EtcdSettings
        from infra.local.stack import deploy

        self.workdir.mkdir(parents=True, exist_ok=True)
        stack = contextlib.ExitStack()
        self._stack = stack
        try:
            self.aws = stack.enter_context(
                LocalAWS(
                    WallClock(),
                    propagation=self.propagation,
                    # The account's Route 53 limit (5 requests/s) stays on: our DNS server answers from the
                    # emulator's state directly, as Route 53's name servers do, without API calls.
                    instance_ips=self.instance_ips,
                    # AWS's world (the default): transitional states, describes up to 2 s stale, an EC2-level
                    # kill terminated through the hook by the health check, a terminated instance's addresses gone.
                )
            )
            from hook_handler.etcd import HttpTransport

            transport = HttpTransport(**self._tls()) if self.tls else HttpTransport()
            self.stack = deploy(
                self.aws,
                mode="eventbridge",
                domain=DOMAIN,
                group=GROUP,
                settings=self.settings,
                etcd=transport,
                heartbeat_timeout=self.heartbeat_timeout,
            )
            self.dns = serve(
                None,
                self.stack.zone_id,
                resolver=LocalZoneResolver(self.aws, self.stack.zone_id),
                address=NAMESERVER,
            )
            stack.callback(self.dns.stop)
            if self.snapshot_bucket:
                self._take_snapshots(transport)
            if self.before_fleet is not None:
                self.before_fleet(self)
            etcd = EtcdSettings(
                domain=DOMAIN, token="etcd-" + uuid.uuid4().hex, tls=self.tls, snapshot_bucket=self.snapshot_bucket
            )
            self.fleet = Fleet(
                GROUP,
                etcd,
                autoscaling=self.aws.client("autoscaling"),
                ec2=self.aws.client("ec2"),
                workdir=self.workdir,
                poll=self.poll,
                options=self.launcher_options,
                observer=self.aws.observer,
                secretsmanager=self.aws.client("secretsmanager"),
                s3=self.aws.client("s3") if self.snapshot_bucket else None,
            )
            stack.enter_context(self.fleet)
        except BaseException:
            stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_snapshots(self, transport: Any) -> None:
        """The coordinator takes snapshots into ``snapshot_bucket`` (made here), as ``Runtime.take_snapshots`` sets it
        up from the function's settings, through etcd's JSON gateway (the coordinator's own transport)."""
        from hook_handler.backup.config import DEFAULT_PREFIX
        from hook_handler.backup.retention import parse_tiers
        from hook_handler.backup.store import SnapshotStore
        from hook_handler.backup.take import SnapshotTaker
        from hook_handler.retry import RetryPolicy

        s3 = self.aws.client("s3")
        s3.create_bucket(Bucket=self.snapshot_bucket)
        clock = self.aws.clock
        self.snapshots = SnapshotStore(s3, self.snapshot_bucket, DEFAULT_PREFIX, RetryPolicy(clock), clock)
        self.stack.runtime.coordinator.snapshots = SnapshotTaker(
            self.snapshots,
            transport,
            clock,
            interval=self.snapshot_interval,
            tiers=parse_tiers(""),
            protocol="gateway",
        )

    def _tls(self) -> dict[str, Any]:
        """A TLS cluster, as an operator would set one up: a CA (made here with ``cryptography``) whose key only
        the coordinator reads (``etcd_ca_secret``: it issues every member's certificate before its go signal),
        the coordinator's client certificate (``etcd_tls_secret``), the TLS records, and a client certificate
        for the checks and the demo's writer (``use_client_tls``). Returns the coordinator's transport options,
        loaded from its secret as the Lambda's cold start loads them."""

        from hook_handler.tls import load_client_tls
        from infra.local.etcd_client import ClientCertificate, use_client_tls
        from infra.local.pki import CertificateAuthority

        ca = CertificateAuthority.create("etcd-demo-ca")
        ca_key = ca.key_pem
        secrets = self.aws.client("secretsmanager")
        ca_arn = secrets.create_secret(Name="etcd/ca", SecretString=json.dumps({"cert": ca.pem, "key": ca_key}))["ARN"]
        cert, key = ca.issue("etcd-asg-coordinator", server=False)
        client = json.dumps({"ca": ca.pem, "cert": cert, "key": key})
        tls_arn = secrets.create_secret(Name="etcd/coordinator", SecretString=client)["ARN"]
        self.settings = {
            **self.settings,
            "srv_record_name": "_etcd-server-ssl._tcp",
            "etcd_peer_scheme": "https",
            "etcd_tls_secret": tls_arn,
            "etcd_ca_secret": ca_arn,
            "extra_srv_records": "_etcd-client-ssl._tcp:2379",
            "etcd_client_srv": "_etcd-client-ssl._tcp",
        }
        pki = self.workdir / "pki" / "client"
        pki.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert, key = ca.issue("etcd-demo-client", server=False)
        for name, text in (("ca.crt", ca.pem), ("client.crt", cert), ("client.key", key)):
            fd = os.open(pki / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
        self.client_tls = ClientCertificate(str(pki / "ca.crt"), str(pki / "client.crt"), str(pki / "client.key"))
        use_client_tls(self.client_tls)
        self._stack.callback(use_client_tls, None)  # type: ignore[union-attr]
        return load_client_tls(secrets, tls_arn, str(self.workdir)).transport_options

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    # -- actions --------------------------------------------------------------------------------
    def scale(self, desired: int) -> None:
        self.reporter.event(f"SetDesiredCapacity {desired}")
        self.stack.scale(desired)

    def instance_refresh(self, *, warmup: int = 5, timeout: float = REFRESH_TIMEOUT) -> None:
        """A rolling replacement of every instance (``StartInstanceRefresh``, the emulator's rolling strategy: one
        at a time at the default 90 % minimum healthy), waited for until the refresh is ``Successful``; the step's
        checks then also demand that none of the instances in service before it is left."""
        asg = self.aws.client("autoscaling")
        self.must_be_gone = set(self.stack.in_service())
        self.reporter.event(f"StartInstanceRefresh (rolling, InstanceWarmup {warmup} s): replace every member")
        rid = asg.start_instance_refresh(AutoScalingGroupName=GROUP, Preferences={"InstanceWarmup": warmup})[
            "InstanceRefreshId"
        ]
        self.announce(f"waiting for {STEP_WAITS['rolling replace']} (at most {timeout:.0f} s)")
        deadline = time.monotonic() + timeout
        status = "Pending"
        while time.monotonic() < deadline:
            self.watch()
            self._say_what_is_awaited(time.monotonic() - (deadline - timeout), timeout)
            with self.aws.observer():
                (refresh,) = [
                    r
                    for r in asg.describe_instance_refreshes(AutoScalingGroupName=GROUP)["InstanceRefreshes"]
                    if r["InstanceRefreshId"] == rid
                ]
            status = refresh["Status"]
            if status in ("Successful", "Failed", "Cancelled"):
                break
            time.sleep(0.3)
        self.reporter.event(f"instance refresh {status}")

    def kill(self, instance_id: str) -> None:
        self.reporter.event(f"{instance_id} ({self.name_of(instance_id)}) crashes: EC2 terminates it, no hook runs")
        self._killed.add(instance_id)
        launcher = self.fleet.launchers.get(instance_id)
        if launcher is not None:
            launcher.kill()  # the VM dies with its etcd at once, before the group notices
        self.aws.kill_instance(instance_id)

    def crash(self, instance_id: str) -> None:
        """The member's etcd dies and stays down; the instance keeps running (no hook, nothing replaces it)."""
        self.reporter.event(f"etcd on {instance_id} ({self.name_of(instance_id)}) crashes; the instance keeps running")
        self.fleet.launchers[instance_id].crash()

    def reconcile(self) -> None:
        """The schedule rule's event, delivered like any other (async, through the runner)."""
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.aws.account,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.aws.region,
            "resources": [f"arn:aws:events:{self.aws.region}:{self.aws.account}:rule/{GROUP}-reconcile"],
            "detail": {},
        }
        from infra.local.delivery import AsyncItem

        self.reporter.event("Scheduled Event → coordinator (reconcile)")
        # Dispatched at once (no delivery latency), so the reconcile, not the replacement's launch event that
        # follows 0.5 s later, is the pass that finds the dead member; the function runs one pass at a time.
        runner = self.aws._delivery
        function = runner.function_for_arn(self.stack.function_arn)
        item = AsyncItem(event, "schedule")
        runner.start(lambda: runner.dispatch(function, item), "etcd-asg-coordinator-schedule")

    def write_key(self, key: str, value: str) -> None:
        from infra.local.etcd_client import put

        endpoints = self.fleet.client_endpoints()
        if not endpoints:
            raise CheckFailed(f"no running member to write {key} through")
        put(endpoints[0], key, value)
        self.keys[key] = value

    # -- observing --------------------------------------------------------------------------------
    def name_of(self, instance_id: str) -> str:
        """The instance's address as progress lines show it (private IPs never change, so cached)."""
        if instance_id not in self._names:
            found = self.stack.private_dns([instance_id])
            if instance_id not in found:
                return instance_id
            self._names[instance_id] = short(found[instance_id])
        return self._names[instance_id]

    def watch(self) -> None:
        """Report what happened since the last look, in time order: lifecycle actions, invocations, record
        changes, etcd starts and exits."""
        seen: list[tuple[float, str]] = []
        for action in list(self.aws.lifecycle_actions):
            kind = "launch" if action.transition.endswith("LAUNCHING") else "terminate"
            who = f"{action.instance_id} ({self.name_of(action.instance_id)})"
            if (action.token, "start") not in self._seen_actions:
                self._seen_actions.add((action.token, "start"))
                wait = "Pending:Wait" if kind == "launch" else "Terminating:Wait"
                seen.append((action.started_at, f"[cyan]{kind}[/] {who} waits in {wait}"))
            if action.ended_at is not None and (action.token, "end") not in self._seen_actions:
                self._seen_actions.add((action.token, "end"))
                state = self.stack.tags(action.instance_id).get("etcd-cluster-state", "") if kind == "launch" else ""
                told = f", tag etcd-cluster-state={state}" if state else ""
                waited = action.ended_at - action.started_at
                how = ENDED_BY.get(action.ended_by or "", action.ended_by or "ended")
                text = f"[cyan]{kind}[/] {who}: {how} with {action.result} after {waited:.1f} s{told}"
                seen.append((action.ended_at, text))
                self._step_events.append(f"{kind} {self.name_of(action.instance_id)}")
        invocations = list(self.aws.invocations)
        for inv in invocations[self._seen_invocations :]:
            took = (inv.ended_at or inv.time) - inv.time
            what = inv.summary.replace("EC2 Instance-", "").replace(" Lifecycle Action", "")
            if inv.source == "schedule":
                what = "Scheduled Event (reconcile)"
            detail = ""
            if isinstance(inv.response, dict):
                done = [self.name_of(iid) for iid, _ in inv.response.get("completed", [])]
                detail = (
                    f", finished the lifecycle action of {', '.join(done)}"
                    if done
                    else " (no launch or termination was ready to finish)"
                )
            elif inv.error:
                detail = f": {inv.error[:200]}"
            text = f"coordinator ({inv.source}) {what}: {inv.outcome} in {took:.1f} s{detail}"
            seen.append((inv.ended_at or inv.time, text))
            if inv.source == "schedule":
                self._step_events.append("reconcile")
        self._seen_invocations = len(invocations)
        changes = list(self.aws.route53_changes)
        for change in changes[self._seen_changes :]:
            peer = change.records_after.get((self.peer_srv, "SRV")) if isinstance(change.records_after, dict) else None
            targets = [short(v.split()[-1]) for v in peer[1]] if peer else []
            seen.append(
                (
                    change.submitted_at,
                    f"Route 53 {change.id.rsplit('/', 1)[-1]}: {self.peer_srv[: -len(DOMAIN) - 2]} "
                    f"lists {len(targets)}: " + ", ".join(targets),
                )
            )
        self._seen_changes = len(changes)
        for iid, launcher in self.fleet.launchers.items():
            state = launcher.state
            if self._seen_launchers.get(iid) != state and state in ("running", "exited", "killed"):
                extra = f" (--initial-cluster-state {launcher.cluster_state})" if state == "running" else ""
                if state == "exited":
                    extra = f": {launcher.last_error() or 'no error logged'}"
                seen.append((time.time(), f"etcd on {self.name_of(iid)} {state}{extra}"))
            self._seen_launchers[iid] = state
        for at, text in sorted(seen, key=lambda item: item[0]):
            self.reporter.event(text, at)
        if seen:
            self._last_event = time.monotonic()

    def announce(self, text: str) -> None:
        """A progress line of the scenario's own (what it does or waits for)."""
        self.reporter.event(text)
        self._last_event = time.monotonic()

    def _say_what_is_awaited(self, waited: float, limit: float, expect: int | None = None) -> None:
        """After a silence, one line saying what the step still waits for, how long so far and at most."""
        if time.monotonic() - self._last_event < SILENCE_SECONDS:
            return
        states = self.stack.instances()
        dead = [iid for iid in sorted(self._killed) if states.get(iid) == "InService"]
        if dead:
            what = f"the group's health check has not noticed yet that {dead[0]} ({self.name_of(dead[0])}) died"
        else:
            unsettled = {iid: state for iid, state in sorted(states.items()) if state != "InService"}
            in_service = len(states) - len(unsettled)
            what = f"{in_service} instance(s) in service" + (f" of {expect}" if expect is not None else "")
            if unsettled:
                what += "; " + ", ".join(f"{self.name_of(iid)} {state}" for iid, state in unsettled.items())
        self.announce(f"still waiting ({waited:.0f} s of at most {limit:.0f} s): {what}")

    def observe(self, name: str) -> StepResult:
        """Check the invariants now; the result lists every difference found (none: the step holds)."""
        from infra.local.etcd_client import endpoint_health, get, member_list
        from infra.local.resolver import srv_targets

        result = StepResult(name)
        states = self.stack.instances()
        in_service = sorted(iid for iid, state in states.items() if state == "InService")
        names = self.stack.private_dns(in_service)
        result.in_service = sorted(names.values())
        unsettled = {iid: s for iid, s in states.items() if s != "InService"}
        if unsettled:
            result.problems.append(f"instances not settled: {unsettled}")
        left = sorted(self.must_be_gone & set(in_service))
        if left:
            result.problems.append(f"not replaced yet: {left}")
        result.record = sorted(self.stack.targets())
        client = self.aws.records(self.stack.zone_id).get((self.client_srv, "SRV"))
        client_targets = sorted(v.split()[-1] for v in client[1]) if client else []
        result.dns = sorted(f"{t}." for t, _ in srv_targets(self.peer_srv, nameservers=[NAMESERVER]))
        if not (result.record == result.dns == result.in_service == client_targets):
            result.problems.append(
                f"record {result.record} / DNS {result.dns} / client record {client_targets} "
                f"/ in service {result.in_service} differ"
            )
        launchers = self.fleet.launchers
        endpoints = [f"{self.scheme}://{launchers[iid].private_ip}:2379" for iid in in_service if iid in launchers]
        try:
            lists = {e: member_list(e, timeout=1.0) for e in endpoints}
        except Exception as exc:  # noqa: BLE001 - any failure to read the member list is a failed check
            result.problems.append(f"member list unreadable: {exc}")
            lists = {}
        if lists:
            first = next(iter(lists.values()))
            result.members = sorted(f"{urlsplit(u).hostname}." for m in first for u in m["peer_urls"])
            result.peer_urls = sorted(u for m in first for u in m["peer_urls"])
            plain = [u for u in result.peer_urls if urlsplit(u).scheme != self.scheme]
            if plain:
                result.problems.append(f"peer URLs not {self.scheme}: {plain}")
            if any({m["id"] for m in ms} != {m["id"] for m in first} for ms in lists.values()):
                result.problems.append("members disagree about the member list (more than one cluster)")
            if any(not m["name"] or m["learner"] for m in first):
                result.problems.append("a member is not started (no name) or is a learner")
            if result.members != result.in_service:
                result.problems.append(f"member list {result.members} differs from in service {result.in_service}")
        health = endpoint_health(endpoints, timeout=1.0)
        result.healthy = sum(health.values())
        if result.healthy != len(in_service) or not in_service:
            result.problems.append(f"healthy {result.healthy} of {len(in_service)}: {health}")
        for key, value in self.keys.items():
            for endpoint in endpoints:
                try:
                    read = get(endpoint, key, timeout=1.0)
                except Exception as exc:  # noqa: BLE001 - unreadable is a failed check
                    read = f"<{type(exc).__name__}>"
                if read != value:
                    result.problems.append(f"{key} through {endpoint}: {read!r}, wrote {value!r}")
                else:
                    result.keys_read += 1
        for iid in in_service:
            launcher = self.fleet.launchers.get(iid)
            if launcher is not None and launcher.cluster_state:
                result.cluster_states[short(names[iid])] = launcher.cluster_state
        return result

    def settle(self, name: str, expect: int, *, timeout: float = STEP_TIMEOUT) -> StepResult:
        """Watch until the checks hold with ``expect`` members (or ``timeout``); the step's result."""
        started = time.monotonic()
        deadline = started + timeout
        result = StepResult(name)
        while True:
            self.watch()
            self._say_what_is_awaited(time.monotonic() - started, timeout, expect)
            if time.monotonic() - started > 0.5:  # let the step's first events arrive
                result = self.observe(name)
                if result.ok and len(result.in_service) == expect:
                    break
            if time.monotonic() > deadline:
                if result.ok:
                    result.problems.append(f"{len(result.in_service)} in service, expected {expect}")
                break
            time.sleep(0.2)
        self.watch()
        result.seconds = round(time.monotonic() - started, 1)
        result.events = list(self._step_events)
        self._step_events.clear()
        return result


# -- the scenario -------------------------------------------------------------------------------------------
Step = tuple[str, Callable[[Cluster], None], int]


def _kill_one(cluster: Cluster) -> None:
    victim = sorted(cluster.stack.in_service())[0]
    cluster.kill(victim)
    cluster.reconcile()


STEPS: list[Step] = [
    ("0 → 3 bootstrap", lambda c: c.scale(3), 3),
    ("3 → 5 join", lambda c: c.scale(5), 5),
    ("5 → 3 remove", lambda c: c.scale(3), 3),
    ("kill + reconcile", _kill_one, 3),
    ("rolling replace", lambda c: c.instance_refresh(), 3),
]


def play(
    cluster: Cluster, steps: list[Step] = STEPS, *, stop_on_failure: bool = True, traffic: bool = True
) -> list[StepResult]:
    """Run ``steps`` on a started ``cluster``: write a key before each, check everything after each. With
    ``traffic``, a continuous client (``infra.local.traffic``) writes and reads through the client SRV record from
    the first step that leaves a cluster on; each later step reports its acknowledged writes, failed requests and
    longest outage, and at the end every acknowledged write must be readable through every member."""
    from infra.local.traffic import ContinuousClient, srv_endpoints

    results: list[StepResult] = []
    client: ContinuousClient | None = None
    try:
        for n, (title, act, expect) in enumerate(steps, 1):
            cluster.reporter.step(f"step {n}: {title}")
            if cluster.fleet.client_endpoints():
                cluster.write_key(f"/demo/before-step-{n}", f"written before step {n}")
                cluster.reporter.event(f"put /demo/before-step-{n}")
            began = time.time()
            act(cluster)
            if title in STEP_WAITS and title != "rolling replace":  # the refresh says so itself, as it starts
                cluster.announce(f"waiting for {STEP_WAITS[title]} (at most {STEP_TIMEOUT:.0f} s)")
            result = cluster.settle(title, expect)
            result.seconds = round(time.time() - began, 1)  # the step's action included (a refresh waits in it)
            if client is not None:
                seen = client.window(began)
                result.writes_acked, result.requests_failed = seen.acked, seen.failed
                result.longest_outage = seen.longest_outage
            cluster.reporter.result(result)
            results.append(result)
            if not result.ok and stop_on_failure:
                break
            if traffic and client is None and result.ok:
                endpoints = srv_endpoints(cluster.client_srv, cluster.scheme, NAMESERVER)
                client = ContinuousClient(endpoints, tls=cluster.client_tls).start()
                cluster.reporter.event(f"continuous client: writes and reads through {cluster.client_srv}")
    finally:
        if client is not None:
            client.stop()
    if client is not None and results:
        in_service = [f"{cluster.scheme}://{la.private_ip}:2379" for la in cluster.fleet.running()]
        try:
            missing = client.verify(in_service)
        except Exception as exc:  # noqa: BLE001 - an unreadable member is a failed check
            missing = {"(read)": [-1]}
            results[-1].problems.append(f"acknowledged writes unreadable: {type(exc).__name__}: {exc}")
        lost = {url: seqs for url, seqs in missing.items() if seqs}
        total = len(client.acknowledged())
        if lost:
            results[-1].problems.append(f"acknowledged writes lost: {lost}")
        cluster.reporter.event(
            f"continuous client: {total} acknowledged writes, each read back through all {len(in_service)} members: "
            + ("none lost" if not lost else f"LOST {sum(len(v) for v in lost.values())}")
        )
    return results


def run_scenario(workdir: str, reporter: Reporter | None = None, **cluster_kwargs: Any) -> dict[str, Any]:
    """Inside a sandbox: the whole scenario. Returns {"steps": [StepResult dicts], "seconds", "lines"}."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    with Cluster(Path(workdir), reporter, **cluster_kwargs) as cluster:
        results = play(cluster)
        # What an operator's `python -m hook_handler status` shows now: the same look, on this cluster.
        from hook_handler.status import collect, render

        reporter.block(
            "python -m hook_handler status", render(collect(cluster.stack.runtime.coordinator, time.time() + 20))
        )
    total = time.monotonic() - started
    reporter.summary(results, total)
    return {"steps": [r.to_dict() for r in results], "seconds": round(total, 1), "lines": reporter.lines}


# -- logging: keep the coordinator's JSON logs and the emulator's chatter in files --------------------------
def quiet_logs(workdir: Path) -> Any:
    """Send logs (and stray prints such as powertools' metric flushes) to files; return the real stdout."""
    from hook_handler.telemetry import logger

    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = open(logs / "coordinator.log", "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    handler = getattr(logger, "registered_handler", None)
    if handler is not None and hasattr(handler, "setStream"):
        handler.setStream(out)
    logging.basicConfig(
        filename=str(logs / "emulator.log"), level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    real = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = out
    return real


def _inside(args: argparse.Namespace) -> int:
    from rich.console import Console

    workdir = Path(args.workdir)
    real_stdout = quiet_logs(workdir)
    console = Console(file=real_stdout, force_terminal=args.color, highlight=False, width=None if args.color else 150)
    reporter = RichReporter(console, quiet=args.quiet)
    tls = not args.plaintext
    console.print(
        f"etcd-asg-coordinator demo — emulated AWS (wall clock, Route 53 propagation 1 s), DNS on {NAMESERVER}:53, "
        f"coordinator via EventBridge, real etcd per instance on 127.0.1.x, "
        + (
            "mutual TLS (_etcd-server-ssl._tcp, https peer and client URLs, a certificate per member issued by the "
            "coordinator; --plaintext for none)"
            if tls
            else "plaintext (_etcd-server._tcp, http)"
        )
        + f". {len(STEPS)} steps, about 2-3 minutes: each step waits at most {STEP_TIMEOUT:.0f} s for its checks "
        f"(the rolling replacement up to {REFRESH_TIMEOUT:.0f} s more). Logs: {workdir / 'logs'}"
    )
    try:
        outcome = run_scenario(str(workdir), reporter, tls=tls)
    except Exception as exc:  # noqa: BLE001 - reported with a clear message and a non-zero exit
        console.print(f"[red]demo failed: {type(exc).__name__}: {exc}[/] (logs in {workdir / 'logs'})")
        return 1
    (workdir / "result.json").write_text(json.dumps(outcome, indent=2))
    failed = [s for s in outcome["steps"] if not s["ok"]]
    if failed or len(outcome["steps"]) != len(STEPS):
        for step in failed:
            console.print(f"[red]check failed in {step['name']}:[/] " + "; ".join(step["problems"]))
        console.print(f"[red]demo FAILED[/] (logs in {workdir / 'logs'})")
        return 1
    console.print(f"[green]demo passed[/]: every check held after every step ({outcome['seconds']} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.local.demo``: play the scenario in a sandbox; exit 0 when every check held."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="print only the summary table")
    parser.add_argument("--workdir", default=None, help="where logs go (default .demo/<time> in the project)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before everything is killed")
    parser.add_argument("--plaintext", action="store_true", help="no TLS: _etcd-server._tcp and http URLs")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--color", action="store_true", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        return _inside(args)

    from infra.local.sandbox import PROJECT_ROOT, SandboxError, available, run_inside

    ok, how = available()
    if not ok:
        print(f"demo: cannot run: {how}", file=sys.stderr)
        return 2
    workdir = Path(args.workdir or PROJECT_ROOT / ".demo" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    argv_inside = [sys.executable, "-m", "infra.local.demo", "--inside", "--workdir", str(workdir)]
    if args.quiet:
        argv_inside.append("--quiet")
    if args.plaintext:
        argv_inside.append("--plaintext")
    if sys.stdout.isatty():
        argv_inside.append("--color")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    print(f"demo: sandbox: {how}", flush=True)
    started = time.monotonic()
    try:
        code = run_inside(argv_inside, env, timeout=args.timeout, cwd=PROJECT_ROOT)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; every process it started was killed", file=sys.stderr)
        return 130
    except SandboxError as exc:
        print(f"demo: {exc}; every process it started was killed (logs in {workdir / 'logs'})", file=sys.stderr)
        return 1
    print(f"demo: {'passed' if code == 0 else 'FAILED'} in {time.monotonic() - started:.1f} s", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
