"""Migration 0015: the lean step functions; a store written at 0014 upgrades in place.

PostgreSQL: a claim, a move and a fill go through `tg_claim2`, `tg_move_step2` and
`tg_fill_step2` (fewer parameters, the audit record's values the function already has taken from
the claim), and the compare-and-set of a move or fill reaches the claim by its key alone:
before, on a store the planner had no statistics for (every new store until autovacuum's first
ANALYZE), the UPDATE's plan read the state index and filtered on the key, so a move read every
claim in the state it left. The plan is read from the server itself (auto_explain on the
store's own connection, its output sent to the client), not timed. SQLite: only the version
moves. Real SQLite file and PostgreSQL; the downgrade drops the three functions and 0014's are
there as they were (a process of the previous version still calls them).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore
from tradeguard.store.engine import _alembic_config, parse_url
from tradeguard.store.schema import SCHEMA_HEAD

_LEAN = ("tg_claim2", "tg_fill_step2", "tg_move_step2")
_BEFORE = ("tg_claim", "tg_fill_step", "tg_move_step")


def _buy(store: ClaimStore, agent: str, name: str, qty: int) -> None:
    claim = store.claim(
        Intent(agent, Kind.ENTRY, "QQQ", Side.BUY, name), OrderSpec(qty=Decimal(qty)), owner="w"
    ).claim
    sent = store.transition(claim, ClaimState.SUBMITTED, reason="sent", broker_order_id=f"o-{name}")
    store.transition(
        sent, ClaimState.FILLED, reason="filled", filled_qty=Decimal(qty), filled_avg_price=Decimal(500)
    )


def _version(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())


def _functions(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace"
                " AND proname IN :names"
            ).bindparams(sa.bindparam("names", expanding=True)),
            {"names": [*_LEAN, *_BEFORE]},
        ).all()
    return {str(name) for (name,) in rows}


def test_a_0014_store_with_rows_upgrades_and_its_steps_go_on(store_url: str) -> None:
    with ClaimStore(store_url) as store:
        _buy(store, "a", "a in", 5)
    engine = sa.create_engine(parse_url(store_url))
    postgres = engine.dialect.name == "postgresql"
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0014")
    assert _version(engine) == "0014"
    if postgres:
        assert _functions(engine) == set(_BEFORE)

    with ClaimStore(store_url) as store:  # opening upgrades to the head
        assert _version(engine) == SCHEMA_HEAD == "0015"
        if postgres:
            assert _functions(engine) == {*_BEFORE, *_LEAN}
        assert store.position("a", "QQQ").qty == 5
        _buy(store, "a", "a more", 2)  # a fill into the open turn
        made = store.claim(
            Intent("a", Kind.EXIT, "QQQ", Side.SELL, "a out"), OrderSpec(qty=Decimal(7)), owner="w"
        )
        out = store.transition(made.claim, ClaimState.SUBMITTED, reason="sent", broker_order_id="x-1")
        done = store.transition(
            out, ClaimState.FILLED, reason="filled", filled_qty=Decimal(7), filled_avg_price=Decimal(501)
        )
        assert done.state is ClaimState.FILLED
        assert store.position("a", "QQQ").is_flat
        # Each step wrote its record, as before: the claim, its two moves, the ledger's.
        records = list(store.audit_records())
        assert [r.action for r in records if r.client_order_id == made.claim.client_order_id] == [
            "claim", "transition", "transition",
        ]  # fmt: skip
        last = [r for r in records if r.client_order_id == made.claim.client_order_id][-1]
        assert (last.agent_id, last.kind, last.symbol, last.side) == ("a", "exit", "QQQ", "sell")
        assert (last.state, last.prev_state, last.reason, last.qty) == ("FILLED", "SUBMITTED", "filled", "7")
        assert last.claim_key == made.claim.key and last.at == done.updated_at

    with engine.begin() as conn:  # and back: only 0014's functions
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0014")
    if postgres:
        assert _functions(engine) == set(_BEFORE)
    engine.dispose()


@pytest.mark.postgres
def test_a_move_reaches_the_claim_by_its_key_on_a_store_never_analyzed(pg_url: str) -> None:
    plans: list[str] = []
    with ClaimStore(pg_url) as store:
        owner = "w"
        # Other claims in the state the moves leave: a plan through the state index reads them all.
        for i in range(40):
            store.claim(
                Intent("other", Kind.ENTRY, "SPY", Side.BUY, f"o{i}"), OrderSpec(qty=Decimal(1)), owner=owner
            )
        claim = store.claim(
            Intent("a", Kind.ENTRY, "QQQ", Side.BUY, "mine"), OrderSpec(qty=Decimal(1)), owner=owner
        ).claim
        pool: Any = store._pool
        conn = pool.checkout()
        try:  # the store's own connection (LIFO: the next write takes it) explains its statements
            cur = conn.cursor
            cur.execute("LOAD 'auto_explain'")
            for setting in (
                "auto_explain.log_min_duration = 0",
                "auto_explain.log_nested_statements = on",
                "client_min_messages = log",
            ):
                cur.execute(f"SET {setting}")
            conn.dbapi.add_notice_handler(lambda diag: plans.append(str(diag.message_primary)))
        finally:
            pool.release(conn)
        sent = store.transition(claim, ClaimState.SUBMITTED, reason="sent", broker_order_id="b-1")
        store.transition(
            sent, ClaimState.FILLED, reason="filled", filled_qty=Decimal(1), filled_avg_price=Decimal(9)
        )
    # The step functions' compare-and-set (the move's; the fill's when the store knew the open
    # turn: a store's first fill in a symbol takes the two-round-trip path, not checked here).
    updates = [p for p in plans if "Update on tg_claims" in p and "p_was_state" in p]
    assert updates, plans
    for plan in updates:
        assert "using tg_claims_pkey" in plan and "ix_tg_claims_state_agent" not in plan, plan
