"""A pytest plugin that holds the database's migration lock at the start of every test.

What another pytest-xdist worker (or another host) does whenever it opens a store on a fresh
schema: it migrates under the one migration lock of the whole PostgreSQL database
(tradeguard/store/engine.py). On the loaded CI host a migration holds that lock for a second or
more, so a test that opened a fresh schema with a lock wait of a fraction of a second failed
now and then, in its set-up. This plugin makes that contention certain instead of occasional:

    python -m pytest -n 0 -p tests.migration_contention tests/test_store_pg_silent_server.py

A test that passes under it does not depend on what other schemas migrate meanwhile. Without
TRADEGUARD_TEST_PG_URL it does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.conftest import pg_base_url

HOLD_SECS = 2.0  # past any test's short lock wait, well within the default one (30 s)


def _hold(url: str, locked: threading.Event) -> None:
    import sqlalchemy as sa

    from tradeguard.store.engine import _PG_MIGRATION_LOCK, parse_url

    engine = sa.create_engine(parse_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            locked.set()
            conn.execute(sa.text("SELECT pg_sleep(:s)"), {"s": HOLD_SECS})
    finally:
        locked.set()  # never leave the test waiting for a holder that failed
        engine.dispose()


@pytest.fixture(autouse=True)
def _another_schema_migrating() -> Iterator[None]:
    """Hold the migration lock for `HOLD_SECS` from the start of the test's set-up."""
    base = pg_base_url()
    if base is None:
        yield
        return
    locked = threading.Event()
    holder = threading.Thread(target=_hold, args=(base, locked), daemon=True)
    holder.start()
    locked.wait(30)
    try:
        yield
    finally:
        holder.join(30)
