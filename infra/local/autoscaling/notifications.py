"""What the groups of one account send: lifecycle and activity events on EventBridge's default bus (moto's rules
route them), the raw lifecycle message to a hook's SQS queue or SNS topic, and the test notification.

Every message is also kept in ``aws.notifications`` (``Notification``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState, LifecycleHook

from infra.local.account import Account, new_uuid
from infra.local.autoscaling.model import LAUNCHING, LifecycleActionRecord, LifecycleValidationError, Notification
from infra.local.clock import iso

log = logging.getLogger(__name__)


def target_exists(target_arn: str) -> bool:
    """Whether the SQS queue or SNS topic ``target_arn`` names exists (PutLifecycleHook's test message)."""
    parts = target_arn.split(":")
    if len(parts) < 6:
        return False
    service, region, account, resource = parts[2], parts[3], parts[4], parts[5]
    try:
        if service == "sqs":
            from moto.sqs.models import sqs_backends

            sqs_backends[account][region].get_queue(resource)
            return True
        if service == "sns":
            from moto.sns.models import sns_backends

            sns_backends[account][region].get_topic(target_arn)
            return True
    except Exception:  # noqa: BLE001 - moto's not-found errors differ per service
        return False
    return False


class Notifier:
    """The messages of one account's groups."""

    def __init__(self, aws: Account) -> None:
        self.aws = aws

    def record(self, channel: str, target: str, payload: dict[str, Any]) -> None:
        self.aws.notifications.append(Notification(self.aws.clock.now(), channel, target, payload))

    def put_event(self, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
        """Put an ``aws.autoscaling`` event on the default bus, so moto's rules route it."""
        from moto.events.models import events_backends

        now = self.aws.clock.now()
        backend = events_backends[self.aws.account][self.aws.region]
        entry = {
            "Source": "aws.autoscaling",
            "DetailType": detail_type,
            "Detail": json.dumps(detail),
            "Resources": resources,
            "Time": now,
        }
        result = backend.put_events([entry])
        event = {
            "version": "0",
            "id": result[0].get("EventId", new_uuid(self.aws)),
            "detail-type": detail_type,
            "source": "aws.autoscaling",
            "account": self.aws.account,
            "time": iso(now),
            "region": self.aws.region,
            "resources": resources,
            "detail": detail,
        }
        self.record("eventbridge", "default", event)

    def send_to_target(self, target_arn: str, message: dict[str, Any], subject: str) -> None:
        """Send a raw lifecycle message to the hook's SQS queue or SNS topic."""
        parts = target_arn.split(":")
        service, region, account, resource = parts[2], parts[3], parts[4], parts[5]
        body = json.dumps(message)
        if service == "sqs":
            from moto.sqs.models import sqs_backends

            sqs_backends[account][region].send_message(resource, body)
            self.record("sqs", target_arn, message)
        elif service == "sns":
            from moto.sns.models import sns_backends

            sns_backends[account][region].publish(body, arn=target_arn, subject=subject)
            self.record("sns", target_arn, message)
        else:
            raise LifecycleValidationError(f"Invalid notification target ARN: {target_arn}")

    def test_notification(self, group_name: str, group_arn: str, hook: LifecycleHook) -> None:
        message = {
            "AccountId": self.aws.account,
            "RequestId": new_uuid(self.aws),
            "AutoScalingGroupARN": group_arn,
            "AutoScalingGroupName": group_name,
            "Service": "AWS Auto Scaling",
            "Event": "autoscaling:TEST_NOTIFICATION",
            "Time": iso(self.aws.clock.now(), millis=True),
        }
        self.send_to_target(
            hook.notification_target_arn, message, f'Auto Scaling: test notification for group "{group_name}"'
        )

    def lifecycle_action(self, group: FakeAutoScalingGroup, hook: LifecycleHook, action: LifecycleActionRecord) -> None:
        """An action began: its event on the bus, and its raw message to the hook's target (if any)."""
        launching = action.transition == LAUNCHING
        origin, destination = action.origin, action.destination
        if not origin:
            origin, destination = ("EC2", "AutoScalingGroup") if launching else ("AutoScalingGroup", "EC2")
        metadata = getattr(hook, "notification_metadata", None)
        detail: dict[str, Any] = {
            "LifecycleActionToken": action.token,
            "AutoScalingGroupName": group.name,
            "LifecycleHookName": hook.name,
            "EC2InstanceId": action.instance_id,
            "LifecycleTransition": action.transition,
        }
        if metadata:
            detail["NotificationMetadata"] = metadata
        detail["Origin"] = origin
        detail["Destination"] = destination
        kind = "launch" if launching else "terminate"
        self.put_event(f"EC2 Instance-{kind} Lifecycle Action", detail, [group.arn])
        target = getattr(hook, "notification_target_arn", None)
        if target:
            self._lifecycle_message(target, hook, action, origin, destination, metadata)

    def _lifecycle_message(
        self,
        target: str,
        hook: LifecycleHook,
        action: LifecycleActionRecord,
        origin: str,
        destination: str,
        metadata: str | None,
    ) -> None:
        message: dict[str, Any] = {
            "Origin": origin,
            "LifecycleHookName": hook.name,
            "Destination": destination,
            "AccountId": self.aws.account,
            "RequestId": new_uuid(self.aws),
            "LifecycleTransition": action.transition,
            "AutoScalingGroupName": action.group,
            "Service": "AWS Auto Scaling",
            "Time": iso(self.aws.clock.now(), millis=True),
            "EC2InstanceId": action.instance_id,
            "LifecycleActionToken": action.token,
        }
        if metadata:
            message["NotificationMetadata"] = metadata
        word = "LAUNCHING" if action.transition == LAUNCHING else "TERMINATING"
        subject = f"Auto Scaling:  Lifecycle action '{word}' for instance {action.instance_id} in progress."
        try:
            self.send_to_target(target, message, subject)
        except Exception:
            log.warning("lifecycle notification to %s failed", target, exc_info=True)

    def activity(
        self,
        group: FakeAutoScalingGroup,
        state: InstanceState,
        detail_type: str,
        *,
        status: str = "InProgress",
        message: str = "",
        origin: str | None = None,
    ) -> None:
        """A launch or termination activity's event (``EC2 Instance Launch Successful`` and the like)."""
        instance = state.instance
        launching = "Launch" in detail_type
        now = iso(self.aws.clock.now())
        verb = "Launching a new EC2 instance" if launching else "Terminating EC2 instance"
        detail = {
            "StatusCode": status,
            "Description": f"{verb}: {instance.id}",
            "AutoScalingGroupName": group.name,
            "ActivityId": new_uuid(self.aws),
            "Details": {"Availability Zone": instance.placement.zone, "Subnet ID": instance.subnet_id or ""},
            "RequestId": new_uuid(self.aws),
            "StatusMessage": message,
            "EndTime": now,
            "EC2InstanceId": instance.id,
            "StartTime": now,
            "Cause": f"At {now} an instance was {'started' if launching else 'taken out of service'}.",
            "Origin": origin or ("EC2" if launching else "AutoScalingGroup"),
            "Destination": "AutoScalingGroup" if launching else "EC2",
        }
        instance_arn = f"arn:aws:ec2:{self.aws.region}:{self.aws.account}:instance/{instance.id}"
        self.put_event(detail_type, detail, [group.arn, instance_arn])
