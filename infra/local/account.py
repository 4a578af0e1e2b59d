"""The emulated account as its parts see it: what ``route53``, ``faults``, ``autoscaling``, ``delivery``,
``refresh``, ``termination`` and ``secrets`` read of the running ``LocalAWS``, and the seeded draws they make.

The parts type the emulator as ``Account`` and import this module, never ``aws.py`` (which imports them): the
emulator's modules form no import circle. ``LocalAWS`` has every attribute named here
(tests/local/test_module_structure.py checks it).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from infra.local.clock import SimClock, WallClock


class Account(Protocol):
    """One emulated account and region: its clock, seeded randomness, lock, options and records."""

    clock: SimClock | WallClock
    region: str
    account: str
    rng: random.Random  # every random draw of the emulator (runs repeat for a seed)
    lock: threading.RLock  # held by every API call and every timer that changes state

    # -- Route 53 and the call log (route53, faults) -----------------------------------------
    propagation: Any  # number | (low, high) | ("lognormal", median, p99[, cap]) | fn(rng)
    route53_rate: float | None
    route53_burst: float | None
    prior_request_window: float
    route53_strict_values: bool
    calls: list[Any]  # faults.CallRecord, every request served
    route53_changes: list[Any]  # route53.ChangeRecord, every accepted change
    route53_state: Any  # route53.Route53State
    faults: Any  # faults.Faults

    # -- Auto Scaling and EC2 (autoscaling, refresh, termination) ---------------------------
    instance_ips: Iterable[str] | None
    health_check_replacement: bool
    health_check_delay: float | tuple[float, float]
    terminated_addresses: bool
    terminated_retention: float | None
    transitional_states: bool
    transition_delay: float | tuple[float, float]
    stale_describes: bool
    describe_staleness: float | tuple[float, float]
    warm_pools: bool
    standby_states: bool
    notifications: list[Any]  # autoscaling.model.Notification
    lifecycle_actions: list[Any]  # autoscaling.model.LifecycleActionRecord
    instance_refreshes: list[Any]  # refresh.RefreshRecord

    # -- Lambda (delivery, termination) ---------------------------------------------------------
    lambda_limits: bool
    invocations: list[Any]  # delivery.Invocation
    dead_letters: list[Any]  # delivery.DeadLetter

    def propagation_delay(self) -> float: ...


def flag(account: Account, name: str) -> bool:
    """A realism option of the account (``transitional_states``, ``warm_pools``, ...); False when it has none."""
    return bool(getattr(account, name, False))


def seconds(account: Account, name: str, default: float | tuple[float, float]) -> float:
    """Seconds from a duration option of the account: fixed, or uniform in ``(low, high)`` from ``account.rng``.

    Example:
        >>> seconds(aws, "transition_delay", (1.0, 5.0))   # aws.transition_delay = (1.0, 5.0)
        3.41
    """
    spec = getattr(account, name, default)
    if isinstance(spec, tuple):
        return account.rng.uniform(*spec)
    return float(spec)


def new_uuid(account: Account) -> str:
    """A uuid4 drawn from ``account.rng`` (tokens, request and event ids repeat for a seed)."""
    return str(uuid.UUID(int=account.rng.getrandbits(128), version=4))
