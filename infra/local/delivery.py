"""Invoke a Python Lambda handler the way the Lambda service does, on the emulator's clock.

A registered function (``aws.register_function``) stands in for a deployed Lambda. Events
reach it from EventBridge rule targets and SNS ``lambda`` subscriptions (asynchronous: one
event per invocation, queued at reserved concurrency, retried, then dead-lettered) and from
SQS event source mappings (``aws.map_queue``: batches, partial batch responses, visibility
timeout, redrive). moto would hand these to docker; here they run as ``SimClock`` tasks.

Behaviours as AWS has them, each switchable and on by default, but for the loss probabilities and
``batch_lateness``, which stay 0 (AWS documents no figure for them):

- ``delivery_options(throttle_backoff=True)``: an async event throttled by reserved concurrency goes
  back to Lambda's internal queue and is retried with backoff "from 1 second after the first attempt
  to a maximum of 5 minutes", in no set order, and discarded (``aws.dead_letters``, error
  ``EventAgeExceeded``) once older than the function's maximum event age
  (``register_function(max_event_age=21600)``, Lambda's ``MaximumEventAgeInSeconds``, 60-21600 s,
  default 6 h): https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html,
  https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-configuring.html. Off: the next
  queued event starts the instant a slot frees, in arrival order, and never ages out.
- ``delivery_options(loss_probability=p, sns_loss_probability=q)``: EventBridge delivers AWS service
  events "on a best-effort basis"
  (https://docs.aws.amazon.com/autoscaling/ec2/userguide/automating-ec2-auto-scaling-with-eventbridge.html,
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event.html); a lost
  notification never reaches its target (``aws.lost_events``). Seeded by ``aws.rng``.
- ``delivery_options(sqs_pollers=True, batch_lateness=s)``: an SQS event source is served by
  several pollers (Lambda "starts processing five batches at a time" and scales up to the
  mapping's maximum concurrency, https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html);
  each ReceiveMessage returns at most 10 messages, a sampled subset of the queue
  (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html),
  so one burst can arrive as several concurrent partial batches. ``MaximumBatchingWindowInSeconds``
  is "the maximum amount of time ... that Lambda spends gathering records" — nothing promises the
  invocation at its end: ``batch_lateness`` adds up to that many seconds before a gathered batch
  starts. Off: one batch per window, gathered by a single poller, started on the dot.
- ``LocalAWS(lambda_limits=True)``: the configuration limits Lambda's API enforces —
  ``Timeout`` 1-900 s (https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html),
  ``ScalingConfig.MaximumConcurrency`` 2-1000 (https://docs.aws.amazon.com/lambda/latest/api/API_ScalingConfig.html),
  ``BatchSize`` 1-10000 and, over 10, ``MaximumBatchingWindowInSeconds`` >= 1; window 0-300 s
  (https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html),
  ``MaximumEventAgeInSeconds`` 60-21600. Refused with ``LambdaLimitError`` (code and message as AWS
  answers them).

Example:
    >>> with LocalAWS(clock=SimClock()) as aws:              # doctest: +SKIP
    ...     arn = aws.register_function("coordinator", handler, timeout=60)
    ...     aws.map_queue(queue_url, "coordinator", batch_size=10, batching_window=2.0)
    ...     aws.clock.advance(60)
    ...     [i.outcome for i in aws.invocations]
"""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.local import state
from infra.local.account import Account, new_uuid
from infra.local.clock import TaskKilled, iso

log = logging.getLogger(__name__)

ASYNC_RETRY_DELAYS = (60.0, 120.0)  # Lambda async: ~1 min before the first retry, ~2 min before the second
DEFAULT_LATENCY = 0.5
DEFAULT_SQS_CONCURRENCY = 1000  # no maximum concurrency: bounded by the account, not the mapping
MAX_TIMEOUT = 900.0  # Lambda's ceiling (configuration-timeout.html)
DEFAULT_MAX_EVENT_AGE = 21600.0  # MaximumEventAgeInSeconds default and maximum: 6 h
MIN_EVENT_AGE = 60.0
THROTTLE_BACKOFF_FIRST = 1.0  # "from 1 second after the first attempt ..."
THROTTLE_BACKOFF_MAX = 300.0  # "... to a maximum of 5 minutes"
SQS_RECEIVE_MAX = 10  # one ReceiveMessage returns at most 10 messages


