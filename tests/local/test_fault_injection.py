"""Call log, Route 53 rate limit, PriorRequestNotComplete and injected faults."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from infra.local.clock import EPOCH
from infra.local.route53 import record_change

SRV = "_etcd-server._tcp.example.com."
A = "0 0 2380 a.example.com."


def client_error(call):
    with pytest.raises(ClientError) as info:
        call()
    response = info.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_route53_allows_five_requests_per_second_then_throttles(local_aws, hosted_zone):
    r53 = local_aws.client("route53")
    for _ in range(5):
        r53.list_resource_record_sets(HostedZoneId=hosted_zone)
    assert client_error(lambda: r53.get_hosted_zone(Id=hosted_zone)) == ("Throttling", "Rate exceeded", 400)
    local_aws.clock.advance(0.2)  # one token back
    r53.get_hosted_zone(Id=hosted_zone)
    assert client_error(lambda: r53.get_hosted_zone(Id=hosted_zone))[0] == "Throttling"
    assert local_aws.faults.throttled == 2
    assert [c.error for c in local_aws.calls] == [None] * 5 + ["Throttling", None, "Throttling"]


def test_rate_limit_spans_all_route53_operations_but_not_other_services(local_aws, hosted_zone):
    r53, ec2 = local_aws.client("route53"), local_aws.client("ec2")
    info = r53.change_resource_record_sets(
        HostedZoneId=hosted_zone, ChangeBatch={"Changes": [record_change("CREATE", SRV, "SRV", [A])]}
    )["ChangeInfo"]
    for _ in range(4):
        r53.get_change(Id=info["Id"])
    for _ in range(10):
        ec2.describe_instances()
    assert client_error(lambda: r53.get_change(Id=info["Id"]))[0] == "Throttling"


@pytest.mark.local_aws(route53_rate=None)
def test_rate_limit_can_be_switched_off(local_aws, hosted_zone):
    r53 = local_aws.client("route53")
    for _ in range(50):
        r53.get_hosted_zone(Id=hosted_zone)
    assert local_aws.faults.throttled == 0


@pytest.mark.local_aws(prior_request_window=10.0)
def test_change_within_window_of_previous_change_is_prior_request_not_complete(local_aws, hosted_zone):
    r53 = local_aws.client("route53")

    def submit(action):
        return r53.change_resource_record_sets(
            HostedZoneId=hosted_zone, ChangeBatch={"Changes": [record_change(action, SRV, "SRV", [A])]}
        )

    submit("CREATE")
    local_aws.clock.advance(9.0)
    assert client_error(lambda: submit("UPSERT")) == (
        "PriorRequestNotComplete",
        "The request was rejected because Route 53 was still processing a prior request.",
        400,
    )
    local_aws.clock.advance(1.0)
    submit("UPSERT")
    assert len(local_aws.route53_changes) == 2


def test_fail_next_answers_the_next_calls_with_the_code_in_the_service_protocol(local_aws, hosted_zone):
    r53, asg = local_aws.client("route53"), local_aws.client("autoscaling")
    local_aws.faults.fail_next("GetHostedZone", count=2, code="InvalidInput", message="bad input")
    local_aws.faults.fail_next("DescribeAutoScalingGroups", code="ResourceContention")
    assert client_error(lambda: r53.get_hosted_zone(Id=hosted_zone)) == ("InvalidInput", "bad input", 400)
    assert client_error(lambda: r53.get_hosted_zone(Id=hosted_zone))[0] == "InvalidInput"
    r53.get_hosted_zone(Id=hosted_zone)
    # Query protocol; the status comes from the Auto Scaling model (ResourceContention is a 500).
    code, message, status = client_error(asg.describe_auto_scaling_groups)
    assert (code, status) == ("ResourceContention", 500)
    assert message.startswith("You already have a pending update to an Auto Scaling resource")
    asg.describe_auto_scaling_groups()
    assert local_aws.faults.injected == {"GetHostedZone": 2, "DescribeAutoScalingGroups": 1}


def test_fail_next_on_ec2_uses_ec2_error_format_and_given_status(local_aws):
    ec2 = local_aws.client("ec2")
    local_aws.faults.fail_next("DescribeInstances", code="RequestLimitExceeded", status=503)
    assert client_error(ec2.describe_instances) == ("RequestLimitExceeded", "Request limit exceeded.", 503)


def test_clear_drops_pending_faults(local_aws, hosted_zone):
    local_aws.faults.fail_next("GetHostedZone", count=5)
    local_aws.faults.clear()
    local_aws.client("route53").get_hosted_zone(Id=hosted_zone)
    assert local_aws.faults.injected == {}


def test_delay_runs_on_the_simulated_clock(local_aws, hosted_zone):
    r53 = local_aws.client("route53")
    local_aws.faults.delay("GetHostedZone", 2.5, count=1)
    r53.get_hosted_zone(Id=hosted_zone)
    assert local_aws.clock.now() == EPOCH + 2.5
    assert local_aws.calls[-1].duration == 2.5


def test_delay_inside_a_task_lets_other_tasks_run(local_aws, hosted_zone):
    clock = local_aws.clock
    local_aws.faults.delay("GetHostedZone", 5.0, count=1)
    order = []

    def slow():
        local_aws.client("route53").get_hosted_zone(Id=hosted_zone)
        order.append(("slow", clock.now() - EPOCH))

    def fast():
        clock.sleep(1.0)
        order.append(("fast", clock.now() - EPOCH))

    clock.spawn(slow)
    clock.spawn(fast)
    clock.run()
    assert order == [("fast", 1.0), ("slow", 5.0)]


def test_call_log_records_operation_params_result_and_errors(local_aws, hosted_zone):
    r53 = local_aws.client("route53")
    info = r53.change_resource_record_sets(
        HostedZoneId=hosted_zone, ChangeBatch={"Changes": [record_change("CREATE", SRV, "SRV", [A])]}
    )["ChangeInfo"]
    local_aws.clock.advance(30)
    r53.get_change(Id=info["Id"])
    client_error(
        lambda: r53.change_resource_record_sets(
            HostedZoneId=hosted_zone, ChangeBatch={"Changes": [record_change("CREATE", SRV, "SRV", [A])]}
        )
    )
    write, poll, conflict = local_aws.calls
    assert (write.service, write.operation, write.time, write.status) == (
        "route53",
        "ChangeResourceRecordSets",
        EPOCH,
        200,
    )
    assert write.params["HostedZoneId"] == hosted_zone
    assert write.params["ChangeBatch"]["Changes"][0]["ResourceRecordSet"]["Name"] == SRV
    assert write.result == f"{info['Id']} PENDING"
    assert (poll.operation, poll.time, poll.result) == ("GetChange", EPOCH + 30, f"{info['Id']} INSYNC")
    assert (conflict.error, conflict.injected) == ("InvalidChangeBatch", False)
    assert [c.index for c in local_aws.calls] == [0, 1, 2]
