"""The cluster's identity, kept durably beside its record: whether a cluster has existed for this record, which one
(etcd's cluster ID), and whose instances its voters are. Pure: parsing, formatting and the rules that read it.

It is one TXT record set, ``_etcd-asg-cluster.<peer SRV name>`` (Route 53 lists it right beside the SRV record, so
the pass's one read page holds both), written by compare-and-swap like the record:

* ``founding`` in the same change that publishes a new cluster's founding record;
* ``running`` (cluster ID and voters) once a pass sees that cluster with a leader;
* before every step that changes the voters (a voter's ``member remove``, a ``member add`` without learners, a
  learner's promotion), the instance the step changes is listed as *moving*, with the time.

etcd changes its voters one member at a time, each step relative to whatever the voters are when etcd applies it.
So the record never states a configuration it merely saw (a member list may lag, and two passes' steps may
interleave): it states ``voters`` as last *proven* and the set of ``moving`` instances whose membership a step may
have changed since. etcd's voters are always ``voters`` with any of the moving instances in or out; a step's own
answer from etcd (the member list after it) proves it and drops its instance from the moving set, and an entry older
than any pass and any proposal can live (``SETTLE_SECONDS``) is settled by a look that sees a leader.

Why it exists: a pass that sees no member answer and nothing in service cannot tell "never founded" from "every
member is gone" — founding again over a lost cluster would start an empty one while its data may live on (a member
that comes back, a snapshot). With the identity, no pass founds a cluster once one has existed, except a recorded
restore; and disaster recovery acts only when quorum is lost *for good*: in every configuration the record allows,
fewer than a quorum of the voters have an instance EC2 does not report terminated (``lost_for_good``).

A record that does not parse counts as a cluster that existed, with voters unknown: never founded over, never
recovered automatically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

IDENTITY_LABEL = "_etcd-asg-cluster"
IDENTITY_TTL = 300
UNKNOWN_VOTER = "?"  # prefix of a voter whose instance is not known (``?<member hex id>``): counted alive
_VERSION = "etcd-asg-cluster=1"
_MAX_STRING = 255  # Route 53: each TXT character-string is at most 255 characters ...
_MAX_VALUE = 4000  # ... and a value at most 4,000 characters
EC2_ENDED = frozenset({"shutting-down", "terminated"})  # an instance in these states never runs etcd again
# How long a moving entry may stand for a step still in flight: a pass runs at most 900 s (Lambda's limit) after it
# wrote the entry, and a proposal etcd accepted is committed or dropped for good by the time a leader with a quorum
# is seen after that (a new leader commits its log's tail or overwrites it; check-quorum deposes a cut-off one).
SETTLE_SECONDS = 1200.0


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
    """An identity record that does not parse, or one too large for a TXT value."""


@dataclass(frozen=True)
class ClusterIdentity:
    """What the identity record says. ``voters``: etcd's voters as last proven (instance ids; ``UNKNOWN_VOTER`` for
    a voter whose instance is not known). ``moving``: instance -> when a step that may add or remove it as a voter
    was about to be sent; etcd's voters are ``voters`` with any moving instance in or out."""

    state: ClusterState
    since: float
    cluster_id: str = ""  # hex, as etcdctl prints it
    voters: frozenset[str] = frozenset()
    moving: Mapping[str, float] = field(default_factory=dict)
    snapshot: str = ""
    token: str = ""
    seed: str = ""
    readable: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "moving", dict(sorted(self.moving.items())))

    def __hash__(self) -> int:
        return hash((self.state, self.since, self.cluster_id, self.voters, tuple(self.moving.items())))

    @property
    def existed(self) -> bool:
        """A cluster has run for this record (or may have): founding another would split or lose data."""
        return self.state is not ClusterState.FOUNDING

    @property
    def settled(self) -> frozenset[str]:
        """The voters no step in flight can change."""
        return self.voters - set(self.moving)

    def strings(self) -> list[str]:
        """The TXT record's character-strings, each within Route 53's 255 characters (IdentityError: too large)."""
        out = [_VERSION, f"state={self.state.value}", f"since={_stamp(self.since)}"]
        out += [f"{k}={v}" for k, v in (("cluster", self.cluster_id), ("snapshot", self.snapshot)) if v]
        out += [f"{k}={v}" for k, v in (("token", self.token), ("seed", self.seed)) if v]
        out += _chunks("voters=", sorted(self.voters))
        if self.moving:
            out += _chunks("moving=", [f"{i}@{int(t)}" for i, t in self.moving.items()])
        too_long = [s for s in out if len(s) > _MAX_STRING]
        if too_long:
            raise IdentityError(f"identity value too long for a TXT string: {too_long[0][:60]}...")
        if sum(len(s) + 3 for s in out) > _MAX_VALUE:
            raise IdentityError(f"identity record over Route 53's {_MAX_VALUE} characters ({len(self.voters)} voters)")
        return out

    def value(self) -> str:
        """The one TXT value Route 53 stores: the strings, quoted."""
        return " ".join(f'"{s}"' for s in self.strings())


