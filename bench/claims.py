"""Claim-store latency: tradeguard vs safeagent-exec-guard vs the fsync floor.

Usage::

    python bench/claims.py [--n 2000] [--rounds 10] [--pg-url URL] [--dir DIR]

One run prints one table:

* ``tradeguard sqlite cycle``: claim -> SUBMITTED -> FILLED, with the audit record of each step
  and the ledger turn the fill opens or closes (entries and exits alternate, so every fill opens
  or closes a turn), on a SQLite file.
* ``tradeguard postgresql cycle``: the same on PostgreSQL (``--pg-url`` or
  ``TRADEGUARD_TEST_PG_URL``), in a throw-away schema.
* ``safeagent sqlite claim+settle``: ``SQLiteExecutionStore.claim`` + ``settle`` on a file in
  the same directory, with the library's own settings (WAL; sqlite3's default
  ``synchronous=FULL``, so one fsync per call).
* ``fsync floor``: a 100-byte ``pwrite`` + ``fsync`` on a file in the same directory: what one
  durable write costs on this disk before any database work.
* ``tradeguard <backend> duplicate``: ``claim()`` of a key that already exists (the SKIP path).

The cases run interleaved (``--rounds`` rounds of ``n / rounds`` operations each), so a noisy
neighbour or a slow disk minute affects all of them alike. ops/s is 1 / mean latency of one
caller. Files go to a temporary directory under ``--dir`` (default: this repository, which must
not be on tmpfs: a tmpfs fsync costs nothing and would flatter every figure).
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
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path

if importlib.util.find_spec("tradeguard") is None:  # a plain checkout: run from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore, new_owner_token

WARMUP = 50
FSYNC = "fsync floor (100 B pwrite + fsync)"
SAFEAGENT = "safeagent sqlite claim+settle"
Op = Callable[[int], object]


def _fs_type(path: Path) -> str:
    best, kind = "", "?"
    with open("/proc/mounts", encoding="utf-8") as fh:
        for line in fh:
            _dev, mnt, fstype, *_ = line.split()
            if str(path).startswith(mnt) and len(mnt) > len(best):
                best, kind = mnt, fstype
    return kind


def fsync_op(stack: ExitStack, folder: Path) -> Op:
    fd = os.open(folder / "fsync.bin", os.O_RDWR | os.O_CREAT, 0o600)
    stack.callback(os.close, fd)
    data = b"x" * 100

    def op(_i: int) -> None:
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    return op


def safeagent_op(stack: ExitStack, folder: Path) -> Op:
    from safeagent_exec_guard.sqlite_store import SQLiteExecutionStore

    store = SQLiteExecutionStore(str(folder / "safeagent.db"))
    stack.callback(store._conn.close)

    def op(i: int) -> None:
        request_id = f"req-{i}"
        assert store.claim(request_id, "submit_order")
        store.settle(request_id, {"status": "filled", "qty": "1"})

    return op


def tradeguard_ops(stack: ExitStack, url: str) -> tuple[Op, Op]:
    """Return (cycle, duplicate): a full claim lifecycle, and a claim of an existing key."""
    store = stack.enter_context(ClaimStore(url))
    run, owner = uuid.uuid4().hex[:8], new_owner_token()
    made: list[tuple[Intent, OrderSpec]] = []

    def cycle(i: int) -> None:
        # Entries and exits alternate on one symbol: every fill opens or closes a ledger turn.
        kind, side = (Kind.ENTRY, Side.BUY) if i % 2 == 0 else (Kind.EXIT, Side.SELL)
        intent, spec = Intent("bench", kind, "QQQ", side, f"{run}-{i}"), OrderSpec(qty=Decimal(1))
        outcome = store.claim(intent, spec, owner=owner)
        assert outcome.created
        sent = store.transition(
            outcome.claim, ClaimState.SUBMITTED, reason="accepted", broker_order_id=f"b-{i}"
        )
        store.transition(
            sent,
            ClaimState.FILLED,
            reason="filled",
            filled_qty=Decimal(1),
            filled_avg_price=Decimal("512.25"),
        )
        made.append((intent, spec))

    def duplicate(i: int) -> None:
        intent, spec = made[i % len(made)]
        assert not store.claim(intent, spec, owner=owner).created

    return cycle, duplicate


@contextmanager
def pg_schema(base: str) -> Iterator[str]:
    """Yield a URL on a fresh schema of `base`, dropped afterwards."""
    import sqlalchemy as sa

    schema = f"tg_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run_interleaved(cases: dict[str, Op], n: int, rounds: int) -> dict[str, list[float]]:
    """Warm every case up, then time `n` calls of each, `rounds` slices at a time."""
    counters = dict.fromkeys(cases, 0)
    for name, op in cases.items():
        for _ in range(WARMUP):
            op(counters[name])
            counters[name] += 1
    samples: dict[str, list[float]] = {name: [] for name in cases}
    clock = time.perf_counter
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        for name, op in cases.items():
            out, start = samples[name], counters[name]
            for i in range(start, start + per_round):
                t0 = clock()
                op(i)
                out.append(clock() - t0)
            counters[name] = start + per_round
    return samples


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def print_table(samples: dict[str, list[float]]) -> None:
    print(f"{'case':<40} {'p50 µs':>9} {'p99 µs':>9} {'ops/s':>9}")
    print("-" * 70)
    for name, xs in samples.items():
        p50, p99 = statistics.median(xs) * 1e6, _pct(xs, 0.99) * 1e6
        print(f"{name:<40} {p50:>9.1f} {p99:>9.1f} {len(xs) / sum(xs):>9.0f}")
    medians = {name: statistics.median(xs) for name, xs in samples.items()}
    print()
    tg = medians["tradeguard sqlite cycle"]
    for other in (SAFEAGENT, FSYNC):
        print(f"tradeguard sqlite cycle p50 / {other} p50 = {tg / medians[other]:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="timed operations per case")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved slices per case")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TRADEGUARD_TEST_PG_URL"),
        help="PostgreSQL URL (default: $TRADEGUARD_TEST_PG_URL; none: PostgreSQL is skipped)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="where temp files go (not tmpfs)",
    )
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="tg-bench-", dir=args.dir))
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, files in {folder} "
        f"({_fs_type(folder)}), n={args.n}, rounds={args.rounds}"
    )
    try:
        with ExitStack() as stack:
            cycle, dup = tradeguard_ops(stack, f"sqlite:///{folder / 'tradeguard.db'}")
            cases: dict[str, Op] = {"tradeguard sqlite cycle": cycle}
            cases[SAFEAGENT] = safeagent_op(stack, folder)
            cases[FSYNC] = fsync_op(stack, folder)
            dups: dict[str, Op] = {"tradeguard sqlite duplicate": dup}
            if args.pg_url:
                pg_cycle, pg_dup = tradeguard_ops(stack, stack.enter_context(pg_schema(args.pg_url)))
                cases["tradeguard postgresql cycle"] = pg_cycle
                dups["tradeguard postgresql duplicate"] = pg_dup
            print_table(run_interleaved(cases | dups, args.n, args.rounds))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
