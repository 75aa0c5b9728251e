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

from tests.conftest import at_head
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
    # Migrated first: the 200 ms wait is for the lock held below, not for other schemas' migrations.
    with ClaimStore(at_head(pg_url), settings=settings, clock=clock) as store:
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

    at_head(pg_url)  # a fresh schema would wait for other schemas' migrations: not what is read here
    assert lock_timeout(pg_url.replace("options=", "options=-clock_timeout%3D1234%20", 1)) == "1234ms"
    assert lock_timeout(pg_url) == "200ms"


def _migrating_elsewhere(url: str, locked: threading.Event, release: threading.Event) -> None:
    """Hold the migration lock as a long migration of another schema in the database would."""
    from tradeguard.store.engine import _PG_MIGRATION_LOCK

    engine = sa.create_engine(parse_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            locked.set()
            release.wait(30)
    finally:
        engine.dispose()


def test_a_store_at_head_opens_while_another_schema_migrates_and_a_new_one_waits_for_it(pg_url: str) -> None:
    """The migration lock is one per database: a bot on an up-to-date store must not wait on it.

    Before, every open took the lock first, so a store at head failed to open (StoreError past
    `pg_lock_timeout_ms`) while another schema's migration ran; a store that needs migrating still
    waits for it, so two hosts never migrate one schema at once.
    """
    settings = Settings(pg_lock_timeout_ms=300)
    at_head(pg_url)  # default wait: other tests' schemas may be migrating too
    other = pg_url.replace("search_path%3D", "search_path%3Dfresh_", 1)
    schema = other.rsplit("search_path%3D", 1)[1]
    admin = sa.create_engine(parse_url(pg_url))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_migrating_elsewhere, args=(pg_url, locked, release))
    holder.start()
    try:
        assert locked.wait(10)
        with ClaimStore(pg_url, settings=settings) as store:  # at head: no wait for the lock
            assert store.list_claims() == []
        with pytest.raises(StoreError):  # a new schema must migrate: it waits, bounded
            ClaimStore(other, settings=settings)
        release.set()
        holder.join(30)
        # The lock released: it migrates (the default wait: another test's migration may be next).
        with ClaimStore(other) as store:
            assert store.list_claims() == []
    finally:
        release.set()
        holder.join(30)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
