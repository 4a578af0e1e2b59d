"""Strict Route 53 on top of moto: atomic compare-and-swap change batches, real change ids and propagation.

moto applies ``ChangeResourceRecordSets`` change by change, checks ``DELETE`` against its journal
instead of the current record sets, lets ``CREATE`` add a second record set under an existing name,
answers every ``GetChange`` with ``INSYNC`` under one fixed id and sorts ``ListResourceRecordSets``
without the trailing dot AWS sorts by. ``install()`` replaces those few methods of moto's Route 53
response class and zone model; everything else stays moto's.

Example:
    >>> from infra.local import LocalAWS, SimClock
    >>> with LocalAWS(SimClock(), propagation=30.0) as aws:
    ...     zone = aws.create_zone("example.com")
    ...     r53 = aws.client("route53")
    ...     info = r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [...]})
    ...     aws.clock.advance(30)  # now GetChange answers INSYNC
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import math
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.core.responses import ActionResult
from moto.route53.exceptions import DnsNameInvalidForZone, InvalidActionValue
from moto.route53.exceptions import InvalidChangeBatch as TooManyRecords
from moto.route53.models import FakeZone, RecordSet, route53_backends
from moto.route53.responses import Route53
from moto.route53.utils import validate_domain_name

from infra.local import state
from infra.local.account import Account
from infra.local.faults import EmulatedError

# (name, type) -> (ttl, sorted values): what a test compares record content with.
Records = dict[tuple[str, str], tuple[int | None, tuple[str, ...]]]

PRIOR_REQUEST_MESSAGE = "The request was rejected because Route 53 was still processing a prior request."
MAX_RECORDS_PER_BATCH = 1000  # UPSERT counts twice (Route 53 quotas)
_ID_ALPHABET = string.ascii_uppercase + string.digits


@dataclass
class ChangeRecord:
    """One accepted ``ChangeResourceRecordSets`` call, as the emulator applied it."""

    id: str  # "/change/C..."
    zone_id: str  # bare id, "Z..."
    submitted_at: float
    insync_at: float
    changes: list[dict[str, Any]]  # the batch as sent
    records_after: Records
    comment: str | None = None

    def status(self, now: float) -> str:
        return "INSYNC" if now >= self.insync_at else "PENDING"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "zone_id": self.zone_id,
            "submitted_at": self.submitted_at,
            "insync_at": self.insync_at,
            "changes": self.changes,
            "records_after": [
                {"name": name, "type": rtype, "ttl": ttl, "values": list(values)}
                for (name, rtype), (ttl, values) in sorted(self.records_after.items())
            ],
            "comment": self.comment,
        }


@dataclass
class Route53State:
    """Per-``LocalAWS`` Route 53 state the patched methods keep."""

    changes: list[ChangeRecord] = field(default_factory=list)
    by_id: dict[str, ChangeRecord] = field(default_factory=dict)
    # ids moto hands out for zone operations (CreateHostedZone...): INSYNC at once.
    instant_ids: set[str] = field(default_factory=set)


# -- names, keys, values ------------------------------------------------------------------
def normalize_name(name: str) -> str:
    """Route 53 answers names in lower case with a trailing dot."""
    name = name.lower()
    return name if name.endswith(".") else name + "."


def sort_key(name: str, rtype: str) -> tuple[str, str]:
    """Route 53's listing order: labels reversed *with* the trailing dot, then type (ASCII)."""
    labels = normalize_name(name).rstrip(".").split(".")
    return ".".join(reversed(labels)) + ".", rtype or ""


def bare_zone_id(zone_id: str) -> str:
    return zone_id.rsplit("/", 1)[-1]


def bare_change_id(change_id: str) -> str:
    return change_id.rsplit("/", 1)[-1]


def _values(records: list[Any] | None) -> tuple[str, ...]:
    out = []
    for value in records or []:
        while isinstance(value, dict):  # moto stores some seeded values as {"Value": ...}
            value = value.get("Value")
        out.append(str(value))
    return tuple(sorted(out))


def _ttl(ttl: Any) -> int | None:
    return None if ttl is None else int(ttl)


def _alias(alias: dict[str, Any] | None) -> tuple[str, str, bool] | None:
    if not alias:
        return None
    return (
        str(alias.get("HostedZoneId", "")),
        normalize_name(str(alias.get("DNSName", ""))),
        bool(alias.get("EvaluateTargetHealth", False)),
    )


