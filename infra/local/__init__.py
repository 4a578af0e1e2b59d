"""Local AWS: moto extended with real lifecycle-hook and Route 53 semantics (see infra/DESIGN.md)."""

from infra.local import service_models  # noqa: F401 - first: moto parses service models at import
from infra.local.aws import LocalAWS, current
from infra.local.clock import SimClock, TaskKilled, WallClock

__all__ = ["LocalAWS", "SimClock", "TaskKilled", "WallClock", "current"]
