"""Claim-store cost: tradeguard beside its baselines, measured in the same run.

Usage::

    python bench/claims.py [--quick] [--n 1500] [--rounds 5] [--repeats 3] [--pg-url URL]
                           [--procs 1,4,16] [--secs 2] [--sizes 1000,100000,1000000] [--dir DIR]
                           [--skip latency,throughput,scale,audit,sqlite]

Four tables; every figure is a median of ``--repeats`` runs, and each run interleaves its cases
(``--rounds`` slices of ``n / rounds`` calls each) so a noisy neighbour or a slow disk minute
affects all of them alike. Only same-run ratios compare across machines or runs.

1. Latency (p50 µs):

   * ``tg sqlite cycle``: claim -> SUBMITTED -> FILLED on a SQLite file, each step with its audit
     record, the fill opening or closing a ledger turn (entries and exits alternate);
   * ``safeagent claim+settle``: ``SQLiteExecutionStore.claim`` + ``settle`` (safeagent-exec-guard)
     on a file in the same folder (its own settings: WAL, ``synchronous=FULL``);
   * ``fsync floor``: a 100-byte ``pwrite`` + ``fsync``: one durable write on this disk;
   * ``tg sqlite duplicate`` / ``safeagent duplicate``: a claim of a key that exists;
   * ``tg postgresql cycle``: the cycle on PostgreSQL, in a throw-away schema;
   * ``pg durable INSERT``: one autocommit ``INSERT`` of a claim-sized row by raw psycopg: one
     round trip and one WAL flush, the floor of any durable step on that server.

2. ``claim()`` throughput on PostgreSQL at 1, 4 and 16 processes, beside raw psycopg inserting
   rows of the same width at the same concurrency (each process its own connection, ``--secs``).

3. Scale: with 1k, 100k, 1M existing claims of one agent (rows generated in bulk, 10 of them
   active), the reconciler's active-claims query, a duplicate claim (SKIP) and a new claim.

4. Audit time range: with 1k, 100k, 1M audit records, the last 100 of them by time (a page and
   a count), as the store has it (no time index since migration 0005) and with the index added.

``--skip sqlite`` leaves the SQLite, safeagent and fsync cases out of table 1 (with ``--pg-url``
and ``--skip scale,audit,sqlite``: only the PostgreSQL rows, the cycle / durable INSERT ratio
and table 2).

Files go to a temporary folder under ``--dir`` (default: this repository; not tmpfs, where an
fsync costs nothing and would flatter every figure).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

if importlib.util.find_spec("tradeguard") is None:  # a plain checkout: run from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from claims_audit import audit_table
from claims_kit import (
    Op,
    fs_type,
    fsync_op,
    pg_insert_op,
    pg_schema,
    run_interleaved,
    safeagent_ops,
    tradeguard_ops,
)
from claims_scale import scale_table
from claims_throughput import throughput_table

FSYNC = "fsync floor (100 B pwrite + fsync)"
SAFEAGENT = "safeagent claim+settle"
SAFEAGENT_DUP = "safeagent duplicate"
PG_INSERT = "pg durable INSERT (raw psycopg)"


def latency_table(
    folder: Path, pg_url: str | None, n: int, rounds: int, repeats: int, *, sqlite: bool = True
) -> None:
    """Print the latency table: median over `repeats` runs of each case's p50.

    `sqlite=False` leaves out the SQLite, safeagent and fsync cases (only PostgreSQL's remain).
    """
    if not sqlite and not pg_url:
        return
    runs: list[dict[str, float]] = []
    for repeat in range(repeats):
        run_dir = folder / f"run{repeat}"
        run_dir.mkdir()
        with ExitStack() as stack:
            cases: dict[str, Op] = {}
            if sqlite:
                cycle, dup = tradeguard_ops(stack, f"sqlite:///{run_dir / 'tradeguard.db'}")
                sa_cycle, sa_dup = safeagent_ops(stack, run_dir)
                cases["tg sqlite cycle"] = cycle
                cases[SAFEAGENT] = sa_cycle
                cases[FSYNC] = fsync_op(stack, run_dir)
                cases["tg sqlite duplicate"] = dup
                cases[SAFEAGENT_DUP] = sa_dup
            if pg_url:
                url = stack.enter_context(pg_schema(pg_url))
                pg_cycle, pg_dup = tradeguard_ops(stack, url)
                cases["tg postgresql cycle"] = pg_cycle
                cases[PG_INSERT] = pg_insert_op(stack, url)
                cases["tg postgresql duplicate"] = pg_dup
            samples = run_interleaved(cases, n, rounds)
        runs.append({name: statistics.median(xs) * 1e6 for name, xs in samples.items()})
    p50 = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
    print(f"\n1. latency, median of {repeats} interleaved runs of {n} calls each")
    print(f"{'case':<38} {'p50 µs':>9}   {'per run':<28}")
    for name, value in p50.items():
        each = " ".join(f"{r[name]:.0f}" for r in runs)
        print(f"{name:<38} {value:>9.1f}   {each:<28}")
    print()
    ratios: list[tuple[str, str, str]] = []
    if sqlite:
        ratios += [
            ("tg sqlite cycle", SAFEAGENT, "≤ 1.0"),
            ("tg sqlite cycle", FSYNC, "≤ 3"),
            ("tg sqlite duplicate", SAFEAGENT_DUP, ""),
        ]
    if pg_url:
        ratios.append(("tg postgresql cycle", PG_INSERT, "≤ 4"))
    for mine, base, target in ratios:
        per_run = " ".join(f"{r[mine] / r[base]:.2f}" for r in runs)
        goal = f"  (target {target})" if target else ""
        print(f"{mine} / {base} = {p50[mine] / p50[base]:.2f}  [runs: {per_run}]{goal}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run in about a minute")
    parser.add_argument("--n", type=int, default=1500, help="timed calls per case and run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved slices per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs; every figure is their median")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TRADEGUARD_TEST_PG_URL"),
        help="PostgreSQL URL (default: $TRADEGUARD_TEST_PG_URL; none: PostgreSQL is skipped)",
    )
    parser.add_argument("--procs", default="1,4,16", help="process counts for the throughput table")
    parser.add_argument("--secs", type=float, default=2.0, help="seconds per throughput measurement")
    parser.add_argument("--sizes", default="1000,100000,1000000", help="existing claims for the scale table")
    parser.add_argument(
        "--skip",
        default="",
        help="tables to leave out: latency,throughput,scale,audit; sqlite: table 1's SQLite cases",
    )
    parser.add_argument(
        "--dir", type=Path, default=Path(__file__).resolve().parent.parent, help="temp files (not tmpfs)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.rounds, args.secs, args.sizes = 300, 3, 1.0, "1000,100000"
    skip = {s for s in args.skip.split(",") if s}
    args.dir.mkdir(parents=True, exist_ok=True)  # a folder named for the run, as `mkdir -p` would
    folder = Path(tempfile.mkdtemp(prefix="tg-bench-", dir=args.dir))
    pg = args.pg_url.replace("postgresql://", "postgresql+psycopg://", 1) if args.pg_url else None
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, files in {folder} "
        f"({fs_type(folder)}), cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, "
        f"PostgreSQL {'yes' if pg else 'skipped'}"
    )
    try:
        if "latency" not in skip:
            latency_table(folder, pg, args.n, args.rounds, args.repeats, sqlite="sqlite" not in skip)
        if pg and "throughput" not in skip:
            procs = [int(p) for p in args.procs.split(",")]
            throughput_table(pg, procs, args.secs, args.repeats)
        if "scale" not in skip:
            sizes = [int(s) for s in args.sizes.split(",")]
            scale_table(folder, pg, sizes, args.repeats)
        if "audit" not in skip:
            audit_table(folder, pg, [int(s) for s in args.sizes.split(",")], args.repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
