"""bench/claims.py, table 2: claim() throughput on PostgreSQL beside raw psycopg, at 1..N processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
import uuid
from decimal import Decimal
from multiprocessing.synchronize import Barrier

from claims_kit import RAW_INSERT, RAW_PAYLOAD, RAW_TABLE, pg_schema, psycopg_url

WARMUP = 20


def _worker(mode: str, url: str, secs: float, barrier: Barrier, out: mp.Queue[int]) -> None:
    run = f"{uuid.uuid4().hex[:8]}-{os.getpid()}"
    if mode == "tradeguard":
        from tradeguard.domain import Side
        from tradeguard.domain.intents import Intent, Kind, OrderSpec
        from tradeguard.store import ClaimStore, new_owner_token

        store = ClaimStore(url)
        owner, spec = new_owner_token(), OrderSpec(qty=Decimal(1))

        def op(i: int) -> None:
            intent = Intent("bench", Kind.ENTRY, f"S{i % 50}", Side.BUY, f"{run}-{i}")
            assert store.claim(intent, spec, owner=owner).created

    else:
        import psycopg

        conn = psycopg.connect(psycopg_url(url), autocommit=True)

        def op(i: int) -> None:
            conn.execute(RAW_INSERT, (f"{run}-{i}", "bench", RAW_PAYLOAD))

    for i in range(WARMUP):
        op(-1 - i)
    barrier.wait()
    deadline, done = time.monotonic() + secs, 0
    while time.monotonic() < deadline:
        op(done)
        done += 1
    out.put(done)


def _measure(mode: str, url: str, procs: int, secs: float) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(mode, url, secs, barrier, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    total = sum(out.get(timeout=120 + secs) for _ in workers)
    for w in workers:
        w.join()
    return total / secs


def throughput_table(pg_url: str, procs: list[int], secs: float, repeats: int) -> None:
    """Print claims/s beside raw INSERTs/s per process count: medians of `repeats` interleaved runs."""
    import psycopg

    from tradeguard.store import ClaimStore

    with pg_schema(pg_url) as url:
        ClaimStore(url).close()  # migrate once, before the workers start
        with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
            conn.execute(RAW_TABLE)
        runs: dict[tuple[str, int], list[float]] = {}
        for _ in range(repeats):
            for p in procs:
                for mode in ("tradeguard", "raw"):
                    runs.setdefault((mode, p), []).append(_measure(mode, url, p, secs))
    print(f"\n2. PostgreSQL throughput, {secs:.0f} s per measurement, median of {repeats} interleaved runs")
    print(f"{'processes':>9} {'claim()/s':>11} {'raw INSERT/s':>13} {'ratio':>7}   per-run ratios")
    for p in procs:
        tg, raw = runs[("tradeguard", p)], runs[("raw", p)]
        per_run = " ".join(f"{a / b:.2f}" for a, b in zip(tg, raw, strict=True))
        ratio = statistics.median(tg) / statistics.median(raw)
        print(
            f"{p:>9} {statistics.median(tg):>11.0f} {statistics.median(raw):>13.0f} {ratio:>7.2f}   {per_run}"
        )
    print("target at 16 processes: ratio ≥ 0.5")
