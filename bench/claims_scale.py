"""bench/claims.py, table 3: the reads on the order path as the store grows.

Each store holds `size` claims of one agent, generated in bulk by one SQL statement (FILLED, but
10 still SUBMITTED, as a long-running bot's history looks) and `size / 2` closed turns, plus the
real claims the timed cases make. Timed: the reconciler's active-claims query, SKIP, a new
claim, the turns moved lately (every exit and reconcile pass) and an agent's latest turn (an
exit's retry). The figures should not grow with `size`: every one of them is an index seek.
"""

from __future__ import annotations

import itertools
import sqlite3
import statistics
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
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
# A history of N claims closed about N/2 turns (an entry and an exit each): they are made too,
# so the ledger reads on the order path are timed against a history of the same age.
_SQLITE_TURNS = (
    "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)"
    " INSERT INTO tg_turns (agent_id, symbol, qty, is_open, opened_at, closed_at, close_reason, updated_at)"
    " SELECT 'bench', 'S' || (i % 500), '0', 0, '2026-05-21 13:30:00.000000', '2026-05-21 13:31:00.000000',"
    " 'flat', '2026-05-21 13:31:00.000000' FROM g"
)
_PG_TURNS = (
    "INSERT INTO tg_turns (agent_id, symbol, qty, is_open, opened_at, closed_at, close_reason, updated_at)"
    " SELECT 'bench', 'S' || (i %% 500), '0', 0, now() - interval '1 day', now() - interval '1 day',"
    " 'flat', now() - interval '1 day' FROM generate_series(1, %s) AS i"
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
        conn.execute(_SQLITE_TURNS, (size // 2,))


def _fill_pg(url: str, size: int) -> None:
    import psycopg

    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        conn.execute(_PG_BULK, (size // ACTIVE, size))
        conn.execute(_PG_TURNS, (size // 2,))
        conn.execute("ANALYZE tg_claims")
        conn.execute("ANALYZE tg_turns")


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

    lately = datetime.now(UTC) - timedelta(seconds=30)

    def moved(_i: int) -> None:
        # Every exit asks it (another agent's fresh fill?), and every reconcile pass.
        store.moved_turns(lately)

    def latest(_i: int) -> None:
        # An exit's retry asks it: a symbol the agent has not traded lately is the far case.
        assert store.latest_turn_id("bench", "ZZZ") is None

    return {
        "active-claims query": query, "SKIP (duplicate claim)": skip, "new claim": claim,
        "turns moved lately": moved, "agent's latest turn": latest,
    }  # fmt: skip


CASES = (
    "active-claims query", "SKIP (duplicate claim)", "new claim", "turns moved lately",
    "agent's latest turn",
)  # fmt: skip


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
        f"\n3. scale: p50 µs with N existing claims of the agent ({ACTIVE} active) and N/2 closed turns,"
        f" median of {repeats} runs"
    )
    head = "".join(f"{f'N={s:,}':>13}" for s in sizes)
    print(f"{'backend':<11} {'case':<24}{head}   last / first")
    for backend in ("sqlite", "postgresql"):
        for case in CASES:
            if (backend, case, sizes[0]) not in results:
                continue
            row = [results[(backend, case, s)] for s in sizes]
            cells = "".join(f"{v:>13.1f}" for v in row)
            print(f"{backend:<11} {case:<24}{cells}   {row[-1] / row[0]:.2f}")
    print("target: the active-claims query < 1 ms at 1M claims, flat from 1k (every row flat)")
