"""bench/claims.py, table 3: the reconciler's active-claims query, SKIP and claim as the store grows.

Each store holds `size` claims of one agent, generated in bulk by one SQL statement (FILLED, but
10 still SUBMITTED, as a long-running bot's history looks), plus the real claims the timed cases
make. The figures should not grow with `size`: every one of them is an index seek.
"""

from __future__ import annotations

import itertools
import sqlite3
import statistics
import uuid
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

from claims_kit import Op, pg_schema, psycopg_url, run_interleaved

from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ACTIVE_STATES
from tradeguard.store import ClaimStore, new_owner_token

ACTIVE = 10
_COLUMNS = (
    "claim_key, client_order_id, agent_id, kind, symbol, side, intent, payload, payload_hash, state,"
    " epoch, owner, lease_expires_at, filled_qty, attempts, reason, created_at, updated_at"
)
_SQLITE_BULK = (
    "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)"
    f" INSERT INTO tg_claims ({_COLUMNS})"
    " SELECT 'bulk-' || i, 'bulk-' || i, 'bench', 'entry', 'S' || (i % 500), 'buy', 'bulk ' || i,"
    " '{\"qty\":\"1\"}', 'h', CASE WHEN i % ? = 0 THEN 'SUBMITTED' ELSE 'FILLED' END, 1, 'o',"
    " '2026-05-21 13:30:00.000000', '1', 1, '', '2026-05-21 13:30:00.000000',"
    " '2026-05-21 13:30:00.000000' FROM g"
)
_PG_BULK = (
    f"INSERT INTO tg_claims ({_COLUMNS})"
    " SELECT 'bulk-' || i, 'bulk-' || i, 'bench', 'entry', 'S' || (i %% 500), 'buy', 'bulk ' || i,"
    " '{\"qty\":\"1\"}', 'h', CASE WHEN i %% %s = 0 THEN 'SUBMITTED' ELSE 'FILLED' END, 1, 'o',"
    " now(), '1', 1, '', now(), now() FROM generate_series(1, %s) AS i"
)


def _fill_sqlite(path: Path, size: int) -> None:
    with sqlite3.connect(path) as conn:
        # No ANALYZE: tradeguard never runs it on SQLite, and without statistics the planner
        # seeks the (state, agent_id) index. (With them, SQLite's stat1 averages away the skew of
        # a history that is almost all FILLED and it scans; PostgreSQL keeps the skew.)
        conn.execute(_SQLITE_BULK, (size, size // ACTIVE))


def _fill_pg(url: str, size: int) -> None:
    import psycopg

    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        conn.execute(_PG_BULK, (size // ACTIVE, size))
        conn.execute("ANALYZE tg_claims")


def _ops(stack: ExitStack, url: str) -> dict[str, Op]:
    store = stack.enter_context(ClaimStore(url))
    run, owner, spec = uuid.uuid4().hex[:8], new_owner_token(), OrderSpec(qty=Decimal(1))
    # The timed claims belong to another agent: they stay PENDING, and the query must find the
    # same 10 active claims at every size.
    made = [Intent("other", Kind.ENTRY, "QQQ", Side.BUY, f"{run}-seed-{i}") for i in range(50)]
    for intent in made:
        store.claim(intent, spec, owner=owner)
    active = sorted(ACTIVE_STATES)

    def query(_i: int) -> None:
        assert len(store.list_claims(states=active, agent_id="bench")) == ACTIVE

    def skip(i: int) -> None:
        assert not store.claim(made[i % len(made)], spec, owner=owner).created

    fresh = itertools.count()

    def claim(_i: int) -> None:
        intent = Intent("other", Kind.ENTRY, "QQQ", Side.BUY, f"{run}-{next(fresh)}")
        assert store.claim(intent, spec, owner=owner).created

    return {"active-claims query": query, "SKIP (duplicate claim)": skip, "new claim": claim}


def scale_table(folder: Path, pg_url: str | None, sizes: list[int], repeats: int) -> None:
    """Print p50 µs per case, backend and store size (median of `repeats` interleaved runs)."""
    results: dict[tuple[str, str, int], float] = {}
    for size in sizes:
        with ExitStack() as stack:
            path = folder / f"scale-{size}.db"
            ClaimStore(f"sqlite:///{path}").close()
            _fill_sqlite(path, size)
            cases = {f"sqlite {k}": v for k, v in _ops(stack, f"sqlite:///{path}").items()}
            if pg_url:
                url = stack.enter_context(pg_schema(pg_url))
                ClaimStore(url).close()
                _fill_pg(url, size)
                cases |= {f"postgresql {k}": v for k, v in _ops(stack, url).items()}
            runs = [run_interleaved(cases, 200, 4) for _ in range(repeats)]
            for name in cases:
                backend, case = name.split(" ", 1)
                results[(backend, case, size)] = statistics.median(
                    statistics.median(r[name]) * 1e6 for r in runs
                )
        path.unlink(missing_ok=True)
    print(
        f"\n3. scale: p50 µs with N existing claims of the agent ({ACTIVE} active), median of {repeats} runs"
    )
    head = "".join(f"{f'N={s:,}':>13}" for s in sizes)
    print(f"{'backend':<11} {'case':<24}{head}   last / first")
    for backend in ("sqlite", "postgresql"):
        for case in ("active-claims query", "SKIP (duplicate claim)", "new claim"):
            if (backend, case, sizes[0]) not in results:
                continue
            row = [results[(backend, case, s)] for s in sizes]
            cells = "".join(f"{v:>13.1f}" for v in row)
            print(f"{backend:<11} {case:<24}{cells}   {row[-1] / row[0]:.2f}")
    print("target: the active-claims query < 1 ms at 1M claims, flat from 1k")
