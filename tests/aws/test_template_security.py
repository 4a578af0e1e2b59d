"""What the templates' policies admit: each principal only what its job needs (read from the templates as
CloudFormation sees them)."""

from __future__ import annotations

from typing import Any

from aws_helpers import COORDINATOR, load_template


def _resources(path: Any, kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in load_template(path)["Resources"].items() if v["Type"] == kind}


def test_the_hook_topic_admits_only_the_hooks_publishing_role():
    (policy,) = _resources(COORDINATOR, "AWS::SNS::TopicPolicy").values()
    assert policy["Condition"] == "ViaSns" and policy["Properties"]["Topics"] == [{"Ref": "HookTopic"}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    deny = next(s for s in statements if s["Effect"] == "Deny")
    assert (deny["Principal"], deny["Action"]) == ("*", "sns:Publish")
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": ["HookPublishRole", "Arn"]}}}
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert [s["Principal"] for s in allows] == [{"AWS": {"Fn::GetAtt": ["HookPublishRole", "Arn"]}}]


def test_the_ca_secret_admits_only_the_coordinators_role_and_the_break_glass_role():
    (policy,) = _resources(COORDINATOR, "AWS::SecretsManager::ResourcePolicy").values()
    props = policy["Properties"]
    assert policy["Condition"] == "HasCaSecret" and props["SecretId"] == {"Ref": "EtcdCaSecretArn"}
    assert props["BlockPublicPolicy"] is True
    (deny,) = props["ResourcePolicy"]["Statement"]
    assert (deny["Effect"], deny["Principal"]) == ("Deny", "*")
    assert set(deny["Action"]) == {"secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"}
    role = {"Fn::GetAtt": ["FunctionRole", "Arn"]}
    assert deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == {
        "Fn::If": ["HasCaBreakGlass", [role, {"Ref": "EtcdCaBreakGlassRoleArn"}], [role]]
    }
