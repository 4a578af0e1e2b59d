"""coordinator.yaml and the code agree: the environment is the settings one for one, the role allows
exactly the operations the code calls (and nothing with a wildcard), and the wiring fits the
coordinator's waits."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hook_handler.settings import SETTING_NAMES, SETTINGS_SPEC

SPEC = {s.name: s for s in SETTINGS_SPEC}
# Where a template default deliberately differs from the code's, and why.
TEMPLATE_DEFAULTS = {
    "asg_names": None,  # required by the template: the role and the rule are scoped to the groups
    "launch_hook_name": "etcd-coordinator-launch",  # the template names the hooks it routes
    "terminate_hook_name": "etcd-coordinator-terminate",
}
# What the Lambda service itself needs on the function's behalf (not calls of hook_handler).
PLATFORM_ACTIONS = {
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "sqs:SendMessage",  # on-failure destination
    "sqs:ReceiveMessage",  # the SQS event source (EventBridgeSQS)
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "xray:PutTraceSegments",  # Tracing=true
    "xray:PutTelemetryRecords",
}


def _resources(t: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in t["Resources"].items() if v["Type"] == kind}


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for st in policy["PolicyDocument"]["Statement"]:
        if "Fn::If" in st:  # conditional statement: [condition, statement, AWS::NoValue]
            st = st["Fn::If"][1]
        out.append(st)
    return out


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _policy(t: dict[str, Any], name: str) -> dict[str, Any]:
    (policy,) = [p for p in t["Resources"]["FunctionRole"]["Properties"]["Policies"] if p["PolicyName"] == name]
    return policy


def _env(t: dict[str, Any]) -> dict[str, Any]:
    return t["Resources"]["Function"]["Properties"]["Environment"]["Variables"]


def test_every_environment_variable_is_a_setting_and_every_setting_is_set(coordinator_template):
    names = set(_env(coordinator_template))
    unknown = {n for n in names - SETTING_NAMES if not n.startswith("POWERTOOLS_")}
    assert not unknown, f"the template sets variables the code never reads: {sorted(unknown)}"
    assert not SETTING_NAMES - names, f"settings the template does not set: {sorted(SETTING_NAMES - names)}"


def test_required_settings_come_from_required_parameters(coordinator_template):
    params = coordinator_template["Parameters"]
    for spec in SETTINGS_SPEC:
        if spec.required:
            ref = _env(coordinator_template)[spec.name]["Ref"]
            assert "Default" not in params[ref], f"{spec.name} must be given: parameter {ref} has a default"


def test_parameter_defaults_are_the_settings_defaults(coordinator_template):
    params = coordinator_template["Parameters"]
    for name, value in _env(coordinator_template).items():
        if name not in SPEC or not isinstance(value, dict) or value.get("Ref") not in params:
            continue
        default = params[value["Ref"]].get("Default")
        expected = TEMPLATE_DEFAULTS.get(name, SPEC[name].default) if name in TEMPLATE_DEFAULTS else SPEC[name].default
        got = None if default is None else str(default)
        assert got == expected, f"{name}: parameter {value['Ref']} defaults to {got!r}, the code to {expected!r}"


def test_metrics_namespace_is_the_one_the_alarms_watch(coordinator_template):
    env = _env(coordinator_template)
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "EtcdAsgCoordinator"
    alarms = _resources(coordinator_template, "AWS::CloudWatch::Alarm")
    custom = {
        a["Properties"]["MetricName"] for a in alarms.values() if a["Properties"]["Namespace"] == "EtcdAsgCoordinator"
    }
    assert custom == {
        "AbandonedActions", "GuardRefused", "QuorumHold", "MemberStartTimeouts", "SnapshotAgeSeconds", "ClusterLost",
        "RecoveryHeld",
    }  # fmt: skip
    for alarm in alarms.values():
        if alarm["Properties"]["Namespace"] == "EtcdAsgCoordinator":
            # powertools Metrics adds exactly one dimension: service = POWERTOOLS_SERVICE_NAME
            assert alarm["Properties"]["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]


def test_quorum_holds_and_member_start_timeouts_alarm_like_guard_refusals(coordinator_template):
    alarms = {a["Properties"]["MetricName"]: a["Properties"] for a in _alarms(coordinator_template)}
    guard = alarms["GuardRefused"]
    for metric in ("QuorumHold", "MemberStartTimeouts"):
        alarm = alarms[metric]
        for key in ("Namespace", "Dimensions", "Statistic", "Threshold", "ComparisonOperator", "TreatMissingData"):
            assert alarm[key] == guard[key], f"{metric}: {key}"
        assert alarm["AlarmActions"] == guard["AlarmActions"] and alarm["OKActions"] == guard["OKActions"]


def _alarms(t: dict[str, Any]) -> list[dict[str, Any]]:
    return list(_resources(t, "AWS::CloudWatch::Alarm").values())


def test_membership_is_on_by_default_and_cannot_deploy_outside_the_vpc(coordinator_template):
    t = coordinator_template
    params, env = t["Parameters"], _env(t)
    assert params["EtcdMembership"]["Default"] == "true" and env["etcd_membership"] == {"Ref": "EtcdMembership"}
    rule = t["Rules"]["MembershipNeedsSubnets"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "EtcdMembership"}, "true"]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::EachMemberEquals": [{"Ref": "SubnetIds"}, ""]}]}
    assert "SubnetIds" in assertion["AssertDescription"] and "EtcdMembership=false" in assertion["AssertDescription"]
    own = t["Rules"]["OwnSecurityGroupNeedsVpcId"]
    assert own["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "VpcId"}, ""]}]}


def test_in_the_vpc_the_function_gets_its_own_security_group_and_exports_it(coordinator_template):
    t = coordinator_template
    res = t["Resources"]
    vpc = res["Function"]["Properties"]["VpcConfig"]["Fn::If"]
    assert vpc[0] == "InVpc" and vpc[1]["SubnetIds"] == {"Ref": "SubnetIds"}
    assert vpc[1]["SecurityGroupIds"] == {
        "Fn::If": ["CreateSecurityGroup", [{"Ref": "FunctionSecurityGroup"}], {"Ref": "SecurityGroupIds"}]
    }
    group = res["FunctionSecurityGroup"]
    assert group["Condition"] == "CreateSecurityGroup" and group["Properties"]["VpcId"] == {"Ref": "VpcId"}
    port = {"Ref": "EtcdClientPort"}
    egress = [(e["IpProtocol"], e["FromPort"], e["ToPort"]) for e in group["Properties"]["SecurityGroupEgress"]]
    assert egress == [("tcp", port, port), ("tcp", 443, 443)]  # etcd, then the AWS APIs; nothing else
    output = t["Outputs"]["FunctionSecurityGroupId"]
    assert output["Condition"] == "InVpc"
    assert output["Export"]["Name"] == {"Fn::Sub": "${AWS::StackName}-FunctionSecurityGroupId"}
    # ENIs of a VPC function: the managed policy, in the VPC only.
    managed = res["FunctionRole"]["Properties"]["ManagedPolicyArns"]["Fn::If"]
    assert managed[0] == "InVpc"
    assert managed[1] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"}
    ]


def test_cluster_admits_the_coordinator_on_the_client_port_and_peers_on_the_peer_port(cluster_template):
    res = cluster_template["Resources"]
    client = res["ClientIngressFromCoordinator"]
    assert cluster_template["Parameters"]["CoordinatorInVpc"]["Default"] == "true"
    assert (client["Properties"]["FromPort"], client["Properties"]["ToPort"]) == (2379, 2379)
    assert client["Properties"]["SourceSecurityGroupId"] == {
        "Fn::ImportValue": {"Fn::Sub": "${CoordinatorStackName}-FunctionSecurityGroupId"}
    }
    peers = res["PeerIngress"]["Properties"]
    assert (peers["FromPort"], peers["ToPort"]) == (2380, 2380)
    assert peers["SourceSecurityGroupId"] == peers["GroupId"] == {"Ref": "SecurityGroup"}


# Used by a service on the function's behalf, never called by the code: Secrets Manager decrypts the TLS secret
# with its customer managed key (scoped by kms:ViaService, below); S3 gets and decrypts a data key of the
# snapshots' customer managed key (SSE-KMS, through S3 only).
# CreateSecret with Tags needs secretsmanager:TagResource too (Secrets Manager's own authorization of the tags).
ON_BEHALF = {"kms:Decrypt", "kms:GenerateDataKey", "secretsmanager:TagResource"}


@pytest.mark.xdist_group("recorded-calls")  # one recording (tests/aws/conftest.py, ~8 CPU-s) for both tests
def test_role_allows_exactly_the_operations_the_code_calls(coordinator_template, operations):
    allowed = {a for st in _statements(_policy(coordinator_template, "coordinator-api")) for a in _actions(st)}
    allowed -= ON_BEHALF
    assert allowed - operations == set(), f"allowed but never called: {sorted(allowed - operations)}"
    assert operations - allowed == set(), f"called but not allowed: {sorted(operations - allowed)}"


def test_platform_policy_holds_only_what_lambda_needs(coordinator_template):
    platform = {a for st in _statements(_policy(coordinator_template, "lambda-platform")) for a in _actions(st)}
    assert platform <= PLATFORM_ACTIONS, sorted(platform - PLATFORM_ACTIONS)


def test_no_action_anywhere_has_a_wildcard(coordinator_template):
    for role in _resources(coordinator_template, "AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            for st in _statements(policy):
                assert st["Effect"] == "Allow"
                for action in _actions(st):
                    assert "*" not in action, f"{policy['PolicyName']}: {action}"


def _by_sid(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {st["Sid"]: st for st in _statements(_policy(t, "coordinator-api"))}


def test_writes_are_scoped_to_the_zone_and_the_served_groups(coordinator_template):
    sids = _by_sid(coordinator_template)
    zone = {"Fn::Sub": "arn:${AWS::Partition}:route53:::hostedzone/${HostedZoneId}"}
    assert sids["WriteZoneRecords"]["Resource"] == zone and sids["ReadZone"]["Resource"] == zone
    cond = sids["WriteZoneRecords"]["Condition"]["ForAllValues:StringEquals"]
    assert cond["route53:ChangeResourceRecordSetsActions"] == ["CREATE", "DELETE"]  # CAS, never UPSERT
    assert sids["PollChanges"]["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:route53:::change/*"}
    complete = sids["CompleteServedGroupsActions"]["Resource"]
    first = complete[0]["Fn::Sub"]
    assert first[0].endswith(":autoScalingGroup:*:autoScalingGroupName/${Name}")
    assert first[1]["Name"] == {"Fn::Select": [0, {"Fn::Split": [",", {"Ref": "AsgNames"}]}]}
    assert len(complete) == 5  # AsgNames allows 1 to 5 groups
    tag = sids["TagServedInstances"]
    assert set(_actions(tag)) == {"ec2:CreateTags", "ec2:DeleteTags"}
    assert tag["Condition"]["StringEquals"]["ec2:ResourceTag/aws:autoscaling:groupName"] == {
        "Fn::Split": [",", {"Ref": "AsgNames"}]
    }
    assert sids["ReadGroupsHooksInstances"]["Resource"] == "*"
    assert all(a.split(":")[1].startswith("Describe") for a in _actions(sids["ReadGroupsHooksInstances"]))


def test_asg_names_pattern_allows_one_to_five_groups(coordinator_template):
    pattern = re.compile(coordinator_template["Parameters"]["AsgNames"]["AllowedPattern"])
    assert pattern.match("etcd") and pattern.match("a,b,c,d,e")
    assert not pattern.match("a,b,c,d,e,f") and not pattern.match("a, b") and not pattern.match("")


def test_lifecycle_rule_matches_only_this_stacks_hooks_on_the_served_groups(coordinator_template):
    pattern = coordinator_template["Resources"]["LifecycleRule"]["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.autoscaling"]
    assert set(pattern["detail-type"]) == {
        "EC2 Instance-launch Lifecycle Action",
        "EC2 Instance-terminate Lifecycle Action",
    }
    assert pattern["detail"]["AutoScalingGroupName"] == {"Fn::Split": [",", {"Ref": "AsgNames"}]}
    assert pattern["detail"]["LifecycleHookName"] == [{"Ref": "LaunchHookName"}, {"Ref": "TerminateHookName"}]


def _minutes(rate: str) -> float:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", rate)
    assert match, rate
    return int(match[1]) * (60 if match[2].startswith("hour") else 1)


def test_hooks_fit_the_coordinators_waits(coordinator_template):
    t = coordinator_template
    params, res = t["Parameters"], t["Resources"]
    launch, terminate = res["LaunchHook"]["Properties"], res["TerminateHook"]["Properties"]
    assert launch["DefaultResult"] == "ABANDON" and terminate["DefaultResult"] == "CONTINUE"
    assert launch["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert terminate["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    timeout = int(params["HeartbeatTimeout"]["Default"])
    assert launch["HeartbeatTimeout"] == terminate["HeartbeatTimeout"] == {"Ref": "HeartbeatTimeout"}
    assert timeout == 300
    # heartbeats (while waiting) and reconciles (held bootstrap actions) come before the timeout
    assert float(params["HeartbeatIntervalSeconds"]["Default"]) * 2 <= timeout
    assert _minutes(params["ReconcileSchedule"]["Default"]) * 60 < timeout
    # SNS mode only: the hook publishes to the topic through the role
    assert launch["NotificationTargetARN"]["Fn::If"][0] == "ViaSns"
    assert launch["RoleARN"]["Fn::If"][0] == "ViaSns"


def test_concurrency_is_bounded_in_every_notification_path(coordinator_template):
    res = coordinator_template["Resources"]
    fn = res["Function"]["Properties"]
    assert fn["ReservedConcurrentExecutions"]["Fn::If"][0] == "ReserveConcurrency"
    assert coordinator_template["Parameters"]["ReservedConcurrency"]["Default"] == "1"
    esm = res["EventSourceMapping"]["Properties"]
    assert esm["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert res["EventQueue"]["Properties"]["VisibilityTimeout"] >= 6 * fn["Timeout"]
    assert res["EventQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["FailureQueue", "Arn"]
    }
    invoke = res["AsyncInvokeConfig"]["Properties"]
    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["FailureQueue", "Arn"]}


def test_function_runs_the_package_entry_point(coordinator_template):
    fn = coordinator_template["Resources"]["Function"]["Properties"]
    assert fn["Handler"] == "hook_handler.app.lambda_handler"
    assert fn["Runtime"] == "python3.12"
    assert fn["Code"] == "../../build/coordinator.zip"  # relative to the template: make build's output


@pytest.mark.parametrize(
    "export",
    [
        "DomainName",
        "EtcdPort",
        "LaunchHookName",
        "TerminateHookName",
        "HeartbeatTimeout",
        "HookTopicArn",
        "FunctionSecurityGroupId",
        "EtcdTls",
        "MemberSecretPrefix",
    ],
)
def test_cluster_stack_imports_only_what_the_coordinator_exports(coordinator_template, cluster_template, export):
    exports = {
        o["Export"]["Name"]["Fn::Sub"].removeprefix("${AWS::StackName}-")
        for o in coordinator_template["Outputs"].values()
        if "Export" in o
    }
    assert export in exports
    imported = set(re.findall(r"\$\{CoordinatorStackName\}-(\w+)", str(cluster_template)))
    assert imported <= exports, sorted(imported - exports)


def test_cluster_group_has_its_hooks_from_the_start(cluster_template):
    res = cluster_template["Resources"]
    hooks = res["Group"]["Properties"]["LifecycleHookSpecificationList"]
    assert [(h["LifecycleTransition"], h["DefaultResult"]) for h in hooks] == [
        ("autoscaling:EC2_INSTANCE_LAUNCHING", "ABANDON"),
        ("autoscaling:EC2_INSTANCE_TERMINATING", "CONTINUE"),
    ]
    meta = res["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["MetadataOptions"]
    assert meta["HttpTokens"] == "required" and meta["InstanceMetadataTags"] == "enabled"
    tags = {t["Key"] for t in res["Group"]["Properties"]["Tags"] if t["PropagateAtLaunch"]}
    assert {"Project", "Environment"} <= tags


@pytest.mark.xdist_group("recorded-calls")
def test_the_role_may_write_exactly_the_tag_keys_the_coordinator_writes(coordinator_template, tag_keys):
    """Every tag key the coordinator writes on an instance (recorded while it runs with membership on) is one
    the role allows, and the role allows no other; the keys are the ones the code defines."""
    from hook_handler import certs, lifecycle, members, membership

    allowed = _by_sid(coordinator_template)["TagServedInstances"]["Condition"]["ForAllValues:StringEquals"]
    defined = {
        members.STATE_TAG,
        lifecycle.CHANGE_TAG,
        members.LEAVE_CHANGE_TAG,
        lifecycle.TARGET_TAG,
        membership.PHASE_TAG,
        membership.MEMBER_ID_TAG,
        membership.SINCE_TAG,
        certs.CERT_TAG,
        members.RESTORE_SNAPSHOT_TAG,  # a restore's go signal (coordinator.recovery)
        members.RESTORE_TOKEN_TAG,
    }
    assert set(allowed["aws:TagKeys"]) == defined
    assert tag_keys <= defined and {members.STATE_TAG, membership.MEMBER_ID_TAG, lifecycle.TARGET_TAG} <= tag_keys


def test_the_tls_secret_and_its_key_are_readable_only_when_given_and_only_them(coordinator_template):
    """Issue 12: GetSecretValue on exactly the secret named by EtcdTlsSecretArn; kms:Decrypt on exactly its key,
    and only through Secrets Manager; neither statement exists without the parameters."""
    statements = _policy(coordinator_template, "coordinator-api")["PolicyDocument"]["Statement"]
    conditional = {st["Fn::If"][1]["Sid"]: st["Fn::If"] for st in statements if "Fn::If" in st}
    read, decrypt = conditional["ReadEtcdTlsSecret"], conditional["DecryptEtcdTlsSecret"]
    assert read[0] == "HasTlsSecret" and read[2] == {"Ref": "AWS::NoValue"}
    assert read[1]["Action"] == "secretsmanager:GetSecretValue" and read[1]["Resource"] == {"Ref": "EtcdTlsSecretArn"}
    assert decrypt[0] == "HasTlsKmsKey" and decrypt[1]["Resource"] == {"Ref": "EtcdTlsKmsKeyArn"}
    via = decrypt[1]["Condition"]["StringEquals"]["kms:ViaService"]
    assert via == {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}
    conditions = coordinator_template["Conditions"]
    assert conditions["HasTlsSecret"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "EtcdTlsSecretArn"}, ""]}]}
    assert _env(coordinator_template)["etcd_tls_secret"] == {"Ref": "EtcdTlsSecretArn"}


def test_member_secrets_are_managed_only_under_their_prefix_and_only_with_a_ca(coordinator_template):
    """Issue 12: with EtcdCaSecretArn the role reads exactly that CA secret and creates, writes and deletes secrets
    only under the member prefix — the same prefix the function is told (one expression, not two defaults)."""
    statements = _policy(coordinator_template, "coordinator-api")["PolicyDocument"]["Statement"]
    conditional = {st["Fn::If"][1]["Sid"]: st["Fn::If"] for st in statements if "Fn::If" in st}
    names = ("ReadEtcdCaSecret", "ManageMemberSecrets", "CreateMemberSecrets", "DescribeMemberSecrets")
    read, manage, create, describe = (conditional[s] for s in names)
    listing = conditional["ListMemberSecrets"]
    every = (read, manage, create, describe, listing)
    assert all(c[0] == "HasCaSecret" and c[2] == {"Ref": "AWS::NoValue"} for c in every)
    assert read[1]["Resource"] == {"Ref": "EtcdCaSecretArn"}
    for statement in (manage[1], create[1], describe[1]):
        template, values = statement["Resource"]["Fn::Sub"]
        assert template.endswith(":secret:${Prefix}*")
        assert values["Prefix"] == _env(coordinator_template)["etcd_member_secret_prefix"]
    # writes only to secrets a coordinator made (tagged), creation only with that tag: never the CA, never another
    assert manage[1]["Condition"] == {"Null": {"secretsmanager:ResourceTag/etcd-instance-id": "false"}}
    assert create[1]["Condition"] == {"Null": {"aws:RequestTag/etcd-instance-id": "false"}}
    assert _actions(listing[1]) == ["secretsmanager:ListSecrets"]


def test_members_run_tls_when_the_coordinator_issues_certificates_and_read_only_their_secrets(
    coordinator_template, cluster_template
):
    """Issue 12: the cluster's ETCD_TLS is the coordinator's export (1 with EtcdCaSecretArn); the members' role may
    read secrets under the exported member prefix only, and only GetSecretValue."""
    outputs = coordinator_template["Outputs"]
    assert outputs["EtcdTls"]["Value"] == {"Fn::If": ["HasCaSecret", "1", "0"]}
    assert outputs["MemberSecretPrefix"]["Value"] == _env(coordinator_template)["etcd_member_secret_prefix"]
    res = cluster_template["Resources"]
    policies = {p["PolicyName"]: p for p in res["InstanceRole"]["Properties"]["Policies"]}
    assert sorted(policies) == ["etcd-member-certificate", "etcd-member-data-lost"]
    (statement,) = policies["etcd-member-certificate"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    template, values = statement["Resource"]["Fn::Sub"]
    assert template.endswith(":secret:${Prefix}*")
    assert values["Prefix"] == {"Fn::ImportValue": {"Fn::Sub": "${CoordinatorStackName}-MemberSecretPrefix"}}
    data = res["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert data["IamInstanceProfile"] == {"Arn": {"Fn::GetAtt": ["InstanceProfile", "Arn"]}}
    parts = data["UserData"]["Fn::Base64"]["Fn::Join"][1]
    tls = [p for p in parts if isinstance(p, dict) and "ETCD_TLS=" in str(p)]
    assert tls == [
        {"Fn::Sub": ["ETCD_TLS=${Tls}\n", {"Tls": {"Fn::ImportValue": {"Fn::Sub": "${CoordinatorStackName}-EtcdTls"}}}]}
    ]


def test_the_snapshot_bucket_is_versioned_private_encrypted_retained_and_expires_incomplete_uploads(
    coordinator_template,
):
    t = coordinator_template
    bucket = t["Resources"]["SnapshotBucket"]
    props = bucket["Properties"]
    assert bucket["Condition"] == "SnapshotsOn" and t["Parameters"]["Snapshots"]["Default"] == "true"
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"  # the data outlives the stack
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(props["PublicAccessBlockConfiguration"][k] is True for k in (
        "BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))  # fmt: skip
    (sse,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    condition, kms, s3_managed = sse["Fn::If"]
    assert condition == "HasSnapshotKmsKey"
    assert kms["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {
        "Ref": "SnapshotKmsKeyArn"}}  # fmt: skip
    assert s3_managed["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rules["expire-pruned-snapshots"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}
    (deny,) = t["Resources"]["SnapshotBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_function_writes_snapshots_only_under_its_prefix_and_is_told_the_bucket(coordinator_template):
    t = coordinator_template
    sids = _by_sid(t)
    assert sids["WriteSnapshots"]["Resource"] == {"Fn::Sub": "${SnapshotBucket.Arn}/${SnapshotPrefix}*"}
    assert sids["ListSnapshots"]["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${SnapshotPrefix}*"}}}
    assert "s3:GetObject" not in _actions(sids["WriteSnapshots"])  # restoring is the instances' business
    key = sids["SnapshotKey"]
    assert key["Resource"] == {"Ref": "SnapshotKmsKeyArn"}
    assert key["Condition"] == {"StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}}
    env = _env(t)
    assert env["snapshot_bucket"] == {"Fn::If": ["SnapshotsOn", {"Ref": "SnapshotBucket"}, ""]}
    assert env["snapshot_kms_key"] == {"Fn::If": ["HasSnapshotKmsKey", {"Ref": "SnapshotKmsKeyArn"}, ""]}
    alarm = t["Resources"]["SnapshotAgeAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Threshold"], alarm["TreatMissingData"]) == (
        "SnapshotAgeSeconds", {"Ref": "SnapshotAgeAlarmSeconds"}, "breaching",
    )  # fmt: skip


def test_a_member_may_tag_only_itself_and_only_etcd_data_lost(cluster_template):
    """The start script's one write: CreateTags of the key etcd-data-lost (members.DATA_LOST_TAG) on the instance
    the request comes from (ec2:SourceInstanceARN equal to the tagged instance's ARN), never another key or
    instance, never DeleteTags."""
    from hook_handler import members

    policies = {p["PolicyName"]: p for p in cluster_template["Resources"]["InstanceRole"]["Properties"]["Policies"]}
    (statement,) = policies["etcd-member-data-lost"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "ec2:CreateTags")
    instances = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/"
    assert statement["Resource"] == {"Fn::Sub": instances + "*"}
    condition = statement["Condition"]
    assert condition["ArnEquals"] == {"ec2:SourceInstanceARN": {"Fn::Sub": instances + "${!ec2:InstanceID}"}}
    assert condition["ForAllValues:StringEquals"] == {"aws:TagKeys": [members.DATA_LOST_TAG]}
    assert condition["Null"] == {"aws:TagKeys": "false"}


def test_members_read_snapshots_only_when_the_stack_names_the_bucket_and_only_under_the_prefix(
    coordinator_template, cluster_template
):
    """SnapshotBucket (default empty: no restore) and SnapshotPrefix (the coordinator's default) reach the start
    script; with a bucket the members may get the snapshots and their tags under the prefix and list the bucket
    under it, and decrypt with SnapshotKmsKeyArn through S3 only."""
    params, res = cluster_template["Parameters"], cluster_template["Resources"]
    assert params["SnapshotBucket"]["Default"] == ""
    assert params["SnapshotPrefix"]["Default"] == coordinator_template["Parameters"]["SnapshotPrefix"]["Default"]
    from hook_handler.backup.config import DEFAULT_PREFIX

    assert params["SnapshotPrefix"]["Default"] == DEFAULT_PREFIX
    no_bucket = {"Fn::Equals": [{"Ref": "SnapshotBucket"}, ""]}
    assert cluster_template["Conditions"]["CanRestore"] == {"Fn::Not": [no_bucket]}
    policy = res["RestorePolicy"]
    assert policy["Condition"] == "CanRestore" and policy["Properties"]["Roles"] == [{"Ref": "InstanceRole"}]
    read, listing = policy["Properties"]["PolicyDocument"]["Statement"]
    assert read["Action"] == ["s3:GetObject", "s3:GetObjectTagging"]
    assert read["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${SnapshotBucket}/${SnapshotPrefix}*"}
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${SnapshotBucket}"}
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${SnapshotPrefix}*"}}}
    key = res["RestoreKeyPolicy"]
    assert key["Condition"] == "DecryptSnapshots" and key["Properties"]["Roles"] == [{"Ref": "InstanceRole"}]
    assert cluster_template["Conditions"]["DecryptSnapshots"]["Fn::And"][0] == {"Condition": "CanRestore"}
    (statement,) = key["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "kms:Decrypt" and statement["Resource"] == {"Ref": "SnapshotKmsKeyArn"}
    via = {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"kms:ViaService": via}}
    parts = res["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
    assert {"Fn::Sub": "SNAPSHOT_BUCKET=${SnapshotBucket}\n"} in parts
    assert {"Fn::Sub": "SNAPSHOT_PREFIX=${SnapshotPrefix}\n"} in parts
