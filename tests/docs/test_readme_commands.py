"""The commands the README shows, run as written, so the front page cannot rot: the --helps, the status and
reconcile examples against the emulated AWS's server, and the whole deploy (both stacks, in order) against the
emulator's endpoints with the AWS CLI, only the placeholders (zone, VPC, subnets) replaced by the emulator's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.local import LocalAWS, SimClock
from infra.local.server import LocalServer
from infra.local.stack import deploy

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")  # resource types moto's CloudFormation skips
ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The README's section under ``## title`` (up to the next ``## ``)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.MULTILINE | re.DOTALL)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def commands(text: str, fence: str = "sh") -> list[str]:
    """The commands of the ``fence`` code blocks in ``text``: continuation lines joined, comments dropped."""
    out = []
    for block in re.findall(rf"^```{fence}\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command and not command.startswith("#"):
                out.append(command)
    return out


def test_the_readme_shows_the_commands_this_test_runs():
    """If a command moves or changes, this file must follow (each test below finds its commands by section)."""
    assert commands(section("Try it")) == ["make demo", "make test"]
    assert commands(section("Operate")) == [
        "python -m hook_handler --help",
        "python -m hook_handler status",
        "python -m hook_handler reconcile --dry-run",
    ]
    deploy_lines = section("Deploy on AWS").split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert len(deploy_lines) <= 15, "the front page's deploy is at most 15 lines"
    assert [c.split()[:3] for c in commands(section("Deploy on AWS"))] == [
        ["make", "deploy", "BUCKET=my-artifacts"],
        ["aws", "cloudformation", "deploy"],
        ["aws", "route53", "list-resource-record-sets"],
    ]


# -- the emulated AWS as a server, for processes that run the commands ------------------------------------------------
@pytest.fixture
def emulator(monkeypatch) -> Iterator[dict[str, Any]]:
    """The emulated AWS in this process on simulated time, served on a free port; ``env`` is a shell pointed at it.

    The endpoint is named ``localhost``: the AWS CLI builds ``cloudformation deploy``'s template URL from it, and
    the emulator (moto) reads a bucket from such a URL's path only when the host is ``localhost``."""
    with LocalAWS(clock=SimClock()) as aws:
        server = LocalServer(aws).start()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env.update(
                AWS_ENDPOINT_URL=f"http://localhost:{server.port}",
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
                AWS_DEFAULT_REGION=aws.region,
                AWS_EC2_METADATA_DISABLED="true",
                PAGER="cat",
                AWS_PAGER="",
            )
            yield {"aws": aws, "env": env, "port": server.port}
        finally:
            server.stop()


