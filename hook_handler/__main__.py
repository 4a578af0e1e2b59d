"""Command line: python -m hook_handler reconcile | status | restore | pki init | check-hooks (see --help, and
docs/operations.md).

Runs the coordinator's pass, or its read-only look, from a shell with the same settings (environment
variables) and AWS credentials the Lambda function has. Every failure a user can fix (a setting, the region,
credentials, a permission, something that does not exist, etcd not answering) ends in one plain line per problem
on stderr and a documented exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hook_handler.exceptions import CoordinatorError, DeadlineReached, SettingsError
from hook_handler.settings import SETTINGS_SPEC, Settings, load_settings

if TYPE_CHECKING:
    from hook_handler.app import Clients, Runtime

PROG = "python -m hook_handler"
# Exit status (docs/operations.md, "Exit status").
EXIT_OK = 0
EXIT_AWS = 1  # AWS could not be called, refused, or lacks what a setting names; a secret holds the wrong thing
EXIT_SETTINGS = 2  # a setting (environment variable) or the command line is wrong
EXIT_ETCD = 3  # etcd did not answer, or its TLS handshake failed (status still prints its table)
EXIT_REFUSED = 4  # restore refused: the cluster's members answer, or its voters still run (the message says what to do)

EXIT_STATUS_HELP = f"""\
exit status:
  {EXIT_OK}  done
  {EXIT_AWS}  AWS could not be used: no region, no credentials, access denied, a hosted zone, group or secret
     that does not exist, the network, a secret that does not hold what it should
  {EXIT_SETTINGS}  a setting (environment variable) or the command line is wrong; every bad setting is listed
  {EXIT_ETCD}  etcd did not answer, or refused the TLS handshake (status prints its table all the same)
  {EXIT_REFUSED}  restore refused: members of the cluster answer, or its voters still run (nothing changed)"""

AWS_ENV_HELP = """\
AWS (read by every command):
  AWS_REGION or AWS_DEFAULT_REGION  required: the region of the groups (or a region in your AWS profile)
  credentials                       the usual chain: AWS_PROFILE, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
                                    or an instance or container role
  AWS_ENDPOINT_URL                  optional: another endpoint, e.g. the emulated AWS (python -m infra.local serve)"""


def _first_sentence(text: str) -> str:
    """The first sentence of a setting's description (``e.g.`` and ``i.e.`` do not end one)."""
    match = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", text)
    return text[: match.start() + 1] if match else text


