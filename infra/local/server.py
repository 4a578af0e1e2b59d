"""The emulator as an HTTP server: moto's server app with the emulator's patches, plus ``/_local/`` controls.

Any process whose boto3 clients read ``AWS_ENDPOINT_URL=http://HOST:PORT`` talks to it. The control
endpoints answer JSON; other modules add theirs to ``ENDPOINTS``.

Example:
    >>> aws = LocalAWS(SimClock(), propagation=30.0).start()
    >>> server = LocalServer(aws, port=0).start()
    >>> server.url
    'http://127.0.0.1:40123'
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from infra.local.clock import SimClock

if TYPE_CHECKING:
    from infra.local.aws import LocalAWS


class ControlError(Exception):
    """A control request that cannot be served: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# (method, path) -> handler(aws, request) -> JSON-able answer. Extend it from other modules.
Handler = Callable[["LocalAWS", Request], Any]
ENDPOINTS: dict[tuple[str, str], Handler] = {}

_advance_lock = threading.Lock()


def endpoint(method: str, path: str) -> Callable[[Handler], Handler]:
    """Register a control endpoint: ``@endpoint("GET", "/_local/actions")``."""

    def register(fn: Handler) -> Handler:
        ENDPOINTS[(method.upper(), path)] = fn
        return fn

    return register


def _body(request: Request) -> dict[str, Any]:
    raw = request.get_data(parse_form_data=False)  # raw body, whatever the Content-Type says
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ControlError(400, f"request body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ControlError(400, "request body must be a JSON object")
    return data


def _int_arg(request: Request, name: str, default: int) -> int:
    try:
        return int(request.args.get(name, default))
    except ValueError as exc:
        raise ControlError(400, f"query parameter {name!r} must be an integer") from exc


def _clock_json(aws: LocalAWS) -> dict[str, Any]:
    return {"now": aws.clock.now(), "kind": "sim" if isinstance(aws.clock, SimClock) else "wall"}


@endpoint("GET", "/_local/health")
def health(aws: LocalAWS, request: Request) -> Any:
    return {"ok": True, "region": aws.region, "account": aws.account, **_clock_json(aws)}


@endpoint("GET", "/_local/calls")
def calls(aws: LocalAWS, request: Request) -> Any:
    """Call log from index ``since``; ``operation=`` filters by API name."""
    since = _int_arg(request, "since", 0)
    operation = request.args.get("operation")
    with aws.lock:
        selected = list(aws.calls[since:])
        total = len(aws.calls)
    return {
        "calls": [c.to_json() for c in selected if operation is None or c.operation == operation],
        "next": total,
    }


@endpoint("GET", "/_local/changes")
def changes(aws: LocalAWS, request: Request) -> Any:
    now = aws.clock.now()
    return {"changes": [{**c.to_json(), "status": c.status(now)} for c in list(aws.route53_changes)], "now": now}


@endpoint("GET", "/_local/records")
def records(aws: LocalAWS, request: Request) -> Any:
    zone = request.args.get("zone")
    if not zone:
        raise ControlError(400, "query parameter 'zone' (hosted zone id) is required")
    return {
        "records": [
            {"name": name, "type": rtype, "ttl": ttl, "values": list(values)}
            for (name, rtype), (ttl, values) in aws.records(zone).items()
        ]
    }


@endpoint("GET", "/_local/faults")
def faults_state(aws: LocalAWS, request: Request) -> Any:
    return {"pending": aws.faults.pending(), "injected": dict(aws.faults.injected), "throttled": aws.faults.throttled}


@endpoint("POST", "/_local/faults")
def add_fault(aws: LocalAWS, request: Request) -> Any:
    """``{"operation", "count"?, "code"?, "message"?, "status"?}`` or ``{"operation", "delay", "count"?}``."""
    body = _body(request)
    operation = body.get("operation")
    if not isinstance(operation, str) or not operation:
        raise ControlError(400, "'operation' (an API name such as 'GetChange', or '*') is required")
    try:
        if "delay" in body:
            count = body.get("count")
            aws.faults.delay(operation, float(body["delay"]), None if count is None else int(count))
        else:
            status = body.get("status")
            aws.faults.fail_next(
                operation,
                int(body.get("count", 1)),
                str(body.get("code", "Throttling")),
                body.get("message"),
                None if status is None else int(status),
            )
    except (TypeError, ValueError) as exc:
        raise ControlError(400, f"bad fault specification: {exc}") from exc
    return faults_state(aws, request)


@endpoint("DELETE", "/_local/faults")
def clear_faults(aws: LocalAWS, request: Request) -> Any:
    aws.faults.clear()
    return faults_state(aws, request)


@endpoint("GET", "/_local/clock")
def clock(aws: LocalAWS, request: Request) -> Any:
    return _clock_json(aws)


@endpoint("POST", "/_local/clock/advance")
def advance(aws: LocalAWS, request: Request) -> Any:
    """``{"seconds": s}``: run simulated time forward (timers, tasks); only with ``--clock sim``."""
    if not isinstance(aws.clock, SimClock):
        raise ControlError(400, "the clock is the wall clock and cannot be advanced; start the server with --clock sim")
    try:
        seconds = float(_body(request).get("seconds", 0))
    except (TypeError, ValueError) as exc:
        raise ControlError(400, "'seconds' must be a number") from exc
    if seconds < 0:
        raise ControlError(400, "'seconds' must not be negative")
    if not _advance_lock.acquire(blocking=False):
        raise ControlError(409, "another advance is running; retry when it returns")
    try:
        aws.clock.advance(seconds)
    finally:
        _advance_lock.release()
    return _clock_json(aws)


class LocalServer:
    """moto's server app and the control endpoints on one port, in a background thread."""

    def __init__(self, aws: LocalAWS, host: str = "127.0.0.1", port: int = 0) -> None:
        self.aws = aws
        self.host = host
        self.port = port
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalServer:
        self._server = make_server(self.host, self.port, self.app, threaded=True, request_handler=MotoRequestHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="local-aws-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def app(self, environ: dict[str, Any], start_response: Any) -> Any:
        """WSGI: ``/_local/...`` to the control endpoints, everything else to moto."""
        if environ.get("PATH_INFO", "").startswith("/_local/"):
            return self._control(Request(environ))(environ, start_response)
        return self._moto(environ, start_response)

    def _control(self, request: Request) -> Response:
        handler = ENDPOINTS.get((request.method, request.path.rstrip("/") or "/"))
        if handler is None:
            known = sorted(f"{m} {p}" for m, p in ENDPOINTS)
            return _json(404, {"error": f"no control endpoint {request.method} {request.path}", "endpoints": known})
        try:
            return _json(200, handler(self.aws, request))
        except ControlError as exc:
            return _json(exc.status, {"error": exc.message})


def _json(status: int, data: Any) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")
