"""bench/claims.py, table 4: an audit time-range query as the log grows, with and without `at` indexed.

Migration 0005 dropped `ix_tg_audit_at` (each audit insert wrote one of its leaves); a time range
now reads the log in id order and filters by time. Each store gets `size` records, generated in
bulk one second apart, and the query asks for the last `RECENT` of them (`--since`/`--until`, as
`tradeguard audit` and `GET /v1/audit` send it): first page and count. Then the index is created
on the same data and the query timed again, so the cost of the change reads off one run.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from claims_kit import pg_schema, psycopg_url

from tradeguard.store import ClaimStore
from tradeguard.store.audit import AuditQuery

RECENT = 100
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
_COLUMNS = "at, agent_id, action, reason, kind, symbol, side, qty, state, client_order_id, claim_key"
_SQLITE_BULK = (
    "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)"
    f" INSERT INTO tg_audit ({_COLUMNS})"
    " SELECT strftime('%Y-%m-%d %H:%M:%f000', '2026-01-05 14:30:00', '+' || i || ' seconds'),"
    " 'bench', 'transition', 'filled', 'entry', 'S' || (i % 500), 'buy', '1', 'FILLED',"
    " 'tg-' || i, 'k-' || i FROM g"
)
_PG_BULK = (
    f"INSERT INTO tg_audit ({_COLUMNS})"
    " SELECT timestamptz '2026-01-05 14:30:00+00' + i * interval '1 second',"
    " 'bench', 'transition', 'filled', 'entry', 'S' || (i %% 500), 'buy', '1', 'FILLED',"
    " 'tg-' || i, 'k-' || i FROM generate_series(1, %s) AS i"
)
_INDEX = "CREATE INDEX ix_tg_audit_at ON tg_audit (at)"


def _time(store: ClaimStore, size: int, repeats: int) -> tuple[float, float]:
    """Return (page ms, count ms): medians of `repeats` calls for the last RECENT records."""
    query = AuditQuery(
        since=START + timedelta(seconds=size - RECENT + 1), until=START + timedelta(seconds=size + 1)
    )
    page, count = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        assert len(store.audit_page(query, limit=RECENT)) == RECENT
        t1 = time.perf_counter()
        assert store.audit_count(query) == RECENT
        page.append(t1 - t0)
        count.append(time.perf_counter() - t1)
    return statistics.median(page) * 1e3, statistics.median(count) * 1e3


def audit_table(folder: Path, pg_url: str | None, sizes: list[int], repeats: int) -> None:
    """Print page and count ms per backend and size, without and with the time index."""
    rows: list[tuple[str, int, tuple[float, float], tuple[float, float]]] = []
    for size in sizes:
        with ExitStack() as stack:
            path = folder / f"audit-{size}.db"
            stores: list[tuple[str, str]] = [("sqlite", f"sqlite:///{path}")]
            ClaimStore(stores[0][1]).close()
            with sqlite3.connect(path) as conn:
                conn.execute(_SQLITE_BULK, (size,))
            if pg_url:
                import psycopg

                url = stack.enter_context(pg_schema(pg_url))
                ClaimStore(url).close()
                with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
                    conn.execute(_PG_BULK, (size,))
                    conn.execute("ANALYZE tg_audit")
                stores.append(("postgresql", url))
            for backend, store_url in stores:
                store = stack.enter_context(ClaimStore(store_url))
                scan = _time(store, size, repeats)
                with store._engine.begin() as conn:  # the index 0004 had, on the same rows
                    conn.exec_driver_sql(_INDEX)
                    if backend == "postgresql":
                        conn.exec_driver_sql("ANALYZE tg_audit")
                rows.append((backend, size, scan, _time(store, size, repeats)))
        path.unlink(missing_ok=True)
    print(f"\n4. audit time range (the last {RECENT} of N records): ms, median of {repeats} calls")
    head = f"{'page, no index':>15} {'count':>8} {'page, ix_tg_audit_at':>21} {'count':>8}"
    print(f"{'backend':<11} {'N':>10} {head}")
    for backend, size, (page, count), (ix_page, ix_count) in rows:
        print(f"{backend:<11} {size:>10,} {page:>15.1f} {count:>8.1f} {ix_page:>21.1f} {ix_count:>8.1f}")
