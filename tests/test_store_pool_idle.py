"""G5 under load: a burst of threads does not leave a claim store holding server connections for good.

PostgreSQL allows 100 connections by default; a store that kept every connection a burst opened
(and a service process holds several stores) would starve the next process of slots, and its
claims would fail (StoreError) although the database is fine.
"""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.store import ClaimStore, new_owner_token
from tradeguard.store.connections import MAX_IDLE

pytestmark = pytest.mark.postgres


def _settled_connections(admin: sa.Engine, name: str) -> int:
    """The count once closed sessions are gone: a backend leaves pg_stat_activity a moment after
    its client closed the socket (a wait for that state, bounded; not a timing check)."""
    deadline = time.monotonic() + 30
    count = _server_connections(admin, name)
    while count > MAX_IDLE and time.monotonic() < deadline:
        time.sleep(0.05)
        count = _server_connections(admin, name)
    return count


def _server_connections(admin: sa.Engine, name: str) -> int:
    with admin.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"), {"n": name}
            ).scalar_one()
        )


def test_a_burst_of_threads_leaves_at_most_max_idle_connections_open(pg_url: str) -> None:
    name = f"tg_pool_{uuid.uuid4().hex[:10]}"
    url = f"{pg_url}&application_name={name}".replace("postgresql://", "postgresql+psycopg://", 1)
    base = pg_url.split("?", maxsplit=1)[0]
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    store = ClaimStore(url)
    try:
        pool = store._pool  # the burst is forced at the pool: threads alone rarely overlap 24 deep
        held = [pool.checkout() for _ in range(3 * MAX_IDLE)]
        assert _server_connections(admin, name) >= 3 * MAX_IDLE
        for conn in held:
            pool.release(conn)
        assert _settled_connections(admin, name) <= MAX_IDLE
        # The store still works, from the kept connections, for threads at once.
        owner, spec = new_owner_token(), OrderSpec(qty=Decimal(1))
        created: list[bool] = []

        def claim(i: int) -> None:
            intent = Intent("pool", Kind.ENTRY, "QQQ", Side.BUY, f"burst-{i}")
            created.append(store.claim(intent, spec, owner=owner).created)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert created == [True] * 16
        assert len(store.list_claims(agent_id="pool")) == 16
        assert _settled_connections(admin, name) <= MAX_IDLE
    finally:
        store.close()
        admin.dispose()
