"""Strict Route 53: compare-and-swap batches, atomicity, change ids, propagation, listing order.

Each test pins a behaviour plain moto gets wrong (see the facts file, section 6).
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from local_helpers import change, error_of

from infra.local.clock import EPOCH
from infra.local.route53 import record_change

SRV = "_etcd-server._tcp.example.com."
A = "0 0 2380 a.example.com."
B = "0 0 2380 b.example.com."
C = "0 0 2380 c.example.com."


def test_delete_plus_create_swaps_the_record_when_delete_names_current_values(local_aws, r53, hosted_zone):
    change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]))
    change(r53, hosted_zone, record_change("DELETE", SRV, "SRV", [A]), record_change("CREATE", SRV, "SRV", [A, B]))
    assert local_aws.records(hosted_zone)[(SRV, "SRV")] == (60, (A, B))


def test_delete_with_stale_values_fails_and_changes_nothing(local_aws, r53, hosted_zone):
    change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]))
    change(r53, hosted_zone, record_change("DELETE", SRV, "SRV", [A]), record_change("CREATE", SRV, "SRV", [A, B]))
    # A second writer still believes the record is [A]: its CAS must fail (moto lets it through).
    code, message = error_of(
        lambda: change(
            r53, hosted_zone, record_change("DELETE", SRV, "SRV", [A]), record_change("CREATE", SRV, "SRV", [A, C])
        )
    )
    assert code == "InvalidChangeBatch"
    assert message == (
        f"[Tried to delete resource record set [name='{SRV}', type='SRV'] "
        "but the values provided do not match the current values]"
    )
    assert local_aws.records(hosted_zone)[(SRV, "SRV")] == (60, (A, B))
    assert len(local_aws.route53_changes) == 2


def test_delete_with_other_ttl_does_not_match(local_aws, r53, hosted_zone):
    change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A], ttl=60))
    code, message = error_of(lambda: change(r53, hosted_zone, record_change("DELETE", SRV, "SRV", [A], ttl=300)))
    assert code == "InvalidChangeBatch"
    assert "do not match the current values" in message
    assert local_aws.records(hosted_zone)[(SRV, "SRV")] == (60, (A,))


def test_delete_matches_values_in_any_order(local_aws, r53, hosted_zone):
    change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A, B]))
    change(r53, hosted_zone, record_change("DELETE", SRV, "SRV", [B, A]))
    assert (SRV, "SRV") not in local_aws.records(hosted_zone)


def test_delete_of_missing_record_set_is_not_found(r53, hosted_zone):
    code, message = error_of(lambda: change(r53, hosted_zone, record_change("DELETE", SRV, "SRV", [A])))
    assert code == "InvalidChangeBatch"
    assert message == f"[Tried to delete resource record set [name='{SRV}', type='SRV'] but it was not found]"


def test_create_of_existing_record_set_fails_without_adding_a_second_set(local_aws, r53, hosted_zone):
    change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]))
    code, message = error_of(lambda: change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [B])))
    assert code == "InvalidChangeBatch"
    assert message == f"[Tried to create resource record set [name='{SRV}', type='SRV'] but it already exists]"
    listed = r53.list_resource_record_sets(HostedZoneId=hosted_zone)["ResourceRecordSets"]
    assert [r["ResourceRecords"] for r in listed if r["Type"] == "SRV"] == [[{"Value": A}]]


def test_failed_batch_applies_none_of_its_changes_and_lists_every_error(local_aws, r53, hosted_zone):
    other = "_etcd-client._tcp.example.com."
    change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]))
    code, message = error_of(
        lambda: change(
            r53,
            hosted_zone,
            record_change("CREATE", other, "SRV", [B]),  # valid on its own
            record_change("DELETE", "_gone._tcp.example.com.", "SRV", [C]),
            record_change("CREATE", SRV, "SRV", [C]),
        )
    )
    assert code == "InvalidChangeBatch"
    assert message == (
        "[Tried to delete resource record set [name='_gone._tcp.example.com.', type='SRV'] but it was not found, "
        f"Tried to create resource record set [name='{SRV}', type='SRV'] but it already exists]"
    )
    assert (other, "SRV") not in local_aws.records(hosted_zone)


def test_every_change_gets_its_own_id(local_aws, r53, hosted_zone):
    first = change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]))
    second = change(r53, hosted_zone, record_change("UPSERT", SRV, "SRV", [B]))
    assert first["Id"] != second["Id"]
    assert first["Id"].startswith("/change/C") and second["Id"].startswith("/change/C")
    assert [c.id for c in local_aws.route53_changes] == [first["Id"], second["Id"]]
    assert local_aws.route53_changes[1].records_after[(SRV, "SRV")] == (60, (B,))
    assert local_aws.route53_changes[0].records_after[(SRV, "SRV")] == (60, (A,))


def test_get_change_is_pending_until_propagation_then_insync(local_aws, r53, hosted_zone):
    info = change(r53, hosted_zone, record_change("CREATE", SRV, "SRV", [A]))
    assert info["Status"] == "PENDING"
    assert local_aws.insync_at(info["Id"]) == EPOCH + 30.0
    local_aws.clock.advance(29.9)
    assert r53.get_change(Id=info["Id"])["ChangeInfo"]["Status"] == "PENDING"
    local_aws.clock.advance(0.1)
    got = r53.get_change(Id=info["Id"])["ChangeInfo"]
    assert (got["Id"], got["Status"]) == (info["Id"], "INSYNC")
    assert got["SubmittedAt"].timestamp() == EPOCH


@pytest.mark.local_aws(propagation=(20.0, 60.0), seed=7)
def test_a_zone_propagates_changes_in_order(local_aws, r53, hosted_zone):
    infos = []
    for i in range(6):
        infos.append(change(r53, hosted_zone, record_change("UPSERT", SRV, "SRV", [f"0 0 2380 n{i}.example.com."])))
        local_aws.clock.advance(1.0)
    insync = [local_aws.insync_at(i["Id"]) for i in infos]
    assert insync == sorted(insync)
    for record in local_aws.route53_changes:
        assert 20.0 <= record.insync_at - record.submitted_at <= 60.0 + 6


def test_get_change_of_unknown_id_is_no_such_change(r53, hosted_zone):
    with pytest.raises(ClientError) as info:
        r53.get_change(Id="/change/CNOTAREALCHANGE")
    assert info.value.response["Error"]["Code"] == "NoSuchChange"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_list_sorts_by_reversed_labels_with_trailing_dot(local_aws, r53, hosted_zone):
    names = [
        "_etcd-server._tcp.example.com.",
        "_etcd-server-ssl._tcp.example.com.",
        "_etcd-client._tcp.example.com.",
        "a.example.com.",
    ]
    for name in names:
        local_aws.set_records(hosted_zone, name, "SRV", 60, [A])
    listed = [
        r["Name"]
        for r in r53.list_resource_record_sets(HostedZoneId=hosted_zone)["ResourceRecordSets"]
        if r["Type"] == "SRV"
    ]
    # com.example._tcp._etcd-server-ssl. < com.example._tcp._etcd-server. ('-' sorts before '.'); moto puts it after.
    assert listed == [
        "_etcd-client._tcp.example.com.",
        "_etcd-server-ssl._tcp.example.com.",
        "_etcd-server._tcp.example.com.",
        "a.example.com.",
    ]


def test_list_from_start_name_and_type_reads_the_record_first(local_aws, r53, hosted_zone):
    local_aws.set_records(hosted_zone, SRV, "SRV", 60, [A, B])
    local_aws.set_records(hosted_zone, SRV, "TXT", 60, ['"x"'])
    local_aws.set_records(hosted_zone, "_etcd-server-ssl._tcp.example.com.", "SRV", 60, [C])
    page = r53.list_resource_record_sets(
        HostedZoneId=hosted_zone, StartRecordName=SRV, StartRecordType="SRV", MaxItems="1"
    )
    assert [(r["Name"], r["Type"]) for r in page["ResourceRecordSets"]] == [(SRV, "SRV")]
    assert page["IsTruncated"] is True
    assert (page["NextRecordName"], page["NextRecordType"]) == (SRV, "TXT")
    rest = r53.list_resource_record_sets(
        HostedZoneId=hosted_zone, StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"]
    )
    assert [(r["Name"], r["Type"]) for r in rest["ResourceRecordSets"]] == [(SRV, "TXT")]
    assert rest["IsTruncated"] is False


def test_zone_creation_changes_have_their_own_ids_and_are_insync(r53):
    first = r53.create_hosted_zone(Name="one.example", CallerReference="1")["ChangeInfo"]["Id"]
    second = r53.create_hosted_zone(Name="two.example", CallerReference="2")["ChangeInfo"]["Id"]
    assert first != second
    assert r53.get_change(Id=first)["ChangeInfo"]["Status"] == "INSYNC"
