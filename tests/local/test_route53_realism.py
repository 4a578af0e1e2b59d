"""Route 53 as AWS enforces it (issue 11): malformed SRV/A values, duplicate values, one set changed
twice in a batch, lost responses of ChangeResourceRecordSets, and long-tail propagation.

Each AWS behaviour is asserted with its option on, and today's kinder behaviour with it off.
Sources are cited in ``infra/local/route53.py`` and ``infra/local/faults.py``.
"""

from __future__ import annotations

import random
import statistics

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from local_helpers import change, error_of

from infra.local.aws import LocalAWS
from infra.local.clock import EPOCH, SimClock
from infra.local.route53 import draw_propagation, record_change

SRV = "_etcd-server._tcp.example.com."
HOST = "n1.example.com."
A = "0 0 2380 a.example.com."
B = "0 0 2380 b.example.com."


# -- malformed values ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0 0 2380", "SRVRRDATANotFourFields (SRV record doesn't have 4 fields)"),
        ("0 0 2380 a.example.com. extra", "SRVRRDATANotFourFields"),
        ("0 0 70000 a.example.com.", "SRVRRDATAIllegalNumber"),
        ("x 0 2380 a.example.com.", "SRVRRDATAIllegalNumber"),
        ("0 0 2380 bad..name.", "SRVRRDATAIllegalTarget"),
    ],
)
def test_malformed_srv_value_is_an_invalid_change_batch(local_aws, r53, hosted_zone, value, problem):
    code, message = error_of(lambda: change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [value])))
    assert code == "InvalidChangeBatch"
    assert message.startswith("[Invalid Resource Record: 'FATAL problem: ")
    assert problem in message and f"encountered with '{value}'" in message
    assert (SRV, "SRV") not in local_aws.records(hosted_zone) and local_aws.route53_changes == []


def test_malformed_a_value_is_refused_with_aws_text(local_aws, r53, hosted_zone):
    code, message = error_of(lambda: change(r53, hosted_zone, record_change("UPSERT", HOST, "A", ["10.0.1.300"])))
    assert (code, message) == (
        "InvalidChangeBatch",
        "[Invalid Resource Record: 'FATAL problem: ARRDATAIllegalIPv4Address "
        "(Value is not a valid IPv4 address) encountered with '10.0.1.300'']",
    )


def test_well_formed_values_pass(local_aws, r53, hosted_zone):
    change(
        r53,
        hosted_zone,
        record_change("CREATE", SRV, "SRV", [A, "10 5 2380 ip-10-0-1-4.ec2.internal"]),
        record_change("CREATE", HOST, "A", ["10.0.1.4"]),
    )
    assert {(SRV, "SRV"), (HOST, "A")} <= set(local_aws.records(hosted_zone))


def test_duplicate_value_in_one_record_set_is_refused(local_aws, r53, hosted_zone):
    code, message = error_of(lambda: change(r53, hosted_zone, record_change("CREATE", HOST, "A", ["10.0.1.4"] * 2)))
    assert (code, message) == ("InvalidChangeBatch", "[Duplicate Resource Record: '10.0.1.4']")


@pytest.mark.local_aws(route53_strict_values=False)
def test_without_strict_values_malformed_and_duplicate_values_are_stored(local_aws, r53, hosted_zone):
    change(
        r53,
        hosted_zone,
        record_change("CREATE", SRV, "SRV", ["0 0 2380"]),
        record_change("CREATE", HOST, "A", ["not-an-ip", "not-an-ip"]),
    )
    assert local_aws.records(hosted_zone)[(HOST, "A")] == (60, ("not-an-ip", "not-an-ip"))


# -- one set changed twice in a batch -----------------------------------------------------
@pytest.mark.parametrize(
    "actions",
    [("CREATE", "CREATE"), ("CREATE", "UPSERT"), ("UPSERT", "UPSERT"), ("DELETE", "CREATE", "DELETE")],
)
def test_one_record_set_changed_twice_in_a_batch_is_refused(local_aws, r53, hosted_zone, actions):
    if actions[0] == "DELETE":
        change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]))
    before = local_aws.records(hosted_zone)
    batch = [record_change(action, SRV, "SRV", [A] if action == "DELETE" else [B]) for action in actions]
    code, message = error_of(lambda: change(r53, hosted_zone, *batch))
    assert code == "InvalidChangeBatch"
    assert f"The request contains an invalid set of changes for a resource record set 'SRV {SRV}'" in message
    assert local_aws.records(hosted_zone) == before


def test_delete_then_create_of_the_same_set_is_still_the_compare_and_swap(local_aws, r53, hosted_zone):
    change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]))
    change(r53, hosted_zone, record_change("DELETE", SRV, "SRV", [A]), record_change("CREATE", SRV, "SRV", [A, B]))
    assert local_aws.records(hosted_zone)[(SRV, "SRV")] == (60, (A, B))


