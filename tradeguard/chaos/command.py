"""`tradeguard chaos`: the campaign from its options; progress, the table of runs, violations and seeds.

Most runs are in process (`harness`), about one in `--kill-every` as real SIGKILLed bot processes
(`kill`), on `--store` when given. `--workers N` runs every run as N bot processes (hosts) on
`--store` and one served paper account, killed at random (`hosts`).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections import Counter
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from tradeguard import crashpoints
from tradeguard.errors import ConfigError

if TYPE_CHECKING:
    from tradeguard.chaos.campaign import ChaosResult

__all__ = ["ChaosOptions", "run_chaos"]

DEFAULT_KILL_EVERY = 20  # `--kill-every`'s default (a replay command repeats any other value)


def _points(text: str) -> tuple[str, ...]:
    if text == "all":
        return crashpoints.POINTS
    points = tuple(p.strip() for p in text.split(",") if p.strip())
    if not points:
        # An empty list would run every run without a crash and still report "G1-G4 held".
        raise ConfigError(f"--crash-points {text!r}: name at least one point, or all")
    unknown = [p for p in points if p not in crashpoints.POINTS]
    if unknown:
        raise ConfigError(
            f"--crash-points: unknown {', '.join(unknown)} (known: {', '.join(crashpoints.POINTS)})"
        )
    return points


_LISTED = 20  # failing runs listed one per line; --json has them all


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    """The options of `tradeguard chaos` (declared in `tradeguard.cli.chaos`)."""

    strategy: str
    runs: int = 200
    seed: int = 1
    replay_seed: int | None = None
    faults: str | None = None
    crash_points: str = "all"
    bars: str | None = None
    kill_every: int = DEFAULT_KILL_EVERY
    unguarded: bool = False
    save: str = "chaos-sessions"
    json: bool = False
    store: str | None = None
    workers: int = 1
    minutes: int | None = None


def run_chaos(args: ChaosOptions) -> int:
    """Run the campaign; print the report; return 1 on any violation."""
    from tradeguard.chaos.campaign import ChaosResult, chaos  # noqa: PLC0415 - `--help` loads no guard
    from tradeguard.chaos.harness import WorkerFailed  # noqa: PLC0415 - as above
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
    result = ChaosResult()
    try:
        chaos(
            args.strategy, runs=args.runs, seed=args.seed, bars=bars, faults=plan, hosts=args.workers,
            crash_points=_points(args.crash_points), unguarded=args.unguarded, only_seed=args.replay_seed,
            save_to=args.save, kill_every=args.kill_every, store_url=args.store,
            progress=progress, into=result,
        )  # fmt: skip
    except KeyboardInterrupt:
        # The runs done so far are reported (a violation among them is what the user waited
        # for); the interruption itself then ends the command as any Ctrl-C does (130).
        if result.runs:
            print(
                f"chaos: interrupted after {len(result.runs)} of {args.runs} run(s); the runs so far:",
                file=out,
            )
            _print(result, args, out)
        raise
    except WorkerFailed as exc:
        # A bot process died of something neither a kill nor the strategy explains: the run
        # proves nothing either way. What ran before it is reported, then the cause in one line.
        if result.runs:
            _print(result, args, out)
        print(f"tradeguard: chaos stopped after {len(result.runs)} run(s): {exc}", file=sys.stderr)
        return 1
    _print(result, args, out)
    return 0 if result.ok else 1


def _print(result: ChaosResult, args: ChaosOptions, out: IO[str]) -> None:
    if args.json:
        json.dump(as_json(result, args), out, indent=2)
        out.write("\n")
    else:
        for line in report_lines(result, args):
            print(line, file=out)


def replay_command(args: ChaosOptions, seed: int) -> str:
    """Return the command that runs exactly the run with `seed` again (as a shell would take it).

    Every option that shapes a run is repeated (bars, faults, crash points, whether it runs as
    real processes, the path); `--runs` and `--seed` only choose which seeds run. A password in
    `--store` is shown as *** rather than printed.
    """
    words = ["tradeguard", "chaos", args.strategy, "--replay-seed", str(seed)]
    if args.bars is not None:
        words += ["--bars", args.bars]
    if args.minutes is not None:
        words += ["--minutes", str(args.minutes)]
    if args.faults is not None:
        words += ["--faults", args.faults]
    if args.crash_points != "all":
        words += ["--crash-points", args.crash_points]
    if args.kill_every != DEFAULT_KILL_EVERY:
        words += ["--kill-every", str(args.kill_every)]
    if args.store is not None:
        words += ["--store", _without_password(args.store)]
    if args.workers != 1:
        words += ["--workers", str(args.workers)]
    if args.unguarded:
        words.append("--unguarded")
    return shlex.join(words)


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit  # noqa: PLC0415 - only with --store

    parts = urlsplit(url)
    if not parts.password:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))


def as_json(result: ChaosResult, args: ChaosOptions | None = None) -> dict[str, object]:
    """Return the result as plain JSON values (with `args`, each violation's replay command)."""
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
                **({"replay": replay_command(args, r.plan.seed)} if args is not None else {}),
            }
            for r in result.failing
        ],
        "sessions": {str(k): v for k, v in result.sessions.items()},
    }


def report_lines(result: ChaosResult, args: ChaosOptions) -> list[str]:
    """Return the plain-text report: totals, crash points, violations with their seeds."""
    runs = result.runs
    path = "UNGUARDED (plain bot)" if args.unguarded else "guarded"
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
        for r in result.failing[:_LISTED]:
            died = ", ".join(r.crashes) or "no crash"
            lines.append(
                f"  seed {r.plan.seed} ({died}): {r.violations[0]}"
                + (f" (+{len(r.violations) - 1} more)" if len(r.violations) > 1 else "")
            )
            if r.plan.seed in result.sessions:
                session = result.sessions[r.plan.seed]
                lines.append(f"    session: {session}  (tradeguard replay {shlex.quote(session)} --compare)")
            if result.folder is not None and r.plan.seed in result.killed:
                lines.append(
                    f"    files: {os.path.join(result.folder, f'run-{r.plan.seed}')} (store, account, logs)"
                )
        if len(result.failing) > _LISTED:
            more = len(result.failing) - _LISTED
            lines.append(f"  ... and {more} more failing run(s) (--json lists every one)")
        lines.append(f"replay one: {replay_command(args, result.failing[0].plan.seed)}")
    return lines
