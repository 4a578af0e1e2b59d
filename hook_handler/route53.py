"""Route 53 at the edge: read the coordinator's record sets, apply a compare-and-swap batch,
wait for INSYNC.

The read is one ``ListResourceRecordSets`` page in the common case: the coordinator's names sit
together in Route 53's order (labels reversed), so the scan starts at the first and stops after
the last. The write is one ``ChangeResourceRecordSets`` whose DELETEs name the values read, so a
concurrent writer makes it fail with ``InvalidChangeBatch`` instead of being overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from hook_handler.clock import Clock
from hook_handler.exceptions import DeadlineReached
from hook_handler.plan import Key, RecordSet
from hook_handler.retry import RetryPolicy, error_code
from hook_handler.srv import absolute


def route53_order(name: str) -> str:
    """Sort key Route 53 uses for names: labels reversed, trailing dot included
    (``www.example.com.`` → ``com.example.www.``). The dot matters: ``-`` sorts before ``.``, so
    ``_etcd-server-ssl._tcp`` comes *before* ``_etcd-server._tcp``.

    >>> route53_order("_etcd-server._tcp.example.com.")
    'com.example._tcp._etcd-server.'
    >>> route53_order("_etcd-server-ssl._tcp.example.com") < route53_order("_etcd-server._tcp.example.com")
    True
    """
    return ".".join(reversed(absolute(name).rstrip(".").split("."))) + "."


class Conflict(Exception):
    """The batch's DELETE no longer matched (someone changed the records): re-read and re-plan."""


@dataclass(frozen=True)
class Change:
    """A submitted change: its id and when it was sent."""

    id: str
    submitted_at: float


class Route53:
    """The hosted zone's records, through a boto3 ``route53`` client.

    Example:
        >>> # zone = Route53(boto3.client("route53"), "Z123", retry, clock)
        >>> # records = zone.read({("_etcd-server._tcp.example.com.", "SRV")}, deadline)
    """

    def __init__(self, client: Any, zone_id: str, retry: RetryPolicy, clock: Clock) -> None:
        self.client = client
        self.zone_id = zone_id
        self.retry = retry
        self.clock = clock

    def read(self, keys: Iterable[Key], deadline: float) -> dict[Key, RecordSet]:
        """The current record sets among ``keys`` (absent sets are absent from the result)."""
        wanted = {(absolute(n), t) for n, t in keys}
        if not wanted:
            return {}
        ordered = sorted(wanted, key=lambda k: (route53_order(k[0]), k[1]))
        last = route53_order(ordered[-1][0])
        found: dict[Key, RecordSet] = {}
        params: dict[str, Any] = {
            "HostedZoneId": self.zone_id,
            "StartRecordName": ordered[0][0],
            "StartRecordType": ordered[0][1],
            "MaxItems": str(max(10, min(300, 2 * len(wanted)))),
        }
        while True:
            page = self._call(self.client.list_resource_record_sets, deadline, "ListResourceRecordSets", **params)
            past_end = False
            for rrs in page.get("ResourceRecordSets", []):
                key = (absolute(rrs["Name"]), rrs["Type"])
                if route53_order(key[0]) > last:
                    past_end = True
                    break
                if key in wanted and "ResourceRecords" in rrs:
                    found[key] = RecordSet.of(key[0], key[1], int(rrs.get("TTL", 0)), _values(rrs))
            if past_end or not page.get("IsTruncated"):
                return found
            params["StartRecordName"] = page["NextRecordName"]
            params["StartRecordType"] = page.get("NextRecordType", "A")

    def apply(self, changes: Iterable[Mapping[str, Any]], comment: str, deadline: float) -> Change:
        """Submit one atomic batch. Raises ``Conflict`` when the DELETEs no longer match."""
        batch = {"Comment": comment[:256], "Changes": list(changes)}
        try:
            out = self._call(
                self.client.change_resource_record_sets,
                deadline,
                "ChangeResourceRecordSets",
                HostedZoneId=self.zone_id,
                ChangeBatch=batch,
            )
        except ClientError as exc:
            if error_code(exc) == "InvalidChangeBatch" and _is_conflict(str(exc)):
                raise Conflict(str(exc)) from exc
            raise  # a malformed value, a duplicate, a set changed twice: final, and loud
        info = out["ChangeInfo"]
        return Change(id=info["Id"], submitted_at=self.clock.now())

    def status(self, change_id: str, deadline: float) -> str:
        out = self._call(self.client.get_change, deadline, "GetChange", Id=change_id)
        return str(out["ChangeInfo"]["Status"])

    def wait_insync(
        self,
        change_id: str,
        *,
        deadline: float,
        initial_delay: float,
        interval: float,
        while_waiting: Callable[[], None] | None = None,
    ) -> float:
        """Poll ``GetChange`` until INSYNC; return the seconds waited.

        The first poll comes after ``initial_delay``, then one every ``interval`` seconds, so the
        time between propagation and the answer is on average half an interval, and one waiting
        invocation sends at most ``1/interval`` requests a second. ``while_waiting`` runs between
        polls (heartbeats). Raises ``DeadlineReached`` when the next poll would pass ``deadline``.
        """
        start = self.clock.now()
        pause = initial_delay
        while True:
            if self.clock.now() + pause >= deadline:
                raise DeadlineReached(f"change {change_id} not INSYNC after {self.clock.now() - start:.1f}s")
            self.clock.sleep(pause)
            if while_waiting is not None:
                while_waiting()
            if self.status(change_id, deadline) == "INSYNC":
                return self.clock.now() - start
            pause = interval

    def _call(self, fn: Callable[..., Any], deadline: float, what: str, **kwargs: Any) -> Any:
        return self.retry.call(fn, deadline=deadline, what=what, **kwargs)


# The compare-and-swap's own failures: someone changed the record between our read and our write.
_CONFLICTS = ("but it was not found", "but the values provided do not match", "but it already exists")


def _is_conflict(message: str) -> bool:
    """True when an ``InvalidChangeBatch`` says the record changed under us (re-read and re-plan), not that
    the batch itself is wrong (malformed or duplicate values, one set changed twice).

    >>> _is_conflict("[Tried to create resource record set [name='a.', type='SRV'] but it already exists]")
    True
    >>> _is_conflict("[Duplicate Resource Record: '0 0 2380 a.example.com.']")
    False
    """
    return any(text in message for text in _CONFLICTS)


def _values(rrs: Mapping[str, Any]) -> list[str]:
    return [r["Value"] for r in rrs.get("ResourceRecords", [])]
