"""Secrets Manager on the emulator's clock: moto stamps secrets and versions with ``time.time()``; under a
``SimClock`` that is another epoch than every other service's, so a secret's ``CreatedDate`` would not compare
with anything the coordinator sees (its sweep of member secrets ages them by ``CreatedDate``). Patched once
per process; plain moto when no ``LocalAWS`` runs."""

from __future__ import annotations

import time as _time
from typing import Any

_installed = False


class _EmulatorTime:
    """Stands in for the ``time`` module inside moto's Secrets Manager models."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)

    @staticmethod
    def time() -> float:
        from infra.local import state

        running = state.running()
        return running.clock.now() if running is not None else _time.time()


def install() -> None:
    global _installed
    if _installed:
        return
    from moto.secretsmanager import models

    models.time = _EmulatorTime()  # type: ignore[assignment]
    _installed = True
