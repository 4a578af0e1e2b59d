"""Lambda entry point ``hook_handler.app.lambda_handler``: settings at cold start, clients, glue.

No business rule lives here. Settings are validated at import (the Lambda init phase), so a
bad setting fails before any AWS call with an error naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from hook_handler.clock import Clock, SystemClock
from hook_handler.coordinator import Coordinator, Outcome, Report
from hook_handler.events import Invocation, LifecycleEvent, parse_invocation
from hook_handler.exceptions import CoordinatorError, SettingsError
from hook_handler.lifecycle import AutoScaling
from hook_handler.retry import RetryPolicy
from hook_handler.route53 import Route53
from hook_handler.settings import Settings, load_settings
from hook_handler.telemetry import MetricUnit, logger, metrics, tracer

# botocore's retries are off: tenacity (hook_handler.retry) is the one retry layer, on our clock.
CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=15)
DEFAULT_BUDGET_SECONDS = 900.0  # when there is no Lambda context (CLI): Lambda's maximum


class InvocationFailed(CoordinatorError):
    """Raised for a non-batch invocation whose event must be retried (or dead-lettered)."""


@dataclass
class Clients:
    """The boto3 clients the coordinator uses, built once per cold start."""

    route53: Any
    autoscaling: Any
    ec2: Any
    secretsmanager: Any = None  # only with etcd_tls_secret / etcd_ca_secret
    iam: Any = None  # only with etcd_ca_secret: the members' role (etcd_member_role_path) for each secret's policy

    @classmethod
    def create(cls, session: Any | None = None, *, tls: bool = False) -> Clients:
        make = (session or boto3).client
        return cls(
            route53=make("route53", config=CLIENT_CONFIG),
            autoscaling=make("autoscaling", config=CLIENT_CONFIG),
            ec2=make("ec2", config=CLIENT_CONFIG),
            secretsmanager=make("secretsmanager", config=CLIENT_CONFIG) if tls else None,
            iam=make("iam", config=CLIENT_CONFIG) if tls else None,
        )


class Runtime:
    """Everything one Lambda sandbox keeps between invocations.

    Example (tests and the CLI build it the same way Lambda does):
        >>> # runtime = Runtime(load_settings(os.environ), Clients.create(), SystemClock())
        >>> # runtime.handle(event, context)
    """

    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        clock: Clock,
        *,
        region: str | None = None,
        etcd_transport: Any | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self.retries = 0

        def count_retry(what: str, exc: BaseException) -> None:
            self.retries += 1
            metrics.add_metric(name="Retries", unit=MetricUnit.Count, value=1)
            logger.info("retrying", extra={"call": what, "error": str(exc)[:200]})

        retry = RetryPolicy(clock, on_retry=count_retry)
        self.coordinator = Coordinator(
            settings,
            Route53(clients.route53, settings.r53_zone_id, retry, clock),
            AutoScaling(
                clients.autoscaling,
                clients.ec2,
                retry,
                clock,
                group_names=settings.asg_names,
                group_tags=settings.instance_tags,
            ),
            clock,
            logger=logger,
            metrics=metrics,
            region=self.region,
            membership=self._membership(settings, clients, clock, etcd_transport),
            certificates=self._certificates(settings, clients),
        )
        for warning in settings.warnings:
            logger.warning(warning)

    def take_snapshots(self, environ: Mapping[str, str], s3: Any | None = None) -> None:
        """With ``snapshot_bucket`` set (and etcd membership on), every scheduled reconcile ends with a snapshot round
        (``hook_handler.backup``: imported only then). Bad snapshot settings raise ``SettingsError``."""
        from hook_handler.backup.config import SnapshotConfig

        config = SnapshotConfig.load(environ)
        membership = self.coordinator.membership
        if not config.enabled or membership is None:
            return
        from hook_handler.backup.store import SnapshotStore
        from hook_handler.backup.take import SnapshotTaker

        store = SnapshotStore(
            s3 or boto3.client("s3", config=CLIENT_CONFIG),
            config.bucket,
            config.prefix,
            RetryPolicy(self.clock),
            self.clock,
            kms_key=config.kms_key,
        )
        self.coordinator.snapshots = SnapshotTaker(
            store,
            membership.transport,
            self.clock,
            interval=config.interval_seconds,
            tiers=config.tiers,
            logger=logger,
            metrics=metrics,
        )

    @staticmethod
    def _membership(
        settings: Settings, clients: Clients, clock: Clock, transport: Any | None, *, timeout: float = 5.0
    ) -> Any:
        if not settings.membership_enabled:
            return None
        from hook_handler.etcd import HttpTransport, Membership  # imported only when membership is on

        if transport is None:
            options: dict[str, Any] = {}
            if settings.etcd_tls_secret:
                from hook_handler.tls import load_client_tls

                secrets = clients.secretsmanager or boto3.client("secretsmanager", config=CLIENT_CONFIG)
                options = load_client_tls(secrets, settings.etcd_tls_secret).transport_options
            transport = HttpTransport(**options)
        return Membership(clock, transport, timeout=timeout)

    @staticmethod
    def _certificates(settings: Settings, clients: Clients) -> Any:
        if not settings.etcd_ca_secret:
            return None
        from hook_handler.certs import MemberCertificates  # cryptography itself loads on the first issue only

        return MemberCertificates(
            clients.secretsmanager or boto3.client("secretsmanager", config=CLIENT_CONFIG),
            settings.etcd_ca_secret,
            settings.etcd_member_secret_prefix,
            days=settings.etcd_member_cert_days,
            iam=clients.iam or boto3.client("iam", config=CLIENT_CONFIG),
            role_path=settings.etcd_member_role_path,
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, clock: Clock | None = None) -> Runtime:
        settings = load_settings(os.environ if environ is None else environ)
        logger.setLevel(settings.log_level)
        tls = (settings.membership_enabled and bool(settings.etcd_tls_secret)) or bool(settings.etcd_ca_secret)
        runtime = cls(settings, Clients.create(tls=tls), clock or SystemClock())
        runtime.take_snapshots(os.environ if environ is None else environ)
        return runtime

    def deadline(self, context: Any) -> float:
        """When this invocation must stop working: Lambda's deadline less the safety margin."""
        remaining = DEFAULT_BUDGET_SECONDS
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            remaining = context.get_remaining_time_in_millis() / 1000.0
        return self.clock.now() + remaining - self.settings.deadline_margin_seconds

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        """Handle one invocation; SQS batches get a partial batch response."""
        arn = getattr(context, "invoked_function_arn", "") or ""
        if arn.count(":") >= 5:
            self.coordinator.account = arn.split(":")[4]
        invocation = parse_invocation(event)
        for parsed in invocation.records:
            if parsed.error is not None:
                logger.error("unusable event", extra={"error": str(parsed.error), "item": parsed.item_id})
                metrics.add_metric(name="UnusableEvents", unit=MetricUnit.Count, value=1)
        events = [p.event for p in invocation.records if p.event is not None]
        report = self._run(invocation, events, context)
        if invocation.batch:
            return self._batch_response(event, invocation, report, context)
        failed = [p for p in invocation.records if p.error is not None] or [o for o in report.outcomes if not o.ok]
        if failed:
            raise InvocationFailed(f"event not settled: {_describe(failed)}")
        return report.to_dict()

    def _run(self, invocation: Invocation, events: list[LifecycleEvent], context: Any) -> Report:
        if not events and invocation.records:
            return Report()  # nothing usable: only errors to report
        return self.coordinator.run(events, self.deadline(context))

    def _batch_response(self, event: Any, invocation: Invocation, report: Report, context: Any) -> dict[str, Any]:
        from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

        bad: dict[str, str] = {}
        for parsed in invocation.records:
            if parsed.item_id is None:
                continue
            if parsed.error is not None:
                bad[parsed.item_id] = str(parsed.error)
            else:
                outcome = _outcome_of(report.outcomes, parsed.event)
                if outcome is not None and not outcome.ok:
                    bad[parsed.item_id] = f"{outcome.status}: {outcome.detail}"

        def record_handler(record: Any) -> None:
            if record.message_id in bad:
                raise InvocationFailed(bad[record.message_id])

        # A record that is not an object with a messageId cannot be reported (and crashes the batch
        # utility): it was logged as unusable above; the well-formed neighbours are judged on their own.
        records = [r for r in event["Records"] if isinstance(r, dict) and isinstance(r.get("messageId"), str)]
        # A batch whose every record failed is answered like any other: each one listed in batchItemFailures (SQS
        # redelivers them, then the failure queue takes them). powertools would raise instead, and the invocation
        # would end in a traceback that says nothing the log lines above did not.
        return process_partial_response(
            event={**event, "Records": records},
            record_handler=record_handler,
            processor=BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False),
            context=context,
        )


