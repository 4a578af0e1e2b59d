"""Call log, Route 53 rate limit and injected faults, hooked into moto's request dispatch.

Every request moto serves — in-process (``mock_aws``) or over HTTP (the emulator server) — goes
through ``BaseResponse.call_action``. ``install()`` wraps it once per process: the wrapper logs
the call, answers ``Throttling`` when the account's Route 53 token bucket is empty, sleeps an
injected delay on the emulator clock and answers injected errors, serialized by moto in the
service's own protocol (REST-XML for Route 53, query for Auto Scaling, EC2's own), so botocore
parses the code and message exactly as it would from AWS.

Errors are ``EmulatedError``: defined outside any ``moto*`` module on purpose, so moto's
serializer looks the code up in the *calling* service's model (status code, fault type).

A *lost response* (``lose_response``) is the other half of a network fault: the request reached
the service and was applied, but the caller never sees the success. AWS's SDK guidance says so in
as many words: a request that timed out or failed with a 5xx may have been applied, which is why
retries must be idempotent (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html,
https://aws.amazon.com/builders-library/making-retries-safe-with-idempotent-APIs/). In-process the
timeout form raises botocore's own ``ReadTimeoutError`` from the transport (moto's stubber is a
``before-send`` handler, and botocore's endpoint turns an exception raised there into the same
error path as a socket read timeout), after the client's read timeout has passed on the emulator
clock; served over HTTP the server sends nothing back (werkzeug treats the app's
``ConnectionError`` as a dropped connection), so the client sees its own read timeout.

Example:
    >>> aws.faults.fail_next("CompleteLifecycleAction", code="ResourceContention")
    >>> aws.faults.delay("GetChange", 2.5)     # simulated seconds when the clock is a SimClock
    >>> aws.faults.lose_response("ChangeResourceRecordSets", code="timeout")  # applied, caller times out
    >>> aws.faults.injected["CompleteLifecycleAction"]
    1
"""

from __future__ import annotations

import copy
import html
import json
import logging
import re
import threading
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, BaseResponse
from moto.core.utils import method_names_from_class as _ORIGINAL_METHOD_NAMES

from infra.local import state
from infra.local.account import Account

log = logging.getLogger(__name__)

# What AWS says for the codes one usually injects (seen in AWS answers quoted in public issues).
DEFAULT_MESSAGES = {
    "Throttling": "Rate exceeded",
    "ThrottlingException": "Rate exceeded",
    "PriorRequestNotComplete": "The request was rejected because Route 53 was still processing a prior request.",
    "ResourceContention": (
        "You already have a pending update to an Auto Scaling resource (for example, a group, instance, or load "
        "balancer)."
    ),
    "RequestLimitExceeded": "Request limit exceeded.",
    "InternalFailure": "An internal error occurred.",
    "InternalError": "An internal error occurred.",
    "ServiceUnavailable": "Service is unavailable. Please try again later.",
}


class EmulatedError(ServiceException):
    """An AWS error answered by the emulator (strict semantics, limits or an injected fault).

    ``status`` overrides the HTTP status; ``None`` keeps what the service model says for
    ``code`` (400 when the model does not know the code).
    """

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        super().__init__(code, message if message is not None else DEFAULT_MESSAGES.get(code, f"Injected {code}"))
        self.status = status


@dataclass
class CallRecord:
    """One request the emulator served."""

    index: int
    time: float  # emulator clock when the request arrived
    service: str  # boto3 service name: "route53", "autoscaling", "ec2", ...
    operation: str  # API name: "ChangeResourceRecordSets"
    params: dict[str, Any]
    status: int = 0
    error: str | None = None  # error code, None on success
    message: str | None = None  # error message
    result: str | None = None  # short summary ("/change/C... PENDING")
    duration: float = 0.0  # emulator seconds the call took (injected delays)
    injected: bool = False  # the error was injected or a limit (not the service's own answer)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


@dataclass
class _FailRule:
    operation: str
    count: int
    code: str
    message: str | None
    status: int | None


@dataclass
class _LostRule:
    operation: str
    count: int
    code: str  # an error code (answered after the write landed) or "timeout"
    message: str | None
    status: int | None
    after: float  # timeout form: seconds the caller waits before its read timeout fires


# botocore's default read timeout (botocore.config.Config: read_timeout=60).
DEFAULT_READ_TIMEOUT = 60.0


@dataclass
class _DelayRule:
    operation: str
    seconds: float
    count: int | None  # None: every call until cleared


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; one request takes one token."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# operation -> fn(params, body) -> summary; other modules register theirs (lifecycle actions...).
Summarizer = Callable[[dict[str, Any], str], "str | None"]
SUMMARIZERS: dict[str, Summarizer] = {}


