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
from typing import Any

import boto3

from infra.local.clock import SimClock, WallClock

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"

# The one LocalAWS whose behaviour moto's patched methods follow (moto's backends are global).
_CURRENT: LocalAWS | None = None


def current() -> LocalAWS:
    """The running emulator; raises when none is started."""
    if _CURRENT is None:
        raise RuntimeError("no LocalAWS is running")
    return _CURRENT


class LocalAWS:
    """An emulated AWS account. See the module docstring."""

    def __init__(
        self,
        clock: SimClock | WallClock | None = None,
        *,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
        seed: int = 0,
        propagation: float | tuple[float, float] = (20.0, 60.0),
        route53_rate: float | None = 5.0,
        prior_request_window: float = 0.0,
    ) -> None:
        self.clock = clock if clock is not None else SimClock()
        self.region = region
        self.account = account
        self.rng = random.Random(seed)
        self.propagation = propagation
        self.route53_rate = route53_rate
        self.prior_request_window = prior_request_window
        self._mock: Any = None
        self._saved_env: dict[str, str | None] = {}

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> LocalAWS:
        global _CURRENT
        if _CURRENT is not None and _CURRENT is not self:
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
        self._mock = mock_aws()
        self._mock.start()
        _CURRENT = self
        return self

    def stop(self) -> None:
        global _CURRENT
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if _CURRENT is self:
            _CURRENT = None

    def __enter__(self) -> LocalAWS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients ----------------------------------------------------------------------
    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client talking to this emulator (region and dummy credentials set)."""
        return boto3.client(service, region_name=self.region, **kwargs)

    def propagation_delay(self) -> float:
        """Seconds one Route 53 change takes to become INSYNC (fixed, or uniform in a range)."""
        if isinstance(self.propagation, tuple):
            lo, hi = self.propagation
            return self.rng.uniform(lo, hi)
        return float(self.propagation)