def _outcome_of(outcomes: list[Outcome], event: LifecycleEvent | None) -> Outcome | None:
    for outcome in outcomes:
        if outcome.event is event or outcome.event == event:
            return outcome
    return None


def _describe(failed: list[Any]) -> str:
    parts = []
    for item in failed[:5]:
        if isinstance(item, Outcome):
            parts.append(f"{item.event.instance_id}: {item.status} ({item.detail})")
        else:
            parts.append(str(item.error))
    return "; ".join(parts)


class PolicyRuntime:
    """The termination policy's sandbox: the coordinator's settings, read-only clients with short timeouts (AWS
    gives the policy two seconds), and no coordinator."""

    CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1)

    def __init__(
        self, settings: Settings, clients: Clients, clock: Clock, *, etcd_transport: Any | None = None
    ) -> None:
        from hook_handler.termination_policy import STATUS_SECONDS, TerminationPolicy

        self.clock = clock
        membership = Runtime._membership(settings, clients, clock, etcd_transport, timeout=STATUS_SECONDS)
        self.policy = TerminationPolicy(
            settings, clients.autoscaling, clients.ec2, clock, membership=membership, logger=logger
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, clock: Clock | None = None) -> PolicyRuntime:
        settings = load_settings(os.environ if environ is None else environ)
        logger.setLevel(settings.log_level)
        make = boto3.client
        clients = Clients(
            route53=None,
            autoscaling=make("autoscaling", config=cls.CLIENT_CONFIG),
            ec2=make("ec2", config=cls.CLIENT_CONFIG),
            secretsmanager=make("secretsmanager", config=CLIENT_CONFIG) if settings.etcd_tls_secret else None,
        )
        return cls(settings, clients, clock or SystemClock())

    def handle(self, event: Any, context: Any = None) -> dict[str, list[str]]:
        remaining = 2.0  # AWS's limit for a termination policy, when there is no Lambda context
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            remaining = context.get_remaining_time_in_millis() / 1000.0
        return self.policy.answer(event, self.clock.now() + remaining)


