"""Simulated instances running the start protocol of ``infra/aws/bootstrap/etcd-bootstrap.sh`` on an ``EtcdModel``.

The simulated-time counterpart of ``infra.local.fleet.Fleet``: one periodic timer on the emulator's clock
reads moto's backends directly (no API calls, so no call log, throttling or faults): the group's instances
and lifecycle states (and its warm pool's), each instance's EC2 state and its tag ``etcd-cluster-state``,
and the SRV record as DNS answers it (``LocalAWS.records``). Per instance, on every boot, it runs the script:

0. the tag ``etcd-data-lost`` on the instance → exit 1, etcd not started (phase ``data-lost``; systemd runs the
   script again after ``restart_delay``, which refuses again while the tag is there);
1. data-dir rule (the fixed protocol): ``member/wal`` present and the tag ``etcd-cluster-state`` present →
   restart without discovery; ``member/wal`` present and the tag absent → the membership was revoked (the
   coordinator deletes the admission tags of a member it sent back to the warm pool): steps 2-5, the data
   dir cleared once step 2 says InService (Warmed:* keeps it); ``member/`` without WAL → a failed first
   start: clear it and do the first start; empty → first start;
2. wait until ``autoscaling/target-lifecycle-state`` is InService — IMDS reports the *target*, so Pending,
   Pending:Wait and Pending:Proceed read InService too; Warmed:*/Terminat*/Detach* → not joining, exit;
3. wait for the tag ``etcd-cluster-state`` (new | existing | restore); a restore it cannot do (no
   ``snapshot_bucket``, the tags ``etcd-restore-snapshot``/``etcd-restore-token`` missing, a key outside
   ``snapshot_prefix``, the founding token, a data dir that is not empty) is refused: phase ``refused``, nothing
   changed, the script runs again after ``restart_delay``;
4. lost data (phase ``checking``): ask the running cluster's member list (``ModelTransport``) at the peers the SRV
   record names (client port) and the targets of ``_etcd-client[-ssl]._tcp``: this member listed as started
   (``bootstrap.member_seen``) → the tag ``etcd-data-lost`` written (moto's EC2 backend), phase ``data-lost``;
   listed unstarted or not listed → go on; no answer → ``new``/``restore`` go on, ``existing`` asks again until
   ``tag_timeout``, then ``refused``;
5. ``new``/``existing``: wait until the SRV record lists its peer host on the peer port, then start etcd with
   ``--discovery-srv`` on the model (targets and resolver read at that moment); ``restore``: the snapshot read
   from moto's S3 backend and checked as ``etcd-restore.sh`` checks it (size, the SHA-256 at its end, its
   ``sha256`` tag), ``EtcdModel.restore``, then etcd started without discovery (a restart); a failed restore
   makes nothing and is ``refused``.
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

from hook_handler.backup.config import DEFAULT_PREFIX
from hook_handler.etcd import MembershipError
from infra.local.aws import LocalAWS
from infra.local.bootstrap import (
    CLUSTER_STATES,
    EC2_GONE,
    EC2_OFF,
    NOT_JOINING,
    SEEN_ORDER,
    STOPPED_STATES,
    TAG_CLUSTER_STATE,
    TAG_DATA_LOST,
    TAG_MEMBER_CERT,
    TAG_MEMBER_ID,
    TAG_RESTORE_SNAPSHOT,
    TAG_RESTORE_TOKEN,
    TARGET_IN_SERVICE,
    data_lost_stamp,
    member_seen,
    restore_problem,
)
from infra.local.etcd_model import SHA_SIZE, Discovery, EtcdModel

_LIVE = {"pending", "running", "stopping", "stopped", "shutting-down"}

Phase = Literal[
    "waiting-in-service",
    "waiting-tag",
    "checking",
    "waiting-srv",
    "running",
    "restart-wait",
    "not-joining",
    "broken",
    "refused",
    "data-lost",
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
    check_until: float = 0.0  # a joiner asks the running cluster about its member until then (tag_timeout)
    refusals: int = 0  # times the script refused (exit 1 saying why; systemd runs it again)
    restart_delay: float | None = None  # this instance's next restart only (``crash(..., restart_delay=)``)
    log: list[tuple[float, str]] = field(default_factory=list)


class SimFleet:
    """See the module docstring. ``peer_host``: ``"dns"`` advertises ``http://<private dns>:2380`` (default),
    ``"ip"`` advertises ``http://<private ip>:2380``; ``never_start``: instances whose etcd never starts;
    ``snapshot_bucket``/``snapshot_prefix``: the script's ``SNAPSHOT_BUCKET``/``SNAPSHOT_PREFIX`` (empty bucket: a
    restore is refused); ``tag_timeout``: its ``BOOTSTRAP_TAG_TIMEOUT``."""

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
        snapshot_bucket: str = "",
        snapshot_prefix: str = DEFAULT_PREFIX,
        tag_timeout: float = 600.0,
    ) -> None:
        self.aws = aws
        self.snapshot_bucket = snapshot_bucket
        self.snapshot_prefix = snapshot_prefix
        self.tag_timeout = tag_timeout
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
        # Instances whose data dir holds files etcd did not write (an operator's): a restore refuses such a data dir;
        # etcd itself starts beside them.
        self.occupied: set[str] = set()
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
        """The script starts (boot, or systemd's restart): the tag etcd-data-lost, then the data-dir rule."""
        proc = self.model.processes.get(inst.instance_id)
        state = proc.data.state if proc is not None else "empty"
        inst.revoked = False
        _, ec2 = self._backends()
        lost = ec2.tags.get(inst.instance_id, {}).get(TAG_DATA_LOST)
        if lost:
            if inst.phase != "data-lost":
                self._note(inst, f"this member's data is lost (tag {TAG_DATA_LOST}={lost}): etcd not started")
            inst.phase, inst.next_check = "data-lost", now + self.restart_delay
            return
        if state == "wal":
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
            tags = dict(ec2.tags.get(inst.instance_id, {}))
            value = tags.get(TAG_CLUSTER_STATE)
            if value in CLUSTER_STATES:
                if value == "restore":
                    proc = self.model.processes.get(inst.instance_id)
                    problem = restore_problem(
                        tags, bucket=self.snapshot_bucket, prefix=self.snapshot_prefix, founding_token=self.token,
                        data_dir_empty=(proc is None or proc.data.state == "empty")
                        and inst.instance_id not in self.occupied,
                    )  # fmt: skip
                    if problem:
                        self._refuse(inst, now, f"{problem}; nothing was started or changed")
                        return
                if self.tls:
                    problem = self._certificate_problem(inst, tags.get(TAG_MEMBER_CERT))
                    if problem:
                        self._note(inst, f"no usable member certificate: {problem}")
                        self._wait(inst, now)
                        return
                inst.cluster_state = value
                self._note(inst, f"{TAG_CLUSTER_STATE}: {value}")
                self._advance(inst, "checking", now)
                inst.check_until = now + self.tag_timeout
            elif value:
                inst.phase = "broken"
                self._note(inst, f"tag {TAG_CLUSTER_STATE}={value!r} is not new, existing or restore")
                return
            else:
                self._wait(inst, now)
                return
        if inst.phase == "checking" and not self._check_not_lost(inst, ec2, now):
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
        if inst.phase in ("restart-wait", "refused", "data-lost"):
            self._begin(inst, now)  # systemd runs the script again (Restart=on-failure)

    def _refuse(self, inst: SimInstance, now: float, why: str) -> None:
        """The script exits 1 saying why; systemd runs it again after ``restart_delay``."""
        inst.phase, inst.next_check = "refused", now + self.restart_delay
        inst.refusals += 1
        self._note(inst, f"refused: {why}")

    def _check_not_lost(self, inst: SimInstance, ec2: Any, now: float) -> bool:
        """Step 4 (phase ``checking``); True when the first start goes on (a restore is done by then)."""
        seen = self._member_seen(inst, ec2)
        if seen == "started":
            stamp = data_lost_stamp(now)
            ec2.create_tags([inst.instance_id], {TAG_DATA_LOST: stamp})
            inst.phase, inst.next_check = "data-lost", now + self.restart_delay
            self._note(inst, f"the cluster lists this member as started but it has no WAL: {TAG_DATA_LOST}={stamp}")
            return False
        if seen == "none" and inst.cluster_state == "existing":
            if now < inst.check_until:
                self._wait(inst, now)
                return False
            self._refuse(inst, now, "no member of the running cluster answered its member list: never started blind")
            return False
        self._note(inst, f"the running cluster's member list: {seen}: a first start")
        if inst.cluster_state != "restore":
            self._advance(inst, "waiting-srv", now)
            return True
        problem = self._restore(inst, ec2)
        if problem:
            self._refuse(inst, now, f"the restore failed: {problem}; no data dir was made")
            return False
        self._exec(inst, None)
        return False

    def _member_seen(self, inst: SimInstance, ec2: Any) -> str:
        """What the running cluster says of this member (``bootstrap.SEEN_ORDER``), asked as the script asks."""
        tags = ec2.tags.get(inst.instance_id, {})
        member_id = tags.get(TAG_MEMBER_ID, "")
        member_id = member_id if member_id and all(c in "0123456789abcdefABCDEF" for c in member_id) else ""
        own = (inst.dns if self.peer_host == "dns" else inst.ip).rstrip(".").lower()
        endpoints = []
        for host, _ in self.srv_targets():
            ip = self.resolve(host) if host != own else None
            if ip is not None:
                endpoints.append(f"{self.scheme}://{ip}:{self.client_port}")
        client = ("_etcd-client-ssl" if self.tls else "_etcd-client") + f"._tcp.{self.domain}."
        for host, port in self.srv_targets(client):
            if (ip := self.resolve(host)) is not None:
                endpoints.append(f"{self.scheme}://{ip}:{port}")
        best = "none"
        transport = self.model.transport()
        for endpoint in endpoints:
            try:
                members = transport.post(endpoint, "/v3/cluster/member/list", {}, 3.0).get("members", [])
            except MembershipError:
                continue
            seen = member_seen(members, peer_url=self.peer_url(inst), member_id=member_id, name=inst.instance_id)
            best = max(best, seen, key=SEEN_ORDER.index)
        return best

    def _restore(self, inst: SimInstance, ec2: Any) -> str:
        """The snapshot the tags name, read and checked as etcd-restore.sh does, restored into the model; the
        problem ('' when restored)."""
        from moto.s3.models import s3_backends

        tags = ec2.tags.get(inst.instance_id, {})
        key, token = tags[TAG_RESTORE_SNAPSHOT], tags[TAG_RESTORE_TOKEN]
        where = f"s3://{self.snapshot_bucket}/{key}"
        backend = s3_backends[self.aws.account]["aws"]
        try:
            found = backend.get_object(self.snapshot_bucket, key)
        except Exception as exc:  # noqa: BLE001 -- moto's MissingBucket and the like: the script's get-object fails
            return f"cannot read {where} ({type(exc).__name__})"
        if found is None:
            return f"cannot read {where} (no such key)"
        data = bytes(found.value)
        size = {k.lower(): v for k, v in (found.metadata or {}).items()}.get("db-size")
        tagged = {t["Key"]: t["Value"] for t in backend.get_object_tagging(found).get("Tags", [])}.get("sha256")
        import hashlib

        if len(data) <= SHA_SIZE or (size is not None and str(len(data) - SHA_SIZE) != str(size)):
            return f"{where} is truncated or padded"
        computed = hashlib.sha256(data[:-SHA_SIZE]).hexdigest()
        if computed != data[-SHA_SIZE:].hex() or (tagged and tagged != computed):
            return f"{where}: SHA-256 mismatch"
        try:
            self.model.restore(
                inst.instance_id, data, name=inst.instance_id, ip=inst.ip, peer_url=self.peer_url(inst), token=token,
                client_url=f"{self.scheme}://{inst.ip}:{self.client_port}",
            )  # fmt: skip
        except ValueError as exc:
            return f"etcdutl snapshot restore failed: {exc}"
        self._note(inst, f"restored {where} as the one member of a new cluster (token {token})")
        return ""

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
        how = "discovery " + inst.cluster_state if discovery else "restart"
        self._note(inst, f"etcd started ({how}{', restored data' if inst.cluster_state == 'restore' else ''})")

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
    def srv_targets(self, name: str | None = None) -> list[tuple[str, int]]:
        """(target, port) of the SRV record (the peer record, or ``name``) as DNS answers it now."""
        record = self.aws.records(self.zone_id).get(((name or self.srv_fqdn).lower(), "SRV"))
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
