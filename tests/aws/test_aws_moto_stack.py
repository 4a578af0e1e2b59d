"""Smoke test: coordinator.yaml deploys into moto's CloudFormation in each notification path, and the
resources moto creates are wired as the template says. moto skips some resource types (facts,
section 6, plus alarms, EventInvokeConfig, queue and bucket policies in moto 5.2.5): the test pins that
list and checks those resources in the template instead (tests/aws/test_template_agrees.py)."""

from __future__ import annotations

import ast
import copy
import io
import json
import warnings
import zipfile
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from aws_helpers import CLUSTER, COORDINATOR, load_template

moto = pytest.importorskip("moto")
from moto.cloudformation.parsing import get_model_map  # noqa: E402

REGION = "us-east-1"
GROUPS = ["etcd-a", "etcd-b"]
# Resource types of coordinator.yaml that moto's CloudFormation does not create (it warns and
# moves on). If moto learns one, this test fails so the smoke test can assert on it.
SKIPPED_BY_MOTO = {
    "AWS::AutoScaling::LifecycleHook",
    "AWS::SNS::Subscription",
    "AWS::CloudWatch::Alarm",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::SQS::QueuePolicy",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::SecretsManager::ResourcePolicy",
}
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")
MODES = {"EventBridge": set(), "EventBridgeSQS": {"ViaSqs"}, "SNS": {"ViaSns"}}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads(json.dumps(load_template(COORDINATOR), default=str))


def test_moto_skips_exactly_the_types_we_expect(template):
    types = {r["Type"] for r in template["Resources"].values()}
    assert {t for t in types if t not in get_model_map()} == SKIPPED_BY_MOTO


def _for_moto(template: dict[str, Any], mode: str, in_vpc: bool) -> dict[str, Any]:
    """The template with the code in S3, and without outputs of other modes: moto resolves an
    output's value even when the output's condition is false (real CloudFormation does not)."""
    t = copy.deepcopy(template)
    t["Resources"]["Function"]["Properties"]["Code"] = {"S3Bucket": "code", "S3Key": "coordinator.zip"}
    conditions = (None, *MODES[mode], *(["InVpc"] if in_vpc else []))
    t["Outputs"] = {k: v for k, v in t["Outputs"].items() if v.get("Condition") in conditions}
    return t


@pytest.fixture
def aws(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    with moto.mock_aws():
        yield


def _policy_document(iam: Any, role: str, name: str) -> dict[str, Any]:
    """An inline policy as a dict. moto's CloudFormation stores the document as Python's repr of it."""
    doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if isinstance(doc, dict):
        return doc
    doc = unquote(doc)
    return json.loads(doc) if doc.lstrip().startswith('{"') else ast.literal_eval(doc)


def _deploy(template: dict[str, Any], mode: str, *, membership: bool = True) -> tuple[str, dict[str, str]]:
    """Deploy the stack; with membership (the default) in the default VPC's first subnet, as documented."""
    r53 = boto3.client("route53")
    zone = r53.create_hosted_zone(Name="example.com", CallerReference="smoke")["HostedZone"]["Id"].split("/")[-1]
    ec2 = boto3.client("ec2")
    subnet = ec2.describe_subnets()["Subnets"][0]
    vpc_params = {"VpcId": subnet["VpcId"], "SubnetIds": subnet["SubnetId"]} if membership else {}
    subnet = subnet["SubnetId"]
    ec2.create_launch_template(LaunchTemplateName="etcd", LaunchTemplateData={"ImageId": "ami-12c6146b"})
    asg = boto3.client("autoscaling")
    for name in GROUPS:
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": "etcd"},
            MinSize=0, MaxSize=3, DesiredCapacity=0, VPCZoneIdentifier=subnet,
        )  # fmt: skip
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as zf:
        zf.writestr("hook_handler/app.py", "def lambda_handler(event, context):\n    return {}\n")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="code")
    s3.put_object(Bucket="code", Key="coordinator.zip", Body=code.getvalue())

    params = {
        "HostedZoneId": zone, "DomainName": "example.com", "AsgNames": ",".join(GROUPS),
        "GroupName": GROUPS[0], "NotificationPath": mode, "AlarmTopicArn": "",
        "EtcdMembership": "true" if membership else "false", **vpc_params,
    }  # fmt: skip
    cfn = boto3.client("cloudformation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto warns about each type it skips
        cfn.create_stack(
            StackName="coordinator",
            TemplateBody=json.dumps(_for_moto(template, mode, in_vpc=membership)),
            Capabilities=["CAPABILITY_IAM"],
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        )
    stack = cfn.describe_stacks(StackName="coordinator")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    resources = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in cfn.list_stack_resources(StackName="coordinator")["StackResourceSummaries"]
    }
    return zone, resources