def _key_of_change(rrset: dict[str, Any]) -> tuple[str, str, str | None]:
    return normalize_name(rrset["Name"]), rrset["Type"], rrset.get("SetIdentifier")


def _key_of_record(rrset: RecordSet) -> tuple[str, str, str | None]:
    return normalize_name(rrset.name), str(rrset.type), rrset.set_identifier


def _content_of_change(rrset: dict[str, Any]) -> tuple[Any, ...]:
    values = _values([rr.get("Value") for rr in rrset.get("ResourceRecords") or []])
    return _ttl(rrset.get("TTL")), values, _alias(rrset.get("AliasTarget")), rrset.get("Weight")


def _content_of_record(rrset: RecordSet) -> tuple[Any, ...]:
    weight = None if rrset.weight is None else int(rrset.weight)
    return _ttl(rrset.ttl), _values(rrset.records), _alias(rrset.alias_target), weight


def zone_records(zone: FakeZone) -> Records:
    """The zone's record sets now, as ``{(name, type): (ttl, sorted values)}``."""
    return {
        (normalize_name(r.name), str(r.type)): (_ttl(r.ttl), _values(r.records))
        for r in sorted(zone.rrsets, key=lambda r: sort_key(r.name, str(r.type)))
    }


def _describe(key: tuple[str, str, str | None]) -> str:
    name, rtype, set_id = key
    extra = f", set-identifier='{set_id}'" if set_id is not None else ""
    return f"[name='{name}', type='{rtype}'{extra}]"


# -- strict values (LocalAWS(route53_strict_values=...)) ---------------------------------
# Route 53 rejects a malformed value with ``InvalidChangeBatch`` and the text
# ``Invalid Resource Record: 'FATAL problem: <CODE> (<reason>) encountered with '<value>''``.
# Seen from AWS (quoted in public issues): ``ARRDATAIllegalIPv4Address (Value is not a valid IPv4
# address)`` (e.g. hashicorp/terraform-provider-aws users, zinc's presslabs/zinc error mapping) and
# ``SRVRRDATANotFourFields (SRV record doesn't have 4 fields)``
# (https://github.com/amazon-archives/service-discovery-ecs-dns/issues/23). The texts for an SRV
# number out of range and a bad SRV target are the emulator's own wording in the same envelope.
# A value listed twice in one record set: ``Duplicate Resource Record: '<value>'``
# (https://github.com/kubernetes-sigs/external-dns/issues/1929). One record set changed twice in a
# batch (other than DELETE followed by CREATE, the documented way to replace a set atomically,
# https://docs.aws.amazon.com/Route53/latest/APIReference/API_ChangeResourceRecordSets.html: "you
# cannot delete the same resource record set more than once in a single change batch"):
# ``The request contains an invalid set of changes for a resource record set '<TYPE> <name>'``
# (https://github.com/barnybug/cli53/issues/81). SRV format per RFC 2782 and
# https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/ResourceRecordTypes.html#SRVFormat
# ("priority weight port domain-name", each number 0-65535).
_LABEL = re.compile(r"^(\*|[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)$")


def _fatal(code: str, reason: str, value: str) -> str:
    return f"Invalid Resource Record: 'FATAL problem: {code} ({reason}) encountered with '{value}''"


def _host_name_ok(name: str) -> bool:
    if name == ".":
        return True  # RFC 2782: "." means the service is decidedly not available
    bare = name[:-1] if name.endswith(".") else name
    if not bare or len(bare) > 253:
        return False
    return all(_LABEL.match(label) for label in bare.split("."))


def value_errors(rtype: str, values: list[str]) -> list[str]:
    """What Route 53 says about malformed or duplicate ``values`` of one record set (empty: fine)."""
    errors: list[str] = []
    seen: set[str] = set()
    for value in values:
        if value in seen:
            errors.append(f"Duplicate Resource Record: '{value}'")
            continue
        seen.add(value)
        if rtype == "A":
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                errors.append(_fatal("ARRDATAIllegalIPv4Address", "Value is not a valid IPv4 address", value))
        elif rtype == "SRV":
            fields = value.split()
            if len(fields) != 4:
                errors.append(_fatal("SRVRRDATANotFourFields", "SRV record doesn't have 4 fields", value))
            elif not all(f.isdigit() and int(f) <= 65535 for f in fields[:3]):
                errors.append(
                    _fatal("SRVRRDATAIllegalNumber", "Priority, weight and port must be integers 0-65535", value)
                )
            elif not _host_name_ok(fields[3]):
                errors.append(_fatal("SRVRRDATAIllegalTarget", "Target is not a valid host name", value))
    return errors


