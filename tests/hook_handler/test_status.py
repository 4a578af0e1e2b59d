"""``python -m hook_handler status``: the rows it shows for a cluster in each state it reports, on simulated time
with the etcd 3.5 model, and that a look writes nothing (the emulator's call log, the etcd requests it sent).

Each world test then lets the coordinator act and checks it did what the status said it would do next."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from hook_handler.app import Clients, Runtime
from hook_handler.etcd import Member
from hook_handler.members import Group, Instance
from hook_handler.membership import EtcdView
from hook_handler.plan import Observation, RecordSet
from hook_handler.settings import load_settings
from hook_handler.status import EXIT_ETCD_UNREACHABLE, Row, StatusReport, build, collect, render
from infra.local import LocalAWS
from infra.local.etcd_model import EtcdModel
from infra.local.sim_fleet import SimFleet
from infra.local.stack import Stack, deploy

REPO = Path(__file__).resolve().parents[2]
ETCD_READS = {"/v3/cluster/member/list", "/v3/maintenance/status", "/version"}
AWS_READS = ("Describe", "List", "Get")


pytestmark = pytest.mark.local_aws(propagation=(5.0, 15.0))  # the shared ``aws`` fixture (tests/conftest.py)


class Recording:
    """An etcd transport that notes every request before passing it on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests: list[str] = []

    def post(self, endpoint: str, path: str, body: Any, timeout: float) -> dict[str, Any]:
        self.requests.append(path)
        return self.inner.post(endpoint, path, body, timeout)

    def get(self, endpoint: str, path: str, timeout: float) -> dict[str, Any]:
        self.requests.append(path)
        return self.inner.get(endpoint, path, timeout)


class World:
    def __init__(self, aws: LocalAWS, *, launch_default_result: str = "ABANDON", **settings: str) -> None:
        self.aws = aws
        self.model = EtcdModel(aws.clock, seed=1, start_seconds=(1.0, 3.0))
        self.stack: Stack = deploy(
            aws,
            mode="eventbridge",
            etcd=self.model.transport(),
            settings={"poll_interval_seconds": "2", **settings},
            launch_default_result=launch_default_result,
        )
        self.fleet = SimFleet(aws, self.model, self.stack.group, zone_id=self.stack.zone_id, domain=self.stack.domain)
        self.fleet.start()

    def members(self) -> dict[str, Any]:
        """etcd's members by id (the model's own view, no request)."""
        (members,) = [ms for ms in self.model.clusters().values() if any(m.running for m in ms)]
        return {m.id: m for m in members}

    def look(self, *, etcd_silent: bool = False) -> StatusReport:
        """The status command's look, through its own runtime (same settings, own clients and etcd transport),
        asserting it wrote nothing: every AWS call a read, every etcd request a read, etcd's history unchanged.
        ``etcd_silent``: its reads time out on the simulated clock, while the world goes on (the coordinator's own
        passes call AWS meanwhile): only etcd's side is checked."""
        aws, transport = self.aws, Recording(self.model.transport())
        clients = Clients(
            route53=aws.client("route53"),
            autoscaling=aws.client("autoscaling"),
            ec2=aws.client("ec2"),
            secretsmanager=aws.client("secretsmanager"),
        )
        runtime = Runtime(
            load_settings(self.stack.env), clients, aws.clock, region=aws.region, etcd_transport=transport
        )
        first, history, now = len(aws.calls), len(self.model.history), aws.clock.now()
        report = collect(runtime.coordinator, now + 30)
        assert etcd_silent or aws.clock.now() == now  # no simulated time passed: every call since `first` is the look's
        operations = [c.operation for c in aws.calls[first:]]
        assert "DescribeAutoScalingGroups" in operations and "ListResourceRecordSets" in operations
        assert etcd_silent or all(op.startswith(AWS_READS) for op in operations), operations
        assert transport.requests and set(transport.requests) <= ETCD_READS, transport.requests
        assert len(self.model.history) == history
        return report


def rows(report: StatusReport) -> dict[str, Row]:
    return {r.instance_id: r for r in report.rows if r.kind == "instance" and r.instance_id}


def until(aws: LocalAWS, what: Any, *, step: float = 1.0, limit: float = 600.0) -> Any:
    """Advance simulated time until ``what()`` is truthy; return it."""
    end = aws.clock.now() + limit
    while aws.clock.now() < end:
        found = what()
        if found:
            return found
        aws.clock.advance(step)
    raise AssertionError(f"not reached in {limit:g} s")


