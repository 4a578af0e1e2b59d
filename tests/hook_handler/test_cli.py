"""The command line and the Lambda glue never end in a traceback for a situation a user can fix: each problem is
one plain line on stderr (what was wrong, which setting, what to do) and a documented exit status."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from hook_handler.__main__ import EXIT_AWS, EXIT_ETCD, EXIT_SETTINGS, main
from hook_handler.telemetry import logger
from infra.local import LocalAWS, SimClock
from infra.local.stack import deploy

CORPUS = Path(__file__).resolve().parents[1] / "reliability" / "corpus"
AWS_VARIABLES = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
)


@pytest.fixture
def shell(monkeypatch, tmp_path):
    """An operator's shell with nothing AWS in it: no region, no credentials, no profile files, no IMDS."""
    for key in AWS_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    handler = logger.registered_handler
    monkeypatch.setattr(handler, "stream", handler.stream)  # the command moves the logs to stderr: put them back
    return monkeypatch


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def errors(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error: ")]


def settings_env(monkeypatch: Any, **values: str) -> None:
    from hook_handler.settings import SETTINGS_SPEC

    for spec in SETTINGS_SPEC:
        monkeypatch.delenv(spec.name, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def world(shell):
    """The emulated AWS in this process (boto3's own clients reach it) with a DNS-only stack of three in service."""
    with LocalAWS(clock=SimClock()) as aws:
        stack = deploy(aws, mode="eventbridge")
        stack.scale(3)
        aws.clock.advance(300)
        assert len(stack.in_service()) == 3
        shell.setattr("hook_handler.app.SystemClock", lambda: aws.clock)  # waits run on simulated time
        settings_env(shell, **stack.env)
        yield aws, stack, shell


# -- settings ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [("status",), ("reconcile",), ("reconcile", "--dry-run")])
def test_every_bad_setting_is_one_line_and_all_are_reported_at_once(shell, capsys, command):
    settings_env(shell, srv_record_ttl="-5", log_level="LOUD")
    code, out, err = run(capsys, *command)
    assert code == EXIT_SETTINGS == 2 and out == ""
    lines = errors(err)
    assert [line.split(":")[1].strip() for line in lines] == [
        "setting domain_name",
        "setting r53_zone_id",
        "setting srv_record_ttl",
        "setting log_level",
        "setting asg_names",
    ]
    assert "error: setting srv_record_ttl: -5 is out of range; expected a whole number from 0 to 2147483647" in lines
    assert "`" not in err and "--help" in err


# -- AWS ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [("status",), ("reconcile",), ("pki", "init")])
def test_no_region_is_one_line_naming_the_variables_to_set(shell, capsys, command):
    settings_env(shell, domain_name="example.com", r53_zone_id="Z1", asg_names="etcd")
    code, out, err = run(capsys, *command)
    assert code == EXIT_AWS == 1 and out == ""
    (line,) = errors(err)
    assert line.startswith("error: no AWS region is set; set AWS_REGION (or AWS_DEFAULT_REGION")


@pytest.mark.parametrize("command", [("status",), ("reconcile", "--dry-run"), ("pki", "init")])
def test_no_credentials_is_one_line(shell, capsys, command):
    shell.setenv("AWS_REGION", "us-east-1")  # AWS_REGION alone is enough: the command passes it to boto3
    settings_env(shell, domain_name="example.com", r53_zone_id="Z1", asg_names="etcd")
    code, out, err = run(capsys, *command)
    assert code == EXIT_AWS and out == ""
    (line,) = errors(err)
    assert line.startswith("error: no usable AWS credentials") and "AWS_ACCESS_KEY_ID" in line


@pytest.mark.parametrize("command", [("status",), ("reconcile",)])
def test_a_hosted_zone_that_does_not_exist_names_r53_zone_id(world, capsys, command):
    _, _, env = world
    env.setenv("r53_zone_id", "Z0000000000000NOSUCH")
    code, _, err = run(capsys, *command)
    assert code == EXIT_AWS, err
    (line,) = errors(err)
    assert "NoSuchHostedZone" in line and "set r53_zone_id to a zone of this account" in line


def test_access_denied_is_one_line_naming_the_call_to_allow(world, capsys):
    aws, _, _ = world
    aws.faults.fail_next("DescribeAutoScalingGroups", 1, code="AccessDenied", message="not authorized", status=403)
    code, out, err = run(capsys, "reconcile", "--dry-run")
    assert code == EXIT_AWS and out == ""
    (line,) = errors(err)
    assert line.startswith("error: AWS refused DescribeAutoScalingGroups (AccessDenied: not authorized)")
    assert "must allow DescribeAutoScalingGroups" in line


def test_a_configured_group_that_does_not_exist_is_warned_about_and_the_rest_is_served(world, capsys):
    _, stack, env = world
    env.setenv("asg_names", f"{stack.group},nope")
    code, out, err = run(capsys, "status")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: Auto Scaling group 'nope' (setting asg_names) does not exist in us-east-1: nothing of it is served; "
        "check the name and the region"
    ]
    assert len([line for line in out.splitlines() if line.startswith("i-")]) == 3


def test_reconcile_dry_run_prints_the_plan_and_changes_nothing(world, capsys):
    aws, stack, _ = world
    before = len(aws.calls)
    code, out, err = run(capsys, "reconcile", "--dry-run")
    assert code == 0, err
    assert out.splitlines()[0] == f"record {stack.srv_name}"
    assert out.rstrip().endswith("dry run: nothing applied")
    writes = [c.operation for c in aws.calls[before:] if not c.operation.startswith(("Describe", "List", "Get"))]
    assert writes == []


# -- etcd --------------------------------------------------------------------------------------------------------
def test_etcd_not_answering_stops_reconcile_with_exit_3_and_one_line(world, capsys):
    _, _, env = world
    env.setenv("etcd_membership", "true")
    env.setenv("etcd_endpoints", "http://127.0.0.1:9")  # nothing listens there
    code, _, err = run(capsys, "reconcile")
    assert code == EXIT_ETCD == 3
    (line,) = errors(err)
    assert "did not answer" in line and "etcd_endpoints" in line and "the pass stopped there" in line


# -- help ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [(), ("status",), ("reconcile",)])
def test_help_lists_every_environment_variable_and_which_are_required_in_plain_text(capsys, command):
    from hook_handler.settings import SETTINGS_SPEC

    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    required = out.split("  required:\n", 1)[1].split("  optional [default]:\n", 1)[0]
    assert [line.split()[0] for line in required.splitlines() if line.startswith("    ") and line[4] != " "] == [
        "domain_name",
        "r53_zone_id",
        "asg_names",
    ]
    for spec in SETTINGS_SPEC:
        assert f"    {spec.name} " in out, spec.name
    assert "AWS_REGION or AWS_DEFAULT_REGION" in out and "exit status:" in out
    assert "`" not in out and "``" not in out


# -- the Lambda glue: a batch of nothing but bad records --------------------------------------------------------------
def test_an_sqs_batch_whose_every_record_is_bad_reports_each_as_a_failure_without_raising(shell):
    record = json.loads((CORPUS / "sqs-body-not-json.json").read_text())["Records"][0]
    batch = {"Records": [copy.deepcopy(record), {**copy.deepcopy(record), "messageId": "second"}]}
    with LocalAWS(clock=SimClock()) as aws:
        stack = deploy(aws, mode="none")
        before = len(aws.calls)
        answer = stack.runtime.handle(batch, None)
        assert answer == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}, {"itemIdentifier": "second"}]}
        assert aws.calls[before:] == []  # nothing read, nothing written


