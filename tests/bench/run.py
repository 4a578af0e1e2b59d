"""``make bench``: every strategy on every scenario, the membership-on scenarios (``bench_membership``), plus
cold start and snapshots to S3 (``bench_snapshot``: real etcd); prints the tables, writes
``bench-results/bench.md`` and ``bench-results/bench.json``.

Usage: python tests/bench/run.py [--seed N] [--jobs J] [--strategies a,b] [--scenarios x,y]
                                 [--membership-scenarios m,n | --no-membership]
                                 [--coldstart-repeats R | --no-coldstart]
                                 [--snapshot-sizes 128,256] [--snapshot-repeats R | --no-snapshot] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

if os.environ.get("PYTHONHASHSEED") != "0":
    # Set iteration order must not vary between runs: re-run with a fixed hash seed.
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_coldstart
import bench_harness
import bench_membership
import bench_report
import bench_snapshot
from bench_scenarios import SCENARIOS
from bench_strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[2]
PROPAGATION = (20.0, 60.0)
ROUTE53_RATE = 5.0
# Rough real seconds per run, to start the long ones first (the pool balances better).
COST = {"burst-100": 5, "burst-50": 4, "blind": 3, "mixed": 2, "rolling-5": 2}


def _one(job: tuple[str, str, int, float | None]) -> dict[str, Any]:
    strategy, scenario, seed, horizon = job
    from hook_handler.telemetry import logger

    logger.setLevel("CRITICAL")
    started = time.perf_counter()
    if scenario in bench_membership.MSCENARIOS:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            out = bench_membership.run(strategy, scenario, seed=seed).to_json()
        out["wall_seconds"] = time.perf_counter() - started
        return out
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # powertools' EMF metrics
        result = bench_harness.run(
            STRATEGIES[strategy],
            SCENARIOS[scenario],
            seed=seed,
            propagation=PROPAGATION,
            route53_rate=ROUTE53_RATE,
            horizon=horizon,
        )
    out = result.to_json()
    out["wall_seconds"] = time.perf_counter() - started
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--horizon", type=float, default=None, help="simulated seconds per run (default per strategy)")
    parser.add_argument("--membership-scenarios", default=",".join(bench_membership.MSCENARIOS))
    parser.add_argument("--no-membership", action="store_true")
    parser.add_argument("--coldstart-repeats", type=int, default=9)
    parser.add_argument("--no-coldstart", action="store_true")
    parser.add_argument("--snapshot-sizes", default="128,256", help="etcd database sizes (MiB) of the snapshot bench")
    parser.add_argument("--snapshot-repeats", type=int, default=3)
    parser.add_argument("--no-snapshot", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)

    strategies = [s for s in args.strategies.split(",") if s]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for key in strategies:
        if key not in STRATEGIES:
            parser.error(f"unknown strategy {key!r}; choose from {', '.join(STRATEGIES)}")
    for key in scenarios:
        if key not in SCENARIOS:
            parser.error(f"unknown scenario {key!r}; choose from {', '.join(SCENARIOS)}")

    mscenarios = [] if args.no_membership else [s for s in args.membership_scenarios.split(",") if s]
    for key in mscenarios:
        if key not in bench_membership.MSCENARIOS:
            parser.error(f"unknown membership scenario {key!r}; choose from {', '.join(bench_membership.MSCENARIOS)}")

    started = time.perf_counter()
    # Cold start first and alone: the simulations would disturb its timings.
    cold = None if args.no_coldstart else bench_coldstart.measure(args.coldstart_repeats)
    # Snapshots next, also alone: real etcd and real time.
    snap = None
    if not args.no_snapshot:
        sizes = [int(s) for s in args.snapshot_sizes.split(",") if s]
        snap = bench_snapshot.measure(sizes, args.snapshot_repeats)

    jobs = [(st, sc, args.seed, args.horizon) for st in strategies for sc in scenarios]
    mjobs = [(st, sc, args.seed, None) for sc in mscenarios for st in bench_membership.MSTRATEGIES]
    ordered = sorted(jobs + mjobs, key=lambda j: -(COST.get(j[1], 1) * COST.get(j[0], 1)))
    # A fresh forked process per run: no emulator state or leftover threads carry over.
    with multiprocessing.get_context("fork").Pool(max(1, args.jobs), maxtasksperchild=1) as pool:
        raw = pool.map(_one, ordered, chunksize=1)
    by_key = {(r["strategy"], r["scenario"]): r for r in raw}
    results = [bench_harness.RunResult(**_fields(by_key[(st, sc)])) for st, sc, _, _ in jobs]
    mresults = [bench_membership.MResult(**_fields(by_key[(st, sc)])) for st, sc, _, _ in mjobs]
    elapsed = time.perf_counter() - started

    config = {
        "seed": args.seed,
        "propagation": list(PROPAGATION),
        "route53_rate": ROUTE53_RATE,
        "horizon_default": bench_harness.DEFAULT_HORIZON,
        "strategies": {k: {"label": STRATEGIES[k].label, "note": STRATEGIES[k].note} for k in strategies},
        "scenarios": {k: {"label": SCENARIOS[k].label, "note": SCENARIOS[k].note} for k in scenarios},
    }
    config["membership"] = {
        "scenarios": {k: {"label": v.label, "note": v.note} for k, v in bench_membership.MSCENARIOS.items()
                      if k in mscenarios},
        "strategies": {k: {"label": v.label, "note": v.note} for k, v in bench_membership.MSTRATEGIES.items()},
        "propagation": list(bench_membership.PROPAGATION),
        "etcd_start": list(bench_membership.ETCD_START),
    }  # fmt: skip
    bench_report.rich_render(results, cold, elapsed, mresults)
    if snap is not None:
        print(snap.markdown())
    args.out.mkdir(parents=True, exist_ok=True)
    snapshot_md = f"\n{snap.markdown()}" if snap is not None else ""
    (args.out / "bench.md").write_text(
        bench_report.markdown(config, results, cold, mresults) + snapshot_md + f"\nRun time: {elapsed:.0f} s.\n"
    )
    payload = {
        "config": config,
        "results": [r.to_json() for r in results],
        "targets": [t.__dict__ for t in bench_report.targets(results, cold)],
        "membership": [r.to_json() for r in mresults],
        "membership_targets": [t.__dict__ for t in bench_report.membership_targets(mresults)],
        "cold_start": cold.to_json() if cold else None,
        "snapshot": snap.to_json() if snap else None,
        "wall_seconds": {f"{k[0]}/{k[1]}": round(v["wall_seconds"], 2) for k, v in by_key.items()},
        "elapsed_seconds": round(elapsed, 1),
    }
    (args.out / "bench.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out / 'bench.md'} and {args.out / 'bench.json'}")
    return 0


def _fields(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != "wall_seconds"}


if __name__ == "__main__":
    sys.exit(main())
