"""The SQLite order path's statements: queued audit records, a fill's one update, NULL binding.

Audit records a write transaction queues (`Tx.append`) go, on SQLite, as one INSERT before the COMMIT.

A fill writes its ledger record and its transition's record; SQLite takes them as one multi-row
INSERT right before the COMMIT, in the order they were made. These tests hold the order, the ids,
the all-or-nothing commit and the statement count, on a real SQLite file (and PostgreSQL, where
the records travel with the transaction's other statements as before).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.mothers import make_intent, make_spec
from tradeguard.domain import AuditAction
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import LeaseLost, StoreError
from tradeguard.store import ClaimStore, engine
from tradeguard.store.audit import AuditQuery, write_audit
from tradeguard.store.connections import _MAX_ROWS


def _statements(store: ClaimStore) -> list[str]:
    """Trace every statement the store's idle SQLite connections run from now on."""
    seen: list[str] = []
    for conn in store._pool._idle:
        conn.dbapi.set_trace_callback(seen.append)
    return seen


def test_a_fill_writes_its_two_records_in_one_statement_on_sqlite(sqlite_url: str) -> None:
    with ClaimStore(sqlite_url) as store:
        claim = store.claim(make_intent("one insert"), make_spec(), owner="w").claim
        sent = store.transition(claim, ClaimState.SUBMITTED, reason="accepted")
        seen = _statements(store)
        filled = store.transition(sent, ClaimState.FILLED, reason="filled", filled_qty=Decimal(1))
        inserts = [s for s in seen if s.startswith("INSERT INTO tg_audit")]
        assert len(inserts) == 1, seen
        assert seen[-1] == "COMMIT" and seen[-2] == inserts[0]
        records = list(store.audit_records(AuditQuery(agent_id=claim.agent_id)))
    # The ledger's record, then the transition's: the order (and ids) of two single inserts.
    assert [(r.action, r.state) for r in records] == [
        (AuditAction.CLAIM, "PENDING"), (AuditAction.TRANSITION, "SUBMITTED"),
        (AuditAction.LEDGER, None), (AuditAction.TRANSITION, "FILLED"),
    ]  # fmt: skip
    assert [r.id for r in records] == sorted(r.id for r in records)
    assert records[2].detail == {"turn_id": filled.turn_id}
    assert records[3].detail == {"fill_delta": "1"}


def test_records_beyond_one_statement_are_all_written_in_order(store_url: str) -> None:
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    count = _MAX_ROWS * 2 + 3
    with ClaimStore(store_url) as store:
        with store._pool.write("writing many records", durable=False) as tx:
            for i in range(count):
                write_audit(tx, at=at, agent_id="many", action=AuditAction.RECONCILE, reason=f"r{i}")
        records = list(store.audit_records(AuditQuery(agent_id="many")))
    assert [r.reason for r in records] == [f"r{i}" for i in range(count)]


def test_a_record_that_cannot_be_written_undoes_the_whole_transaction(store_url: str) -> None:
    # A record the table refuses (NOT NULL) fails the transaction, wherever the driver sends it:
    # the claim's change made before it in the same transaction is not kept either.
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    with ClaimStore(store_url) as store:
        claim = store.claim(make_intent("undone", kind=Kind.ENTRY), make_spec(), owner="w").claim
        before = store.audit_count()
        with pytest.raises(StoreError), store._pool.write("writing a bad record", durable=False) as tx:
            tx.later("UPDATE tg_claims SET reason = ? WHERE claim_key = ?", ("changed", claim.key))
            write_audit(tx, at=at, agent_id="undone", action=AuditAction.RECONCILE, reason="kept?")
            write_audit(tx, at=at, agent_id=None, action=AuditAction.RECONCILE, reason="refused")  # type: ignore[arg-type]
        assert store.get(claim.key) == claim
        assert store.audit_count() == before


def test_a_fill_updates_the_claims_row_once_on_sqlite(sqlite_url: str) -> None:
    # The turn the fill leaves goes in the compare-and-set itself: no second UPDATE of the row.
    with ClaimStore(sqlite_url) as store:
        first = store.claim(make_intent("opens"), make_spec(), owner="w").claim
        seen = _statements(store)
        opened = store.transition(first, ClaimState.FILLED, reason="filled", filled_qty=Decimal(1))
        assert len([s for s in seen if s.startswith("UPDATE tg_claims")]) == 1, seen
        second = store.claim(make_intent("adds"), make_spec(), owner="w").claim
        seen = _statements(store)
        added = store.transition(second, ClaimState.FILLED, reason="filled", filled_qty=Decimal(1))
        assert len([s for s in seen if s.startswith("UPDATE tg_claims")]) == 1, seen
        assert opened.turn_id is not None and added.turn_id == opened.turn_id
        assert store.get(first.key) == opened and store.get(second.key) == added
        assert store.position(first.agent_id, first.symbol).qty == 2


def test_a_stale_fill_leaves_the_ledger_and_the_log_as_they_were(store_url: str) -> None:
    # SQLite writes the ledger before the compare-and-set: a failed one must take it all back.
    with ClaimStore(store_url) as store:
        held = store.claim(make_intent("held"), make_spec(), owner="w").claim
        store.transition(held, ClaimState.FILLED, reason="filled", filled_qty=Decimal(1))
        exit_ = store.claim(make_intent("out", kind=Kind.EXIT), make_spec(), owner="w").claim
        store.transition(exit_, ClaimState.SUBMITTED, reason="accepted")
        before = (store.audit_count(), store.position(held.agent_id, held.symbol))
        with pytest.raises(LeaseLost):  # the snapshot is PENDING; the claim is SUBMITTED
            store.transition(exit_, ClaimState.FILLED, reason="stale", filled_qty=Decimal(1))
        assert (store.audit_count(), store.position(held.agent_id, held.symbol)) == before
        assert store.get(exit_.key).turn_id is None  # type: ignore[union-attr]


def test_none_parameters_bind_through_one_adapter_lookup(sqlite_url: str) -> None:
    # Opening a SQLite store registers an adapter for None (engine._BIND_NULL): a NULL bound
    # without the sqlite3 module's failed attribute lookups; it still binds NULL.
    key = (type(None), sqlite3.PrepareProtocol)
    with ClaimStore(sqlite_url) as store:
        assert sqlite3.adapters.get(key) is engine._BIND_NULL
        claim = store.claim(make_intent("nulls"), make_spec(), owner="w").claim
        assert (claim.turn_id, claim.broker_order_id, claim.reject_kind) == (None, None, None)
        assert store.get(claim.key) == claim
    with sqlite3.connect(":memory:") as raw:
        assert raw.execute("SELECT ? IS NULL", (None,)).fetchone() == (1,)


def test_an_adapter_for_none_registered_first_is_kept(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = (type(None), sqlite3.PrepareProtocol)
    theirs = {}.get
    monkeypatch.setitem(sqlite3.adapters, key, theirs)
    with ClaimStore(sqlite_url):
        assert sqlite3.adapters[key] is theirs
