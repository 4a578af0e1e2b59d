"""Structured logs and metrics (powertools), created once per process.

Tracing is imported only when the ``tracing`` setting is on, so it costs a cold start nothing
when off.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "etcd-asg-coordinator")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "EtcdAsgCoordinator")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]


def tracer(enabled: bool) -> Any | None:
    """A powertools Tracer when tracing is on, else None (nothing imported)."""
    if not enabled:
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE)
