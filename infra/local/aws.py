"""``LocalAWS``: moto, extended with the semantics the coordinator depends on.

One object per emulated account/region. It starts moto's in-process mock, installs the
behaviour of ``infra.local.route53`` (strict changes, propagation), ``infra.local.faults``
(call log, throttling, injected faults) and ``infra.local.autoscaling`` (lifecycle hooks,
notifications), and runs everything on one clock (``SimClock`` in tests, ``WallClock`` for
the demo server).

Example:
    >>> from infra.local import LocalAWS
    >>> with LocalAWS() as aws:
    ...     zone = aws.client("route53").create_hosted_zone(Name="example.com", CallerReference="x")
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterable
from typing import Any

import boto3
from botocore.config import Config

from infra.local import autoscaling, delivery, faults, refresh, route53, s3, secrets, state, termination
from infra.local.autoscaling import describes
from infra.local.clock import SimClock, WallClock
from infra.local.faults import CallRecord, Faults
from infra.local.route53 import ChangeRecord, Route53State
from infra.local.state import current

__all__ = ["DEFAULT_ACCOUNT", "DEFAULT_REGION", "KINDER_WORLD", "LocalAWS", "current"]

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"

# The emulator before issue 11, kinder than AWS: states change at once, describes are never stale, an
# EC2-level kill skips the terminate hook, a terminated instance keeps its addresses. Only for a test
# that isolates one other behaviour and says so; every default below is AWS's.
KINDER_WORLD: dict[str, bool] = {
    "health_check_replacement": False,
    "terminated_addresses": False,
    "transitional_states": False,
    "stale_describes": False,
}


_SESSION: boto3.session.Session | None = None
_SESSION_LOCK = threading.Lock()


def _session() -> boto3.session.Session:
    """One boto3 session for every emulator of this process. moto's mock gives each start a fresh default
    session, and a fresh session parses botocore's service models (EC2's is megabytes of JSON) again for its
    first client of each service: most of what a short test cost. The clients are the same: the credentials
    and region every emulator sets, and moto's request hook, which every session carries."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        return _SESSION


def _discard_backends() -> None:
    """Drop every moto backend this run used, as moto's stop does, without building them afresh first: moto's
    reset re-initialises each backend (EC2's creates its default AMIs with their snapshots and volumes, about
    0.1 s of CPU a test) and then throws them all away. A service with clean-up of its own (S3 closes its files
    and frees its bucket names) still runs its reset. The next run builds its backends on first use either way."""
    from moto.core.base_backend import BackendDict, BaseBackend, backend_lock

    with backend_lock:
        for backend in list(BackendDict._instances):  # type: ignore[attr-defined]
            for regions in list(backend.values()):
                for region_backend in list(regions.values()):
                    if type(region_backend).reset is not BaseBackend.reset:
                        region_backend.reset()
            backend.clear()
        BackendDict._instances.clear()  # type: ignore[attr-defined]


def _skip_ecs_optimized_images() -> None:
    """moto's EC2 backend, built afresh for each emulator, creates every image it knows with a snapshot and a
    volume: in us-east-1 the 44 default images, the 30 latest Amazon Linux ones and 1,227 ECS-optimized ones, 65 ms
    of CPU a test. Nothing here launches, describes or validates an ECS-optimized image (the groups launch
    ``ami-12c6146b``, one of the defaults, which every backend still has): they are left out, once per process."""
    from moto.ec2.models import amis

    if getattr(amis.load_resource, "skips_ecs_optimized", False):
        return
    original = amis.load_resource

    def load_resource(path: str, *args: Any, **kwargs: Any) -> Any:
        return [] if "ecs/optimized_amis" in str(path) else original(path, *args, **kwargs)

    load_resource.skips_ecs_optimized = True  # type: ignore[attr-defined]
    amis.load_resource = load_resource  # type: ignore[assignment]


