"""Simulated instances running the start protocol of ``infra/aws/bootstrap/etcd-bootstrap.sh`` on an ``EtcdModel``.

The simulated-time counterpart of ``infra.local.fleet.Fleet``: one periodic timer on the emulator's clock
reads moto's backends directly (no API calls, so no call log, throttling or faults): the group's instances
and lifecycle states (and its warm pool's), each instance's EC2 state and its tag ``etcd-cluster-state``,
and the SRV record as DNS answers it (``LocalAWS.records``). Per instance, on every boot, it runs the script:

1. data-dir rule (the fixed protocol): ``member/wal`` present and the tag ``etcd-cluster-state`` present →
   restart without discovery; ``member/wal`` present and the tag absent → the membership was revoked (the
   coordinator deletes the admission tags of a member it sent back to the warm pool): steps 2-5, the data
   dir cleared once step 2 says InService (Warmed:* keeps it); ``member/`` without WAL → a failed first
   start: clear it and do the first start; empty → first start;
2. wait until ``autoscaling/target-lifecycle-state`` is InService — IMDS reports the *target*, so Pending,
   Pending:Wait and Pending:Proceed read InService too; Warmed:*/Terminat*/Detach* → not joining, exit;
3. wait for the tag ``etcd-cluster-state`` (new | existing);
4. wait until the SRV record lists its peer host on the peer port;
5. start etcd with ``--discovery-srv`` on the model (targets and resolver read at that moment).
With ``tls=True`` (the script's ``ETCD_TLS=1``): the record is ``_etcd-server-ssl._tcp``, URLs are ``https``, and
between steps 3 and 4 the instance reads its member certificate from the secret its tag ``etcd-member-cert``
names (moto's Secrets Manager backend); until that secret holds a certificate for this instance whose SANs
name the discovery domain and its peer host, the script fails and is run again (systemd), as it would on EC2.

Waits poll every ``poll_interval`` seconds, doubled per poll up to ``poll_max`` (the script's backoff).
etcd that exits non-zero (or is killed by ``crash``) is restarted by systemd (``Restart=on-failure``) after
``restart_delay`` and the script runs again; exit status 0 (removed from the cluster) is not restarted. The
process is killed (SIGKILL) when its instance reaches Terminating:Proceed/Terminated, leaves the group (and
its warm pool), or EC2 terminates it; Standby keeps it running. An instance of the group or its warm pool
that EC2 stops (``Warmed:Stopped``) has its etcd killed and keeps its data dir (EBS, ``Process.data``);
phase ``stopped``. When EC2 runs it again (it leaves the pool: Pending/Pending:Wait/InService) it boots:
the script runs again from the top, whatever it did before (``not-joining``, ``broken``, ...).
A warm-pool instance reads ``Warmed:*`` and runs no etcd.

Example:
    >>> fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain).start()
    >>> stack.scale(3); aws.clock.advance(60)
    >>> sorted(fleet.client_endpoints())
    ['http://10.0.0.4:2379', ...]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from infra.local.aws import LocalAWS
from infra.local.bootstrap import (
    EC2_GONE,
    EC2_OFF,
    NOT_JOINING,
    STOPPED_STATES,
    TAG_CLUSTER_STATE,
    TAG_MEMBER_CERT,
    TARGET_IN_SERVICE,
)
from infra.local.etcd_model import Discovery, EtcdModel

_LIVE = {"pending", "running", "stopping", "stopped", "shutting-down"}

Phase = Literal[
    "waiting-in-service",
    "waiting-tag",
    "waiting-srv",
    "running",
    "restart-wait",
    "not-joining",
    "broken",
    "stopped",
    "killed",
]


@dataclass
class SimInstance:
    """One instance's script: where it is, what it decided (``log``)."""

    instance_id: str
    ip: str
    dns: str
    phase: Phase = "waiting-in-service"
    next_check: float = 0.0
    delay: float = 1.0
    cluster_state: str = ""
    starts: int = 0
    boots: int = 0
    revoked: bool = False  # a WAL but no admission tag: clear the data dir once the target is InService
    restart_delay: float | None = None  # this instance's next restart only (``crash(..., restart_delay=)``)
    log: list[tuple[float, str]] = field(default_factory=list)


