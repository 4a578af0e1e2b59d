"""Every event source becomes one LifecycleEvent (or an EventError naming the field at fault).

Fixtures are built like AWS's own formats: the EventBridge lifecycle-action event, the raw
lifecycle message a hook sends to SNS/SQS, Lambda's SQS and SNS records, the test notification.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hook_handler import events
from hook_handler.events import (
    LAUNCHING,
    MAX_PAYLOAD_BYTES,
    TERMINATING,
    Invocation,
    Kind,
    LifecycleEvent,
    lifecycle_kind,
    parse_direct,
    parse_eventbridge,
    parse_invocation,
    parse_sns_record,
    parse_sqs_record,
)
from hook_handler.exceptions import EventError

ACCOUNT = "123456789012"
REGION = "us-east-1"
INSTANCE = "i-0123456789abcdef0"
TOKEN = "87654321-4321-4321-4321-210987654321"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:etcd-lifecycle"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:etcd-lifecycle"
DETAIL_TYPE = {
    LAUNCHING: "EC2 Instance-launch Lifecycle Action",
    TERMINATING: "EC2 Instance-terminate Lifecycle Action",
}
_DROP = object()


# ---------------------------------------------------------------------------------------------
# fixtures shaped like AWS's


def _apply(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def lifecycle_detail(**over) -> dict:
    """The ``detail`` of an EventBridge lifecycle-action event."""
    base = {
        "LifecycleActionToken": TOKEN,
        "AutoScalingGroupName": "etcd",
        "LifecycleHookName": "etcd-launch",
        "EC2InstanceId": INSTANCE,
        "LifecycleTransition": LAUNCHING,
        "NotificationMetadata": "additional-info",
        "Origin": "EC2",
        "Destination": "AutoScalingGroup",
    }
    return _apply(base, over)


def eventbridge(detail: object, detail_type: str | None = None, source: str = "aws.autoscaling", **over) -> dict:
    if detail_type is None:
        transition = detail.get("LifecycleTransition", LAUNCHING) if isinstance(detail, dict) else LAUNCHING
        detail_type = DETAIL_TYPE.get(transition, DETAIL_TYPE[LAUNCHING])
    base = {
        "version": "0",
        "id": "12345678-1234-1234-1234-123456789012",
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": "2021-02-01T17:18:06.082Z",
        "region": REGION,
        "resources": [
            f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:042cba90-ad2f-431c-9b4d-6d9055bcc9fb:"
            "autoScalingGroupName/etcd"
        ],
        "detail": detail,
    }
    return _apply(base, over)


def raw_message(**over) -> dict:
    """What a lifecycle hook sends to its SNS topic or SQS queue."""
    base = {
        "Origin": "EC2",
        "LifecycleHookName": "etcd-launch",
        "Destination": "AutoScalingGroup",
        "AccountId": ACCOUNT,
        "RequestId": "4a5b6c7d-1111-2222-3333-444455556666",
        "LifecycleTransition": LAUNCHING,
        "AutoScalingGroupName": "etcd",
        "Service": "AWS Auto Scaling",
        "Time": "2021-01-19T00:36:26.533Z",
        "EC2InstanceId": INSTANCE,
        "LifecycleActionToken": TOKEN,
    }
    return _apply(base, over)


def test_notification(**over) -> dict:
    base = {
        "AccountId": ACCOUNT,
        "RequestId": "5b7f1d4e-1a2b-4c3d-9e8f-0a1b2c3d4e5f",
        "AutoScalingGroupARN": f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:x:autoScalingGroupName/etcd",
        "AutoScalingGroupName": "etcd",
        "Service": "AWS Auto Scaling",
        "Event": "autoscaling:TEST_NOTIFICATION",
        "Time": "2021-01-19T00:35:52.359Z",
    }
    return _apply(base, over)


test_notification.__test__ = False  # a fixture builder, not a pytest test


def sqs_record(body: object, message_id: str = "059f36b4-87a3-44ab-83d2-661975830a7d", **over) -> dict:
    base = {
        "messageId": message_id,
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": json.dumps(body) if isinstance(body, dict | list) else body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": REGION,
    }
    return _apply(base, over)


def sqs_event(*records: dict) -> dict:
    return {"Records": list(records)}


def sns_record(message: object, topic: str = TOPIC_ARN, **over) -> dict:
    sns = {
        "SignatureVersion": "1",
        "Timestamp": "2021-01-19T00:36:26.600Z",
        "Signature": "tcc6faL2yUC6dgZdmrwh1Y4cGa/ebXEkAi6RibDsvpi+tE/1+82j...65r==",
        "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-ac565b8b1a.pem",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "Message": json.dumps(message) if isinstance(message, dict | list) else message,
        "MessageAttributes": {},
        "Type": "Notification",
        "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=...",
        "TopicArn": topic,
        "Subject": "Auto Scaling:  Lifecycle action 'LAUNCHING' for instance i-0123456789abcdef0 in progress.",
    }
    return {
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{topic}:21be56ed-a058-49f5-8c98-aedd2564c486",
        "EventSource": "aws:sns",
        "Sns": _apply(sns, over),
    }


def sns_event(message: object, topic: str = TOPIC_ARN, **over) -> dict:
    return {"Records": [sns_record(message, topic, **over)]}


def sns_envelope(message: object, type_: str = "Notification") -> dict:
    """An SNS notification as SNS writes it into a subscribed SQS queue."""
    return {
        "Type": type_,
        "MessageId": "0c3e3c6a-5b2f-5c0e-9e6a-2d9f6a1c1d11",
        "TopicArn": TOPIC_ARN,
        "Message": json.dumps(message) if isinstance(message, dict) else message,
        "Timestamp": "2021-01-19T00:36:26.600Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE==",
    }


def scheduled_event(**over) -> dict:
    base = {
        "version": "0",
        "id": "89d1a02d-5ec7-412e-82f5-13505f849b41",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": "2016-12-30T18:44:49Z",
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/etcd-reconcile"],
        "detail": {},
    }
    return _apply(base, over)


def only(invocation: Invocation) -> LifecycleEvent:
    assert len(invocation.records) == 1
    record = invocation.records[0]
    assert record.error is None, record.error
    return record.event


def only_error(invocation: Invocation) -> EventError:
    assert len(invocation.records) == 1
    record = invocation.records[0]
    assert record.event is None, record.event
    return record.error


# ---------------------------------------------------------------------------------------------
# EventBridge


def test_eventbridge_launch_becomes_join_with_every_field():
    invocation = parse_invocation(eventbridge(lifecycle_detail()))

    assert (invocation.source, invocation.batch) == ("eventbridge", False)
    assert only(invocation) == LifecycleEvent(
        Kind.JOIN,
        "eventbridge",
        group="etcd",
        instance_id=INSTANCE,
        hook_name="etcd-launch",
        token=TOKEN,
        transition=LAUNCHING,
        origin="EC2",
        destination="AutoScalingGroup",
        metadata="additional-info",
        account=ACCOUNT,
        region=REGION,
        time="2021-02-01T17:18:06.082Z",
        reason="launching into the group",
        message_id="12345678-1234-1234-1234-123456789012",
    )
    assert only(invocation).is_action


def test_eventbridge_terminate_becomes_leave():
    detail = lifecycle_detail(
        LifecycleTransition=TERMINATING,
        LifecycleHookName="etcd-terminate",
        Origin="AutoScalingGroup",
        Destination="EC2",
    )

    event = only(parse_invocation(eventbridge(detail)))

    assert (event.kind, event.transition, event.hook_name) == (Kind.LEAVE, TERMINATING, "etcd-terminate")


def test_the_documented_example_event_parses():
    # The example in the facts file (AWS's own), verbatim.
    example = json.loads(
        '{"version":"0","id":"12345678-1234-1234-1234-123456789012",'
        '"detail-type":"EC2 Instance-launch Lifecycle Action","source":"aws.autoscaling",'
        '"account":"123456789012","time":"2021-02-01T17:18:06.082Z","region":"us-west-2",'
        '"resources":["arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:042cba90-ad2f-431c-9b4d-'
        '6d9055bcc9fb:autoScalingGroupName/my-asg"],'
        '"detail":{"LifecycleActionToken":"87654321-4321-4321-4321-210987654321","AutoScalingGroupName":"my-asg",'
        '"LifecycleHookName":"my-launch-hook","EC2InstanceId":"i-1234567890abcdef0",'
        '"LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING","NotificationMetadata":"additional-info",'
        '"Origin":"EC2","Destination":"AutoScalingGroup"}}'
    )

    event = parse_eventbridge(example)

    assert (event.kind, event.group, event.region, event.account) == (Kind.JOIN, "my-asg", "us-west-2", ACCOUNT)


def test_eventbridge_without_origin_and_destination_uses_the_transition():
    # Groups without warm pools may omit both fields.
    detail = lifecycle_detail(Origin=_DROP, Destination=_DROP, NotificationMetadata=_DROP)

    event = only(parse_invocation(eventbridge(detail)))

    assert (event.kind, event.origin, event.destination, event.metadata) == (Kind.JOIN, None, None, None)


def test_awss_example_token_with_example_suffix_is_accepted():
    # AWS's warm-pool example uses "71514b9d-6a40-4b26-8523-05e7eEXAMPLE": UUID-shaped, not hex.
    event = only(
        parse_invocation(eventbridge(lifecycle_detail(LifecycleActionToken="71514b9d-6a40-4b26-8523-05e7eEXAMPLE")))
    )

    assert event.token == "71514b9d-6a40-4b26-8523-05e7eEXAMPLE"


def test_null_optional_fields_count_as_absent():
    detail = lifecycle_detail(NotificationMetadata=None, Origin=None, Destination=None)

    event = only(parse_invocation(eventbridge(detail)))

    assert (event.kind, event.metadata, event.origin) == (Kind.JOIN, None, None)


# ---------------------------------------------------------------------------------------------
# meaning, not transition name (warm pools)

WARM_POOL_TABLE = [
    # transition, Origin, Destination → kind, words in the reason
    (LAUNCHING, "EC2", "AutoScalingGroup", Kind.JOIN, "launching into the group"),
    (LAUNCHING, None, None, Kind.JOIN, "launching into the group"),
    (LAUNCHING, "EC2", None, Kind.JOIN, "launching into the group"),
    (LAUNCHING, "WarmPool", "AutoScalingGroup", Kind.JOIN, "leaving the warm pool"),
    (LAUNCHING, "EC2", "WarmPool", Kind.PASS, "entering the warm pool"),
    (LAUNCHING, None, "WarmPool", Kind.PASS, "entering the warm pool"),
    (TERMINATING, "AutoScalingGroup", "EC2", Kind.LEAVE, "terminating"),
    (TERMINATING, None, None, Kind.LEAVE, "terminating"),
    (TERMINATING, "AutoScalingGroup", None, Kind.LEAVE, "terminating"),
    (TERMINATING, None, "EC2", Kind.LEAVE, "terminating"),
    (TERMINATING, "AutoScalingGroup", "WarmPool", Kind.LEAVE, "returning to the warm pool"),
    (TERMINATING, None, "WarmPool", Kind.LEAVE, "returning to the warm pool"),
    (TERMINATING, "WarmPool", "EC2", Kind.PASS, "never was a member"),
    (TERMINATING, "WarmPool", None, Kind.PASS, "never was a member"),
]


@pytest.mark.parametrize(("transition", "origin", "destination", "kind", "reason"), WARM_POOL_TABLE)
def test_lifecycle_actions_mean_what_origin_and_destination_say(transition, origin, destination, kind, reason):
    places = {
        "LifecycleTransition": transition,
        "Origin": _DROP if origin is None else origin,
        "Destination": _DROP if destination is None else destination,
    }

    for invocation in (
        parse_invocation(eventbridge(lifecycle_detail(**places))),
        parse_invocation(sqs_event(sqs_record(raw_message(**places)))),
        parse_invocation(sns_event(raw_message(**places))),
    ):
        event = only(invocation)
        assert (event.kind, event.origin, event.destination) == (kind, origin, destination)
        assert reason in event.reason
    assert lifecycle_kind(transition, origin, destination)[0] is kind


@pytest.mark.parametrize(
    ("transition", "origin", "destination", "field"),
    [
        (LAUNCHING, "EC2", "EC2", "Destination"),
        (LAUNCHING, "AutoScalingGroup", "AutoScalingGroup", "Origin"),
        (TERMINATING, "EC2", "EC2", "Origin"),
        (TERMINATING, "AutoScalingGroup", "AutoScalingGroup", "Destination"),
        (TERMINATING, "WarmPool", "WarmPool", "Destination"),
        (TERMINATING, "WarmPool", "AutoScalingGroup", "Destination"),
    ],
)
def test_combinations_auto_scaling_does_not_send_are_errors(transition, origin, destination, field):
    detail = lifecycle_detail(LifecycleTransition=transition, Origin=origin, Destination=destination)

    error = only_error(parse_invocation(eventbridge(detail)))

    assert error.field == f"detail.{field}"
    assert "expected" in str(error)
    with pytest.raises(EventError) as raised:
        lifecycle_kind(transition, origin, destination)
    assert raised.value.field == field


def test_lifecycle_kind_rejects_an_unknown_transition():
    with pytest.raises(EventError, match="LifecycleTransition"):
        lifecycle_kind("autoscaling:EC2_INSTANCE_REBOOTING")


# ---------------------------------------------------------------------------------------------
# SNS


def test_sns_record_with_raw_lifecycle_message():
    invocation = parse_invocation(sns_event(raw_message()))

    assert (invocation.source, invocation.batch) == ("sns", False)
    assert invocation.records[0].item_id == "95df01b4-ee98-5cb9-9903-4c221d41eb5e"
    event = only(invocation)
    assert (event.kind, event.source, event.group, event.instance_id, event.token) == (
        Kind.JOIN,
        "sns",
        "etcd",
        INSTANCE,
        TOKEN,
    )
    assert (event.account, event.region, event.time) == (ACCOUNT, REGION, "2021-01-19T00:36:26.533Z")
    assert event.message_id == "95df01b4-ee98-5cb9-9903-4c221d41eb5e"


def test_sns_region_and_account_come_from_the_topic_when_the_message_lacks_them():
    message = raw_message(AccountId=_DROP, NotificationMetadata=_DROP)

    event = only(parse_invocation(sns_event(message, topic="arn:aws:sns:eu-central-1:210987654321:t")))

    assert (event.account, event.region, event.metadata) == ("210987654321", "eu-central-1", None)


def test_sns_message_account_wins_over_the_topic_account():
    # The message names where the group lives; the topic only where it travelled.
    event = only(parse_invocation(sns_event(raw_message(AccountId="999999999999"))))

    assert event.account == "999999999999"


def test_sns_test_notification_is_ignored():
    event = only(parse_invocation(sns_event(test_notification())))

    assert (event.kind, event.group, event.reason) == (Kind.IGNORE, "etcd", "test notification")
    assert not event.is_action


def test_sns_message_that_is_not_json_is_an_error_for_that_record():
    invocation = parse_invocation(sns_event("Service: AWS Auto Scaling\nLifecycleTransition: ..."))

    error = only_error(invocation)
    assert error.field == "Sns.Message"
    assert "not valid JSON" in str(error)
    assert invocation.records[0].item_id == "95df01b4-ee98-5cb9-9903-4c221d41eb5e"


def test_sns_message_holding_an_eventbridge_event():
    # EventBridge rule → SNS topic → Lambda.
    event = only(parse_invocation(sns_event(eventbridge(lifecycle_detail(), region="us-west-2"))))

    assert (event.kind, event.source, event.region) == (Kind.JOIN, "sns", "us-west-2")


def test_parse_sns_record_alone():
    parsed = parse_sns_record(sns_record(raw_message()))

    assert parsed.ok and parsed.event.kind is Kind.JOIN


# ---------------------------------------------------------------------------------------------
# SQS


def test_sqs_record_with_raw_lifecycle_message():
    invocation = parse_invocation(sqs_event(sqs_record(raw_message(), message_id="m-1")))

    assert (invocation.source, invocation.batch) == ("sqs", True)
    assert invocation.records[0].item_id == "m-1"
    event = only(invocation)
    assert (event.kind, event.source, event.account, event.region, event.message_id) == (
        Kind.JOIN,
        "sqs",
        ACCOUNT,
        REGION,
        "m-1",
    )


def test_sqs_record_with_a_whole_eventbridge_event():
    # EventBridge rule → SQS queue: the event's own account/region describe the group.
    body = eventbridge(lifecycle_detail(), account="210987654321", region="us-west-2")

    event = only(parse_invocation(sqs_event(sqs_record(body, message_id="m-2"))))

    assert (event.kind, event.source, event.account, event.region) == (Kind.JOIN, "sqs", "210987654321", "us-west-2")
    assert (event.message_id, event.time) == ("m-2", "2021-02-01T17:18:06.082Z")


def test_sqs_region_and_account_come_from_the_queue_when_the_message_lacks_them():
    record = sqs_record(
        raw_message(AccountId=_DROP),
        awsRegion="ap-southeast-2",
        eventSourceARN="arn:aws:sqs:ap-southeast-2:210987654321:q",
    )

    event = only(parse_invocation(sqs_event(record)))

    assert (event.account, event.region) == ("210987654321", "ap-southeast-2")


def test_sqs_record_with_an_sns_envelope():
    # SNS topic → SQS queue without raw message delivery.
    event = only(parse_invocation(sqs_event(sqs_record(sns_envelope(raw_message())))))

    assert (event.kind, event.source, event.instance_id) == (Kind.JOIN, "sqs", INSTANCE)


def test_sqs_record_with_an_sns_envelope_holding_an_eventbridge_event():
    # The deepest real chain: rule → topic → queue.
    event = only(parse_invocation(sqs_event(sqs_record(sns_envelope(eventbridge(lifecycle_detail()))))))

    assert event.kind is Kind.JOIN


def test_sns_subscription_confirmation_in_a_queue_is_ignored():
    event = only(parse_invocation(sqs_event(sqs_record(sns_envelope("confirm me", "SubscriptionConfirmation")))))

    assert event.kind is Kind.IGNORE


def test_sqs_test_notification_is_ignored():
    event = only(parse_invocation(sqs_event(sqs_record(test_notification()))))

    assert (event.kind, event.source) == (Kind.IGNORE, "sqs")


def test_sqs_scheduled_event_in_a_queue_reconciles():
    event = only(parse_invocation(sqs_event(sqs_record(scheduled_event()))))

    assert (event.kind, event.source) == (Kind.RECONCILE, "sqs")


def test_empty_sqs_batch_has_no_records():
    invocation = parse_invocation({"Records": []})

    assert (invocation.source, invocation.batch, invocation.records) == ("sqs", True, ())


def test_one_bad_record_never_prevents_parsing_its_neighbours():
    batch = sqs_event(
        sqs_record(raw_message(), message_id="good-1"),
        sqs_record("{not json", message_id="bad-json"),
        sqs_record(test_notification(), message_id="test"),
        sqs_record(raw_message(EC2InstanceId=["i-0123456789abcdef0"]), message_id="bad-type"),
        sqs_record(None, message_id="null-body"),
        sqs_record(
            raw_message(LifecycleTransition=TERMINATING, Destination="EC2", Origin="AutoScalingGroup"), "good-2"
        ),
    )

    invocation = parse_invocation(batch)

    assert [p.item_id for p in invocation.records] == ["good-1", "bad-json", "test", "bad-type", "null-body", "good-2"]
    assert [p.ok for p in invocation.records] == [True, False, True, False, False, True]
    assert [e.kind for e in invocation.events] == [Kind.JOIN, Kind.IGNORE, Kind.LEAVE]
    assert [e.field for e in invocation.errors] == ["body", "body.EC2InstanceId", "body"]


def test_parse_sqs_record_alone_keeps_the_message_id_on_failure():
    parsed = parse_sqs_record(sqs_record("nope", message_id="m-9"))

    assert (parsed.ok, parsed.item_id, parsed.error.field) == (False, "m-9", "body")


# ---------------------------------------------------------------------------------------------
# direct, scheduled, other Auto Scaling events


def test_direct_invocation_may_omit_the_token():
    payload = {
        "LifecycleTransition": TERMINATING,
        "EC2InstanceId": INSTANCE,
        "AutoScalingGroupName": "etcd",
        "LifecycleHookName": "etcd-terminate",
    }

    invocation = parse_invocation(payload)

    assert invocation.source == "direct"
    event = only(invocation)
    assert (event.kind, event.source, event.token, event.account, event.region) == (
        Kind.LEAVE,
        "direct",
        None,
        None,
        None,
    )


def test_direct_invocation_with_a_token():
    fields = (
        "LifecycleTransition",
        "EC2InstanceId",
        "AutoScalingGroupName",
        "LifecycleHookName",
        "LifecycleActionToken",
    )
    event = parse_direct({k: raw_message()[k] for k in fields})

    assert (event.kind, event.token, event.account, event.time) == (Kind.JOIN, TOKEN, None, None)


def test_a_whole_hook_message_invoked_directly_is_refused_naming_the_first_extra_field():
    # Origin, Destination and Time are Auto Scaling's to say (a warm-pool move, an action's age): only its own
    # delivery (SQS, SNS, EventBridge) carries them.
    error = only_error(parse_invocation(raw_message()))

    assert error.field == "Origin" and "not a field of a direct invocation" in str(error)


def test_direct_reconcile_action():
    assert only(parse_invocation({"action": "reconcile"})) == LifecycleEvent(
        Kind.RECONCILE, "direct", reason="reconcile requested"
    )
    assert parse_direct({"action": "reconcile", "AutoScalingGroupName": "etcd"}).group == "etcd"


def test_direct_test_notification_is_ignored():
    assert only(parse_invocation(test_notification())).kind is Kind.IGNORE


def test_scheduled_event_reconciles():
    invocation = parse_invocation(scheduled_event())

    event = only(invocation)
    assert (invocation.source, event.kind, event.source, event.group) == ("schedule", Kind.RECONCILE, "schedule", None)
    assert (event.account, event.region, event.message_id) == (ACCOUNT, REGION, "89d1a02d-5ec7-412e-82f5-13505f849b41")
    assert not event.is_action


@pytest.mark.parametrize(
    "detail_type",
    [
        "EC2 Instance Launch Successful",
        "EC2 Instance Terminate Successful",
        "EC2 Instance Launch Unsuccessful",
        "EC2 Instance Terminate Unsuccessful",
        "EC2 Auto Scaling Instance Refresh Started",
    ],
)
def test_other_auto_scaling_events_reconcile_their_group(detail_type):
    detail = {
        "StatusCode": "InProgress",
        "Description": "Launching a new EC2 instance: i-0123456789abcdef0",
        "AutoScalingGroupName": "etcd",
        "ActivityId": "eb56d1a4-f1b5-4a36-a38b-9b14c3b9b0e0",
        "Details": {"Availability Zone": "us-east-1b", "Subnet ID": "subnet-12345678"},
        "RequestId": "eb56d1a4-f1b5-4a36-a38b-9b14c3b9b0e0",
        "StatusMessage": "",
        "EndTime": "2021-01-13T00:12:37.214Z",
        "EC2InstanceId": INSTANCE,
        "StartTime": "2021-01-13T00:12:04.542Z",
        "Cause": "At 2021-01-13T00:12:00Z an instance was started in response to a difference ...",
    }

    event = only(parse_invocation(eventbridge(detail, detail_type)))

    assert (event.kind, event.group, event.instance_id, event.reason) == (Kind.RECONCILE, "etcd", INSTANCE, detail_type)
    assert not event.is_action


def test_other_auto_scaling_event_without_a_group_reconciles_everything():
    event = only(parse_invocation(eventbridge({}, "EC2 Instance Terminate Successful")))

    assert (event.kind, event.group) == (Kind.RECONCILE, None)


@pytest.mark.parametrize(
    ("event_name", "reason"),
    [
        ("autoscaling:EC2_INSTANCE_LAUNCH", "EC2 Instance Launch Successful"),
        ("autoscaling:EC2_INSTANCE_TERMINATE_ERROR", "EC2 Instance Terminate Unsuccessful"),
    ],
)
def test_classic_auto_scaling_notifications_reconcile(event_name, reason):
    # NotificationConfiguration → SNS: {"Event": "autoscaling:EC2_INSTANCE_LAUNCH", ...}
    message = {
        "Progress": 50,
        "AccountId": ACCOUNT,
        "Description": "Launching a new EC2 instance: i-0123456789abcdef0",
        "RequestId": "eb56d1a4-f1b5-4a36-a38b-9b14c3b9b0e0",
        "EndTime": "2021-01-13T00:12:37.214Z",
        "AutoScalingGroupARN": f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:x:autoScalingGroupName/etcd",
        "ActivityId": "eb56d1a4-f1b5-4a36-a38b-9b14c3b9b0e0",
        "StartTime": "2021-01-13T00:12:04.542Z",
        "Service": "AWS Auto Scaling",
        "Time": "2021-01-13T00:12:37.214Z",
        "EC2InstanceId": INSTANCE,
        "StatusCode": "InProgress",
        "StatusMessage": "",
        "Details": {"Subnet ID": "subnet-12345678", "Availability Zone": "us-east-1b"},
        "AutoScalingGroupName": "etcd",
        "Cause": "...",
        "Event": event_name,
    }

    event = only(parse_invocation(sns_event(message)))

    assert (event.kind, event.group, event.reason) == (Kind.RECONCILE, "etcd", reason)


def test_test_notification_inside_an_eventbridge_lifecycle_event_is_ignored():
    assert only(parse_invocation(eventbridge(test_notification()))).kind is Kind.IGNORE


# ---------------------------------------------------------------------------------------------
# validation: every error names its field and says what was expected

FIELD_CASES = [
    # (field, bad value) → the error names detail.<field>
    ("EC2InstanceId", _DROP),
    ("EC2InstanceId", 1234567890),
    ("EC2InstanceId", None),
    ("EC2InstanceId", ["i-0123456789abcdef0"]),
    ("EC2InstanceId", "i-123"),
    ("EC2InstanceId", "i-0123456789abcdef0123"),
    ("EC2InstanceId", "I-0123456789ABCDEF0"),
    ("EC2InstanceId", "i-0123456789abcdef0\n"),
    ("LifecycleActionToken", _DROP),
    ("LifecycleActionToken", "87654321432143214321210987654321"),
    ("LifecycleActionToken", 42),
    ("LifecycleActionToken", "87654321-4321-4321-4321-21098765432"),
    ("AutoScalingGroupName", _DROP),
    ("AutoScalingGroupName", ""),
    ("AutoScalingGroupName", "g" * 256),
    ("AutoScalingGroupName", {"name": "etcd"}),
    ("AutoScalingGroupName", "etcd\r\nforged log line"),
    ("LifecycleHookName", _DROP),
    ("LifecycleHookName", "hook name"),
    ("LifecycleHookName", "h" * 256),
    ("LifecycleHookName", True),
    ("LifecycleTransition", _DROP),
    ("LifecycleTransition", "autoscaling:EC2_INSTANCE_REBOOTING"),
    ("LifecycleTransition", 1),
    ("LifecycleTransition", TERMINATING),  # contradicts the launch detail-type
    ("NotificationMetadata", "m" * 4001),
    ("Origin", "Mars"),
    ("Destination", ["WarmPool"]),
]


@pytest.mark.parametrize(("field", "value"), FIELD_CASES, ids=lambda v: "<dropped>" if v is _DROP else repr(v)[:30])
def test_each_bad_lifecycle_field_is_named_in_the_error(field, value):
    event = eventbridge(lifecycle_detail(**{field: value}), DETAIL_TYPE[LAUNCHING])

    error = only_error(parse_invocation(event))

    assert error.field == f"detail.{field}"
    assert f"field detail.{field}" in str(error)
    assert "expected" in str(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [("account", 123456789012), ("account", "12345678901"), ("region", "US-EAST-1"), ("region", 1), ("time", 5)],
)
def test_bad_eventbridge_envelope_fields_are_named(field, value):
    error = only_error(parse_invocation(eventbridge(lifecycle_detail(), **{field: value})))

    assert error.field == field


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("AccountId", 123456789012),
        ("AccountId", "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff10\uff11\uff12"),
        ("Time", ["2021"]),
    ],
)
def test_bad_raw_message_fields_are_named(field, value):
    # Full-width digits: \d would accept them; an account id never contains them.
    error = only_error(parse_invocation(sqs_event(sqs_record(raw_message(**{field: value})))))

    assert error.field == f"body.{field}"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"messageId": _DROP}, "messageId"),
        ({"messageId": 5}, "messageId"),
        ({"awsRegion": "Mars"}, "awsRegion"),
        ({"eventSourceARN": "arn:aws:sns:us-east-1:123456789012:topic-not-queue"}, "eventSourceARN"),
        ({"body": _DROP}, "body"),
        ({"body": {"LifecycleTransition": LAUNCHING}}, "body"),
    ],
)
def test_bad_sqs_record_fields_are_named(over, field):
    record = sqs_record(raw_message())
    record.update({k: v for k, v in over.items() if v is not _DROP})
    for key in [k for k, v in over.items() if v is _DROP]:
        del record[key]

    error = only_error(parse_invocation(sqs_event(record)))

    assert error.field == field


def test_sqs_body_with_duplicate_keys_is_refused():
    body = json.dumps(raw_message())[:-1] + ', "EC2InstanceId": "i-0fffffffffffffff0"}'

    error = only_error(parse_invocation(sqs_event(sqs_record(body))))

    assert (error.field, "duplicate key 'EC2InstanceId'" in str(error)) == ("body", True)


def test_unknown_detail_type_from_another_source_is_an_error():
    event = eventbridge(
        {"instance-id": INSTANCE, "state": "running"}, "EC2 Instance State-change Notification", "aws.ec2"
    )

    error = only_error(parse_invocation(event))

    assert error.field == "detail-type"
    assert "aws.ec2" in str(error)


def test_unknown_action_is_an_error():
    assert only_error(parse_invocation({"action": "wipe"})).field == "action"


@pytest.mark.parametrize("raw", [None, [], "reconcile", 42, {"foo": "bar"}, {}])
def test_unrecognisable_invocations_are_one_error_not_an_exception(raw):
    invocation = parse_invocation(raw)

    assert invocation.source == "direct"
    assert "expected" in str(only_error(invocation))


def test_records_that_are_not_a_list_are_one_error():
    assert only_error(parse_invocation({"Records": "x"})).field == "Records"


# ---------------------------------------------------------------------------------------------
# size limits


def _body_of_size(size: int) -> str:
    body = json.dumps(raw_message(Padding=""))
    return body.replace('"Padding": ""', '"Padding": "' + "x" * (size - len(body)) + '"')


def test_body_at_the_limit_parses():
    body = _body_of_size(MAX_PAYLOAD_BYTES)
    assert len(body.encode()) == MAX_PAYLOAD_BYTES

    assert only(parse_invocation(sqs_event(sqs_record(body)))).kind is Kind.JOIN


def test_oversized_body_is_refused_without_parsing_it(monkeypatch):
    def no_parsing(*args, **kwargs):
        raise AssertionError("json.loads must not see an oversized body")

    monkeypatch.setattr(events.json, "loads", no_parsing)
    body = _body_of_size(MAX_PAYLOAD_BYTES + 1)

    error = only_error(parse_invocation(sqs_event(sqs_record(body))))

    assert error.field == "body"
    assert "payload too large" in str(error)


def test_oversized_multibyte_message_is_measured_in_bytes():
    message = json.dumps(raw_message(Padding="é" * (MAX_PAYLOAD_BYTES // 2)), ensure_ascii=False)
    assert len(message) < MAX_PAYLOAD_BYTES < len(message.encode())

    error = only_error(parse_invocation(sns_event(message)))

    assert (error.field, "payload too large" in str(error)) == ("Sns.Message", True)


def test_deeply_nested_json_is_an_error_not_a_crash():
    error = only_error(parse_invocation(sqs_event(sqs_record("[" * 50_000 + "]" * 50_000))))

    assert error.field == "body"


# ---------------------------------------------------------------------------------------------
# purity


def test_module_imports_nothing_but_the_standard_library():
    code = (
        "import sys, hook_handler.events; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'aws_lambda_powertools')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# properties: never raises, whatever arrives

KNOWN_KEYS = [
    "Records",
    "eventSource",
    "EventSource",
    "messageId",
    "body",
    "Sns",
    "Message",
    "MessageId",
    "TopicArn",
    "Type",
    "detail-type",
    "source",
    "detail",
    "account",
    "region",
    "action",
    "Event",
    "LifecycleTransition",
    "EC2InstanceId",
    "AutoScalingGroupName",
    "LifecycleHookName",
    "LifecycleActionToken",
    "Origin",
    "Destination",
    "AccountId",
    "awsRegion",
    "eventSourceARN",
]
KNOWN_VALUES = [
    "aws:sqs",
    "aws:sns",
    "aws.autoscaling",
    "aws.events",
    "Scheduled Event",
    "Notification",
    "reconcile",
    LAUNCHING,
    TERMINATING,
    "autoscaling:TEST_NOTIFICATION",
    "EC2 Instance-launch Lifecycle Action",
    "WarmPool",
    "AutoScalingGroup",
    "EC2",
    INSTANCE,
    TOKEN,
    QUEUE_ARN,
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(KNOWN_VALUES)
)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=12), children, max_size=6)
        # JSON inside strings, the way SQS bodies and SNS messages carry it
        | children.map(lambda v: json.dumps(v, allow_nan=True))
    ),
    max_leaves=25,
)


def _well_formed(invocation: object) -> None:
    assert isinstance(invocation, Invocation)
    assert invocation.source in ("sqs", "sns", "eventbridge", "direct", "schedule")
    for parsed in invocation.records:
        assert (parsed.event is None) != (parsed.error is None)
        if parsed.error is not None:
            assert isinstance(parsed.error, EventError)
            assert "expected" in str(parsed.error) or "unrecognised" in str(parsed.error)
        else:
            assert isinstance(parsed.event, LifecycleEvent)
            assert parsed.event.reason
            if parsed.event.is_action:
                assert parsed.event.instance_id and parsed.event.group and parsed.event.hook_name


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_like)
def test_parse_invocation_never_raises_on_arbitrary_json_like_input(raw):
    _well_formed(parse_invocation(raw))


@settings(max_examples=200, deadline=None)
@given(st.lists(json_like | st.text(max_size=40), max_size=5))
def test_sqs_batches_of_arbitrary_bodies_keep_one_result_per_record(bodies):
    records = [
        sqs_record(b if isinstance(b, str) else json.dumps(b), message_id=f"m-{i}") for i, b in enumerate(bodies)
    ]

    invocation = parse_invocation(sqs_event(*records))

    _well_formed(invocation)
    assert invocation.batch
    assert [p.item_id for p in invocation.records] == [f"m-{i}" for i in range(len(bodies))]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(lifecycle_detail())), json_like)
def test_one_field_replaced_by_anything_is_accepted_as_is_or_named(field, value):
    for wrap in (
        lambda d: eventbridge(d, DETAIL_TYPE[LAUNCHING]),
        lambda d: sqs_event(sqs_record(raw_message(**d))),
        lambda d: sns_event(raw_message(**d)),
    ):
        invocation = parse_invocation(wrap(lifecycle_detail(**{field: value})))
        _well_formed(invocation)
        record = invocation.records[0]
        if record.error is not None:
            assert record.error.field is not None and record.error.field.endswith(field)


@pytest.mark.parametrize(
    ("metadata", "text"),
    [
        ({"etcd": True, "cluster": "prod"}, '{"etcd":true,"cluster":"prod"}'),
        (["a", 1], '["a",1]'),
        (42, "42"),
        ("m" * 4000, "m" * 4000),
        ('{"as": "a string"}', '{"as": "a string"}'),
    ],
)
def test_metadata_of_every_documented_form_and_length_is_accepted(metadata, text):
    """Issue 11: EventBridge delivers JSON hook metadata as an object, and PutLifecycleHook accepts 4000
    characters; both were refused as unusable, so such a deployment dead-lettered every lifecycle event."""
    (parsed,) = parse_invocation(
        eventbridge(lifecycle_detail(NotificationMetadata=metadata), DETAIL_TYPE[LAUNCHING])
    ).records
    assert parsed.error is None and parsed.event.kind is Kind.JOIN
    assert parsed.event.metadata == text
