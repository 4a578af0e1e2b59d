"""Tables of the benchmark: targets judged, rendered as rich (terminal), Markdown and JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench_coldstart import ColdStart
from bench_harness import RunResult
from bench_membership import MSCENARIOS, MSTRATEGIES, MResult
from bench_scenarios import SCENARIOS
from bench_strategies import STRATEGIES

DELAY_TARGET = 1.0
PER_INSTANCE_TARGET = 2.0
PEAK_TARGET = 5
COLD_START_TARGET = 1.2
TARGET_SCENARIO = "burst-50"

COLUMNS = [
    "strategy",
    "scenario",
    "completed",
    "timed out (abandoned)",
    "delay p50 s",
    "delay p95 s",
    "last done s",
    "R53 req",
    "req/inst",
    "peak/s",
    "throttled",
    "missing",
    "extra",
    "early",
]


@dataclass
class Target:
    name: str
    mode: str  # strategy key
    met: bool
    value: str

    def cell(self) -> str:
        return f"{'✓' if self.met else '✗'} {self.value}"


def _mark(met: bool) -> str:
    return " ✓" if met else " ✗"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def burst_deadline(result: RunResult) -> float:
    """The burst target's bound: twice the slowest single propagation drawn in the run."""
    return 2.0 * result.slowest_propagation


def row(result: RunResult) -> list[str]:
    """One table row; the coordinator's cells that carry a target get ✓/✗."""
    strategy = STRATEGIES[result.strategy]
    judged = strategy.coordinator
    burst = judged and result.scenario == TARGET_SCENARIO
    p95 = _num(result.delay_p95)
    if judged and result.delay_p95 is not None:
        p95 += _mark(result.delay_p95 <= DELAY_TARGET)
    if result.last_completed is not None:
        last = _num(result.last_completed, 1)
        if burst:
            last += _mark(result.last_completed <= burst_deadline(result))
    else:
        not_done = result.actions - result.continued
        last = f"✗ {not_done} not done" if burst else f"{not_done} not done"
    if result.horizon_hit:
        last += f" (cut at {result.sim_seconds:.0f})"
    per_inst = f"{result.r53_per_instance:.2f}" + (
        _mark(result.r53_per_instance <= PER_INSTANCE_TARGET) if burst else ""
    )
    peak = str(result.r53_peak_per_second) + (_mark(result.r53_peak_per_second <= PEAK_TARGET) if burst else "")
    missing = str(len(result.missing)) + (_mark(not result.missing) if burst else "")
    early = str(result.early) + (_mark(result.early == 0) if burst else "")
    return [
        strategy.label,
        SCENARIOS[result.scenario].label,
        f"{result.continued}/{result.actions}",
        f"{result.timed_out} ({result.abandoned})",
        _num(result.delay_p50),
        p95,
        last,
        str(result.r53_requests),
        per_inst,
        peak,
        str(result.throttled),
        missing,
        str(len(result.extra)),
        early,
    ]