# -- check-hooks (make deploy) -------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Tried to parse AWS")  # moto has no WaitConditionHandle (nothing needs one)
def test_check_hooks_warns_about_a_launch_hook_that_continues_and_changes_nothing(world, capsys):
    """What make deploy runs after the coordinator stack: the stack's served groups and launch hook name, each
    group's hooks; a launch hook whose DefaultResult is CONTINUE is a warning saying what to do, not a failure."""
    aws, stack, _ = world
    template = {
        "Parameters": {"AsgNames": {"Type": "String"}, "LaunchHookName": {"Type": "String"}},
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"LaunchHookName": {"Value": {"Ref": "LaunchHookName"}}},
    }
    aws.client("cloudformation").create_stack(
        StackName="coordinator",
        TemplateBody=json.dumps(template),
        Parameters=[
            {"ParameterKey": "AsgNames", "ParameterValue": f"{stack.group},not-yet"},
            {"ParameterKey": "LaunchHookName", "ParameterValue": "etcd-launch"},
        ],
    )
    code, out, err = run(capsys, "check-hooks", "--stack", "coordinator")
    assert code == 0 and not errors(err) and "warning" not in err
    assert f"{stack.group}: launch hook etcd-launch abandons a launch left unanswered" in out
    assert "not-yet: no such group yet" in out

    aws.client("autoscaling").put_lifecycle_hook(
        AutoScalingGroupName=stack.group, LifecycleHookName="etcd-launch", HeartbeatTimeout=300,
        LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING", DefaultResult="CONTINUE",
    )  # fmt: skip
    calls = len(aws.calls)
    code, out, err = run(capsys, "check-hooks", "--stack", "coordinator")
    assert code == 0 and not errors(err)
    (warning,) = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warning.startswith(f"warning: group {stack.group}: launch hook etcd-launch has DefaultResult CONTINUE")
    assert "set its DefaultResult to ABANDON" in warning  # the terminate hook's CONTINUE is no concern
    assert all(c.operation.startswith(("Describe", "List", "Get")) for c in aws.calls[calls:])
