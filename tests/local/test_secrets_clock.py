"""Secrets Manager runs on the emulator's clock: a secret's CreatedDate is the simulated time it was made (moto
alone stamps it with the wall clock, another epoch than every other emulated service under a SimClock)."""

from __future__ import annotations

from infra.local import LocalAWS
from infra.local.clock import SimClock


def test_a_secret_is_stamped_with_the_emulator_clock():
    with LocalAWS(clock=SimClock(start=1_000_000.0)) as aws:
        aws.clock.advance(5000)
        sm = aws.client("secretsmanager")
        sm.create_secret(Name="s", SecretString="x")
        (entry,) = sm.list_secrets()["SecretList"]
        assert entry["CreatedDate"].timestamp() == 1_005_000.0
        assert sm.describe_secret(SecretId="s")["CreatedDate"].timestamp() == 1_005_000.0
