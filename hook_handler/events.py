"""Every way a lifecycle action can arrive, turned into one internal event type.

Sources: EventBridge (direct), SNS records, SQS bodies (raw lifecycle message or a whole
EventBridge event), direct invocation with the lifecycle fields, scheduled events and other
Auto Scaling events (meaning "reconcile now"), and the test notification (ignored).

Pure and stdlib-only: it sits on the cold-start path and is tested without AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

from hook_handler.exceptions import EventError


class Kind(str, Enum):  # noqa: UP042 - the lead's type; StrEnum would change str(kind)
    """What an event asks the coordinator to do, by meaning (warm pools included)."""

    JOIN = "join"  # an instance is entering the group's membership: add it, then complete
    LEAVE = "leave"  # an instance is leaving the group (terminating, or back to a warm pool): drop it, then complete
    PASS = "pass"  # a lifecycle action that changes no membership (warm-pool entry/exit): complete it
    RECONCILE = "reconcile"  # rebuild the record from the source of truth; no action to complete
    IGNORE = "ignore"  # acknowledged and ignored (autoscaling:TEST_NOTIFICATION)


@dataclass(frozen=True)
class LifecycleEvent:
    """The one internal event type. Every parser returns this; nothing downstream sees raw events.

    Fields are ``None`` when the source does not carry them (a reconcile has no instance).
    """

    kind: Kind
    source: str  # "eventbridge" | "sns" | "sqs" | "direct" | "schedule"
    group: str | None = None
    instance_id: str | None = None
    hook_name: str | None = None
    token: str | None = None
    transition: str | None = None  # autoscaling:EC2_INSTANCE_LAUNCHING | ..._TERMINATING
    origin: str | None = None
    destination: str | None = None
    metadata: str | None = None
    account: str | None = None
    region: str | None = None
    time: str | None = None  # ISO-8601 as sent
    reason: str = ""  # why this kind (e.g. "warm pool entry", "EC2 Instance Launch Successful")
    message_id: str | None = None  # SQS messageId / SNS MessageId / EventBridge id, for logs

    @property
    def is_action(self) -> bool:
        """True when a lifecycle action waits for completion (has a hook and an instance)."""
        return self.kind in (Kind.JOIN, Kind.LEAVE, Kind.PASS)


@dataclass(frozen=True)
class Parsed:
    """One record of an invocation: exactly one of ``event`` and ``error`` is set.

    ``item_id`` is the SQS ``messageId`` (or SNS ``MessageId``) the caller reports in
    ``batchItemFailures``; it is kept on failures too, whenever the record carried one.
    """

    event: LifecycleEvent | None = None
    error: EventError | None = None
    item_id: str | None = None

    @property
    def ok(self) -> bool:
        """True when the record parsed into an event."""
        return self.error is None


@dataclass(frozen=True)
class Invocation:
    """One Lambda invocation, parsed: where it came from and one ``Parsed`` per record.

    ``batch`` is True for SQS: the caller must report failed records by ``item_id`` so
    that only they are retried.
    """

    source: str  # "sqs" | "sns" | "eventbridge" | "direct" | "schedule"
    records: tuple[Parsed, ...]
    batch: bool = False

    @property
    def events(self) -> tuple[LifecycleEvent, ...]:
        """The records that parsed, in order."""
        return tuple(p.event for p in self.records if p.event is not None)

    @property
    def errors(self) -> tuple[EventError, ...]:
        """The records that did not parse, in order."""
        return tuple(p.error for p in self.records if p.error is not None)


LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
TEST_NOTIFICATION = "autoscaling:TEST_NOTIFICATION"
TRANSITIONS = (LAUNCHING, TERMINATING)

# A lifecycle message is about 1 KB. SQS and EventBridge now carry up to 1 MB (256 KiB before
# 2026), so this is our limit, not AWS's: anything bigger was not sent by Auto Scaling, and
# refusing it before json.loads bounds the work a hostile record costs.
MAX_PAYLOAD_BYTES = 256 * 1024

LIFECYCLE_DETAIL_TYPES = {
    "EC2 Instance-launch Lifecycle Action": LAUNCHING,
    "EC2 Instance-terminate Lifecycle Action": TERMINATING,
}
SCHEDULED_DETAIL_TYPE = "Scheduled Event"
# Classic Auto Scaling notifications (NotificationConfiguration → SNS/SQS): the seed's
# deployments were triggered by these; they mean "something changed, reconcile".
ASG_NOTIFICATIONS = {
    "autoscaling:EC2_INSTANCE_LAUNCH": "EC2 Instance Launch Successful",
    "autoscaling:EC2_INSTANCE_LAUNCH_ERROR": "EC2 Instance Launch Unsuccessful",
    "autoscaling:EC2_INSTANCE_TERMINATE": "EC2 Instance Terminate Successful",
    "autoscaling:EC2_INSTANCE_TERMINATE_ERROR": "EC2 Instance Terminate Unsuccessful",
}
PLACES = ("EC2", "AutoScalingGroup", "WarmPool")  # values of Origin / Destination

_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
# The API only says "36 characters"; AWS's own examples use non-hex UUID-shaped tokens
# ("...-05e7eEXAMPLE"), so the groups are alphanumeric rather than strictly hex.
_TOKEN = re.compile(r"[0-9A-Za-z]{8}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{12}")
_HOOK_NAME = re.compile(r"[A-Za-z0-9\-_/]{1,255}")
# The API allows any XML character; control characters never name a real group and would
# only serve to forge log lines.
_GROUP_NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]{1,255}")
_ACCOUNT = re.compile(r"[0-9]{12}")  # [0-9], not \d: \d also matches non-ASCII digits
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
# Queue and topic ARNs name the account and region an event travelled through.
_SQS_ARN = re.compile(r"arn:aws[a-z-]*:sqs:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):[A-Za-z0-9_.-]{1,80}")
_SNS_ARN = re.compile(r"arn:aws[a-z-]*:sns:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):[A-Za-z0-9_.-]{1,256}")
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,128}")
_SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_MAX_TIME_LEN = 64
_MAX_METADATA_LEN = 4000  # PutLifecycleHook's limit on NotificationMetadata (AnyPrintableAsciiStringMaxLen4000)
# JSON strings unwrapped per record: SQS body → SNS envelope's Message → EventBridge event is the
# deepest real chain (rule → topic → queue); anything deeper was built to exhaust the parser.
_MAX_DECODES = 2


@dataclass(frozen=True)
class _Envelope:
    """What the wrapping layers say about a payload: delivery path, where it came from."""

    source: str  # LifecycleEvent.source
    path: str = ""  # prefix of field names in errors, e.g. "body." or "Sns.Message."
    account: str | None = None
    region: str | None = None
    message_id: str | None = None
    time: str | None = None
    token_required: bool = True  # only a direct invocation may name an action by instance id
    decodes: int = 0  # JSON strings unwrapped so far (see _MAX_DECODES)


# ---------------------------------------------------------------------------------------------
# public API


def parse_invocation(raw: object) -> Invocation:
    """Parse whatever Lambda was invoked with. Never raises: failures are ``Parsed.error``.

    >>> inv = parse_invocation({"action": "reconcile"})
    >>> inv.source, inv.records[0].event.kind
    ('direct', <Kind.RECONCILE: 'reconcile'>)
    >>> parse_invocation({"Records": []}).records
    ()
    """
    if not isinstance(raw, dict):
        problem = f"the invocation payload is {_describe(raw)}; expected a JSON object (an event)"
        return Invocation("direct", (Parsed(error=EventError(problem)),))
    if "Records" in raw:
        return _parse_records(raw["Records"])
    if _looks_like_eventbridge(raw):
        try:
            event = parse_eventbridge(raw)
        except EventError as exc:
            return Invocation("eventbridge", (Parsed(error=exc),))
        return Invocation(event.source, (Parsed(event=event, item_id=event.message_id),))
    if _looks_like_direct(raw):
        return Invocation("direct", (_capture(parse_direct, raw),))
    problem = (
        f"unrecognised event with keys {_keys(raw)}; expected an SQS/SNS batch (Records), an EventBridge "
        "event (detail-type), lifecycle fields (LifecycleTransition, EC2InstanceId, ...) or {'action': 'reconcile'}"
    )
    return Invocation("direct", (Parsed(error=EventError(problem)),))


def parse_eventbridge(event: object) -> LifecycleEvent:
    """Parse an EventBridge event delivered to the function directly.

    Lifecycle actions become JOIN/LEAVE/PASS; a ``Scheduled Event`` (source ``schedule``) and
    any other ``aws.autoscaling`` event become RECONCILE. Raises ``EventError``.

    >>> parse_eventbridge({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}).kind
    <Kind.RECONCILE: 'reconcile'>
    """
    return _eventbridge(_need_dict(event, _Envelope("eventbridge")), _Envelope("eventbridge"))


def parse_direct(payload: object) -> LifecycleEvent:
    """Parse a direct invocation: ``{"action": "reconcile"}`` (optionally with ``AutoScalingGroupName``), the
    lifecycle fields at top level (``LifecycleTransition``, ``EC2InstanceId``, ``AutoScalingGroupName``,
    ``LifecycleHookName``, optionally ``LifecycleActionToken``), or a test notification (ignored). Any other field is
    refused: the rest of a hook's message (Origin, Destination, Time, ...) is Auto Scaling's to say, through its own
    delivery. The token may be omitted (the action is then completed by instance id). Raises ``EventError``.

    >>> parse_direct({"LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
    ...               "EC2InstanceId": "i-0123456789abcdef0", "AutoScalingGroupName": "etcd",
    ...               "LifecycleHookName": "etcd-terminate"}).kind
    <Kind.LEAVE: 'leave'>
    """
    env = _Envelope("direct", token_required=False)
    obj = _need_dict(payload, env)
    if "action" in obj:
        action = obj["action"]
        if action != "reconcile":
            raise EventError(f"{_describe(action)} is not an action; expected 'reconcile'", "action")
        _only_keys(obj, _DIRECT_RECONCILE_KEYS, "'action' and optionally 'AutoScalingGroupName' in a reconcile")
        group = _optional(obj, "AutoScalingGroupName", env, _GROUP_NAME, "a group name of 1-255 characters")
        return LifecycleEvent(Kind.RECONCILE, "direct", group=group, reason="reconcile requested")
    if _is_test_notification(obj):
        return _ignored(obj, env)
    # Only the documented fields: what else a raw hook message carries (Origin, Destination, Time, AccountId...)
    # steers what a pass does (a warm-pool move completed at once, an action's age), and nobody but Auto Scaling's
    # own delivery may say that.
    _only_keys(
        obj, _DIRECT_LIFECYCLE_KEYS, f"{sorted(_DIRECT_LIFECYCLE_KEYS)} (Auto Scaling's own delivery says the rest)"
    )
    if "LifecycleTransition" not in obj:
        raise EventError(
            f"missing in a direct invocation with keys {_keys(obj)}; expected {LAUNCHING} or {TERMINATING} "
            "with EC2InstanceId, AutoScalingGroupName and LifecycleHookName, or {'action': 'reconcile'}",
            "LifecycleTransition",
        )
    return _lifecycle(obj, env, expected=None)


def parse_sqs_record(record: object) -> Parsed:
    """Parse one SQS record (``eventSource`` ``aws:sqs``) into a ``Parsed`` keeping its messageId.

    The body is a raw lifecycle message, a whole EventBridge event, an SNS envelope, or a test
    notification.

    >>> body = '{"Event": "autoscaling:TEST_NOTIFICATION", "AutoScalingGroupName": "etcd"}'
    >>> parse_sqs_record({"messageId": "m1", "eventSource": "aws:sqs", "body": body}).event.kind
    <Kind.IGNORE: 'ignore'>
    """
    item_id = _item_id(record, "messageId")
    return _capture(_sqs_record, record, item_id=item_id)


def parse_sns_record(record: object) -> Parsed:
    """Parse one SNS record (``EventSource`` ``aws:sns``): ``Sns.Message`` is a JSON string.

    >>> msg = '{"Event": "autoscaling:TEST_NOTIFICATION"}'
    >>> parse_sns_record({"EventSource": "aws:sns", "Sns": {"MessageId": "m", "Message": msg}}).event.kind
    <Kind.IGNORE: 'ignore'>
    """
    sns = record.get("Sns") if isinstance(record, dict) else None
    return _capture(_sns_record, record, item_id=_item_id(sns, "MessageId"))


def lifecycle_kind(transition: str, origin: str | None = None, destination: str | None = None) -> tuple[Kind, str]:
    """What a lifecycle action means for membership, from its transition, Origin and Destination.

    The transition name alone misleads with warm pools: a TERMINATING action may return an
    instance to the pool, and a LAUNCHING one may only fill the pool. Raises ``EventError``
    for combinations Auto Scaling does not send.

    >>> lifecycle_kind("autoscaling:EC2_INSTANCE_TERMINATING", "AutoScalingGroup", "WarmPool")[0]
    <Kind.LEAVE: 'leave'>
    >>> lifecycle_kind("autoscaling:EC2_INSTANCE_LAUNCHING", "EC2", "WarmPool")[0]
    <Kind.PASS: 'pass'>
    """
    return _kind(transition, origin, destination, path="")


def _kind(transition: object, origin: str | None, destination: str | None, path: str) -> tuple[Kind, str]:
    if transition == LAUNCHING:
        if origin == "AutoScalingGroup":
            raise EventError(
                "a launch cannot come from the group itself; expected Origin EC2 or WarmPool", f"{path}Origin"
            )
        if destination == "WarmPool":
            return Kind.PASS, "entering the warm pool, not the group"
        if destination in (None, "AutoScalingGroup"):
            if origin == "WarmPool":
                return Kind.JOIN, "leaving the warm pool to join the group"
            return Kind.JOIN, "launching into the group"
        raise EventError(
            f"a launch cannot go to {_quote(destination)}; expected Destination AutoScalingGroup or WarmPool",
            f"{path}Destination",
        )
    if transition == TERMINATING:
        if origin == "WarmPool":
            if destination not in (None, "EC2"):
                raise EventError(
                    f"a termination from the warm pool cannot go to {_quote(destination)}; expected Destination EC2",
                    f"{path}Destination",
                )
            return Kind.PASS, "terminating from the warm pool; never was a member"
        if origin not in (None, "AutoScalingGroup"):
            raise EventError(
                f"a termination cannot come from {_quote(origin)}; expected Origin AutoScalingGroup or WarmPool",
                f"{path}Origin",
            )
        if destination == "WarmPool":
            return Kind.LEAVE, "returning to the warm pool; must leave the record"
        if destination in (None, "EC2"):
            return Kind.LEAVE, "terminating"
        raise EventError(
            f"a termination cannot go to {_quote(destination)}; expected Destination EC2 or WarmPool",
            f"{path}Destination",
        )
    raise EventError(
        f"{_describe(transition)} is not a lifecycle transition; expected one of {TRANSITIONS}",
        f"{path}LifecycleTransition",
    )


# ---------------------------------------------------------------------------------------------
# batches


def _parse_records(records: object) -> Invocation:
    if not isinstance(records, list):
        problem = f"got {_describe(records)}; expected a list of SQS or SNS records"
        return Invocation("direct", (Parsed(error=EventError(problem, "Records")),))
    if not records:
        return Invocation("sqs", (), batch=True)
    # Lambda never mixes sources in one batch; if any record claims SQS, report per item so a
    # forged neighbour cannot make the whole batch fail and be redelivered forever.
    is_sqs = any(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    parsed: list[Parsed] = []
    for record in records:
        if isinstance(record, dict) and record.get("eventSource") == "aws:sqs":
            parsed.append(parse_sqs_record(record))
        elif isinstance(record, dict) and record.get("EventSource") == "aws:sns":
            parsed.append(parse_sns_record(record))
        else:
            problem = (
                f"record is {_describe(record)} from an unknown source; expected eventSource 'aws:sqs' "
                "or EventSource 'aws:sns'"
            )
            field = "eventSource" if isinstance(record, dict) else None
            parsed.append(Parsed(error=EventError(problem, field), item_id=_item_id(record, "messageId")))
    if is_sqs:
        return Invocation("sqs", tuple(parsed), batch=True)
    is_sns = any(isinstance(r, dict) and r.get("EventSource") == "aws:sns" for r in records)
    return Invocation("sns" if is_sns else "direct", tuple(parsed))


def _sqs_record(record: object) -> LifecycleEvent:
    env = _Envelope("sqs")
    rec = _need_dict(record, env)
    message_id = _required(rec, "messageId", env, _MESSAGE_ID, "the SQS message id")
    arn = _optional(rec, "eventSourceARN", env, _SQS_ARN, "an SQS queue ARN")
    region = _optional(rec, "awsRegion", env, _REGION, "a region such as us-east-1")
    arn_match = _SQS_ARN.fullmatch(arn) if arn else None
    env = _Envelope(
        "sqs",
        path="body.",
        account=arn_match["account"] if arn_match else None,
        region=region or (arn_match["region"] if arn_match else None),
        message_id=message_id,
        decodes=1,
    )
    return _payload(_decode(rec.get("body"), "body", 0), env)


def _sns_record(record: object) -> LifecycleEvent:
    env = _Envelope("sns")
    rec = _need_dict(record, env)
    sns = rec.get("Sns")
    if not isinstance(sns, dict):
        state = "missing" if "Sns" not in rec else f"got {_describe(sns)}"
        raise EventError(f"{state}; expected the SNS notification object", "Sns")
    inner = _Envelope("sns", path="Sns.")
    message_id = _required(sns, "MessageId", inner, _MESSAGE_ID, "the SNS message id")
    topic = _optional(sns, "TopicArn", inner, _SNS_ARN, "an SNS topic ARN")
    topic_match = _SNS_ARN.fullmatch(topic) if topic else None
    env = _Envelope(
        "sns",
        path="Sns.Message.",
        account=topic_match["account"] if topic_match else None,
        region=topic_match["region"] if topic_match else None,
        message_id=message_id,
        time=_optional_str(sns, "Timestamp", inner, _MAX_TIME_LEN),
        decodes=1,
    )
    return _payload(_decode(sns.get("Message"), "Sns.Message", 0), env)


# ---------------------------------------------------------------------------------------------
# payloads (what is inside a record, or the invocation itself)


def _payload(obj: dict, env: _Envelope) -> LifecycleEvent:
    """Dispatch a decoded payload by shape: EventBridge event, SNS envelope, or raw message."""
    if _looks_like_eventbridge(obj):
        return _eventbridge(obj, env)
    if "TopicArn" in obj and obj.get("Type") in _SNS_TYPES:
        return _sns_envelope(obj, env)
    return _message(obj, env)


def _sns_envelope(obj: dict, env: _Envelope) -> LifecycleEvent:
    """An SNS notification as SNS writes it into an SQS queue (no raw message delivery)."""
    topic = _required(obj, "TopicArn", env, _SNS_ARN, "an SNS topic ARN")
    kind = obj["Type"]
    if kind != "Notification":
        return LifecycleEvent(
            Kind.IGNORE,
            env.source,
            account=env.account,
            region=env.region,
            reason=f"SNS {kind} (a subscription handshake)",
            message_id=env.message_id,
        )
    topic_match = _SNS_ARN.fullmatch(topic)
    inner = replace(
        env,
        path=f"{env.path}Message.",
        account=topic_match["account"] if topic_match else env.account,
        region=topic_match["region"] if topic_match else env.region,
        decodes=env.decodes + 1,
    )
    return _payload(_decode(obj.get("Message"), f"{env.path}Message", env.decodes), inner)


def _eventbridge(obj: dict, env: _Envelope) -> LifecycleEvent:
    detail_type = _required_str(obj, "detail-type", env)
    source = _required_str(obj, "source", env)
    # The event's own account/region name where the group lives; the envelope only names the
    # queue or topic it travelled through.
    env = replace(
        env,
        account=_optional(obj, "account", env, _ACCOUNT, "a 12-digit account id") or env.account,
        region=_optional(obj, "region", env, _REGION, "a region such as us-east-1") or env.region,
        message_id=env.message_id or _optional(obj, "id", env, _MESSAGE_ID, "the event id"),
        time=_optional_str(obj, "time", env, _MAX_TIME_LEN) or env.time,
    )
    if source == "aws.events":
        if detail_type != SCHEDULED_DETAIL_TYPE:
            raise EventError(
                f"{_quote(detail_type)} from aws.events is not handled; expected {SCHEDULED_DETAIL_TYPE!r}",
                f"{env.path}detail-type",
            )
        # A schedule that reaches us through a queue keeps "sqs" as its delivery path.
        delivered = "schedule" if env.source == "eventbridge" else env.source
        return _reconcile(delivered, env, reason="scheduled reconcile")
    if source != "aws.autoscaling":
        raise EventError(
            f"{_quote(detail_type)} from source {_quote(source)} is not handled; expected an aws.autoscaling event "
            f"or a {SCHEDULED_DETAIL_TYPE!r} from aws.events",
            f"{env.path}detail-type",
        )
    detail = obj.get("detail")
    detail_env = replace(env, path=f"{env.path}detail.")
    transition = LIFECYCLE_DETAIL_TYPES.get(detail_type)
    if transition is None:
        # Launch/Terminate Successful/Unsuccessful and the rest: something changed, reconcile.
        if detail is not None and not isinstance(detail, dict):
            raise EventError(f"got {_describe(detail)}; expected a JSON object", f"{env.path}detail")
        group = _optional(detail or {}, "AutoScalingGroupName", detail_env, _GROUP_NAME, "a group name")
        instance = _optional(detail or {}, "EC2InstanceId", detail_env, _INSTANCE_ID, "an instance id")
        return _reconcile(env.source, env, reason=detail_type, group=group, instance_id=instance)
    if not isinstance(detail, dict):
        raise EventError(f"got {_describe(detail)}; expected the lifecycle action object", f"{env.path}detail")
    if _is_test_notification(detail):
        return _ignored(detail, detail_env)
    return _lifecycle(detail, detail_env, expected=transition)


def _message(obj: dict, env: _Envelope) -> LifecycleEvent:
    """A raw Auto Scaling message: lifecycle action, test notification or classic notification."""
    if _is_test_notification(obj):
        return _ignored(obj, env)
    env = replace(
        env,
        account=_optional(obj, "AccountId", env, _ACCOUNT, "a 12-digit account id") or env.account,
        time=_optional_str(obj, "Time", env, _MAX_TIME_LEN) or env.time,
    )
    if "Event" in obj and "LifecycleTransition" not in obj:
        event = _required_str(obj, "Event", env)
        reason = ASG_NOTIFICATIONS.get(event)
        if reason is None:
            raise EventError(
                f"Auto Scaling notification {_quote(event)} is not handled; expected one of "
                f"{(*ASG_NOTIFICATIONS, TEST_NOTIFICATION)}",
                f"{env.path}Event",
            )
        group = _optional(obj, "AutoScalingGroupName", env, _GROUP_NAME, "a group name")
        instance = _optional(obj, "EC2InstanceId", env, _INSTANCE_ID, "an instance id")
        return _reconcile(env.source, env, reason=reason, group=group, instance_id=instance)
    if "LifecycleTransition" not in obj:
        raise EventError(
            f"missing in a message with keys {_keys(obj)}; expected {LAUNCHING} or {TERMINATING} "
            "(or an EventBridge event, or a test notification)",
            f"{env.path}LifecycleTransition",
        )
    return _lifecycle(obj, env, expected=None)


def _lifecycle(d: dict, env: _Envelope, expected: str | None) -> LifecycleEvent:
    """The fields every lifecycle action carries, wherever it came from."""
    transition = _required_str(d, "LifecycleTransition", env)
    if transition not in TRANSITIONS:
        raise EventError(
            f"unknown lifecycle transition {_quote(transition)}; expected {LAUNCHING} or {TERMINATING}",
            f"{env.path}LifecycleTransition",
        )
    if expected is not None and transition != expected:
        raise EventError(
            f"{transition} contradicts the event's detail-type; expected {expected}",
            f"{env.path}LifecycleTransition",
        )
    instance_id = _required(d, "EC2InstanceId", env, _INSTANCE_ID, "an instance id such as i-0123456789abcdef0")
    group = _required(d, "AutoScalingGroupName", env, _GROUP_NAME, "a group name of 1-255 printable characters")
    hook = _required(d, "LifecycleHookName", env, _HOOK_NAME, "a hook name of 1-255 of [A-Za-z0-9-_/]")
    token_expected = "a 36-character UUID lifecycle action token"
    if env.token_required:
        token = _required(d, "LifecycleActionToken", env, _TOKEN, token_expected)
    else:
        token = _optional(d, "LifecycleActionToken", env, _TOKEN, token_expected)
    origin = _place(d, "Origin", env)
    destination = _place(d, "Destination", env)
    metadata = _metadata(d, "NotificationMetadata", env)
    kind, reason = _kind(transition, origin, destination, env.path)
    return LifecycleEvent(
        kind,
        env.source,
        group=group,
        instance_id=instance_id,
        hook_name=hook,
        token=token,
        transition=transition,
        origin=origin,
        destination=destination,
        metadata=metadata,
        account=env.account,
        region=env.region,
        time=env.time,
        reason=reason,
        message_id=env.message_id,
    )


def _reconcile(
    source: str, env: _Envelope, *, reason: str, group: str | None = None, instance_id: str | None = None
) -> LifecycleEvent:
    return LifecycleEvent(
        Kind.RECONCILE,
        source,
        group=group,
        instance_id=instance_id,
        account=env.account,
        region=env.region,
        time=env.time,
        reason=reason,
        message_id=env.message_id,
    )


def _ignored(obj: dict, env: _Envelope) -> LifecycleEvent:
    """A test notification: acknowledged whatever else it carries, so it is never an error."""
    group = obj.get("AutoScalingGroupName")
    account = obj.get("AccountId")
    return LifecycleEvent(
        Kind.IGNORE,
        env.source,
        group=group if isinstance(group, str) and _GROUP_NAME.fullmatch(group) else None,
        account=account if isinstance(account, str) and _ACCOUNT.fullmatch(account) else env.account,
        region=env.region,
        time=env.time,
        reason="test notification",
        message_id=env.message_id,
    )


# ---------------------------------------------------------------------------------------------
# shapes and fields


def _looks_like_eventbridge(obj: dict) -> bool:
    return "detail-type" in obj or ("source" in obj and "detail" in obj)


def _looks_like_direct(obj: dict) -> bool:
    return any(k in obj for k in ("action", "LifecycleTransition", "Event", "EC2InstanceId", "LifecycleActionToken"))


_DIRECT_RECONCILE_KEYS = frozenset({"action", "AutoScalingGroupName"})
_DIRECT_LIFECYCLE_KEYS = frozenset(
    {"LifecycleTransition", "EC2InstanceId", "AutoScalingGroupName", "LifecycleHookName", "LifecycleActionToken"}
)


def _only_keys(obj: dict, allowed: frozenset[str], expected: str) -> None:
    extra = [k for k in obj if k not in allowed]
    if extra:
        raise EventError(
            f"{_quote(extra[0])} is not a field of a direct invocation; expected only {expected}",
            _clip(str(extra[0]), 60),
        )


def _is_test_notification(obj: dict) -> bool:
    # NTH checks both keys: the test notification has carried it in either.
    return obj.get("Event") == TEST_NOTIFICATION or obj.get("LifecycleTransition") == TEST_NOTIFICATION


def _capture(parse: Callable[[object], LifecycleEvent], value: object, item_id: str | None = None) -> Parsed:
    """Run a parser; an EventError becomes this record's error instead of failing the batch."""
    try:
        event = parse(value)
    except EventError as exc:
        return Parsed(error=exc, item_id=item_id)
    return Parsed(event=event, item_id=item_id)


