"""Settings: every environment variable the coordinator reads, validated once at cold start.

The seed's names (``project_name`` ... ``log_level``) keep their names and meaning; the rest
are new. ``SETTINGS_SPEC`` is the single list the README table and the CloudFormation template
are checked against (tests/aws/test_template_agrees.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hook_handler.exceptions import SettingsError

_ZONE_ID = re.compile(r"^(?:/hostedzone/)?([A-Z0-9]{1,32})$")
_DOMAIN = re.compile(r"^(?=.{1,253}\.?$)(?:(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\.)*(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\.?$")
_LABELS = re.compile(r"^(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}$")
_ASG_NAME = re.compile(r"^[\w\-.:/@+=]{1,255}$")
_TAG_KEY = re.compile(r"^[\w .:/=+\-@]{1,128}$")
_URL = re.compile(r"^https?://[^\s/]+(?::\d+)?/?$")
_SECRET_ID = re.compile(r"^(?:arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:)?[A-Za-z0-9/_+=.@-]{1,512}$")
_SECRET_PREFIX = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,400}/$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Spec:
    """One environment variable: its name, default (None = required or optional-empty) and doc."""

    name: str
    default: str | None
    doc: str
    required: bool = False


SETTINGS_SPEC: tuple[Spec, ...] = (
    # -- the seed's contract --------------------------------------------------------------
    Spec("project_name", "", "Instances must carry tag `Project=<value>` (seed). Empty: no filter."),
    Spec("environment", "", "Instances must carry tag `Environment=<value>` (seed). Empty: no filter."),
    Spec("etcd_tag_name", "", "Instances must carry tag `<value>=true` (seed). Empty: no filter."),
    Spec("srv_record_name", "_etcd-server._tcp", "SRV record for etcd peers, relative to `domain_name`."),
    Spec("domain_name", None, "The hosted zone's domain, e.g. `example.com`.", required=True),
    Spec("r53_zone_id", None, "Route 53 hosted zone id (`Z...` or `/hostedzone/Z...`).", required=True),
    Spec("srv_record_ttl", "60", "TTL in seconds of the SRV (and A) records."),
    Spec("etcd_port", "2380", "Peer port written in the SRV record."),
    Spec("log_level", "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL."),
    # -- which instances belong -----------------------------------------------------------
    Spec(
        "asg_names",
        "",
        "Comma-separated Auto Scaling groups served. Empty: groups whose *group* tags match the tag selector.",
    ),
    Spec(
        "tag_selector",
        "",
        "Extra instance tags that must match: `Key=Value,Key2=Value2` (`Key=*`: tag present) or a JSON object.",
    ),
    # -- what the record says ---------------------------------------------------------------
    Spec("srv_priority", "0", "SRV priority of every target (0-65535)."),
    Spec("srv_weight", "0", "SRV weight of every target (0-65535)."),
    Spec(
        "target_mode",
        "private-dns",
        "`private-dns`: SRV targets are the instances' private DNS names. "
        "`a-record`: the coordinator also keeps one A record per member (see `a_record_template`).",
    ),
    Spec(
        "a_record_template",
        "{instance_id}",
        "With `target_mode=a-record`: host label of each member's A record under `domain_name`; "
        "placeholders `{instance_id}`, `{ip_dashed}`.",
    ),
    Spec(
        "extra_srv_records",
        "",
        "More SRV records listing the same members: `name:port,...`, e.g. `_etcd-client._tcp:2379`.",
    ),
    # -- a new cluster ----------------------------------------------------------------------
    Spec("bootstrap_barrier", "true", "Hold the launches of a new cluster until the record can list them all."),
    Spec("cluster_size", "", "Members a new cluster waits for. Empty: the group's desired capacity."),
    Spec(
        "bootstrap_timeout_seconds",
        "600",
        "After this long since the first held launch, bootstrap with the instances that did arrive.",
    ),
    # -- waits and failure ------------------------------------------------------------------
    Spec("poll_interval_seconds", "1.0", "Seconds between GetChange polls while a change propagates."),
    Spec("poll_initial_delay_seconds", "1.0", "Seconds before the first GetChange poll."),
    Spec("heartbeat_interval_seconds", "60", "Seconds between RecordLifecycleActionHeartbeat calls while waiting."),
    Spec(
        "action_timeout_seconds",
        "900",
        "Give up on a lifecycle action this long after it started and apply `launch_failure_result`. With etcd "
        "membership a launch on its way in (queued, listed and waiting for INSYNC, or told to start) is governed "
        "by `member_start_timeout_seconds` instead, and a `member add` that keeps failing gets this long from the "
        "add.",
    ),
    Spec(
        "launch_failure_result",
        "ABANDON",
        "Result for a launch whose record could not be made right: ABANDON or CONTINUE. With etcd membership "
        "always ABANDON: a launch never continues without a healthy member.",
    ),
    Spec(
        "deadline_margin_seconds",
        "10",
        "Stop this long before the Lambda deadline and hand the rest to a retry.",
    ),
    Spec(
        "max_unexplained_removals",
        "0",
        "Members one change may drop without an event or API state explaining it (the removal guard).",
    ),
    Spec("launch_hook_name", "", "Launch hook name, to complete other instances' actions. Empty: discovered."),
    Spec("terminate_hook_name", "", "Terminate hook name, to complete other instances' actions. Empty: discovered."),
    # -- etcd membership ------------------------------------------------------------------------
    Spec(
        "etcd_membership",
        "true",
        "Manage etcd's member list: `member add` (as a learner, then promoted) before a joiner's go signal, "
        "`member remove` before a leaver leaves the record, never below quorum. `false`: DNS only (see README).",
    ),
    Spec(
        "member_start_timeout_seconds",
        "300",
        "A member added to etcd that has not started and become healthy this long after `member add` is removed "
        "again and its launch ABANDONed, so the group replaces it.",
    ),
    Spec(
        "etcd_endpoints",
        "",
        "etcd client URLs (comma-separated) to reach the cluster. Empty: the targets of `etcd_client_srv` when set, "
        "then the members' private IPs on `etcd_client_port` (`https` with `etcd_tls_secret`).",
    ),
    Spec(
        "etcd_client_srv",
        "",
        "Or: an SRV record in the zone listing the members' client ports, e.g. `_etcd-client._tcp` or "
        "`_etcd-client-ssl._tcp` (read through Route 53 at most once a minute; its targets are dialled by name, so "
        "with TLS the member certificates must name them).",
    ),
    Spec("etcd_client_port", "2379", "Client port of members when endpoints come from the member list."),
    Spec("etcd_peer_scheme", "http", "Scheme of peer URLs given to `member add`: http or https."),
    Spec(
        "etcd_tls_secret",
        "",
        "AWS Secrets Manager secret (ARN or name) holding the coordinator's etcd client TLS as JSON "
        '`{"ca": PEM, "cert": PEM, "key": PEM}`; set: client URLs are `https`, members are verified against `ca` '
        "(host names included) and the coordinator presents `cert`. Required with `_etcd-server-ssl` records.",
    ),
    Spec(
        "etcd_ca_secret",
        "",
        "AWS Secrets Manager secret (ARN or name) holding the cluster's issuing CA as JSON "
        '`{"cert": PEM, "key": PEM}`; set: before its go signal every admitted instance gets its own key and '
        "certificate (SANs: peer host, private DNS name, private IP, `domain_name`) in the secret "
        "`<etcd_member_secret_prefix><instance-id>`, readable by that instance only (tag `etcd-member-cert`).",
    ),
    Spec(
        "etcd_member_secret_prefix",
        "",
        "Name prefix of the member certificate secrets. Empty: `etcd-asg/<domain_name>/member/`.",
    ),
    Spec(
        "etcd_member_cert_days",
        "365",
        "Validity of a member certificate in days (capped by the CA's). Rotation is by replacement: keep the "
        "group's maximum instance lifetime (or your instance refreshes) shorter.",
    ),
    # -- snapshots to S3 (read and checked by hook_handler.backup.config) -----------------------
    Spec(
        "snapshot_bucket",
        "",
        "S3 bucket for etcd snapshots (the stack's snapshot bucket). Empty: no snapshots are taken.",
    ),
    Spec("snapshot_prefix", "etcd-snapshots/", "Key prefix of the snapshots in `snapshot_bucket`."),
    Spec(
        "snapshot_interval_seconds",
        "60",
        "Seconds between snapshots (10-86400); a snapshot is skipped while etcd's revision has not moved.",
    ),
    Spec(
        "snapshot_kms_key",
        "",
        "KMS key (ARN, key id or alias) the snapshots are encrypted with (SSE-KMS). Empty: S3-managed keys (SSE-S3).",
    ),
    Spec(
        "snapshot_retention",
        "all=1h,hourly=7d,daily=90d",
        "Snapshots kept: every one younger than `all`, the oldest per hour younger than `hourly`, the oldest per "
        "day younger than `daily`; the newest is never deleted.",
    ),
    # -- telemetry --------------------------------------------------------------------------
    Spec("tracing", "false", "Send X-Ray traces through powertools Tracer (true/false)."),
)

SETTING_NAMES = frozenset(s.name for s in SETTINGS_SPEC)


@dataclass(frozen=True)
class ExtraSrv:
    """An additional SRV record listing the same members on another port."""

    name: str
    port: int


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build with ``load_settings``.

    Example:
        >>> s = load_settings({"domain_name": "example.com", "r53_zone_id": "Z1", "asg_names": "etcd"})
        >>> s.srv_fqdn, s.asg_names
        ('_etcd-server._tcp.example.com.', ('etcd',))
    """

    domain_name: str  # normalised: lower case, trailing dot
    r53_zone_id: str  # bare id, without /hostedzone/
    srv_record_name: str
    srv_record_ttl: int
    etcd_port: int
    log_level: str
    project_name: str = ""
    environment: str = ""
    etcd_tag_name: str = ""
    asg_names: tuple[str, ...] = ()
    tag_selector: tuple[tuple[str, str], ...] = ()  # value "*" = tag present
    srv_priority: int = 0
    srv_weight: int = 0
    target_mode: str = "private-dns"
    a_record_template: str = "{instance_id}"
    extra_srv_records: tuple[ExtraSrv, ...] = ()
    bootstrap_barrier: bool = True
    cluster_size: int | None = None
    bootstrap_timeout_seconds: float = 600.0
    poll_interval_seconds: float = 1.0
    poll_initial_delay_seconds: float = 1.0
    heartbeat_interval_seconds: float = 60.0
    action_timeout_seconds: float = 900.0
    launch_failure_result: str = "ABANDON"
    deadline_margin_seconds: float = 10.0
    max_unexplained_removals: int = 0
    launch_hook_name: str = ""
    terminate_hook_name: str = ""
    etcd_membership: bool = True
    member_start_timeout_seconds: float = 300.0
    etcd_endpoints: tuple[str, ...] = ()
    etcd_client_srv: str = ""
    etcd_client_port: int = 2379
    etcd_peer_scheme: str = "http"
    etcd_tls_secret: str = ""
    etcd_ca_secret: str = ""
    etcd_member_secret_prefix: str = ""
    etcd_member_cert_days: float = 365.0
    tracing: bool = False
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def srv_fqdn(self) -> str:
        return fqdn(self.srv_record_name, self.domain_name)

    @property
    def srv_records(self) -> tuple[tuple[str, int], ...]:
        """Every SRV record the coordinator owns, as (fqdn, port); the peer record first."""
        extra = ((fqdn(e.name, self.domain_name), e.port) for e in self.extra_srv_records)
        return ((self.srv_fqdn, self.etcd_port), *extra)

    @property
    def instance_tags(self) -> tuple[tuple[str, str], ...]:
        """Every tag an instance must carry: the seed's three (when set) and ``tag_selector``."""
        tags: list[tuple[str, str]] = []
        if self.project_name:
            tags.append(("Project", self.project_name))
        if self.environment:
            tags.append(("Environment", self.environment))
        if self.etcd_tag_name:
            tags.append((self.etcd_tag_name, "true"))
        tags.extend(self.tag_selector)
        return tuple(tags)

    @property
    def membership_enabled(self) -> bool:
        return self.etcd_membership

    @property
    def etcd_client_scheme(self) -> str:
        """``https`` when the coordinator has client TLS (``etcd_tls_secret``), else ``http``."""
        return "https" if self.etcd_tls_secret else "http"


