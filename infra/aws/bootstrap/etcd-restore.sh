#!/usr/bin/env bash
# etcd-restore.sh: seed this instance's etcd data directory from a snapshot in S3 (the instance side of a
# restore). The snapshots are what hook_handler/backup writes: the database then its 32-byte SHA-256 (etcdctl's
# format), object metadata db-size and revision, tag sha256.
#   1. Refuse a data directory that exists and is not empty: a restore never replaces a member's data.
#   2. Resolve SNAPSHOT_KEY=latest to the newest snapshot: keys sort newest first, so the first listed .db key.
#   3. Download it (aws s3api get-object, streamed to a file beside the data directory).
#   4. Check it: size against the db-size metadata, the database's SHA-256 against etcd's trailing digest and
#      the sha256 tag, then etcdutl snapshot status (etcd's own reading), revision not older than recorded.
#   5. etcdutl snapshot restore into a staging directory beside the data directory (name, peer URL, initial
#      cluster, token), then rename it into place: an interrupted restore leaves no half-made data directory.
# etcd then starts on it as a restart (its WAL exists), without discovery flags; the other members join it
# as new members (member add), as etcd's disaster-recovery guide allows.
#
# Run it (settings from the environment), or source it and call restore_from_s3.
# Settings:
#   SNAPSHOT_BUCKET             required: the snapshot bucket (the coordinator stack's SnapshotBucketName)
#   SNAPSHOT_PREFIX             default etcd-snapshots/ (the coordinator's snapshot_prefix)
#   SNAPSHOT_KEY                a snapshot key, or latest (default)
#   ETCD_DATA_DIR               default /var/lib/etcd (absent or empty)
#   ETCD_NAME                   required: this member's name (the start script uses the instance id)
#   ETCD_PEER_URL               required: this member's advertised peer URL
#   ETCD_INITIAL_CLUSTER        default ETCD_NAME=ETCD_PEER_URL (a one-member cluster)
#   ETCD_INITIAL_CLUSTER_TOKEN  required: the new cluster's token (make it new: not the old cluster's)
#   ETCDUTL_BIN                 default /usr/local/bin/etcdutl
#   AWS_BIN / PYTHON_BIN        default aws / python3 (python3 reads the AWS CLI's JSON)
# Exit 0: restored (one line on stdout: key, revision, sha256). Non-zero: nothing changed, and why on stderr.
set -uo pipefail

restore_log() { printf 'etcd-restore: %s\n' "$*" >&2; }