def _item_id(record: object, key: str) -> str | None:
    value = record.get(key) if isinstance(record, dict) else None
    return value if isinstance(value, str) and _MESSAGE_ID.fullmatch(value) else None


def _decode(text: object, field: str, decodes: int) -> dict:
    """Decode a JSON string that must hold an object, refusing oversized and ambiguous input."""
    if not isinstance(text, str):
        raise EventError(f"got {_describe(text)}; expected a JSON string", field)
    size = _utf8_size(text)
    if size > MAX_PAYLOAD_BYTES:
        raise EventError(f"payload too large: {size} bytes; expected at most {MAX_PAYLOAD_BYTES} (256 KiB)", field)
    if decodes >= _MAX_DECODES:
        raise EventError(f"nested too deeply; expected at most {_MAX_DECODES} layers of JSON in strings", field)
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise EventError(f"duplicate key {_quote(exc.args[0])}; expected each key once", field) from None
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and over-long integers; RecursionError deep nesting.
        raise EventError(f"not valid JSON ({_clip(str(exc), 80)}); expected a JSON object", field) from None
    if not isinstance(value, dict):
        raise EventError(f"the JSON holds {_describe(value)}; expected a JSON object", field)
    return value


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    # Two "EC2InstanceId" keys would let a check and an action read different values.
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _utf8_size(text: str) -> int:
    if len(text) * 4 <= MAX_PAYLOAD_BYTES:  # cannot be over the cap: skip encoding
        return len(text)
    if len(text) > MAX_PAYLOAD_BYTES:  # over the cap whatever the encoding
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _need_dict(value: object, env: _Envelope) -> dict:
    if not isinstance(value, dict):
        field = env.path.rstrip(".") or None
        raise EventError(f"got {_describe(value)}; expected a JSON object", field)
    return value


