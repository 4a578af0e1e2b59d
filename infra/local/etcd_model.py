"""A deterministic model of etcd 3.5.1 processes and clusters on a clock, answering etcd's v3 JSON gateway.

``EtcdModel`` keeps, per instance, one etcd process (its data dir, name, peer and client URL, whether it runs)
and, per cluster ID, the replicated state (members, leader, term, raft index, keys). ``model.transport()``
implements ``hook_handler.etcd.Transport`` for every client URL of the model, with the JSON shapes and error
strings real etcd 3.5.1 answers (captured from the real binary on loopback, see
``tests/e2e/test_etcd_model_matches_real.py``). On a ``SimClock`` a request that waits (no leader) sleeps the
caller, so deadline logic runs as it would against real etcd.

Example:
    >>> from infra.local.clock import SimClock
    >>> clock = SimClock()
    >>> model = EtcdModel(clock, seed=1)
    >>> hosts = {f"n{i}": f"10.0.0.{i}" for i in (1, 2, 3)}
    >>> srv = Discovery(targets=[(h, 2380) for h in hosts], resolver=hosts)
    >>> for host, ip in hosts.items():
    ...     model.start(host, name=host, ip=ip, peer_url=f"http://{host}:2380", discovery=srv, cluster_state="new")
    >>> clock.advance(5)
    >>> sorted(m.name for m in model.clusters()[model.process("n1").cluster_id])
    ['n1', 'n2', 'n3']
    >>> model.transport().post("http://10.0.0.1:2379", "/v3/cluster/member/add", {"peerURLs": ["http://n4:2380"]}, 5)
    Traceback (most recent call last):
    hook_handler.etcd.EtcdRefused: etcd at http://10.0.0.1:2379: etcdserver: unhealthy cluster

Rules implemented, each with where it comes from (etcd v3.5.1 source; ``server/`` is the etcd server module)
---------------------------------------------------------------------------------------------------------
IDs
  R1  A bootstrap member's ID is the first 8 bytes (big endian) of sha1(sorted peer URLs joined + token);
      ``membership/member.go: computeMemberId`` (``NewMember(name, urls, token, nil)``).
  R2  A member added at run time gets sha1(peer URLs + "" + unix seconds of now): the same URLs added twice in
      one second collide: ``etcdserver: member ID already exist`` (``v3rpc/member.go: MemberAdd`` with
      ``&now``; ``membership/cluster.go: ValidateConfigurationChange`` ErrIDExists).
  R3  The cluster ID is sha1 of the sorted member IDs, 8 bytes each, big endian
      (``membership/cluster.go: genID``, ``MemberIDs`` sorts). Members that bootstrap from different target
      sets get different cluster IDs and never talk (rafthttp rejects ``cluster ID mismatch``).
SRV discovery (first start only)
  R4  ``_etcd-server-ssl._tcp`` then ``_etcd-server._tcp`` (``embed/config.go: GetDNSClusterNames``); the
      model takes the targets the process resolves at that moment (the caller picks the record).
  R5  Each target is resolved; one that does not resolve is skipped. The target whose address:port equals the
      resolved ``--initial-advertise-peer-urls`` is named ``--name``, the others "0", "1", ... in answer order;
      peer URLs are ``http://<target>:<port>``, ``https://`` from ``_etcd-server-ssl`` (``client/pkg/srv/srv.go:
      GetCluster``, called with scheme https for etcd-server-ssl and http for etcd-server).
  R6  No target matches: exit ``cannot find local etcd member "<name>" in SRV records`` before the data dir
      is touched (``embed/config.go: PeerURLsMapAndToken``; seen: no data dir left).
  R7  No target at all: exit ``error querying DNS SRV records for _etcd-server ...`` (``srv.go``).
Bootstrap (``etcdserver/server.go: NewServer`` 3.5.1)
  R8  The data dir and ``member/snap/db`` are created before anything is validated, so a failed first start
      leaves ``member/`` without ``member/wal`` (state ``partial``); ``wal.Exist`` decides restart vs first.
  R9  ``new``: if a remote peer already lists this member with client URLs, exit ``member <id> has already
      been bootstrapped`` (``isMemberBootstrapped``); else the WAL is written and the member belongs to the
      cluster of its target set. In that member's view an unstarted founder is named by its SRV temp name
      ("0", "1", ...) and has no client URLs — and so counts as *started* (``Member.IsStarted`` is
      ``len(Name) != 0``). Seen on real etcd: ``{'name': '1', 'peerURLs': [...]}`` with no ``clientURLs``.
  R10 ``existing``: ask the other targets' ``/members`` (``GetClusterFromRemotePeers``); none answers: exit
      ``cannot fetch cluster info from peer urls: could not retrieve cluster information from the given
      URLs``. Different member counts: exit ``error validating peerURLs ...: member count is unequal``; an
      existing member whose URLs match no target: ``PeerURLs: no match found for existing member``
      (``membership/cluster.go: ValidateClusterAndAssignIDs``, URLs compared after resolving). Otherwise the
      member takes the ID of the existing member whose URLs match its own and joins (the WAL is written).
  R11 With a WAL, discovery flags are ignored and the member restarts in its cluster (``haveWAL`` case). A
      member removed while away is refused by its peers and exits (status 0) ``the member has been
      permanently removed from the cluster`` (``rafthttp/util.go: errMemberRemoved``).
  R12 No discovery flags and no WAL: ``--initial-cluster`` defaults to ``<name>=<advertise peer URLs>`` and
      the token to ``etcd-cluster`` (``etcdmain/config.go``): a one-member cluster of its own with an empty
      keyspace (``new`` is the default state). This is the rogue cluster of a naive restart.
  R13 A member publishes its name and client URLs through raft once it has a leader (``publishV3``); until
      then an added member is listed without ``name`` and ``clientURLs`` (``membersToProtoMembers``; the
      gateway omits empty fields).
Leader and quorum
  R14 A cluster has a leader only while a quorum (voters/2+1) of its voters runs; an election takes
      ``election_seconds`` (default election timeout 1 s, randomized; ``raft``); a lost quorum drops the leader
      (CheckQuorum). Without a leader: ``status`` has no ``leader`` and ``errors: ["etcdserver: no leader"]``
      (``v3rpc/maintenance.go: Status``); ``/health`` is 503 ``RAFT NO LEADER`` (``etcdhttp/metrics.go``);
      member list still answers from the local view.
  R15 Writes wait for a leader up to ReqTimeout = 5 s + 2 x election timeout = 7 s: kv put then fails
      ``context deadline exceeded`` (code 2, HTTP 500), a linearizable range ``etcdserver: request timed
      out`` (code 14) (``v3_server.go``, seen on real etcd); member add/remove wait without server deadline
      (the gateway request has none) until the client gives up (``configure``). A caller timeout shorter
      than the server's ends in ``EtcdUnavailable`` (read timeout), as ``HttpTransport`` reports it.
Reconfiguration (``--strict-reconfig-check`` on by default)
  R16 Add (voter only): ``IsReadyToAddVotingMember``: started voters >= (voters+1)/2+1, except 1 started of a
      1-member cluster; else ``etcdserver: re-configuration failed due to not enough started members``
      (code 2: ``toGRPCErrorMap`` maps it to a client-side error type, so gRPC reports Unknown).
  R17 Add (voter *and* learner): the receiving member must have been connected to every voting member for
      ``HealthInterval`` = 5 s (``server.go: mayAddMember``, ``util.go: isConnectedFullySince``; the member
      that receives the request, not the leader); else ``etcdserver: unhealthy cluster``. Connected-since
      starts when both ends run (plus ``connect_seconds``) and resets when either stops.
  R18 At apply: a peer URL already in the cluster: ``etcdserver: Peer URLs already exists``; a second
      learner: ``etcdserver: too many learner members in cluster`` (``maxLearners = 1``); unknown or removed
      ID on remove/promote: ``etcdserver: member not found``; promote of a voter: ``etcdserver: can only
      promote a learner member`` (``ValidateConfigurationChange``, ``v3rpc/util.go: toGRPCErrorMap``).
  R19 Remove of a voter: ``IsReadyToRemoveVotingMember``: started voters other than it >= quorum of the rest,
      else ``not enough started members``; a peer that is not connected is removable at once; otherwise
      the receiver's connected-for-5 s voters minus one must be >= the new quorum, else ``unhealthy
      cluster`` (``server.go: mayRemoveMember``). Learners are removed without checks.
  R20 The removed member exits ``the member has been permanently removed from the cluster`` (status 0) as
      soon as its peers refuse it (``server.go`` applyConfChange / rafthttp).
  R21 Promote: only the leader knows a learner's progress (``isLearnerReady``); a follower forwards to the
      leader, waiting up to 7 s for one (``etcdserver: no leader``). Not ready (match < 0.9 x leader's,
      ``readyPercent``): ``etcdserver: can only promote a learner member which is in sync with leader``.
      Then ``IsReadyToPromoteMember`` (learner counted as started). A forwarded refusal other than
      not-ready/not-found/not-learner is retried until 7 s: ``etcdserver: request timed out``.
      The model's learner reaches the leader's index linearly over ``catchup_seconds`` after it starts.
  R22 MoveLeader: only on the leader (``etcdserver: not leader``, ``v3rpc/maintenance.go``); the target must
      be a voting member (``etcdserver: bad leader transferee``, ``server.go: MoveLeader``); answer ``{}``.
      A graceful stop (SIGTERM) of the leader hands leadership to the longest-connected voter
      (``TransferLeadership``, ``longestConnected``); SIGKILL does not (the rest elect after a timeout).
  R23 A learner serves only Status and serializable reads: every other RPC on one — put, linearizable range,
      member list, add, remove, promote, MoveLeader — answers ``etcdserver: rpc not supported for learner``
      (``v3rpc/interceptor.go: isRPCSupportedForLearner``, ``rpctypes.ErrGPRCNotSupportedForLearner``);
      HTTP ``/version`` and ``/health`` are not gRPC and answer.

Snapshots and restore
  R24 ``POST /v3/maintenance/snapshot`` streams the member's backend as etcd does (``v3rpc/maintenance.go``): the
      database in messages of up to 32 KiB, each with ``remaining_bytes`` (left out when zero), then one message
      whose blob is the SHA-256 of the database; one JSON object a line through the gateway. A learner refuses it
      (R23). The model's database is its own format (``encode_snapshot``: the keyspace, its revision, the cluster
      and member it came from), so what is stored is the database then its 32-byte digest, as ``etcdctl
      snapshot save`` writes a real one. Through ``ModelTransport.session`` (a ``requests``-like session), the
      stream reads as ``hook_handler.backup.stream.GatewaySnapshot`` reads the real gateway.
  R25 ``restore`` is ``etcdutl snapshot restore`` into an empty data dir: the digest is checked, the member gets
      the ID of a bootstrap member (R1, ``--initial-cluster`` of this member alone with the new token), the
      cluster the ID of that one member (R3), the snapshot's keys and revision; the process then starts on it as
      a restart (R11), a one-member cluster with a leader after an election.

Simplifications: one shared replicated state per cluster ID (followers that are running and connected see
it at once; a stopped member keeps the view it had), no network partitions, no compaction,
leader steps down the moment quorum is lost (real: after an election timeout), member names of unstarted
founders are those of the first founder's view.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from hook_handler.clock import Clock
from hook_handler.etcd import EtcdRefused, EtcdUnavailable

SERVER_VERSION = "3.5.1"
CLUSTER_VERSION = "3.5.0"
DEFAULT_TOKEN = "etcd-cluster"  # etcdmain's default --initial-cluster-token
HEALTH_INTERVAL = 5.0  # server.go: HealthInterval
READY_PERCENT = 0.9  # server.go: readyPercent
ELECTION_TIMEOUT = 1.0  # --election-timeout 1000 ms
REQUEST_TIMEOUT = 5.0 + 2 * ELECTION_TIMEOUT  # ServerConfig.ReqTimeout
LEADER_POLL = 0.5  # how often a request waiting for a leader looks again while no election is pending
REMOVED = "the member has been permanently removed from the cluster"

# etcd's error strings (rpctypes/error.go; server/etcdserver/errors.go) with their gRPC code and gateway status.
ERRORS: dict[str, tuple[int, int]] = {
    "etcdserver: unhealthy cluster": (14, 503),
    "etcdserver: re-configuration failed due to not enough started members": (2, 500),
    "etcdserver: too many learner members in cluster": (9, 400),
    "etcdserver: can only promote a learner member which is in sync with leader": (9, 400),
    "etcdserver: can only promote a learner member": (9, 400),
    "etcdserver: member not found": (5, 404),
    "etcdserver: member ID already exist": (9, 400),
    "etcdserver: Peer URLs already exists": (9, 400),
    "etcdserver: given member URLs are invalid": (3, 400),
    "etcdserver: not leader": (9, 400),
    "etcdserver: bad leader transferee": (9, 400),
    "etcdserver: no leader": (14, 503),
    "etcdserver: request timed out": (14, 503),
    "etcdserver: rpc not supported for learner": (14, 503),
    "context deadline exceeded": (2, 500),
}

SNAPSHOT_MAGIC = b"etcd-model snapshot 1\n"  # the first bytes of a model snapshot's database
SNAPSHOT_CHUNK = 32 * 1024  # bytes of database per snapshot message (v3rpc/maintenance.go: snapshotSendBufferSize)
SHA_SIZE = 32
_dumps = json.dumps  # ModelSession.post takes a parameter named json, as requests does

DirState = Literal["empty", "partial", "wal"]
Status = Literal["stopped", "starting", "running", "exited"]


# -- IDs (R1-R3) ---------------------------------------------------------------------------------------
def member_id(peer_urls: Sequence[str], token: str, now: float | None = None) -> int:
    """etcd's ``computeMemberId``.

    >>> member_id(["http://n1.example.com:2380"], "tok1")
    15266092204079536164
    """
    data = "".join(sorted(peer_urls)) + token + ("" if now is None else str(int(now)))
    return int(struct.unpack(">Q", hashlib.sha1(data.encode()).digest()[:8])[0])


def cluster_id(member_ids: Sequence[int]) -> int:
    """etcd's ``RaftCluster.genID``.

    >>> cluster_id([member_id([f"http://n{i}.example.com:2380"], "tok1") for i in (1, 2, 3)])
    12829141539692158793
    """
    data = b"".join(struct.pack(">Q", i) for i in sorted(member_ids))
    return int(struct.unpack(">Q", hashlib.sha1(data).digest()[:8])[0])


def encode_snapshot(cluster: int, member: int, revision: int, kv: Mapping[bytes, KeyValue]) -> bytes:
    """The model's snapshot database (R24): a magic line, then JSON of the keyspace at ``revision`` and where it came
    from. Without the trailing digest, which ``snapshot_bytes`` and the stream add.

    >>> db = encode_snapshot(7, 9, 3, {b"k": KeyValue(b"v", 2, 3, 2)})
    >>> decode_snapshot(db + hashlib.sha256(db).digest())[1:]
    (3, {b'k': KeyValue(value=b'v', create_revision=2, mod_revision=3, version=2)})
    """
    body = {
        "cluster_id": format(cluster, "x"),
        "member_id": format(member, "x"),
        "revision": revision,
        "kvs": [
            [base64.b64encode(k).decode(), base64.b64encode(v.value).decode(), v.create_revision, v.mod_revision,
             v.version]
            for k, v in sorted(kv.items())
        ],
    }  # fmt: skip
    return SNAPSHOT_MAGIC + json.dumps(body, sort_keys=True).encode()


def decode_snapshot(snapshot: bytes) -> tuple[str, int, dict[bytes, KeyValue]]:
    """(source cluster id hex, revision, keyspace) of a model snapshot as stored (database then its SHA-256), or
    ``ValueError`` saying what is wrong with it (what ``etcdutl snapshot restore`` refuses)."""
    db, digest = snapshot[:-SHA_SIZE], snapshot[-SHA_SIZE:]
    if len(snapshot) <= SHA_SIZE or hashlib.sha256(db).digest() != digest:
        raise ValueError("snapshot file integrity check failed: the SHA-256 at its end does not match its database")
    if not db.startswith(SNAPSHOT_MAGIC):
        raise ValueError("not a snapshot of the etcd model (its database does not begin with the model's magic)")
    try:
        body = json.loads(db[len(SNAPSHOT_MAGIC) :])
        kv = {
            base64.b64decode(k): KeyValue(base64.b64decode(v), int(c), int(m), int(n)) for k, v, c, m, n in body["kvs"]
        }
        return str(body["cluster_id"]), int(body["revision"]), kv
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"the model snapshot's database does not decode ({exc})") from None


# -- state -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """One member as a cluster's membership records it."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...] = ()
    learner: bool = False
    added_at: float = 0.0

    def gateway(self) -> dict[str, Any]:
        """The member as the gateway writes it: empty fields omitted."""
        out: dict[str, Any] = {"ID": str(self.id)}
        if self.name:
            out["name"] = self.name
        out["peerURLs"] = list(self.peer_urls)
        if self.client_urls:
            out["clientURLs"] = list(self.client_urls)
        if self.learner:
            out["isLearner"] = True
        return out