# restore_from_s3: steps 1-5 above. Runs in a subshell of its own (its variables, its exit trap): a failure
# returns non-zero to the caller, which decides (etcd-bootstrap.sh would stop there).
restore_from_s3() (
  set -euo pipefail
  die() { printf 'etcd-restore: error: %s\n' "$*" >&2; exit 1; }
  bucket=${SNAPSHOT_BUCKET:-} prefix=${SNAPSHOT_PREFIX-etcd-snapshots/} key=${SNAPSHOT_KEY:-latest}
  data=${ETCD_DATA_DIR:-/var/lib/etcd} name=${ETCD_NAME:-} peer=${ETCD_PEER_URL:-}
  token=${ETCD_INITIAL_CLUSTER_TOKEN:-} etcdutl=${ETCDUTL_BIN:-/usr/local/bin/etcdutl}
  aws=${AWS_BIN:-aws} python=${PYTHON_BIN:-python3}
  cluster=${ETCD_INITIAL_CLUSTER:-$name=$peer}
  [[ -n $bucket ]] || die "SNAPSHOT_BUCKET is not set: set it to the snapshot bucket"
  [[ -n $name && -n $peer && -n $token ]] || die "ETCD_NAME, ETCD_PEER_URL and ETCD_INITIAL_CLUSTER_TOKEN must be set"
  [[ $data == /* && -n ${data//\//} ]] || die "ETCD_DATA_DIR='$data' is not an absolute path below /"
  [[ -x $etcdutl ]] || die "ETCDUTL_BIN=$etcdutl is not an executable etcdutl"
  if [[ -e $data ]] && { [[ ! -d $data ]] || [[ -n $(find "$data" -mindepth 1 -maxdepth 1 -print -quit) ]]; }; then
    die "data directory $data is not empty: a restore never replaces a member's data; move it away" \
      "(or remove it, knowing what it holds) and restore again"
  fi
  if [[ $key == latest ]]; then
    key=$("$aws" s3api list-objects-v2 --bucket "$bucket" --prefix "$prefix" --max-items 50 --output text \
      --query "Contents[?ends_with(Key, '.db')] | [0].Key") ||
      die "cannot list s3://$bucket/$prefix (the instance role needs s3:ListBucket on the bucket)"
    [[ -n $key && $key != None ]] || die "no snapshot in s3://$bucket/$prefix"
  fi
  work="$(dirname "$data")/.restore-$(basename "$data")"
  rm -rf -- "$work"
  mkdir -p -- "$(dirname "$data")"
  mkdir -m 700 -- "$work"
  trap 'rm -rf -- "$work"' EXIT
  head=$("$aws" s3api get-object --bucket "$bucket" --key "$key" "$work/snapshot.db" --output json) ||
    die "cannot read s3://$bucket/$key (does it exist? the instance role needs s3:GetObject)"
  tagged=$("$aws" s3api get-object-tagging --bucket "$bucket" --key "$key" --output text \
    --query "TagSet[?Key=='sha256'] | [0].Value") ||
    die "cannot read the tags of s3://$bucket/$key (the instance role needs s3:GetObjectTagging)"
  read -r recorded_size recorded_rev < <("$python" -c '
import json, sys
m = {k.lower(): v for k, v in (json.load(sys.stdin).get("Metadata") or {}).items()}
print(m.get("db-size", "-"), m.get("revision", "-"))' <<<"$head")
  size=$(stat -c %s "$work/snapshot.db")
  ((size > 32)) || die "s3://$bucket/$key: $size bytes is too short to be an etcd snapshot"
  db=$((size - 32))
  [[ $recorded_size == - || $recorded_size == "$db" ]] ||
    die "s3://$bucket/$key is truncated or padded: $db database bytes, its metadata says $recorded_size"
  computed=$(head -c "$db" "$work/snapshot.db" | sha256sum | cut -d' ' -f1)
  trailer=$(tail -c 32 "$work/snapshot.db" | od -An -v -tx1 | tr -d ' \n')
  [[ $computed == "$trailer" ]] ||
    die "s3://$bucket/$key: SHA-256 mismatch: the database hashes to $computed, etcd's digest in it says $trailer"
  [[ -z $tagged || $tagged == None || $tagged == "$computed" ]] ||
    die "s3://$bucket/$key: SHA-256 mismatch: the database hashes to $computed, its tag says $tagged"
  status=$("$etcdutl" snapshot status "$work/snapshot.db" --write-out json 2>&1) ||
    die "s3://$bucket/$key: etcdutl snapshot status failed: ${status%%$'\n'*}"
  revision=$("$python" -c 'import json, sys; print(json.load(sys.stdin)["revision"])' <<<"$status")
  [[ $recorded_rev == - ]] || ((revision >= recorded_rev)) ||
    die "s3://$bucket/$key: etcdutl reads revision $revision, older than the $recorded_rev it was taken at"
  out=$("$etcdutl" snapshot restore "$work/snapshot.db" --data-dir "$work/data" --name "$name" \
    --initial-cluster "$cluster" --initial-cluster-token "$token" --initial-advertise-peer-urls "$peer" 2>&1) ||
    die "etcdutl snapshot restore failed: ${out##*$'\n'}"
  if [[ -d $data ]]; then rmdir -- "$data"; fi
  mv -- "$work/data" "$data"
  chmod 700 -- "$data"
  restore_log "restored s3://$bucket/$key (revision $revision) into $data as member $name ($peer)"
  printf '%s %s %s\n' "$key" "$revision" "$computed"
)

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  restore_from_s3
fi