class LambdaLimitError(ValueError):
    """A function or mapping configuration Lambda's API refuses (``code`` and ``message`` as AWS answers)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _constraint(value: Any, field: str, bound: str) -> LambdaLimitError:
    # e.g. "1 validation error detected: Value '3000' at 'timeout' failed to satisfy constraint: Member
    # must have value less than or equal to 900" (ValidationException, quoted in covidatlas/li#575).
    return LambdaLimitError(
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
        f"Member must have value {bound}",
    )


Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """What a handler's ``context`` offers (the attributes powertools reads)."""

    function_name: str
    invoked_function_arn: str
    aws_request_id: str
    memory_limit_in_mb: int
    deadline: float
    clock: Any
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "emulated"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.clock.now()) * 1000))


@dataclass
class Function:
    name: str
    arn: str
    handler: Handler
    timeout: float
    reserved_concurrency: int | None
    max_retries: int
    memory: int = 128
    running: int = 0
    backlog: deque[AsyncItem] = field(default_factory=deque)
    max_event_age: float = DEFAULT_MAX_EVENT_AGE


@dataclass
class AsyncItem:
    event: dict[str, Any]
    source: str
    attempt: int = 0
    queued_at: float | None = None  # when Lambda's internal queue took the event (its age counts from here)
    throttles: int = 0  # times it met a full reserved concurrency (throttle_backoff)


@dataclass
class Throttle:
    """An async event that met a full reserved concurrency and went back to Lambda's queue (throttle_backoff)."""

    time: float
    function: str
    source: str
    retry_at: float
    event: dict[str, Any]


@dataclass
class LostEvent:
    """A notification EventBridge or SNS did not deliver (loss_probability / sns_loss_probability)."""

    time: float
    channel: str  # "eventbridge" | "sns"
    target: str
    event: Any


@dataclass
class Invocation:
    """One invocation, as ``aws.invocations`` records it."""

    time: float
    function: str
    source: str  # "eventbridge" | "sns" | "sqs"
    summary: str
    outcome: str  # "ok" | "error" | "timeout" | "partial" | "no-such-function"
    attempt: int = 0
    ended_at: float | None = None
    request_id: str = ""
    error: str = ""
    event: dict[str, Any] | None = None
    response: Any = None


@dataclass
class DeadLetter:
    """An asynchronous event Lambda gave up on after its retries."""

    time: float
    function: str
    source: str
    event: dict[str, Any]
    attempts: int
    error: str


@dataclass
class QueueMapping:
    """An SQS event source mapping."""

    uuid: str
    queue_name: str
    queue_arn: str
    function: str
    batch_size: int
    batching_window: float
    max_concurrency: int | None
    report_batch_item_failures: bool = True
    running: int = 0
    next_poll: float | None = None
    window_deadline: float | None = None
    inflight: set[str] = field(default_factory=set)  # received by a running batch: its end re-polls
    gathering: list[Gathered] = field(default_factory=list)  # sqs_pollers: batches pollers are filling


@dataclass
class Gathered:
    """A batch one poller is filling (sqs_pollers): invoked when full or at ``due`` (window end + lateness)."""

    messages: list[Any]
    opened_at: float
    due: float


@dataclass
class DeliveryOptions:
    duplicate_probability: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)
    latency: float = DEFAULT_LATENCY
    loss_probability: float = 0.0  # issue 11: AWS default is > 0 (EventBridge is best effort)
    sns_loss_probability: float = 0.0  # issue 11: AWS default is > 0 (rare)
    throttle_backoff: bool = True  # issue 11: AWS default
    sqs_pollers: bool = True  # issue 11: AWS default
    batch_lateness: float = 0.0  # issue 11: AWS default is > 0 (a window is a maximum wait, not a promise)