def settings_help() -> str:
    """The environment variables ``reconcile`` and ``status`` read, required first, as plain text."""
    lines = ["environment variables (the function's settings; docs/settings.md explains each):", "  required:"]

    width = max(len(s.name) for s in SETTINGS_SPEC) + 2

    def entry(name: str, text: str) -> None:
        wrapped = textwrap.wrap(text, 116 - width, break_on_hyphens=False) or [""]
        lines.append(f"    {name:<{width}}{wrapped[0]}")
        lines.extend(f"    {'':<{width}}{more}" for more in wrapped[1:])

    for spec in SETTINGS_SPEC:
        if spec.required:
            entry(spec.name, spec.expected or spec.plain_doc)
    entry("asg_names", "the groups served, comma-separated; or tags that select the instances instead")
    entry("", "(project_name, environment, etcd_tag_name or tag_selector)")
    lines.append("  optional [default]:")
    for spec in SETTINGS_SPEC:
        if not spec.required and spec.name != "asg_names":
            default = f"[{spec.default}]" if spec.default else "[empty]"
            entry(spec.name, f"{default} {_first_sentence(spec.plain_doc)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    settings_epilog = f"{settings_help()}\n\n{AWS_ENV_HELP}\n\n{EXIT_STATUS_HELP}"
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=raw,
        description=(
            "The etcd Auto Scaling group coordinator's command line: run a pass now (reconcile), show where the\n"
            "cluster stands (status), or make the TLS secrets (pki init). It uses the same environment variables\n"
            "and AWS credentials as the Lambda function."
        ),
        epilog=settings_epilog,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{reconcile,status,restore,pki,check-hooks}")
    rec = sub.add_parser(
        "reconcile",
        formatter_class=raw,
        help="run one pass now: rebuild the record(s) from the groups, remove dead members, settle held actions",
        description="Run one pass now, as the scheduled reconcile does: remove the etcd members of instances that\n"
        "are gone (quorum permitting), rebuild the record(s) from the groups, heartbeat held actions and settle\n"
        "the pending actions the record covers. --dry-run shows the plan and changes nothing.",
        epilog=settings_epilog,
    )
    rec.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    rec.add_argument("--json", action="store_true", help="print the report as JSON")
    status = sub.add_parser(
        "status",
        formatter_class=raw,
        help="each instance, etcd member and record target, and what the coordinator does next (changes nothing)",
        description="Show each instance of the served groups, its etcd member and record entry, and what the\n"
        "coordinator does next and why. Reads only: no record change, no tag, no member change, no lifecycle call.",
        epilog=settings_epilog,
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--timeout", type=float, default=30.0, help="seconds the look may take (default 30)")
    _restore_parser(sub, settings_epilog)
    pki = sub.add_parser(
        "pki",
        formatter_class=raw,
        help="TLS: make the cluster's CA and the coordinator's client certificate",
        description="TLS: make the cluster's CA and the coordinator's client certificate in Secrets Manager.",
        epilog=f"{AWS_ENV_HELP}\n\n{EXIT_STATUS_HELP}",
    )
    pki_sub = pki.add_subparsers(dest="pki_command", required=True, metavar="{init}")
    init = pki_sub.add_parser(
        "init",
        formatter_class=raw,
        help="create both secrets (existing ones are kept); print their ARNs as JSON",
        description="Create the CA secret (etcd_ca_secret) and the client certificate secret (etcd_tls_secret);\n"
        "existing secrets are kept, so running it again is safe. Prints both ARNs as JSON.",
        epilog=f"{AWS_ENV_HELP}\n\n{EXIT_STATUS_HELP}",
    )
    init.add_argument("--ca-secret", default="etcd-asg/ca", help="secret for the CA (etcd_ca_secret)")
    init.add_argument("--client-secret", default="etcd-asg/coordinator", help="secret for etcd_tls_secret")
    init.add_argument("--name", default="etcd", help="cluster name in the CA's subject")
    _check_hooks_parser(sub)
    return parser


def _restore_parser(sub: Any, epilog: str) -> None:
    restore = sub.add_parser(
        "restore",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="seed a new cluster from a snapshot in snapshot_bucket when the old one is gone (disaster recovery)",
        description="Restore a snapshot from snapshot_bucket as a new cluster: the snapshot is downloaded and\n"
        "verified (size, etcd's SHA-256), the cluster identity record says 'restoring' (the snapshot, a new\n"
        "token), and a pass runs: the oldest launching instance restores it as a one-member cluster and the other\n"
        "launches join.\n"
        "Refused while any etcd member answers, and while the old cluster's voters still run (their disks may hold\n"
        "newer writes) unless --force. --dry-run checks everything and changes nothing.",
        epilog=epilog,
    )
    restore.add_argument("--snapshot", default="latest", help="the snapshot's S3 key, or latest (default)")
    restore.add_argument("--dry-run", action="store_true", help="check and show what would happen, change nothing")
    restore.add_argument(
        "--force", action="store_true", help="restore although the old voters' instances still run (their data is lost)"
    )
    restore.add_argument("--timeout", type=float, default=120.0, help="seconds the checks may take (default 120)")


def _check_hooks_parser(sub: Any) -> None:
    hooks = sub.add_parser(
        "check-hooks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="warn when a served group's launch hook would let an unanswered launch go InService (make deploy)",
        description="Read the coordinator stack (its AsgNames and LaunchHookName) and each served group's lifecycle\n"
        "hooks; warn, on stderr, about a launch hook whose DefaultResult is CONTINUE: a launch the coordinator does\n"
        "not answer in time would go InService unadmitted. Changes nothing; warnings do not fail it.",
        epilog=f"{AWS_ENV_HELP}\n\n{EXIT_STATUS_HELP}",
    )
    hooks.add_argument("--stack", required=True, help="the coordinator stack (coordinator.yaml) to check")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("etcd-asg-coordinator")
    except PackageNotFoundError:
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.environ.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"]  # boto3 reads only the latter; Lambda sets both
    try:
        if args.command == "pki":
            return _pki_init(args)
        if args.command == "check-hooks":
            return _check_hooks(args)
        settings = load_settings(os.environ)
        with _logs_on_stderr(settings):
            runtime, clients = _runtime(settings)
            _warn_about_missing_groups(clients.autoscaling, settings)
            if args.command == "restore":
                return _restore(runtime, args)
            return _status(runtime, args) if args.command == "status" else _reconcile(runtime, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        explained = explain(exc)
        if explained is None:
            raise  # a defect, not a situation: the traceback is what a bug report needs
        code, lines = explained
        for line in lines:
            print(line if line.startswith("(") else f"error: {line}", file=sys.stderr)
        return code


@contextmanager
def _logs_on_stderr(settings: Settings) -> Iterator[None]:
    """The coordinator's structured log lines go to stderr: stdout carries the command's output only."""
    from hook_handler.telemetry import logger

    logger.setLevel(settings.log_level)
    previous = logger.registered_handler.setStream(sys.stderr)
    try:
        yield
    finally:
        if previous is not None:  # None: the stream was stderr already
            logger.registered_handler.setStream(previous)


def _runtime(settings: Settings) -> tuple[Runtime, Clients]:
    """The Lambda's runtime, built as at a cold start (``Runtime.from_environment``), and its clients."""
    from hook_handler.app import Clients, Runtime, SystemClock

    tls = (settings.membership_enabled and bool(settings.etcd_tls_secret)) or bool(settings.etcd_ca_secret)
    clients = Clients.create(tls=tls)
    return Runtime(settings, clients, SystemClock()), clients


def _warn_about_missing_groups(client: Any, settings: Settings) -> None:
    """A group in asg_names that does not exist serves nothing: say so (the look itself just finds it empty)."""
    if not settings.asg_names:
        return
    found: set[str] = set()
    for page in client.get_paginator("describe_auto_scaling_groups").paginate(
        AutoScalingGroupNames=list(settings.asg_names)
    ):
        found.update(g["AutoScalingGroupName"] for g in page["AutoScalingGroups"])
    region = client.meta.region_name
    for name in settings.asg_names:
        if name not in found:
            print(
                f"warning: Auto Scaling group {name!r} (setting asg_names) does not exist in {region}: nothing of it "
                "is served; check the name and the region",
                file=sys.stderr,
            )


def _reconcile(runtime: Runtime, args: argparse.Namespace) -> int:
    report = runtime.coordinator.run([], runtime.deadline(None), dry_run=args.dry_run)
    plan = report.plan
    if args.json:
        out = report.to_dict()
        if plan is not None:
            out["changes"] = list(plan.changes)
            out["guard_kept"] = list(plan.guard_kept)
        print(json.dumps(out, indent=2, default=str))
        return EXIT_OK
    print(f"record {runtime.settings.srv_fqdn}")
    print(f"  now:   {', '.join(report.before) or '(absent)'}")
    print(f"  plan:  {', '.join(report.after) or '(absent)'}")
    if plan is not None:
        for change in plan.changes:
            rrs = change["ResourceRecordSet"]
            values = " | ".join(r["Value"] for r in rrs["ResourceRecords"])
            print(f"  {change['Action']:<6} {rrs['Name']} {rrs['Type']} {rrs['TTL']} {values}")
        if not plan.changes:
            print("  no change needed")
        for reason in plan.guard_reasons:
            print(f"  guard kept {reason}")
        if plan.held:
            print(f"  held for bootstrap: {', '.join(plan.held)}")
    if args.dry_run:
        print("dry run: nothing applied")
    else:
        print(f"change: {report.change_id or 'none'}; completed: {len(report.completed)} action(s)")
    return EXIT_OK


def _status(runtime: Runtime, args: argparse.Namespace) -> int:
    from hook_handler.status import EXIT_ETCD_UNREACHABLE, collect, render

    report = collect(runtime.coordinator, runtime.clock.now() + args.timeout)
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report))
    if report.etcd == "unreachable":
        print(
            f"error: etcd did not answer: {report.etcd_detail}; every waiting action is shown as hold (a pass changes "
            "nothing until etcd answers). Check that this machine reaches the members' client port (etcd_endpoints, "
            "etcd_client_srv, etcd_client_port)",
            file=sys.stderr,
        )
        return EXIT_ETCD_UNREACHABLE
    return EXIT_OK


def _restore(runtime: Runtime, args: argparse.Namespace) -> int:
    """``restore``: check, then write the identity ``restoring`` and run a pass (``coordinator.recovery``)."""
    import tempfile
    from dataclasses import replace

    from hook_handler.identity import ClusterIdentity, ClusterState
    from hook_handler.recovery import restore_check, restore_token

    coordinator = runtime.coordinator
    if coordinator.membership is None:
        raise SettingsError("etcd_membership", "is false: the coordinator does not manage etcd", "true to restore")
    runtime.take_snapshots(os.environ)
    if coordinator.snapshots is None:
        raise SettingsError("snapshot_bucket", "is empty: there is no snapshot to restore", "the stack's bucket")
    deadline = runtime.clock.now() + args.timeout
    with tempfile.TemporaryDirectory() as tmp:  # the whole snapshot checked before anything changes
        got = coordinator.snapshots.store.download(args.snapshot, os.path.join(tmp, "snapshot.db"), deadline)
    key = got.snapshot.key if got.snapshot is not None else args.snapshot
    look = coordinator.look.look(deadline)
    answering = [m.hex_id for m in look.view.members if m.id in look.view.healthy] if look.view else []
    identity = look.identity
    voters = identity.voters | set(identity.moving) if identity is not None else set()
    running = [i for i in voters if i in look.obs.instances and not look.obs.instances[i].gone]
    check = restore_check(identity, answering, look.loss, running, force=args.force)
    if check.refused:
        print(f"error: restore refused: {check.refused}", file=sys.stderr)
        return EXIT_REFUSED
    now = runtime.clock.now()
    base = identity or ClusterIdentity(ClusterState.RUNNING, now)
    new = replace(base, state=ClusterState.RESTORING, since=now, snapshot=key, seed="", moving={})
    new = replace(new, token=restore_token(new, "cli", now))
    print(f"snapshot: s3://{coordinator.snapshots.store.bucket}/{key} ({got.db_size} bytes, verified)")
    if check.destroys:
        print(f"destroys: {check.destroys}")
    if args.dry_run:
        print("dry run: nothing changed")
        return EXIT_OK
    coordinator.write_identity(new, look, deadline)
    report = coordinator.run([], runtime.deadline(None))
    print(f"cluster identity: restoring {key}; the oldest launching instance seeds it, the others join")
    print(f"pass: change {report.change_id or 'none'}; completed {len(report.completed)} action(s)")
    return EXIT_OK


def _pki_init(args: argparse.Namespace) -> int:
    import boto3

    from hook_handler.certs import init_pki

    arns = init_pki(boto3.client("secretsmanager"), args.ca_secret, args.client_secret, name=args.name)
    print(json.dumps(arns, indent=2))
    return EXIT_OK


def _check_hooks(args: argparse.Namespace) -> int:
    """The served groups' launch hooks against the coordinator stack's: ``lifecycle.launch_default_warnings``."""
    import boto3

    from hook_handler.lifecycle import launch_default_warnings

    (stack,) = boto3.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
    params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    groups = [g.strip() for g in params.get("AsgNames", "").split(",") if g.strip()]
    hook = outputs.get("LaunchHookName") or params.get("LaunchHookName", "")
    autoscaling = boto3.client("autoscaling")
    found = {g["AutoScalingGroupName"] for g in autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=groups)["AutoScalingGroups"]} if groups else set()  # fmt: skip
    for group in groups:
        if group not in found:
            print(f"{group}: no such group yet; its hooks are checked by {PROG} status once it exists")
            continue
        described = autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"]
        warnings = launch_default_warnings(group, described, hook)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if not warnings and any(h["LifecycleHookName"] == hook for h in described):
            print(f"{group}: launch hook {hook} abandons a launch left unanswered (DefaultResult ABANDON)")
        elif not warnings:
            print(f"{group}: no launch hook {hook} yet (the coordinator stack's GroupName, or the group's own hooks)")
    return EXIT_OK


