"""PostgreSQL: a step statement (claim, move, fill) sent to libpq directly (store/pg_step.py).

The store binds a step's parameters itself, as text, and prepares the statement under its own
name. These tests check what that must keep: the values a claim and its moves store and read
back are the ones given (quotes, backslashes, non-ASCII text, timestamps), a text the server
cannot hold fails as before with nothing written, and a session whose prepared statements were
dropped behind the driver's back (a pooler's `DISCARD ALL`, an operator's `DEALLOCATE ALL`)
still claims, moves and fills: the statement is prepared again.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.mothers import make_intent, make_spec
from tests.test_store_pg_fast_fill import fill, sent
from tradeguard.domain import Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import StoreError
from tradeguard.store import AuditQuery, ClaimStore

pytestmark = pytest.mark.postgres


def _behind_the_drivers_back(store: ClaimStore, statement: bytes) -> None:
    # On the one pooled connection, as a pooler's reset query reaches the session: psycopg
    # never sees it.
    pool = store._pool
    conn = pool.checkout()
    try:
        conn.dbapi.pgconn.exec_(statement)
    finally:
        pool.release(conn)


def _prepared(store: ClaimStore) -> int:
    pool = store._pool
    conn = pool.checkout()
    try:
        conn.cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        (count,) = conn.cursor.fetchall()[0]
    finally:
        pool.release(conn)
    return int(count)


@pytest.mark.parametrize("reset", [b"DEALLOCATE ALL", b"DISCARD ALL"])
def test_steps_go_on_after_the_sessions_prepared_statements_were_dropped(pg_url: str, reset: bytes) -> None:
    with ClaimStore(pg_url) as store:
        fill(store, sent(store, "e0", Side.BUY, 1), 1)
        for i in range(6):  # past the prepare threshold (5) of every step
            fill(store, sent(store, f"x{i}", Side.SELL, 1), 1)
            fill(store, sent(store, f"e{i + 1}", Side.BUY, 1), 1)
        assert _prepared(store) >= 3
        _behind_the_drivers_back(store, reset)
        assert _prepared(store) == 0
        claim = store.claim(make_intent("x-after", side=Side.SELL), make_spec(1), owner="w").claim
        _behind_the_drivers_back(store, reset)
        submitted = store.transition(claim, ClaimState.SUBMITTED, reason="accepted", broker_order_id="b")
        _behind_the_drivers_back(store, reset)
        filled = fill(store, submitted, 1)
        assert filled.state is ClaimState.FILLED
        assert store.position("bot", "QQQ").is_flat
        assert store.get(claim.key) == filled


def test_texts_and_times_of_a_step_are_stored_as_given(pg_url: str) -> None:
    odd = "it's a \\ back'slash \"quote\" ünïcödé ✓ $1 ? %s"
    with ClaimStore(pg_url) as store:
        for _ in range(7):  # unprepared runs, then prepared ones: both bind the same way
            outcome = store.claim(make_intent(odd + str(_)), make_spec(2), owner=odd, reason=odd)
            claim = outcome.claim
            assert outcome.created
            again = store.claim(make_intent(odd + str(_)), make_spec(2), owner=odd)
            assert not again.created and again.claim == claim == store.get(claim.key)
            moved = store.transition(claim, ClaimState.SUBMITTED, reason=odd, broker_order_id=odd)
            assert moved == store.get(claim.key)
            assert (moved.reason, moved.broker_order_id, moved.owner) == (odd, odd, odd)
            assert moved.updated_at >= claim.created_at and moved.lease_expires_at == claim.lease_expires_at
        records = list(store.audit_records(AuditQuery(actions=("transition",))))
        assert {record.reason for record in records} == {odd}


def test_a_text_the_server_cannot_hold_fails_the_step_with_nothing_written(pg_url: str) -> None:
    with ClaimStore(pg_url) as store:
        for i in range(7):
            store.claim(make_intent(f"warm-{i}"), make_spec(1), owner="w")
        before = list(store.audit_records(AuditQuery()))
        with pytest.raises(StoreError):
            store.claim(make_intent("nul"), make_spec(1), owner="w", reason="a\x00b")
        claim = store.claim(make_intent("fine"), make_spec(1), owner="w").claim
        with pytest.raises(StoreError):
            store.transition(claim, ClaimState.SUBMITTED, reason="a\x00b", broker_order_id="b")
        assert store.get(claim.key) == claim
        assert len(list(store.audit_records(AuditQuery()))) == len(before) + 1
        moved = store.transition(claim, ClaimState.FILLED, reason="filled", filled_qty=Decimal(1))
        assert moved.state is ClaimState.FILLED
