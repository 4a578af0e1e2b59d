"""Fixtures of the infra/aws tests: the templates (decoded like CloudFormation reads them) and the
AWS operations the coordinator calls."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from aws_helpers import CLUSTER, COORDINATOR, load_template


def recorded_calls() -> tuple[list[str], list[str]]:
    """Every AWS operation the coordinator calls, as IAM actions (``service:Operation``), and every instance
    tag key it writes or deletes, recorded with botocore's event hooks (``before-call.*.*``) on the
    coordinator's own clients while it runs the integration scenarios on the emulated AWS with etcd
    membership on (the etcd model and simulated instances): a bootstrap, a join and a scale-in with slow
    propagation (heartbeats), hook names left to discovery, and a kill repaired by a reconcile.
    """
    from infra.local import LocalAWS, SimClock
    from infra.local.etcd_model import EtcdModel
    from infra.local.sim_fleet import SimFleet
    from infra.local.stack import deploy

    seen: set[str] = set()
    keys: set[str] = set()

    def record(model: Any, **_: Any) -> None:
        seen.add(f"{model.service_model.signing_name}:{model.name}")

    def record_tags(params: Any, **_: Any) -> None:  # before-parameter-build: the API parameters, unserialised
        keys.update(t["Key"] for t in (params or {}).get("Tags", []))

    def instrument(stack: Any) -> None:
        coordinator = stack.runtime.coordinator
        for client in (coordinator.route53.client, coordinator.asg.autoscaling, coordinator.asg.ec2):
            client.meta.events.register("before-call.*.*", record)
        for operation in ("CreateTags", "DeleteTags"):
            coordinator.asg.ec2.meta.events.register(f"before-parameter-build.ec2.{operation}", record_tags)

    with LocalAWS(clock=SimClock(), propagation=150.0) as aws:
        model = EtcdModel(aws.clock, seed=1)
        stack = deploy(
            aws,
            mode="eventbridge",
            timeout=900.0,
            settings={"launch_hook_name": "", "terminate_hook_name": "", "heartbeat_interval_seconds": "60"},
            etcd=model.transport(),
        )
        fleet = SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain)
        fleet.start()
        instrument(stack)
        for size in (3, 5, 4):
            stack.scale(size)
            aws.clock.advance(1200)
        # A member's data directory lost: its instance tags itself etcd-data-lost; a reconcile removes the member
        # and has the group replace the instance (TerminateInstanceInAutoScalingGroup).
        victim = sorted(stack.in_service())[1]
        fleet.crash(victim, 10.0)
        model.clear_data(victim)
        aws.clock.advance(60)
        aws.clock.spawn(stack.runtime.handle, {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
        aws.clock.advance(1200)
        aws.kill_instance(sorted(stack.in_service())[0])
        aws.clock.spawn(stack.runtime.handle, {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
        aws.clock.advance(1200)
    # A warm pool with reuse on scale-in: a member goes back to the pool (DescribeWarmPool, DeleteTags).
    with LocalAWS(clock=SimClock(), propagation=5.0, warm_pools=True) as aws:
        model = EtcdModel(aws.clock, seed=2)
        stack = deploy(aws, mode="eventbridge", settings={"launch_hook_name": "", "terminate_hook_name": ""},
                       etcd=model.transport())  # fmt: skip
        SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain).start()
        instrument(stack)
        stack.scale(3)
        aws.clock.advance(600)
        aws.client("autoscaling").put_warm_pool(
            AutoScalingGroupName=stack.group, MinSize=0, MaxGroupPreparedCapacity=3,
            InstanceReusePolicy={"ReuseOnScaleIn": True},
        )  # fmt: skip
        stack.scale(2)
        aws.clock.advance(600)
    # TLS on (etcd_tls_secret): the cold start reads the coordinator's client TLS secret.
    with LocalAWS(clock=SimClock()) as aws:
        import json

        from hook_handler.app import Clients, Runtime
        from hook_handler.settings import load_settings
        from infra.local.pki import CertificateAuthority

        ca = CertificateAuthority.create()
        cert, key = ca.issue("etcd-asg-coordinator", server=False)
        secrets = aws.client("secretsmanager")
        arn = secrets.create_secret(
            Name="etcd/coordinator", SecretString=json.dumps({"ca": ca.pem, "cert": cert, "key": key})
        )["ARN"]
        secrets.meta.events.register("before-call.*.*", record)
        settings = load_settings(
            {"domain_name": "example.com", "r53_zone_id": "Z1", "asg_names": "etcd", "etcd_tls_secret": arn}
        )
        clients = Clients(aws.client("route53"), aws.client("autoscaling"), aws.client("ec2"), secrets)
        Runtime(settings, clients, aws.clock)
    # Member certificates (etcd_ca_secret): issued before each go signal, deleted when a member leaves, swept by a
    # reconcile once an instance is long gone.
    with LocalAWS(clock=SimClock(), propagation=5.0) as aws:
        import json

        from infra.local.pki import CertificateAuthority

        ca = CertificateAuthority.create()
        ca_key = ca.key_pem
        aws.client("secretsmanager").create_secret(
            Name="etcd/ca", SecretString=json.dumps({"cert": ca.pem, "key": ca_key})
        )
        model = EtcdModel(aws.clock, seed=3)
        tls = {"srv_record_name": "_etcd-server-ssl._tcp", "etcd_peer_scheme": "https", "etcd_tls_secret": "etcd/c",
               "etcd_ca_secret": "etcd/ca", "launch_hook_name": "", "terminate_hook_name": ""}  # fmt: skip
        stack = deploy(aws, mode="eventbridge", settings=tls, etcd=model.transport())
        SimFleet(aws, model, stack.group, zone_id=stack.zone_id, domain=stack.domain, tls=True).start()
        instrument(stack)
        stack.runtime.coordinator.certificates.sm.meta.events.register("before-call.*.*", record)
        stack.runtime.coordinator.certificates.iam.meta.events.register("before-call.*.*", record)
        stack.scale(3)
        aws.clock.advance(600)
        aws.kill_instance(sorted(stack.in_service())[0])
        aws.clock.advance(4000)  # the dead instance's secret is past the sweep's age
        aws.clock.spawn(stack.runtime.handle, {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
        aws.clock.advance(600)
    # Snapshots (hook_handler.backup): a snapshot round's calls on the bucket — the newest found, a snapshot
    # uploaded in parts and tagged, one aborted (its stream failed its check), retention's deletes.
    with LocalAWS(clock=SimClock()) as aws:
        snapshot_calls(aws, record)
    return sorted(seen), sorted(keys)


def snapshot_calls(aws: Any, record: Any) -> None:
    import base64
    import hashlib
    import os

    from hook_handler.backup.errors import SnapshotCorrupt
    from hook_handler.backup.naming import snapshot_key
    from hook_handler.backup.retention import parse_tiers
    from hook_handler.backup.store import MIN_PART_SIZE, SnapshotMeta, SnapshotStore
    from hook_handler.backup.stream import SnapshotStream
    from hook_handler.retry import RetryPolicy

    s3 = aws.client("s3")
    s3.create_bucket(Bucket="snapshots")
    for age in (7200, 7100):  # two in one hour, over an hour old: retention deletes one
        body = b"old"
        s3.put_object(Bucket="snapshots", Key=snapshot_key("etcd/", aws.clock.now() - age, "1", 1),
                      Body=body + hashlib.sha256(body).digest())  # fmt: skip
    s3.meta.events.register("before-call.*.*", record)
    store = SnapshotStore(s3, "snapshots", "etcd/", RetryPolicy(aws.clock), aws.clock, part_size=MIN_PART_SIZE)
    deadline = aws.clock.now() + 600

    def stream(db: bytes, sha: bytes) -> SnapshotStream:
        blob = base64.b64encode(db).decode()
        messages = [{"result": {"blob": blob}}, {"result": {"blob": base64.b64encode(sha).decode()}}]
        return SnapshotStream(messages, "etcd")

    meta = SnapshotMeta(aws.clock.now(), "1", "2", 7, "3.5.1")
    store.newest(deadline)
    db = os.urandom(6 * 1024 * 1024)
    store.upload(stream(db, hashlib.sha256(db).digest()), meta, deadline)
    with contextlib.suppress(SnapshotCorrupt):
        store.upload(stream(db, b"\0" * 32), meta, deadline)
    store.prune(aws.clock.now(), parse_tiers(""), deadline)


# S3's API operations as the IAM actions that allow them (the service authorization reference).
S3_ACTIONS = {
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "s3:AbortMultipartUpload": "s3:AbortMultipartUpload",
    "s3:PutObjectTagging": "s3:PutObjectTagging",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:DeleteObjects": "s3:DeleteObject",
}


def recorded_operations() -> list[str]:
    return recorded_calls()[0]


@pytest.fixture(scope="session")
def recorded() -> tuple[list[str], list[str]]:
    return recorded_calls()


@pytest.fixture(scope="session")
def operations(recorded) -> set[str]:
    """As IAM actions: S3's API names mapped (``S3_ACTIONS``); an S3 operation not in the map fails here."""
    out = set()
    for op in recorded[0]:
        if op.startswith("s3:"):
            assert op in S3_ACTIONS, f"{op}: add its IAM action to S3_ACTIONS"
            op = S3_ACTIONS[op]
        out.add(op)
    return out


@pytest.fixture(scope="session")
def tag_keys(recorded) -> set[str]:
    return set(recorded[1])


@pytest.fixture(scope="session")
def coordinator_template() -> dict[str, Any]:
    return load_template(COORDINATOR)


@pytest.fixture(scope="session")
def cluster_template() -> dict[str, Any]:
    return load_template(CLUSTER)
