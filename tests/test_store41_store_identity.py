"""Store41: a store's identity, made once when the store is created and never changed (migration 0011).

The claim service names the store it serves on every answer, and a remote ledger refuses a
service that answers from another store (tests/test_store41_service_restarted.py). That only
holds if the id stays put for one store, differs between stores, and a store from before 0011
gets one when it is migrated. Real SQLite files and PostgreSQL.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from tests.mothers import make_intent, make_spec
from tradeguard.errors import StoreError
from tradeguard.store import ClaimStore, MemoryClaimStore
from tradeguard.store.engine import _alembic_config, parse_url

HEX_ID = re.compile(r"[0-9a-f]{32}")


def _at_0010(url: str) -> None:
    """Build the schema as a tradeguard of revision 0010 left it."""
    engine = sa.create_engine(parse_url(url))
    cfg = _alembic_config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0010")
            assert not sa.inspect(conn).has_table("tg_store")
    finally:
        engine.dispose()


def _ids_in(url: str) -> list[str]:
    engine = sa.create_engine(parse_url(url))
    try:
        with engine.connect() as conn:
            return [str(r[0]) for r in conn.execute(sa.text("SELECT store_id FROM tg_store"))]
    finally:
        engine.dispose()


def test_a_store_from_before_0011_gets_an_id_when_migrated_and_keeps_it(store_url: str) -> None:
    _at_0010(store_url)
    with ClaimStore(store_url) as store:  # opening migrates to the head
        made = store.store_id
        claim = store.claim(make_intent("kept"), make_spec(), owner="w").claim
    assert HEX_ID.fullmatch(made) and _ids_in(store_url) == [made]
    for _ in range(2):
        with ClaimStore(store_url) as store:
            assert store.store_id == made, "one store, one id, across reopenings"
            assert store.get(claim.key) == claim
    assert _ids_in(store_url) == [made]


def test_a_new_store_has_an_id_of_its_own(store_url: str, tmp_path: Path) -> None:
    with ClaimStore(store_url) as store, ClaimStore(f"sqlite:///{tmp_path / 'other.db'}") as other:
        assert HEX_ID.fullmatch(store.store_id) and HEX_ID.fullmatch(other.store_id)
        assert store.store_id != other.store_id
        assert _ids_in(store_url) == [store.store_id]


def test_two_copies_of_an_old_store_migrated_apart_are_two_stores(tmp_path: Path) -> None:
    # A copy taken before the upgrade (a backup, another working directory's file) is another
    # database from then on: its claims go their own way, and so does its id.
    first = tmp_path / "claims.db"
    _at_0010(f"sqlite:///{first}")
    shutil.copyfile(first, tmp_path / "copy.db")
    with ClaimStore(f"sqlite:///{first}") as a, ClaimStore(f"sqlite:///{tmp_path / 'copy.db'}") as b:
        assert a.store_id != b.store_id


def test_an_identity_table_edited_by_hand_is_refused(store_url: str) -> None:
    ClaimStore(store_url).close()
    engine = sa.create_engine(parse_url(store_url))
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM tg_store"))
    engine.dispose()
    with ClaimStore(store_url) as store, pytest.raises(StoreError, match="0 identities in tg_store"):
        store.store_id  # noqa: B018 - the read is the test


def test_each_memory_store_is_a_store_of_its_own() -> None:
    with MemoryClaimStore() as one, MemoryClaimStore() as two:
        assert HEX_ID.fullmatch(one.store_id) and one.store_id != two.store_id
        assert one.store_id == one.store_id
