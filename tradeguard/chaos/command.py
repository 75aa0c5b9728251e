"""`tradeguard chaos`: the arguments, progress, the table of runs and the violations with their seeds.

Most runs are in process (`harness`), about one in `--kill-every` as real SIGKILLed bot processes
(`kill`), on `--store` when given. `--workers N` runs every run as N bot processes (hosts) on
`--store` and one served paper account, killed at random (`hosts`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import TYPE_CHECKING

from tradeguard import crashpoints
from tradeguard.errors import ConfigError

if TYPE_CHECKING:
    from tradeguard.chaos.campaign import ChaosResult

__all__ = ["add_chaos_command", "run_chaos"]


def add_chaos_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `tradeguard chaos` to the CLI's subcommands."""
    p = sub.add_parser("chaos", help="run your strategy under seeded faults and crashes; check G1-G4")
    p.add_argument("strategy", help="module path or file of the strategy (strategies.momentum)")
    p.add_argument("--runs", type=int, default=200, help="how many runs (default 200)")
    p.add_argument("--seed", type=int, default=1, help="the campaign's seed (default 1)")
    p.add_argument("--replay-seed", type=int, default=None, help="replay exactly the run with this seed")
    p.add_argument("--faults", default=None, help="a fault plan file instead of random faults")
    p.add_argument("--crash-points", default="all", help="all, or a comma-separated list of points")
    p.add_argument("--bars", default=None, help="bar file or seed:N (default: the shipped day)")
    p.add_argument(
        "--kill-every", type=int, default=20,
        help="about one run in N runs as real bot processes, SIGKILLed and restarted (default 20; 0: none)",
    )  # fmt: skip
    p.add_argument("--unguarded", action="store_true", help="send through a plain bot's path instead")
    p.add_argument("--save", default="chaos-sessions", help="folder for failing runs' sessions")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--store", default=None, help="claim store URL of the real-kill runs (e.g. PostgreSQL)")
    p.add_argument(
        "--workers", type=int, default=1,
        help="run each run as N bot processes (hosts) on --store and one paper account, killed at random",
    )  # fmt: skip
    p.add_argument("--minutes", type=int, default=None, help="use only the first N minutes of the bars")
    p.set_defaults(func=run_chaos)


def _points(text: str) -> tuple[str, ...]:
    if text == "all":
        return crashpoints.POINTS
    points = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in points if p not in crashpoints.POINTS]
    if unknown:
        raise ConfigError(
            f"--crash-points: unknown {', '.join(unknown)} (known: {', '.join(crashpoints.POINTS)})"
        )
    return points


def run_chaos(args: argparse.Namespace) -> int:
    """Run the campaign; print the report; return 1 on any violation."""
    from tradeguard.chaos.campaign import chaos  # noqa: PLC0415 - `tradeguard --help` loads no guard
    from tradeguard.faults import FaultPlan  # noqa: PLC0415 - as above
    from tradeguard.run.barfile import load_bars  # noqa: PLC0415 - as above
    from tradeguard.run.bars import BarSeries  # noqa: PLC0415 - as above

    plan = FaultPlan.load(args.faults) if args.faults else None
    out = sys.stdout

    def progress(number: int, outcome: object) -> None:
        if not args.json and (number % 20 == 0 or number == args.runs):
            print(f"  {number}/{args.runs} runs", file=sys.stderr, flush=True)

    bars = load_bars(args.bars)
    if args.minutes is not None:
        if args.minutes < 1:
            raise ConfigError("--minutes must be at least 1")
        bars = BarSeries(bars.source, bars.minutes[: args.minutes], bars.symbols)
    result = chaos(
        args.strategy, runs=args.runs, seed=args.seed, bars=bars, faults=plan, hosts=args.workers,
        crash_points=_points(args.crash_points), unguarded=args.unguarded, only_seed=args.replay_seed,
        save_to=args.save, kill_every=args.kill_every, store_url=args.store,
        progress=progress,
    )  # fmt: skip
    if args.json:
        json.dump(as_json(result), out, indent=2)
        out.write("\n")
    else:
        for line in report_lines(result, args.unguarded):
            print(line, file=out)
    return 0 if result.ok else 1


def as_json(result: ChaosResult) -> dict[str, object]:
    """Return the result as plain JSON values."""
    return {
        "ok": result.ok,
        "runs": len(result.runs),
        "crash_points_hit": dict(result.crash_points_hit),
        "faults_fired": sum(r.faults_fired for r in result.runs),
        "orders": sum(r.orders for r in result.runs),
        "killed_runs": result.killed,
        "violations": [
            {
                "seed": r.plan.seed,
                "crash_point": r.plan.crash_point,
                "violations": [str(v) for v in r.violations],
            }
            for r in result.failing
        ],
        "sessions": {str(k): v for k, v in result.sessions.items()},
    }


def report_lines(result: ChaosResult, unguarded: bool = False) -> list[str]:
    """Return the plain-text report: totals, crash points, violations with their seeds."""
    runs = result.runs
    path = "UNGUARDED (plain bot)" if unguarded else "guarded"
    lines = [
        f"chaos: {len(runs)} run(s), {path}: {sum(r.orders for r in runs)} broker orders, "
        f"{sum(r.faults_fired for r in runs)} faults fired, {sum(len(r.crashes) for r in runs)} crash(es), "
        f"{sum(r.bot_errors for r in runs)} bot error(s); {len(result.killed)} run(s) as real processes "
        "SIGKILLed and restarted, the rest in process",
        "crash point             crashes  real SIGKILLs",
    ]
    hit = result.crash_points_hit
    real = Counter(p for r in runs if r.plan.seed in result.killed for p in r.crashes)
    lines += [f"  {point:<22}{hit[point]:>6}{real[point]:>14}" for point in crashpoints.POINTS]
    kinds = Counter(v.guarantee.name for r in result.failing for v in r.violations)
    if result.ok:
        lines.append("G1-G4 held in every run")
    else:
        lines.append(
            f"{len(result.failing)} failing run(s); violations: "
            + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        )
        for r in result.failing[:20]:
            died = ", ".join(r.crashes) or "no crash"
            lines.append(
                f"  seed {r.plan.seed} ({died}): {r.violations[0]}"
                + (f" (+{len(r.violations) - 1} more)" if len(r.violations) > 1 else "")
            )
            if r.plan.seed in result.sessions:
                lines.append(f"    session: {result.sessions[r.plan.seed]}  (tradeguard replay ...)")
        lines.append("replay one: tradeguard chaos STRATEGY --replay-seed SEED")
    return lines