@dataclass(frozen=True)
class KeyValue:
    value: bytes
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True)
class Reconfiguration:
    """One applied membership change (or publish), for invariants."""

    time: float
    cluster_id: int
    kind: Literal["bootstrap", "add", "remove", "promote", "publish"]
    member_id: int
    peer_urls: tuple[str, ...] = ()
    learner: bool = False


@dataclass
class ClusterState:
    """The replicated state of one cluster ID."""

    id: int
    members: dict[int, Member]
    removed: set[int] = field(default_factory=set)
    leader: int = 0
    term: int = 1
    index: int = 0
    revision: int = 1
    kv: dict[bytes, KeyValue] = field(default_factory=dict)
    election_at: float | None = None
    learner_up: dict[int, float] = field(default_factory=dict)  # learner id -> when it started receiving

    def voters(self) -> list[Member]:
        return [m for m in self.members.values() if not m.learner]


@dataclass
class DataDir:
    """What etcd's data dir holds: nothing, ``member/`` without a WAL (failed first start), or a WAL."""

    state: DirState = "empty"
    cluster_id: int = 0
    member_id: int = 0


@dataclass(frozen=True)
class Discovery:
    """``--discovery-srv`` as the process sees it at start: SRV targets (host, port) and host → IP; ``scheme``:
    ``https`` when the targets came from ``_etcd-server-ssl._tcp``, ``http`` from ``_etcd-server._tcp`` (R5)."""

    targets: Sequence[tuple[str, int]]
    resolver: Mapping[str, str] | Callable[[str], str | None]
    scheme: str = "http"

    def resolve(self, host: str) -> str | None:
        host = host.rstrip(".").lower()
        if _is_ip(host):
            return host
        if callable(self.resolver):
            return self.resolver(host)
        return {k.rstrip(".").lower(): v for k, v in self.resolver.items()}.get(host)