def _secret_name(secret: str) -> str:
    """A secret's name from its name or ARN (an ARN ends in ``-`` and six random characters).

    >>> _secret_name("arn:aws:secretsmanager:us-east-1:123456789012:secret:etcd/ca-AbCdEf"), _secret_name("etcd/ca")
    ('etcd/ca', 'etcd/ca')
    """
    if ":secret:" in secret:
        name = secret.split(":secret:", 1)[1]
        return name[:-7] if len(name) > 7 and name[-7] == "-" else name
    return secret


def _check_tls(srv_name: str, scheme: str, secret: str, endpoints: tuple[str, ...], membership: bool) -> None:
    """TLS settings that agree: a TLS peer record (``_etcd-server-ssl``) means https peers and, with membership,
    a client TLS secret; https endpoints need the secret, http ones contradict it."""
    if secret and not _SECRET_ID.match(secret):
        raise SettingsError(
            "etcd_tls_secret", f"{secret!r} is not a secret name or ARN", "arn:aws:secretsmanager:... or a name"
        )
    if srv_name.lower().split(".")[0].startswith("_etcd-server-ssl"):  # also etcd's --discovery-srv-name variants
        if scheme != "https":
            raise SettingsError(
                "etcd_peer_scheme",
                f"is {scheme} but srv_record_name {srv_name!r} is the TLS peer record",
                "https (or a plaintext srv_record_name such as _etcd-server._tcp)",
            )
        if membership and not secret:
            raise SettingsError(
                "etcd_tls_secret",
                f"is not set but srv_record_name {srv_name!r} is the TLS peer record: the coordinator cannot reach "
                "a TLS etcd without a CA and a client certificate",
                'the name or ARN of a secret holding {"ca", "cert", "key"} (or etcd_membership=false for DNS only)',
            )
    for url in endpoints:
        if url.lower().startswith("https://") and not secret:
            raise SettingsError(
                "etcd_tls_secret",
                f"is not set but etcd_endpoints has {url!r}",
                "a secret with the CA and client certificate",
            )
        if url.lower().startswith("http://") and secret:
            raise SettingsError(
                "etcd_endpoints",
                f"{url!r} is plaintext but etcd_tls_secret is set",
                "https:// URLs (or no etcd_tls_secret)",
            )