def targets(results: Sequence[RunResult], cold: ColdStart | None) -> list[Target]:
    """The issue's targets, judged for each delivery mode of the coordinator."""
    out: list[Target] = []
    for key, strategy in STRATEGIES.items():
        if not strategy.coordinator:
            continue
        mine = [r for r in results if r.strategy == key]
        if not mine:
            continue
        worst = max(mine, key=lambda r: -1.0 if r.delay_p95 is None else r.delay_p95)
        never = [r.scenario for r in mine if r.delay_p95 is None]
        ok = worst.delay_p95 is not None and worst.delay_p95 <= DELAY_TARGET and not never
        value = f"worst p95 {_num(worst.delay_p95)} s ({worst.scenario})" + (
            f"; no completion in {','.join(never)}" if never else ""
        )
        out.append(Target("added delay p95 ≤ 1 s (every scenario)", key, ok, value))
        burst = next((r for r in mine if r.scenario == TARGET_SCENARIO), None)
        if burst is not None:
            bound = burst_deadline(burst)
            done = burst.last_completed
            out.append(
                Target(
                    "burst of 50: every action completed within 2x slowest propagation",
                    key,
                    done is not None and done <= bound,
                    f"{_num(done, 1)} s ≤ {bound:.1f} s"
                    if done is not None
                    else f"{burst.actions - burst.continued} not done",
                )
            )
            out.append(
                Target(
                    "burst of 50: Route 53 requests ≤ 2 per instance",
                    key,
                    burst.r53_per_instance <= PER_INSTANCE_TARGET,
                    f"{burst.r53_per_instance:.2f} ({burst.r53_requests}/{burst.instances})",
                )
            )
            out.append(
                Target(
                    "burst of 50: peak ≤ 5 requests/s",
                    key,
                    burst.r53_peak_per_second <= PEAK_TARGET,
                    f"{burst.r53_peak_per_second}/s",
                )
            )
            out.append(Target("burst of 50: zero members missing", key, not burst.missing, str(len(burst.missing))))
            out.append(Target("burst of 50: zero early completions", key, burst.early == 0, str(burst.early)))
        if cold is not None:
            out.append(
                Target("cold start ≤ 1.2x boto3 alone", key, cold.ratio <= COLD_START_TARGET, f"{cold.ratio:.2f}x")
            )
            out.append(
                Target(
                    "cold start with TLS ≤ 1.2x boto3 alone",
                    key,
                    cold.tls_ratio <= COLD_START_TARGET,
                    f"{cold.tls_ratio:.2f}x",
                )
            )
    return out


def targets_table(found: Sequence[Target]) -> tuple[list[str], list[list[str]]]:
    modes = list(dict.fromkeys(t.mode for t in found))
    names = list(dict.fromkeys(t.name for t in found))
    labels = {k: v.label for k, v in STRATEGIES.items()} | {k: v.label for k, v in MSTRATEGIES.items()}
    header = ["target", *(labels[m] for m in modes)]
    cells = {(t.name, t.mode): t.cell() for t in found}
    return header, [[name, *(cells.get((name, m), "") for m in modes)] for name in names]


def cold_table(cold: ColdStart) -> tuple[list[str], list[list[str]]]:
    header = [
        "what (fresh interpreter, AWS_REGION set, no network; the app with bytecode as the zip ships it)",
        "median ms",
        "ratio to its boto3 baseline",
    ]
    labels = {
        "boto3": "import boto3 + 3 clients (route53, autoscaling, ec2)",
        "app": "import hook_handler.app + Clients.create()",
        "app-lambda-init": "Lambda init as deployed (settings + Runtime at import)",
        "app-tls": "TLS on: import hook_handler.app, .tls, .certs, .etcd + Clients.create(tls=True)",
        "boto3-tls": "import boto3 + 4 clients (the 3 + secretsmanager): the TLS baseline",
        "app-tls-source": "TLS on, from source without bytecode (a zip without .pyc; information)",
    }
    bases = {"app-tls": "boto3-tls", "boto3-tls": "boto3-tls", "app-tls-source": "boto3-tls"}
    rows = [
        [labels[k], f"{v * 1000:.0f}", f"{v / cold.medians[bases.get(k, 'boto3')]:.2f}x"]
        for k, v in cold.medians.items()
    ]
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


# -- membership on (issue 13) -------------------------------------------------------------------------------
MEMBERSHIP_RATIO_TARGET = 1.2
MCOLUMNS = [
    "scenario",
    "strategy",
    "members changed",
    "total s",
    "per member s",
    "bound s",
    "ratio to bound",
    "safe-order bound s",
    "ratio",
    "quorum losses",
    "acked writes (lost)",
    "failed requests",
    "longest outage s",
    "actions completed (abandoned, timed out)",
]


