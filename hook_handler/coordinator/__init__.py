"""The coordinator: the pass (``core``) and its effects — the record (``record``), etcd's membership
(``etcd_steps``), lifecycle actions (``actions``), member certificates (``certificates``) — over a shared
``context``. Decisions live outside, in pure modules (``decide``, ``membership``, ``phases``, ``plan``)."""

from hook_handler.coordinator.core import LAG_LOOKS, Coordinator
from hook_handler.report import Outcome, Report, Status

__all__ = ["LAG_LOOKS", "Coordinator", "Outcome", "Report", "Status"]