def _rrset_label(key: tuple[str, str, str | None]) -> str:
    name, rtype, _ = key
    return f"{rtype} {name}"


def strict_errors(changes: list[dict[str, Any]]) -> list[str]:
    """Batch-shape and value errors that need no zone state (only checked with strict values on)."""
    errors: list[str] = []
    actions: dict[tuple[str, str, str | None], list[str]] = {}
    for change in changes:
        rrset = change["ResourceRecordSet"]
        key = _key_of_change(rrset)
        actions.setdefault(key, []).append(change["Action"])
        if change["Action"] in ("CREATE", "UPSERT"):
            values = [str(rr.get("Value")) for rr in rrset.get("ResourceRecords") or []]
            errors.extend(value_errors(rrset["Type"], values))
    for key, sequence in actions.items():
        if len(sequence) > 1 and sequence != ["DELETE", "CREATE"]:
            errors.append(
                f"The request contains an invalid set of changes for a resource record set '{_rrset_label(key)}'"
            )
    return errors


# -- propagation (LocalAWS(propagation=...)) ---------------------------------------------
Propagation = (
    float
    | tuple[float, float]
    | tuple[str, float, float]
    | tuple[str, float, float, float]
    | Callable[[random.Random], float]
)
Z_99 = 2.3263478740408408  # standard normal quantile at 0.99
DEFAULT_TAIL_CAP = 3600.0


def draw_propagation(spec: Any, rng: random.Random) -> float | None:
    """One propagation delay for the long-tail forms; ``None`` for the plain forms (``aws.propagation_delay``).

    - ``("lognormal", median, p99)`` or ``("lognormal", median, p99, cap)``: log-normal with that
      median and 99th percentile, capped at ``cap`` (default 3600 s). AWS promises only that changes
      "generally propagate to all Route 53 name servers within 60 seconds"
      (https://aws.amazon.com/route53/faqs/ and the GetChange reference,
      https://docs.aws.amazon.com/Route53/latest/APIReference/API_GetChange.html: PENDING until
      "propagated to all Amazon Route 53 DNS servers"); the tail beyond that is what a schedule
      needs, e.g. ``("lognormal", 30.0, 240.0)`` draws several minutes about once in a hundred.
    - a callable: ``fn(rng) -> seconds``, called with ``aws.rng`` (seeded).
    """
    if callable(spec):
        return max(0.0, float(spec(rng)))
    if isinstance(spec, tuple) and spec and isinstance(spec[0], str):
        kind = spec[0]
        if kind != "lognormal" or len(spec) not in (3, 4):
            raise ValueError(
                f"propagation {spec!r}: use ('lognormal', median, p99[, cap]), a number, (low, high) or fn(rng)"
            )
        median, p99 = float(spec[1]), float(spec[2])
        cap = float(spec[3]) if len(spec) == 4 else DEFAULT_TAIL_CAP
        if median <= 0 or p99 < median:
            raise ValueError(f"propagation {spec!r}: need 0 < median <= p99")
        sigma = math.log(p99 / median) / Z_99
        return min(cap, rng.lognormvariate(math.log(median), sigma))
    return None


def propagation_delay(aws: Account) -> float:
    """The propagation delay of the next change: the long-tail forms here, the plain ones by ``aws``."""
    if "propagation_delay" not in vars(aws):  # a harness may replace aws.propagation_delay: keep its draws
        drawn = draw_propagation(aws.propagation, aws.rng)
        if drawn is not None:
            return drawn
    return float(aws.propagation_delay())


