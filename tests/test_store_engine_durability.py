"""Every transaction on the PostgreSQL engine commits durably, whatever the session's setting (G1, G5).

Audit 14a D3: the claim service's action claims, settles and API keys ran on an engine that set
`synchronous_commit = on` once per connection. Behind a pooler in transaction mode another client
may turn it off for the server session; a PROCEED already answered could then be lost in a server
crash and a retry answered PROCEED again. The engine now sets it in each transaction.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from tradeguard.service.actions import ActionStore
from tradeguard.store.engine import open_engine

pytestmark = pytest.mark.postgres


def test_a_transaction_commits_durably_after_the_session_turned_it_off(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        with engine.connect() as conn:
            # What another client of a transaction-mode pooler may leave on the server session.
            conn.exec_driver_sql("SET synchronous_commit = off")
            conn.commit()
            with conn.begin():
                assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    finally:
        engine.dispose()


def test_an_action_claim_sets_synchronous_commit_in_its_own_transaction(pg_url: str) -> None:
    store = ActionStore(pg_url)
    sent: list[str] = []
    event.listen(store._engine, "before_cursor_execute", lambda _c, _cur, text, *_: sent.append(text))
    try:
        assert store.claim("bot", "order-42", "payment.send").settlement_token is not None
        insert = next(i for i, text in enumerate(sent) if text.startswith("INSERT INTO tg_actions"))
        assert "SET LOCAL synchronous_commit = on" in sent[:insert]
    finally:
        store.close()