class Delivery:
    """Lambda's invoke machinery for one emulated account."""

    def __init__(self, aws: Account) -> None:
        self.aws = aws
        self.lock = threading.RLock()
        self.functions: dict[str, Function] = {}
        self.mappings: list[QueueMapping] = []
        self.options = DeliveryOptions()
        self.throttles: list[Throttle] = []  # aws.throttles
        self.lost: list[LostEvent] = []  # aws.lost_events

    # -- public API (bound onto LocalAWS) ----------------------------------------------
    def register_function(
        self,
        name: str,
        handler: Handler,
        *,
        timeout: float = 300.0,
        reserved_concurrency: int | None = None,
        max_retries: int = 2,
        memory: int = 128,
        max_event_age: float = DEFAULT_MAX_EVENT_AGE,
    ) -> str:
        """Stand ``handler(event, context)`` in for a Lambda function; returns its ARN.

        ``max_event_age``: Lambda's ``MaximumEventAgeInSeconds`` (used with ``throttle_backoff``).
        With ``LocalAWS(lambda_limits=True)``, a timeout over 900 s, retries outside 0-2 or an event
        age outside 60-21600 s is refused (``LambdaLimitError``), as Lambda's API refuses it.
        """
        if getattr(self.aws, "lambda_limits", False):  # issue 11: AWS default is True
            if not 1 <= timeout <= MAX_TIMEOUT:
                raise _constraint(
                    int(timeout),
                    "timeout",
                    "less than or equal to 900" if timeout > 1 else "greater than or equal to 1",
                )
            if not 0 <= max_retries <= 2:
                raise _constraint(max_retries, "maximumRetryAttempts", "less than or equal to 2")
            if not MIN_EVENT_AGE <= max_event_age <= DEFAULT_MAX_EVENT_AGE:
                bound = (
                    "less than or equal to 21600" if max_event_age > MIN_EVENT_AGE else "greater than or equal to 60"
                )
                raise _constraint(int(max_event_age), "maximumEventAgeInSeconds", bound)
        arn = f"arn:aws:lambda:{self.aws.region}:{self.aws.account}:function:{name}"
        self.functions[name] = Function(
            name,
            arn,
            handler,
            float(timeout),
            reserved_concurrency,
            max_retries,
            memory,
            max_event_age=float(max_event_age),
        )
        return arn

    def map_queue(
        self,
        queue: str,
        function_name: str,
        batch_size: int = 10,
        batching_window: float = 0.0,
        max_concurrency: int | None = None,
        *,
        report_batch_item_failures: bool = True,
    ) -> QueueMapping:
        """An SQS event source mapping from ``queue`` (URL, ARN or name) to a registered function.

        With ``LocalAWS(lambda_limits=True)``: ``max_concurrency`` None or 2-1000, ``batch_size``
        1-10000 and over 10 only with ``batching_window >= 1``, ``batching_window`` 0-300 s.
        """
        if function_name not in self.functions:
            raise ValueError(f"function {function_name!r} is not registered; call aws.register_function first")
        if getattr(self.aws, "lambda_limits", False):  # issue 11: AWS default is True
            check_mapping_limits(batch_size, batching_window, max_concurrency)
        name = queue.rstrip("/").split("/")[-1].split(":")[-1]
        backend = self.sqs()
        arn = backend.get_queue(name).queue_arn
        mapping = QueueMapping(
            uuid=self.new_uuid(),
            queue_name=name,
            queue_arn=arn,
            function=function_name,
            batch_size=batch_size,
            batching_window=float(batching_window),
            max_concurrency=max_concurrency,
            report_batch_item_failures=report_batch_item_failures,
        )
        self.mappings.append(mapping)
        self.trigger(mapping)
        return mapping

    def delivery_options(
        self,
        duplicate_probability: float = 0.0,
        delay: tuple[float, float] = (0.0, 0.0),
        latency: float = DEFAULT_LATENCY,
        *,
        loss_probability: float = 0.0,  # issue 11: AWS default is > 0
        sns_loss_probability: float = 0.0,  # issue 11: AWS default is > 0
        throttle_backoff: bool = True,  # issue 11: AWS default
        sqs_pollers: bool = True,  # issue 11: AWS default
        batch_lateness: float = 0.0,  # issue 11: AWS default is > 0
    ) -> None:
        """At-least-once: deliver some async events twice, and/or late by ``uniform(*delay)`` s.

        Issue 11 (module docstring): ``loss_probability`` drops lifecycle notifications on the
        EventBridge path (to Lambda and queue targets), ``sns_loss_probability`` SNS deliveries to
        Lambda; ``throttle_backoff`` requeues throttled async events with 1 s-5 min backoff and
        discards them past the function's maximum event age; ``sqs_pollers`` serves mappings with
        several pollers (concurrent partial batches), ``batch_lateness`` delays gathered batches by
        up to that many seconds. Each call resets every option not given.
        """
        self.options = DeliveryOptions(
            duplicate_probability,
            (float(delay[0]), float(delay[1])),
            float(latency),
            loss_probability=float(loss_probability),
            sns_loss_probability=float(sns_loss_probability),
            throttle_backoff=bool(throttle_backoff),
            sqs_pollers=bool(sqs_pollers),
            batch_lateness=float(batch_lateness),
        )

    def lose(self, channel: str, target: str, event: Any) -> bool:
        """Whether this delivery is lost (best effort); records it in ``aws.lost_events``."""
        p = self.options.loss_probability if channel == "eventbridge" else self.options.sns_loss_probability
        if p <= 0 or self.aws.rng.random() >= p:
            return False
        self.lost.append(LostEvent(self.now, channel, target, copy.deepcopy(event)))
        return True

    # -- helpers ----------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.aws.clock.now()

    def new_uuid(self) -> str:
        return new_uuid(self.aws)

    def sqs(self) -> Any:
        from moto.sqs.models import sqs_backends

        return sqs_backends[self.aws.account][self.aws.region]

    def function_for_arn(self, arn: str) -> Function | None:
        parts = arn.split(":")
        if len(parts) < 7 or parts[2] != "lambda":
            return None
        return self.functions.get(parts[6])

    def start(self, body: Callable[[], None], name: str, at: float | None = None) -> None:
        """Run ``body`` as a task (simulated time) or a thread (wall clock), now or at ``at``.

        Pending deliveries are tasks, not bare timers, so ``clock.run()`` waits for them.
        """
        clock = self.aws.clock
        if hasattr(clock, "spawn"):
            clock.spawn(body, at=at, name=name)
        elif at is None or at <= clock.now():
            threading.Thread(target=body, name=name, daemon=True).start()
        else:
            clock.call_at(at, lambda: threading.Thread(target=body, name=name, daemon=True).start())

    # -- asynchronous invocation (EventBridge, SNS) -----------------------------------
    def invoke_async(self, function_arn: str, event: dict[str, Any], source: str) -> None:
        fn = self.function_for_arn(function_arn)
        if fn is None:
            name = function_arn.split(":")[-1]
            self.aws.invocations.append(
                Invocation(self.now, name, source, summarize(event, source), "no-such-function", event=event)
            )
            return
        opts = self.options
        copies = 2 if opts.duplicate_probability and self.aws.rng.random() < opts.duplicate_probability else 1
        for _ in range(copies):
            late = self.aws.rng.uniform(*opts.delay) if opts.delay[1] > 0 else 0.0
            item = AsyncItem(json.loads(json.dumps(event)), source)
            self.start(lambda item=item: self.dispatch(fn, item), f"{fn.name}-{source}", self.now + opts.latency + late)

    def dispatch(self, fn: Function, item: AsyncItem) -> None:
        """An async event arrives at the function: run it, or queue it when throttled."""
        with self.lock:
            if item.queued_at is None:
                item.queued_at = self.now
            if self.options.throttle_backoff:  # issue 11: AWS default is True
                if self.now - item.queued_at > fn.max_event_age:
                    self.aws.dead_letters.append(
                        DeadLetter(self.now, fn.name, item.source, item.event, item.attempt, "EventAgeExceeded")
                    )
                    return
                if fn.reserved_concurrency is not None and fn.running >= fn.reserved_concurrency:
                    self.throttle(fn, item)
                    return
            elif fn.reserved_concurrency is not None and fn.running >= fn.reserved_concurrency:
                fn.backlog.append(item)  # throttled: the kind model keeps async events queued in order
                return
            fn.running += 1
        self.run_async(fn, item)

    def throttle(self, fn: Function, item: AsyncItem) -> None:
        """Back to Lambda's internal queue: retry after 1 s, doubling to at most 5 min, jittered (no set order)."""
        base = min(THROTTLE_BACKOFF_MAX, THROTTLE_BACKOFF_FIRST * 2.0**item.throttles)
        wait = min(THROTTLE_BACKOFF_MAX, base * self.aws.rng.uniform(1.0, 1.5))
        item.throttles += 1
        retry_at = self.now + wait
        self.throttles.append(Throttle(self.now, fn.name, item.source, retry_at, item.event))
        self.start(lambda: self.dispatch(fn, item), f"{fn.name}-throttled", retry_at)

    def run_async(self, fn: Function, item: AsyncItem) -> None:
        """Run one async event in the current task (its slot is already taken); retry or dead-letter."""
        record = self.call(fn, item.event, item.source, item.attempt)
        with self.lock:
            fn.running -= 1
            if record.outcome in ("error", "timeout"):
                if item.attempt < fn.max_retries:
                    delay = ASYNC_RETRY_DELAYS[min(item.attempt, len(ASYNC_RETRY_DELAYS) - 1)]
                    retry = AsyncItem(item.event, item.source, item.attempt + 1, queued_at=item.queued_at)
                    self.start(lambda: self.dispatch(fn, retry), f"{fn.name}-retry", self.now + delay)
                else:
                    self.aws.dead_letters.append(
                        DeadLetter(self.now, fn.name, item.source, item.event, item.attempt + 1, record.error)
                    )
            self.release(fn)

    def release(self, fn: Function) -> None:
        """A slot of ``fn`` became free: start queued async events, let mappings poll."""
        while fn.backlog and (fn.reserved_concurrency is None or fn.running < fn.reserved_concurrency):
            queued = fn.backlog.popleft()
            fn.running += 1
            self.start(lambda queued=queued: self.run_async(fn, queued), f"{fn.name}-{queued.source}")
        for mapping in self.mappings:
            if mapping.function == fn.name:
                self.trigger(mapping, at=self.now)

    # -- one call ---------------------------------------------------------------------
    def call(self, fn: Function, event: dict[str, Any], source: str, attempt: int) -> Invocation:
        """Run the handler in the current task with a context; kill it at the timeout."""
        clock = self.aws.clock
        start = clock.now()
        record = Invocation(start, fn.name, source, summarize(event, source), "ok", attempt, event=event)
        record.request_id = self.new_uuid()
        context = LambdaContext(
            function_name=fn.name,
            invoked_function_arn=fn.arn,
            aws_request_id=record.request_id,
            memory_limit_in_mb=fn.memory,
            deadline=start + fn.timeout,
            clock=clock,
            log_group_name=f"/aws/lambda/{fn.name}",
        )
        task = clock.current_task() if hasattr(clock, "current_task") else None
        if task is not None:
            task.kill(f"Task timed out after {fn.timeout:.2f} seconds", at=start + fn.timeout)
        try:
            record.response = fn.handler(event, context)
        except TaskKilled as exc:
            record.outcome, record.error = "timeout", str(exc)
        except Exception as exc:  # noqa: BLE001 - a failed invocation is recorded, as Lambda does
            record.outcome, record.error = "error", f"{type(exc).__name__}: {exc}"
        if record.outcome == "ok" and task is None and clock.now() - start > fn.timeout:
            record.outcome, record.error = "timeout", f"Task timed out after {fn.timeout:.2f} seconds"
        record.ended_at = clock.now()
        self.aws.invocations.append(record)
        return record

    # -- EventBridge and SNS sources --------------------------------------------------
    def eventbridge_target(self, target: dict[str, Any], event: dict[str, Any]) -> None:
        self.invoke_async(target["Arn"], event, "eventbridge")

    def sns_message(
        self, subscription: Any, message: str, message_id: str, subject: str | None, attributes: Any
    ) -> None:
        record = {
            "EventVersion": "1.0",
            "EventSubscriptionArn": subscription.arn,
            "EventSource": "aws:sns",
            "Sns": {
                "SignatureVersion": "1",
                "Timestamp": iso(self.now, millis=True),
                "Signature": "EXAMPLE",
                "SigningCertUrl": "https://sns.amazonaws.com/SimpleNotificationService-emulated.pem",
                "MessageId": message_id,
                "Message": message,
                "MessageAttributes": {
                    k: {"Type": v.get("Type"), "Value": v.get("Value")} for k, v in (attributes or {}).items()
                },
                "Type": "Notification",
                "UnsubscribeUrl": "https://sns.amazonaws.com/?Action=Unsubscribe",
                "TopicArn": subscription.topic.arn,
                "Subject": subject,
            },
        }
        self.invoke_async(subscription.endpoint, {"Records": [record]}, "sns")

    # -- SQS event source mappings ----------------------------------------------------
    def message_added(self, queue_name: str) -> None:
        for mapping in self.mappings:
            if mapping.queue_name == queue_name:
                self.trigger(mapping)

    def trigger(self, mapping: QueueMapping, at: float | None = None) -> None:
        """Make sure the mapping polls at ``at`` (default: after the delivery latency)."""
        when = self.now + self.options.latency if at is None else at
        with self.lock:
            if mapping.next_poll is not None and mapping.next_poll <= when:
                return
            mapping.next_poll = when
        self.start(lambda: self.poll(mapping, when), f"poll-{mapping.queue_name}", when)

    def poll(self, mapping: QueueMapping, scheduled: float) -> None:
        """One look of the mapping's poller(s) at the queue (scheduled by ``trigger``): gather messages into
        batches, start what a free slot allows, and wake again when a gathered batch is due or a message becomes
        visible. Messages a running batch holds are not waited for: the batch's end polls again."""
        with self.lock:
            if mapping.next_poll != scheduled or mapping not in self.mappings:
                return
            mapping.next_poll = None
            fn = self.functions[mapping.function]
            backend = self.sqs()
            try:
                queue = backend.get_queue(mapping.queue_name)
            except Exception:  # noqa: BLE001 - a deleted queue stops its mapping
                return
            now = self.now
            gather = self._gather_pollers if self.options.sqs_pollers else self._gather_one
            upcoming = gather(mapping, fn, backend, queue, now)
            if upcoming is None:
                return
            upcoming += [
                max(m.visible_at, m.delayed_until) / 1000.0
                for m in queue._messages
                if max(m.visible_at, m.delayed_until) / 1000.0 > now and m.id not in mapping.inflight
            ]
            if upcoming:
                self.trigger(mapping, at=min(upcoming) + 0.001)

    def _gather_one(
        self, mapping: QueueMapping, fn: Function, backend: Any, queue: Any, now: float
    ) -> list[float] | None:
        """One poller: a batch of up to ``batch_size`` at a time, each started at once, while slots are free; a
        partial batch waits for the batching window (returns None: the window's end polls again)."""
        limit = mapping.max_concurrency or DEFAULT_SQS_CONCURRENCY
        while mapping.running < limit and (fn.reserved_concurrency is None or fn.running < fn.reserved_concurrency):
            visible = len(queue.messages)
            if visible == 0:
                break
            if mapping.batching_window > 0 and visible < mapping.batch_size:
                if mapping.window_deadline is None:
                    mapping.window_deadline = self.now + mapping.batching_window
                if self.now < mapping.window_deadline:
                    self.trigger(mapping, at=mapping.window_deadline)
                    return None
            mapping.window_deadline = None
            messages = backend.receive_message(
                mapping.queue_name,
                mapping.batch_size,
                wait_seconds_timeout=0,
                visibility_timeout=int(queue.visibility_timeout),
            )
            if not messages:
                break
            mapping.inflight.update(m.id for m in messages)
            self._start_batch(mapping, fn, messages)
        return []

    def _gather_pollers(
        self, mapping: QueueMapping, fn: Function, backend: Any, queue: Any, now: float
    ) -> list[float] | None:
        """Several pollers (sqs_pollers): each fills its own batch from sampled receives of up to 10.

        A poller holds at most one batch; pollers gathering plus batches running never exceed the
        mapping's maximum concurrency. A batch starts when full or when its window ends, plus up to
        ``batch_lateness`` s, and only when the function has a free slot (a free slot re-polls). Returns when
        the batches still gathering are due.
        """
        rng = self.aws.rng
        limit = mapping.max_concurrency or DEFAULT_SQS_CONCURRENCY
        lateness = self.options.batch_lateness
        while len(queue.messages) > 0:
            open_batches = [g for g in mapping.gathering if len(g.messages) < mapping.batch_size]
            can_open = mapping.running + len(mapping.gathering) < limit
            if not open_batches and not can_open:
                break
            if open_batches and (not can_open or rng.random() < 0.5):
                batch = rng.choice(open_batches)
            else:
                batch = Gathered([], now, now + mapping.batching_window + rng.uniform(0.0, lateness))
                mapping.gathering.append(batch)
            room = mapping.batch_size - len(batch.messages)
            want = rng.randint(1, max(1, min(SQS_RECEIVE_MAX, room, len(queue.messages))))
            messages = backend.receive_message(
                mapping.queue_name, want, wait_seconds_timeout=0, visibility_timeout=int(queue.visibility_timeout)
            )
            if not messages:
                if not batch.messages:
                    mapping.gathering.remove(batch)
                break
            batch.messages.extend(messages)
            mapping.inflight.update(m.id for m in messages)
            if len(batch.messages) >= mapping.batch_size:
                batch.due = min(batch.due, now + rng.uniform(0.0, lateness))
        for batch in list(mapping.gathering):
            if batch.due > now:
                continue
            if fn.reserved_concurrency is not None and fn.running >= fn.reserved_concurrency:
                break  # the slot's release polls again
            mapping.gathering.remove(batch)
            self._start_batch(mapping, fn, batch.messages)
        return [g.due for g in mapping.gathering if g.due > now]

    def _start_batch(self, mapping: QueueMapping, fn: Function, messages: list[Any]) -> None:
        """Invoke ``fn`` with ``messages`` as one SQS event (a slot of the mapping and of the function taken)."""
        mapping.running += 1
        fn.running += 1
        event = {"Records": [self.sqs_record(m, mapping) for m in messages]}
        self.start(lambda: self.run_batch(mapping, fn, event, messages), f"{fn.name}-sqs")

    def sqs_record(self, message: Any, mapping: QueueMapping) -> dict[str, Any]:
        return {
            "messageId": message.id,
            "receiptHandle": message.receipt_handle,
            "body": message.body,
            "attributes": {
                "ApproximateReceiveCount": str(message.approximate_receive_count),
                "SentTimestamp": str(message.sent_timestamp),
                "SenderId": str(message.sender_id),
                "ApproximateFirstReceiveTimestamp": str(message.approximate_first_receive_timestamp),
            },
            "messageAttributes": {},
            "md5OfBody": message.body_md5,
            "eventSource": "aws:sqs",
            "eventSourceARN": mapping.queue_arn,
            "awsRegion": self.aws.region,
        }

    def run_batch(self, mapping: QueueMapping, fn: Function, event: dict[str, Any], messages: list[Any]) -> None:
        record = self.call(fn, event, "sqs", 0)
        with self.lock:
            mapping.running -= 1
            fn.running -= 1
            failed = self.failed_items(mapping, record, messages)
            if record.outcome == "ok" and failed:
                record.outcome = "partial"
            backend = self.sqs()
            for message in messages:
                if message.id not in failed:
                    try:
                        backend.delete_message(mapping.queue_name, message.receipt_handle)
                    except Exception:  # noqa: BLE001 - already gone (deleted by the handler, or expired)
                        log.debug("could not delete %s", message.id)
            mapping.inflight.difference_update(m.id for m in messages)
            self.release(fn)
        # Failed items wait for their visibility timeout, new messages may have queued meanwhile.
        self.trigger(mapping)

    @staticmethod
    def failed_items(mapping: QueueMapping, record: Invocation, messages: list[Any]) -> set[str]:
        """Message ids that stay on the queue (Lambda's ReportBatchItemFailures rules)."""
        everything = {m.id for m in messages}
        if record.outcome != "ok":
            return everything
        response = record.response
        if not mapping.report_batch_item_failures or not isinstance(response, dict):
            return set()
        failures = response.get("batchItemFailures")
        if not failures:
            return set()
        ids = set()
        for item in failures:
            ident = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not ident or ident not in everything:
                return everything  # an invalid report fails the whole batch
            ids.add(ident)
        return ids


