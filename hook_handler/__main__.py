"""Command line: ``python -m hook_handler reconcile [--dry-run] [--json]``, ``status [--json]`` and ``pki init``.

Runs one reconcile pass with the same settings (environment variables) and AWS credentials a
Lambda would use: repairs the record after terminations that bypassed hooks, or, with
``--dry-run``, prints the plan without applying it. ``status`` prints, changing nothing, each instance,
etcd member and record target with what the coordinator will do next (exit 3 when etcd does not answer).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from hook_handler.exceptions import SettingsError

if TYPE_CHECKING:
    from hook_handler.app import Runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hook_handler", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("reconcile", help="rebuild the record(s) from the groups now")
    rec.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    rec.add_argument("--json", action="store_true", help="print the report as JSON")
    status = sub.add_parser("status", help="each instance, etcd member and record target, and what comes next")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--timeout", type=float, default=30.0, help="seconds the look may take (default 30)")
    pki = sub.add_parser("pki", help="TLS: the cluster's CA and the coordinator's client certificate")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True)
    init = pki_sub.add_parser("init", help="create both secrets (existing ones are kept); print their ARNs")
    init.add_argument("--ca-secret", default="etcd-asg/ca", help="secret for the CA (etcd_ca_secret)")
    init.add_argument("--client-secret", default="etcd-asg/coordinator", help="secret for etcd_tls_secret")
    init.add_argument("--name", default="etcd", help="cluster name in the CA's subject")
    args = parser.parse_args(argv)
    if args.command == "pki":
        return _pki_init(args)

    from hook_handler.app import Runtime

    try:
        runtime = Runtime.from_environment()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "status":
        return _status(runtime, args)
    report = runtime.coordinator.run([], runtime.deadline(None), dry_run=args.dry_run)
    plan = report.plan
    if args.json:
        out = report.to_dict()
        if plan is not None:
            out["changes"] = list(plan.changes)
            out["guard_kept"] = list(plan.guard_kept)
        print(json.dumps(out, indent=2, default=str))
        return 0
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
    return 0


def _status(runtime: Runtime, args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from hook_handler.exceptions import DeadlineReached
    from hook_handler.status import EXIT_ETCD_UNREACHABLE, collect, render
    from hook_handler.telemetry import logger

    logger.registered_handler.setStream(sys.stderr)  # stdout carries the table (or the JSON) only
    try:
        report = collect(runtime.coordinator, runtime.clock.now() + args.timeout)
    except (ClientError, BotoCoreError, DeadlineReached) as exc:
        print(f"error: could not read the groups or the records: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report))
    if report.etcd == "unreachable":
        print(f"error: etcd did not answer: {report.etcd_detail}", file=sys.stderr)
        return EXIT_ETCD_UNREACHABLE
    return 0


def _pki_init(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from hook_handler.certs import CertificateError, init_pki

    try:
        arns = init_pki(boto3.client("secretsmanager"), args.ca_secret, args.client_secret, name=args.name)
    except (CertificateError, ClientError, BotoCoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(arns, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