def fqdn(name: str, domain: str) -> str:
    """``name`` made absolute under ``domain`` (already-absolute names kept), lower case, trailing dot.

    >>> fqdn("_etcd-server._tcp", "example.com.")
    '_etcd-server._tcp.example.com.'
    >>> fqdn("_etcd-server._tcp.example.com", "example.com.")
    '_etcd-server._tcp.example.com.'
    """
    name = name.strip().lower().rstrip(".")
    domain = domain.lower().rstrip(".")
    if name == domain or name.endswith("." + domain):
        return name + "."
    return f"{name}.{domain}."


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read and validate every setting; raise ``SettingsError`` naming the first bad variable."""
    raw = {s.name: (environ.get(s.name) if environ.get(s.name) not in (None,) else s.default) for s in SETTINGS_SPEC}
    for spec in SETTINGS_SPEC:
        if spec.required and not (raw[spec.name] or "").strip():
            raise SettingsError(spec.name, "is not set", spec.doc)

    def get(name: str) -> str:
        return (raw[name] or "").strip()

    domain = get("domain_name")
    if not _DOMAIN.match(domain):
        raise SettingsError("domain_name", f"{domain!r} is not a domain name", "a DNS name such as example.com")
    domain = domain.lower().rstrip(".") + "."

    zone = _ZONE_ID.match(get("r53_zone_id"))
    if not zone:
        raise SettingsError(
            "r53_zone_id", f"{get('r53_zone_id')!r} is not a hosted zone id", "an id like Z0123456789ABCDEFGHIJ"
        )

    srv_name = get("srv_record_name")
    if not _LABELS.match(srv_name.rstrip(".")) or not srv_name.startswith("_"):
        raise SettingsError(
            "srv_record_name", f"{srv_name!r} is not an SRV owner name", "a name such as _etcd-server._tcp"
        )

    asg_names = tuple(n.strip() for n in get("asg_names").split(",") if n.strip())
    for n in asg_names:
        if not _ASG_NAME.match(n):
            raise SettingsError("asg_names", f"{n!r} is not an Auto Scaling group name", "comma-separated group names")

    selector = _parse_tag_selector(get("tag_selector"))
    seed_tags = any(get(n) for n in ("project_name", "environment", "etcd_tag_name"))
    if not asg_names and not selector and not seed_tags:
        raise SettingsError(
            "asg_names",
            "no group and no tag selector is set, so every instance in the account would qualify",
            "asg_names, or tags to select by (project_name, environment, etcd_tag_name, tag_selector)",
        )

    target_mode = get("target_mode").lower()
    if target_mode not in ("private-dns", "a-record"):
        raise SettingsError("target_mode", f"{target_mode!r} is not a target mode", "private-dns or a-record")
    template = get("a_record_template")
    try:
        label = template.format(instance_id="i-0123456789abcdef0", ip_dashed="10-0-0-1")
    except (KeyError, IndexError, ValueError) as exc:
        raise SettingsError(
            "a_record_template", f"{template!r} has an unknown placeholder ({exc})", "{instance_id} and/or {ip_dashed}"
        ) from exc
    if not _LABELS.match(label):
        raise SettingsError("a_record_template", f"{template!r} does not make a DNS label", "e.g. {instance_id}")

    extra = tuple(_parse_extra_srv(get("extra_srv_records")))
    seen = {fqdn(srv_name, domain)}
    for item in extra:
        name = fqdn(item.name, domain)
        if name in seen:
            what = "the peer record (srv_record_name)" if name == fqdn(srv_name, domain) else "another extra record"
            raise SettingsError(
                "extra_srv_records",
                f"{item.name!r} names {what}; it would rewrite that record with port {item.port}",
                "names other than srv_record_name, each once, e.g. _etcd-client._tcp:2379",
            )
        seen.add(name)
    endpoints = tuple(u.strip().rstrip("/") for u in get("etcd_endpoints").split(",") if u.strip())
    for u in endpoints:
        if not _URL.match(u):
            raise SettingsError("etcd_endpoints", f"{u!r} is not a client URL", "URLs like http://10.0.1.4:2379")
    client_srv = get("etcd_client_srv")
    if client_srv and (not _LABELS.match(client_srv.rstrip(".")) or not client_srv.startswith("_")):
        raise SettingsError("etcd_client_srv", f"{client_srv!r} is not an SRV owner name", "e.g. _etcd-client._tcp")

    failure = get("launch_failure_result").upper()
    if failure not in ("ABANDON", "CONTINUE"):
        raise SettingsError("launch_failure_result", f"{failure!r} is not a lifecycle result", "ABANDON or CONTINUE")
    level = get("log_level").upper()
    if level not in _LOG_LEVELS:
        raise SettingsError("log_level", f"{level!r} is not a log level", ", ".join(_LOG_LEVELS))
    scheme = get("etcd_peer_scheme").lower()
    if scheme not in ("http", "https"):
        raise SettingsError("etcd_peer_scheme", f"{scheme!r} is not a URL scheme", "http or https")

    tls_secret = get("etcd_tls_secret")
    membership = _bool("etcd_membership", get("etcd_membership"))
    _check_tls(srv_name, scheme, tls_secret, endpoints, membership)
    ca_secret = get("etcd_ca_secret")
    if ca_secret and not _SECRET_ID.match(ca_secret):
        raise SettingsError("etcd_ca_secret", f"{ca_secret!r} is not a secret name or ARN", "arn:aws:secretsmanager:..")
    if ca_secret and scheme != "https":
        raise SettingsError(
            "etcd_ca_secret",
            f"is set but etcd_peer_scheme is {scheme}: member certificates are for a TLS cluster",
            "etcd_peer_scheme=https (and the TLS peer record _etcd-server-ssl._tcp), or no etcd_ca_secret",
        )
    member_prefix = get("etcd_member_secret_prefix") or f"etcd-asg/{domain.rstrip('.')}/member/"
    if not _SECRET_PREFIX.match(member_prefix):
        raise SettingsError(
            "etcd_member_secret_prefix",
            f"{member_prefix!r} is not a Secrets Manager name prefix",
            "letters, digits and /_+=.@- ending in / (e.g. etcd-asg/example.com/member/)",
        )
    for setting, secret in (("etcd_ca_secret", ca_secret), ("etcd_tls_secret", tls_secret)):
        if secret and _secret_name(secret).startswith(member_prefix):
            raise SettingsError(
                "etcd_member_secret_prefix",
                f"{member_prefix!r} covers {setting} {secret!r}: every instance may read member secrets, and the "
                "coordinator deletes them",
                "a prefix of its own for the member secrets (the default etcd-asg/<domain_name>/member/)",
            )

    cluster_size_raw = get("cluster_size")
    cluster_size = _int("cluster_size", cluster_size_raw, 1, 1000) if cluster_size_raw else None

    poll = _float("poll_interval_seconds", get("poll_interval_seconds"), 0.1, 60)
    heartbeat = _float("heartbeat_interval_seconds", get("heartbeat_interval_seconds"), 5, 3600)
    warnings: list[str] = []
    if heartbeat < poll:
        warnings.append("heartbeat_interval_seconds is shorter than poll_interval_seconds; heartbeats follow polls")

    return Settings(
        domain_name=domain,
        r53_zone_id=zone.group(1),
        srv_record_name=srv_name.rstrip("."),
        srv_record_ttl=_int("srv_record_ttl", get("srv_record_ttl"), 0, 2_147_483_647),
        etcd_port=_int("etcd_port", get("etcd_port"), 1, 65535),
        log_level=level,
        project_name=get("project_name"),
        environment=get("environment"),
        etcd_tag_name=get("etcd_tag_name"),
        asg_names=asg_names,
        tag_selector=selector,
        srv_priority=_int("srv_priority", get("srv_priority"), 0, 65535),
        srv_weight=_int("srv_weight", get("srv_weight"), 0, 65535),
        target_mode=target_mode,
        a_record_template=template,
        extra_srv_records=extra,
        bootstrap_barrier=_bool("bootstrap_barrier", get("bootstrap_barrier")),
        cluster_size=cluster_size,
        bootstrap_timeout_seconds=_float("bootstrap_timeout_seconds", get("bootstrap_timeout_seconds"), 0, 172_800),
        poll_interval_seconds=poll,
        poll_initial_delay_seconds=_float("poll_initial_delay_seconds", get("poll_initial_delay_seconds"), 0, 600),
        heartbeat_interval_seconds=heartbeat,
        action_timeout_seconds=_float("action_timeout_seconds", get("action_timeout_seconds"), 30, 172_800),
        launch_failure_result=failure,
        deadline_margin_seconds=_float("deadline_margin_seconds", get("deadline_margin_seconds"), 0, 600),
        max_unexplained_removals=_int("max_unexplained_removals", get("max_unexplained_removals"), 0, 1000),
        launch_hook_name=get("launch_hook_name"),
        terminate_hook_name=get("terminate_hook_name"),
        etcd_membership=membership,
        member_start_timeout_seconds=_float(
            "member_start_timeout_seconds", get("member_start_timeout_seconds"), 30, 172_800
        ),
        etcd_endpoints=endpoints,
        etcd_client_srv=client_srv.rstrip("."),
        etcd_client_port=_int("etcd_client_port", get("etcd_client_port"), 1, 65535),
        etcd_peer_scheme=scheme,
        etcd_tls_secret=tls_secret,
        etcd_ca_secret=ca_secret,
        etcd_member_secret_prefix=member_prefix,
        etcd_member_cert_days=_float("etcd_member_cert_days", get("etcd_member_cert_days"), 1, 3650),
        tracing=_bool("tracing", get("tracing")),
        warnings=tuple(warnings),
    )


def _number(cast: Callable[[str], Any], kind: str, name: str, value: str, lo: float, hi: float) -> Any:
    try:
        number = cast(value)
    except ValueError:
        raise SettingsError(name, f"{value!r} is not {kind}", f"{kind} from {lo:g} to {hi:g}") from None
    if not lo <= number <= hi or number != number:  # NaN check
        raise SettingsError(name, f"{value} is out of range", f"{kind} from {lo:g} to {hi:g}")
    return number


def _int(name: str, value: str, lo: int, hi: int) -> int:
    return _number(int, "an integer", name, value, lo, hi)


def _float(name: str, value: str, lo: float, hi: float) -> float:
    return float(_number(float, "a number", name, value, lo, hi))


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise SettingsError(name, f"{value!r} is not a boolean", "true or false")


def _parse_tag_selector(value: str) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()
    pairs: list[tuple[str, str]]
    if value.startswith("{"):
        try:
            obj = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                "tag_selector", f"is not valid JSON ({exc.msg})", 'a JSON object like {"Role": "etcd"}'
            ) from None
        if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
            raise SettingsError(
                "tag_selector", "JSON must be an object of strings", 'a JSON object like {"Role": "etcd"}'
            )
        pairs = list(obj.items())
    else:
        pairs = []
        for item in value.split(","):
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise SettingsError(
                    "tag_selector", f"{item.strip()!r} is not Key=Value", "Key=Value pairs separated by commas"
                )
            pairs.append((key.strip(), val.strip()))
    for key, _ in pairs:
        if not _TAG_KEY.match(key) or key.lower().startswith("aws:"):
            raise SettingsError("tag_selector", f"{key!r} is not a usable tag key", "tag keys of 1-128 characters")
    return tuple(pairs)


def _parse_extra_srv(value: str) -> list[ExtraSrv]:
    out: list[ExtraSrv] = []
    for item in (i.strip() for i in value.split(",") if i.strip()):
        name, sep, port = item.rpartition(":")
        if not sep or not name.startswith("_") or not _LABELS.match(name.rstrip(".")):
            raise SettingsError("extra_srv_records", f"{item!r} is not name:port", "e.g. _etcd-client._tcp:2379")
        out.append(ExtraSrv(name=name.rstrip("."), port=_int("extra_srv_records", port, 1, 65535)))
    return out
