"""The bootstrap script's vocabulary (``infra/aws/bootstrap/etcd-bootstrap.sh``), shared by the instance that runs
a real etcd (``launcher``, ``fleet``) and the simulated one (``sim_fleet``): the instance tags it reads and the one
it writes (each defined once, by the coordinator's modules, and imported here), the go signal's values, the TLS
files it writes, the lifecycle states it acts on, EC2's states of a VM that is gone or off, etcd's own test of a
restart (``wal_exists``), and how it reads the running cluster's member list before a first start
(``member_seen``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hook_handler.certs import CERT_TAG as TAG_MEMBER_CERT
from hook_handler.members import CLUSTER_STATES
from hook_handler.members import DATA_LOST_TAG as TAG_DATA_LOST
from hook_handler.members import RESTORE_SNAPSHOT_TAG as TAG_RESTORE_SNAPSHOT
from hook_handler.members import RESTORE_TOKEN_TAG as TAG_RESTORE_TOKEN
from hook_handler.members import STATE_TAG as TAG_CLUSTER_STATE
from hook_handler.membership import MEMBER_ID_TAG as TAG_MEMBER_ID

TLS_FILES = ("ca.crt", "member.crt", "member.key")  # the script's ETCD_TLS_{CA,CERT,KEY} in ETCD_TLS_DIR
# Lifecycle states after which an instance never runs etcd again (the script exits without starting etcd).
NOT_JOINING = ("Terminat", "Detach", "Warmed")
# IMDS autoscaling/target-lifecycle-state reads InService from the start of a launch.
TARGET_IN_SERVICE = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")
EC2_GONE = {"shutting-down", "terminated"}
EC2_OFF = {"stopping", "stopped"}  # the VM is off: etcd killed, the data dir (EBS) kept
# An instance runs through Terminating:Wait (its terminate hook, e.g. the coordinator's member remove, acts on a
# live member); it stops once the hook completes. Standby (EnterStandby) and the Pending states of ExitStandby are
# not here: a VM in Standby keeps running, and so does its etcd.
STOPPED_STATES = {"Terminating:Proceed", "Terminated", "Warmed:Terminated"}


def wal_exists(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a member's WAL (a ``*.wal`` file in ``member/wal``): what etcd itself checks
    (``wal.Exist``) to tell a restart of a member from a first start.

    Example:
        >>> wal_exists(Path("/var/lib/etcd"))   # member/wal/0000000000000000-0000000000000000.wal
        True
    """
    return any((Path(data_dir) / "member" / "wal").glob("*.wal"))


# What the running cluster's member list says of this instance's member before a first start (the script's
# ``member_seen``): ``started`` (its data is lost: never start), ``unstarted`` (a joiner after its member add),
# ``absent``, or ``none`` (no member answered).
SEEN_ORDER = ("none", "absent", "unstarted", "started")


def member_seen(members: list[dict[str, object]], *, peer_url: str, member_id: str, name: str) -> str:
    """Whether the gateway's member list (``members`` of ``/v3/cluster/member/list``) lists this instance's member
    — by peer URL, or by the id of its ``etcd-member-id`` tag (``member_id``, hex; "" when none) — and as started.

    A started member published its name (the instance id) and client URLs. A founder that has not started yet is
    listed by the members that did under the placeholder name SRV discovery gave it ("0", "1", ...) without client
    URLs: that is not started (etcd's ``IsStarted`` would say so; the script does not).

    >>> m = [{"ID": "10", "name": "i-1", "peerURLs": ["http://h1:2380"], "clientURLs": ["http://10.0.0.1:2379"]},
    ...      {"ID": "11", "name": "1", "peerURLs": ["http://h2:2380"]}, {"ID": "12", "peerURLs": ["http://h3:2380"]}]
    >>> [member_seen(m, peer_url=u, member_id="", name=n) for u, n in
    ...  [("http://h1:2380", "i-1"), ("http://h2:2380", "i-2"), ("http://h3:2380", "i-3"), ("http://h4:2380", "i-4")]]
    ['started', 'unstarted', 'unstarted', 'absent']
    >>> member_seen(m, peer_url="http://other:2380", member_id="a", name="i-1")
    'started'
    """
    want = peer_url.lower().rstrip("/")
    wanted_id = int(member_id, 16) if member_id else None
    for member in members:
        urls = [str(u).lower().rstrip("/") for u in member.get("peerURLs", []) or []]  # type: ignore[union-attr]
        if want in urls or (wanted_id is not None and int(str(member.get("ID", 0) or 0)) == wanted_id):
            name_ = str(member.get("name", "") or "")
            started = bool(member.get("clientURLs")) or name_ == name or (bool(name_) and not name_.isdigit())
            return "started" if started else "unstarted"
    return "absent"


def data_lost_stamp(epoch: float) -> str:
    """The value of the tag etcd-data-lost: UTC ISO-8601 to the second, as the script's ``date -u`` writes it.

    >>> data_lost_stamp(1767323045.7)
    '2026-01-02T03:04:05Z'
    """
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def restore_problem(
    tags: dict[str, str], *, bucket: str, prefix: str, founding_token: str, data_dir_empty: bool
) -> str:
    """Why the start script refuses a restore go signal (``check_restore``), or "" when it can go on.

    >>> restore_problem({}, bucket="", prefix="p/", founding_token="t", data_dir_empty=True)[:40]
    'SNAPSHOT_BUCKET is not set: this instance'
    """
    key, token = tags.get(TAG_RESTORE_SNAPSHOT, ""), tags.get(TAG_RESTORE_TOKEN, "")
    if not bucket:
        return "SNAPSHOT_BUCKET is not set: this instance cannot restore"
    if not key or not token:
        return f"etcd-cluster-state=restore needs the instance tags {TAG_RESTORE_SNAPSHOT} and {TAG_RESTORE_TOKEN}"
    if not (key.startswith(prefix) and key.endswith(".db")):
        return f"{TAG_RESTORE_SNAPSHOT}={key!r} is not a snapshot key under SNAPSHOT_PREFIX={prefix!r}"
    if token == founding_token:
        return f"{TAG_RESTORE_TOKEN}={token!r} is the founding token: a restored cluster needs a new one"
    if not data_dir_empty:
        return "the data dir is not empty: a restore never replaces a member's data"
    return ""


__all__ = [
    "CLUSTER_STATES",
    "EC2_GONE",
    "EC2_OFF",
    "NOT_JOINING",
    "SEEN_ORDER",
    "STOPPED_STATES",
    "TAG_CLUSTER_STATE",
    "TAG_DATA_LOST",
    "TAG_MEMBER_CERT",
    "TAG_MEMBER_ID",
    "TAG_RESTORE_SNAPSHOT",
    "TAG_RESTORE_TOKEN",
    "TARGET_IN_SERVICE",
    "TLS_FILES",
    "data_lost_stamp",
    "member_seen",
    "restore_problem",
    "wal_exists",
]
