"""The etcd model answers as real etcd 3.5.1 does: one scripted scenario, run step by step against real etcd
(inside a sandbox, SRV discovery from a dnslib server answering from a dict on 127.0.0.53:53) and against
``infra.local.etcd_model`` on simulated time, with the same answer required at every step: same success or
error class, same etcd message and gRPC code, same member-list shape (names, peer and client URLs, learner
flags, the fields present) with IDs left out, same process exits and data-dir states."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.sandbox import available, call_inside

ok, reason = available()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ok, reason=f"sandbox unavailable: {reason}"),
    pytest.mark.timeout(90),
]

DOMAIN = "example.com"
TOKEN = "model-vs-real"
HOSTS = {f"n{i}.{DOMAIN}": f"127.0.1.{i}" for i in range(1, 8)}
EXIT_MARKERS = ("member count is unequal", "cannot find local etcd member", "permanently removed")

# The scenario: (operation, *arguments). Members are n1..n6 on 127.0.1.x, peer URL http://nN.example.com:2380.
STEPS: list[tuple[Any, ...]] = [
    ("record", [1, 2, 3]),
    ("start", 1, "new"),
    ("start", 2, "new"),
    ("start", 3, "new"),
    ("healthy", [1, 2, 3]),
    ("list", 1),
    ("add", 1, 4, False),  # at once after the bootstrap: unhealthy cluster
    ("add", 1, 4, True),  # learners too
    ("sleep", 6.0),
    ("add", 1, 4, True),
    ("add", 1, 5, True),  # too many learners
    ("promote", 2, 4),  # not started: not in sync
    ("promote", 1, 1),  # a voter: can only promote a learner
    ("remove_id", 1, "12345"),  # member not found
    ("record", [1, 2, 3, 4]),
    ("start", 4, "existing"),
    ("healthy", [4]),
    ("list", 2),
    ("sleep", 2.0),
    ("promote", 2, 4),
    ("list", 3),
    ("record", [1, 2, 3, 4, 5]),
    ("start", 5, "existing"),  # never added: member count is unequal
    ("wait_exit", 5),
    ("datadir", 5),
    ("lead_to", 1),
    ("move", 2, 3),  # not leader
    ("move_id", 1, "12345"),  # bad leader transferee
    ("move", 1, 2),
    ("move", 2, 1),
    ("sleep", 5.0),  # n4 connected for 5 s
    ("kill", 3),
    ("sleep", 0.5),
    ("add", 1, 6, True),  # one voter down: unhealthy
    ("add", 1, 6, False),
    ("remove", 1, 3),  # the dead one: allowed
    ("list", 1),
    ("kill", 4),
    ("sleep", 0.5),
    ("remove", 1, 2),  # n4 down: the active quorum would break
    ("remove", 1, 4),
    ("put", 1, "k1", "v1"),
    ("remove", 2, 1),  # remove the leader (through the other member)
    ("wait_exit", 1),
    ("sleep", 3.0),
    ("status", 2),
    ("put", 2, "k2", "v2"),
    ("range", 2, "k1"),
    ("range", 2, "nothing"),
    ("list", 2),
]


# -- normalizing answers ----------------------------------------------------------------------------------
def _shape_member(raw: dict[str, Any]) -> dict[str, Any]:
    assert str(raw["ID"]).isdigit()
    return {k: v for k, v in raw.items() if k != "ID"}


def normalize(path: str, out: dict[str, Any]) -> dict[str, Any]:
    """What must agree in a successful answer: the fields present, with IDs, indexes and terms left out."""
    shaped: dict[str, Any] = {"keys": sorted(out)}
    if "header" in out:
        shaped["header"] = sorted(out["header"])
    if "members" in out:
        shaped["members"] = sorted((_shape_member(m) for m in out["members"]), key=json.dumps)
    if "member" in out:
        shaped["member"] = _shape_member(out["member"])
    if path == "/v3/maintenance/status":
        shaped["leader"] = "leader" in out
        shaped["errors"] = out.get("errors", [])
        shaped["isLearner"] = out.get("isLearner", False)
    if "kvs" in out:
        shaped["kvs"] = [
            {k: v for k, v in kv.items() if k not in ("create_revision", "mod_revision")} for kv in out["kvs"]
        ]
        shaped["count"] = out["count"]
    return shaped


class Driver:
    """The operations a step needs; ``post`` returns ``("ok", answer)``, ``("refused", message, code)`` or
    ``("unavailable",)``."""

    def post(self, i: int, path: str, body: dict[str, Any], timeout: float = 5.0) -> tuple[Any, ...]:
        raise NotImplementedError

    def start(self, i: int, state: str) -> None: ...
    def kill(self, i: int) -> None: ...
    def sleep(self, seconds: float) -> None: ...
    def set_record(self, members: list[int]) -> None: ...
    def exit_of(self, i: int, timeout: float) -> tuple[Any, ...]: ...
    def datadir(self, i: int) -> str: ...
    def healthy(self, i: int) -> bool: ...


def run_steps(driver: Driver) -> list[Any]:
    ids: dict[int, str] = {}

    def learn(out: tuple[Any, ...]) -> None:
        if out[0] == "ok":
            for m in out[1].get("members", []):
                host = m["peerURLs"][0].split("//")[1].split(".")[0]
                ids[int(host[1:])] = str(m["ID"])

    def post(i: int, path: str, body: dict[str, Any]) -> Any:
        out = driver.post(i, path, body)
        learn(out)
        return [out[0], normalize(path, out[1])] if out[0] == "ok" else list(out)

    results: list[Any] = []
    for step in STEPS:
        op, *args = step
        if op == "record":
            driver.set_record(args[0])
            result: Any = None
        elif op == "start":
            driver.start(args[0], args[1])
            result = None
        elif op == "healthy":
            deadline = 15.0
            waited = 0.0
            while not all(driver.healthy(i) for i in args[0]) and waited < deadline:
                driver.sleep(0.1)
                waited += 0.1
            result = all(driver.healthy(i) for i in args[0])
        elif op == "sleep":
            driver.sleep(args[0])
            result = None
        elif op == "list":
            result = post(args[0], "/v3/cluster/member/list", {})
        elif op == "status":
            result = post(args[0], "/v3/maintenance/status", {})
        elif op == "add":
            body: dict[str, Any] = {"peerURLs": [f"http://n{args[1]}.{DOMAIN}:2380"]}
            if args[2]:
                body["isLearner"] = True
            result = post(args[0], "/v3/cluster/member/add", body)
        elif op in ("promote", "remove"):
            learn(driver.post(args[0], "/v3/cluster/member/list", {}))
            result = post(args[0], f"/v3/cluster/member/{op}", {"ID": ids[args[1]]})
        elif op == "remove_id":
            result = post(args[0], "/v3/cluster/member/remove", {"ID": args[1]})
        elif op == "move":
            learn(driver.post(args[0], "/v3/cluster/member/list", {}))
            result = post(args[0], "/v3/maintenance/transfer-leadership", {"targetID": ids[args[1]]})
        elif op == "move_id":
            result = post(args[0], "/v3/maintenance/transfer-leadership", {"targetID": args[1]})
        elif op == "lead_to":
            # Make n<args[0]> the leader in both worlds (who won the first election is chance).
            learn(driver.post(1, "/v3/cluster/member/list", {}))
            status = driver.post(args[0], "/v3/maintenance/status", {})[1]
            leader = next(i for i, mid in ids.items() if mid == status.get("leader"))
            if leader != args[0]:
                driver.post(leader, "/v3/maintenance/transfer-leadership", {"targetID": ids[args[0]]})
            result = driver.post(args[0], "/v3/maintenance/status", {})[1].get("leader") == ids[args[0]]
        elif op == "kill":
            driver.kill(args[0])
            result = None
        elif op == "wait_exit":
            result = list(driver.exit_of(args[0], 10.0))
        elif op == "datadir":
            result = driver.datadir(args[0])
        elif op == "put":
            key, value = (base64.b64encode(s.encode()).decode() for s in args[1:])
            result = post(args[0], "/v3/kv/put", {"key": key, "value": value})
        elif op == "range":
            result = post(args[0], "/v3/kv/range", {"key": base64.b64encode(args[1].encode()).decode()})
        else:
            raise ValueError(op)
        results.append([list(step), result])
    return results


def _exit_reason(text: str) -> str:
    return next((marker for marker in EXIT_MARKERS if marker in text), text[:120])


# -- real etcd (inside the sandbox) ------------------------------------------------------------------------
class RealDriver(Driver):
    def __init__(self, workdir: Path) -> None:
        from infra.local.launcher import default_etcd_binary

        self.workdir = workdir
        self.binary = default_etcd_binary()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.record: list[int] = []

    def post(self, i: int, path: str, body: dict[str, Any], timeout: float = 5.0) -> tuple[Any, ...]:
        from hook_handler.etcd import EtcdRefused, EtcdUnavailable, HttpTransport

        try:
            return ("ok", HttpTransport().post(f"http://127.0.1.{i}:2379", path, body, timeout))
        except EtcdRefused as exc:
            return ("refused", exc.message, exc.code)
        except EtcdUnavailable:
            return ("unavailable",)

    def healthy(self, i: int) -> bool:
        import requests

        with contextlib.suppress(requests.RequestException, ValueError):
            return requests.get(f"http://127.0.1.{i}:2379/health", timeout=1).json().get("health") == "true"
        return False

    def start(self, i: int, state: str) -> None:
        argv = [
            self.binary,
            "--name",
            f"n{i}",
            "--discovery-srv",
            DOMAIN,
            "--initial-cluster-token",
            TOKEN,
            "--initial-cluster-state",
            state,
            "--initial-advertise-peer-urls",
            f"http://n{i}.{DOMAIN}:2380",
            "--listen-peer-urls",
            f"http://127.0.1.{i}:2380",
            "--listen-client-urls",
            f"http://127.0.1.{i}:2379",
            "--advertise-client-urls",
            f"http://127.0.1.{i}:2379",
            "--data-dir",
            str(self.workdir / f"n{i}"),
        ]
        with (self.workdir / f"n{i}.log").open("ab") as log:
            self.procs[i] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, i: int) -> None:
        self.procs[i].kill()
        self.procs[i].wait()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def set_record(self, members: list[int]) -> None:
        self.record[:] = members

    def exit_of(self, i: int, timeout: float) -> tuple[Any, ...]:
        try:
            code = self.procs[i].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return ("running",)
        return ("exit", code, _exit_reason((self.workdir / f"n{i}.log").read_text(errors="replace")))

    def datadir(self, i: int) -> str:
        d = self.workdir / f"n{i}" / "member"
        return (
            "wal" if (d / "wal").is_dir() and any((d / "wal").glob("*.wal")) else "partial" if d.is_dir() else "empty"
        )

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def dns_server(record: list[int]) -> Iterator[None]:
    """SRV and A answers from ``record`` (live list) and ``HOSTS``, on 127.0.0.53:53."""
    from dnslib import QTYPE, RR, SRV, A
    from dnslib.server import BaseResolver, DNSLogger, DNSServer

    srv_name = f"_etcd-server._tcp.{DOMAIN}"

    class Resolver(BaseResolver):
        def resolve(self, request: Any, handler: Any) -> Any:
            reply = request.reply()
            name = str(request.q.qname).rstrip(".").lower()
            qtype = QTYPE[request.q.qtype]
            if qtype == "SRV" and name == srv_name:
                for i in record:
                    reply.add_answer(RR(request.q.qname, QTYPE.SRV, ttl=0, rdata=SRV(0, 0, 2380, f"n{i}.{DOMAIN}.")))
            elif qtype == "A" and name in HOSTS:
                reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=0, rdata=A(HOSTS[name])))
            elif name not in HOSTS and name != srv_name:
                reply.header.rcode = 3  # NXDOMAIN
            return reply

    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data")
    server = DNSServer(Resolver(), port=53, address="127.0.0.53", logger=quiet)
    server.start_thread()
    try:
        yield
    finally:
        server.stop()


def run_real(workdir: str) -> dict[str, Any]:
    """Inside the sandbox: the scenario against real etcd 3.5.1."""
    path = Path(workdir) / "real"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    driver = RealDriver(path)
    started = time.monotonic()
    with dns_server(driver.record):
        try:
            results = run_steps(driver)
        finally:
            driver.close()
    return {"results": results, "seconds": round(time.monotonic() - started, 1)}


# -- the model (outside, simulated time) -------------------------------------------------------------------
class ModelDriver(Driver):
    def __init__(self) -> None:
        from infra.local.clock import SimClock
        from infra.local.etcd_model import EtcdModel

        self.clock = SimClock()
        self.model = EtcdModel(self.clock, seed=7, start_seconds=(0.5, 1.5), catchup_seconds=1.0)
        self.transport = self.model.transport()
        self.record: list[int] = []

    def post(self, i: int, path: str, body: dict[str, Any], timeout: float = 5.0) -> tuple[Any, ...]:
        from hook_handler.etcd import EtcdRefused, EtcdUnavailable

        try:
            return ("ok", self.transport.post(f"http://127.0.1.{i}:2379", path, body, timeout))
        except EtcdRefused as exc:
            return ("refused", exc.message, exc.code)
        except EtcdUnavailable:
            return ("unavailable",)

    def healthy(self, i: int) -> bool:
        from hook_handler.etcd import MembershipError

        with contextlib.suppress(MembershipError):
            return self.transport.get(f"http://127.0.1.{i}:2379", "/health", 1)["health"] == "true"
        return False

    def start(self, i: int, state: str) -> None:
        from infra.local.etcd_model import Discovery

        discovery = Discovery([(f"n{j}.{DOMAIN}", 2380) for j in self.record], HOSTS)
        self.model.start(
            f"n{i}",
            name=f"n{i}",
            ip=f"127.0.1.{i}",
            peer_url=f"http://n{i}.{DOMAIN}:2380",
            discovery=discovery,
            cluster_state=state,  # type: ignore[arg-type]
            token=TOKEN,
        )

    def kill(self, i: int) -> None:
        self.model.kill(f"n{i}")

    def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def set_record(self, members: list[int]) -> None:
        self.record[:] = members

    def exit_of(self, i: int, timeout: float) -> tuple[Any, ...]:
        proc = self.model.process(f"n{i}")
        waited = 0.0
        while proc.status != "exited" and waited < timeout:
            self.clock.advance(0.1)
            waited += 0.1
        if proc.status != "exited":
            return ("running",)
        return ("exit", proc.exit_code, _exit_reason(proc.exit_reason))

    def datadir(self, i: int) -> str:
        return self.model.process(f"n{i}").data.state


def test_the_model_answers_every_step_as_real_etcd_does(tmp_path: Path) -> None:
    started = time.monotonic()
    real = call_inside(run_real, {"workdir": str(tmp_path)}, timeout=80)
    model = json.loads(json.dumps(run_steps(ModelDriver())))
    elapsed = time.monotonic() - started

    assert len(real["results"]) == len(model) == len(STEPS)
    for (step, want), (_, got) in zip(real["results"], model, strict=True):
        assert got == want, f"step {step}: real etcd {want!r}, model {got!r}"
    # Spot checks that the scenario exercises what it claims (the real answers, not only agreement).
    answers: dict[str, list[Any]] = {}
    for step, result in real["results"]:
        answers.setdefault(step[0], []).append(result)
    assert ["refused", "etcdserver: unhealthy cluster", 14] in answers["add"]
    assert ["refused", "etcdserver: too many learner members in cluster", 9] in answers["add"]
    assert ["exit", 1, "member count is unequal"] in answers["wait_exit"]
    assert ["exit", 0, "permanently removed"] in answers["wait_exit"]
    assert answers["datadir"] == ["partial"]
    assert elapsed < 60, f"took {elapsed:.1f} s (real etcd part {real['seconds']} s)"
