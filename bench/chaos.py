"""Runs per second of `tradeguard chaos`: a one-day strategy under faults and crashes, and without.

Usage: python bench/chaos.py [--runs 200] [--seed 1] [--kill-every 20] [--bars FILE|seed:N] [--strategy S]

Both in one run, on the same bars (the shipped day of 390 minutes by default) and the same seeds:

- chaos: random fault plans and the bot killed at crash points, G1-G4 checked: in process, and
  about one run in `--kill-every` (default 20) as real bot processes SIGKILLed and restarted;
- baseline: the same runs with no faults and no crashes, G1-G4 checked all the same.

The issue's target: 200 runs in under 2 minutes on this machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the example strategies live in the repository, not the wheel

from tradeguard.chaos.campaign import ChaosResult, chaos  # noqa: E402
from tradeguard.run.barfile import load_bars  # noqa: E402


def timed(label: str, runs: int, **options: object) -> tuple[float, ChaosResult]:
    started = time.perf_counter()
    result = chaos(runs=runs, **options)  # type: ignore[arg-type]
    secs = time.perf_counter() - started
    orders = sum(r.orders for r in result.runs)
    crashes = sum(len(r.crashes) for r in result.runs)  # faults of real-kill runs are not counted
    faults = sum(r.faults_fired for r in result.runs)
    verdict = "G1-G4 held" if result.ok else f"{len(result.failing)} failing run(s)"
    print(
        f"{label:<9} {runs} runs in {secs:6.1f} s = {runs / secs:6.1f} runs/s; {orders} orders, "
        f"{faults} faults, {crashes} crashes; {verdict}"
    )
    return secs, result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bars", default=None)
    parser.add_argument("--strategy", default="strategies.momentum")
    parser.add_argument("--kill-every", type=int, default=20)
    args = parser.parse_args()
    bars = load_bars(args.bars)
    print(f"{args.strategy} on {bars.source}: {len(bars.minutes)} minutes a run")
    common = {"strategy": args.strategy, "seed": args.seed, "bars": bars}
    chaos_secs, result = timed("chaos", args.runs, kill_every=args.kill_every, **common)
    print(f"          of which {len(result.killed)} run(s) as real SIGKILLed processes")
    base_secs, _ = timed("baseline", args.runs, crash=False, **common)
    print(
        f"faults and crashes cost x{chaos_secs / base_secs:.2f}; "
        f"crash points hit: {dict(result.crash_points_hit)}"
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
