"""Helpers shared by the emulator's tests (tests/local): AWS error codes, Route 53 batches, Lambda delivery setups.

Imported as ``from local_helpers import ...`` (pytest puts this folder on ``sys.path``, as for
tests/aws/aws_helpers.py); the fixtures are in tests/local/conftest.py and tests/conftest.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra.local.aws import LocalAWS
from infra.local.clock import EPOCH

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCHING"


def error_of(call: Callable[..., Any], **kwargs: Any) -> tuple[str, str]:
    """The AWS error code and message ``call(**kwargs)`` fails with (it must raise ``ClientError``)."""
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def change(r53: Any, zone: str, *changes: dict[str, Any]) -> dict[str, Any]:
    """One ChangeResourceRecordSets batch; its ChangeInfo."""
    return r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": list(changes)})["ChangeInfo"]


def t(aws: LocalAWS) -> float:
    """Simulated seconds since ``EPOCH``."""
    return aws.clock.now() - EPOCH


def group_with_hook(aws: LocalAWS, **hook: Any) -> None:
    """Group ``etcd`` (0..10, launch template ``etcd-node``) with a launch hook ``launch`` of ``hook``'s options."""
    asg = aws.client("autoscaling")
    asg.create_auto_scaling_group(
        AutoScalingGroupName="etcd",
        LaunchTemplate={"LaunchTemplateName": "etcd-node"},
        MinSize=0,
        MaxSize=10,
        DesiredCapacity=0,
        AvailabilityZones=["us-east-1a"],
    )
    asg.put_lifecycle_hook(AutoScalingGroupName="etcd", LifecycleHookName="launch", LifecycleTransition=LAUNCH, **hook)


def rule_to(aws: LocalAWS, arn: str) -> None:
    """An EventBridge rule sending every Auto Scaling event to ``arn``."""
    events = aws.client("events")
    events.put_rule(Name="lifecycle", EventPattern=json.dumps({"source": ["aws.autoscaling"]}))
    events.put_targets(Rule="lifecycle", Targets=[{"Id": "fn", "Arn": arn}])


def queue(aws: LocalAWS, name: str, **attributes: str) -> tuple[str, str]:
    """A new SQS queue: (url, arn)."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn
