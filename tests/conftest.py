"""Shared fixtures: claim-store URLs on a real SQLite file and on the real PostgreSQL server,
a manual clock and a store on it, and the real alpaca-py TradingClient over requests-mock.

PostgreSQL tests run when TRADEGUARD_TEST_PG_URL names a server (CI sets it); each test gets
a schema of its own so tests never see each other's rows (nor do pytest-xdist workers): `pg_url`
a fresh, empty one (for migration tests), `pg_head_url` (behind `store_url` and `shared`) one at
head from its process's pool, emptied between tests. Object mothers live in tests/mothers.py.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

from tradeguard.clock import ManualClock

if TYPE_CHECKING:
    import requests_mock
    from alpaca.trading.client import TradingClient

    from tests.alpaca_bodies import FakeAlpaca
    from tradeguard.ports import ClaimLedger
    from tradeguard.store import ClaimStore

# CI replays a fixed set of Hypothesis examples so a submission's result does not depend on
# luck; local runs explore new ones every time and keep any failure in .hypothesis/.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")

PG_ENV = "TRADEGUARD_TEST_PG_URL"
PG_SKIP_REASON = (
    f"PostgreSQL tests need a server: set {PG_ENV}=postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pg_base_url() -> str | None:
    """Return the PostgreSQL URL for tests, or None when not configured."""
    return os.environ.get(PG_ENV) or None


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A claim-store URL on a fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'claims.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A claim-store URL on the real PostgreSQL server, in a fresh schema dropped afterwards."""
    base = pg_base_url()
    if base is None:
        pytest.skip(PG_SKIP_REASON)
    import sqlalchemy as sa

    schema = f"tg_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


# Migrating a fresh schema to head costs PostgreSQL ~0.3 s of DDL (tables, indexes, functions),
# paid by each of several hundred store tests. A test that only needs a store at head gets one
# from this process's pool instead: migrated once, emptied between tests, and given a new store id.
_POOL: list[str] = []

# What a test could change in a schema and a later test would inherit: tables, columns, indexes,
# constraints, functions, triggers, privileges and settings. A schema whose fingerprint moved is
# dropped, never reused.
_FINGERPRINT = """
SELECT md5(coalesce(string_agg(x, ',' ORDER BY x), '')) FROM pg_namespace n CROSS JOIN LATERAL (
  SELECT 'c:' || c.relname::text || c.relkind::text || coalesce(c.relacl::text, '')
         || coalesce(c.reloptions::text, '') FROM pg_class c WHERE c.relnamespace = n.oid
  UNION ALL SELECT 'a:' || c.relname::text || '.' || a.attname::text || format_type(a.atttypid, a.atttypmod)
         || a.attnotnull::text || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = n.oid AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT 'i:' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c
    ON c.oid = i.indexrelid WHERE c.relnamespace = n.oid
  UNION ALL SELECT 'k:' || conname::text || pg_get_constraintdef(o.oid) FROM pg_constraint o
    WHERE o.connamespace = n.oid
  UNION ALL SELECT 'p:' || p.oid::regprocedure::text || md5(p.prosrc)
         || coalesce(p.proconfig::text, '') || coalesce(p.proacl::text, '')
    FROM pg_proc p WHERE p.pronamespace = n.oid
  UNION ALL SELECT 't:' || t.tgname::text || t.tgenabled::text FROM pg_trigger t JOIN pg_class c
    ON c.oid = t.tgrelid WHERE c.relnamespace = n.oid AND NOT t.tgisinternal
  UNION ALL SELECT 'n:' || coalesce(n.nspacl::text, '')
) q(x) WHERE n.nspname = :s
"""


@functools.cache
def _admin_engine() -> Any:
    import sqlalchemy as sa

    base = pg_base_url()
    assert base is not None
    return sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))


def _fingerprint(conn: Any, schema: str) -> str:
    import sqlalchemy as sa

    return str(conn.execute(sa.text(_FINGERPRINT), {"s": schema}).scalar_one())