class SimFleet:
    """See the module docstring. ``peer_host``: ``"dns"`` advertises ``http://<private dns>:2380`` (default),
    ``"ip"`` advertises ``http://<private ip>:2380``; ``never_start``: instances whose etcd never starts."""

    def __init__(
        self,
        aws: LocalAWS,
        model: EtcdModel,
        group: str,
        *,
        zone_id: str,
        domain: str,
        srv_name: str | None = None,
        token: str | None = None,
        peer_host: Literal["dns", "ip"] = "dns",
        never_start: Iterable[str] = (),
        restart_delay: float = 5.0,
        poll: float = 0.5,
        poll_interval: float = 1.0,
        poll_max: float = 2.0,
        peer_port: int = 2380,
        client_port: int = 2379,
        tls: bool = False,
    ) -> None:
        self.aws = aws
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.model = model
        self.clock: Any = aws.clock
        self.group = group
        self.zone_id = zone_id
        self.domain = domain.rstrip(".")
        service = ("_etcd-server-ssl" if tls else "_etcd-server") + (f"-{srv_name}" if srv_name else "")
        self.srv_fqdn = f"{service}._tcp.{self.domain}.".lower()
        self.token = token or f"etcd-{self.domain}"
        self.peer_host = peer_host
        self.never_start = set(never_start)
        self.restart_delay = restart_delay
        self.poll = poll
        self.poll_interval = poll_interval
        self.poll_max = poll_max
        self.peer_port = peer_port
        self.client_port = client_port
        self.instances: dict[str, SimInstance] = {}
        self._ec2_objects: dict[str, Any] = {}  # instance id -> moto's instance (no scan of every reservation)
        self._running = False

    # -- control -------------------------------------------------------------------------------------
    def start(self) -> SimFleet:
        self._running = True
        self.tick()
        return self

    def stop(self) -> None:
        """Stop watching and kill every etcd."""
        self._running = False
        for inst in self.instances.values():
            self.model.kill(inst.instance_id)

    def crash(self, instance_id: str, restart_delay: float | None = None) -> None:
        """etcd dies (SIGKILL); the instance keeps running and systemd restarts etcd after ``restart_delay``
        (this crash's own delay when given, e.g. a member that stays down for a while; else the fleet's)."""
        inst = self.instances[instance_id]
        inst.restart_delay = restart_delay
        self.model.kill(instance_id)
        self._note(inst, "etcd crashed" + (f" (restart in {restart_delay:.0f}s)" if restart_delay is not None else ""))

    def client_endpoints(self) -> list[str]:
        """Client URLs of running etcd processes, in instance-id order."""
        return [p.client_url for iid, p in sorted(self.model.processes.items()) if p.running and iid in self.instances]

    def peer_url(self, inst: SimInstance) -> str:
        host = inst.dns if self.peer_host == "dns" else inst.ip
        return f"{self.scheme}://{host}:{self.peer_port}"

    # -- one look ------------------------------------------------------------------------------------
    def tick(self) -> None:
        if not self._running:
            return
        try:
            self._sync()
        finally:
            self.clock.call_later(self.poll, self.tick)

    def _backends(self) -> tuple[Any, Any]:
        from moto.autoscaling.models import autoscaling_backends
        from moto.ec2.models import ec2_backends

        return (
            autoscaling_backends[self.aws.account][self.aws.region],
            ec2_backends[self.aws.account][self.aws.region],
        )

    def _warm_pool(self) -> list[Any]:
        """The group's warm-pool instance states (the emulator keeps them apart from the group's)."""
        engine = getattr(self.aws, "_lifecycle", None)
        return list(engine.states.warm.get(self.group, [])) if engine is not None else []

    def _sync(self) -> None:
        asg, ec2 = self._backends()
        group = asg.autoscaling_groups.get(self.group)
        states = {s.instance.id: s for s in group.instance_states} if group is not None else {}
        if group is not None:
            states.update({s.instance.id: s for s in self._warm_pool() if s.instance.id not in states})
        now = self.clock.now()
        for iid, state in states.items():
            if iid not in self.instances and state.lifecycle_state not in STOPPED_STATES:
                inst = state.instance
                if inst.state in EC2_OFF | EC2_GONE:
                    continue  # not running: it boots when EC2 starts it
                self._ec2_objects[iid] = inst  # moto's instance object: its state changes in place
                self.instances[iid] = SimInstance(iid, inst.private_ip or "", (inst.private_dns_name or "").lower())
                self._boot(self.instances[iid], state.lifecycle_state, now)
        for iid, inst in self.instances.items():
            if inst.phase == "killed":
                continue
            lifecycle = states[iid].lifecycle_state if iid in states else None
            ec2_state = getattr(self._ec2_objects.get(iid), "state", None)
            if lifecycle is None or lifecycle in STOPPED_STATES or ec2_state in EC2_GONE:
                self.model.kill(iid)
                inst.phase = "killed"
                self._note(inst, f"instance stops ({lifecycle or 'gone from the group'}, EC2 {ec2_state}): etcd killed")
                continue
            if ec2_state in EC2_OFF:
                if inst.phase != "stopped":
                    self.model.kill(iid)  # the VM is off; its EBS data dir stays
                    inst.phase = "stopped"
                    self._note(inst, f"instance stopped ({lifecycle}, EC2 {ec2_state}): etcd killed, data dir kept")
                continue
            if inst.phase == "stopped":
                self._boot(inst, lifecycle, now)  # EC2 started it again (it left the warm pool)
                continue
            if now >= inst.next_check:
                self._step(inst, lifecycle, ec2, now)

    # -- the script ---------------------------------------------------------------------------------
    def _boot(self, inst: SimInstance, lifecycle: str | None, now: float) -> None:
        """The VM boots (first launch, or started again out of the warm pool): the unit runs the script."""
        inst.boots += 1
        inst.restart_delay = None
        self._note(inst, f"booted ({lifecycle})" if inst.boots == 1 else f"booted again ({lifecycle})")
        self._begin(inst, now)

    def _begin(self, inst: SimInstance, now: float) -> None:
        """The script starts (boot, or systemd's restart): the data-dir rule first."""
        proc = self.model.processes.get(inst.instance_id)
        state = proc.data.state if proc is not None else "empty"
        inst.revoked = False
        if state == "wal":
            _, ec2 = self._backends()
            if ec2.tags.get(inst.instance_id, {}).get(TAG_CLUSTER_STATE):
                self._note(inst, "member/wal present: restart without discovery")
                self._exec(inst, None)
                return
            # No admission tag: the coordinator revoked this membership (the instance went back to the warm pool).
            inst.revoked = True
            self._note(inst, f"member/wal present but no tag {TAG_CLUSTER_STATE}: membership revoked, data kept")
        elif state == "partial" and proc is not None:
            self._note(inst, "member/ without WAL: a failed first start, data dir cleared")
            self.model.clear_data(inst.instance_id)
        inst.phase, inst.delay, inst.next_check = "waiting-in-service", self.poll_interval, now

    def _wait(self, inst: SimInstance, now: float) -> None:
        inst.next_check = now + inst.delay
        inst.delay = min(inst.delay * 2, self.poll_max)

    def _advance(self, inst: SimInstance, phase: Phase, now: float) -> None:
        inst.phase, inst.delay, inst.next_check = phase, self.poll_interval, now

    def _step(self, inst: SimInstance, lifecycle: str | None, ec2: Any, now: float) -> None:
        if inst.phase == "waiting-in-service":
            if lifecycle in TARGET_IN_SERVICE:
                self._note(inst, "target lifecycle state: InService")
                if inst.revoked:
                    inst.revoked = False
                    self.model.clear_data(inst.instance_id)
                    self._note(inst, "membership revoked: the WAL is of a removed member; data dir cleared")
                self._advance(inst, "waiting-tag", now)
            elif lifecycle is not None and lifecycle.startswith(NOT_JOINING):
                inst.phase = "not-joining"
                self._note(inst, f"target lifecycle state is {lifecycle}: not joining")
                return
            else:
                self._wait(inst, now)
                return
        if inst.phase == "waiting-tag":
            value = ec2.tags.get(inst.instance_id, {}).get(TAG_CLUSTER_STATE)
            if value in ("new", "existing"):
                if self.tls:
                    problem = self._certificate_problem(inst, ec2.tags.get(inst.instance_id, {}).get(TAG_MEMBER_CERT))
                    if problem:
                        self._note(inst, f"no usable member certificate: {problem}")
                        self._wait(inst, now)
                        return
                inst.cluster_state = value
                self._note(inst, f"{TAG_CLUSTER_STATE}: {value}")
                self._advance(inst, "waiting-srv", now)
            elif value:
                inst.phase = "broken"
                self._note(inst, f"tag {TAG_CLUSTER_STATE}={value!r} is neither 'new' nor 'existing'")
                return
            else:
                self._wait(inst, now)
                return
        if inst.phase == "waiting-srv":
            host = (inst.dns if self.peer_host == "dns" else inst.ip).rstrip(".").lower()
            targets = self.srv_targets()
            # With IP peer URLs the record still names hosts (RFC 2782): the check, like etcd, resolves them.
            listed = (host, self.peer_port) in targets or any(
                port == self.peer_port and self.resolve(t) == inst.ip for t, port in targets
            )
            if listed:
                self._note(inst, f"SRV lists {host}:{self.peer_port}")
                self._exec(inst, self.discovery())
            else:
                self._wait(inst, now)
            return
        if inst.phase == "running":
            proc = self.model.processes.get(inst.instance_id)
            if proc is not None and proc.status == "exited":
                self._note(inst, f"etcd exited {proc.exit_code}: {proc.exit_reason}")
                if proc.exit_code == 0:
                    inst.phase = "broken"  # Restart=on-failure: a clean exit stays down
                    return
                delay = self.restart_delay if inst.restart_delay is None else inst.restart_delay
                inst.phase, inst.next_check, inst.restart_delay = "restart-wait", now + delay, None
            return
        if inst.phase == "restart-wait":
            self._begin(inst, now)

    def _exec(self, inst: SimInstance, discovery: Discovery | None) -> None:
        if inst.instance_id in self.never_start:
            inst.phase = "broken"
            self._note(inst, "etcd does not start (broken image)")
            return
        inst.starts += 1
        self.model.start(
            inst.instance_id,
            name=inst.instance_id,
            ip=inst.ip,
            peer_url=self.peer_url(inst),
            client_url=f"{self.scheme}://{inst.ip}:{self.client_port}",
            discovery=discovery,
            cluster_state="existing" if inst.cluster_state == "existing" else "new",
            token=self.token,
        )
        inst.phase = "running"
        inst.next_check = self.clock.now()
        self._note(inst, f"etcd started ({'discovery ' + inst.cluster_state if discovery else 'restart'})")

    def _certificate_problem(self, inst: SimInstance, secret_id: str | None) -> str:
        """What is wrong with the member certificate the instance would fetch ('' when it will do)."""
        if not secret_id:
            return f"no tag {TAG_MEMBER_CERT}"
        from moto.secretsmanager.models import secretsmanager_backends

        backend = secretsmanager_backends[self.aws.account][self.aws.region]
        try:
            value = backend.get_secret_value(secret_id, None, None)
        except Exception as exc:  # noqa: BLE001 -- moto's not-found and no-value errors: the script retries
            return f"secret {secret_id}: {type(exc).__name__}"
        import json

        from cryptography import x509

        try:
            cert = x509.load_pem_x509_certificate(json.loads(value["SecretString"])["cert"].encode())
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (KeyError, ValueError, TypeError, x509.ExtensionNotFound) as exc:
            return f"secret {secret_id} holds no member certificate ({exc})"
        dns = {d.lower() for d in names.get_values_for_type(x509.DNSName)}
        host = (inst.dns if self.peer_host == "dns" else inst.ip).rstrip(".").lower()
        ips = {str(i) for i in names.get_values_for_type(x509.IPAddress)}
        missing = [n for n in (self.domain.lower(), host) if n not in dns and n not in ips]
        return f"certificate does not name {', '.join(missing)}" if missing else ""

    # -- DNS as the instances see it ---------------------------------------------------------------
    def srv_targets(self) -> list[tuple[str, int]]:
        """(target, port) of the SRV record as DNS answers it now."""
        record = self.aws.records(self.zone_id).get((self.srv_fqdn, "SRV"))
        out = []
        for value in record[1] if record else ():
            parts = value.split()
            if len(parts) == 4:
                out.append((parts[3].rstrip(".").lower(), int(parts[2])))
        return out

    def resolve(self, host: str) -> str | None:
        """A record of the zone, else a live instance's private DNS name (the VPC resolver)."""
        host = host.rstrip(".").lower()
        record = self.aws.records(self.zone_id).get((host + ".", "A"))
        if record and record[1]:
            return str(record[1][0])
        _, ec2 = self._backends()
        for r in ec2.reservations.values():
            for i in r.instances:
                if (i.private_dns_name or "").lower() == host and i.state in _LIVE:
                    return str(i.private_ip)
        return None

    def discovery(self) -> Discovery:
        return Discovery(targets=self.srv_targets(), resolver=self.resolve, scheme=self.scheme)

    def _note(self, inst: SimInstance, message: str) -> None:
        inst.log.append((self.clock.now(), message))


__all__ = ["SimFleet", "SimInstance"]
