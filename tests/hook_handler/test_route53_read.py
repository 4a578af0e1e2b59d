"""The Route 53 read in Route 53's own order, trailing dot included: names that differ only after a `-`."""

from __future__ import annotations

import pytest

from hook_handler.plan import RecordSet, peer_targets
from infra.local.stack import deploy

KEPT = ("_etcd-server-ssl._tcp", "_etcd-server._tcp", "_etcd-client._tcp", "_etcd-client-ssl._tcp")


pytestmark = pytest.mark.local_aws(propagation=(2.0, 6.0))  # the shared ``aws`` fixture (tests/conftest.py)


def test_every_kept_set_is_found_through_scale_out_and_in_with_pagination(aws):
    """Issue 12: `Route53.read` sorted names without the trailing dot, Route 53 sorts with it (`-` < `.`):
    with `_etcd-server-ssl._tcp` and `_etcd-server._tcp` both kept the read missed a set, every write
    failed with "already exists" and scaling stalled."""
    stack = deploy(
        aws,
        mode="eventbridge",
        settings={
            "srv_record_name": "_etcd-server-ssl._tcp",
            "etcd_peer_scheme": "https",  # the TLS peer record needs https peers (settings._check_tls)
            "extra_srv_records": "_etcd-server._tcp:2380,_etcd-client._tcp:2379,_etcd-client-ssl._tcp:2379",
        },
    )
    # Filler sets sorting among the kept ones, so the read needs several ListResourceRecordSets pages.
    for n in range(40):
        for name in (f"_etcd-d{n:02}._tcp.{stack.domain}.", f"_etcd-server-a{n:02}._tcp.{stack.domain}."):
            aws.set_records(stack.zone_id, name, "TXT", 60, [f'"filler {n}"'])
    for size in (3, 5, 2):
        stack.scale(size)
        aws.clock.run()
        in_service = stack.in_service()
        assert len(in_service) == size
        want = set(stack.private_dns(in_service).values())
        records = aws.records(stack.zone_id)
        for name in KEPT:
            ttl, values = records[(f"{name}.{stack.domain}.", "SRV")]
            assert peer_targets(RecordSet.of(name, "SRV", ttl, values)) == want, name
    pages = [c for c in aws.calls if c.operation == "ListResourceRecordSets" and c.params.get("StartRecordName")]
    assert any(p.params.get("StartRecordName", "").startswith("_etcd-d") for p in pages)  # a second page was read
