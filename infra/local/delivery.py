"""Invoke a Python Lambda handler the way the Lambda service does, on the emulator's clock.

A registered function (``aws.register_function``) stands in for a deployed Lambda. Events
reach it from EventBridge rule targets and SNS ``lambda`` subscriptions (asynchronous: one
event per invocation, queued at reserved concurrency, retried, then dead-lettered) and from
SQS event source mappings (``aws.map_queue``: batches, partial batch responses, visibility
timeout, redrive). moto would hand these to docker; here they run as ``SimClock`` tasks.

Example:
    >>> with LocalAWS(clock=SimClock()) as aws:              # doctest: +SKIP
    ...     arn = aws.register_function("coordinator", handler, timeout=60)
    ...     aws.map_queue(queue_url, "coordinator", batch_size=10, batching_window=2.0)
    ...     aws.clock.advance(60)
    ...     [i.outcome for i in aws.invocations]
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infra.local.autoscaling import iso
from infra.local.clock import TaskKilled

if TYPE_CHECKING:
    from infra.local.aws import LocalAWS

log = logging.getLogger(__name__)

ASYNC_RETRY_DELAYS = (60.0, 120.0)  # Lambda async: ~1 min before the first retry, ~2 min before the second
DEFAULT_LATENCY = 0.5
DEFAULT_SQS_CONCURRENCY = 1000  # no maximum concurrency: bounded by the account, not the mapping

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


@dataclass
class AsyncItem:
    event: dict[str, Any]
    source: str
    attempt: int = 0


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


@dataclass
class DeliveryOptions:
    duplicate_probability: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)
    latency: float = DEFAULT_LATENCY


class Delivery:
    """Lambda's invoke machinery for one emulated account."""

    def __init__(self, aws: LocalAWS) -> None:
        self.aws = aws
        self.lock = threading.RLock()
        self.functions: dict[str, Function] = {}
        self.mappings: list[QueueMapping] = []
        self.options = DeliveryOptions()

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
    ) -> str:
        """Stand ``handler(event, context)`` in for a Lambda function; returns its ARN."""
        arn = f"arn:aws:lambda:{self.aws.region}:{self.aws.account}:function:{name}"
        self.functions[name] = Function(name, arn, handler, float(timeout), reserved_concurrency, max_retries, memory)
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
        """An SQS event source mapping from ``queue`` (URL, ARN or name) to a registered function."""
        if function_name not in self.functions:
            raise ValueError(f"function {function_name!r} is not registered; call aws.register_function first")
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
    ) -> None:
        """At-least-once: deliver some async events twice, and/or late by ``uniform(*delay)`` s."""
        self.options = DeliveryOptions(duplicate_probability, (float(delay[0]), float(delay[1])), float(latency))

    # -- helpers ----------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.aws.clock.now()

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self.aws.rng.getrandbits(128), version=4))

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
            if fn.reserved_concurrency is not None and fn.running >= fn.reserved_concurrency:
                fn.backlog.append(item)  # throttled: Lambda keeps async events queued
                return
            fn.running += 1
        self.run_async(fn, item)

    def run_async(self, fn: Function, item: AsyncItem) -> None:
        """Run one async event in the current task (its slot is already taken); retry or dead-letter."""
        record = self.call(fn, item.event, item.source, item.attempt)
        with self.lock:
            fn.running -= 1
            if record.outcome in ("error", "timeout"):
                if item.attempt < fn.max_retries:
                    delay = ASYNC_RETRY_DELAYS[min(item.attempt, len(ASYNC_RETRY_DELAYS) - 1)]
                    retry = AsyncItem(item.event, item.source, item.attempt + 1)
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
                        return
                mapping.window_deadline = None
                messages = backend.receive_message(
                    mapping.queue_name,
                    mapping.batch_size,
                    wait_seconds_timeout=0,
                    visibility_timeout=int(queue.visibility_timeout),
                )
                if not messages:
                    break
                mapping.running += 1
                fn.running += 1
                mapping.inflight.update(m.id for m in messages)
                event = {"Records": [self.sqs_record(m, mapping) for m in messages]}
                self.start(lambda e=event, ms=messages: self.run_batch(mapping, fn, e, ms), f"{fn.name}-sqs")
            # Nothing to do now: wake when the next in-flight or delayed message becomes visible.
            # Messages a running batch holds are not waited for here: the batch's end polls again.
            upcoming = [
                max(m.visible_at, m.delayed_until) / 1000.0
                for m in queue._messages
                if max(m.visible_at, m.delayed_until) / 1000.0 > self.now and m.id not in mapping.inflight
            ]
            if upcoming:
                self.trigger(mapping, at=min(upcoming) + 0.001)

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
    from infra.local import aws as aws_module

    running = aws_module._CURRENT
    return None if running is None else getattr(running, "_delivery", None)


