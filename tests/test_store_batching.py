"""Migration 0004 on a store in use, and the order path's batched statements (PostgreSQL binds them itself).

On PostgreSQL the store sends several statements as one query with their parameters bound as
literals (`store/connections.py`); these tests put text a naive binder would break through every
write of a cycle, on both backends, and read it back.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command

from tests.mothers import make_intent, make_spec
from tradeguard.domain import AuditAction
from tradeguard.domain.lifecycle import ACTIVE_STATES, ClaimState
from tradeguard.errors import LeaseLost
from tradeguard.store import ClaimStore
from tradeguard.store.audit import AuditQuery
from tradeguard.store.engine import _alembic_config, parse_url
from tradeguard.store.schema import SCHEMA_HEAD

AWKWARD = "it's a \\ back'slash'); DROP TABLE tg_claims; -- ünï \"q\" ?%s %(x)s"


def test_a_store_at_0003_upgrades_and_its_active_claims_are_found(store_url: str) -> None:
    with ClaimStore(store_url) as store:
        live = store.claim(make_intent("live"), make_spec(), owner="w").claim
        done = store.claim(make_intent("done"), make_spec(), owner="w").claim
        store.transition(done, ClaimState.REJECTED, reason="refused")
    engine = sa.create_engine(parse_url(store_url))
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    with engine.connect() as conn:
        assert "ix_tg_claims_state_agent" not in {
            i["name"] for i in sa.inspect(conn).get_indexes("tg_claims")
        }
    engine.dispose()
    with ClaimStore(store_url) as store:  # opening upgrades to the head
        found = store.list_claims(states=sorted(ACTIVE_STATES), agent_id=live.agent_id)
        assert [c.key for c in found] == [live.key]
    engine = sa.create_engine(parse_url(store_url))
    with engine.connect() as conn:
        assert (
            str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()) == SCHEMA_HEAD
        )
        assert "ix_tg_claims_state_agent" in {i["name"] for i in sa.inspect(conn).get_indexes("tg_claims")}
    engine.dispose()


def test_awkward_text_survives_every_write_of_a_cycle(store: ClaimStore) -> None:
    outcome = store.claim(make_intent(AWKWARD), make_spec(), owner="w", reason=AWKWARD)
    sent = store.transition(outcome.claim, ClaimState.SUBMITTED, reason=AWKWARD, broker_order_id=AWKWARD[:60])
    filled = store.transition(
        sent, ClaimState.FILLED, reason=AWKWARD, filled_qty=Decimal(1), filled_avg_price=Decimal("1.5"),
        detail={"note": AWKWARD},
    )  # fmt: skip
    store.record_skip(filled, agent_id=filled.agent_id, reason=AWKWARD)
    assert store.get(filled.key) == filled
    assert (filled.reason, filled.broker_order_id) == (AWKWARD, AWKWARD[:60])
    records = list(store.audit_records(AuditQuery(client_order_id=filled.client_order_id)))
    assert [r.action for r in records] == [
        AuditAction.CLAIM, AuditAction.TRANSITION, AuditAction.TRANSITION, AuditAction.SKIP,
    ]  # fmt: skip
    assert all(r.reason == AWKWARD for r in records[1:])
    assert records[2].detail["note"] == AWKWARD
    assert store.position(filled.agent_id, filled.symbol).qty == 1


def test_a_failed_compare_and_set_writes_no_record(store: ClaimStore) -> None:
    claim = store.claim(make_intent("cas"), make_spec(), owner="w").claim
    store.transition(claim, ClaimState.SUBMITTED, reason="first")
    before = store.audit_count()
    with pytest.raises(LeaseLost, match="no longer PENDING"):
        store.transition(claim, ClaimState.SUBMITTED, reason="stale snapshot")
    assert store.audit_count() == before