def check_mapping_limits(batch_size: int, batching_window: float, max_concurrency: int | None) -> None:
    """Raise ``LambdaLimitError`` where CreateEventSourceMapping would refuse these values (standard queue)."""
    if max_concurrency is not None and not 2 <= max_concurrency <= 1000:
        bound = "less than or equal to 1000" if max_concurrency > 2 else "greater than or equal to 2"
        raise _constraint(max_concurrency, "scalingConfig.maximumConcurrency", bound)
    if not 1 <= batch_size <= 10000:
        bound = "less than or equal to 10000" if batch_size > 1 else "greater than or equal to 1"
        raise _constraint(batch_size, "batchSize", bound)
    if not 0 <= batching_window <= 300:
        bound = "less than or equal to 300" if batching_window > 0 else "greater than or equal to 0"
        raise _constraint(batching_window, "maximumBatchingWindowInSeconds", bound)
    if batch_size > 10 and batching_window < 1:
        # InvalidParameterValueException, as quoted in serverless/serverless#8989.
        raise LambdaLimitError(
            "InvalidParameterValueException",
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
        )


def summarize(event: dict[str, Any], source: str) -> str:
    """A one-line description of an event, for ``aws.invocations``."""
    if source == "eventbridge":
        detail = event.get("detail") or {}
        return f"{event.get('detail-type')} {detail.get('EC2InstanceId', '')}".strip()
    records = event.get("Records") or []
    if source == "sns" and records:
        return str(records[0].get("Sns", {}).get("Message", ""))[:120]
    return f"{len(records)} record(s)"


