"""Migration 0014: a store written at 0013 upgrades in place, its rows and rules unchanged.

PostgreSQL: the three functions that take advisory locks (`tg_claim`, `tg_fill_step`,
`tg_expect_turn`) are replaced with ones keyed by the schema; a store of 0013 with claims, an
open position and a caller's id upgrades on open, and afterwards its claims, fills, exit sizing
and id conflicts behave as before. SQLite: only the version moves. Real SQLite file and
PostgreSQL; the downgrade restores 0013's functions.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command

from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import StoreError
from tradeguard.ports import account_key_from_id
from tradeguard.store import ClaimStore
from tradeguard.store.engine import _alembic_config, parse_url
from tradeguard.store.schema import SCHEMA_HEAD

_LOCKING = ("tg_claim", "tg_fill_step", "tg_expect_turn")


def _buy(store: ClaimStore, agent: str, name: str, qty: int, coid: str | None = None) -> None:
    intent = Intent(agent, Kind.ENTRY, "QQQ", Side.BUY, name)
    claim = store.claim(intent, OrderSpec(qty=Decimal(qty)), owner="w", client_order_id=coid).claim
    sent = store.transition(claim, ClaimState.SUBMITTED, reason="sent", broker_order_id=f"o-{name}")
    store.transition(
        sent, ClaimState.FILLED, reason="filled", filled_qty=Decimal(qty), filled_avg_price=Decimal(500)
    )


def _version(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())


def _keyed_by_schema(engine: sa.Engine) -> dict[str, bool]:
    """Whether each locking function's body hashes its keys with the schema (PostgreSQL)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT proname, prosrc FROM pg_proc WHERE pronamespace = current_schema()::regnamespace"
                " AND proname IN :names"
            ).bindparams(sa.bindparam("names", expanding=True)),
            {"names": list(_LOCKING)},
        ).all()
    return {str(name): "'tg_claims'::regclass" in str(body) for name, body in rows}


def test_a_0013_store_with_rows_upgrades_and_keeps_its_rules(store_url: str) -> None:
    with ClaimStore(store_url) as store:
        store.register_account("a", account_key_from_id("account-x"))
        _buy(store, "a", "a in", 5, coid="entry-1")  # a caller's id, in account x's scope
        _buy(store, "u", "u in", 2)  # an agent of unknown account
    engine = sa.create_engine(parse_url(store_url))
    postgres = engine.dialect.name == "postgresql"
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0013")
    assert _version(engine) == "0013"
    if postgres:
        assert _keyed_by_schema(engine) == dict.fromkeys(_LOCKING, False)

    with ClaimStore(store_url) as store:  # opening upgrades to the head
        assert _version(engine) == SCHEMA_HEAD
        if postgres:
            assert _keyed_by_schema(engine) == dict.fromkeys(_LOCKING, True)
        # The rows are as they were ...
        assert store.position("a", "QQQ").qty == 5 and store.position("u", "QQQ").qty == 2
        assert len(store.list_claims()) == 2
        # ... and the rules too: the id is taken on account x and, for an unknown account,
        # everywhere; another account may use it.
        with pytest.raises(StoreError):
            store.claim(
                Intent("u", Kind.ENTRY, "QQQ", Side.BUY, "u again"), OrderSpec(qty=Decimal(1)), owner="w",
                client_order_id="entry-1",
            )  # fmt: skip
        store.register_account("b", account_key_from_id("account-y"))
        _buy(store, "b", "b in", 3, coid="entry-1")
        assert sorted(c.agent_id for c in store.list_claims() if c.client_order_id == "entry-1") == ["a", "b"]
        # A fill of an open position and an exit sized under the symbol's lock.
        _buy(store, "a", "a more", 1)
        made, room = store.claim_exit(
            Intent("a", Kind.EXIT, "QQQ", Side.SELL, "a out"), OrderSpec(), owner="w",
            broker_available=Decimal(8), reason="exit",  # u's 2 may be on the account
        )  # fmt: skip
        assert made is not None and made.created and room is not None and room.qty == 6
        out = store.transition(made.claim, ClaimState.SUBMITTED, reason="sent", broker_order_id="x-1")
        store.transition(
            out, ClaimState.FILLED, reason="filled", filled_qty=Decimal(6), filled_avg_price=Decimal(501)
        )
        assert store.position("a", "QQQ").is_flat

    with engine.begin() as conn:  # and back: 0013's functions again
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0013")
    if postgres:
        assert _keyed_by_schema(engine) == dict.fromkeys(_LOCKING, False)
    engine.dispose()
