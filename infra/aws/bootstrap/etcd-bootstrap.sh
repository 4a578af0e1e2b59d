#!/usr/bin/env bash
# etcd-bootstrap.sh: start this instance's etcd member once the coordinator has published it.
#
# ExecStart of the unit etcd.service (Restart=on-failure) that etcd-cluster.yaml's user data installs
# and enables: it runs on *every* boot (a warm-pool instance started again when it leaves the pool runs
# it again, its data dir as it was) and after a non-zero exit; exit 0 stays down until the next boot.
#   1. IMDSv2 session token (PUT /latest/api/token). The instance tag etcd-data-lost (step 5): exit 1, etcd not
#      started, on every start while the tag is there.
#   2. Wait until autoscaling/target-lifecycle-state (where the instance is *going*) is InService.
#      Warmed:Running/Hibernated: wait on (no boot runs this when it leaves the pool). Other
#      Warmed:*, Terminated, Detached: exit 0, etcd not started.
#   3. Wait for the instance tag etcd-cluster-state, the coordinator's go signal (IMDS tags/instance/...,
#      launch template InstanceMetadataTags: enabled):
#        new       found a cluster with the members the SRV record lists;
#        existing  join the running cluster (the coordinator ran member add first);
#        restore   seed this member's data from a snapshot in S3 and start it as a one-member cluster; the
#                  coordinator then adds the other members one at a time, as joiners (existing). Written in the
#                  same CreateTags: etcd-restore-snapshot (the snapshot's full S3 key, under SNAPSHOT_PREFIX) and
#                  etcd-restore-token (the restored cluster's --initial-cluster-token: a new one, never the old
#                  cluster's).
#      Any other value; restore without both tags, without SNAPSHOT_BUCKET (the stack cannot restore), with a key
#      outside SNAPSHOT_PREFIX or with a data dir that is not empty: exit 1 saying why, nothing started or changed.
#   4. With TLS: the member certificate (below).
#   5. Lost data. The instance carries the go signal and its data dir has no WAL: before a first start, ask the
#      running cluster for its member list. A member with this peer URL (or the id of the tag etcd-member-id,
#      hex) listed as started (it published its name and client URLs) means this member ran and its data is
#      gone; started under the old member id with an empty log it could lose acknowledged writes (etcd's
#      procedure is member remove, then add as a new member). So etcd is not started: the instance tag
#      etcd-data-lost=<UTC ISO-8601 time> is written (the coordinator removes the member when quorum allows
#      and has the instance replaced) and the script exits 1. Listed unstarted (a joiner after its member add;
#      a founder not yet started, listed by the others under the placeholder name "0", "1", ... discovery gave
#      it) or not listed: the first start goes on. No member answers: new and restore go on (no cluster runs);
#      existing asks again until BOOTSTRAP_TAG_TIMEOUT, then exits 1 (never starts blind). Asked:
#      ETCD_CHECK_ENDPOINTS, else the peers the SRV record names (on the client port) and the targets of
#      _etcd-client[-ssl]._tcp.<domain> (needs dig), with the member certificate under TLS.
#   6. new, existing: wait until the SRV record, as this instance's resolver answers it, lists this peer host and
#      port (needs dig): etcd reads it once, on first start; then exec etcd with DNS discovery,
#      --initial-cluster-state from the tag.
#      restore: restore_from_s3 (etcd-restore.sh, sourced: download, verify, etcdutl snapshot restore with
#      --initial-cluster <id>=<peer URL> and the tag's token, renamed into place), then exec etcd on the restored
#      data dir as a restart (no discovery flags). A failed restore leaves no data dir: exit 1, nothing started
#      (the coordinator's start timeout abandons the launch).
# Restart or first start, by the WAL as etcd decides (wal.Exist(member/wal)):
#   - $ETCD_DATA_DIR/member/wal/*.wal and the tag etcd-cluster-state present: restart. Skip 2-6 and
#     every discovery flag (etcd ignores them; the record may have changed); keep the data.
#   - A WAL and the tag definitely absent (IMDS answers 404 for it and tags/instance answers 200
#     without it): membership revoked. The coordinator removes the member and deletes its admission
#     tags when the instance goes back to a warm pool (ReuseOnScaleIn); on that WAL etcd would exit 0
#     ("permanently removed from the cluster"). So: step 2 (Warmed:*: exit 0, data kept), log it,
#     clear the data dir, do 3-6 (a new member). Any other answer (timeout, 5xx, tags not in IMDS)
#     never clears data: read again until BOOTSTRAP_TAG_TIMEOUT, then exit 1.
#   - member/ but no WAL: what a failed first start leaves (etcd 3.5.1, "member count is unequal":
#     member/snap/db, no WAL); started on it without discovery etcd would bootstrap a one-member
#     cluster of its own. So: log it, clear the data dir, do 2-6.
#
# Settings (environment variables):
#   ETCD_DOMAIN                 required: the domain of the SRV record (--discovery-srv)
#   ETCD_DISCOVERY_SRV_NAME     --discovery-srv-name suffix (_etcd-server-<name>._tcp); default none
#   ETCD_PEER_PORT / ETCD_CLIENT_PORT           default 2380 / 2379
#   ETCD_PEER_HOST              peer host name the SRV target names; default IMDS local-hostname
#                               ("{instance_id}" is replaced, e.g. "{instance_id}.example.com")
#   ETCD_INITIAL_CLUSTER_TOKEN  default etcd-<ETCD_DOMAIN> (identical on every founding member)
#   ETCD_BIN / ETCD_DATA_DIR    default /usr/local/bin/etcd / /var/lib/etcd
#   IMDS_ENDPOINT               default http://169.254.169.254
#   IMDS_TIMEOUT                seconds one IMDS request may take (default 3)
#   BOOTSTRAP_POLL_INTERVAL     first wait between polls in seconds (default 1), doubled per poll
#   BOOTSTRAP_POLL_MAX          longest wait between polls (default 2: IMDS and the VPC resolver are local
#                               and unthrottled, and the go signal is awaited right after the record INSYNC)
#   BOOTSTRAP_LIFECYCLE_TIMEOUT seconds to wait for InService (default 900)
#   BOOTSTRAP_TAG_TIMEOUT       seconds to wait for the etcd-cluster-state tag, and (existing) for a member of
#                               the running cluster to answer (default 600)
#   BOOTSTRAP_SRV_CHECK         auto (when dig exists) | 1 | 0
#   BOOTSTRAP_SRV_TIMEOUT       seconds to wait for the SRV record to list this instance (default 300)
#   DIG_BIN                     default dig
#   ETCD_CHECK_ENDPOINTS        client URLs (comma-separated) asked for the member list before a first start;
#                               default: from the SRV records (step 5)
#   ETCD_CHECK_TIMEOUT          seconds one member list request may take (default 3)
#   SNAPSHOT_BUCKET             the snapshot bucket (the coordinator stack's SnapshotBucketName); empty: this
#                               instance cannot restore, a restore go signal is refused
#   SNAPSHOT_PREFIX             the snapshots' key prefix (default etcd-snapshots/, the coordinator's)
#   ETCD_RESTORE_SCRIPT         default etcd-restore.sh beside this script (sourced for a restore; it reads
#                               ETCDUTL_BIN, default /usr/local/bin/etcdutl, AWS_BIN and PYTHON_BIN)
#   ETCD_TLS                    0 (default) | 1: mutual TLS for peers and clients (below)
#   ETCD_TLS_CA / ETCD_TLS_CERT / ETCD_TLS_KEY
#                               the CA bundle, this member's certificate and its key (PEM); default
#                               $ETCD_TLS_DIR/{ca.crt,member.crt,member.key}, ETCD_TLS_DIR default /etc/etcd/pki
#   ETCD_PEER_ALLOWED_HOSTNAME  the name every peer's certificate must carry (--peer-cert-allowed-hostname);
#                               default ETCD_DOMAIN (every member certificate names the discovery domain)
#   OPENSSL_BIN                 default openssl (checks the certificate before etcd starts)
#   ETCD_TLS_FETCH              auto (default) | 0: with auto, when the three files are absent they are
#                               fetched, after the go signal, from the secret the coordinator issued for this
#                               instance (its tag etcd-member-cert; JSON {ca, cert, key}) with AWS_BIN
#                               (default aws) and written with umask 077; 0: never fetched (managed elsewhere)
#   AWS_BIN / PYTHON_BIN        default aws / python3 (the AWS CLI reads the secret, writes etcd-data-lost and
#                               downloads a snapshot; python3 reads JSON)
# TLS mode: https peer and client URLs, --client-cert-auth and --peer-client-cert-auth against the CA, peer
# identity by --peer-cert-allowed-hostname, discovery from _etcd-server-ssl[-name]._tcp. Before etcd starts,
# the certificate is checked: signed by the CA, its subjectAltName naming the discovery domain (etcd requires
# it when discovering over TLS), the peer host and the private IP, and the key readable by its owner only.
# Extra arguments to this script are passed to etcd after the generated ones.
set -euo pipefail