# -- the change batch ---------------------------------------------------------------------
def validate_batch(zone: FakeZone, changes: list[dict[str, Any]], *, strict: bool = False) -> None:
    """Check the whole batch against the zone's *current* record sets, in order; raise on any error.

    A ``DELETE`` followed by a ``CREATE`` of the same set is a compare-and-swap: the ``DELETE``
    must name the current TTL and values exactly. Every failing change is reported, in one
    message, the way Route 53 lists them: ``[msg, msg]``. ``strict``: also malformed A/SRV values,
    duplicate values and one set changed twice (``strict_errors``).
    """
    counted = 0
    for change in changes:
        n = len(change["ResourceRecordSet"].get("ResourceRecords") or [])
        counted += 2 * n if change["Action"] == "UPSERT" else n
    if counted > MAX_RECORDS_PER_BATCH:
        raise TooManyRecords()

    state = {_key_of_record(r): _content_of_record(r) for r in zone.rrsets}
    errors: list[str] = strict_errors(changes) if strict else []
    for change in changes:
        action = change["Action"]
        if action not in ("CREATE", "UPSERT", "DELETE"):
            raise InvalidActionValue(action)
        rrset = change["ResourceRecordSet"]
        validate_domain_name(rrset["Name"], code="InvalidChangeBatch")
        if not normalize_name(rrset["Name"]).endswith(normalize_name(zone.name)):
            raise DnsNameInvalidForZone(name=rrset["Name"], zone_name=zone.name)
        key, content = _key_of_change(rrset), _content_of_change(rrset)
        if action == "CREATE":
            if key in state:
                errors.append(f"Tried to create resource record set {_describe(key)} but it already exists")
            else:
                state[key] = content
        elif action == "UPSERT":
            state[key] = content
        elif key not in state:
            errors.append(f"Tried to delete resource record set {_describe(key)} but it was not found")
        else:
            if state[key] != content:
                errors.append(
                    f"Tried to delete resource record set {_describe(key)} "
                    "but the values provided do not match the current values"
                )
            # Go on as if deleted: a failed compare-and-swap reports its DELETE, not also its CREATE.
            del state[key]
    if errors:
        raise EmulatedError("InvalidChangeBatch", "[" + ", ".join(errors) + "]")


def apply_batch(zone: FakeZone, changes: list[dict[str, Any]]) -> None:
    """Apply a validated batch to moto's zone model."""
    for change in changes:
        rrset = copy.deepcopy(change["ResourceRecordSet"])
        key = _key_of_change(rrset)
        zone.rrsets = [r for r in zone.rrsets if _key_of_record(r) != key]
        if change["Action"] in ("CREATE", "UPSERT"):
            if not rrset["Name"].endswith("."):
                rrset["Name"] += "."
            if "ResourceRecords" in rrset:
                rrset["ResourceRecords"] = [rr["Value"] for rr in rrset["ResourceRecords"]]
            zone.add_rrset(rrset)
        zone.rr_changes.append(copy.deepcopy(change))  # keep moto's journal coherent


def new_change_id(aws: Account) -> str:
    state = aws.route53_state
    while True:
        change_id = "/change/C" + "".join(aws.rng.choice(_ID_ALPHABET) for _ in range(13))
        if change_id not in state.by_id and change_id not in state.instant_ids:
            return change_id


def submit(aws: Account, zone: FakeZone, changes: list[dict[str, Any]], comment: str | None) -> ChangeRecord:
    """Validate, apply and record one change batch (the whole of ``ChangeResourceRecordSets``)."""
    now = aws.clock.now()
    zone_id = bare_zone_id(zone.id)
    with aws.lock:
        previous = next((c for c in reversed(aws.route53_changes) if c.zone_id == zone_id), None)
        if (
            previous is not None
            and aws.prior_request_window > 0
            and now - previous.submitted_at < (aws.prior_request_window)
        ):
            raise EmulatedError("PriorRequestNotComplete", PRIOR_REQUEST_MESSAGE)
        # issue 11: AWS default is strict (route53_strict_values=True)
        validate_batch(zone, changes, strict=bool(getattr(aws, "route53_strict_values", False)))
        apply_batch(zone, changes)
        insync_at = now + propagation_delay(aws)
        if previous is not None:
            insync_at = max(insync_at, previous.insync_at)  # a zone propagates its changes in order
        record = ChangeRecord(
            id=new_change_id(aws),
            zone_id=zone_id,
            submitted_at=now,
            insync_at=insync_at,
            changes=copy.deepcopy(changes),
            records_after=zone_records(zone),
            comment=comment,
        )
        aws.route53_changes.append(record)
        aws.route53_state.by_id[record.id] = record
    return record