def _cold_start() -> Runtime | None:
    try:
        return Runtime.from_environment()
    except SettingsError as exc:
        logger.error("invalid settings", extra={"variable": exc.variable, "error": str(exc)})
        raise


# The same zip serves two functions: the coordinator, and the group's termination policy (its own function: the
# coordinator runs with reserved concurrency 1 and passes of minutes, and the group waits two seconds at most).
# Lambda names the handler in _HANDLER; the policy's sandbox builds no coordinator.
_POLICY_SANDBOX = os.environ.get("_HANDLER", "").endswith(".termination_policy_handler")
RUNTIME = _cold_start() if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and not _POLICY_SANDBOX else None
_TRACER = tracer(RUNTIME.settings.tracing) if RUNTIME else None


def _entry(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global RUNTIME
    if RUNTIME is None:  # imported outside Lambda (tests, CLI): build on first use
        RUNTIME = Runtime.from_environment()
    return RUNTIME.handle(event, context)


# The Lambda entry point: metrics flushed after every invocation; X-Ray only when `tracing` is on.
lambda_handler = metrics.log_metrics(_TRACER.capture_lambda_handler(_entry) if _TRACER else _entry)


POLICY_RUNTIME = (
    PolicyRuntime.from_environment() if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and _POLICY_SANDBOX else None
)


def termination_policy_handler(event: dict[str, Any], context: Any) -> dict[str, list[str]]:
    """The Auto Scaling group's custom termination policy (``{"InstanceIDs": [...]}``); see ``termination``."""
    global POLICY_RUNTIME
    if POLICY_RUNTIME is None:
        POLICY_RUNTIME = PolicyRuntime.from_environment()
    return POLICY_RUNTIME.handle(event, context)