readonly PROG=etcd-bootstrap
IMDS_ENDPOINT=${IMDS_ENDPOINT:-http://169.254.169.254}
IMDS_TIMEOUT=${IMDS_TIMEOUT:-3}
ETCD_DOMAIN=${ETCD_DOMAIN:-}
ETCD_DISCOVERY_SRV_NAME=${ETCD_DISCOVERY_SRV_NAME:-}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-2380}
ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-2379}
ETCD_PEER_HOST=${ETCD_PEER_HOST:-}
ETCD_INITIAL_CLUSTER_TOKEN=${ETCD_INITIAL_CLUSTER_TOKEN:-etcd-${ETCD_DOMAIN}}
ETCD_BIN=${ETCD_BIN:-/usr/local/bin/etcd}
ETCD_DATA_DIR=${ETCD_DATA_DIR:-/var/lib/etcd}
BOOTSTRAP_POLL_INTERVAL=${BOOTSTRAP_POLL_INTERVAL:-1}
BOOTSTRAP_POLL_MAX=${BOOTSTRAP_POLL_MAX:-2}
BOOTSTRAP_LIFECYCLE_TIMEOUT=${BOOTSTRAP_LIFECYCLE_TIMEOUT:-900}
BOOTSTRAP_TAG_TIMEOUT=${BOOTSTRAP_TAG_TIMEOUT:-600}
BOOTSTRAP_SRV_CHECK=${BOOTSTRAP_SRV_CHECK:-auto}
BOOTSTRAP_SRV_TIMEOUT=${BOOTSTRAP_SRV_TIMEOUT:-300}
DIG_BIN=${DIG_BIN:-dig}
ETCD_TLS=${ETCD_TLS:-0}
ETCD_TLS_DIR=${ETCD_TLS_DIR:-/etc/etcd/pki}
ETCD_TLS_CA=${ETCD_TLS_CA:-$ETCD_TLS_DIR/ca.crt}
ETCD_TLS_CERT=${ETCD_TLS_CERT:-$ETCD_TLS_DIR/member.crt}
ETCD_TLS_KEY=${ETCD_TLS_KEY:-$ETCD_TLS_DIR/member.key}
ETCD_PEER_ALLOWED_HOSTNAME=${ETCD_PEER_ALLOWED_HOSTNAME:-${ETCD_DOMAIN%.}}
OPENSSL_BIN=${OPENSSL_BIN:-openssl}
ETCD_TLS_FETCH=${ETCD_TLS_FETCH:-auto}
AWS_BIN=${AWS_BIN:-aws}
PYTHON_BIN=${PYTHON_BIN:-python3}
ETCD_CHECK_ENDPOINTS=${ETCD_CHECK_ENDPOINTS:-}
ETCD_CHECK_TIMEOUT=${ETCD_CHECK_TIMEOUT:-3}
SNAPSHOT_BUCKET=${SNAPSHOT_BUCKET:-}
SNAPSHOT_PREFIX=${SNAPSHOT_PREFIX-etcd-snapshots/}
ETCD_RESTORE_SCRIPT=${ETCD_RESTORE_SCRIPT:-${BASH_SOURCE[0]%/*}/etcd-restore.sh}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }

check_settings() {
  [[ -n $ETCD_DOMAIN ]] || die "ETCD_DOMAIN is not set: set it to the domain of the SRV record, e.g. example.com"
  local name
  for name in ETCD_PEER_PORT ETCD_CLIENT_PORT BOOTSTRAP_LIFECYCLE_TIMEOUT BOOTSTRAP_TAG_TIMEOUT BOOTSTRAP_SRV_TIMEOUT; do
    is_uint "${!name}" || die "$name='${!name}' is not a whole number of the expected kind"
  done
  for name in BOOTSTRAP_POLL_INTERVAL BOOTSTRAP_POLL_MAX IMDS_TIMEOUT ETCD_CHECK_TIMEOUT; do
    is_number "${!name}" || die "$name='${!name}' is not a number of seconds"
  done
  case $BOOTSTRAP_SRV_CHECK in auto | 0 | 1) ;; *) die "BOOTSTRAP_SRV_CHECK='$BOOTSTRAP_SRV_CHECK' is not auto, 0 or 1" ;; esac
  # The script may clear it (a failed first start, a revoked membership): never "/" or a relative path.
  [[ $ETCD_DATA_DIR == /* && -n ${ETCD_DATA_DIR//\//} ]] || die "ETCD_DATA_DIR='$ETCD_DATA_DIR' is not an absolute path below /"
  [[ -x $ETCD_BIN ]] || die "ETCD_BIN=$ETCD_BIN is not an executable etcd binary"
  case $ETCD_TLS in 0 | 1) ;; *) die "ETCD_TLS='$ETCD_TLS' is not 0 or 1" ;; esac
  case $ETCD_TLS_FETCH in auto | 0) ;; *) die "ETCD_TLS_FETCH='$ETCD_TLS_FETCH' is not auto or 0" ;; esac
}

# fetch_tls: the member certificate, its key and the CA from the secret the coordinator issued for this
# instance (tag etcd-member-cert, written with the go signal; only this instance may read the secret).
fetch_tls() {
  [[ $ETCD_TLS_FETCH == auto ]] || return 0
  local arn region json seen=${ETCD_TLS_CERT%/*}/.etcd-member-cert
  arn=$(imds_get tags/instance/etcd-member-cert) || arn=""
  if [[ -e $ETCD_TLS_CA && -e $ETCD_TLS_CERT && -e $ETCD_TLS_KEY ]] && [[ -z $arn || $(cat "$seen" 2>/dev/null) == "$arn" ]]; then
    return 0
  fi
  [[ -n $arn ]] ||
    die "no instance tag etcd-member-cert (set the coordinator's etcd_ca_secret, or ETCD_TLS_FETCH=0 and the files)"
  region=${arn#arn:*:secretsmanager:} && region=${region%%:*}
  json=$("$AWS_BIN" secretsmanager get-secret-value --region "$region" --secret-id "$arn" \
    --query SecretString --output text) || die "cannot read the member certificate secret $arn"
  (umask 077 && mkdir -p "${ETCD_TLS_CA%/*}" "${ETCD_TLS_CERT%/*}" "${ETCD_TLS_KEY%/*}" && "$PYTHON_BIN" -c '
import json, os, sys
d = json.loads(sys.stdin.read())
for v, p in zip((d["ca"], d["cert"], d["key"], sys.argv[5]), sys.argv[1:5]): open(p + ".new", "w").write(v)
for p in sys.argv[1:5]: os.replace(p + ".new", p)' \
    "$ETCD_TLS_CA" "$ETCD_TLS_CERT" "$ETCD_TLS_KEY" "$seen" "$arn" <<<"$json") ||
    die "the secret $arn is not the JSON {ca, cert, key}"
  log "member certificate fetched from $arn"
}

# check_tls HOST IP: the member certificate will do for etcd over TLS, or a clear error before etcd starts
# (etcd itself would fail later with a handshake error on some peer, or refuse discovery).
check_tls() {
  local host=$1 ip=$2 name mode out
  command -v "$OPENSSL_BIN" >/dev/null || die "ETCD_TLS=1 needs $OPENSSL_BIN to check the member certificate"
  for name in ETCD_TLS_CA ETCD_TLS_CERT ETCD_TLS_KEY; do
    [[ -r ${!name} ]] || die "$name=${!name} is not a readable file (ETCD_TLS=1)"
  done
  mode=$(stat -c %a "$ETCD_TLS_KEY")
  ((8#$mode & 8#077)) && die "ETCD_TLS_KEY=$ETCD_TLS_KEY has mode $mode: the member's private key must be" \
    "readable by its owner only (chmod 600)"
  out=$("$OPENSSL_BIN" verify -CAfile "$ETCD_TLS_CA" "$ETCD_TLS_CERT" 2>&1) ||
    die "the member certificate $ETCD_TLS_CERT is not signed by the CA in $ETCD_TLS_CA: ${out//$'\n'/ }"
  "$OPENSSL_BIN" x509 -in "$ETCD_TLS_CERT" -noout -checkhost "${ETCD_DOMAIN%.}" 2>/dev/null | grep -q ' does match' ||
    die "the member certificate $ETCD_TLS_CERT does not name the discovery domain ${ETCD_DOMAIN%.} in its" \
      "subjectAltName: etcd requires it in every member's certificate when discovering over TLS" \
      "(--discovery-srv); issue the certificate with DNS:${ETCD_DOMAIN%.}"
  if [[ $ETCD_PEER_ALLOWED_HOSTNAME != "${ETCD_DOMAIN%.}" ]]; then
    "$OPENSSL_BIN" x509 -in "$ETCD_TLS_CERT" -noout -checkhost "$ETCD_PEER_ALLOWED_HOSTNAME" 2>/dev/null |
      grep -q ' does match' || die "the member certificate $ETCD_TLS_CERT does not name" \
      "$ETCD_PEER_ALLOWED_HOSTNAME (ETCD_PEER_ALLOWED_HOSTNAME): the other members would refuse it as a peer"
  fi
  "$OPENSSL_BIN" x509 -in "$ETCD_TLS_CERT" -noout -checkhost "${host%.}" 2>/dev/null | grep -q ' does match' ||
    die "the member certificate $ETCD_TLS_CERT does not name this member's peer host ${host%.} in its" \
      "subjectAltName: peers dial it by that name"
  "$OPENSSL_BIN" x509 -in "$ETCD_TLS_CERT" -noout -checkip "$ip" 2>/dev/null | grep -q ' does match' ||
    die "the member certificate $ETCD_TLS_CERT does not name this member's private IP $ip in its" \
      "subjectAltName: clients (the coordinator) dial it by that address"
  log "member certificate $ETCD_TLS_CERT names ${ETCD_DOMAIN%.}, ${host%.} and $ip, signed by $ETCD_TLS_CA"
}

TOKEN=""
imds_token() {
  TOKEN=$(curl -fsS --max-time "$IMDS_TIMEOUT" -X PUT "$IMDS_ENDPOINT/latest/api/token" \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 21600") ||
    die "no IMDSv2 token from $IMDS_ENDPOINT/latest/api/token (is the metadata service reachable and enabled?)"
}

# imds_fetch PATH [again]: one read; IMDS_CODE = HTTP status (000: no answer), IMDS_BODY. A 401 (token
# expired) renews the token once.
IMDS_CODE=""
IMDS_BODY=""
imds_fetch() {
  local out
  out=$(curl -sS --max-time "$IMDS_TIMEOUT" -w '\n%{http_code}' -H "X-aws-ec2-metadata-token: $TOKEN" \
    "$IMDS_ENDPOINT/latest/meta-data/$1") || out=$'\n000'
  IMDS_CODE=${out##*$'\n'}
  IMDS_BODY=${out%$'\n'*}
  if [[ $IMDS_CODE == 401 && -z ${2:-} ]]; then
    imds_token
    imds_fetch "$1" again
  fi
}

# imds_get PATH: print the item; status 1 when it does not exist (404) or cannot be read.
imds_get() {
  imds_fetch "$1"
  [[ $IMDS_CODE == 200 ]] || return 1
  printf '%s' "$IMDS_BODY"
}

imds_require() {
  imds_get "$1" || die "cannot read $1 from $IMDS_ENDPOINT/latest/meta-data/"
}

# Wait between polls: BOOTSTRAP_POLL_INTERVAL, doubled after each poll up to BOOTSTRAP_POLL_MAX.
DELAY=""
reset_backoff() { DELAY=$BOOTSTRAP_POLL_INTERVAL; }
backoff() {
  sleep "$DELAY"
  DELAY=$(awk -v d="$DELAY" -v m="$BOOTSTRAP_POLL_MAX" 'BEGIN { d *= 2; if (d > m) d = m; print d }')
}

wait_in_service() {
  local deadline=$((SECONDS + BOOTSTRAP_LIFECYCLE_TIMEOUT)) state=""
  reset_backoff
  while :; do
    state=$(imds_get autoscaling/target-lifecycle-state) || state=""
    case $state in
      InService) log "target lifecycle state: InService"; return 0 ;;
      Warmed:Running | Warmed:Hibernated)
        [[ $state == "${POOL_LOGGED:-}" ]] || log "target lifecycle state is $state: waiting in the warm pool"
        POOL_LOGGED=$state
        deadline=$((SECONDS + BOOTSTRAP_LIFECYCLE_TIMEOUT)) ;;
      Warmed:* | Terminated | Detached)
        log "target lifecycle state is $state: this instance is not joining the group, etcd not started"
        exit 0 ;;
    esac
    ((SECONDS < deadline)) || die "target-lifecycle-state is '${state:-unavailable}', not InService, after" \
      "${BOOTSTRAP_LIFECYCLE_TIMEOUT}s (IMDS $IMDS_ENDPOINT); is this instance in an Auto Scaling group?"
    backoff
  done
}

CLUSTER_STATE=""
wait_cluster_state() {
  local deadline=$((SECONDS + BOOTSTRAP_TAG_TIMEOUT)) value=""
  reset_backoff
  while :; do
    value=$(imds_get tags/instance/etcd-cluster-state) || value=""
    case $value in
      new | existing | restore) CLUSTER_STATE=$value; log "etcd-cluster-state: $value"; return 0 ;;
      "") ;;
      *) die "instance tag etcd-cluster-state='$value' is not new, existing or restore (the values the coordinator" \
        "writes): nothing was started or changed; check what wrote the tag" ;;
    esac
    ((SECONDS < deadline)) || die "instance tag etcd-cluster-state did not appear within" \
      "${BOOTSTRAP_TAG_TIMEOUT}s: the coordinator has not published this instance (check its logs and" \
      "alarms) or the launch template lacks MetadataOptions InstanceMetadataTags: enabled"
    backoff
  done
}

# admitted: 0 when the tag etcd-cluster-state is there, 1 when definitely absent (revoked); any other
# answer is read again until BOOTSTRAP_TAG_TIMEOUT, then exit 1: data is never cleared on a guess.
admitted() {
  local deadline=$((SECONDS + BOOTSTRAP_TAG_TIMEOUT)) why="" said=""
  reset_backoff
  while :; do
    imds_fetch tags/instance/etcd-cluster-state
    case $IMDS_CODE in
      200) log "etcd-cluster-state: $IMDS_BODY: still an admitted member"; return 0 ;;
      404)
        # A 404 proves absence only if instance tags are in IMDS at all: the listing answers.
        imds_fetch tags/instance
        if [[ $IMDS_CODE != 200 ]]; then
          why="tags/instance answered $IMDS_CODE (InstanceMetadataTags not enabled?)"
        elif [[ $'\n'$IMDS_BODY$'\n' == *$'\n'etcd-cluster-state$'\n'* ]]; then
          why="tags/instance lists it, reading it answered 404"
        else
          return 1
        fi
        ;;
      *) why="tags/instance/etcd-cluster-state answered $IMDS_CODE (000: no answer in ${IMDS_TIMEOUT}s)" ;;
    esac
    [[ $why == "$said" ]] || { log "is the tag etcd-cluster-state there? $why; reading again"; said=$why; }
    ((SECONDS < deadline)) || die "cannot tell in ${BOOTSTRAP_TAG_TIMEOUT}s whether the tag" \
      "etcd-cluster-state is there ($why); the WAL in $ETCD_DATA_DIR is left as it is"
    backoff
  done
}

# srv_name: the record etcd's discovery reads (with TLS: _etcd-server-ssl[-name]._tcp).
srv_name() {
  local service=_etcd-server
  ((ETCD_TLS)) && service=_etcd-server-ssl
  if [[ -n $ETCD_DISCOVERY_SRV_NAME ]]; then
    printf '%s-%s._tcp.%s' "$service" "$ETCD_DISCOVERY_SRV_NAME" "${ETCD_DOMAIN%.}"
  else
    printf '%s._tcp.%s' "$service" "${ETCD_DOMAIN%.}"
  fi
}

# srv_lists HOST: the resolver's answer for the SRV record has target HOST on the peer port.
srv_lists() {
  local want=${1,,} answer prio weight port target
  answer=$("$DIG_BIN" +short SRV "$(srv_name)" 2>/dev/null) || return 1
  while read -r prio weight port target; do
    [[ -n ${target:-} ]] || continue
    : "$prio" "$weight"
    target=${target%.}
    if [[ $port == "$ETCD_PEER_PORT" && ${target,,} == "${want%.}" ]]; then
      return 0
    fi
  done <<<"$answer"
  return 1
}

wait_srv_lists() {
  local host=$1 deadline=$((SECONDS + BOOTSTRAP_SRV_TIMEOUT))
  case $BOOTSTRAP_SRV_CHECK in
    0) return 0 ;;
    auto) command -v "$DIG_BIN" >/dev/null || { log "no $DIG_BIN: not checking the SRV record before start"; return 0; } ;;
  esac
  reset_backoff
  until srv_lists "$host"; do
    ((SECONDS < deadline)) || die "$(srv_name) SRV does not list $host:$ETCD_PEER_PORT after" \
      "${BOOTSTRAP_SRV_TIMEOUT}s, as this instance's resolver answers it; etcd would not find itself in it"
    backoff
  done
  log "$(srv_name) lists $host:$ETCD_PEER_PORT"
}

# wal_exists: the data dir holds a member's WAL (what etcd's wal.Exist checks).
wal_exists() {
  compgen -G "$ETCD_DATA_DIR/member/wal/*.wal" >/dev/null
}

# clear_data_dir: empty the data dir but keep it (it may be a mount point, with its mode and owner).
clear_data_dir() {
  find "$ETCD_DATA_DIR" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} + ||
    die "cannot clear $ETCD_DATA_DIR; clear it by hand"
}

# refuse_if_data_lost: the instance tag etcd-data-lost (written by lost_data below) keeps etcd down.
refuse_if_data_lost() {
  local since
  since=$(imds_get tags/instance/etcd-data-lost) || return 0
  die "this member's data is lost (instance tag etcd-data-lost=$since): etcd is not started while the tag is" \
    "there; the coordinator removes the member and has the instance replaced"
}

# check_restore: what a restore needs, checked before anything changes: RESTORE_KEY and RESTORE_TOKEN from the
# tags written with the go signal, the bucket, the restore script, an absent or empty data dir.
RESTORE_KEY=""
RESTORE_TOKEN=""
check_restore() {
  [[ -n $SNAPSHOT_BUCKET ]] || die "etcd-cluster-state=restore, but SNAPSHOT_BUCKET is not set: this instance" \
    "cannot restore (deploy the cluster stack with SnapshotBucket, the coordinator stack's snapshot bucket);" \
    "nothing was started or changed"
  RESTORE_KEY=$(imds_get tags/instance/etcd-restore-snapshot) || RESTORE_KEY=""
  RESTORE_TOKEN=$(imds_get tags/instance/etcd-restore-token) || RESTORE_TOKEN=""
  [[ -n $RESTORE_KEY && -n $RESTORE_TOKEN ]] || die "etcd-cluster-state=restore needs the instance tags" \
    "etcd-restore-snapshot and etcd-restore-token, written with it (found: '${RESTORE_KEY}', '${RESTORE_TOKEN}');" \
    "nothing was started or changed"
  [[ $RESTORE_KEY == "$SNAPSHOT_PREFIX"*.db ]] || die "etcd-restore-snapshot='$RESTORE_KEY' is not a snapshot" \
    "key under SNAPSHOT_PREFIX='$SNAPSHOT_PREFIX' (<prefix>...db); nothing was started or changed"
  [[ $RESTORE_TOKEN != "$ETCD_INITIAL_CLUSTER_TOKEN" ]] || die "etcd-restore-token='$RESTORE_TOKEN' is the" \
    "founding token: a restored cluster needs a new one; nothing was started or changed"
  [[ -r $ETCD_RESTORE_SCRIPT ]] || die "ETCD_RESTORE_SCRIPT=$ETCD_RESTORE_SCRIPT is not readable (the restore" \
    "script etcd-restore.sh); nothing was started or changed"
  if [[ -e $ETCD_DATA_DIR && -n $(find "$ETCD_DATA_DIR" -mindepth 1 -maxdepth 1 -print -quit) ]]; then
    die "etcd-cluster-state=restore, but the data dir $ETCD_DATA_DIR is not empty: a restore never replaces a" \
      "member's data; it is left as it is and etcd is not started (move it away to restore)"
  fi
}

# restore_data ID PEER: seed the data dir from the snapshot (etcd-restore.sh's restore_from_s3) as the one member
# of a new cluster; nothing is left behind when it fails.
restore_data() {
  local id=$1 peer_url=$2 out
  if [[ -z ${AWS_REGION:-${AWS_DEFAULT_REGION:-}} ]]; then
    AWS_DEFAULT_REGION=$(imds_get placement/region) && export AWS_DEFAULT_REGION
  fi
  # shellcheck source-path=SCRIPTDIR source=etcd-restore.sh
  source "$ETCD_RESTORE_SCRIPT"
  out=$(SNAPSHOT_KEY=$RESTORE_KEY ETCD_NAME=$id ETCD_PEER_URL=$peer_url ETCD_INITIAL_CLUSTER="$id=$peer_url" \
    ETCD_INITIAL_CLUSTER_TOKEN=$RESTORE_TOKEN restore_from_s3) ||
    die "the restore of s3://$SNAPSHOT_BUCKET/$RESTORE_KEY failed (above): no data dir was made, etcd not started"
  log "restored (key, revision, sha256): $out"
}

# check_endpoints HOST SCHEME: the client URLs asked for the member list (one a line), this member's own left out.
check_endpoints() {
  local host=${1,,} scheme=$2 prio weight port target service=_etcd-client
  if [[ -n $ETCD_CHECK_ENDPOINTS ]]; then
    tr ',' '\n' <<<"$ETCD_CHECK_ENDPOINTS"
    return 0
  fi
  command -v "$DIG_BIN" >/dev/null || return 0
  ((ETCD_TLS)) && service=_etcd-client-ssl
  while read -r prio weight port target; do
    [[ -n ${target:-} ]] || continue
    : "$prio" "$weight"
    target=${target%.}
    [[ ${target,,} != "${host%.}" ]] && printf '%s://%s:%s\n' "$scheme" "$target" "$ETCD_CLIENT_PORT"
  done < <("$DIG_BIN" +short SRV "$(srv_name)" 2>/dev/null || true)
  while read -r prio weight port target; do
    [[ -n ${target:-} ]] || continue
    : "$prio" "$weight"
    printf '%s://%s:%s\n' "$scheme" "${target%.}" "$port"
  done < <("$DIG_BIN" +short SRV "$service._tcp.${ETCD_DOMAIN%.}" 2>/dev/null || true)
}

# member_seen ID PEER HOST SCHEME: SEEN = what the running cluster's member list says of this member: started,
# unstarted, absent, or none (no member answered). Every endpoint is asked at once (a member still starting may
# hold a request until ETCD_CHECK_TIMEOUT).
SEEN=""
member_seen() {
  local id=$1 peer=$2 host=$3 scheme=$4 mid url out said asked n=0
  local -a tls=()
  ((ETCD_TLS)) && tls=(--cacert "$ETCD_TLS_CA" --cert "$ETCD_TLS_CERT" --key "$ETCD_TLS_KEY")
  mid=$(imds_get tags/instance/etcd-member-id) || mid=""
  [[ $mid =~ ^[0-9a-fA-F]{1,16}$ ]] || mid=""
  SEEN=none
  asked=$(mktemp -d)
  while read -r url; do
    [[ -n $url ]] || continue
    n=$((n + 1))
    printf '%s' "$url" >"$asked/$n.url"
    curl -sS --connect-timeout "$ETCD_CHECK_TIMEOUT" --max-time "$ETCD_CHECK_TIMEOUT" "${tls[@]}" \
      -X POST -d '{}' "${url%/}/v3/cluster/member/list" >"$asked/$n.out" 2>/dev/null &
  done < <(check_endpoints "$host" "$scheme")
  wait
  for ((; n > 0; n--)); do
    url=$(<"$asked/$n.url") out=$(<"$asked/$n.out")
    said=$("$PYTHON_BIN" -c '
import json, sys
peer, mid, name = sys.argv[1].lower().rstrip("/"), sys.argv[2], sys.argv[3]
try:
    members = json.loads(sys.stdin.read())["members"]
except (ValueError, KeyError, TypeError):
    print("none")
    sys.exit()
want = int(mid, 16) if mid else None
for m in members:
    if peer in [u.lower().rstrip("/") for u in m.get("peerURLs") or []] or int(m.get("ID") or 0) == want:
        n = m.get("name") or ""
        print("started" if m.get("clientURLs") or n == name or (n and not n.isdigit()) else "unstarted")
        break
else:
    print("absent")' "$peer" "$mid" "$id" <<<"$out") || continue
    case $said in
      started) SEEN=started; log "$url lists this member ($peer${mid:+, id $mid}) as started"; break ;;
      unstarted) SEEN=unstarted ;;
      absent) [[ $SEEN == unstarted ]] || SEEN=absent ;;
    esac
  done
  rm -rf -- "$asked"
}

# lost_data ID: etcd-data-lost=<now> on this instance (the coordinator's cue), then exit 1.
lost_data() {
  local id=$1 now region
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  region=$(imds_get placement/region) || region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
  log "the running cluster lists this member as started, but $ETCD_DATA_DIR holds no WAL: its data is lost;" \
    "started under the old member id with an empty log it could lose acknowledged writes"
  if "$AWS_BIN" ec2 create-tags --region "$region" --resources "$id" --tags "Key=etcd-data-lost,Value=$now" >/dev/null
  then
    log "instance tag etcd-data-lost=$now written: the coordinator removes the member and has the instance replaced"
  else
    log "could not write the instance tag etcd-data-lost (the instance role needs ec2:CreateTags on this" \
      "instance for that key)"
  fi
  die "this member's data is lost: etcd not started (the member must be removed and added again as a new one)"
}

# check_not_lost ID PEER HOST SCHEME: step 5 of the header, before a first start.
check_not_lost() {
  local deadline=$((SECONDS + BOOTSTRAP_TAG_TIMEOUT)) said=""
  reset_backoff
  while :; do
    member_seen "$@"
    case $SEEN in
      started) lost_data "$1" ;;
      unstarted) log "the running cluster lists this member unstarted: a first start"; return 0 ;;
      absent) log "the running cluster does not list this member: a first start"; return 0 ;;
    esac
    if [[ $CLUSTER_STATE != existing ]]; then
      log "no member of a running cluster answered: a first start ($CLUSTER_STATE)"
      return 0
    fi
    [[ -n $said ]] || log "no member of the running cluster answered its member list; asking again"
    said=1
    ((SECONDS < deadline)) || die "no member of the running cluster answered its member list within" \
      "${BOOTSTRAP_TAG_TIMEOUT}s (asked: $(check_endpoints "$3" "$4" | paste -sd' ')): a joiner never starts" \
      "without knowing whether its member already ran (needs dig or ETCD_CHECK_ENDPOINTS)"
    backoff
  done
}

main() {
  check_settings
  imds_token
  local id ip host
  id=$(imds_require instance-id)
  refuse_if_data_lost
  ip=$(imds_require local-ipv4)
  if [[ -n $ETCD_PEER_HOST ]]; then
    host=${ETCD_PEER_HOST//\{instance_id\}/$id}
  else
    host=$(imds_require local-hostname)
  fi
  local scheme=http
  local -a tls=()
  if ((ETCD_TLS)); then
    scheme=https
    tls=(
      --cert-file "$ETCD_TLS_CERT" --key-file "$ETCD_TLS_KEY" --trusted-ca-file "$ETCD_TLS_CA" --client-cert-auth
      --peer-cert-file "$ETCD_TLS_CERT" --peer-key-file "$ETCD_TLS_KEY" --peer-trusted-ca-file "$ETCD_TLS_CA"
      --peer-client-cert-auth --peer-cert-allowed-hostname "$ETCD_PEER_ALLOWED_HOSTNAME"
    )
  fi
  local peer="$scheme://$host:$ETCD_PEER_PORT"
  local -a urls=(
    --initial-advertise-peer-urls "$peer"
    --listen-peer-urls "$scheme://$ip:$ETCD_PEER_PORT"
    --listen-client-urls "$scheme://$ip:$ETCD_CLIENT_PORT,$scheme://127.0.0.1:$ETCD_CLIENT_PORT"
    --advertise-client-urls "$scheme://$ip:$ETCD_CLIENT_PORT"
    "${tls[@]}"
  )

  local revoked=0
  if wal_exists; then
    if admitted; then
      log "restart: $ETCD_DATA_DIR/member/wal holds a WAL; starting without discovery, keeping the data"
      if ((ETCD_TLS)); then fetch_tls && check_tls "$host" "$ip"; fi
      exec "$ETCD_BIN" --name "$id" "${urls[@]}" --data-dir "$ETCD_DATA_DIR" "$@"
    fi
    revoked=1
    log "a WAL but no tag etcd-cluster-state (404): membership revoked; data kept until joining the group"
  elif [[ -e $ETCD_DATA_DIR/member ]]; then
    log "leftover of a failed first start: $ETCD_DATA_DIR/member has no WAL; clearing $ETCD_DATA_DIR" \
      "and starting as a first start again"
    clear_data_dir
  fi

  wait_in_service
  if ((revoked)); then
    log "membership revoked: the WAL is of a member etcd removed (back to the warm pool); clearing" \
      "$ETCD_DATA_DIR and starting as a first start (a new member)"
    clear_data_dir
  fi
  wait_cluster_state
  if [[ $CLUSTER_STATE == restore ]]; then check_restore; fi
  if ((ETCD_TLS)); then fetch_tls && check_tls "$host" "$ip"; fi
  check_not_lost "$id" "$peer" "$host" "$scheme"
  if [[ $CLUSTER_STATE == restore ]]; then
    restore_data "$id" "$peer"
    log "starting etcd as $id (restored one-member cluster, peer $peer)"
    exec "$ETCD_BIN" --name "$id" "${urls[@]}" --data-dir "$ETCD_DATA_DIR" "$@"
  fi
  wait_srv_lists "$host"
  local -a discovery=(--discovery-srv "${ETCD_DOMAIN%.}")
  if [[ -n $ETCD_DISCOVERY_SRV_NAME ]]; then
    discovery+=(--discovery-srv-name "$ETCD_DISCOVERY_SRV_NAME")
  fi
  log "starting etcd as $id ($CLUSTER_STATE cluster, peer $peer)"
  exec "$ETCD_BIN" --name "$id" "${discovery[@]}" "${urls[@]}" \
    --initial-cluster-token "$ETCD_INITIAL_CLUSTER_TOKEN" --initial-cluster-state "$CLUSTER_STATE" \
    --data-dir "$ETCD_DATA_DIR" "$@"
}

main "$@"
