"""Reads on the order path stay flat as the turn history grows (issue 15; G3/G4 under load).

Every exit asks which turns moved in the last seconds (another agent's fresh fill), every
reconcile pass which turns moved or were cleared lately, and a returning exit retry which turn
is the agent's latest in its symbol. Each of those scanned the whole `tg_turns` table: with a
million turns behind it an exit took 138 ms (0.6 ms with a thousand), and the latest-turn read
112 ms. No timing here (speed lives in bench/): the plans are checked instead, on a history
made in bulk, and the answers are checked to be the same ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.store import ClaimStore, ledger

HISTORY = 5_000
T0 = datetime(2026, 5, 21, 14, 0, tzinfo=UTC)

# Every statement a "moved lately / latest turn" read runs, with parameters of the right types.
SINCE = "2026-05-21 13:59:30"
READS = {
    "moved_turns": (ledger.MOVED_TURNS_SQL, (SINCE, SINCE)),
    "cleared_turns": (ledger.CLEARED_TURNS_SQL, (SINCE, SINCE)),
    "moved in a symbol": (ledger._MOVED_SINCE, ("S7", SINCE, "S7", SINCE)),
    "latest turn": (ledger.LATEST_TURN_SQL, ("bench", "ZZZ")),
}


@pytest.fixture
def history(store_url: str) -> Iterator[ClaimStore]:
    """A store with `HISTORY` closed turns of old trading, made in one statement."""
    store = ClaimStore(store_url, settings=Settings(), clock=ManualClock(T0))
    old = "2026-04-01 14:00:00"
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        series = (
            "generate_series(1, :n) AS i"
            if store.backend == "postgresql"
            else "(WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < :n)"
            " SELECT i FROM g)"
        )
        ts = "CAST(:old AS TIMESTAMP)" if store.backend == "postgresql" else ":old"
        conn.execute(
            sa.text(
                "INSERT INTO tg_turns (agent_id, symbol, qty, is_open, opened_at, closed_at,"
                " close_reason, updated_at)"
                f" SELECT 'bench', 'S' || (i % 50), '0', 0, {ts}, {ts}, 'flat', {ts} FROM {series}"
            ),
            {"n": HISTORY, "old": old},
        )
        if store.backend == "postgresql":
            conn.execute(sa.text("ANALYZE tg_turns"))
    engine.dispose()
    yield store
    store.close()


# The open turns' partial index holds one row per agent and symbol held: reading it whole is
# bounded by what is held, not by the history.
OPEN_TURNS = "ux_tg_turns_open"


def _walks(store_url: str, backend: str, sql: str, params: tuple[object, ...]) -> list[str]:
    """Return the plan's steps that read a table without seeking it (other than the open turns)."""
    if backend == "sqlite":
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            steps = [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        # A seek shows its condition, "(updated_at>?)"; a bare SEARCH walks rows (MAX by rowid).
        return [s for s in steps if s.startswith(("SCAN", "SEARCH")) and OPEN_TURNS not in s and "(" not in s]
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            # Whether an index *can* answer it: with sequential scans priced out, a plan that
            # still walks a table has no index to seek (a small table is otherwise scanned by choice).
            conn.execute(sa.text("SET enable_seqscan = off"))
            raw = conn.connection.driver_connection
            assert raw is not None
            cur = raw.cursor()
            cur.execute("EXPLAIN (FORMAT JSON) " + sql.replace("?", "%s"), params)
            [[plan]] = cur.fetchall()
    finally:
        engine.dispose()
    walks: list[str] = []

    def visit(node: dict[str, object]) -> None:
        # "(turn_id IS NOT NULL)" is MAX() walking the primary key backwards, not a seek.
        cond = str(node.get("Index Cond", ""))
        seeks = bool(cond) and "IS NOT NULL" not in cond
        if "Relation Name" in node and not seeks and node.get("Index Name") != OPEN_TURNS:
            walks.append(f"{node['Node Type']} on {node['Relation Name']} ({node.get('Index Name')})")
        for child in node.get("Plans", []):  # type: ignore[attr-defined]
            visit(child)

    visit(plan[0]["Plan"])
    return walks


@pytest.mark.parametrize("read", sorted(READS))
def test_no_read_on_the_order_path_walks_the_turn_history(
    history: ClaimStore, store_url: str, read: str
) -> None:
    sql, params = READS[read]
    assert _walks(store_url, history.backend, sql, params) == []


def test_the_indexed_reads_give_the_same_answers(history: ClaimStore) -> None:
    """Open and closed turns moved after the bound, a phantom cleared, old history left out."""
    store = history
    store.adjust_position("a", "S7", Decimal(5), reason="open")
    store.adjust_position("b", "S7", Decimal(3), reason="open")
    store.adjust_position("b", "S7", Decimal(-3), reason="closed by a fill")
    store.adjust_position("c", "S8", Decimal(4), reason="open")
    cleared = store.close_turn("c", "S8", reason="phantom: broker flat twice")
    since = T0 - timedelta(seconds=30)
    moved = sorted((p.agent_id, p.symbol, p.qty) for p in store.moved_turns(since))
    assert moved == [("a", "S7", Decimal(5)), ("b", "S7", Decimal(0)), ("c", "S8", Decimal(0))]
    assert store.moved_turns(T0 + timedelta(seconds=1)) == []
    assert [(p.agent_id, p.symbol, p.qty, p.turn_id) for p in store.cleared_turns(since)] == [
        ("c", "S8", Decimal(4), cleared)
    ]
    assert store.cleared_turns(T0 + timedelta(seconds=1)) == []
    assert store.latest_turn_id("bench", "ZZZ") is None
    assert store.latest_turn_id("bench", "S7") == max(i for i in range(1, HISTORY + 1) if i % 50 == 7)
    assert store.latest_turn_id("c", "S8") == cleared
