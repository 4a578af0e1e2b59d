"""The termination policy in the templates: its own function from the same zip and settings, read-only, invocable
by Auto Scaling's service-linked role, and first in the group's TerminationPolicies (AWS: a Lambda function must
come first) unless turned off."""

from __future__ import annotations

from typing import Any

from hook_handler import app


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for policy in role["Properties"]["Policies"]:
        for st in policy["PolicyDocument"]["Statement"]:
            out.append(st["Fn::If"][1] if "Fn::If" in st else st)
    return out


def test_the_policy_is_its_own_short_function_with_the_coordinators_settings(coordinator_template):
    res = coordinator_template["Resources"]
    policy, coordinator = res["TerminationPolicyFunction"]["Properties"], res["Function"]["Properties"]
    assert policy["Handler"] == "hook_handler.app.termination_policy_handler"
    assert callable(app.termination_policy_handler)
    assert policy["Code"] == coordinator["Code"]
    assert policy["Timeout"] <= 2  # AWS: the maximum run time is two seconds
    assert "ReservedConcurrentExecutions" not in policy
    assert policy["Environment"] == coordinator["Environment"]
    assert policy["VpcConfig"] == coordinator["VpcConfig"]


def test_the_policy_role_only_reads(coordinator_template):
    role = coordinator_template["Resources"]["TerminationPolicyRole"]
    actions = {
        a for st in _statements(role) for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    }
    assert actions == {
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeWarmPool",
        "ec2:DescribeInstances",
        "secretsmanager:GetSecretValue",
        "kms:Decrypt",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }


def test_auto_scalings_service_linked_role_may_invoke_it_and_its_arn_is_exported(coordinator_template):
    res = coordinator_template["Resources"]
    permission = res["TerminationPolicyPermission"]["Properties"]
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["Principal"]["Fn::Sub"].endswith(
        ":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    )
    out = coordinator_template["Outputs"]["TerminationPolicyArn"]
    assert out["Export"]["Name"]["Fn::Sub"] == "${AWS::StackName}-TerminationPolicyArn"


def test_the_group_names_the_policy_first_unless_turned_off(cluster_template):
    group = cluster_template["Resources"]["Group"]["Properties"]
    condition, on, off = group["TerminationPolicies"]["Fn::If"]
    assert condition == "UseTerminationPolicy"
    assert on[0] == {"Fn::ImportValue": {"Fn::Sub": "${CoordinatorStackName}-TerminationPolicyArn"}}
    assert on[1:] == ["Default"] and off == ["Default"]
    assert cluster_template["Parameters"]["EtcdTerminationPolicy"]["Default"] == "true"