def _change_info_summary(params: dict[str, Any], body: str) -> str | None:
    match = re.search(r"<ChangeInfo>.*?<Id>([^<]*)</Id>.*?<Status>([^<]*)</Status>", body, re.S)
    return f"{match.group(1)} {match.group(2)}" if match else None


def _list_summary(params: dict[str, Any], body: str) -> str | None:
    return f"{body.count('<ResourceRecordSet>')} record sets"


def _groups_summary(params: dict[str, Any], body: str) -> str | None:
    """``name=desired`` per group answered (what the caller saw, stale or not): "etcd=3 other=0"."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(body)
    groups = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "AutoScalingGroups"), None)
    out = []
    for member in list(groups) if groups is not None else []:
        fields = {c.tag.rsplit("}", 1)[-1]: c.text for c in member}
        out.append(f"{fields.get('AutoScalingGroupName')}={fields.get('DesiredCapacity')}")
    return " ".join(out)


def answered_desired(call: CallRecord, group: str) -> int | None:
    """The DesiredCapacity a successful DescribeAutoScalingGroups ``call`` answered for ``group`` (None: not in it)."""
    if call.operation != "DescribeAutoScalingGroups" or call.error or not call.result:
        return None
    for item in call.result.split():
        name, _, value = item.rpartition("=")
        if name == group and value.isdigit():
            return int(value)
    return None


SUMMARIZERS.update(
    DescribeAutoScalingGroups=_groups_summary,
    ChangeResourceRecordSets=_change_info_summary,
    GetChange=_change_info_summary,
    ListResourceRecordSets=_list_summary,
)


@dataclass
class Faults:
    """Rate limit, injected faults and the call log of one ``LocalAWS`` (``aws.faults``)."""

    aws: Account
    injected: Counter[str] = field(default_factory=Counter)  # operation -> injected errors answered
    throttled: int = 0  # Route 53 requests refused by the rate limit
    _fails: list[_FailRule] = field(default_factory=list)
    _delays: list[_DelayRule] = field(default_factory=list)
    _lost: list[_LostRule] = field(default_factory=list)
    lost: Counter[str] = field(default_factory=Counter)  # operation -> responses lost after the write landed
    _bucket: TokenBucket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- injection API ----------------------------------------------------------------
    def fail_next(
        self,
        operation: str,
        count: int = 1,
        code: str = "Throttling",
        message: str | None = None,
        status: int | None = None,
    ) -> None:
        """Answer the next ``count`` calls of ``operation`` (API name, any service; ``"*"``: any) with ``code``.

        Example: ``aws.faults.fail_next("ChangeResourceRecordSets", 2, code="PriorRequestNotComplete")``
        """
        with self._lock:
            self._fails.append(_FailRule(operation, count, code, message, status))

    def delay(self, operation: str, seconds: float, count: int | None = None) -> None:
        """Make calls of ``operation`` take ``seconds`` on the emulator clock (``count`` calls, or until cleared)."""
        with self._lock:
            self._delays.append(_DelayRule(operation, float(seconds), count))

    def lose_response(
        self,
        operation: str,
        count: int = 1,
        code: str = "InternalError",
        message: str | None = None,
        status: int | None = 500,
        *,
        after: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        """Apply the next ``count`` calls of ``operation`` but replace their answer with a failure.

        ``code="timeout"``: the caller sees a read timeout (botocore ``ReadTimeoutError``) once
        ``after`` seconds have passed on the emulator clock — pass the client's ``read_timeout``
        (the coordinator's is 15 s; botocore's default is 60 s). Any other code: the caller sees that
        AWS error (``status`` 500 unless given; ``None`` = the service model's), e.g.
        ``InternalError``, ``InternalFailure``, ``ServiceUnavailable``. Only successful calls lose
        their answer: a call the service refuses keeps its error and does not use up the rule.

        Example: ``aws.faults.lose_response("CompleteLifecycleAction", code="timeout", after=15)``
        """
        with self._lock:
            self._lost.append(_LostRule(operation, count, code, message, status, float(after)))

    def clear(self) -> None:
        """Drop every pending injected fault, lost response and delay (counters stay)."""
        with self._lock:
            self._fails.clear()
            self._delays.clear()
            self._lost.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return (
                [asdict(r) for r in self._fails]
                + [asdict(r) for r in self._delays]
                + [{**asdict(r), "lose_response": True} for r in self._lost]
            )

    def take_lost(self, operation: str) -> _LostRule | None:
        """The lost-response rule for a call of ``operation`` that succeeded (used up by it), if any."""
        with self._lock:
            for rule in self._lost:
                if rule.operation in (operation, "*"):
                    rule.count -= 1
                    if rule.count <= 0:
                        self._lost.remove(rule)
                    self.lost[operation] += 1
                    return rule
        return None

    # -- used by the dispatch wrapper -------------------------------------------------
    def admit(self, service: str, operation: str) -> EmulatedError | None:
        """Decide a request's fate before moto sees it: rate limit, then delay, then injected error."""
        aws = self.aws
        if service == "route53" and aws.route53_rate is not None:
            with self._lock:
                if self._bucket is None:
                    burst = aws.route53_burst if aws.route53_burst is not None else aws.route53_rate
                    self._bucket = TokenBucket(aws.route53_rate, burst, aws.clock.now())
                if not self._bucket.take(aws.clock.now()):
                    self.throttled += 1
                    return EmulatedError("Throttling", "Rate exceeded", 400)
        seconds = self._take(self._delays, operation)
        if seconds:
            _sleep(aws, seconds)
        with self._lock:
            rule = self._take_fail(operation)
            if rule is not None:
                self.injected[operation] += 1
                return EmulatedError(rule.code, rule.message, rule.status)
        return None

    def _take(self, rules: list[_DelayRule], operation: str) -> float:
        with self._lock:
            for rule in rules:
                if rule.operation in (operation, "*"):
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            rules.remove(rule)
                    return rule.seconds
        return 0.0

    def _take_fail(self, operation: str) -> _FailRule | None:
        for rule in self._fails:
            if rule.operation in (operation, "*"):
                rule.count -= 1
                if rule.count <= 0:
                    self._fails.remove(rule)
                return rule
        return None

    def record(self, call: CallRecord) -> CallRecord:
        with self._lock:
            call.index = len(self.aws.calls)
            self.aws.calls.append(call)
        return call


def _sleep(aws: Account, seconds: float) -> None:
    try:
        aws.clock.sleep(seconds)
    except RuntimeError as exc:
        # Server mode on a SimClock: another request thread is advancing the clock already.
        log.warning("injected delay of %ss skipped: %s", seconds, exc)


# -- the dispatch wrapper -----------------------------------------------------------------
_ORIGINAL: dict[str, Any] = {}
# Set while moto serves a request in-process (through botocore's ``before-send`` stubber), so a lost
# response can raise the transport error botocore itself raises; unset when served over HTTP.
_IN_PROCESS = threading.local()


class DroppedConnection(ConnectionAbortedError):
    """Served over HTTP: werkzeug treats a ``ConnectionError`` from the app as a dropped connection
    and sends nothing, so the client sees its read timeout (or a closed connection)."""


def _operation(resp: BaseResponse) -> str:
    try:
        return resp._get_action() or ""
    except Exception:  # noqa: BLE001 - an unroutable request: moto answers it; log it without a name
        return ""


def _request_params(resp: BaseResponse) -> dict[str, Any]:
    """The request's parameters by the service model's names (moto's parsed params, else its querystring)."""
    params = getattr(resp, "params", None)
    if resp.automated_parameter_parsing and isinstance(params, dict):
        merged = dict(params)  # URI members (HostedZoneId, Id) are parsed into it too
    else:
        try:
            merged = resp._get_params()
        except (KeyError, IndexError, TypeError, ValueError):  # a body moto's flattening does not read
            merged = {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in resp.querystring.items()}
    merged.pop("Action", None)
    merged.pop("Version", None)
    try:
        return copy.deepcopy(merged)
    except (TypeError, copy.Error):
        return dict(merged)


def _error_response(resp: BaseResponse, error: EmulatedError) -> tuple[int, dict[str, Any], Any]:
    with warnings.catch_warnings():
        # moto warns when a code is not in the service model (e.g. Route 53's "Throttling"): expected here.
        warnings.simplefilter("ignore")
        status, headers, body = resp.serialized(ActionResult(error))
    if error.status is not None:
        status = error.status
    headers, body = resp._enrich_response(headers, body)
    return status, headers, body


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return body if isinstance(body, str) else ""


def _error_of(status: int, body: str) -> tuple[str | None, str | None]:
    if status < 400:
        return None, None
    code = re.search(r"<Code>([^<]*)</Code>", body)
    message = re.search(r"<Message>([^<]*)</Message>", body)
    if code:
        return html.unescape(code.group(1)), html.unescape(message.group(1)) if message else None
    try:
        data = json.loads(body)
        return str(data.get("__type", "")).split("#")[-1] or str(status), data.get("message") or data.get("Message")
    except (ValueError, AttributeError):
        return str(status), None


def _call_action(self: BaseResponse) -> Any:
    aws = state.running()
    if aws is None:
        return _ORIGINAL["call_action"](self)
    operation = _operation(self)
    call = CallRecord(
        index=-1,
        time=aws.clock.now(),
        service=self.boto3_service_name,
        operation=operation,
        params=_request_params(self) if operation else {},
    )
    try:
        error = aws.faults.admit(call.service, operation) if operation else None
        if error is not None:
            call.injected = True
            status, headers, body = _error_response(self, error)
        else:
            # AWS serves each call atomically; moto's backends are plain dicts and lists that a concurrent
            # request (the server is threaded, Lambda runs in threads on the wall clock) could change under
            # an iteration ("dictionary changed size during iteration" in DescribeTags). One call at a time,
            # with the emulator's own timers (the Auto Scaling engine shares this lock). Nothing in it sleeps
            # holding it: SQS's long poll gives it up while it waits (delivery.receive_message).
            with aws.lock:
                status, headers, body = _ORIGINAL["call_action"](self)
            if operation and int(status) < 400:
                lost = aws.faults.take_lost(operation)
                if lost is not None:
                    call.injected = True
                    status, headers, body = _lose(aws, self, call, lost, status, body)
    except BaseException as exc:
        call.error, call.message = type(exc).__name__, str(exc)
        call.duration = aws.clock.now() - call.time
        aws.faults.record(call)
        raise
    text = _text(body)
    call.status = int(status)
    call.error, call.message = _error_of(call.status, text)
    if call.error is None and operation in SUMMARIZERS:
        try:
            call.result = SUMMARIZERS[operation](call.params, text)
        except Exception:  # a summary is a convenience; never fail the request for it
            log.exception("summarizing %s failed", operation)
    call.duration = aws.clock.now() - call.time
    aws.faults.record(call)
    return status, headers, body


def _lose(
    aws: Account, resp: BaseResponse, call: CallRecord, rule: _LostRule, status: Any, body: Any
) -> tuple[int, dict[str, Any], Any]:
    """The write landed (``status``/``body`` are its real answer); give the caller ``rule``'s failure instead."""
    text = _text(body)
    if call.operation in SUMMARIZERS:
        try:
            call.result = f"applied, response lost: {SUMMARIZERS[call.operation](call.params, text)}"
        except Exception:  # noqa: BLE001 - a summary is a convenience
            call.result = "applied, response lost"
    else:
        call.result = "applied, response lost"
    if rule.code != "timeout":
        return _error_response(resp, EmulatedError(rule.code, rule.message, rule.status))
    _sleep(aws, rule.after)  # the caller waits out its read timeout
    call.status, call.error, call.message = 0, "ReadTimeoutError", f"Read timeout after {rule.after:g} s"
    if getattr(_IN_PROCESS, "active", False):
        from botocore.exceptions import ReadTimeoutError

        url = getattr(getattr(resp, "request", None), "url", None) or getattr(resp, "uri", "")
        raise ReadTimeoutError(endpoint_url=url, error=f"Read timed out. (read timeout={rule.after:g})")
    raise DroppedConnection(f"response to {call.operation} dropped after {rule.after:g} s (emulated lost response)")


def install() -> None:
    """Wrap moto's dispatch (idempotent; without a running LocalAWS the wrapper is moto's own)."""
    if _ORIGINAL:
        return
    _ORIGINAL["call_action"] = BaseResponse.call_action
    BaseResponse.call_action = _call_action  # type: ignore[method-assign]
    from moto.core.botocore_stubber import BotocoreStubber

    _ORIGINAL["process_request"] = BotocoreStubber.process_request

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        outer = getattr(_IN_PROCESS, "active", False)
        _IN_PROCESS.active = True
        try:
            return _ORIGINAL["process_request"](self, request)
        finally:
            _IN_PROCESS.active = outer

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    import moto.core.responses as moto_responses

    moto_responses.method_names_from_class = _method_names  # type: ignore[assignment]


_METHOD_NAMES: dict[tuple[type, tuple[int, ...]], list[str]] = {}


def _method_names(clazz: type) -> list[str]:
    """moto's ``method_names_from_class`` (what ``call_action`` asks on every request: ``inspect.getmembers``
    over the response class, 4 % of a simulated run's CPU), remembered per class. The key carries the size of
    each class's namespace along the MRO, so a method added later (the emulator adds actions) is seen."""
    key = (clazz, tuple(len(vars(c)) for c in clazz.__mro__))
    names = _METHOD_NAMES.get(key)
    if names is None:
        names = _METHOD_NAMES[key] = _ORIGINAL_METHOD_NAMES(clazz)
    return list(names)
