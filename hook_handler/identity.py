"""The cluster's identity, kept durably beside its record: whether a cluster has existed for this record, which one
(etcd's cluster ID), and whose instances its voters are. Pure: parsing, formatting and the rules that read it.

It is one TXT record set, ``_etcd-asg-cluster.<peer SRV name>`` (Route 53 lists it right beside the SRV record, so
the pass's one read page holds both), written by compare-and-swap like the record:

* ``founding`` in the same change that publishes a new cluster's founding record;
* ``running`` (cluster ID and voters) once a pass sees that cluster with a leader;
* before every step that changes the voters (a voter's ``member remove``, a ``member add`` without learners, a
  learner's promotion), the configurations before *and* after the step, so the voters etcd has are always one of
  the listed configurations, whatever step a killed pass stopped at; a later write keeps only the current one.

Why it exists: a pass that sees no member answer and nothing in service cannot tell "never founded" from "every
member is gone" — founding again over a lost cluster would start an empty one while its data may live on (a member
that comes back, a snapshot). With the identity, no pass founds a cluster once one has existed, except a recorded
restore; and disaster recovery acts only when quorum is lost *for good*: in every listed configuration fewer than a
quorum of the voters have an instance EC2 does not report terminated (``lost_for_good``).

A record that does not parse counts as a cluster that existed, with voters unknown: never founded over, never
recovered automatically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

IDENTITY_LABEL = "_etcd-asg-cluster"
IDENTITY_TTL = 300
UNKNOWN_VOTER = "?"  # prefix of a voter whose instance is not known (``?<member hex id>``): counted alive
_VERSION = "etcd-asg-cluster=1"
_MAX_STRING = 255  # Route 53: each TXT character-string is at most 255 characters
EC2_ENDED = frozenset({"shutting-down", "terminated"})  # an instance in these states never runs etcd again


def identity_name(srv_fqdn: str) -> str:
    """The identity record's name beside the peer SRV record ``srv_fqdn``.

    >>> identity_name("_etcd-server-ssl._tcp.example.com.")
    '_etcd-asg-cluster._etcd-server-ssl._tcp.example.com.'
    """
    return f"{IDENTITY_LABEL}.{srv_fqdn}"


class ClusterState(StrEnum):
    FOUNDING = "founding"  # the founding record is published; no founder seen with a leader yet
    RUNNING = "running"  # the cluster ``cluster_id`` answered with a leader
    RESTORING = "restoring"  # ``seed`` is told to restore ``snapshot`` as a one-member cluster (token ``token``)


class IdentityError(ValueError):
    """An identity record that does not parse."""


@dataclass(frozen=True)
class ClusterIdentity:
    """What the identity record says. ``configs``: the voter configurations etcd may have right now (instance ids,
    ``UNKNOWN_VOTER`` for a voter whose instance is not known), usually one; two around a voter change."""

    state: ClusterState
    since: float
    cluster_id: str = ""  # hex, as etcdctl prints it
    configs: tuple[frozenset[str], ...] = ()
    snapshot: str = ""
    token: str = ""
    seed: str = ""
    readable: bool = True

    @property
    def existed(self) -> bool:
        """A cluster has run for this record (or may have): founding another would split or lose data."""
        return self.state is not ClusterState.FOUNDING

    def strings(self) -> list[str]:
        """The TXT record's character-strings, each within Route 53's 255 characters."""
        out = [_VERSION, f"state={self.state.value}", f"since={_stamp(self.since)}"]
        out += [f"{k}={v}" for k, v in (("cluster", self.cluster_id), ("snapshot", self.snapshot)) if v]
        out += [f"{k}={v}" for k, v in (("token", self.token), ("seed", self.seed)) if v]
        for n, config in enumerate(self.configs):
            out += _chunks(f"voters{n}=", sorted(config))
        too_long = [s for s in out if len(s) > _MAX_STRING]
        if too_long:
            raise IdentityError(f"identity value too long for a TXT string: {too_long[0][:60]}...")
        return out

    def value(self) -> str:
        """The one TXT value Route 53 stores: the strings, quoted."""
        return " ".join(f'"{s}"' for s in self.strings())


def parse(values: Iterable[str], now: float) -> ClusterIdentity:
    """The identity a record set's values say; one that does not parse counts as a cluster that existed.

    >>> i = ClusterIdentity(ClusterState.RUNNING, 0.0, "d1cf", (frozenset({"i-1", "i-2"}),))
    >>> parse([i.value()], 5.0) == i
    True
    >>> parse(['"hello"'], 5.0).existed, parse(['"hello"'], 5.0).readable
    (True, False)
    """
    try:
        return _parse(" ".join(values))
    except (IdentityError, ValueError):
        unknown = (frozenset({UNKNOWN_VOTER + "unreadable"}),)
        return ClusterIdentity(ClusterState.RUNNING, now, configs=unknown, readable=False)


def _parse(text: str) -> ClusterIdentity:
    strings = [s for s in _quoted(text)]
    if not strings or strings[0] != _VERSION:
        raise IdentityError(f"not an identity record (first string {strings[:1]})")
    fields: dict[str, str] = {}
    voters: dict[int, set[str]] = {}
    for s in strings[1:]:
        key, sep, val = s.partition("=")
        if not sep:
            raise IdentityError(f"string without '=': {s!r}")
        if key.startswith("voters") and key[6:].isdigit():
            voters.setdefault(int(key[6:]), set()).update(v for v in val.split(",") if v)
        else:
            fields[key] = val
    return ClusterIdentity(
        state=ClusterState(fields["state"]),
        since=datetime.strptime(fields["since"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp(),
        cluster_id=fields.get("cluster", ""),
        configs=tuple(frozenset(voters[n]) for n in sorted(voters)),
        snapshot=fields.get("snapshot", ""),
        token=fields.get("token", ""),
        seed=fields.get("seed", ""),
    )


def _quoted(text: str) -> list[str]:
    parts = text.split('"')
    if len(parts) % 2 == 0 or any(p.strip() for p in parts[0::2]):
        raise IdentityError(f"not a list of quoted strings: {text[:80]!r}")
    return parts[1::2]


def _chunks(prefix: str, items: list[str]) -> list[str]:
    """``prefix`` + comma-separated items, split across strings of at most 255 characters."""
    out: list[str] = []
    current: list[str] = []
    for item in items:
        if current and len(prefix) + len(",".join([*current, item])) > _MAX_STRING:
            out.append(prefix + ",".join(current))
            current = []
        current.append(item)
    out.append(prefix + ",".join(current))
    return out


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the rules --------------------------------------------------------------------------------------------------------
def founding_allowed(identity: ClusterIdentity | None) -> bool:
    """A new, empty cluster may be founded only where none has existed (no identity, or a founding that never ran)."""
    return identity is None or not identity.existed


def covering(before: ClusterIdentity, current: frozenset[str], after: frozenset[str]) -> ClusterIdentity | None:
    """The identity to write before a step that takes the voters from ``current`` to ``after`` (None: the record
    already says so). Only adds, and ``after`` goes last: whatever step a pass is killed at — and whatever a stale
    member list said — etcd's voters stay a listed configuration, and the last one is the newest step's target.

    >>> a, b, c = frozenset({"i-1", "i-2"}), frozenset({"i-1"}), frozenset({"i-2"})
    >>> covering(ClusterIdentity(ClusterState.RUNNING, 0.0, "c", (a,)), a, b).configs == (a, b)
    True
    >>> covering(ClusterIdentity(ClusterState.RUNNING, 0.0, "c", (a, b)), a, c).configs == (a, b, c)
    True
    """
    configs = [c for c in before.configs if c != after]
    if current not in configs:
        configs.append(current)
    configs.append(after)
    if tuple(configs) == before.configs:
        return None
    return replace(before, configs=tuple(configs))


def seen(
    before: ClusterIdentity | None,
    cluster_id: str,
    voters: frozenset[str],
    now: float,
    proven: frozenset[str] | None = None,
) -> ClusterIdentity:
    """The identity once a pass has seen the cluster ``cluster_id`` with a leader and these voters.

    A cluster not named yet (a founding, another cluster, or one from before identities) is named with the voters
    seen. Otherwise configurations are dropped only on etcd's own answer to the pass's last voter change
    (``proven``: the member list a ``member remove``/``promote`` returns, from the member that applied it) when it
    is the last configuration listed — the newest step's target: that step happened, the older ones are history.
    A member list that lags may show any older configuration, so a look alone never drops one; voters seen that
    are not listed (a change made by hand) are added, at the front.

    >>> a, b = frozenset({"i-1", "i-2"}), frozenset({"i-1"})
    >>> i = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", (a, b))
    >>> seen(i, "c", b, 1.0).configs == (a, b), seen(i, "c", b, 1.0, proven=b).configs == (b,)
    (True, True)
    """
    if before is None or not before.existed or before.cluster_id != cluster_id:
        return ClusterIdentity(ClusterState.RUNNING, now, cluster_id, (voters,))
    if proven is not None and before.configs and before.configs[-1] == proven:
        before = replace(before, configs=(proven,), readable=True)
    if voters in before.configs:
        return before
    return replace(before, configs=(voters, *before.configs))


def quorum(n: int) -> int:
    return n // 2 + 1


@dataclass(frozen=True)
class Loss:
    """Quorum lost for good: in every configuration, fewer than a quorum of the voters' instances still run."""

    alive: tuple[str, ...]  # voters' instances EC2 does not report ended: the survivors
    why: str


