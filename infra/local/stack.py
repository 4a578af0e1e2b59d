"""The emulated counterpart of ``infra/aws/coordinator.yaml``: a hosted zone, an etcd group with
launch and terminate hooks, the coordinator function and its notification wiring.

Tests, the reliability suite, the benchmarks and the demo all deploy through ``deploy`` so they
exercise the same wiring an operator gets from the template.

Example:
    >>> from infra.local import LocalAWS
    >>> with LocalAWS() as aws:
    ...     stack = deploy(aws, mode="eventbridge")
    ...     stack.scale(3); aws.clock.run()
    ...     len(stack.targets())
    3
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hook_handler.app import Clients, Runtime
from hook_handler.plan import peer_targets
from hook_handler.settings import load_settings
from infra.local.aws import LocalAWS

LIFECYCLE_DETAIL_TYPES = ["EC2 Instance-launch Lifecycle Action", "EC2 Instance-terminate Lifecycle Action"]
MODES = ("eventbridge", "sqs", "sns", "none")


@dataclass
class Stack:
    """What ``deploy`` built, with the handles tests need."""

    aws: LocalAWS
    zone_id: str
    domain: str
    group: str
    mode: str
    runtime: Runtime
    function_arn: str
    launch_hook: str = "etcd-launch"
    terminate_hook: str = "etcd-terminate"
    queue_url: str | None = None
    topic_arn: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def srv_name(self) -> str:
        return self.runtime.settings.srv_fqdn

    def client(self, service: str) -> Any:
        """The helpers' client of ``service``, made once (a client costs tens of milliseconds of CPU to make,
        and tests look through these helpers after every step). The calls and their answers are the same."""
        if service not in self._clients:
            self._clients[service] = self.aws.client(service)
        return self._clients[service]

    def scale(self, desired: int) -> None:
        """Set the group's desired capacity (launches or scale-in go through the hooks)."""
        self.client("autoscaling").set_desired_capacity(AutoScalingGroupName=self.group, DesiredCapacity=desired)

    def terminate(self, instance_id: str, *, decrement: bool = True) -> None:
        self.client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=decrement
        )

    def instances(self) -> dict[str, str]:
        """Instance id → lifecycle state, as the Auto Scaling API reports them now (an observer's view:
        never stale)."""
        with self.aws.observer():
            out = self.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])
        return {i["InstanceId"]: i["LifecycleState"] for i in out["AutoScalingGroups"][0]["Instances"]}

    def in_service(self) -> set[str]:
        return {iid for iid, state in self.instances().items() if state == "InService"}

    def private_dns(self, instance_ids: set[str] | list[str]) -> dict[str, str]:
        if not instance_ids:
            return {}
        with self.aws.observer():
            out = self.client("ec2").describe_instances(InstanceIds=sorted(instance_ids))
        return {
            i["InstanceId"]: i["PrivateDnsName"].lower().rstrip(".") + "."
            for r in out["Reservations"]
            for i in r["Instances"]
        }

    def record(self) -> tuple[int, tuple[str, ...]] | None:
        """The peer SRV record now: (ttl, values), or None when absent."""
        return self.aws.records(self.zone_id).get((self.srv_name, "SRV"))

    def targets(self) -> set[str]:
        """Targets of the peer SRV record now."""
        record = self.record()
        if record is None:
            return set()
        from hook_handler.plan import RecordSet

        return peer_targets(RecordSet.of(self.srv_name, "SRV", record[0], record[1]))

    def scheduled_event(self) -> dict[str, Any]:
        """The event the template's ReconcileSchedule rule sends (EventBridge ``Scheduled Event``)."""
        from infra.local.clock import iso

        return {
            "version": "0",
            "id": self.aws._delivery.new_uuid(),  # type: ignore[attr-defined]
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.aws.account,
            "time": iso(self.aws.clock.now()),
            "region": self.aws.region,
            "resources": [f"arn:aws:events:{self.aws.region}:{self.aws.account}:rule/{self.group}-reconcile"],
            "detail": {},
        }

    def reconcile(self) -> None:
        """A scheduled reconcile, delivered to the function as the rule delivers it (async, with retries)."""
        self.aws._delivery.invoke_async(self.function_arn, self.scheduled_event(), "eventbridge")  # type: ignore[attr-defined]

    def tags(self, instance_id: str) -> dict[str, str]:
        with self.aws.observer():
            out = self.client("ec2").describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])
        return {t["Key"]: t["Value"] for t in out["Tags"]}


def member_role(aws: LocalAWS, group: str) -> str:
    """The members' instance role under ``/etcd-asg/<group>/`` (made once); returns the path."""
    path = f"/etcd-asg/{group}/"
    iam = aws.client("iam")
    if not iam.list_roles(PathPrefix=path)["Roles"]:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        iam.create_role(RoleName=f"{group}-member", Path=path, AssumeRolePolicyDocument=json.dumps(trust))
    return path


