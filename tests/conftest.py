"""Shared fixtures: claim-store URLs on a real SQLite file and on the real PostgreSQL server,
a manual clock and a store on it, and the real alpaca-py TradingClient over requests-mock.

PostgreSQL tests run when TRADEGUARD_TEST_PG_URL names a server (CI sets it); each test gets
a schema of its own so tests never see each other's rows (nor do pytest-xdist workers). Object
mothers live in tests/mothers.py.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Put every temporary file of the run (this process's and its children's) under pytest's.

    Some code keeps its folder on purpose: a sim run without `--store` keeps its claims for
    `tradeguard audit`, a failing chaos run keeps its evidence. Run by the suite, such folders
    landed in /tmp and stayed there, a handful per run; under pytest's base folder they go with
    its own clean-up (it keeps the last three runs).
    """
    folder = str(tmp_path_factory.mktemp("tmp"))
    before_env, before = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = folder, folder
    try:
        yield
    finally:
        tempfile.tempdir = before
        if before_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before_env


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
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
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
        url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
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