# -- turning a failure into one line a person can act on ------------------------------------------------------
_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedAccess",
        "AuthorizationError",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
_MISSING = {
    "NoSuchHostedZone": "set r53_zone_id to a zone of this account (aws route53 list-hosted-zones lists them)",
    "HostedZoneNotFound": "set r53_zone_id to a zone of this account (aws route53 list-hosted-zones lists them)",
    "ResourceNotFoundException": "check etcd_tls_secret and etcd_ca_secret (name or full ARN, in this region)",
}


def explain(exc: BaseException) -> tuple[int, list[str]] | None:
    """(exit status, lines) for a failure a user can act on; None for anything else (a defect).

    >>> explain(DeadlineReached("Route 53 change C1 still PENDING"))[0]
    1
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    from hook_handler.etcd import EtcdTlsError, MembershipError

    if isinstance(exc, SettingsError):
        errors = getattr(exc, "errors", (exc,))
        hint = f"(run {PROG} --help for every setting; docs/settings.md explains each)"
        return EXIT_SETTINGS, [*(str(e) for e in errors), hint]
    if isinstance(exc, NoRegionError):
        return EXIT_AWS, [
            "no AWS region is set; set AWS_REGION (or AWS_DEFAULT_REGION, or a region in your AWS profile) to the "
            "region of the Auto Scaling groups"
        ]
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return EXIT_AWS, [
            f"no usable AWS credentials ({exc}); give them the usual way: AWS_PROFILE, AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or an instance role"
        ]
    if isinstance(exc, EndpointConnectionError):
        return EXIT_AWS, [
            f"cannot reach the AWS endpoint {exc.kwargs.get('endpoint_url', '')}; check the network, the region "
            f"(AWS_REGION={os.environ.get('AWS_REGION') or os.environ.get('AWS_DEFAULT_REGION') or 'unset'}) and "
            "AWS_ENDPOINT_URL if you set it"
        ]
    if isinstance(exc, ClientError):
        return EXIT_AWS, [_client_error(exc)]
    if isinstance(exc, BotoCoreError):
        return EXIT_AWS, [f"AWS call failed: {exc}; check the network, the region and the credentials"]
    if isinstance(exc, EtcdTlsError):
        return EXIT_ETCD, [str(exc)]
    if isinstance(exc, MembershipError):
        return EXIT_ETCD, [
            f"{exc}; the pass stopped there (what it had done stands; the next pass resumes). Check that this "
            "machine reaches the members' client port (etcd_endpoints, etcd_client_srv, etcd_client_port)"
        ]
    if isinstance(exc, DeadlineReached):
        return EXIT_AWS, [f"the pass ran out of time: {exc}; run it again (it resumes from what it finished)"]
    if isinstance(exc, CoordinatorError):  # CertificateError and the like: the message says what and where
        return EXIT_AWS, [str(exc)]
    return None


def _client_error(exc: Any) -> str:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    message = str(exc.response.get("Error", {}).get("Message", "")).strip().rstrip(".")
    operation = getattr(exc, "operation_name", "a call")
    if code in _DENIED:
        return (
            f"AWS refused {operation} ({code}: {message}); the credentials in use must allow {operation} "
            "(infra/aws/coordinator.yaml's FunctionRole lists every permission the coordinator needs)"
        )
    if code in _MISSING:
        return f"AWS {operation}: {code}: {message}; {_MISSING[code]}"
    return f"AWS {operation} failed ({code}: {message})"


if __name__ == "__main__":
    sys.exit(main())