# ---------------------------------------------------------------------------------------
# Patches (installed once per process)
# ---------------------------------------------------------------------------------------
_INSTALLED = False


def _delivery() -> Delivery | None:
    running = state.running()
    return None if running is None else getattr(running, "_delivery", None)


def install(aws: Account) -> Delivery:
    """Attach the Lambda runner to ``aws`` and patch moto (idempotent)."""
    runner = Delivery(aws)
    aws._delivery = runner  # type: ignore[attr-defined]
    for name in ("invocations", "dead_letters"):
        if not hasattr(aws, name):
            setattr(aws, name, [])
    aws.throttles = runner.throttles  # type: ignore[attr-defined]
    aws.lost_events = runner.lost  # type: ignore[attr-defined]
    aws.register_function = runner.register_function  # type: ignore[attr-defined]
    aws.map_queue = runner.map_queue  # type: ignore[attr-defined]
    aws.delivery_options = runner.delivery_options  # type: ignore[attr-defined]
    _patch()
    return runner


def _patch() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    _patch_eventbridge()
    _patch_sns()
    _patch_sqs()


# -- EventBridge: lambda targets go to the runner, the rest to moto ----------------------------------
def _patch_eventbridge() -> None:
    from moto.events.models import Rule

    original_send = Rule.send_to_targets

    def send_to_targets(self: Rule, original_event: Any, transform_input: bool = True) -> None:
        runner = _delivery()
        if runner is None:
            return original_send(self, original_event, transform_input)
        lambda_targets = [t for t in self.targets if t["Arn"].split(":")[2:3] == ["lambda"]]
        # moto's default template drops "account" from events sent to SQS: send the whole event.
        plain_sqs = [
            t
            for t in self.targets
            if t["Arn"].split(":")[2:3] == ["sqs"] and not t.get("InputTransformer") and not t.get("Input")
        ]
        if self.state != "DISABLED" and self.event_pattern.matches_event(original_event):
            for target in plain_sqs:
                event = _delivered(runner, target, original_event)
                if event is not None:
                    group_id = target.get("SqsParameters", {}).get("MessageGroupId")
                    self._send_to_sqs_queue(target["Arn"].split(":")[5], event, group_id)
            for target in lambda_targets:
                event = _delivered(runner, target, original_event)  # None: best effort, this delivery never happens
                if event is not None:
                    runner.eventbridge_target(target, _lambda_input(target, event, transform_input))
        others = [t for t in self.targets if t not in lambda_targets and t not in plain_sqs]
        if others:
            saved = self.targets
            self.targets = others
            try:
                original_send(self, original_event, transform_input)
            finally:
                self.targets = saved
        return None

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]


