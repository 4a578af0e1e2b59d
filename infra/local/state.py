"""Which emulated account is running: the one ``LocalAWS`` whose behaviour moto's patched methods follow.

moto's backends are global, so the patches installed by ``route53``, ``faults``, ``autoscaling`` and
``delivery`` look the running emulator up here at call time, typed as ``account.Account``: every installer
reaches the running emulator without importing ``LocalAWS``'s module (``aws.py`` imports the installers, never
the other way round).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from infra.local.account import Account

_CURRENT: Account | None = None


def running() -> Account | None:
    """The running emulator, or None (the patches then behave as plain moto)."""
    return _CURRENT


def current() -> Account:
    """The running emulator; raises when none is started."""
    if _CURRENT is None:
        raise RuntimeError("no LocalAWS is running")
    return _CURRENT


def enter(aws: Account) -> None:
    """Make ``aws`` the running emulator; only one runs per process."""
    global _CURRENT
    if _CURRENT is not None and _CURRENT is not aws:
        raise RuntimeError("another LocalAWS is already running in this process")
    _CURRENT = aws


def leave(aws: Account) -> None:
    """``aws`` stopped: no emulator runs (unless another one already took over)."""
    global _CURRENT
    if _CURRENT is aws:
        _CURRENT = None


@contextmanager
def released(lock: Any) -> Iterator[None]:
    """Give up ``lock`` (a ``threading.RLock``, however deeply the caller holds it) for the block.

    A call that waits inside the account lock (SQS's long poll) would stop every other call and
    every Auto Scaling timer for as long as it waits; AWS serves other requests meanwhile. The lock
    is taken back, at the same depth, before the call looks at state again (the same save/restore
    ``threading.Condition.wait`` uses).
    """
    if not isinstance(lock, type(threading.RLock())) or not lock._is_owned():
        yield
        return
    saved = lock._release_save()
    try:
        yield
    finally:
        lock._acquire_restore(saved)
