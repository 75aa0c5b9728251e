"""A closed ClaimStore leaves no database connection open, and a read after close is refused.

`audit_records` reads its pages as they are iterated: an iterator taken inside `with
ClaimStore(...)` and consumed after the block read through the engine `close()` had disposed,
which SQLAlchemy quietly refills with a fresh connection. Nothing closed that one: it was
collected later, a ResourceWarning (an error under pytest's filterwarnings) in whichever test
the collector happened to run, and until then a PostgreSQL session held open for nothing.
Real SQLite file, real PostgreSQL.
"""

from __future__ import annotations

import gc
import sqlite3
import warnings

import pytest

try:
    from psycopg import Connection as PgConnection
except ImportError:  # the postgres extra is not installed: SQLite only
    PgConnection = None  # type: ignore[assignment,misc]

from tests.mothers import make_intent, make_spec
from tradeguard.errors import StoreError
from tradeguard.store import AuditQuery, ClaimStore


def _open_connections() -> dict[int, object]:
    """Every driver connection of this process that is still open, by id."""
    found: dict[int, object] = {}
    for obj in gc.get_objects():
        if isinstance(obj, sqlite3.Connection):
            try:
                obj.in_transaction  # noqa: B018 - raises on a closed connection
            except sqlite3.ProgrammingError:
                continue
            found[id(obj)] = obj
        elif PgConnection is not None and isinstance(obj, PgConnection) and not obj.closed:
            found[id(obj)] = obj
    return found


def test_an_audit_iterator_consumed_after_close_is_refused_and_opens_nothing(store_url: str) -> None:
    gc.collect()
    before = _open_connections()
    with ClaimStore(store_url) as store:
        store.claim(make_intent("a"), make_spec(), owner="w")
        records = store.audit_records(AuditQuery(actions=("skip",)))
    with pytest.raises(StoreError, match="is closed"):
        list(records)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        gc.collect()
    left = {k: v for k, v in _open_connections().items() if k not in before}
    assert not left


def test_every_read_of_a_closed_store_is_refused(store_url: str) -> None:
    store = ClaimStore(store_url)
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.audit_count()
    with pytest.raises(StoreError, match="is closed"):
        store.audit_page()


def test_a_read_in_progress_when_the_store_closes_leaves_no_connection(store_url: str) -> None:
    """A thread may close the store while another reads: the reader's connection closes with it."""
    gc.collect()
    before = _open_connections()
    store = ClaimStore(store_url)
    with store._read("reading while another thread closes the store"):
        store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        gc.collect()
    left = {k: v for k, v in _open_connections().items() if k not in before}
    assert not left