def run(command: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    python = str(Path(sys.executable).parent)
    env = {**env, "PATH": f"{python}{os.pathsep}{env.get('PATH', '')}"}  # `python` is the project's interpreter
    return subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("command", ["python -m hook_handler --help", "make help"])
def test_the_help_commands_run_and_speak_plain_text(command):
    done = run(command, dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert "`" not in done.stdout and "Traceback" not in done.stderr
    if "hook_handler" in command:
        assert "domain_name" in done.stdout and "exit status:" in done.stdout


def test_the_readme_status_and_reconcile_examples_run_against_the_emulator(emulator):
    aws = emulator["aws"]
    stack = deploy(aws, mode="eventbridge")  # DNS only: no etcd behind this emulator
    stack.scale(3)
    aws.clock.advance(300)
    assert len(stack.in_service()) == 3
    env = {**emulator["env"], **stack.env}
    status, dry_run = commands(section("Operate"))[1:]

    done = run(status, env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"record {stack.srv_name}: 3 target(s); next change: none"
    shown = re.search(r"^INSTANCE .*$", section("Operate"), re.MULTILINE).group(0).split()
    header = lines[2].split()
    assert [c for c in shown if c != "..."] == [c for c in header if c in shown], "the README's columns, in order"
    rows = [line.split() for line in lines[3:]]
    assert sorted(r[0] for r in rows) == sorted(stack.in_service())
    assert all(r[1:3] == ["InService", "yes"] for r in rows)

    calls = len(aws.calls)
    done = run(dry_run, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"record {stack.srv_name}"
    assert "no change needed" in done.stdout and done.stdout.rstrip().endswith("dry run: nothing applied")
    changed = [c.operation for c in aws.calls[calls:] if not c.operation.startswith(("Describe", "List", "Get"))]
    assert changed == [], "a dry run changes nothing"


# -- the deploy ---------------------------------------------------------------------------------------------------
@pytest.fixture
def exports_from_change_sets(monkeypatch):
    """moto 5.2.5 wires exports and imports on CreateStack only; CloudFormation also does when a change set creates
    the stack (what ``aws cloudformation deploy`` sends): the stack gets its outputs and exports, and can import
    others' exports. CloudFormation shows only the outputs whose condition holds (moto resolves them all, and fails
    on those whose resource was not created). Without this, the cluster stack could not import what the
    coordinator stack exports, as on AWS it does. Fidelity, not leniency: nothing here accepts what AWS refuses."""
    from moto.cloudformation.models import CloudFormationBackend

    execute = CloudFormationBackend.execute_change_set

    def execute_and_export(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        for stack in self.stacks.values():  # a stack a change set creates sees no exports in moto
            stack.cross_stack_resources = stack.resource_map.cross_stack_resources = self.exports
        execute(self, change_set_name, stack_name)
        for stack in self.stacks.values():
            if stack.status in ("CREATE_COMPLETE", "UPDATE_COMPLETE") and not stack.output_map.outputs:
                stack._parse_template()  # the change set's template (moto made the stack with an empty one)
                conditions = stack.resource_map.lazy_condition_map
                outputs = stack.template_dict.get("Outputs") or {}
                stack.template_dict["Outputs"] = {
                    key: output for key, output in outputs.items() if conditions.get(output.get("Condition"), True)
                }
                stack.output_map = stack._create_output_map()
                for export in stack.exports:
                    self.exports[export.name] = export

    monkeypatch.setattr(CloudFormationBackend, "execute_change_set", execute_and_export)


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed (make deploy needs it)")
@pytest.mark.timeout(600)
def test_the_readme_deploy_runs_as_written_against_the_emulators_endpoints(emulator, exports_from_change_sets):
    aws, env = emulator["aws"], emulator["env"]
    ec2 = boto3.client("ec2", region_name=aws.region)
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    zone = aws.create_zone("example.com")
    boto3.client("s3", region_name=aws.region).create_bucket(Bucket="my-artifacts")
    placeholders = {
        "Z0123456789ABCDEFGHIJ": zone,
        "vpc-0123456789abcdef0": vpc,
        "subnet-0aaa1111": subnets[0],
        "subnet-0bbb2222": subnets[1],
    }
    for command in commands(section("Deploy on AWS")):
        for placeholder, value in placeholders.items():
            command = command.replace(placeholder, value)
        done = run(command, env, timeout=400)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        if command.startswith("make deploy"):  # it ends with the hooks check: the cluster stack comes next
            assert "etcd: no such group yet" in done.stdout, done.stdout[-2000:]

    cfn = boto3.client("cloudformation", region_name=aws.region)
    stacks = {s["StackName"]: s["StackStatus"] for s in cfn.describe_stacks()["Stacks"]}
    assert stacks == {"etcd-coordinator": "CREATE_COMPLETE", "etcd": "CREATE_COMPLETE"}
    function = boto3.client("lambda", region_name=aws.region).get_function_configuration(
        FunctionName=cfn.describe_stacks(StackName="etcd-coordinator")["Stacks"][0]["Outputs"][0]["OutputValue"]
    )
    settings = function["Environment"]["Variables"]
    secrets = boto3.client("secretsmanager", region_name=aws.region)
    ca = secrets.describe_secret(SecretId="etcd-asg/etcd-coordinator/ca")["ARN"]
    client = secrets.describe_secret(SecretId="etcd-asg/etcd-coordinator/coordinator")["ARN"]
    assert {k: settings[k] for k in ("domain_name", "r53_zone_id", "asg_names", "etcd_membership")} == {
        "domain_name": "example.com",
        "r53_zone_id": zone,
        "asg_names": "etcd",
        "etcd_membership": "true",
    }
    assert (settings["srv_record_name"], settings["etcd_peer_scheme"]) == ("_etcd-server-ssl._tcp", "https")
    assert (settings["etcd_ca_secret"], settings["etcd_tls_secret"]) == (ca, client)  # TLS by default
    assert function["VpcConfig"]["SubnetIds"] and set(function["VpcConfig"]["SubnetIds"]) == set(subnets[:2])
    (group,) = boto3.client("autoscaling", region_name=aws.region).describe_auto_scaling_groups(
        AutoScalingGroupNames=["etcd"]
    )["AutoScalingGroups"]
    assert group["DesiredCapacity"] == 3
    # the check make deploy ran, once the group exists: its launch hook is ABANDON (moto's CloudFormation makes no
    # hooks from LifecycleHookSpecificationList, so here the group has none): nothing to warn of
    checked = run("python -m hook_handler check-hooks --stack etcd-coordinator", env)
    assert checked.returncode == 0 and "warning" not in checked.stderr, checked.stderr
    assert checked.stdout.startswith("etcd: ") and "no such group" not in checked.stdout, checked.stdout
