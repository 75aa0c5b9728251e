"""Migration 0008: turns and claims of a crypto pair spelt without its slash, booked as "BTC/USD".

Audit 9 D1: a store written before one spelling was enforced holds agent B's 0.3 BTC as
"BTCUSD"; after the upgrade every read says "BTC/USD", so without the migration another agent
found B's coins in no ledger, adopted them and sold them (G3). Real SQLite file and PostgreSQL.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command

from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore
from tradeguard.store.engine import _alembic_config, parse_url


def _hold(store: ClaimStore, agent: str, name: str, qty: str) -> None:
    """Book a filled buy of `qty` BTC/USD for `agent` through the store."""
    intent = Intent(agent, Kind.ENTRY, "BTC/USD", Side.BUY, name)
    claim = store.claim(intent, OrderSpec(qty=Decimal(qty)), owner="w").claim
    sent = store.transition(claim, ClaimState.SUBMITTED, reason="sent", broker_order_id=f"o-{name}")
    store.transition(sent, ClaimState.FILLED, reason="filled", filled_qty=Decimal(qty),
                     filled_avg_price=Decimal("60000"))  # fmt: skip


def _as_written_before(url: str, agents: tuple[str, ...]) -> None:
    """Step the schema back to 0007 and spell those agents' rows as the code before did."""
    engine = sa.create_engine(parse_url(url))
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
        for table in ("tg_turns", "tg_claims"):
            conn.execute(
                sa.text(f"UPDATE {table} SET symbol = 'BTCUSD' WHERE agent_id IN :agents").bindparams(
                    sa.bindparam("agents", expanding=True)
                ),
                {"agents": list(agents)},
            )
    engine.dispose()


def test_a_pair_booked_without_its_slash_is_the_same_position_after_the_upgrade(store_url: str) -> None:
    with ClaimStore(store_url) as store:
        _hold(store, "bot-b", "b in", "0.3")
    _as_written_before(store_url, ("bot-b",))

    with ClaimStore(store_url) as store:  # opening upgrades to the head
        assert store.position("bot-b", "BTC/USD").qty == Decimal("0.3")
        assert {c.symbol for c in store.list_claims(agent_id="bot-b")} == {"BTC/USD"}
        # Another agent on the account finds B's coins in B's ledger: nothing to adopt.
        kept = store.adopt_position("bot-a", "BTC/USD", Decimal("0.3"), why="close_position")
        assert kept.is_flat and store.position("bot-b", "BTC/USD").qty == Decimal("0.3")


def test_open_turns_under_both_spellings_refuse_the_upgrade_naming_the_agent(store_url: str) -> None:
    with ClaimStore(store_url) as store:
        _hold(store, "bot-b", "b in", "0.3")
    _as_written_before(store_url, ("bot-b",))
    engine = sa.create_engine(parse_url(store_url))
    with engine.begin() as conn:  # the old code also booked a buy as "BTC/USD": two open turns
        conn.execute(
            sa.text(
                "INSERT INTO tg_turns (agent_id, symbol, qty, is_open, opened_at, updated_at)"
                " SELECT agent_id, 'BTC/USD', '0.1', 1, opened_at, updated_at FROM tg_turns"
                " WHERE agent_id = 'bot-b'"
            )
        )
    engine.dispose()

    with pytest.raises(Exception, match=r"bot-b hold open turns under both spellings"):
        ClaimStore(store_url).close()
