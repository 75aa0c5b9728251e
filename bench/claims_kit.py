"""Shared parts of bench/claims.py: the timed operations, a throw-away PostgreSQL schema, interleaving."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path

from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore, new_owner_token

WARMUP = 50
Op = Callable[[int], object]
# A claim-sized row for the raw baselines: the width of a tradeguard claim's key and payload.
RAW_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_raw (k text PRIMARY KEY, agent text, payload text, at timestamptz)"
)
RAW_INSERT = "INSERT INTO bench_raw (k, agent, payload, at) VALUES (%s, %s, %s, now())"
RAW_PAYLOAD = '{"qty":"1","side":"buy","symbol":"QQQ","time_in_force":"day","type":"market"}'


def fs_type(path: Path) -> str:
    """Return the file system type of the mount holding `path`."""
    best, kind = "", "?"
    with open("/proc/mounts", encoding="utf-8") as fh:
        for line in fh:
            _dev, mnt, fstype, *_ = line.split()
            if str(path).startswith(mnt) and len(mnt) > len(best):
                best, kind = mnt, fstype
    return kind


def fsync_op(stack: ExitStack, folder: Path) -> Op:
    """A 100-byte pwrite + fsync: one durable write on this disk."""
    fd = os.open(folder / "fsync.bin", os.O_RDWR | os.O_CREAT, 0o600)
    stack.callback(os.close, fd)
    data = b"x" * 100

    def op(_i: int) -> None:
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    return op


def safeagent_ops(stack: ExitStack, folder: Path) -> tuple[Op, Op]:
    """Return (claim+settle of a new request, claim of an existing one) on safeagent-exec-guard."""
    from safeagent_exec_guard.sqlite_store import SQLiteExecutionStore

    store = SQLiteExecutionStore(str(folder / "safeagent.db"))
    stack.callback(store._conn.close)
    run = uuid.uuid4().hex[:8]
    made: list[str] = []

    def cycle(i: int) -> None:
        request_id = f"{run}-{i}"
        assert store.claim(request_id, "submit_order")
        store.settle(request_id, {"status": "filled", "qty": "1"})
        made.append(request_id)

    def duplicate(i: int) -> None:
        assert not store.claim(made[i % len(made)], "submit_order")

    return cycle, duplicate


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


def psycopg_url(url: str) -> str:
    """Return a SQLAlchemy PostgreSQL URL as libpq takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def pg_insert_op(stack: ExitStack, url: str) -> Op:
    """One autocommit INSERT of a claim-sized row by raw psycopg (durable: synchronous_commit=on)."""
    import psycopg

    conn = stack.enter_context(psycopg.connect(psycopg_url(url), autocommit=True))
    conn.execute(RAW_TABLE)
    run = uuid.uuid4().hex[:8]

    def op(i: int) -> None:
        conn.execute(RAW_INSERT, (f"{run}-{i}", "bench", RAW_PAYLOAD))

    return op


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
