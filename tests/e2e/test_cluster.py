"""A real etcd cluster grows, shrinks and heals from what the coordinator writes: the scenario of ``make demo``
(``infra.local.demo``), run inside a sandbox, checked after every step: member list = SRV targets = the group's
in-service instances, every member healthy, every key written before still readable. Over mutual TLS (the demo's
default, issue 12): ``_etcd-server-ssl._tcp``, https peer URLs, each member's certificate issued by the
coordinator; and a client without a certificate (or with one from another CA) is refused by the cluster."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from infra.local.sandbox import available, call_inside

ok, reason = available()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ok, reason=f"sandbox unavailable: {reason}"),
    pytest.mark.timeout(360),
]


# -- inside the sandbox ---------------------------------------------------------------------------
def scenario_inside(workdir: str) -> dict[str, Any]:
    """Inside: the demo's scenario with the demo's checks, logs to files, the result as JSON."""
    from infra.local.demo import quiet_logs, run_scenario
    from tests.e2e.e2e_helpers import reuse_stack_clients

    quiet_logs(Path(workdir))
    reuse_stack_clients()
    return run_scenario(workdir)


def _etcd_processes_of(workdir: Path) -> list[int]:
    """Live processes whose command line names ``workdir`` (every etcd of the run has its data dir there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(workdir).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# -- the test (outside) -----------------------------------------------------------------------------
def test_cluster_bootstraps_joins_shrinks_and_heals_with_members_record_and_group_in_step(tmp_path: Path) -> None:
    started = time.monotonic()
    result = call_inside(scenario_inside, {"workdir": str(tmp_path)}, timeout=330)  # a hang guard (see below)
    elapsed = time.monotonic() - started
    steps = {s["name"]: s for s in result["steps"]}
    log = "\n".join(result["lines"])

    assert [s["name"] for s in result["steps"]] == [
        "0 → 3 bootstrap",
        "3 → 5 join",
        "5 → 3 remove",
        "kill + reconcile",
        "rolling replace",
    ]
    for n, step in enumerate(result["steps"], 1):
        assert step["ok"], f"{step['name']}: {step['problems']}\n{log}"
        # member list (peer URLs) = SRV record (Route 53) = SRV answer (our DNS) = the group's in-service instances
        assert step["members"] == step["record"] == step["dns"] == step["in_service"]
        assert step["healthy"] == len(step["in_service"])
        # every key written before this step and the ones before it, read through every member
        assert step["keys_read"] == (n - 1) * len(step["in_service"])

    # TLS: every member advertises an https peer URL (the step's checks also refuse any other scheme)
    assert all(u.startswith("https://") for s in result["steps"] for u in s["peer_urls"])
    assert all(len(s["peer_urls"]) == len(s["members"]) for s in result["steps"])

    # Issue 13: a continuous client wrote and read through the client SRV record from step 2 on; every write
    # etcd acknowledged is readable through every member at the end (the check fails the last step otherwise).
    assert result["steps"][0]["writes_acked"] is None
    assert all(s["writes_acked"] > 0 and s["longest_outage"] is not None for s in result["steps"][1:])
    verdict = "acknowledged writes, each read back through all 3 members: none lost"
    assert any(verdict in line for line in result["lines"]), log

    bootstrap, join, remove, heal, rolled = (steps[name] for name in steps)
    assert len(bootstrap["members"]) == 3 and set(bootstrap["cluster_states"].values()) == {"new"}
    assert len(join["members"]) == 5
    joined = set(join["members"]) - set(bootstrap["members"])
    assert {join["cluster_states"][t.split(".")[0][3:].replace("-", ".")] for t in joined} == {"existing"}
    assert len(remove["members"]) == 3 and set(remove["members"]) < set(join["members"])
    assert sorted(e.split()[0] for e in remove["events"]) == ["terminate", "terminate"]
    # the killed member is gone from record and membership; the group's replacement joined as 'existing'
    assert len(set(remove["members"]) - set(heal["members"])) == 1
    replacement = (set(heal["members"]) - set(remove["members"])).pop()
    assert heal["cluster_states"][replacement.split(".")[0][3:].replace("-", ".")] == "existing"
    assert "reconcile" in heal["events"]

    # No step waited out a lifecycle hook's timeout (300 s); the time itself is the benchmarks' to measure (a
    # bound near the usual 60-90 s failed under load in CI).
    # Issue 13: an instance refresh replaced every member, one at a time, under the continuous client: three new
    # members (all joined as 'existing'), every acknowledged write kept (above), the longest outage reported.
    assert not set(rolled["members"]) & set(heal["members"]) and len(rolled["members"]) == 3
    assert set(rolled["cluster_states"].values()) == {"existing"}
    assert sorted(e.split()[0] for e in rolled["events"]).count("terminate") == 3
    assert rolled["writes_acked"] > 0 and rolled["longest_outage"] < 10.0, rolled
    assert elapsed < 330, f"took {elapsed:.1f} s"
    assert _etcd_processes_of(tmp_path) == []  # nothing outlives the sandbox


def refusals_inside(workdir: str) -> dict[str, Any]:
    """Inside: a one-member TLS cluster; who may talk to it."""
    from etcd3gw.exceptions import Etcd3Exception

    from infra.local.demo import Cluster, Reporter, quiet_logs
    from infra.local.etcd_client import ClientCertificate, gateway, member_list
    from infra.local.pki import CertificateAuthority
    from tests.e2e.e2e_helpers import reuse_stack_clients

    quiet_logs(Path(workdir))
    reuse_stack_clients()
    out: dict[str, Any] = {}
    with Cluster(Path(workdir), Reporter()) as cluster:
        cluster.scale(1)
        result = cluster.settle("0 → 1", 1)
        out["settled"] = result.ok, result.problems
        (endpoint,) = cluster.fleet.client_endpoints()
        out["endpoint"] = endpoint
        other = CertificateAuthority.create("someone-else")
        cert, key = other.issue("intruder", server=False)
        pki = Path(workdir) / "intruder"
        pki.mkdir()
        (pki / "c.crt").write_text(cert)
        (pki / "c.key").write_text(key)
        own_ca = cluster.client_tls.ca
        clients = {
            "with the cluster's client certificate": cluster.client_tls,
            "without a certificate": ClientCertificate(own_ca, "", ""),
            "with another CA's certificate": ClientCertificate(own_ca, str(pki / "c.crt"), str(pki / "c.key")),
        }
        for name, tls in clients.items():
            try:
                client = gateway(endpoint, tls=tls, timeout=3.0)
                if not tls.cert:
                    client.session.cert = None  # the server is verified; the client presents nothing
                client.put("/tls/probe", name)
                out[name] = "accepted"
            except (Etcd3Exception, OSError) as exc:
                out[name] = f"refused: {type(exc).__name__}"

        # The coordinator given the wrong CA (its client certificate is right; the CA it verifies members with is
        # another one): the pass stops before it changes anything in etcd, Route 53 or Auto Scaling.
        from hook_handler.etcd import EtcdTlsError, HttpTransport

        (pki / "wrong-ca.crt").write_text(other.pem)
        membership = cluster.stack.runtime.coordinator.membership
        right = membership.transport
        wrong = HttpTransport(verify=str(pki / "wrong-ca.crt"), cert=right.cert)
        try:
            wrong.post(endpoint, "/v3/cluster/member/list", {}, 3.0)
            out["wrong ca"] = "answered"
        except EtcdTlsError as exc:
            out["wrong ca"] = f"EtcdTlsError: {exc}"
        membership.transport = wrong
        members_before = sorted(m["id"] for m in member_list(endpoint))
        record_before = sorted(cluster.stack.targets())
        changes, invocations = len(cluster.aws.route53_changes), len(cluster.aws.invocations)
        t0 = cluster.aws.clock.now()
        cluster.scale(2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            i.outcome == "error" for i in cluster.aws.invocations[invocations:]
        ):
            time.sleep(0.2)
        time.sleep(1.0)
        out["after wrong ca"] = {
            "errors": [i.error for i in cluster.aws.invocations[invocations:] if i.outcome == "error"],
            "route53 changes": len(cluster.aws.route53_changes) - changes,
            "members same": sorted(m["id"] for m in member_list(endpoint)) == members_before,
            "record same": sorted(cluster.stack.targets()) == record_before,
            "launches completed": [
                a.instance_id
                for a in cluster.aws.lifecycle_actions
                if a.transition.endswith("LAUNCHING") and a.ended_by == "complete" and a.started_at >= t0
            ],
        }
        membership.transport = right
    return out


def test_a_tls_cluster_refuses_a_client_without_a_certificate_from_its_ca(tmp_path: Path) -> None:
    r = call_inside(refusals_inside, {"workdir": str(tmp_path)}, timeout=90)
    assert r["settled"][0], r
    assert r["endpoint"].startswith("https://")
    assert r["with the cluster's client certificate"] == "accepted", r
    assert r["without a certificate"].startswith("refused"), r
    assert r["with another CA's certificate"].startswith("refused"), r
    # a coordinator given the wrong CA: a TLS error naming the setting, and nothing changed anywhere
    assert r["wrong ca"].startswith("EtcdTlsError") and "etcd_tls_secret" in r["wrong ca"], r
    after = r["after wrong ca"]
    assert after["errors"] and all("etcd_tls_secret" in (e or "") for e in after["errors"]), after
    assert after["route53 changes"] == 0 and after["members same"] and after["record same"], after
    assert after["launches completed"] == [], after