def _timestamp(t: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t, tz=datetime.UTC)


def _change_info(record: ChangeRecord, now: float) -> dict[str, Any]:
    info: dict[str, Any] = {
        "Id": record.id,
        "Status": record.status(now),
        "SubmittedAt": _timestamp(record.submitted_at),
    }
    if record.comment:
        info["Comment"] = record.comment
    return info


# -- patched moto methods -----------------------------------------------------------------
_ORIGINAL: dict[str, Any] = {}


def _change_resource_record_sets(self: Route53) -> Any:
    aws = state.running()
    if aws is None:
        return _ORIGINAL["change_resource_record_sets"](self)
    zone = self.backend.get_hosted_zone(self._get_param("HostedZoneId"))
    changes = self._get_param("ChangeBatch.Changes") or []
    record = submit(aws, zone, changes, self._get_param("ChangeBatch.Comment"))
    return ActionResult({"ChangeInfo": _change_info(record, aws.clock.now())})


def _get_change(self: Route53) -> Any:
    aws = state.running()
    if aws is None:
        return _ORIGINAL["get_change"](self)
    change_id = "/change/" + bare_change_id(self._get_param("Id"))
    record = aws.route53_state.by_id.get(change_id)
    if record is not None:
        return ActionResult({"ChangeInfo": _change_info(record, aws.clock.now())})
    if change_id in aws.route53_state.instant_ids:
        return ActionResult(
            {"ChangeInfo": {"Id": change_id, "Status": "INSYNC", "SubmittedAt": _timestamp(aws.clock.now())}}
        )
    raise EmulatedError(
        "NoSuchChange", f"A change with the specified change ID {bare_change_id(change_id)} does not exist."
    )


def _zone_operation(name: str) -> Any:
    """Wrap a zone operation whose ``ChangeInfo`` moto fills with a fixed id: give it a fresh one."""

    def operation(self: Route53) -> Any:
        result = _ORIGINAL[name](self)
        aws = state.running()
        info = getattr(result, "result", None)
        if aws is not None and isinstance(info, dict) and isinstance(info.get("ChangeInfo"), dict):
            with aws.lock:
                change_id = new_change_id(aws)
                aws.route53_state.instant_ids.add(change_id)
            info["ChangeInfo"] = {**info["ChangeInfo"], "Id": change_id, "SubmittedAt": _timestamp(aws.clock.now())}
        return result

    operation.__name__ = name
    return operation


def _get_record_sets(self: FakeZone, start_type: str, start_name: str) -> list[RecordSet]:
    ordered = sorted(self.rrsets, key=lambda r: sort_key(r.name, str(r.type)))
    if not start_name:
        return ordered
    start = sort_key(start_name, start_type or "")
    return [r for r in ordered if sort_key(r.name, str(r.type)) >= start]


def install() -> None:
    """Patch moto's Route 53 (idempotent; the patches fall back to moto when no LocalAWS runs)."""
    if _ORIGINAL:
        return
    _ORIGINAL["change_resource_record_sets"] = Route53.change_resource_record_sets
    _ORIGINAL["get_change"] = Route53.get_change
    _ORIGINAL["get_record_sets"] = FakeZone.get_record_sets
    Route53.change_resource_record_sets = _change_resource_record_sets  # type: ignore[method-assign]
    Route53.get_change = _get_change  # type: ignore[method-assign]
    for name in ("create_hosted_zone", "delete_hosted_zone"):
        _ORIGINAL[name] = getattr(Route53, name)
        setattr(Route53, name, _zone_operation(name))
    FakeZone.get_record_sets = _get_record_sets  # type: ignore[method-assign,assignment]


def backend(aws: Account) -> Any:
    return route53_backends[aws.account]["aws"]


def record_change(action: str, name: str, rtype: str, values: list[str], ttl: int = 60) -> dict[str, Any]:
    """One ``Changes`` entry for ``ChangeResourceRecordSets`` (test and demo helper).

    Example:
        >>> record_change("CREATE", "_etcd-server._tcp.example.com.", "SRV", ["0 0 2380 a.example.com."])["Action"]
        'CREATE'
    """
    return {
        "Action": action,
        "ResourceRecordSet": {
            "Name": name,
            "Type": rtype,
            "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in values],
        },
    }
