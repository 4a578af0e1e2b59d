"""Shared test configuration: the emulated-AWS fixtures, and how tests split across xdist workers."""

from __future__ import annotations

import pytest

from infra.local.aws import LocalAWS

pytest_plugins = ["infra.local.pytest_plugin"]


@pytest.fixture
def aws(local_aws: LocalAWS) -> LocalAWS:
    """The started emulated AWS of the tests: the plugin's ``local_aws`` (simulated clock), its constructor
    arguments from the module's or the test's ``local_aws`` marker, e.g.
    ``pytestmark = pytest.mark.local_aws(propagation=(5.0, 15.0))``."""
    return local_aws


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that run real processes on real time (etcd clusters) share one xdist worker, one after
    another, so they never compete with each other for the two cores; the simulated-time tests
    spread over the other worker(s)."""
    for item in items:
        if "/tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.xdist_group("real-time"))