def mrow(r: MResult) -> list[str]:
    judged = r.strategy == "coordinator"
    ratio = _num(r.ratio)
    if judged and r.ratio is not None:
        ratio = f"{'✓' if r.ratio <= MEMBERSHIP_RATIO_TARGET else '✗'} {ratio}x"
    elif r.ratio is not None:
        ratio += "x"
    total = _num(r.total, 1) if r.in_step else f"not in step within {bench_membership_horizon():.0f}"
    quorum = str(r.quorum_losses) + (f" ({r.quorum_lost_seconds} s)" if r.quorum_losses else "")
    lost = f"{r.acked} ({r.lost})"
    if judged:
        quorum = f"{'✓' if r.quorum_losses == 0 else '✗'} {quorum}"
        lost = f"{'✓' if r.lost == 0 else '✗'} {lost}"
    return [
        MSCENARIOS[r.scenario].label,
        MSTRATEGIES[r.strategy].label,
        str(r.changed),
        total,
        _num(r.per_member, 1),
        _num(r.bound, 1),
        ratio,
        _num(r.safe_bound, 1),
        _num(r.safe_ratio) + ("x" if r.safe_ratio is not None else ""),
        quorum,
        lost,
        str(r.failed_requests),
        _num(r.longest_outage, 1),
        f"{r.completed}/{r.actions} ({r.abandoned}, {r.timed_out})",
    ]


def bench_membership_horizon() -> float:
    from bench_membership import HORIZON

    return HORIZON


def membership_targets(mresults: Sequence[MResult]) -> list[Target]:
    """The issue's membership targets, judged on the coordinator's runs."""
    mine = [r for r in mresults if r.strategy == "coordinator"]
    out = [
        Target(
            f"{MSCENARIOS[r.scenario].label}: within {MEMBERSHIP_RATIO_TARGET}x of the bound",
            "coordinator",
            r.ratio is not None and r.ratio <= MEMBERSHIP_RATIO_TARGET,
            "—" if r.ratio is None else f"{r.ratio:.2f}x",
        )
        for r in mine
    ]
    if mine:
        out.append(Target("zero quorum losses", "coordinator", all(r.quorum_losses == 0 for r in mine),
                          str(sum(r.quorum_losses for r in mine))))  # fmt: skip
        out.append(Target("zero lost acknowledged writes", "coordinator", all(r.lost == 0 for r in mine),
                          str(sum(r.lost for r in mine))))  # fmt: skip
    return out


MLEGEND = [
    "total: from the first lifecycle action's start to the last action ended and the last etcd start served, the "
    "cluster in step (one cluster; members = the group's serving instances, all started voters; record = members); "
    "per member: total / members added + removed.",
    "bound: per joiner, the Route 53 propagation of the change that listed it + its etcd start + etcd's "
    "5 s health interval, one change at a time; a leaver with no joiner adds its drop's propagation. Every term is "
    "this run's own draw. safe-order bound: the same with every leaver's drop on the path (add before remove).",
    "quorum losses: stretches in which the initial cluster had fewer running voters than its quorum (sampled every "
    "second). acked writes (lost): the continuous client's acknowledged writes (one a second through the first "
    "member that answers), and how many of them the final cluster's keyspace lacks.",
    "longest outage: the longest time without an acknowledged write.",
    "✓/✗ mark the targets on the coordinator's rows.",
]


def membership_markdown(config: dict[str, Any], mresults: Sequence[MResult]) -> list[str]:
    m = config.get("membership", {})
    parts = [
        "",
        "### Membership on: the etcd 3.5 model on simulated time",
        "",
        f"Route 53 propagation uniform {m['propagation'][0]:.0f}-{m['propagation'][1]:.0f} s, etcd start uniform "
        f"{m['etcd_start'][0]:.0f}-{m['etcd_start'][1]:.0f} s, AWS's world (transitional states, stale describes); "
        "the coordinator founds the initial cluster, then the strategy under test takes over (`tests/bench/"
        "bench_membership.py`).",
        "",
        markdown_table(MCOLUMNS, [mrow(r) for r in mresults]),
        "",
        markdown_table(*targets_table(membership_targets(mresults))),
        "",
    ]
    parts += [f"- **{v['label']}**: {v['note']}" for v in m.get("strategies", {}).values()]
    parts += [f"- **{v['label']}**: {v['note']}" for v in m.get("scenarios", {}).values()]
    parts += ["", *[f"- {line}" for line in MLEGEND]]
    return parts


