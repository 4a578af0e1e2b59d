"""Settings: every environment variable the coordinator reads, validated once at cold start.

The seed's names (``project_name`` ... ``log_level``) keep their names and meaning; the rest
are new. ``SETTINGS_SPEC`` is the single list docs/settings.md is generated from (``make docs``;
tests/docs check it) and the CloudFormation template is checked against (tests/aws/test_template_agrees.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hook_handler.exceptions import CoordinatorError, SettingsError

_ZONE_ID = re.compile(r"^(?:/hostedzone/)?([A-Z0-9]{1,32})$")
_DOMAIN = re.compile(r"^(?=.{1,253}\.?$)(?:(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\.)*(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\.?$")
_LABELS = re.compile(r"^(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}$")
_ASG_NAME = re.compile(r"^[\w\-.:/@+=]{1,255}$")
_TAG_KEY = re.compile(r"^[\w .:/=+\-@]{1,128}$")
_URL = re.compile(r"^https?://[^\s/]+(?::\d+)?/?$")
_SECRET_ID = re.compile(r"^(?:arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:)?[A-Za-z0-9/_+=.@-]{1,512}$")
_SECRET_PREFIX = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,400}/$")
_ROLE_PATH = re.compile(r"^/(?:[\x21-\x7e]{1,510}/)$")  # IAM's path pattern, "/" alone excluded: every role
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Spec:
    """One environment variable: its name, default (None = required or optional-empty) and doc."""

    name: str
    default: str | None
    doc: str  # Markdown (backticks for names and values): docs/settings.md is generated from it
    required: bool = False
    expected: str = ""  # plain text, for the error when a required setting is missing

    @property
    def plain_doc(self) -> str:
        """``doc`` as plain text, for ``--help`` and error messages."""
        return plain(self.doc)


def plain(text: str) -> str:
    """Markdown code spans and emphasis as plain text.

    >>> plain("Instances must carry tag `Project=<value>`; *group* tags (`Key=*`: tag present)")
    'Instances must carry tag Project=<value>; group tags (Key=*: tag present)'
    """
    return re.sub(r"(?<![\w=])\*(\w[^*]*?)\*", r"\1", text).replace("`", "")


SETTINGS_SPEC: tuple[Spec, ...] = (
    # -- the seed's contract --------------------------------------------------------------
    Spec("project_name", "", "Instances must carry tag `Project=<value>` (as etcd-asg-helper did). Empty: no filter."),
    Spec(
        "environment", "", "Instances must carry tag `Environment=<value>` (as etcd-asg-helper did). Empty: no filter."
    ),
    Spec("etcd_tag_name", "", "Instances must carry tag `<value>=true` (as etcd-asg-helper did). Empty: no filter."),
    Spec("srv_record_name", "_etcd-server._tcp", "SRV record for etcd peers, relative to `domain_name`."),
    Spec(
        "domain_name",
        None,
        "The hosted zone's domain, e.g. `example.com`.",
        required=True,
        expected="the hosted zone's domain name, e.g. example.com",
    ),
    Spec(
        "r53_zone_id",
        None,
        "Route 53 hosted zone id (`Z...` or `/hostedzone/Z...`).",
        required=True,
        expected="the Route 53 hosted zone id, e.g. Z0123456789ABCDEFGHIJ (aws route53 list-hosted-zones)",
    ),
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
    Spec(
        "launch_hook_name",
        "",
        "The coordinator's launch hook: the only launch hook whose actions it completes or heartbeats (an event "
        "naming another is refused). Empty: the group's only launching hook.",
    ),
    Spec(
        "terminate_hook_name",
        "",
        "The coordinator's terminate hook: the only terminate hook whose actions it completes or heartbeats (an "
        "event naming another is refused). Empty: the group's only terminating hook.",
    ),
    # -- etcd membership ------------------------------------------------------------------------
    Spec(
        "etcd_membership",
        "true",
        "Manage etcd's member list: `member add` (as a learner, then promoted) before a joiner's go signal, "
        "`member remove` before a leaver leaves the record, never below quorum. `false`: DNS only (see "
        "docs/how-it-works.md).",
    ),
    Spec(
        "disaster_recovery",
        "auto",
        "When etcd's quorum is lost for good and no voter's instance runs (every member gone, or the group scaled to "
        "zero and back): `auto` restores the newest snapshot in `snapshot_bucket` onto the first launching instance "
        "and lets the others join it; `manual` holds the launches, alarms and has `status` print the restore "
        "command. Never founds an empty cluster over one that existed.",
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
        "etcd_member_role_path",
        "",
        "IAM path of the members' instance role (etcd-cluster.yaml gives its role `/etcd-asg/<coordinator stack>/`). "
        "Each member secret admits only that role's own session for its instance: the role's RoleId pinned "
        "(`aws:userid` = `<RoleId>:<instance-id>`) and the principal ARN checked. Required with `etcd_ca_secret`.",
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
SPEC_BY_NAME = {s.name: s for s in SETTINGS_SPEC}


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
    disaster_recovery: str = "auto"
    member_start_timeout_seconds: float = 300.0
    etcd_endpoints: tuple[str, ...] = ()
    etcd_client_srv: str = ""
    etcd_client_port: int = 2379
    etcd_peer_scheme: str = "http"
    etcd_tls_secret: str = ""
    etcd_ca_secret: str = ""
    etcd_member_secret_prefix: str = ""
    etcd_member_role_path: str = ""
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


def _check_tls(
    srv_name: str, scheme: str, secret: str, endpoints: tuple[str, ...], membership: bool
) -> list[SettingsError]:
    """TLS settings that agree: a TLS peer record (``_etcd-server-ssl``) means https peers and, with membership,
    a client TLS secret; https endpoints need the secret, http ones contradict it. Returns every disagreement."""
    errors: list[SettingsError] = []
    if secret and not _SECRET_ID.match(secret):
        errors.append(
            SettingsError(
                "etcd_tls_secret", f"{secret!r} is not a secret name or ARN", "arn:aws:secretsmanager:... or a name"
            )
        )
    if srv_name.lower().split(".")[0].startswith("_etcd-server-ssl"):  # also etcd's --discovery-srv-name variants
        if scheme != "https":
            errors.append(
                SettingsError(
                    "etcd_peer_scheme",
                    f"is {scheme} but srv_record_name {srv_name!r} is the TLS peer record",
                    "https (or a plaintext srv_record_name such as _etcd-server._tcp)",
                )
            )
        if membership and not secret:
            errors.append(
                SettingsError(
                    "etcd_tls_secret",
                    f"is not set but srv_record_name {srv_name!r} is the TLS peer record: the coordinator cannot "
                    "reach a TLS etcd without a CA and a client certificate",
                    'the name or ARN of a secret holding {"ca", "cert", "key"} (or etcd_membership=false for DNS only)',
                )
            )
    for url in endpoints:
        if url.lower().startswith("https://") and not secret:
            errors.append(
                SettingsError(
                    "etcd_tls_secret",
                    f"is not set but etcd_endpoints has {url!r}",
                    "a secret with the CA and client certificate",
                )
            )
        if url.lower().startswith("http://") and secret:
            errors.append(
                SettingsError(
                    "etcd_endpoints",
                    f"{url!r} is plaintext but etcd_tls_secret is set",
                    "https:// URLs (or no etcd_tls_secret)",
                )
            )
    return errors


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


class InvalidSettings(SettingsError):
    """Every problem ``load_settings`` found, reported at once (``errors``, in the settings' order).

    ``variable`` and the message's first line are the first problem's, so a caller that knows one
    ``SettingsError`` reads it as before.

    Example:
        >>> try:
        ...     load_settings({"asg_names": "etcd"})
        ... except InvalidSettings as exc:
        ...     [e.variable for e in exc.errors]
        ['domain_name', 'r53_zone_id']
    """

    def __init__(self, errors: list[SettingsError]) -> None:
        self.errors = tuple(errors)
        self.variable = errors[0].variable
        CoordinatorError.__init__(self, "\n".join(str(e) for e in errors))


class _Reader:
    """Raw values, read with a check each; a failed check is recorded and a stand-in returned, so every
    setting is checked once and every problem reported together."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.raw = {s.name: environ[s.name] if environ.get(s.name) is not None else s.default for s in SETTINGS_SPEC}
        self.errors: list[SettingsError] = []

    def get(self, name: str) -> str:
        return (self.raw[name] or "").strip()

    def check(self, fallback: Any, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except SettingsError as exc:
            self.errors.append(exc)
            return fallback

    def fail(self, variable: str, problem: str, expected: str) -> None:
        self.errors.append(SettingsError(variable, problem, expected))

    def int(self, name: str, lo: int, hi: int) -> int:
        return self.check(lo, _int, name, self.get(name), lo, hi)

    def float(self, name: str, lo: float, hi: float) -> float:
        return self.check(float(lo), _float, name, self.get(name), lo, hi)

    def bool(self, name: str) -> bool:
        return self.check(SPEC_BY_NAME[name].default == "true", _bool, name, self.get(name))

    def choice(self, name: str, choices: tuple[str, ...], what: str, *, upper: bool = False) -> str:
        value = self.get(name).upper() if upper else self.get(name).lower()
        if value not in choices:
            self.fail(name, f"{value!r} is not {what}", " or ".join((", ".join(choices[:-1]), choices[-1])))
            return str(SPEC_BY_NAME[name].default)
        return value


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read and validate every setting; raise ``InvalidSettings`` listing every bad variable at once."""
    r = _Reader(environ)
    for spec in SETTINGS_SPEC:
        if spec.required and not r.get(spec.name):
            r.fail(spec.name, "is not set", spec.expected or plain(spec.doc))
    fields = _record_fields(r)
    fields.update(_selection_fields(r))
    fields.update(_etcd_fields(r, fields["srv_record_name"], fields["domain_name"]))
    fields.update(_timing_fields(r))
    fields.update(
        srv_record_ttl=r.int("srv_record_ttl", 0, 2_147_483_647),
        etcd_port=r.int("etcd_port", 1, 65535),
        log_level=r.choice("log_level", _LOG_LEVELS, "a log level", upper=True),
        srv_priority=r.int("srv_priority", 0, 65535),
        srv_weight=r.int("srv_weight", 0, 65535),
        bootstrap_barrier=r.bool("bootstrap_barrier"),
        cluster_size=r.int("cluster_size", 1, 1000) if r.get("cluster_size") else None,
        launch_failure_result=r.choice(
            "launch_failure_result", ("ABANDON", "CONTINUE"), "a lifecycle result", upper=True
        ),
        max_unexplained_removals=r.int("max_unexplained_removals", 0, 1000),
        launch_hook_name=r.get("launch_hook_name"),
        terminate_hook_name=r.get("terminate_hook_name"),
        tracing=r.bool("tracing"),
    )
    settings = Settings(**fields)
    if r.errors:
        order = {s.name: i for i, s in enumerate(SETTINGS_SPEC)}
        raise InvalidSettings(sorted(r.errors, key=lambda e: order.get(e.variable, len(order))))
    return settings


def _record_fields(r: _Reader) -> dict[str, Any]:
    """The zone, the peer record and how targets are named."""
    domain = r.get("domain_name")
    if domain and not _DOMAIN.match(domain):
        r.fail("domain_name", f"{domain!r} is not a domain name", "a DNS name such as example.com")
    domain = (domain.lower().rstrip(".") if _DOMAIN.match(domain) else "example.invalid") + "."
    zone = _ZONE_ID.match(r.get("r53_zone_id"))
    if r.get("r53_zone_id") and not zone:
        r.fail("r53_zone_id", f"{r.get('r53_zone_id')!r} is not a hosted zone id", "an id like Z0123456789ABCDEFGHIJ")
    srv_name = r.get("srv_record_name")
    if not _LABELS.match(srv_name.rstrip(".")) or not srv_name.startswith("_"):
        r.fail("srv_record_name", f"{srv_name!r} is not an SRV owner name", "a name such as _etcd-server._tcp")
        srv_name = str(SPEC_BY_NAME["srv_record_name"].default)
    template = r.get("a_record_template")
    try:
        label = template.format(instance_id="i-0123456789abcdef0", ip_dashed="10-0-0-1")
    except (KeyError, IndexError, ValueError) as exc:
        r.fail(
            "a_record_template", f"{template!r} has an unknown placeholder ({exc})", "{instance_id} and/or {ip_dashed}"
        )
    else:
        if not _LABELS.match(label):
            r.fail("a_record_template", f"{template!r} does not make a DNS label", "e.g. {instance_id}")
    return {
        "domain_name": domain,
        "r53_zone_id": zone.group(1) if zone else "",
        "srv_record_name": srv_name.rstrip("."),
        "target_mode": r.choice("target_mode", ("private-dns", "a-record"), "a target mode"),
        "a_record_template": template,
        "extra_srv_records": _extra_records(r, srv_name, domain),
    }


def _extra_records(r: _Reader, srv_name: str, domain: str) -> tuple[Any, ...]:
    extra = tuple(r.check([], _parse_extra_srv, r.get("extra_srv_records")))
    seen = {fqdn(srv_name, domain)}
    for item in extra:
        name = fqdn(item.name, domain)
        if name in seen:
            what = "the peer record (srv_record_name)" if name == fqdn(srv_name, domain) else "another extra record"
            r.fail(
                "extra_srv_records",
                f"{item.name!r} names {what}; it would rewrite that record with port {item.port}",
                "names other than srv_record_name, each once, e.g. _etcd-client._tcp:2379",
            )
        seen.add(name)
    return extra


def _selection_fields(r: _Reader) -> dict[str, Any]:
    """Which groups and instances are served."""
    asg_names = tuple(n.strip() for n in r.get("asg_names").split(",") if n.strip())
    for n in asg_names:
        if not _ASG_NAME.match(n):
            r.fail("asg_names", f"{n!r} is not an Auto Scaling group name", "comma-separated group names")
    selector = r.check((), parse_tag_selector, r.get("tag_selector"))
    seed_tags = any(r.get(n) for n in ("project_name", "environment", "etcd_tag_name"))
    if not asg_names and not r.get("tag_selector") and not seed_tags:
        r.fail(
            "asg_names",
            "no group and no tag selector is set, so every instance in the account would qualify",
            "asg_names, or tags to select by (project_name, environment, etcd_tag_name, tag_selector)",
        )
    return {
        "asg_names": asg_names,
        "tag_selector": selector,
        "project_name": r.get("project_name"),
        "environment": r.get("environment"),
        "etcd_tag_name": r.get("etcd_tag_name"),
    }


def _etcd_fields(r: _Reader, srv_name: str, domain: str) -> dict[str, Any]:
    """etcd membership, its endpoints and TLS."""
    endpoints = tuple(u.strip().rstrip("/") for u in r.get("etcd_endpoints").split(",") if u.strip())
    for u in endpoints:
        if not _URL.match(u):
            r.fail("etcd_endpoints", f"{u!r} is not a client URL", "URLs like http://10.0.1.4:2379")
    client_srv = r.get("etcd_client_srv")
    if client_srv and (not _LABELS.match(client_srv.rstrip(".")) or not client_srv.startswith("_")):
        r.fail("etcd_client_srv", f"{client_srv!r} is not an SRV owner name", "e.g. _etcd-client._tcp")
    scheme = r.choice("etcd_peer_scheme", ("http", "https"), "a URL scheme")
    tls_secret = r.get("etcd_tls_secret")
    membership = r.bool("etcd_membership")
    r.errors.extend(_check_tls(srv_name, scheme, tls_secret, endpoints, membership))
    return {
        "etcd_membership": membership,
        "disaster_recovery": r.choice("disaster_recovery", ("auto", "manual"), "a disaster recovery mode"),
        "member_start_timeout_seconds": r.float("member_start_timeout_seconds", 30, 172_800),
        "etcd_endpoints": endpoints,
        "etcd_client_srv": client_srv.rstrip("."),
        "etcd_client_port": r.int("etcd_client_port", 1, 65535),
        "etcd_peer_scheme": scheme,
        "etcd_tls_secret": tls_secret,
        **_member_certificate_fields(r, scheme, tls_secret, domain),
    }


def _member_certificate_fields(r: _Reader, scheme: str, tls_secret: str, domain: str) -> dict[str, Any]:
    ca_secret = r.get("etcd_ca_secret")
    if ca_secret and not _SECRET_ID.match(ca_secret):
        r.fail("etcd_ca_secret", f"{ca_secret!r} is not a secret name or ARN", "arn:aws:secretsmanager:... or a name")
    if ca_secret and scheme != "https":
        r.fail(
            "etcd_ca_secret",
            f"is set but etcd_peer_scheme is {scheme}: member certificates are for a TLS cluster",
            "etcd_peer_scheme=https (and the TLS peer record _etcd-server-ssl._tcp), or no etcd_ca_secret",
        )
    member_prefix = r.get("etcd_member_secret_prefix") or f"etcd-asg/{domain.rstrip('.')}/member/"
    if not _SECRET_PREFIX.match(member_prefix):
        r.fail(
            "etcd_member_secret_prefix",
            f"{member_prefix!r} is not a Secrets Manager name prefix",
            "letters, digits and /_+=.@- ending in / (e.g. etcd-asg/example.com/member/)",
        )
    for setting, secret in (("etcd_ca_secret", ca_secret), ("etcd_tls_secret", tls_secret)):
        if secret and _secret_name(secret).startswith(member_prefix):
            r.fail(
                "etcd_member_secret_prefix",
                f"{member_prefix!r} covers {setting} {secret!r}: every instance may read member secrets, and the "
                "coordinator deletes them",
                "a prefix of its own for the member secrets (the default etcd-asg/<domain_name>/member/)",
            )
    role_path = r.get("etcd_member_role_path")
    if ca_secret and not role_path:
        r.fail(
            "etcd_member_role_path",
            "is not set, but etcd_ca_secret is: a member secret must name the one role whose sessions may read it",
            "the IAM path of the members' instance role, e.g. /etcd-asg/<coordinator stack>/ (etcd-cluster.yaml)",
        )
    if role_path and not _ROLE_PATH.match(role_path):
        r.fail(
            "etcd_member_role_path",
            f"{role_path!r} is not an IAM path of its own",
            "a path such as /etcd-asg/etcd-coordinator/ (starting and ending with /; not / alone)",
        )
    return {
        "etcd_ca_secret": ca_secret,
        "etcd_member_role_path": role_path,
        "etcd_member_secret_prefix": member_prefix,
        "etcd_member_cert_days": r.float("etcd_member_cert_days", 1, 3650),
    }


def _timing_fields(r: _Reader) -> dict[str, Any]:
    """Polls, heartbeats, timeouts and margins."""
    poll = r.float("poll_interval_seconds", 0.1, 60)
    heartbeat = r.float("heartbeat_interval_seconds", 5, 3600)
    warnings: list[str] = []
    if heartbeat < poll:
        warnings.append("heartbeat_interval_seconds is shorter than poll_interval_seconds; heartbeats follow polls")
    return {
        "bootstrap_timeout_seconds": r.float("bootstrap_timeout_seconds", 0, 172_800),
        "poll_interval_seconds": poll,
        "poll_initial_delay_seconds": r.float("poll_initial_delay_seconds", 0, 600),
        "heartbeat_interval_seconds": heartbeat,
        "action_timeout_seconds": r.float("action_timeout_seconds", 30, 172_800),
        "deadline_margin_seconds": r.float("deadline_margin_seconds", 0, 600),
        "warnings": tuple(warnings),
    }


def _bound(x: float) -> str:
    """A range bound as a person writes it: 2147483647, 0.1, 600 (not 2.14748e+09)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _number(cast: Callable[[str], Any], kind: str, name: str, value: str, lo: float, hi: float) -> Any:
    expected = f"{kind} from {_bound(lo)} to {_bound(hi)}"
    try:
        number = cast(value)
    except ValueError:
        raise SettingsError(name, f"{value!r} is not {kind}", expected) from None
    if not lo <= number <= hi or number != number:  # NaN check
        raise SettingsError(name, f"{value} is out of range", expected)
    return number


def _int(name: str, value: str, lo: int, hi: int) -> int:
    return _number(int, "a whole number", name, value, lo, hi)


def _float(name: str, value: str, lo: float, hi: float) -> float:
    return float(_number(float, "a number", name, value, lo, hi))


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise SettingsError(name, f"{value!r} is not a boolean", "true or false")


def parse_tag_selector(value: str) -> tuple[tuple[str, str], ...]:
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