def three(aws: LocalAWS, **settings: str) -> World:
    world = World(aws, **settings)
    world.stack.scale(3)
    aws.clock.advance(300)
    assert len(world.stack.in_service()) == 3
    return world


def test_a_cluster_in_step_shows_every_member_healthy_listed_and_nothing_to_do(aws):
    world = three(aws)
    report = world.look()
    assert report.etcd == "ok" and (report.voters, report.healthy_voters, report.quorum) == (3, 3, 2)
    assert report.record_change == () and len(report.targets) == 3
    by_id = rows(report)
    assert set(by_id) == world.stack.in_service() and len(report.rows) == 3
    leader = next(m for m in world.members().values() if m.leader)
    for iid, row in by_id.items():
        assert (row.state, row.listed, row.next) == ("InService", True, "nothing")
        assert row.reason == "in service, listed, healthy voter"
        m = row.member
        assert m is not None and m.name == iid and m.started and not m.learner and m.healthy and m.lag == 0
        assert m.leader == (m.name == leader.name)
    assert report.leader == Member(leader.id, "", (), ()).hex_id
    text = render(report)
    assert "3 voter(s), 3 healthy (quorum 2)" in text and text.count("healthy voter") == 3


def test_a_termination_the_quorum_guard_holds_shows_hold_then_remove_once_the_member_is_back(aws):
    world = three(aws)
    down, leaving = sorted(world.stack.in_service())[:2]
    world.fleet.crash(down, restart_delay=900.0)
    aws.clock.advance(10)
    world.stack.terminate(leaving, decrement=True)
    aws.clock.advance(110)
    report = world.look()
    held, crashed = rows(report)[leaving], rows(report)[down]
    assert (held.state, held.listed, held.next) == ("Terminating:Wait", True, "hold")
    assert held.member is not None and held.member.healthy
    assert held.reason.startswith("quorum guard: 1 of 2 voters left would be healthy; quorum needs 2")
    assert crashed.member is not None and not crashed.member.healthy and crashed.member.lag is None
    assert crashed.next == "nothing" and "not healthy" in crashed.reason
    assert (report.voters, report.healthy_voters) == (3, 2)
    assert report.record_change == ()  # the record keeps listing the held member

    # Kept alive by reconciles until the crashed member restarts; then the status says remove, and it is done.
    for _ in range(8):
        world.stack.reconcile()
        aws.clock.advance(110)
    assert leaving in {m.name for m in world.members().values()}
    report = world.look()
    assert rows(report)[leaving].next == "remove"
    assert rows(report)[leaving].reason.startswith("member remove: instance is Terminating:Wait")
    world.stack.reconcile()
    aws.clock.advance(60)
    assert leaving not in {m.name for m in world.members().values()}


def test_a_joiner_whose_member_is_added_but_not_started_shows_an_unstarted_learner_held(aws):
    world = three(aws)
    world.model.start_seconds = 60.0
    before = set(world.members())
    world.stack.scale(4)
    added = until(aws, lambda: set(world.members()) - before)
    aws.clock.advance(5)
    report = world.look()
    (joiner,) = [
        r
        for r in rows(report).values()
        if r.member is not None and r.member.id not in {Member(i, "", (), ()).hex_id for i in before}
    ]
    assert (joiner.state, joiner.listed, joiner.next) == ("Pending:Wait", True, "hold")
    assert joiner.reason == "waiting for etcd to start"
    m = joiner.member
    assert m.id == Member(next(iter(added)), "", (), ()).hex_id
    assert (m.name, m.started, m.learner, m.healthy, m.lag) == ("", False, True, False, None)
    assert report.voters == 3  # a learner is no voter
    (line,) = [line for line in render(report).splitlines() if line.startswith(joiner.instance_id)]
    assert line.split()[1:9] == ["Pending:Wait", "yes", m.id, "-", "no", "yes", "no", "no"]
    assert line.endswith("hold     waiting for etcd to start")

    until(aws, lambda: joiner.instance_id in world.stack.in_service(), limit=300)
    assert not world.members()[next(iter(added))].learner  # it started, was promoted, and its launch completed