class LocalAWS:
    """An emulated AWS account. See the module docstring."""

    def __init__(
        self,
        clock: SimClock | WallClock | None = None,
        *,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
        seed: int = 0,
        propagation: Any = (20.0, 60.0),  # number | (low, high) | ("lognormal", median, p99[, cap]) | fn(rng)
        route53_rate: float | None = 5.0,
        prior_request_window: float = 0.0,
        route53_burst: float | None = None,
        instance_ips: Iterable[str] | None = None,
        # -- issue 11: Auto Scaling / EC2 as AWS behaves (infra.local.autoscaling; each documented there).
        health_check_replacement: bool = True,  # issue 11: AWS default
        health_check_delay: float | tuple[float, float] = (10.0, 30.0),
        terminated_addresses: bool = True,  # issue 11: AWS default
        terminated_retention: float | None = 3600.0,
        transitional_states: bool = True,  # issue 11: AWS default
        transition_delay: float | tuple[float, float] = (1.0, 5.0),
        stale_describes: bool = True,  # issue 11: AWS default
        describe_staleness: float | tuple[float, float] = (0.0, 2.0),
        warm_pools: bool = True,  # issue 11: AWS's behaviour
        standby_states: bool = True,  # issue 11: AWS's behaviour
        # -- issue 11: Route 53 values and Lambda limits as AWS enforces them (route53.py, delivery.py).
        route53_strict_values: bool = True,  # issue 11: AWS default is True (on: every existing test passes)
        lambda_limits: bool = True,  # issue 11: AWS's behaviour
    ) -> None:
        self.clock = clock if clock is not None else SimClock()
        self.region = region
        self.account = account
        self.rng = random.Random(seed)
        self.propagation = propagation
        self.route53_rate = route53_rate
        self.prior_request_window = prior_request_window
        self.route53_burst = route53_burst  # token bucket size; None: same as route53_rate
        # -- Route 53, call log, faults (infra.local.route53, infra.local.faults) -------------
        self.lock = threading.RLock()  # guards emulator state shared by request threads
        self.calls: list[CallRecord] = []  # every request served, in arrival order
        self.route53_changes: list[ChangeRecord] = []  # every accepted ChangeResourceRecordSets
        self.route53_state = Route53State(changes=self.route53_changes)
        self.faults = Faults(self)
        # -- end Route 53, call log, faults --------------------------------------------------
        # -- Auto Scaling and delivery (infra.local.autoscaling, infra.local.delivery) -------
        self.instance_ips = instance_ips  # private IPs for new instances, in order (demo: 127.0.1.x)
        # issue 11 options: malformed/duplicate values and a set changed twice refused (route53.py);
        # Lambda's configuration limits enforced by register_function/map_queue (delivery.py).
        self.route53_strict_values = route53_strict_values
        self.lambda_limits = lambda_limits
        self.health_check_replacement = health_check_replacement  # EC2-level kill: health check + terminate hooks
        self.health_check_delay = health_check_delay  # s until the health check notices (fixed or uniform range)
        self.terminated_addresses = terminated_addresses  # terminated: no private IP/DNS name, then gone
        self.terminated_retention = terminated_retention  # s a terminated instance stays in DescribeInstances
        self.transitional_states = transitional_states  # Pending, Pending:Proceed, Terminating, ... visible
        self.transition_delay = transition_delay  # s spent in each transitional state
        self.stale_describes = stale_describes  # Describe* may answer a view up to describe_staleness s old
        self.describe_staleness = describe_staleness
        self.warm_pools = warm_pools  # PutWarmPool launches a pool; Warmed:* states and warm-pool hooks
        self.standby_states = standby_states  # EnteringStandby -> Standby; ExitStandby -> Pending -> InService
        self.notifications: list[Any] = []  # autoscaling.model.Notification: what the groups sent
        self.lifecycle_actions: list[Any] = []  # autoscaling.model.LifecycleActionRecord, every action
        self.invocations: list[Any] = []  # delivery.Invocation: every Lambda invocation
        self.dead_letters: list[Any] = []  # delivery.DeadLetter: async events given up on
        self.instance_refreshes: list[Any] = []  # refresh.RefreshRecord: every instance refresh
        # -- end Auto Scaling and delivery ---------------------------------------------------
        self._mock: Any = None
        self._saved_env: dict[str, str | None] = {}

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> LocalAWS:
        if state.running() not in (None, self):
            raise RuntimeError("another LocalAWS is already running in this process")
        from moto import mock_aws

        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        # In-process, clients must reach moto's mock, not a server named by the environment.
        for key in [k for k in os.environ if k == "AWS_ENDPOINT_URL" or k.startswith("AWS_ENDPOINT_URL_")]:
            self._saved_env[key] = os.environ.pop(key)
        _skip_ecs_optimized_images()
        self._mock = mock_aws()
        self._mock.start()
        state.enter(self)
        route53.install()
        faults.install()
        secrets.install()
        s3.install()  # S3 calls logged, faults and access denial, S3's limits (infra.local.s3)
        # -- Auto Scaling and delivery: lifecycle hooks, notifications, Lambda runner --------
        autoscaling.install(self)
        delivery.install(self)
        refresh.install(self)
        termination.install(self)
        # -- end Auto Scaling and delivery ---------------------------------------------------
        return self

    def stop(self) -> None:
        if self._mock is not None:
            _discard_backends()
            self._mock.stop()
            self._mock = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        state.leave(self)

    def observer(self) -> Any:
        """Context manager: describes inside answer the current state, never a stale view — for a test
        checking outcomes (the coordinator's own calls never run inside it)."""
        return describes.observer()

    def __enter__(self) -> LocalAWS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients ----------------------------------------------------------------------
    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client talking to this emulator (region and dummy credentials set).

        botocore's own retries are off unless ``config=`` says otherwise: they would sleep for
        real and hide the throttling and faults a test wants to see.
        """
        kwargs.setdefault("config", Config(retries={"total_max_attempts": 1}))
        return _session().client(service, region_name=self.region, **kwargs)

    # -- Route 53 -----------------------------------------------------------------------
    def create_zone(self, name: str, records: dict[tuple[str, str], tuple[int, list[str]]] | None = None) -> str:
        """Create a public hosted zone (and seed record sets) directly: no call log, no rate limit.

        Returns the bare zone id. ``records`` maps ``(name, type)`` to ``(ttl, values)``.

        Example:
            >>> zone = aws.create_zone("example.com",
            ...     {("_etcd-server._tcp.example.com.", "SRV"): (60, ["0 0 2380 a."])},
            ... )
        """

        zone = route53.backend(self).create_hosted_zone(
            route53.normalize_name(name), private_zone=False, caller_reference=f"local-{name}"
        )
        for (rname, rtype), (ttl, values) in (records or {}).items():
            self.set_records(zone.id, rname, rtype, ttl, values)
        return route53.bare_zone_id(zone.id)

    def set_records(self, zone_id: str, name: str, rtype: str, ttl: int | None, values: list[str] | None) -> None:
        """Overwrite (``values`` given) or remove (``None``) one record set directly, like an outside writer.

        Bypasses the API: no change record, no rate limit, no call log.
        """

        zone = route53.backend(self).get_hosted_zone(route53.bare_zone_id(zone_id))
        name = route53.normalize_name(name)
        with self.lock:
            zone.rrsets = [r for r in zone.rrsets if (route53.normalize_name(r.name), r.type) != (name, rtype)]
            if values is not None:
                zone.add_rrset({"Name": name, "Type": rtype, "TTL": ttl, "ResourceRecords": list(values)})

    def records(self, zone_id: str) -> dict[tuple[str, str], tuple[int | None, tuple[str, ...]]]:
        """The zone's record sets now: ``{(name, type): (ttl, sorted values)}`` (names lower case, dotted)."""

        return route53.zone_records(route53.backend(self).get_hosted_zone(route53.bare_zone_id(zone_id)))

    def change(self, change_id: str) -> Any:
        """The ``ChangeRecord`` of a change id (``C...`` or ``/change/C...``); KeyError if unknown."""

        return self.route53_state.by_id["/change/" + route53.bare_change_id(change_id)]

    def insync_at(self, change_id: str) -> float:
        """Emulator time at which ``GetChange(change_id)`` starts answering ``INSYNC``."""
        return float(self.change(change_id).insync_at)

    def propagation_delay(self) -> float:
        """Seconds one Route 53 change takes to become INSYNC (fixed, or uniform in a range)."""
        if isinstance(self.propagation, tuple):
            lo, hi = self.propagation
            return self.rng.uniform(lo, hi)
        return float(self.propagation)
