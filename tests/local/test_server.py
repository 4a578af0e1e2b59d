"""The emulator server: boto3 through AWS_ENDPOINT_URL, and the /_local/ control endpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local.aws import LocalAWS
from infra.local.clock import EPOCH, WallClock
from infra.local.route53 import record_change
from infra.local.server import ENDPOINTS, LocalServer, endpoint

REPO = Path(__file__).resolve().parents[2]
SRV = "_etcd-server._tcp.example.com."


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def server_url(monkeypatch):
    """``python -m infra.local serve`` in a subprocess on a free port, simulated clock, 30 s propagation."""
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local", "serve", "--port", "0", "--clock", "sim", "--propagation", "30"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")},
    )
    try:
        line = process.stdout.readline()
        assert "serving on http://" in line, line
        url = line.split("serving on ", 1)[1].split()[0]
        for key, value in {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_boto3_with_endpoint_url_gets_strict_route53_and_simulated_propagation(server_url):
    r53 = boto3.client("route53", config=Config(retries={"total_max_attempts": 1}))
    zone = r53.create_hosted_zone(Name="example.com", CallerReference="t")["HostedZone"]["Id"]
    info = r53.change_resource_record_sets(
        HostedZoneId=zone, ChangeBatch={"Changes": [record_change("CREATE", SRV, "SRV", ["0 0 2380 a.example.com."])]}
    )["ChangeInfo"]
    assert r53.get_change(Id=info["Id"])["ChangeInfo"]["Status"] == "PENDING"

    assert http("POST", f"{server_url}/_local/clock/advance", {"seconds": 30}) == (
        200,
        {"now": EPOCH + 30, "kind": "sim"},
    )
    assert r53.get_change(Id=info["Id"])["ChangeInfo"]["Status"] == "INSYNC"

    with pytest.raises(ClientError) as conflict:
        r53.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={"Changes": [record_change("CREATE", SRV, "SRV", ["0 0 2380 b.example.com."])]},
        )
    assert conflict.value.response["Error"]["Code"] == "InvalidChangeBatch"
    assert conflict.value.response["Error"]["Message"].endswith("but it already exists]")

    status, log = http("GET", f"{server_url}/_local/calls?since=1")
    assert status == 200
    assert [(c["operation"], c["error"]) for c in log["calls"]] == [
        ("ChangeResourceRecordSets", None),
        ("GetChange", None),
        ("GetChange", None),
        ("ChangeResourceRecordSets", "InvalidChangeBatch"),
    ]
    assert log["calls"][2]["result"] == f"{info['Id']} INSYNC"
    assert log["next"] == 5

    status, changes = http("GET", f"{server_url}/_local/changes")
    assert [(c["id"], c["status"], c["insync_at"]) for c in changes["changes"]] == [(info["Id"], "INSYNC", EPOCH + 30)]


def test_faults_posted_over_http_reach_boto3_with_the_right_code(server_url):
    asg = boto3.client("autoscaling", config=Config(retries={"total_max_attempts": 1}))
    assert (
        http(
            "POST",
            f"{server_url}/_local/faults",
            {"operation": "DescribeAutoScalingGroups", "code": "ResourceContention"},
        )[0]
        == 200
    )
    with pytest.raises(ClientError) as fault:
        asg.describe_auto_scaling_groups()
    assert fault.value.response["Error"]["Code"] == "ResourceContention"
    assert fault.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    asg.describe_auto_scaling_groups()

    http("POST", f"{server_url}/_local/faults", {"operation": "DescribeAutoScalingGroups", "count": 3})
    status, state = http("DELETE", f"{server_url}/_local/faults")
    assert (status, state["pending"], state["injected"]) == (200, [], {"DescribeAutoScalingGroups": 1})
    asg.describe_auto_scaling_groups()

    status, health = http("GET", f"{server_url}/_local/health")
    assert (status, health["ok"], health["kind"]) == (200, True, "sim")


def test_in_thread_server_on_wall_clock_refuses_to_advance_and_serves_extra_endpoints():
    @endpoint("GET", "/_local/test-echo")
    def echo(aws, request):
        return {"echo": request.args.get("x")}

    aws = LocalAWS(WallClock(), propagation=0.0).start()
    server = LocalServer(aws, port=0).start()
    try:
        status, answer = http("POST", f"{server.url}/_local/clock/advance", {"seconds": 5})
        assert status == 400
        assert "wall clock" in answer["error"]
        assert http("GET", f"{server.url}/_local/test-echo?x=1") == (200, {"echo": "1"})
        status, answer = http("GET", f"{server.url}/_local/nope")
        assert status == 404 and "GET /_local/calls" in answer["endpoints"]
    finally:
        server.stop()
        aws.stop()
        ENDPOINTS.pop(("GET", "/_local/test-echo"))


@pytest.fixture
def wall_server():
    """A threaded LocalServer on the wall clock (what ``python -m infra.local serve`` runs for the demo)."""
    aws = LocalAWS(WallClock(), propagation=0.0).start()
    server = LocalServer(aws, port=0).start()
    try:
        yield server
    finally:
        server.stop()
        aws.stop()


def test_concurrent_calls_are_served_one_at_a_time_as_aws_serves_each_atomically(wall_server):
    """Regression (e2e CI: ``RuntimeError: dictionary changed size during iteration`` in moto's DescribeTags):
    the server is threaded and moto's backends are plain dicts, so a DescribeTags iterating the tags while
    another request's CreateTags adds one failed. Each call is atomic on AWS; here too."""
    import threading

    server = wall_server
    errors: list[str] = []
    config = Config(retries={"total_max_attempts": 1}, max_pool_connections=20)
    ec2 = boto3.client("ec2", endpoint_url=server.url, region_name="us-east-1", config=config)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ids = [i["InstanceId"] for i in ec2.run_instances(ImageId=image, MinCount=40, MaxCount=40)["Instances"]]

    def writer(n: int) -> None:
        client = boto3.client("ec2", endpoint_url=server.url, region_name="us-east-1", config=config)
        for k in range(25):  # one tag added and the previous one removed per round (50 tags per resource at most)
            try:
                client.create_tags(Resources=ids, Tags=[{"Key": f"w{n}-{k}", "Value": "x"}])
                if k:
                    client.delete_tags(Resources=ids, Tags=[{"Key": f"w{n}-{k - 1}"}])
            except Exception as exc:  # noqa: BLE001 - the outcome under test
                errors.append(f"CreateTags/DeleteTags: {exc}")

    def reader() -> None:
        client = boto3.client("ec2", endpoint_url=server.url, region_name="us-east-1", config=config)
        for _ in range(25):
            try:
                client.describe_tags(Filters=[{"Name": "resource-id", "Values": ids}])
            except Exception as exc:  # noqa: BLE001 - the outcome under test
                errors.append(f"DescribeTags: {exc}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": ids[:1]}])["Tags"]
    assert errors == []
    assert sorted(t["Key"] for t in tags) == ["w0-24", "w1-24", "w2-24"]  # every write landed, in order