def test_a_started_learner_catching_up_shows_its_lag_and_promote(aws):
    world = three(aws)
    world.model.catchup_seconds = 120.0  # etcd refuses the promotion until the learner is in sync
    before = set(world.members())
    world.stack.scale(4)
    (learner_id,) = until(
        aws, lambda: {i for i, m in world.members().items() if i not in before and m.published and m.learner}
    )
    aws.clock.advance(10)
    report = world.look()
    (row,) = [r for r in rows(report).values() if r.member is not None and r.member.learner]
    assert (row.state, row.listed, row.next) == ("Pending:Wait", True, "promote")
    assert row.reason == "learner started; promote once in sync"
    m = row.member
    assert m.started and m.healthy and not m.leader and m.name == row.instance_id
    assert m.lag is not None and m.lag > 0

    until(aws, lambda: any(r.kind == "promote" and str(r.member_id) == learner_id for r in world.model.history))
    assert not world.members()[learner_id].learner


def test_a_leader_leaving_shows_remove_with_the_member_leadership_moves_to(aws):
    world = three(aws)
    aws.client("events").remove_targets(Rule=f"{world.stack.group}-lifecycle", Ids=["coordinator"])  # no pass yet
    (leader,) = [m for m in world.members().values() if m.leader]
    world.stack.terminate(leader.name, decrement=True)
    until(aws, lambda: world.stack.instances().get(leader.name) == "Terminating:Wait")
    aws.clock.advance(3)
    report = world.look()
    row = rows(report)[leader.name]
    assert (row.state, row.listed, row.next) == ("Terminating:Wait", True, "remove")
    assert row.member is not None and row.member.leader and row.member.healthy
    assert row.reason.startswith("member remove: instance is Terminating:Wait; leadership moves to ")
    successor = row.reason.rsplit("leadership moves to ", 1)[1].split()[0]
    assert successor in {r.member.id for r in rows(report).values() if r.member and r.instance_id != leader.name}

    world.stack.reconcile()
    until(aws, lambda: leader.id not in world.members(), limit=120)
    (now_leading,) = [m for m in world.members().values() if m.leader]
    assert Member(now_leading.id, "", (), ()).hex_id == successor
    assert any(r.kind == "remove" and str(r.member_id) == leader.id for r in world.model.history)


# -- the command line -------------------------------------------------------------------------------------------
def cli(world: World, monkeypatch, capsys, *argv: str) -> tuple[int, str, str, list[Any], Recording]:
    """``main(["status", *argv])`` as an operator runs it: settings from the environment, boto3's own clients
    (the in-process emulator answers them), etcd through the transport the CLI makes (here the model's)."""
    from hook_handler.__main__ import main
    from hook_handler.telemetry import logger

    handler = logger.registered_handler
    monkeypatch.setattr(handler, "stream", handler.stream)  # the command moves the logs to stderr: put them back
    for key, value in world.stack.env.items():
        monkeypatch.setenv(key, value)
    transport = Recording(world.model.transport())
    monkeypatch.setattr("hook_handler.etcd.HttpTransport", lambda **_: transport)
    monkeypatch.setattr("hook_handler.app.SystemClock", lambda: world.aws.clock)  # etcd's retries on simulated time
    first, history = len(world.aws.calls), len(world.model.history)
    code = main(["status", *argv])
    out, err = capsys.readouterr()
    assert len(world.model.history) == history
    return code, out, err, world.aws.calls[first:], transport


def test_the_status_command_prints_json_and_writes_nothing(aws, monkeypatch, capsys):
    world = three(aws)
    world.stack.scale(4)
    until(aws, lambda: "Pending:Wait" in world.stack.instances().values())
    aws.clock.advance(3)  # past the describes' staleness
    code, out, err, calls, transport = cli(world, monkeypatch, capsys, "--json")
    assert code == 0, err
    assert calls and all(c.operation.startswith(AWS_READS) for c in calls), [c.operation for c in calls]
    assert set(transport.requests) <= ETCD_READS and "/v3/cluster/member/list" in transport.requests
    status = json.loads(out)
    assert status["etcd"] == "ok" and status["quorum"] == 2 and status["record"] == world.stack.srv_name
    by_id = {r["instance_id"]: r for r in status["rows"]}
    assert set(by_id) == set(world.stack.instances())
    (joiner,) = [r for r in status["rows"] if r["state"] == "Pending:Wait"]
    assert (joiner["next"], joiner["reason"]) == ("add", "member add: not a member yet")
    serving = [r for r in status["rows"] if r["state"] == "InService"]
    assert len(serving) == 3 and all(r["member"]["healthy"] and r["next"] == "nothing" for r in serving)
    assert status["warnings"] == []  # launch hook ABANDON (the terminate hook's CONTINUE is no concern)


