"""Member certificates at the edge of a pass: made before an instance's go signal, deleted when it leaves, swept
by a reconcile (``hook_handler.certs`` makes and stores them)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from hook_handler.certs import CERT_TAG, CertificateError, member_identity
from hook_handler.coordinator.context import Services
from hook_handler.exceptions import DeadlineReached
from hook_handler.members import Instance
from hook_handler.plan import target_of

SWEEP_AGE_SECONDS = 3600.0  # a member secret younger than this is never swept (describes lag behind launches)


class Issuer:
    """Issues each admitted instance its certificate once per sandbox (a joiner waiting on its add looks every
    second: it must not be re-issued at each look)."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.issued: dict[str, str] = {}  # instance id -> its member secret's ARN, made by this sandbox

    def tag_for(self, instance: Instance) -> dict[str, str]:
        """The instance's member certificate secret, made if needed: ``{etcd-member-cert: arn}`` to write with
        (never after) its go signal; ``{}`` without member certificates or when the tag is there already."""
        certificates = self.s.certificates
        if certificates is None or CERT_TAG in instance.tags:
            return {}
        iid = instance.instance_id
        if iid not in self.issued:
            hosts = (target_of(instance, self.s.settings), instance.private_dns, instance.private_ip)
            self.issued[iid] = certificates.ensure(member_identity(iid, hosts, self.s.settings.domain_name))
            self.s.log.info("member certificate issued", extra={"instance": iid, "secret": self.issued[iid]})
        return {CERT_TAG: self.issued[iid]}

    def forget(self, instance_id: str) -> None:
        """Delete a leaving (or abandoned) instance's member secret; best-effort: the reconcile's sweep retries."""
        if self.s.certificates is None:
            return
        self.issued.pop(instance_id, None)
        try:
            if self.s.certificates.delete(instance_id):
                self.s.log.info("member certificate deleted", extra={"instance": instance_id})
        except CertificateError as exc:
            self.s.log.warning("member certificate not deleted", extra={"instance": instance_id, "error": str(exc)})

    def sweep(self, deadline: float) -> None:
        """A reconcile deletes the member secrets of instances EC2 no longer runs (a deletion that failed, an
        instance that died before its termination completed). Only secrets older than ``SWEEP_AGE_SECONDS``:
        DescribeInstances is eventually consistent and may not show an instance launched a moment ago."""
        if self.s.certificates is None:
            return
        try:
            owners = self.s.certificates.owners()
            old = {iid for iid, created in owners.items() if self.s.clock.now() - created > SWEEP_AGE_SECONDS}
            found = self.s.asg.describe_instances(old, deadline) if old else {}
        except (CertificateError, ClientError, DeadlineReached) as exc:
            self.s.log.warning("member certificates not swept", extra={"error": str(exc)})
            return
        for iid in sorted(old):
            inst = found.get(iid)
            if inst is None or inst.ec2_state in ("terminated", "shutting-down"):
                self.forget(iid)
