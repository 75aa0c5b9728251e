"""A PostgreSQL lock held by another, busy session bounds the order path's wait (G5, liveness).

Audit 23 (left open there): the store set no `lock_timeout`, so a session holding a lock on the
store's tables while it works (an operator's long statement, a migration; not idle, so not ended
by `pg_stuck_transaction_secs`) held every claim and every answer's recording for as long, also
right after a POST. Now a write waits `Settings.pg_lock_timeout_ms` and fails with StoreError
(nothing sent), as SQLite's busy timeout does. A real second session holds the lock.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.errors import StoreError
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore
from tradeguard.store.engine import parse_url

pytestmark = pytest.mark.postgres

BUSY_SECS = 4  # the other session's statement: far longer than the limit set below


def _busy_with_the_lock(url: str, locked: threading.Event, done: threading.Event) -> None:
    engine = sa.create_engine(parse_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("LOCK TABLE tg_claims IN EXCLUSIVE MODE"))
            locked.set()
            conn.execute(sa.text(f"SELECT pg_sleep({BUSY_SECS})"))  # working, not idle
    finally:
        engine.dispose()
        done.set()


def test_a_claim_behind_another_sessions_busy_lock_fails_closed_instead_of_waiting(pg_url: str) -> None:
    clock = ManualClock(datetime(2026, 5, 21, 14, 0, tzinfo=UTC))
    paper = PaperBroker(prices=FixedPrices({"TQQQ": "75.00"}), clock=clock)
    settings = Settings(pg_lock_timeout_ms=200)
    with ClaimStore(pg_url, settings=settings, clock=clock) as store:
        gateway = OrderGateway(paper, store, agent_id="bot", settings=settings, clock=clock)
        locked, done = threading.Event(), threading.Event()
        holder = threading.Thread(target=_busy_with_the_lock, args=(pg_url, locked, done))
        holder.start()
        try:
            assert locked.wait(10)
            with pytest.raises(StoreError, match="nothing was sent"):
                gateway.enter("TQQQ", qty=5, intent="entry")
            # Answered while the other session still worked: the wait was bounded, not outlasted.
            assert not done.is_set()
        finally:
            holder.join(30)
        assert paper.list_orders(status="all") == []
        # Once the lock is gone the same decision goes, once.
        sent = gateway.enter("TQQQ", qty=5, intent="entry")
        assert sent.order is not None and len(paper.list_orders(status="all")) == 1


def test_a_lock_timeout_in_the_url_is_the_operators_choice(pg_url: str) -> None:
    def lock_timeout(url: str) -> object:
        with (
            ClaimStore(url, settings=Settings(pg_lock_timeout_ms=200)) as store,
            store._engine.connect() as conn,
        ):
            return conn.exec_driver_sql("SHOW lock_timeout").scalar()  # the store's own session

    assert lock_timeout(pg_url.replace("options=", "options=-clock_timeout%3D1234%20", 1)) == "1234ms"
    assert lock_timeout(pg_url) == "200ms"