def _delivered(runner: Delivery, target: dict[str, Any], original_event: Any) -> dict[str, Any] | None:
    """The event as ``target`` receives it, or None when this delivery of an Auto Scaling event is lost."""
    event = dict(original_event)
    event.pop("ingestion-time", None)
    if event.get("source") == "aws.autoscaling" and runner.lose("eventbridge", target["Arn"], event):
        return None
    return event


def _lambda_input(target: dict[str, Any], event: dict[str, Any], transform_input: bool) -> Any:
    """What a Lambda target is invoked with: the event (its time as text), transformed, or the target's Input."""
    from moto.core.utils import iso_8601_datetime_without_milliseconds, utcfromtimestamp
    from moto.events.models import EventTemplateParser

    if isinstance(event.get("time"), (int, float)):
        event["time"] = iso_8601_datetime_without_milliseconds(utcfromtimestamp(float(event["time"])))
    if transform_input and target.get("InputTransformer"):
        transformer = target["InputTransformer"]
        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,
        )
    if target.get("Input"):
        return json.loads(target["Input"])
    return event


# -- SNS: lambda subscriptions go to the runner -----------------------------------------------------
def _patch_sns() -> None:
    from moto.sns.models import Subscription

    original_publish = Subscription.publish

    def publish(
        self: Subscription,
        message: str,
        message_id: str,
        subject: str | None = None,
        message_attributes: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        runner = _delivery()
        if runner is None or self.protocol != "lambda":
            return original_publish(self, message, message_id, subject, message_attributes, *args, **kwargs)
        matcher = self._filter_policy_matcher
        if matcher is not None and not matcher.matches(message_attributes, message):
            return None
        if runner.lose("sns", self.endpoint, message):
            return None
        runner.sns_message(self, message, message_id, subject, message_attributes)
        return None

    Subscription.publish = publish  # type: ignore[method-assign]


# -- SQS: the emulator's clock, mapped queues, long polling in simulated time --------------------------
def _patch_sqs() -> None:
    from moto.sqs import models as sqs_models

    original_unix_time = sqs_models.unix_time
    original_unix_time_millis = sqs_models.unix_time_millis

    def unix_time(*args: Any) -> float:
        running = state.running()
        return running.clock.now() if running is not None and not args else original_unix_time(*args)

    def unix_time_millis(*args: Any) -> float:
        running = state.running()
        return running.clock.now() * 1000.0 if running is not None and not args else original_unix_time_millis(*args)

    sqs_models.unix_time = unix_time
    sqs_models.unix_time_millis = unix_time_millis

    original_add = sqs_models.Queue.add_message

    def add_message(self: Any, message: Any) -> None:
        original_add(self, message)
        runner = _delivery()
        if runner is not None:
            runner.message_added(self.name)

    sqs_models.Queue.add_message = add_message  # type: ignore[method-assign]
    _patch_sqs_long_poll(sqs_models.SQSBackend)


def _patch_sqs_long_poll(backend_class: Any) -> None:
    original_receive = backend_class.receive_message

    def receive_message(
        self: Any, queue_name: str, count: int, wait_seconds_timeout: int, *args: Any, **kwargs: Any
    ) -> Any:
        running = state.running()
        clock = getattr(running, "clock", None)
        if running is None or clock is None or not wait_seconds_timeout:
            return original_receive(self, queue_name, count, wait_seconds_timeout, *args, **kwargs)
        # A long poll: look, then wait (simulated time inside a task; wall time in the server) with the
        # account lock given up, until a message arrives or the wait is over. moto's own loop would spin
        # on the wall clock, and inside the lock every other call would wait for it (AWS serves them).
        simulated = hasattr(clock, "spawn")
        end = clock.now() + float(wait_seconds_timeout)
        while True:
            result = original_receive(self, queue_name, count, 0, *args, **kwargs)
            remaining = end - clock.now()
            if result or remaining <= 0 or (simulated and clock.current_task() is None):
                return result
            with state.released(running.lock):
                clock.sleep(min(1.0 if simulated else 0.05, math.ceil(remaining * 1000) / 1000))

    backend_class.receive_message = receive_message