def deploy(
    aws: LocalAWS,
    *,
    mode: str = "eventbridge",
    domain: str = "example.com",
    group: str = "etcd",
    heartbeat_timeout: int = 300,
    launch_default_result: str = "ABANDON",
    settings: Mapping[str, str] | None = None,
    timeout: float = 300.0,
    reserved_concurrency: int | None = 1,
    batch_size: int = 10,
    batching_window: float = 5.0,
    max_concurrency: int | None = 2,
    max_size: int = 200,
    handler: Any = None,
    etcd: Any = None,
) -> Stack:
    """Create zone, group, hooks, function and wiring in ``aws``. See the module docstring.

    ``mode``: ``eventbridge`` (rule → function), ``sqs`` (rule → queue → function, batched),
    ``sns`` (hooks notify a topic → function) or ``none`` (no wiring; tests invoke by hand).
    ``etcd``: the coordinator's ``hook_handler.etcd.Transport`` (``EtcdModel.transport()`` on simulated
    time, ``HttpTransport()`` for real etcd). Without one, and unless ``settings`` says otherwise, the
    coordinator runs DNS-only (``etcd_membership=false``): there is no etcd in such a world to manage.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    r53, ec2, asg = aws.client("route53"), aws.client("ec2"), aws.client("autoscaling")
    zone_id = r53.create_hosted_zone(Name=domain, CallerReference=f"stack-{domain}")["HostedZone"]["Id"].split("/")[-1]
    ec2.create_launch_template(
        LaunchTemplateName=f"{group}-lt",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateName": f"{group}-lt", "Version": "$Latest"},
        MinSize=0,
        MaxSize=max_size,
        DesiredCapacity=0,
        AvailabilityZones=[f"{aws.region}a"],
        Tags=[{"Key": "Project", "Value": "etcd-demo", "PropagateAtLaunch": True}],
    )

    topic_arn = None
    hook_target: dict[str, str] = {}
    if mode == "sns":
        topic_arn = aws.client("sns").create_topic(Name=f"{group}-lifecycle")["TopicArn"]
        hook_target = {
            "NotificationTargetARN": topic_arn,
            "RoleARN": f"arn:aws:iam::{aws.account}:role/{group}-lifecycle-notify",
        }
    for name, transition, default in (
        ("etcd-launch", "autoscaling:EC2_INSTANCE_LAUNCHING", launch_default_result),
        ("etcd-terminate", "autoscaling:EC2_INSTANCE_TERMINATING", "CONTINUE"),
    ):
        asg.put_lifecycle_hook(
            AutoScalingGroupName=group,
            LifecycleHookName=name,
            LifecycleTransition=transition,
            HeartbeatTimeout=heartbeat_timeout,
            DefaultResult=default,
            **hook_target,
        )

    env = {
        "domain_name": domain,
        "r53_zone_id": zone_id,
        "asg_names": group,
        "launch_hook_name": "etcd-launch",
        "terminate_hook_name": "etcd-terminate",
        **({} if etcd is not None else {"etcd_membership": "false"}),
        **(settings or {}),
    }
    if env.get("etcd_ca_secret") and not env.get("etcd_member_role_path"):
        # The members' instance role, as etcd-cluster.yaml makes it: under the coordinator's path.
        env["etcd_member_role_path"] = member_role(aws, group)
    runtime = Runtime(
        load_settings(env),
        Clients(
            route53=r53, autoscaling=asg, ec2=ec2, secretsmanager=aws.client("secretsmanager"), iam=aws.client("iam")
        ),
        aws.clock,
        region=aws.region,
        etcd_transport=etcd,
    )
    function_arn = aws.register_function(
        "etcd-asg-coordinator",
        handler or runtime.handle,
        timeout=timeout,
        reserved_concurrency=reserved_concurrency if mode in ("eventbridge", "sns") else None,
    )
    stack = Stack(aws, zone_id, domain, group, mode, runtime, function_arn, topic_arn=topic_arn, env=env)

    pattern = json.dumps(
        {
            "source": ["aws.autoscaling"],
            "detail-type": LIFECYCLE_DETAIL_TYPES,
            "detail": {"AutoScalingGroupName": [group]},
        }
    )
    events = aws.client("events")
    if mode == "eventbridge":
        events.put_rule(Name=f"{group}-lifecycle", EventPattern=pattern)
        events.put_targets(Rule=f"{group}-lifecycle", Targets=[{"Id": "coordinator", "Arn": function_arn}])
    elif mode == "sqs":
        sqs = aws.client("sqs")
        dlq = sqs.create_queue(QueueName=f"{group}-lifecycle-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue = sqs.create_queue(
            QueueName=f"{group}-lifecycle",
            Attributes={
                "VisibilityTimeout": str(int(timeout * 6)),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
            },
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=f"{group}-lifecycle", EventPattern=pattern)
        events.put_targets(Rule=f"{group}-lifecycle", Targets=[{"Id": "queue", "Arn": queue_arn}])
        aws.map_queue(
            queue,
            "etcd-asg-coordinator",
            batch_size=batch_size,
            batching_window=batching_window,
            max_concurrency=max_concurrency,
        )
        stack.queue_url = queue
    elif mode == "sns":
        aws.client("sns").subscribe(TopicArn=topic_arn, Protocol="lambda", Endpoint=function_arn)
    return stack