def _release(schema: str, app: str, fingerprint: str) -> None:
    """Empty `schema` and put it back in the pool; drop it if the test changed its shape."""
    import sqlalchemy as sa

    with _admin_engine().begin() as conn:
        # A frozen or leaked session of the test (a killed subprocess's, a stalled sender's) could
        # hold a row or advisory lock the next test would wait on: end them first.
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :app AND pid <> pg_backend_pid()"
            ),
            {"app": app},
        )
    try:
        with _admin_engine().begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            if _fingerprint(conn, schema) != fingerprint:
                raise LookupError(schema)
            version = conn.execute(sa.text(f'SELECT version_num FROM "{schema}".alembic_version'))
            if [tuple(r) for r in version] != [(_HEAD[1],)]:
                raise LookupError(schema)
            tables = conn.execute(
                sa.text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = :s "
                    "AND tablename NOT IN ('alembic_version', 'tg_store')"
                ),
                {"s": schema},
            ).scalars()
            names = ", ".join(f'"{schema}"."{t}"' for t in tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            conn.execute(
                sa.text(
                    f'UPDATE "{schema}".tg_store SET store_id = '
                    "replace(gen_random_uuid()::text, '-', ''), created_at = now()"
                )
            )
    except Exception:
        with _admin_engine().begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        return
    _POOL.append(schema)


_HEAD: list[str] = []  # [fingerprint, revision] of a schema at head, read from the first one


@pytest.fixture
def pg_head_url() -> Iterator[str]:
    """A claim-store URL on the real PostgreSQL server, at head and empty, from this process's pool.

    As a fresh schema migrated to head looks, with a store id of its own, but migrated once per
    test process. Each test's connections carry an application_name of their own, so the URL is
    never one an earlier test used (nothing keyed by URL carries over) and any session the test
    left behind is ended before the schema is emptied for the next test.
    """
    base = pg_base_url()
    if base is None:
        pytest.skip(PG_SKIP_REASON)
    import sqlalchemy as sa

    sep = "&" if "?" in base else "?"
    if _POOL:
        schema = _POOL.pop()
    else:
        schema = f"tg_test_{uuid.uuid4().hex[:12]}"
        with _admin_engine().begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        at_head(f"{base}{sep}options=-csearch_path%3D{schema}")
        with _admin_engine().begin() as conn:
            if not _HEAD:
                revision = conn.execute(sa.text(f'SELECT version_num FROM "{schema}".alembic_version'))
                _HEAD.extend([_fingerprint(conn, schema), revision.scalar_one()])
    app = f"tgt_{uuid.uuid4().hex[:12]}"
    yield f"{base}{sep}options=-csearch_path%3D{schema}&application_name={app}"
    _release(schema, app, _HEAD[0])


def _drop_pool() -> None:
    import sqlalchemy as sa

    while _POOL:
        with _admin_engine().begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{_POOL.pop()}" CASCADE'))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop this process's pooled schemas (each xdist worker runs this for its own)."""
    if _POOL:
        _drop_pool()


def at_head(url: str) -> str:
    """Migrate the store at `url` to head with the default settings; return `url`.

    For tests that open a store with a lock wait of a fraction of a second (to see a lock they
    hold themselves bound a write). A fresh PostgreSQL schema migrates under the one migration lock
    of the whole database (tradeguard/store/engine.py), so such an open also waits for whatever other
    schema is migrating at that moment: on CI, the other pytest-xdist worker's tests, each opening a
    fresh schema. Past the short wait the open failed ("opening and migrating the schema failed:
    canceling statement due to lock timeout"), a failure of the test's set-up, not of what it checks.
    Migrated first (waiting up to `pg_lock_timeout_ms`'s default), the store opens at head: no lock.
    """
    from tradeguard.store import ClaimStore

    ClaimStore(url).close()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """Every store test runs on a SQLite file and on real PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_head_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "memory"])
def shared(request: pytest.FixtureRequest) -> Iterator[ClaimLedger]:
    """One claim store that several agents share: a SQLite file, PostgreSQL, or in memory.

    On an `OnSleepClock` (tests/gateway_kit.py), so a test can act while the guard waits.
    """
    from tests.gateway_kit import OnSleepClock
    from tradeguard.config import Settings
    from tradeguard.store import ClaimStore, MemoryClaimStore

    clock, settings = OnSleepClock(), Settings()
    store: ClaimStore | MemoryClaimStore
    if request.param == "memory":
        store = MemoryClaimStore(settings=settings, clock=clock)
    else:
        url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_head_url")
        store = ClaimStore(url, settings=settings, clock=clock)
    with store:
        yield store


@pytest.fixture
def clock() -> ManualClock:
    """One manual clock for the test: time moves only when the test says so."""
    return ManualClock()


@pytest.fixture
def store(store_url: str, clock: ManualClock) -> Iterator[ClaimStore]:
    """A claim store on `store_url` running on the test's manual clock."""
    from tradeguard.store import ClaimStore

    with ClaimStore(store_url, clock=clock) as s:
        yield s


@pytest.fixture
def trading_client() -> Iterator[TradingClient]:
    """alpaca-py's real paper TradingClient (its pooled sockets closed afterwards)."""
    from alpaca.trading.client import TradingClient

    client = TradingClient("key", "secret", paper=True)
    yield client
    client._session.close()


@pytest.fixture
def mocker() -> Iterator[requests_mock.Mocker]:
    """requests-mock in place of the network for the test."""
    import requests_mock

    with requests_mock.Mocker() as m:
        yield m


@pytest.fixture
def fake(mocker: requests_mock.Mocker) -> FakeAlpaca:
    """Alpaca's routes answered with real bodies, over `mocker`."""
    from tests.alpaca_bodies import FakeAlpaca

    return FakeAlpaca(mocker)