def test_a_launch_hook_that_continues_is_warned_about_in_the_table_and_the_json(aws, monkeypatch, capsys):
    """A launch the coordinator does not answer in time would go InService unadmitted: the status says so and
    what to do, whatever else it shows (here a healthy cluster)."""
    world = World(aws, launch_default_result="CONTINUE")
    world.stack.scale(3)
    aws.clock.advance(300)
    code, out, err, calls, _ = cli(world, monkeypatch, capsys, "--json")
    assert code == 0, err
    assert "DescribeLifecycleHooks" in [c.operation for c in calls]
    (warning,) = json.loads(out)["warnings"]
    assert warning.startswith("group etcd: launch hook etcd-launch has DefaultResult CONTINUE")
    assert "InService unadmitted" in warning and "set its DefaultResult to ABANDON" in warning
    code, out, err, _, _ = cli(world, monkeypatch, capsys)
    assert code == 0 and f"warning: {warning}" in out.splitlines()


def test_the_status_command_exits_3_when_etcd_does_not_answer_and_still_prints_the_table(aws, monkeypatch, capsys):
    world = three(aws)
    for iid in sorted(world.stack.in_service()):
        world.fleet.crash(iid, restart_delay=100_000)
    code, out, err, calls, transport = cli(world, monkeypatch, capsys)
    assert code == EXIT_ETCD_UNREACHABLE == 3
    assert "etcd did not answer" in err
    assert "etcd: UNREACHABLE" in out and len([line for line in out.splitlines() if line.startswith("i-")]) == 3
    assert calls and all(c.operation.startswith(AWS_READS) for c in calls)
    assert transport.requests and set(transport.requests) == {"/v3/cluster/member/list"}


def test_a_bad_setting_fails_the_status_command_with_exit_2(monkeypatch, capsys):
    from hook_handler.__main__ import main

    monkeypatch.setenv("domain_name", "example.com")
    monkeypatch.delenv("r53_zone_id", raising=False)
    assert main(["status"]) == 2
    assert "r53_zone_id" in capsys.readouterr().err


# -- rows no instance of the groups explains (pure) ----------------------------------------------------------------
SETTINGS_ENV = {"domain_name": "example.com", "r53_zone_id": "Z1", "asg_names": "etcd"}
SETTINGS = load_settings(SETTINGS_ENV)


def _instance(n: int, state: str = "InService", **kw: Any) -> Instance:
    return Instance(
        f"i-{n:017x}",
        group="etcd",
        lifecycle_state=state,
        ec2_state="running",
        private_ip=f"10.0.0.{n}",
        private_dns=f"ip-10-0-0-{n}.ec2.internal",
        **kw,
    )


def _member(n: int, *, name: str | None = None, started: bool = True) -> Member:
    host = f"ip-10-0-0-{n}.ec2.internal"
    urls = (f"http://10.0.0.{n}:2379",) if started else ()
    return Member(str(1000 + n), f"i-{n:017x}" if name is None else name, (f"http://{host}:2380",), urls)


def _record(*hosts: str) -> dict[Any, RecordSet]:
    srv = SETTINGS.srv_fqdn
    return {(srv, "SRV"): RecordSet.of(srv, "SRV", 60, [f"0 0 2380 {h}." for h in hosts])}