@pytest.mark.local_aws(route53_strict_values=False)
def test_without_strict_values_create_then_upsert_of_one_set_passes(local_aws, r53, hosted_zone):
    change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]), record_change("UPSERT", SRV, "SRV", [B]))
    assert local_aws.records(hosted_zone)[(SRV, "SRV")] == (60, (B,))


# -- lost responses -------------------------------------------------------------------------
def test_lost_response_5xx_change_lands_but_the_caller_sees_internal_error(local_aws, r53, hosted_zone):
    local_aws.faults.lose_response("ChangeResourceRecordSets", code="InternalError")
    batch = [record_change("CREATE", SRV, "SRV", [A])]
    with pytest.raises(ClientError) as info:
        change(r53, hosted_zone, *batch)
    assert info.value.response["Error"]["Code"] == "InternalError"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    # The write landed: the record is there, the change is recorded and propagates.
    assert local_aws.records(hosted_zone)[(SRV, "SRV")] == (60, (A,))
    assert len(local_aws.route53_changes) == 1
    call = local_aws.calls[-1]
    assert (call.error, call.injected) == ("InternalError", True) and call.result.startswith("applied, response lost")
    # A blind retry of the same CREATE now meets its own write.
    code, message = error_of(lambda: change(r53, hosted_zone, *batch))
    assert code == "InvalidChangeBatch" and "but it already exists" in message
    assert local_aws.faults.lost["ChangeResourceRecordSets"] == 1


def test_lost_response_timeout_is_a_botocore_read_timeout_after_the_read_timeout(local_aws, r53, hosted_zone):
    local_aws.faults.lose_response("ChangeResourceRecordSets", code="timeout", after=15.0)
    with pytest.raises(ReadTimeoutError):
        change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]))
    assert local_aws.clock.now() - EPOCH == 15.0  # the caller waited its read timeout
    assert local_aws.records(hosted_zone)[(SRV, "SRV")] == (60, (A,))
    assert local_aws.calls[-1].error == "ReadTimeoutError"
    change(r53, hosted_zone, record_change("DELETE", SRV, "SRV", [A]))  # the rule is used up: answers again


def test_without_a_lost_response_rule_the_answer_arrives(local_aws, r53, hosted_zone):
    info = change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]))
    assert info["Status"] == "PENDING" and local_aws.faults.lost == {}


def test_a_refused_call_keeps_its_error_and_does_not_use_up_the_rule(local_aws, r53, hosted_zone):
    local_aws.faults.lose_response("ChangeResourceRecordSets")
    code, _ = error_of(lambda: change(r53, hosted_zone, record_change("DELETE", SRV, "SRV", [A])))
    assert code == "InvalidChangeBatch"
    with pytest.raises(ClientError) as info:
        change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]))
    assert info.value.response["Error"]["Code"] == "InternalError"


# -- long-tail propagation ----------------------------------------------------------------------
def test_lognormal_propagation_has_the_median_and_a_tail_of_minutes():
    rng = random.Random(1)
    draws = [draw_propagation(("lognormal", 30.0, 240.0), rng) for _ in range(4000)]
    assert 27.0 < statistics.median(draws) < 33.0
    p99 = sorted(draws)[int(0.99 * len(draws))]
    assert 180.0 < p99 < 320.0
    assert max(draws) > 240.0  # several minutes, sometimes
    capped = [draw_propagation(("lognormal", 30.0, 240.0, 90.0), rng) for _ in range(500)]
    assert max(capped) == 90.0


def test_long_tail_propagation_sets_insync_at_and_plain_forms_are_unchanged():
    for spec, check in (
        (("lognormal", 30.0, 600.0), lambda delays: max(delays) > 120.0 and min(delays) > 0.0),
        (lambda rng: 400.0 + rng.random(), lambda delays: all(400.0 <= d < 401.0 for d in delays)),
        ((20.0, 60.0), lambda delays: all(20.0 <= d <= 60.0 for d in delays)),
        (30.0, lambda delays: set(delays) == {30.0}),
    ):
        with LocalAWS(SimClock(), propagation=spec, route53_rate=None, seed=3) as aws:
            zone = aws.create_zone("example.com")
            r53 = aws.client("route53")
            delays = []
            for n in range(60):
                name = f"h{n}.example.com."
                info = change(r53, zone, record_change("CREATE", name, "A", [f"10.0.0.{n + 1}"]))
                record = aws.change(info["Id"])
                delays.append(record.insync_at - record.submitted_at)
                aws.clock.advance(max(0.0, record.insync_at - aws.clock.now()))  # in-order propagation: no carry-over
            assert check(delays), (spec, delays)


def test_a_malformed_propagation_spec_is_refused():
    with pytest.raises(ValueError, match="lognormal"):
        draw_propagation(("pareto", 1.0, 2.0), random.Random(0))