def _required_str(d: dict, key: str, env: _Envelope) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        state = "missing" if key not in d else f"got {_describe(value)}"
        raise EventError(f"{state}; expected a non-empty string", f"{env.path}{key}")
    return value


def _required(d: dict, key: str, env: _Envelope, pattern: re.Pattern[str], expected: str) -> str:
    if key not in d:
        raise EventError(f"missing; expected {expected}", f"{env.path}{key}")
    return _checked(d[key], key, env, pattern, expected)


def _optional(d: dict, key: str, env: _Envelope, pattern: re.Pattern[str], expected: str) -> str | None:
    # null counts as absent for optional fields: AWS omits them, but serializers of forwarding
    # tools write null, and refusing a real action over that would abandon a launch.
    value = d.get(key)
    if value is None:
        return None
    return _checked(value, key, env, pattern, expected)


def _checked(value: object, key: str, env: _Envelope, pattern: re.Pattern[str], expected: str) -> str:
    if not isinstance(value, str):
        raise EventError(f"got {_describe(value)}; expected {expected} as a string", f"{env.path}{key}")
    if not pattern.fullmatch(value):
        raise EventError(f"got {_describe(value)}; expected {expected}", f"{env.path}{key}")
    return value


def _optional_str(d: dict, key: str, env: _Envelope, max_len: int) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise EventError(
            f"got {_describe(value)}; expected a string of at most {max_len} characters", f"{env.path}{key}"
        )
    return value


