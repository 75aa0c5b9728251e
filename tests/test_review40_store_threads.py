"""Threads of one process opening new claim stores at once: each store is migrated on its own.

Alembic runs a migration through module-wide proxies (`alembic.op`, `alembic.context`): two
threads migrating two new stores at once ran each other's DDL on the wrong connection, and the
stores were refused ('table tg_claims already exists', 'no such table', KeyError 'script').
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

from tests.mothers import make_intent, make_spec
from tradeguard.store import ClaimStore
from tradeguard.store.schema import SCHEMA_HEAD

THREADS = 6


def test_threads_opening_new_stores_at_once_each_get_a_working_store(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / f'agent{i}.db'}" for i in range(THREADS)]
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []
    claimed: list[str] = []

    def open_and_claim(url: str) -> None:
        start.wait()
        try:
            with ClaimStore(url) as store:
                outcome = store.claim(make_intent(f"first {url}"), make_spec(), owner="w")
                claimed.append(outcome.claim.key)
        except BaseException as exc:  # the assertion below names it
            failures.append(exc)

    threads = [threading.Thread(target=open_and_claim, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert len(claimed) == THREADS
    for url in urls:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
                assert version == SCHEMA_HEAD
                assert conn.execute(sa.text("SELECT count(*) FROM tg_claims")).scalar_one() == 1
        finally:
            engine.dispose()
