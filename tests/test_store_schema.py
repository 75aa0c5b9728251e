"""Schema versions: migrations on open, no re-migration, newer databases refused, head == schema.py."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.forks import FORKS
from tests.mothers import make_intent, make_spec
from tradeguard.errors import StoreError
from tradeguard.store import ClaimStore, schema
from tradeguard.store import engine as engine_module
from tradeguard.store.engine import _alembic_config, parse_url
from tradeguard.store.schema import SCHEMA_HEAD


def version_of(url: str) -> str:
    engine = sa.create_engine(parse_url(url))
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())
    finally:
        engine.dispose()


def test_a_new_database_is_created_at_the_head_revision(store_url: str) -> None:
    ClaimStore(store_url).close()
    assert version_of(store_url) == SCHEMA_HEAD
    engine = sa.create_engine(parse_url(store_url))
    try:
        inspector = sa.inspect(engine)
        assert {"tg_claims", "tg_turns", "tg_dedup_windows", "tg_audit"} <= set(inspector.get_table_names())
        # No secondary index on the append-only log: each would be written by every record (0005).
        assert inspector.get_indexes("tg_audit") == []
    finally:
        engine.dispose()


def test_a_database_from_a_newer_tradeguard_is_refused(store_url: str) -> None:
    ClaimStore(store_url).close()
    engine = sa.create_engine(parse_url(store_url))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"schema version 9999_from_the_future, newer than this tradeguard"):
        ClaimStore(store_url)


def test_reopening_does_not_migrate_again(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with ClaimStore(store_url) as store:
        claim = store.claim(make_intent("kept"), make_spec(), owner="w").claim

    def no_upgrade(*_a: object, **_k: object) -> None:
        raise AssertionError("an up-to-date database was migrated again")

    monkeypatch.setattr(command, "upgrade", no_upgrade)
    monkeypatch.setattr(engine_module, "_upgrade", no_upgrade)  # what opening a store runs
    with ClaimStore(store_url) as store:
        assert store.get(claim.key) == claim


def test_an_older_database_is_upgraded_with_its_claims(store_url: str) -> None:
    engine = sa.create_engine(parse_url(store_url))
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    engine.dispose()
    assert version_of(store_url) == "0001"
    with ClaimStore(store_url) as store:
        claim = store.claim(make_intent("old"), make_spec(), owner="w").claim
    assert version_of(store_url) == SCHEMA_HEAD
    with ClaimStore(store_url) as store:
        assert store.get(claim.key) == claim


def schema_diff(url: str, metadata: sa.MetaData) -> list[object]:
    """What Alembic autogenerate finds between a database and `metadata` (types and defaults too)."""
    engine = sa.create_engine(parse_url(url))
    try:
        with engine.connect() as conn:
            opts = {"compare_type": True, "compare_server_default": True}
            return list(compare_metadata(MigrationContext.configure(conn, opts=opts), metadata))
    finally:
        engine.dispose()


def test_the_migrations_build_exactly_the_schema_the_code_reads(store_url: str) -> None:
    ClaimStore(store_url).close()  # migrated to head
    assert schema_diff(store_url, schema.metadata) == []
    # The comparison sees a difference when there is one (it is not vacuously empty).
    drifted = sa.MetaData()
    for table in schema.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["tg_turns"].append_column(sa.Column("extra", sa.String(8)))
    assert [d[0] for d in schema_diff(store_url, drifted)] == ["add_column"]  # type: ignore[index]


def test_processes_opening_one_new_store_at_once_migrate_it_once_and_all_claim(store_url: str) -> None:
    """Bots started together on a store nobody created yet: one migrates, the others wait and use it."""
    from tests.store_workers import open_new_store_worker

    workers = 6
    ctx = FORKS
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=open_new_store_worker, args=(store_url, barrier, results, w))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        answers = sorted(results.get(timeout=120) for _ in range(workers))
    finally:
        for p in procs:
            p.join(timeout=60)
    assert answers == [("ok", w, True) for w in range(workers)]
    assert version_of(store_url) == SCHEMA_HEAD
    with ClaimStore(store_url) as store:
        assert sorted(c.intent for c in store.list_claims()) == [f"opened-{w}" for w in range(workers)]