@pytest.mark.parametrize("mode", list(MODES))
def test_coordinator_stack_deploys_and_wires_the_function(aws, template, mode):
    zone, res = _deploy(template, mode)

    # The function: runtime, entry point, limits, and the settings with the stack's values.
    fn = boto3.client("lambda").get_function(FunctionName=res["Function"])
    conf = fn["Configuration"]
    assert (conf["Runtime"], conf["Handler"]) == ("python3.12", "hook_handler.app.lambda_handler")
    assert (conf["Timeout"], conf["MemorySize"]) == (300, 256)
    env = conf["Environment"]["Variables"]
    assert env["domain_name"] == "example.com" and env["r53_zone_id"] == zone
    assert env["asg_names"] == "etcd-a,etcd-b" and env["srv_record_name"] == "_etcd-server._tcp"
    assert env["POWERTOOLS_SERVICE_NAME"] == "coordinator"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "EtcdAsgCoordinator"
    assert (
        env["etcd_membership"] == "true" and str(env["member_start_timeout_seconds"]) == "300"
    )  # moto keeps Number types

    # Membership on: in the VPC, with the stack's own security group (its egress: see below).
    ec2 = boto3.client("ec2")
    (subnet,) = conf["VpcConfig"]["SubnetIds"]
    assert conf["VpcConfig"]["SecurityGroupIds"] == [res["FunctionSecurityGroup"]]
    (group,) = ec2.describe_security_groups(GroupIds=[res["FunctionSecurityGroup"]])["SecurityGroups"]
    assert group["VpcId"] == ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
    # (moto's CloudFormation ignores SecurityGroupEgress and keeps the default rule: the egress rules are
    # checked in the template, tests/aws/test_template_agrees.py.)

    # The log group with its retention.
    (log_group,) = boto3.client("logs").describe_log_groups(logGroupNamePrefix="/etcd-asg-coordinator/")["logGroups"]
    assert log_group["retentionInDays"] == 30

    # The role, resolved: completion scoped to both served groups, Route 53 to the zone.
    iam = boto3.client("iam")
    role_name = res["FunctionRole"]
    doc = _policy_document(iam, role_name, "coordinator-api")
    # moto leaves AWS::NoValue in a list as None where CloudFormation drops it (statements too)
    sids = {st["Sid"]: st for st in doc["Statement"] if st is not None}
    assert "ReadEtcdTlsSecret" not in sids and "DecryptEtcdTlsSecret" not in sids  # no TLS secret given
    assert sorted(r for r in sids["CompleteServedGroupsActions"]["Resource"] if r is not None) == [
        f"arn:aws:autoscaling:{REGION}:123456789012:autoScalingGroup:*:autoScalingGroupName/{name}" for name in GROUPS
    ]
    assert sids["WriteZoneRecords"]["Resource"] == f"arn:aws:route53:::hostedzone/{zone}"
    assert sids["TagServedInstances"]["Condition"]["StringEquals"] == {
        "ec2:ResourceTag/aws:autoscaling:groupName": GROUPS
    }
    platform = _policy_document(iam, role_name, "lambda-platform")
    platform_sids = {st["Sid"] for st in platform["Statement"] if st is not None}
    assert ("PollEventQueue" in platform_sids) == (mode == "EventBridgeSQS")

    # Rules: lifecycle actions of the served groups (not in SNS mode) and the reconcile schedule.
    events = boto3.client("events")
    rules = {r["Name"]: r for r in events.list_rules()["Rules"]}
    reconcile = rules[res["ReconcileRule"]]
    assert reconcile["ScheduleExpression"] == "rate(2 minutes)"
    queue_arns = {}
    sqs = boto3.client("sqs")
    for logical in ("FailureQueue", "EventQueue"):
        if logical in res:
            attrs = sqs.get_queue_attributes(QueueUrl=res[logical], AttributeNames=["All"])["Attributes"]
            queue_arns[logical] = attrs
    target_arn = queue_arns["EventQueue"]["QueueArn"] if mode == "EventBridgeSQS" else conf["FunctionArn"]
    assert [t["Arn"] for t in events.list_targets_by_rule(Rule=res["ReconcileRule"])["Targets"]] == [target_arn]
    if mode == "SNS":
        assert "LifecycleRule" not in res
    else:
        pattern = json.loads(rules[res["LifecycleRule"]]["EventPattern"])
        assert pattern["detail"]["AutoScalingGroupName"] == GROUPS
        assert pattern["detail"]["LifecycleHookName"] == ["etcd-coordinator-launch", "etcd-coordinator-terminate"]
        targets = events.list_targets_by_rule(Rule=res["LifecycleRule"])["Targets"]
        assert [t["Arn"] for t in targets] == [target_arn]
        assert targets[0]["DeadLetterConfig"]["Arn"] == queue_arns["FailureQueue"]["QueueArn"]

    # Per mode: the queue and its event source, or the topic, or direct invocation permissions.
    lam = boto3.client("lambda")
    mappings = lam.list_event_source_mappings(FunctionName=res["Function"])["EventSourceMappings"]
    if mode == "EventBridgeSQS":
        attrs = queue_arns["EventQueue"]
        assert int(attrs["VisibilityTimeout"]) >= 6 * conf["Timeout"]
        assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"] == queue_arns["FailureQueue"]["QueueArn"]
        (mapping,) = mappings
        assert mapping["EventSourceArn"] == attrs["QueueArn"] and mapping["BatchSize"] == 10
    else:
        assert mappings == [] and "EventQueue" not in res
    topics = boto3.client("sns").list_topics()["Topics"]
    assert bool(topics) == (mode == "SNS")
    if mode == "SNS":
        assert "HookPublishRole" in res
        trust = iam.get_role(RoleName=res["HookPublishRole"])["Role"]["AssumeRolePolicyDocument"]
        assert trust["Statement"][0]["Principal"] == {"Service": "autoscaling.amazonaws.com"}
    policy = json.loads(lam.get_policy(FunctionName=res["Function"])["Policy"]) if mode != "EventBridgeSQS" else None
    if policy:
        principals = sorted(st["Principal"]["Service"] for st in policy["Statement"])
        assert principals == (
            ["events.amazonaws.com", "sns.amazonaws.com"] if mode == "SNS" else ["events.amazonaws.com"] * 2
        )

    # Outputs that etcd-cluster.yaml imports.
    exports = {e["Name"]: e["Value"] for e in boto3.client("cloudformation").list_exports()["Exports"]}
    assert exports["coordinator-DomainName"] == "example.com"
    assert exports["coordinator-LaunchHookName"] == "etcd-coordinator-launch"
    assert ("coordinator-HookTopicArn" in exports) == (mode == "SNS")
    assert exports["coordinator-FunctionSecurityGroupId"] == res["FunctionSecurityGroup"]