@dataclass
class Process:
    """One etcd process (one per instance id)."""

    instance_id: str
    name: str
    ip: str
    peer_url: str
    client_url: str
    data: DataDir = field(default_factory=DataDir)
    status: Status = "stopped"
    up_since: float = 0.0
    exit_reason: str = ""
    exit_code: int | None = None
    generation: int = 0
    view: dict[int, Member] = field(default_factory=dict)  # members as this process last saw them
    view_kv: dict[bytes, KeyValue] = field(default_factory=dict)
    view_revision: int = 1
    view_term: int = 0
    log: list[tuple[float, str]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def cluster_id(self) -> int:
        return self.data.cluster_id

    @property
    def member_id(self) -> int:
        return self.data.member_id


@dataclass(frozen=True)
class MemberInfo:
    """A member of a cluster, for invariants: what etcd records plus who runs it and whether it leads."""

    id: str
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    learner: bool
    started: bool  # etcd's IsStarted: has a name
    published: bool  # has client URLs: its own process published itself
    running: bool
    leader: bool
    instance_id: str | None


def _is_ip(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def _hostport(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "").lower().rstrip("."), parts.port or 2380


class EtcdModel:
    """etcd 3.5.1 processes and clusters on ``clock``. See the module docstring for the rules.

    ``start_seconds``: boot time of a process (uniform in the range, from ``random.Random(seed)``);
    ``election_seconds``: time from a quorum being up (or the leader lost) to a new leader;
    ``catchup_seconds``: time a started learner needs to reach the leader's raft index;
    ``connect_seconds``: time for two running peers to connect (rafthttp stream).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        seed: int = 0,
        start_seconds: float | tuple[float, float] = (0.5, 1.5),
        election_seconds: float | tuple[float, float] = (1.0, 2.0),
        catchup_seconds: float = 1.0,
        connect_seconds: float = 0.1,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if not hasattr(clock, "call_at"):
            raise TypeError("EtcdModel needs a clock with call_at (SimClock or WallClock)")
        self.clock = clock
        self.rng = random.Random(seed)
        self.start_seconds = start_seconds
        self.election_seconds = election_seconds
        self.catchup_seconds = catchup_seconds
        self.connect_seconds = connect_seconds
        self.request_timeout = request_timeout
        self.processes: dict[str, Process] = {}
        self.cluster_states: dict[int, ClusterState] = {}
        self.history: list[Reconfiguration] = []

    # -- processes ---------------------------------------------------------------------------------
    def start(
        self,
        instance_id: str,
        *,
        name: str,
        ip: str,
        peer_url: str,
        client_url: str | None = None,
        discovery: Discovery | None = None,
        cluster_state: Literal["new", "existing"] = "new",
        token: str = DEFAULT_TOKEN,
    ) -> Process:
        """Exec etcd for ``instance_id`` (``--name name --initial-advertise-peer-urls peer_url ...``).

        With ``discovery`` it is ``--discovery-srv`` (read now) with ``--initial-cluster-state`` and token;
        without, no discovery flags (R11, R12). The process serves after ``start_seconds`` or exits.
        """
        proc = self.processes.get(instance_id)
        if proc is None:
            proc = Process(instance_id, name, ip, peer_url, client_url or f"http://{ip}:2379")
            self.processes[instance_id] = proc
        if proc.status in ("starting", "running"):
            raise RuntimeError(f"etcd of {instance_id} is already {proc.status}")
        proc.name, proc.ip, proc.peer_url = name, ip, peer_url
        proc.client_url = client_url or f"http://{ip}:2379"
        proc.status, proc.exit_reason, proc.exit_code = "starting", "", None
        proc.generation += 1
        generation = proc.generation
        self._log(proc, f"exec ({'discovery ' + cluster_state if discovery else 'no discovery'})")
        plan = self._first_start_plan(proc, discovery, cluster_state, token)
        self.clock.call_at(
            self.clock.now() + self._draw(self.start_seconds), lambda: self._boot(proc, generation, plan)
        )
        return proc

    def kill(self, instance_id: str) -> None:
        """SIGKILL: the process is gone at once; leadership is not handed over (R22)."""
        proc = self.processes.get(instance_id)
        if proc is None or proc.status not in ("starting", "running"):
            return
        self._exit(proc, "killed (SIGKILL)", -9)

    def stop(self, instance_id: str) -> None:
        """SIGTERM: a leader hands leadership to the longest-connected voter first (R22), then exits."""
        proc = self.processes.get(instance_id)
        if proc is None or proc.status not in ("starting", "running"):
            return
        state = self.cluster_states.get(proc.cluster_id)
        if proc.running and state is not None and state.leader == proc.member_id and len(state.voters()) > 1:
            candidates = [
                (since, m.id)
                for m in state.voters()
                if m.id != proc.member_id and (since := self._active_since(proc, m.id)) is not None
            ]
            if candidates:
                self._set_leader(state, min(candidates)[1])
        self._exit(proc, "stopped (SIGTERM)", 0)

    def clear_data(self, instance_id: str) -> None:
        """``rm -rf`` the data dir (the process must not run)."""
        proc = self.processes[instance_id]
        if proc.status in ("starting", "running"):
            raise RuntimeError(f"etcd of {instance_id} is running")
        proc.data = DataDir()

    def process(self, instance_id: str) -> Process:
        return self.processes[instance_id]

    # -- snapshots (R24, R25) ------------------------------------------------------------------------
    def snapshot_bytes(self, instance_id: str) -> bytes:
        """What ``etcdctl snapshot save`` writes from this member now: its database, then the database's SHA-256."""
        proc = self.processes[instance_id]
        db = encode_snapshot(proc.cluster_id, proc.member_id, proc.view_revision, proc.view_kv)
        return db + hashlib.sha256(db).digest()

    def restore(
        self, instance_id: str, snapshot: bytes, *, name: str, ip: str, peer_url: str, token: str,
        client_url: str | None = None,
    ) -> Process:  # fmt: skip
        """``etcdutl snapshot restore`` into this instance's data dir (absent or empty), as the one member of a new
        cluster (R25): ``ValueError`` when the snapshot fails its check, the data dir is not empty, or the cluster
        it would make exists in this model already (the same token and peer URL restored twice: the start script
        never does it, see its lost-data check). Start the process after it (``start`` without discovery)."""
        proc = self.processes.get(instance_id)
        if proc is not None and proc.status in ("starting", "running"):
            raise RuntimeError(f"etcd of {instance_id} is {proc.status}")
        if proc is not None and proc.data.state != "empty":
            raise ValueError(
                f"data dir of {instance_id} is not empty ({proc.data.state}): a restore needs an empty one"
            )
        _, revision, kv = decode_snapshot(snapshot)
        mid = member_id([peer_url], token)
        cid = cluster_id([mid])
        if cid in self.cluster_states:
            raise ValueError(f"cluster {cid:x} exists already: restored twice with token {token!r} and {peer_url}")
        if proc is None:
            proc = Process(instance_id, name, ip, peer_url, client_url or f"http://{ip}:2379")
            self.processes[instance_id] = proc
        self.cluster_states[cid] = ClusterState(
            cid, {mid: Member(mid, name, (peer_url,))}, index=1, revision=revision, kv=kv
        )
        self.history.append(Reconfiguration(self.clock.now(), cid, "bootstrap", mid, (peer_url,)))
        proc.data = DataDir("wal", cid, mid)
        proc.view, proc.view_kv, proc.view_revision, proc.view_term = {}, {}, revision, 0
        self._log(proc, f"restored from a snapshot at revision {revision}: member {mid:x} of cluster {cid:x}")
        return proc

    # -- introspection -------------------------------------------------------------------------------
    def clusters(self) -> dict[int, list[MemberInfo]]:
        """Cluster ID → its members (sorted by ID), with who runs them and who leads."""
        out: dict[int, list[MemberInfo]] = {}
        for cid, state in self.cluster_states.items():
            runners = {p.member_id: p for p in self.processes.values() if p.cluster_id == cid and p.data.state == "wal"}
            out[cid] = [
                MemberInfo(
                    id=str(m.id),
                    name=m.name,
                    peer_urls=m.peer_urls,
                    client_urls=m.client_urls,
                    learner=m.learner,
                    started=bool(m.name),
                    published=bool(m.client_urls),
                    running=m.id in runners and runners[m.id].running,
                    leader=state.leader == m.id,
                    instance_id=runners[m.id].instance_id if m.id in runners else None,
                )
                for m in sorted(state.members.values(), key=lambda m: m.id)
            ]
        return out

    def leader(self, cluster: int) -> int:
        return self.cluster_states[cluster].leader

    def quorum_lost(self, cluster: int) -> bool:
        """Whether fewer than a quorum of the cluster's voters run (it cannot have a leader)."""
        state = self.cluster_states[cluster]
        return not self._has_quorum(state)

    def kv(self, cluster: int) -> dict[str, str]:
        """The committed keyspace of a cluster (decoded), for checking acknowledged writes."""
        return {k.decode(): v.value.decode() for k, v in sorted(self.cluster_states[cluster].kv.items())}

    def transport(self) -> ModelTransport:
        return ModelTransport(self)

    # -- boot ------------------------------------------------------------------------------------------
    def _first_start_plan(
        self, proc: Process, discovery: Discovery | None, cluster_state: str, token: str
    ) -> dict[str, Any]:
        """What etcd read at exec (R4-R7, R12): the initial cluster map, or the reason it exits."""
        if proc.data.state == "wal":
            return {"kind": "restart"}
        if discovery is None:
            return {"kind": "bootstrap", "urlsmap": [(proc.name, proc.peer_url)], "token": DEFAULT_TOKEN, "res": None}
        if not discovery.targets:
            return {"kind": "exit", "why": "error querying DNS SRV records for _etcd-server no such host"}
        own_host, own_port = _hostport(proc.peer_url)
        own = discovery.resolve(own_host)
        urlsmap: list[tuple[str, str]] = []
        temp = 0
        for host, port in discovery.targets:
            ip = discovery.resolve(host)
            if ip is None:
                continue  # srv.go: a target that does not resolve is skipped
            if own is not None and (ip, port) == (own, own_port) and all(n != proc.name for n, _ in urlsmap):
                name = proc.name
            else:
                name, temp = str(temp), temp + 1
            urlsmap.append((name, f"{discovery.scheme}://{host.rstrip('.')}:{port}"))
        if not any(n == proc.name for n, _ in urlsmap):
            return {
                "kind": "exit",
                "why": f'error setting up initial cluster: cannot find local etcd member "{proc.name}" in SRV records',
            }
        kind = "bootstrap" if cluster_state == "new" else "join"
        return {"kind": kind, "urlsmap": urlsmap, "token": token, "res": discovery}

    def _boot(self, proc: Process, generation: int, plan: dict[str, Any]) -> None:
        if proc.generation != generation or proc.status != "starting":
            return
        kind = plan["kind"]
        if kind == "exit":
            self._exit(proc, plan["why"], 1)
            return
        if kind == "restart":
            self._restart(proc)
            return
        proc.data = DataDir("partial")  # R8: member/snap/db exists from here on
        proc.view, proc.view_kv, proc.view_revision, proc.view_term = {}, {}, 1, 0
        if kind == "bootstrap":
            self._bootstrap(proc, plan["urlsmap"], plan["token"], plan["res"])
        else:
            self._join(proc, plan["urlsmap"], plan["res"])

    def _bootstrap(self, proc: Process, urlsmap: list[tuple[str, str]], token: str, res: Discovery | None) -> None:
        members = {member_id([url], token): Member(member_id([url], token), name, (url,)) for name, url in urlsmap}
        mine = member_id([dict(urlsmap)[proc.name]], token)
        # R9: isMemberBootstrapped asks the other founders' peers.
        for name, url in urlsmap:
            if name == proc.name:
                continue
            remote = self._peer_at(url, res)
            if remote is not None:
                view = remote.view
                if mine in view and view[mine].client_urls:
                    self._exit(proc, f"member {mine:x} has already been bootstrapped", 1)
                    return
        cid = cluster_id(list(members))
        state = self.cluster_states.get(cid)
        if state is None:
            state = ClusterState(cid, members, index=len(members))
            self.cluster_states[cid] = state
            for m in members.values():
                self.history.append(Reconfiguration(self.clock.now(), cid, "bootstrap", m.id, m.peer_urls))
        proc.data = DataDir("wal", cid, mine)
        self._come_up(proc, state)

    def _join(self, proc: Process, urlsmap: list[tuple[str, str]], res: Discovery | None) -> None:
        remote = None
        for _, url in sorted(urlsmap, key=lambda nu: nu[1]):
            if dict(urlsmap).get(proc.name) == url:
                continue
            remote = self._peer_at(url, res)
            if remote is not None:
                break
        if remote is None:
            self._exit(
                proc,
                "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs",
                1,
            )
            return
        existing = list(remote.view.values())
        if len(existing) != len(urlsmap):
            self._exit(
                proc, f"error validating peerURLs {{ClusterID:{remote.cluster_id:x}}}: member count is unequal", 1
            )
            return
        assigned: dict[str, int] = {}
        for m in existing:
            match = next(
                (n for n, u in urlsmap if n not in assigned and self._urls_equal(m.peer_urls, (u,), res)),
                None,
            )
            if match is None:
                self._exit(
                    proc,
                    f"error validating peerURLs: PeerURLs: no match found for existing member ({m.id:x}, "
                    f"{list(m.peer_urls)})",
                    1,
                )
                return
            assigned[match] = m.id
        if proc.name not in assigned:
            self._exit(proc, "error validating peerURLs: PeerURLs: no match found for the local member", 1)
            return
        state = self.cluster_states[remote.cluster_id]
        proc.data = DataDir("wal", remote.cluster_id, assigned[proc.name])
        if proc.member_id in state.removed:
            self._exit(proc, REMOVED, 0)
            return
        self._come_up(proc, state)

    def _restart(self, proc: Process) -> None:
        state = self.cluster_states.get(proc.cluster_id)
        if state is None or proc.member_id in state.removed or proc.member_id not in state.members:
            self._exit(proc, REMOVED, 0)  # R11: peers answer 410 Gone
            return
        self._come_up(proc, state)

    def _come_up(self, proc: Process, state: ClusterState) -> None:
        proc.status = "running"
        proc.up_since = self.clock.now()
        if not proc.view:
            proc.view = dict(state.members)
            proc.view_term = state.term
        self._log(proc, f"running: member {proc.member_id:x} of cluster {state.id:x}")
        me = state.members.get(proc.member_id)
        if me is not None and me.learner and proc.member_id not in state.learner_up:
            state.learner_up[proc.member_id] = self.clock.now() + self.connect_seconds
        self._reconsider(state)

    def _exit(self, proc: Process, why: str, code: int) -> None:
        was_running = proc.running
        proc.status = "exited"
        proc.exit_reason, proc.exit_code = why, code
        self._log(proc, f"exit {code}: {why}")
        state = self.cluster_states.get(proc.cluster_id)
        if state is not None and was_running:
            state.learner_up.pop(proc.member_id, None)
            self._reconsider(state)

    # -- raft --------------------------------------------------------------------------------------
    def _runners(self, state: ClusterState) -> dict[int, Process]:
        return {
            p.member_id: p
            for p in self.processes.values()
            if p.running and p.cluster_id == state.id and p.member_id in state.members
        }

    def _has_quorum(self, state: ClusterState) -> bool:
        voters = state.voters()
        runners = self._runners(state)
        return sum(1 for m in voters if m.id in runners) >= len(voters) // 2 + 1

    def _reconsider(self, state: ClusterState) -> None:
        """Re-evaluate the leader after anything changed (R14)."""
        runners = self._runners(state)
        if state.leader and (state.leader not in runners or not self._has_quorum(state)):
            state.leader = 0
        if state.leader:
            self._sync(state)
            return
        if self._has_quorum(state) and state.election_at is None:
            when = self.clock.now() + self._draw(self.election_seconds)
            state.election_at = when
            self.clock.call_at(when, lambda: self._elect(state, when))

    def _elect(self, state: ClusterState, when: float) -> None:
        if state.election_at != when:
            return
        state.election_at = None
        if state.leader or not self._has_quorum(state):
            return
        runners = self._runners(state)
        candidates = sorted(m.id for m in state.voters() if m.id in runners)
        self._set_leader(state, self.rng.choice(candidates))

    def _set_leader(self, state: ClusterState, leader: int) -> None:
        state.leader = leader
        state.term += 1
        state.index += 1  # the new leader's empty entry
        self._sync(state)

    def _commit(self, state: ClusterState) -> None:
        state.index += 1
        self._sync(state)

    def _sync(self, state: ClusterState) -> None:
        """Running members of a cluster with a leader see its state; then unpublished runners publish (R13)."""
        if not state.leader:
            return
        runners = self._runners(state)
        for m in list(state.members.values()):
            proc = runners.get(m.id)
            if proc is not None and (m.name != proc.name or m.client_urls != (proc.client_url,)):
                state.members[m.id] = replace(m, name=proc.name, client_urls=(proc.client_url,))
                state.index += 1
                self.history.append(
                    Reconfiguration(self.clock.now(), state.id, "publish", m.id, m.peer_urls, m.learner)
                )
        for proc in runners.values():
            proc.view = dict(state.members)
            proc.view_kv = state.kv
            proc.view_revision = state.revision
            proc.view_term = state.term

    def _active_since(self, observer: Process, peer: int) -> float | None:
        """When ``observer``'s rafthttp stream to ``peer`` became active, or None (R17)."""
        state = self.cluster_states.get(observer.cluster_id)
        if state is None or not observer.running:
            return None
        other = self._runners(state).get(peer)
        if other is None or other is observer or peer not in observer.view:
            return None
        return max(observer.up_since, other.up_since, observer.view[peer].added_at) + self.connect_seconds

    def _connected_since(self, observer: Process, peer: int, since: float) -> bool:
        t = self._active_since(observer, peer)
        return t is not None and t < since

    def _learner_match(self, state: ClusterState, learner: int) -> int:
        up = state.learner_up.get(learner)
        if up is None or self.clock.now() < up:
            return 0
        if self.catchup_seconds <= 0:
            return state.index
        frac = min(1.0, (self.clock.now() - up) / self.catchup_seconds)
        return int(state.index * frac)

    # -- helpers -------------------------------------------------------------------------------------
    def _peer_at(self, url: str, res: Discovery | None) -> Process | None:
        """The running process that answers on peer URL ``url``."""
        host, port = _hostport(url)
        ip = res.resolve(host) if res is not None else (host if _is_ip(host) else None)
        for p in self.processes.values():
            if p.running and p.ip == ip and _hostport(p.peer_url)[1] == port:
                return p
        return None

    def _urls_equal(self, a: Sequence[str], b: Sequence[str], res: Discovery | None) -> bool:
        def norm(url: str) -> tuple[str | None, int]:
            host, port = _hostport(url)
            return (res.resolve(host) if res is not None else host), port

        return sorted(map(str, a)) == sorted(map(str, b)) or sorted(map(norm, a), key=str) == sorted(
            map(norm, b), key=str
        )

    def _draw(self, spec: float | tuple[float, float]) -> float:
        if isinstance(spec, tuple):
            return self.rng.uniform(*spec)
        return float(spec)

    def _log(self, proc: Process, message: str) -> None:
        proc.log.append((self.clock.now(), message))


class ModelTransport:
    """``hook_handler.etcd.Transport`` over an ``EtcdModel``: endpoint = a process's client URL. ``session``,
    ``verify`` and ``cert`` are what ``hook_handler.backup.stream.GatewaySnapshot`` reads of an ``HttpTransport``:
    the snapshot stream (R24) streams through them."""

    verify: bool | str = True
    cert: tuple[str, str] | None = None

    def __init__(self, model: EtcdModel) -> None:
        self.model = model
        self.session = ModelSession(self)

    # -- Transport ---------------------------------------------------------------------------------
    def post(self, endpoint: str, path: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        proc = self._process(endpoint)
        handler = {
            "/v3/cluster/member/list": self._member_list,
            "/v3/cluster/member/add": self._member_add,
            "/v3/cluster/member/remove": self._member_remove,
            "/v3/cluster/member/promote": self._member_promote,
            "/v3/maintenance/status": self._status,
            "/v3/maintenance/transfer-leadership": self._move_leader,
            "/v3/kv/put": self._put,
            "/v3/kv/range": self._range,
        }.get(path)
        if handler is None:
            raise EtcdRefused(endpoint, "Not Found", 5)
        if path != "/v3/maintenance/status" and not (path == "/v3/kv/range" and body.get("serializable")):
            self._learner_refuses(proc, endpoint)  # R23: every other RPC, member list and changes included
        return handler(proc, endpoint, dict(body), timeout)

    def get(self, endpoint: str, path: str, timeout: float) -> dict[str, Any]:
        proc = self._process(endpoint)
        if path == "/version":
            return {"etcdserver": SERVER_VERSION, "etcdcluster": CLUSTER_VERSION}
        if path == "/health":
            if not self._state(proc).leader:
                return {"health": "false", "reason": "RAFT NO LEADER"}
            return {"health": "true", "reason": ""}
        raise EtcdRefused(endpoint, "404 page not found", 5)

    # -- plumbing ----------------------------------------------------------------------------------
    def _process(self, endpoint: str) -> Process:
        want = endpoint.rstrip("/")
        for p in self.model.processes.values():
            if p.client_url.rstrip("/") == want and p.running:
                return p
        raise EtcdUnavailable(endpoint, "ConnectionError: connection refused")

    def _state(self, proc: Process) -> ClusterState:
        return self.model.cluster_states[proc.cluster_id]

    def _header(self, proc: Process, *, revision: bool) -> dict[str, str]:
        out = {"cluster_id": str(proc.cluster_id), "member_id": str(proc.member_id)}
        if revision:
            out["revision"] = str(proc.view_revision)
        out["raft_term"] = str(proc.view_term)
        return out

    def _members(self, proc: Process) -> list[dict[str, Any]]:
        return [m.gateway() for m in sorted(proc.view.values(), key=lambda m: m.id)]

    @staticmethod
    def _refuse(endpoint: str, message: str) -> EtcdRefused:
        return EtcdRefused(endpoint, message, ERRORS[message][0])

    def _wait_leader(self, proc: Process, endpoint: str, timeout: float, server_limit: float | None) -> bool:
        """Block (on the model's clock) until the process's cluster has a leader.

        Returns True when it has one; False when ``server_limit`` ran out first (the server answers an error);
        raises ``EtcdUnavailable`` when the caller's ``timeout`` runs out first or the process dies.
        """
        clock = self.model.clock
        start = clock.now()
        client_deadline = start + timeout
        server_deadline = start + server_limit if server_limit is not None else float("inf")
        while True:
            if not proc.running:
                raise EtcdUnavailable(endpoint, "ConnectionError: Connection aborted (remote end closed connection)")
            if self._state(proc).leader:
                return True
            now = clock.now()
            if server_deadline <= client_deadline and now >= server_deadline:
                return False
            if now >= client_deadline:
                raise EtcdUnavailable(endpoint, f"ReadTimeout: Read timed out. (read timeout={timeout})")
            # Sleep to the pending election (the only way a leader appears), else look again in LEADER_POLL (at
            # most the shortest election, so an election scheduled meanwhile is seen before it is held).
            election = self._state(proc).election_at
            if election is not None and election > now:
                step = election - now
            elif election is not None:
                step = 0.05  # the election is due now: its timer runs first
            else:
                spec = self.model.election_seconds
                step = min(LEADER_POLL, max(0.01, float(spec[0] if isinstance(spec, tuple) else spec)))
            clock.sleep(min(step, min(client_deadline, server_deadline) - now))

    # -- cluster API -------------------------------------------------------------------------------
    def _member_list(self, proc: Process, endpoint: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        return {"header": self._header(proc, revision=False), "members": self._members(proc)}

    def _member_add(self, proc: Process, endpoint: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        model, now = self.model, self.model.clock.now()
        urls = [str(u) for u in body.get("peerURLs", []) or []]
        if not urls or not all(urlsplit(u).scheme in ("http", "https") and urlsplit(u).hostname for u in urls):
            raise self._refuse(endpoint, "etcdserver: given member URLs are invalid")
        learner = bool(body.get("isLearner", False))
        voters = [m for m in proc.view.values() if not m.learner]
        # R16 IsReadyToAddVotingMember
        if not learner:
            nmembers = len(voters) + 1
            nstarted = sum(1 for m in voters if m.name)
            if not (nstarted == 1 and nmembers == 2) and nstarted < nmembers // 2 + 1:
                raise self._refuse(endpoint, "etcdserver: re-configuration failed due to not enough started members")
        # R17 isConnectedFullySince(now - HealthInterval)
        since = now - HEALTH_INTERVAL
        if not all(m.id == proc.member_id or model._connected_since(proc, m.id, since) for m in voters):
            raise self._refuse(endpoint, "etcdserver: unhealthy cluster")
        new_id = member_id(urls, "", now)
        self._wait_leader(proc, endpoint, timeout, None)
        state = self._state(proc)
        # R18 ValidateConfigurationChange (at apply)
        if new_id in state.removed:
            raise self._refuse(endpoint, "etcdserver: member not found")
        if new_id in state.members:
            raise self._refuse(endpoint, "etcdserver: member ID already exist")
        known = {u for m in state.members.values() for u in m.peer_urls}
        if any(u in known for u in urls):
            raise self._refuse(endpoint, "etcdserver: Peer URLs already exists")
        if learner and sum(1 for m in state.members.values() if m.learner) + 1 > 1:
            raise self._refuse(endpoint, "etcdserver: too many learner members in cluster")
        added = Member(new_id, "", tuple(urls), (), learner, model.clock.now())
        state.members[new_id] = added
        model.history.append(Reconfiguration(model.clock.now(), state.id, "add", new_id, added.peer_urls, learner))
        model._commit(state)
        model._reconsider(state)  # a voter added but not running may cost the quorum
        member: dict[str, Any] = {"ID": str(new_id), "peerURLs": urls}
        if learner:
            member["isLearner"] = True
        return {"header": self._header(proc, revision=False), "member": member, "members": self._members(proc)}

    def _member_remove(self, proc: Process, endpoint: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        model, now = self.model, self.model.clock.now()
        target = int(body.get("ID", 0) or 0)
        view = proc.view
        if not (target in view and view[target].learner):
            # R19 IsReadyToRemoveVotingMember
            rest = [m for m in view.values() if not m.learner and m.id != target]
            if sum(1 for m in rest if m.name) < len(rest) // 2 + 1:
                raise self._refuse(endpoint, "etcdserver: re-configuration failed due to not enough started members")
            peer_down = target != proc.member_id and model._active_since(proc, target) is None
            if not peer_down:
                voters = [m for m in view.values() if not m.learner]
                since = now - HEALTH_INTERVAL
                active = sum(1 for m in voters if m.id == proc.member_id or model._connected_since(proc, m.id, since))
                if active - 1 < 1 + (len(voters) - 1) // 2:
                    raise self._refuse(endpoint, "etcdserver: unhealthy cluster")
        self._wait_leader(proc, endpoint, timeout, None)
        state = self._state(proc)
        if target in state.removed or target not in state.members:
            raise self._refuse(endpoint, "etcdserver: member not found")
        gone = state.members.pop(target)
        state.removed.add(target)
        state.learner_up.pop(target, None)
        model.history.append(
            Reconfiguration(model.clock.now(), state.id, "remove", target, gone.peer_urls, gone.learner)
        )
        model._commit(state)
        header = self._header(proc, revision=False)
        members = self._members(proc)
        # R20: the removed process exits as soon as its peers refuse it.
        for p in list(model.processes.values()):
            if p.running and p.cluster_id == state.id and p.member_id == target:
                model.clock.call_later(0.02, lambda p=p: p.running and model._exit(p, REMOVED, 0))
        model._reconsider(state)
        return {"header": header, "members": members}

    def _member_promote(self, proc: Process, endpoint: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        model = self.model
        target = int(body.get("ID", 0) or 0)
        state = self._state(proc)
        forwarded = state.leader != proc.member_id
        if forwarded and not self._wait_leader(proc, endpoint, timeout, model.request_timeout):
            raise self._refuse(endpoint, "etcdserver: no leader")
        state = self._state(proc)
        leader_proc = model._runners(state)[state.leader]
        lview = leader_proc.view
        # R21 isLearnerReady on the leader
        if target in state.members and state.members[target].learner:
            if model._learner_match(state, target) < state.index * READY_PERCENT:
                raise self._refuse(
                    endpoint, "etcdserver: can only promote a learner member which is in sync with leader"
                )
        elif forwarded and target not in lview:
            raise self._refuse(endpoint, "etcdserver: member not found")
        voters = [m for m in lview.values() if not m.learner]
        if 1 + sum(1 for m in voters if m.name) < (len(voters) + 1) // 2 + 1:
            if forwarded:
                model.clock.sleep(model.request_timeout)
                raise self._refuse(endpoint, "etcdserver: request timed out")
            raise self._refuse(endpoint, "etcdserver: re-configuration failed due to not enough started members")
        if target not in state.members or target in state.removed:
            raise self._refuse(endpoint, "etcdserver: member not found")
        if not state.members[target].learner:
            raise self._refuse(endpoint, "etcdserver: can only promote a learner member")
        state.members[target] = replace(state.members[target], learner=False)
        state.learner_up.pop(target, None)
        model.history.append(Reconfiguration(model.clock.now(), state.id, "promote", target))
        model._commit(state)
        model._reconsider(state)
        return {"header": self._header(proc, revision=False), "members": self._members(proc)}

    # -- maintenance --------------------------------------------------------------------------------
    def _status(self, proc: Process, endpoint: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        state = self._state(proc)
        me = proc.view.get(proc.member_id)
        learner = bool(me and me.learner)
        index = self.model._learner_match(state, proc.member_id) if learner else state.index
        out: dict[str, Any] = {
            "header": self._header(proc, revision=True),
            "version": SERVER_VERSION,
            "dbSize": "20480",
        }
        if state.leader:
            out["leader"] = str(state.leader)
        out.update({"raftIndex": str(index), "raftTerm": str(proc.view_term), "raftAppliedIndex": str(index)})
        if not state.leader:
            out["errors"] = ["etcdserver: no leader"]
        out["dbSizeInUse"] = "16384"
        if learner:
            out["isLearner"] = True
        return out

    def _move_leader(self, proc: Process, endpoint: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        model = self.model
        state = self._state(proc)
        if state.leader != proc.member_id:
            raise self._refuse(endpoint, "etcdserver: not leader")
        target = int(body.get("targetID", 0) or 0)
        if target not in proc.view or proc.view[target].learner:
            raise self._refuse(endpoint, "etcdserver: bad leader transferee")
        if target == state.leader:
            return {}
        if target not in model._runners(state):
            model.clock.sleep(timeout)  # raft gives up the transfer; MoveLeader waits for the request's context
            raise EtcdUnavailable(endpoint, f"ReadTimeout: Read timed out. (read timeout={timeout})")
        model.clock.sleep(0.1)
        if state.leader == proc.member_id and target in model._runners(state):
            model._set_leader(state, target)
        return {}

    # -- kv -----------------------------------------------------------------------------------------
    def _learner_refuses(self, proc: Process, endpoint: str) -> None:
        me = proc.view.get(proc.member_id)
        if me is not None and me.learner:
            raise self._refuse(endpoint, "etcdserver: rpc not supported for learner")

    def _put(self, proc: Process, endpoint: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._learner_refuses(proc, endpoint)
        if not self._wait_leader(proc, endpoint, timeout, self.model.request_timeout):
            raise self._refuse(endpoint, "context deadline exceeded")
        state = self._state(proc)
        key = base64.b64decode(body.get("key", ""))
        value = base64.b64decode(body.get("value", "") or "")
        state.revision += 1
        old = state.kv.get(key)
        state.kv = dict(state.kv)
        state.kv[key] = KeyValue(
            value, old.create_revision if old else state.revision, state.revision, (old.version if old else 0) + 1
        )
        self.model._commit(state)
        return {"header": self._header(proc, revision=True)}

    def _range(self, proc: Process, endpoint: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        if not body.get("serializable"):
            self._learner_refuses(proc, endpoint)
            if not self._wait_leader(proc, endpoint, timeout, self.model.request_timeout):
                raise self._refuse(endpoint, "etcdserver: request timed out")
        key = base64.b64decode(body.get("key", ""))
        end = base64.b64decode(body["range_end"]) if body.get("range_end") else None
        kv = proc.view_kv
        if end is None:
            found = [(key, kv[key])] if key in kv else []
        else:
            found = sorted((k, v) for k, v in kv.items() if k >= key and (end == b"\0" or k < end))
        out: dict[str, Any] = {"header": self._header(proc, revision=True)}
        if found:
            out["kvs"] = [
                {
                    "key": base64.b64encode(k).decode(),
                    "create_revision": str(v.create_revision),
                    "mod_revision": str(v.mod_revision),
                    "version": str(v.version),
                    "value": base64.b64encode(v.value).decode(),
                }
                for k, v in found
            ]
            out["count"] = str(len(found))
        return out


class ModelResponse:
    """The part of a ``requests.Response`` the snapshot reader uses: status, text, lines, close."""

    def __init__(self, status_code: int, lines: list[bytes]) -> None:
        self.status_code = status_code
        self._lines = lines

    @property
    def text(self) -> str:
        return b"\n".join(self._lines).decode()

    def iter_lines(self, chunk_size: int = 512) -> Iterator[bytes]:
        yield from self._lines

    def close(self) -> None:
        self._lines = []


class ModelSession:
    """``requests.Session.post`` onto the model's gateway: ``/v3/maintenance/snapshot`` streams (R24); any other path
    answers as ``ModelTransport.post``, an error as the gateway writes one. A stopped member refuses the connection
    (``requests.ConnectionError``), as a closed port does."""

    def __init__(self, transport: ModelTransport) -> None:
        self.transport = transport

    def post(self, url: str, json: Mapping[str, Any] | None = None, **_: Any) -> ModelResponse:
        import requests

        parts = urlsplit(url)
        endpoint, path = f"{parts.scheme}://{parts.netloc}", parts.path
        try:
            if path != "/v3/maintenance/snapshot":
                return ModelResponse(200, [_dumps(self.transport.post(endpoint, path, json or {}, 30.0)).encode()])
            proc = self.transport._process(endpoint)
            self.transport._learner_refuses(proc, endpoint)
            return ModelResponse(200, self._snapshot(proc))
        except EtcdUnavailable as exc:
            raise requests.exceptions.ConnectionError(str(exc)) from None
        except EtcdRefused as exc:
            status = ERRORS.get(exc.message, (exc.code, 500))[1]
            body = {"error": exc.message, "code": exc.code, "message": exc.message}
            return ModelResponse(status, [_dumps(body).encode()])

    def _snapshot(self, proc: Process) -> list[bytes]:
        snapshot = self.transport.model.snapshot_bytes(proc.instance_id)
        db, digest = snapshot[:-SHA_SIZE], snapshot[-SHA_SIZE:]
        header = self.transport._header(proc, revision=True)
        lines: list[bytes] = []
        for start in range(0, len(db), SNAPSHOT_CHUNK):
            blob = db[start : start + SNAPSHOT_CHUNK]
            result: dict[str, Any] = {"header": header}
            if len(db) - start - len(blob):
                result["remaining_bytes"] = str(len(db) - start - len(blob))
            result["blob"] = base64.b64encode(blob).decode()
            lines.append(_dumps({"result": result}).encode())
        lines.append(_dumps({"result": {"header": header, "blob": base64.b64encode(digest).decode()}}).encode())
        return lines


__all__ = [
    "CLUSTER_VERSION",
    "HEALTH_INTERVAL",
    "REQUEST_TIMEOUT",
    "SERVER_VERSION",
    "ClusterState",
    "DataDir",
    "Discovery",
    "EtcdModel",
    "KeyValue",
    "Member",
    "MemberInfo",
    "ModelResponse",
    "ModelSession",
    "ModelTransport",
    "Process",
    "Reconfiguration",
    "cluster_id",
    "decode_snapshot",
    "encode_snapshot",
    "member_id",
]