def _metadata(d: dict, key: str, env: _Envelope) -> str | None:
    """The hook's NotificationMetadata as text. EventBridge delivers metadata that is JSON as the parsed
    value (an object, usually), SNS and SQS as the string the hook holds: both come back as a string."""
    value = d.get(key)
    if value is None or isinstance(value, str):
        return _optional_str(d, key, env, _MAX_METADATA_LEN)
    if isinstance(value, dict | list | int | float | bool):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
        # The hook held at most 4000 characters; re-serialised JSON can only be as long or shorter, plus
        # escapes: allow their room rather than refuse a documented event.
        if len(text) <= 2 * _MAX_METADATA_LEN:
            return text
    raise EventError(
        f"got {_describe(value)}; expected a string or a JSON value of at most {_MAX_METADATA_LEN} characters",
        f"{env.path}{key}",
    )


def _place(d: dict, key: str, env: _Envelope) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in PLACES:
        raise EventError(f"got {_describe(value)}; expected one of {PLACES}", f"{env.path}{key}")
    return value


def _describe(value: object) -> str:
    """A short, log-safe description of a value (repr escapes control characters)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, int | float):
        return f"a number ({_clip(repr(value), 40)})"
    if isinstance(value, str):
        return f"the string {_clip(repr(value), 60)}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _quote(text: object) -> str:
    """An untrusted string for an error message: escaped and short, whatever was sent."""
    return _clip(repr(text), 80)


def _keys(d: dict) -> str:
    keys = [_clip(repr(k), 40) for k in list(d)[:8]]
    more = ", ..." if len(d) > 8 else ""
    return f"[{', '.join(keys)}{more}]"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