def test_dns_only_deploys_outside_the_vpc_without_a_security_group(aws, template):
    _, res = _deploy(template, "EventBridge", membership=False)
    conf = boto3.client("lambda").get_function(FunctionName=res["Function"])["Configuration"]
    assert conf["Environment"]["Variables"]["etcd_membership"] == "false"
    assert not conf.get("VpcConfig", {}).get("SubnetIds")
    assert "FunctionSecurityGroup" not in res
    exports = {e["Name"] for e in boto3.client("cloudformation").list_exports()["Exports"]}
    assert "coordinator-FunctionSecurityGroupId" not in exports


KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/0f2b5d3e-1111-4222-8333-944445555666"


@pytest.mark.parametrize("bucket", ["", "etcd-snapshots-of-coordinator"], ids=["defaults", "restore"])
def test_cluster_stack_admits_the_coordinators_security_group_on_the_client_port(aws, template, bucket):
    """The default deployment: coordinator.yaml (membership on, in the VPC), then etcd-cluster.yaml with its
    defaults (or with SnapshotBucket: restore possible). The members' group admits the coordinator's own security
    group on 2379 and itself on 2380; the members' role may mark their own data lost, and read the snapshots only
    with a bucket."""
    _, coordinator = _deploy(template, "EventBridge")
    subnet = boto3.client("ec2").describe_subnets()["Subnets"][0]
    params = {
        "CoordinatorStackName": "coordinator", "GroupName": "etcd", "VpcId": subnet["VpcId"],
        "SubnetIds": subnet["SubnetId"],
        # moto knows this public parameter, not the template's default al2023 one
        "ImageId": "/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2",
        **({"SnapshotBucket": bucket, "SnapshotKmsKeyArn": KMS_KEY} if bucket else {}),
    }  # fmt: skip
    cfn = boto3.client("cloudformation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfn.create_stack(
            StackName="etcd",
            TemplateBody=json.dumps(load_template(CLUSTER), default=str),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        )
    stack = cfn.describe_stacks(StackName="etcd")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    res = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.list_stack_resources(StackName="etcd")["StackResourceSummaries"]
    }
    (group,) = boto3.client("ec2").describe_security_groups(GroupIds=[res["SecurityGroup"]])["SecurityGroups"]
    sources = {
        (p["FromPort"], pair["GroupId"]) for p in group["IpPermissions"] for pair in p.get("UserIdGroupPairs", [])
    }
    assert (2379, coordinator["FunctionSecurityGroup"]) in sources
    assert {(2379, res["SecurityGroup"]), (2380, res["SecurityGroup"])} <= sources
    role = boto3.client("iam").list_role_policies(RoleName=res["InstanceRole"])["PolicyNames"]
    assert {"etcd-member-certificate", "etcd-member-data-lost"} <= set(role)
    assert ("RestorePolicy" in res) == ("RestoreKeyPolicy" in res) == bool(bucket)
