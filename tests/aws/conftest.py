"""Fixtures of the infra/aws tests: the templates (decoded like CloudFormation reads them) and the
AWS operations the coordinator calls."""

from __future__ import annotations

from typing import Any

import pytest
from aws_helpers import CLUSTER, COORDINATOR, load_template


def recorded_operations() -> list[str]:
    """Every AWS operation the coordinator calls, as IAM actions (``service:Operation``).

    For now the list the code's authors declare. To be replaced by the operations recorded with
    botocore's event hooks (``before-call.*.*``: ``f"{model.service_model.signing_name}:{model.name}"``)
    during the integration tests, so the role is checked against what the code really does.
    """
    return [
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeLifecycleHooks",
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:RecordLifecycleActionHeartbeat",
        "ec2:DescribeInstances",
        "ec2:CreateTags",
        "route53:ListResourceRecordSets",
        "route53:ChangeResourceRecordSets",
        "route53:GetChange",
    ]


@pytest.fixture(scope="session")
def operations() -> set[str]:
    return set(recorded_operations())


@pytest.fixture(scope="session")
def coordinator_template() -> dict[str, Any]:
    return load_template(COORDINATOR)


@pytest.fixture(scope="session")
def cluster_template() -> dict[str, Any]:
    return load_template(CLUSTER)