def install(aws: LocalAWS) -> Delivery:
    """Attach the Lambda runner to ``aws`` and patch moto (idempotent)."""
    runner = Delivery(aws)
    aws._delivery = runner  # type: ignore[attr-defined]
    for name in ("invocations", "dead_letters"):
        if not hasattr(aws, name):
            setattr(aws, name, [])
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
    from moto.core.utils import iso_8601_datetime_without_milliseconds, utcfromtimestamp
    from moto.events.models import EventTemplateParser, Rule
    from moto.sns.models import Subscription
    from moto.sqs import models as sqs_models

    # -- EventBridge: lambda targets go to the runner, the rest to moto --------------
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
                event = dict(original_event)
                event.pop("ingestion-time", None)
                group_id = target.get("SqsParameters", {}).get("MessageGroupId")
                self._send_to_sqs_queue(target["Arn"].split(":")[5], event, group_id)
            for target in lambda_targets:
                event = dict(original_event)
                event.pop("ingestion-time", None)
                if isinstance(event.get("time"), (int, float)):
                    event["time"] = iso_8601_datetime_without_milliseconds(utcfromtimestamp(float(event["time"])))
                if transform_input and target.get("InputTransformer"):
                    transformer = target["InputTransformer"]
                    event = EventTemplateParser.parse(
                        input_template=transformer.get("InputTemplate"),
                        input_paths_map=transformer.get("InputPathsMap", {}),
                        event=event,
                    )
                elif target.get("Input"):
                    event = json.loads(target["Input"])
                runner.eventbridge_target(target, event)
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

    # -- SNS: lambda subscriptions go to the runner ---------------------------------
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
        runner.sns_message(self, message, message_id, subject, message_attributes)
        return None

    Subscription.publish = publish  # type: ignore[method-assign]

    # -- SQS: the emulator's clock, mapped queues, long polling in simulated time ---
    original_unix_time = sqs_models.unix_time
    original_unix_time_millis = sqs_models.unix_time_millis

    def unix_time(*args: Any) -> float:
        from infra.local import aws as aws_module

        running = aws_module._CURRENT
        return running.clock.now() if running is not None and not args else original_unix_time(*args)

    def unix_time_millis(*args: Any) -> float:
        from infra.local import aws as aws_module

        running = aws_module._CURRENT
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

    original_receive = sqs_models.SQSBackend.receive_message

    def receive_message(
        self: Any, queue_name: str, count: int, wait_seconds_timeout: int, *args: Any, **kwargs: Any
    ) -> Any:
        from infra.local import aws as aws_module

        running = aws_module._CURRENT
        clock = getattr(running, "clock", None)
        if clock is None or not hasattr(clock, "spawn") or not wait_seconds_timeout:
            return original_receive(self, queue_name, count, wait_seconds_timeout, *args, **kwargs)
        # Simulated time: moto's long poll would spin on the wall clock. Poll, then sleep in
        # simulated time (inside a task), until a message arrives or the wait is over.
        end = clock.now() + float(wait_seconds_timeout)
        while True:
            result = original_receive(self, queue_name, count, 0, *args, **kwargs)
            remaining = end - clock.now()
            if result or remaining <= 0 or clock.current_task() is None:
                return result
            clock.sleep(min(1.0, math.ceil(remaining * 1000) / 1000))

    sqs_models.SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
