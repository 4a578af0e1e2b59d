"""A fleet of instances that behave like real ones: ``Fleet`` keeps one ``launcher.Launcher`` (a real etcd) per
instance of an Auto Scaling group and its warm pool, in step with the group.

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
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.local.bootstrap import EC2_GONE, EC2_OFF, STOPPED_STATES
from infra.local.etcd_client import endpoint_health, member_list
from infra.local.launcher import EtcdSettings, EventLog, Launcher


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
        s3: Any = None,
    ) -> None:
        self.group_name = group_name
        self.secretsmanager = secretsmanager
        self.s3 = s3  # each launcher's S3 client (a restore reads the snapshot)
        self.options = options
        self.observer = observer
        self.settings = settings
        self.autoscaling = autoscaling
        self.ec2 = ec2
        self.workdir = Path(workdir)
        self.poll = poll
        self.restart = restart
        self.log = EventLog(self.workdir / "logs" / "fleet.log", f"fleet[{group_name}]")
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
            if state not in STOPPED_STATES and not state.startswith("Detach") and ec2_state.get(iid) not in EC2_GONE
        }
        off = {iid for iid in alive if ec2_state.get(iid) in EC2_OFF}
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
                    s3=self.s3,
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
