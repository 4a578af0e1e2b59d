"""The coordinator's error vocabulary: each message says what was wrong, where, and what to do."""

from __future__ import annotations


class CoordinatorError(Exception):
    """Base class of every error the coordinator raises on purpose."""


class SettingsError(CoordinatorError):
    """A setting (environment variable) is missing or malformed. Raised at cold start."""

    def __init__(self, variable: str, problem: str, expected: str) -> None:
        self.variable = variable
        super().__init__(f"setting {variable}: {problem}; expected {expected}")


class EventError(CoordinatorError):
    """An incoming event cannot be understood. It is logged with the field at fault and not acted on."""

    def __init__(self, problem: str, field: str | None = None) -> None:
        self.field = field
        where = f" (field {field})" if field else ""
        super().__init__(f"unusable event{where}: {problem}")


class DeadlineReached(CoordinatorError):
    """Not enough invocation time is left to finish safely; the work is handed to a retry."""
