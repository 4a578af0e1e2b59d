"""The bootstrap script's vocabulary (``infra/aws/bootstrap/etcd-bootstrap.sh``), shared by the instance that runs
a real etcd (``launcher``, ``fleet``) and the simulated one (``sim_fleet``): the instance tags it reads, the TLS
files it writes, the lifecycle states it acts on, EC2's states of a VM that is gone or off, and etcd's own test of
a restart (``wal_exists``)."""

from __future__ import annotations

from pathlib import Path

TAG_CLUSTER_STATE = "etcd-cluster-state"
TAG_MEMBER_CERT = "etcd-member-cert"
TLS_FILES = ("ca.crt", "member.crt", "member.key")  # the script's ETCD_TLS_{CA,CERT,KEY} in ETCD_TLS_DIR
CLUSTER_STATES = ("new", "existing")
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