def test_a_long_poll_does_not_hold_up_other_calls_while_it_waits(wall_server):
    """Regression (CI: the long-poll test hung once each call held the account lock): SQS's long poll
    waits for a message; AWS serves other requests meanwhile, and a message sent during the wait ends it.
    (The order in which the sender and the poller *see* their answers after the send is a race between two
    threads, so it is not asserted: CI once saw the poller first.)"""
    import threading
    import time

    server = wall_server
    config = Config(retries={"total_max_attempts": 1}, read_timeout=60)
    sqs = boto3.client("sqs", endpoint_url=server.url, region_name="us-east-1", config=config)
    url = sqs.create_queue(QueueName="poll")["QueueUrl"]
    received: list[dict] = []
    returned: list[float] = []

    def poll() -> None:
        poller = boto3.client("sqs", endpoint_url=server.url, region_name="us-east-1", config=config)
        received.extend(poller.receive_message(QueueUrl=url, WaitTimeSeconds=20).get("Messages", []))
        returned.append(time.monotonic())

    thread = threading.Thread(target=poll)
    started = time.monotonic()
    thread.start()
    threading.Event().wait(1.0)  # the poll's request is in (on the wall clock: this test's server is real)
    sqs.list_queues()
    assert thread.is_alive() and not returned  # ListQueues was answered while the long poll still waited
    sqs.send_message(QueueUrl=url, MessageBody="wake")
    thread.join(timeout=30)
    assert returned and returned[0] - started < 10.0  # the message ended the wait, not the 20 s timeout
    assert [m["Body"] for m in received] == ["wake"]