def markdown(
    config: dict[str, Any], results: Sequence[RunResult], cold: ColdStart | None, mresults: Sequence[MResult] = ()
) -> str:
    found = targets(results, cold)
    parts = [
        "## Benchmark",
        "",
        f"`make bench` (seed {config['seed']}; `make bench SEED=n` for another). Emulated AWS on simulated time: "
        f"Route 53 propagation uniform {config['propagation'][0]:.0f}-{config['propagation'][1]:.0f} s per change, "
        f"account-wide Route 53 limit {config['route53_rate']:.0f} requests/s (burst {config['route53_rate']:.0f}), "
        "API calls take no simulated time, hook HeartbeatTimeout 300 s (launch DefaultResult ABANDON), "
        "Lambda timeout 300 s. Every scenario starts from a cluster already in service and listed in the record.",
        "",
        markdown_table(COLUMNS, [row(r) for r in results]),
        "",
        "### Targets (this coordinator)",
        "",
        markdown_table(*targets_table(found)),
    ]
    if mresults:
        parts += membership_markdown(config, mresults)
    if cold is not None:
        parts += [
            "",
            f"### Cold start (median of {cold.repeats} interleaved runs each)",
            "",
            markdown_table(*cold_table(cold)),
        ]
    parts += ["", "### Strategies", ""]
    parts += [f"- **{s.label}**: {s.note}" for s in STRATEGIES.values() if s.key in {r.strategy for r in results}]
    parts += ["", "### Scenarios", ""]
    parts += [f"- **{s.label}**: {s.note}" for s in SCENARIOS.values() if s.key in {r.scenario for r in results}]
    parts += ["", "### Columns", "", *[f"- {line}" for line in LEGEND], ""]
    return "\n".join(parts)


LEGEND = [
    "completed: actions completed with CONTINUE / all lifecycle actions of the run (replacements of abandoned "
    "launches included).",
    "timed out (abandoned): actions ended by their hook's timeout (DefaultResult applied), and how many ended ABANDON.",
    "delay: CompleteLifecycleAction time minus INSYNC time, over actions completed after INSYNC. INSYNC of a launch "
    "is the `insync_at` of the first change whose record lists the instance; of a termination, of the first change "
    "after it started whose record lacks it.",
    "last done: seconds from the scenario's start until the last action was completed (only when every action was "
    "completed with CONTINUE); 'cut at' = the run reached its horizon with work still pending.",
    "R53 req: every Route 53 request sent (throttled ones included); req/inst divides by instances with a lifecycle "
    "action; peak/s: most requests in any 1-second window.",
    "missing / extra: instances of the group in Pending:Wait/Pending:Proceed/InService absent from the final record "
    "/ targets in the final record that are not such instances.",
    "early: actions completed before the change that settles them was INSYNC (or with no such change).",
    "✓/✗ mark the targets on this coordinator's rows; the burst-of-50 bound is 2x the slowest propagation "
    "drawn in that run.",
]


def rich_render(
    results: Sequence[RunResult], cold: ColdStart | None, elapsed: float, mresults: Sequence[MResult] = ()
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=220)
    table = Table(title="Strategies x scenarios", show_lines=False)
    for name in COLUMNS:
        table.add_column(name, overflow="fold")
    previous = None
    for result in results:
        if previous is not None and previous != result.strategy:
            table.add_section()
        previous = result.strategy
        table.add_row(*row(result))
    console.print(table)
    header, rows = targets_table(targets(results, cold))
    t = Table(title="Targets (this coordinator)")
    for name in header:
        t.add_column(name)
    for r in rows:
        t.add_row(*r)
    console.print(t)
    if mresults:
        m = Table(title="Membership on")
        for name in MCOLUMNS:
            m.add_column(name, overflow="fold")
        for r in mresults:
            m.add_row(*mrow(r))
        console.print(m)
        header, rows = targets_table(membership_targets(mresults))
        mt = Table(title="Membership targets (this coordinator)")
        for name in header:
            mt.add_column(name)
        for r in rows:
            mt.add_row(*r)
        console.print(mt)
    if cold is not None:
        header, rows = cold_table(cold)
        c = Table(title=f"Cold start (median of {cold.repeats})")
        for name in header:
            c.add_column(name)
        for r in rows:
            c.add_row(*r)
        console.print(c)
    console.print(f"benchmark run time: {elapsed:.1f} s (wall)")