def test_members_and_targets_no_instance_explains_get_rows_of_their_own():
    live = [_instance(n) for n in (1, 2, 3)]
    obs = Observation(
        {"etcd": Group("etcd", 3, tuple(i.instance_id for i in live))},
        {
            **{i.instance_id: i for i in live},
            "i-00000000000000009": Instance("i-00000000000000009"),  # a member's instance EC2 no longer knows
        },
        now=1000.0,
    )
    view = EtcdView(
        members=(
            *(_member(n) for n in (1, 2, 3)),
            _member(9),  # named after a gone instance
            _member(7, name="", started=False),  # added, never started, its host nobody's
            _member(8, name="etcd-8"),  # started, named otherwise, its host nobody's: unknown
        ),
        healthy=frozenset({"1001", "1002", "1003", "1008"}),
        leader="1001",
    )
    current = _record(*(f"ip-10-0-0-{n}.ec2.internal" for n in (1, 2, 3, 9)), "old.example.com")
    report = build(SETTINGS, obs, view, current)
    by_member = {r.member.id: r for r in report.rows if r.kind == "member" and r.member is not None}
    assert set(by_member) == {"3f1", "3ef", "3f0"}  # members 1009, 1007, 1008 (hex)
    gone = by_member["3f1"]
    assert (gone.instance_id, gone.state, gone.listed, gone.target) == (
        "i-00000000000000009",
        "gone",
        True,
        "ip-10-0-0-9.ec2.internal.",
    )
    assert gone.next == "remove" and gone.reason == "member remove: instance is gone (EC2 does not know it)"
    unstarted = by_member["3ef"]
    assert unstarted.instance_id is None and unstarted.member.started is False and unstarted.next == "remove"
    assert unstarted.reason == "member remove: unstarted member no running instance owns"
    unknown = by_member["3f0"]
    assert (unknown.instance_id, unknown.member.name, unknown.next) == (None, "etcd-8", "nothing")
    assert unknown.reason == "no instance owns it: never removed on that basis"
    (target,) = [r for r in report.rows if r.kind == "target"]
    assert (target.target, target.next) == ("old.example.com.", "hold")
    assert target.reason.startswith("removal guard keeps it: old.example.com.: no instance found for it")
    assert all(r.next == "nothing" for r in report.rows if r.kind == "instance")
    assert report.record_change == ("-ip-10-0-0-9.ec2.internal.",)
    text = render(report)
    assert "(old.example.com.)" in text and "(i-00000000000000009)" in text and "(unknown)" in text


def test_a_fresh_group_shows_the_bootstrap_barrier_then_the_founding_record():
    first = [_instance(n, "Pending:Wait", launch_time=990.0) for n in (1, 2)]
    obs = Observation({"etcd": Group("etcd", 3, ())}, {i.instance_id: i for i in first}, now=1000.0)
    report = build(SETTINGS, obs, None, {})
    assert report.etcd == "none" and report.record_change == ()
    assert [(r.next, r.reason) for r in report.rows] == [("hold", "bootstrap barrier: 2/3 present")] * 2
    third = _instance(3, "Pending:Wait", launch_time=995.0)
    obs = Observation(obs.groups, {**obs.instances, third.instance_id: third}, now=1000.0)
    report = build(SETTINGS, obs, None, {})
    assert len(report.record_change) == 3 and all(c.startswith("+") for c in report.record_change)
    assert {(r.listed, r.next) for r in report.rows} == {(False, "add")}
    assert all(r.reason == "list in the founding record; then the go signal (new)" for r in report.rows)


