"""pytest fixtures for the emulated AWS: ``sim_clock``, ``local_aws``, ``hosted_zone``, ``launch_template``.

Enable with ``pytest_plugins = ["infra.local.pytest_plugin"]`` in ``tests/conftest.py``.
Constructor arguments for ``local_aws`` come from the ``local_aws`` marker:

Example:
    >>> @pytest.mark.local_aws(route53_rate=None, prior_request_window=10)
    ... def test_something(local_aws, hosted_zone):
    ...     r53 = local_aws.client("route53")
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.aws import LocalAWS
from infra.local.clock import SimClock

DEFAULTS: dict[str, Any] = {"propagation": 30.0}
ZONE_NAME = "example.com."
LAUNCH_TEMPLATE = "etcd-node"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "local_aws(**kwargs): LocalAWS constructor arguments for the local_aws fixture")


@pytest.fixture
def sim_clock() -> SimClock:
    """A fresh simulated clock starting at ``infra.local.clock.EPOCH``."""
    return SimClock()


@pytest.fixture
def local_aws(request: pytest.FixtureRequest, sim_clock: SimClock) -> Iterator[LocalAWS]:
    """A started ``LocalAWS`` on ``sim_clock``: propagation fixed at 30 s, Route 53 limited to 5 req/s."""
    marker = request.node.get_closest_marker("local_aws")
    kwargs = {**DEFAULTS, **(marker.kwargs if marker else {})}
    aws = LocalAWS(sim_clock, **kwargs).start()
    try:
        yield aws
    finally:
        aws.stop()


@pytest.fixture
def hosted_zone(local_aws: LocalAWS) -> str:
    """The bare id of a public hosted zone ``example.com.`` (created directly: no call, no rate token)."""
    return local_aws.create_zone(ZONE_NAME)


@pytest.fixture
def launch_template(local_aws: LocalAWS) -> str:
    """The name of a launch template ``etcd-node`` (``ami-12c6146b``, ``t3.micro``), for groups a test creates."""
    local_aws.client("ec2").create_launch_template(
        LaunchTemplateName=LAUNCH_TEMPLATE, LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    )
    return LAUNCH_TEMPLATE
