"""Retry policy for AWS calls: tenacity, jittered exponential backoff, bounded by a deadline.

botocore's own retries are switched off (see ``app.client_config``) so this is the one retry
layer, and it runs on the injected clock: simulated in tests, wall time in Lambda.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError, HTTPClientError, ReadTimeoutError
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from hook_handler.clock import Clock

T = TypeVar("T")

# Codes that can succeed when sent again. Everything else (validation, access, missing
# resources) is final and surfaces at once.
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "PriorRequestNotComplete",
        "ResourceContention",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "SlowDown",
    }
)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (None for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


def error_message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", ""))
    return str(exc)


def is_retryable(exc: BaseException) -> bool:
    """Throttling, contention, 5xx and transient network errors."""
    # HTTPClientError covers a connection the far end dropped (ConnectionClosedError) and read timeouts.
    if isinstance(exc, EndpointConnectionError | ConnectionError | ReadTimeoutError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in RETRYABLE_CODES or (isinstance(status, int) and status >= 500)
    return False


class RetryPolicy:
    """Calls an operation until it succeeds, fails for good, or the deadline would pass.

    Example:
        >>> from hook_handler.clock import SystemClock
        >>> RetryPolicy(SystemClock()).call(lambda: 42, deadline=float("inf"))
        42
    """

    def __init__(
        self,
        clock: Clock,
        *,
        initial: float = 0.2,
        maximum: float = 10.0,
        max_attempts: int = 12,
        on_retry: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.clock = clock
        self.initial = initial
        self.maximum = maximum
        self.max_attempts = max_attempts
        self.on_retry = on_retry

    def call(self, fn: Callable[..., T], *args: Any, deadline: float, what: str = "", **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with retries; the last error is re-raised when giving up."""

        def stop(state: RetryCallState) -> bool:
            upcoming = state.upcoming_sleep or 0.0
            return state.attempt_number >= self.max_attempts or self.clock.now() + upcoming >= deadline

        def before_sleep(state: RetryCallState) -> None:
            if self.on_retry and state.outcome is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    self.on_retry(what or getattr(fn, "__name__", "call"), exc)

        retrying = Retrying(
            sleep=self.clock.sleep,
            stop=stop,
            wait=wait_random_exponential(multiplier=self.initial, max=self.maximum),
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn, *args, **kwargs)
