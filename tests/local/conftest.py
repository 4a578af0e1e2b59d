"""Fixtures of the emulator's tests beyond tests/conftest.py's; plain helpers are in local_helpers.py."""

from __future__ import annotations

from typing import Any

import pytest

from infra.local.aws import LocalAWS


@pytest.fixture
def r53(local_aws: LocalAWS) -> Any:
    """A Route 53 client of ``local_aws``."""
    return local_aws.client("route53")
