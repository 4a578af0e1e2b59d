"""Fixtures of the infra/aws tests: the templates (decoded like CloudFormation reads them) and the
AWS operations the coordinator calls."""

from __future__ import annotations

from typing import Any

import pytest
from aws_helpers import CLUSTER, COORDINATOR, load_template


def recorded_operations() -> list[str]:
    """Every AWS operation the coordinator calls, as IAM actions (``service:Operation``), recorded
    with botocore's event hooks (``before-call.*.*``) on the coordinator's own clients while it runs
    the integration scenarios on the emulated AWS: a bootstrap, a join and a scale-in with slow
    propagation (heartbeats), hook names left to discovery, and a kill repaired by a reconcile.
    """
    from infra.local import LocalAWS, SimClock
    from infra.local.stack import deploy

    seen: set[str] = set()

    def record(model: Any, **_: Any) -> None:
        seen.add(f"{model.service_model.signing_name}:{model.name}")

    with LocalAWS(clock=SimClock(), propagation=150.0) as aws:
        stack = deploy(
            aws,
            mode="eventbridge",
            timeout=900.0,
            settings={"launch_hook_name": "", "terminate_hook_name": "", "heartbeat_interval_seconds": "60"},
        )
        coordinator = stack.runtime.coordinator
        for client in (coordinator.route53.client, coordinator.asg.autoscaling, coordinator.asg.ec2):
            client.meta.events.register("before-call.*.*", record)
        stack.scale(3)
        aws.clock.run()
        stack.scale(5)
        aws.clock.run()
        stack.scale(4)
        aws.clock.run()
        aws.kill_instance(sorted(stack.in_service())[0])
        stack.runtime.handle({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, None)
        aws.clock.run()
    return sorted(seen)


@pytest.fixture(scope="session")
def operations() -> set[str]:
    return set(recorded_operations())


@pytest.fixture(scope="session")
def coordinator_template() -> dict[str, Any]:
    return load_template(COORDINATOR)


@pytest.fixture(scope="session")
def cluster_template() -> dict[str, Any]:
    return load_template(CLUSTER)