# -- against the emulator's server (``python -m infra.local serve``), as an operator's shell runs it ---------------
@pytest.fixture
def server(monkeypatch):
    """The emulator's server in a subprocess (simulated clock), and the environment that points boto3 at it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local", "serve", "--port", "0", "--clock", "sim"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")},
    )
    try:
        line = process.stdout.readline()
        assert "serving on http://" in line, line
        url = line.split("serving on ", 1)[1].split()[0]
        env = {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield url, env
    finally:
        process.terminate()
        process.wait(timeout=10)


def _http(method: str, url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_status_command_runs_against_the_emulator_server_and_only_reads(server):
    url, aws_env = server
    r53, asg, ec2 = (boto3.client(s, region_name="us-east-1") for s in ("route53", "autoscaling", "ec2"))
    zone = r53.create_hosted_zone(Name="example.com", CallerReference="s")["HostedZone"]["Id"].split("/")[-1]
    ec2.create_launch_template(LaunchTemplateName="etcd-lt", LaunchTemplateData={"ImageId": "ami-12c6146b"})
    asg.create_auto_scaling_group(
        AutoScalingGroupName="etcd",
        LaunchTemplate={"LaunchTemplateName": "etcd-lt", "Version": "$Latest"},
        MinSize=0,
        MaxSize=5,
        DesiredCapacity=2,
        AvailabilityZones=["us-east-1a"],
    )
    _http("POST", f"{url}/_local/clock/advance", {"seconds": 60})  # launched and in service (no hooks)
    first = _http("GET", f"{url}/_local/calls")["next"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **aws_env,
        "domain_name": "example.com",
        "r53_zone_id": zone,
        "asg_names": "etcd",
        "etcd_membership": "false",  # no etcd behind this server: DNS only
    }
    done = subprocess.run(
        [sys.executable, "-m", "hook_handler", "status"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("record _etcd-server._tcp.example.com.: 0 target(s); next change: +ip-")
    assert lines[1] == "etcd: membership off (DNS only)"
    instances = [line for line in lines if line.startswith("i-")]
    assert len(instances) == 2, done.stdout
    for line in instances:
        cells = line.split()
        assert cells[1:3] == ["InService", "no"] and cells[10] == "add"
        assert line.endswith("the record does not list it: the next pass lists it")
    calls = _http("GET", f"{url}/_local/calls?since={first}")["calls"]
    assert {c["operation"] for c in calls} == {
        "DescribeAutoScalingGroups",
        "DescribeInstances",
        "DescribeLifecycleHooks",  # the launch hook's DefaultResult (the warnings)
        "ListResourceRecordSets",
    }


def test_status_names_the_cluster_and_says_when_ec2_proves_its_quorum_lost_for_good(aws):
    """The identity record in ``status``: the cluster and its voters; with etcd silent and every instance still
    running, not lost (the members come back with their data); with two of three instances terminated at the EC2
    level, lost for good, naming the survivor."""
    world = three(aws)
    report = world.look()
    (cid,) = [c for c, ms in world.model.clusters().items() if any(m.running for m in ms)]
    assert report.cluster["state"] == "running" and report.cluster["cluster_id"] == f"{cid:x}"
    assert report.cluster["voters"] == sorted(world.stack.in_service()) and not report.cluster["lost"]
    old = sorted(world.stack.in_service())
    for iid in old:
        world.model.stop(iid)  # etcd silent, the instances running
    report = world.look(etcd_silent=True)
    assert report.etcd == "unreachable" and not report.cluster["lost"]
    for iid in old[:2]:
        aws.kill_instance(iid)
    aws.clock.advance(120)  # EC2 reports them shutting down, then terminated (its describes lag a little)
    report = world.look(etcd_silent=True)
    assert report.cluster["lost"] == "1 of 3 voters' instances still run"
    assert report.cluster["survivors"] == [old[2]]
    assert f"QUORUM LOST FOR GOOD: 1 of 3 voters' instances still run (survivors: {old[2]})" in render(report)


@pytest.mark.parametrize(
    ("hooks", "configured", "warned"),
    [
        ([("launch", "LAUNCHING", "CONTINUE")], "", ["launch"]),  # the group's only launch hook
        ([("launch", "LAUNCHING", "CONTINUE")], "launch", ["launch"]),
        ([("launch", "LAUNCHING", "ABANDON")], "", []),
        ([("launch", "LAUNCHING", None)], "", []),  # AWS's default is ABANDON
        ([("launch", "LAUNCHING", "ABANDON"), ("drain", "TERMINATING", "CONTINUE")], "", []),  # a termination goes on
        ([("ours", "LAUNCHING", "ABANDON"), ("theirs", "LAUNCHING", "CONTINUE")], "ours", []),  # not the coordinator's
        ([("ours", "LAUNCHING", "CONTINUE"), ("theirs", "LAUNCHING", "CONTINUE")], "ours", ["ours"]),
    ],
)
def test_only_the_coordinators_launch_hook_continuing_is_warned_about(hooks, configured, warned):
    described = [
        {"LifecycleHookName": name, "LifecycleTransition": f"autoscaling:EC2_INSTANCE_{transition}",
         **({"DefaultResult": default} if default else {})}
        for name, transition, default in hooks
    ]  # fmt: skip
    settings = load_settings({**SETTINGS_ENV, "launch_hook_name": configured})
    obs = Observation({"etcd": Group("etcd", 0, ())}, {}, now=0.0)
    report = build(settings, obs, None, {}, hooks={"etcd": described})
    assert [w.split(" has ")[0] for w in report.warnings] == [f"group etcd: launch hook {n}" for n in warned]