def parse(values: Iterable[str], now: float) -> ClusterIdentity:
    """The identity a record set's values say; one that does not parse counts as a cluster that existed.

    >>> i = ClusterIdentity(ClusterState.RUNNING, 0.0, "d1cf", frozenset({"i-1", "i-2"}), {"i-3": 60.0})
    >>> parse([i.value()], 5.0) == i
    True
    >>> parse(['"hello"'], 5.0).existed, parse(['"hello"'], 5.0).readable
    (True, False)
    """
    try:
        return _parse(" ".join(values))
    except (IdentityError, ValueError, KeyError):
        unknown = frozenset({UNKNOWN_VOTER + "unreadable"})
        return ClusterIdentity(ClusterState.RUNNING, now, voters=unknown, readable=False)


def _parse(text: str) -> ClusterIdentity:
    strings = [s for s in _quoted(text)]
    if not strings or strings[0] != _VERSION:
        raise IdentityError(f"not an identity record (first string {strings[:1]})")
    fields: dict[str, str] = {}
    voters: set[str] = set()
    moving: dict[str, float] = {}
    for s in strings[1:]:
        key, sep, val = s.partition("=")
        if not sep:
            raise IdentityError(f"string without '=': {s!r}")
        items = [v for v in val.split(",") if v]
        if key == "voters":
            voters.update(items)
        elif key == "moving":
            for item in items:
                iid, at, when = item.rpartition("@")
                if not at or not iid:
                    raise IdentityError(f"moving entry without a time: {item!r}")
                moving[iid] = max(moving.get(iid, 0.0), float(int(when)))
        else:
            fields[key] = val
    return ClusterIdentity(
        state=ClusterState(fields["state"]),
        since=datetime.strptime(fields["since"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp(),
        cluster_id=fields.get("cluster", ""),
        voters=frozenset(voters),
        moving=moving,
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


def covering(before: ClusterIdentity, instance: str, now: float) -> ClusterIdentity:
    """The identity to write before a step that may add or remove ``instance`` as a voter: it is moving from now.
    Nothing is assumed about what etcd's voters are right now — the step changes whatever they are by one member.
    An instance already moving gets a later time than its entry had, so a proof of the older step never matches it.

    >>> a = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", frozenset({"i-1", "i-2"}))
    >>> b = covering(a, "i-2", 60.0)
    >>> b.voters == a.voters, b.moving, sorted(b.settled), covering(b, "i-2", 60.0).moving
    (True, {'i-2': 60.0}, ['i-1'], {'i-2': 61.0})
    """
    at = now if instance not in before.moving else max(now, before.moving[instance] + 1)
    return replace(before, moving={**before.moving, instance: at})


@dataclass(frozen=True)
class Proof:
    """etcd's answer to a pass's own voter step: the voters right after it (the member list the member that applied
    it returned), for the step on ``instance`` whose moving entry says ``at``. Only a step whose pass found the
    instance not moving may prove anything: another step on it may still be in flight."""

    instance: str
    at: float
    voters: frozenset[str]


def seen(
    before: ClusterIdentity | None,
    cluster_id: str,
    looked: frozenset[str],
    now: float,
    proof: Proof | None = None,
) -> ClusterIdentity:
    """The identity once a pass has seen the cluster ``cluster_id`` with a leader and these voters (``looked``).

    A cluster not named yet (a founding, another cluster, or one from before identities) is named with the voters
    seen. Otherwise: the pass's own proof, when its moving entry is still the one the record holds, becomes the
    voters and its instance stops moving (other moving entries stay: their steps may apply later); entries older
    than ``SETTLE_SECONDS`` take what the look says; and an instance the look shows otherwise than the record says,
    without a moving entry (a member list that lags, or a change made by hand), starts moving now — a look alone never
    narrows what the record allows.

    >>> a = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", frozenset({"i-1", "i-2"}), {"i-2": 60.0})
    >>> seen(a, "c", frozenset({"i-1"}), 90.0) == a
    True
    >>> b = seen(a, "c", frozenset({"i-1"}), 90.0, Proof("i-2", 60.0, frozenset({"i-1"})))
    >>> sorted(b.voters), b.moving
    (['i-1'], {})
    >>> seen(a, "c", frozenset({"i-1"}), 60.0 + SETTLE_SECONDS).moving
    {}
    """
    if before is None or not before.existed or before.cluster_id != cluster_id:
        return ClusterIdentity(ClusterState.RUNNING, now, cluster_id, looked)
    voters, moving = set(before.voters), dict(before.moving)
    if proof is not None and moving.get(proof.instance) == proof.at:
        voters = set(proof.voters)
        del moving[proof.instance]
    for iid, at in list(moving.items()):
        if now - at >= SETTLE_SECONDS:
            voters.discard(iid)
            voters |= {iid} & looked
            del moving[iid]
    for iid in (looked ^ voters) - set(moving):
        moving[iid] = now
    new = replace(before, voters=frozenset(voters), moving=moving, readable=True)
    return before if new == before else new


def quorum(n: int) -> int:
    return n // 2 + 1


@dataclass(frozen=True)
class Loss:
    """Quorum lost for good: in every configuration, fewer than a quorum of the voters' instances still run."""

    alive: tuple[str, ...]  # voters' instances EC2 does not report ended: the survivors
    why: str


def lost_for_good(identity: ClusterIdentity | None, ec2_states: Mapping[str, str | None]) -> Loss | None:
    """Whether the cluster the identity names has lost quorum for good, from EC2 alone: in every configuration the
    record allows (the settled voters plus any of the moving instances), fewer than a quorum of the voters have an
    instance EC2 does not report ``shutting-down`` or ``terminated`` (absent from ``ec2_states``, or ``None``: EC2
    no longer describes it — long terminated). An unknown voter counts alive. None: not proven (or no cluster
    existed).

    A quorum is more alive voters than ended ones, so the best configuration for the cluster is the settled voters
    with every moving instance that still runs and none that ended: quorum is lost for good when even that one has
    no more alive than ended.

    >>> i = ClusterIdentity(ClusterState.RUNNING, 0.0, "c", frozenset({"i-1", "i-2", "i-3"}))
    >>> lost_for_good(i, {"i-1": "running", "i-2": "terminated"}).alive
    ('i-1',)
    >>> lost_for_good(i, {"i-1": "running", "i-2": "running"}) is None
    True
    """
    if identity is None or not identity.existed or not (identity.voters or identity.moving):
        return None

    def alive(iid: str) -> bool:
        return iid.startswith(UNKNOWN_VOTER) or ec2_states.get(iid) not in (None, *EC2_ENDED)

    settled = identity.settled
    up = {v for v in settled if alive(v)} | {v for v in identity.moving if alive(v)}
    ended = sum(1 for v in settled if not alive(v))
    if len(up) > ended:
        return None
    survivors = tuple(sorted(v for v in up if not v.startswith(UNKNOWN_VOTER)))
    moving = f" ({len(identity.moving)} moving)" if identity.moving else ""
    return Loss(survivors, f"{len(up)} of {len(settled | set(identity.moving))} voters' instances still run{moving}")


def voter_instances(identity: ClusterIdentity | None) -> set[str]:
    """Every instance id the identity lists as a voter or moving (to describe in EC2)."""
    if identity is None:
        return set()
    return {v for v in identity.voters | set(identity.moving) if not v.startswith(UNKNOWN_VOTER)}
