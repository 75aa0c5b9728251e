"""Write the day of 1-minute QQQ/TQQQ/SQQQ bars that `tradeguard run` uses without `--bars`.

Usage: python sessions/make_bars.py [--seed 21] [--out FILE]

Without `--out` it rewrites the file shipped in the package
(tradeguard/run/data/qqq-tqqq-sqqq-2026-05-21.csv); tests/test_run_bars.py checks that the
shipped file is exactly what this script writes, so the two cannot drift apart. Any other seed
gives another realistic day (`tradeguard run ... --bars seed:N` generates one in memory).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tradeguard.run.barfile import SHIPPED_DAY
from tradeguard.run.synth import SHIPPED_SEED, generate_day, write_csv

SHIPPED = Path(__file__).resolve().parents[1] / "tradeguard" / "run" / "data" / SHIPPED_DAY


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=SHIPPED_SEED)
    parser.add_argument("--out", type=Path, default=SHIPPED)
    args = parser.parse_args()
    bars = generate_day(args.seed)
    write_csv(bars, args.out)
    print(f"wrote {len(bars)} bars (seed {args.seed}) to {args.out}")


if __name__ == "__main__":
    main()