def lost_for_good(identity: ClusterIdentity | None, ec2_states: Mapping[str, str | None]) -> Loss | None:
    """Whether the cluster the identity names has lost quorum for good, from EC2 alone: in every listed
    configuration, fewer than a quorum of its voters have an instance EC2 does not report ``shutting-down`` or
    ``terminated`` (absent from ``ec2_states``, or ``None``: EC2 no longer describes it — long terminated). An
    unknown voter counts alive. None: not proven (or no cluster existed).

    >>> i = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", (frozenset({"i-1", "i-2", "i-3"}),))
    >>> lost_for_good(i, {"i-1": "running", "i-2": "terminated"}).alive
    ('i-1',)
    >>> lost_for_good(i, {"i-1": "running", "i-2": "running"}) is None
    True
    """
    if identity is None or not identity.existed or not identity.configs:
        return None
    survivors: set[str] = set()
    for config in identity.configs:
        alive = {v for v in config if v.startswith(UNKNOWN_VOTER) or ec2_states.get(v) not in (None, *EC2_ENDED)}
        if len(alive) >= quorum(len(config)):
            return None
        survivors |= {v for v in alive if not v.startswith(UNKNOWN_VOTER)}
    sizes = "/".join(str(len(c)) for c in identity.configs)
    return Loss(tuple(sorted(survivors)), f"{len(survivors)} of {sizes} voters' instances still run")


def voter_instances(identity: ClusterIdentity | None) -> set[str]:
    """Every instance id the identity lists as a voter (to describe in EC2)."""
    if identity is None:
        return set()
    return {v for c in identity.configs for v in c if not v.startswith(UNKNOWN_VOTER)}
