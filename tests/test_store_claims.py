"""ClaimStore: claiming, reading, transitions, dedup windows, and the audit record of each change.

Every test runs on a SQLite file and on the real PostgreSQL server (the `store_url` fixture).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.dialects import sqlite

from tests.mothers import make_intent, make_spec
from tradeguard.clock import ManualClock
from tradeguard.domain import AuditAction, Side
from tradeguard.domain.intents import Kind, derive_client_order_id
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import IntentMismatch, LeaseLost, StoreError
from tradeguard.store import AuditQuery, ClaimStore
from tradeguard.store import audit as audit_module
from tradeguard.store.connections import _sqlite_dt, _sqlite_ts
from tradeguard.store.schema import UTCDateTime


def records_of(store: ClaimStore, coid: str) -> list[tuple[str, str | None, str | None]]:
    return [
        (r.action.value, r.prev_state, r.state) for r in store.audit_records(AuditQuery(client_order_id=coid))
    ]


def test_claim_records_a_pending_claim_and_its_audit_record(store: ClaimStore, clock: ManualClock) -> None:
    intent = make_intent("bar-0930-breakout")
    out = store.claim(intent, make_spec(6), owner="w1", reason="entry signal")
    assert out.created
    claim = out.claim
    assert claim.state is ClaimState.PENDING
    assert (claim.key, claim.client_order_id) == (intent.key, derive_client_order_id(intent.key))
    assert (claim.epoch, claim.attempts, claim.owner, claim.filled_qty) == (1, 1, "w1", Decimal(0))
    assert claim.created_at == clock.now()
    assert store.get(intent.key) == claim  # what claim() returned is what the database holds
    assert store.get_by_client_order_id(claim.client_order_id) == claim
    [rec] = store.audit_records(AuditQuery(client_order_id=claim.client_order_id))
    assert (rec.action, rec.state, rec.qty, rec.reason) == (AuditAction.CLAIM, "PENDING", "6", "entry signal")
    assert rec.detail["intent"] == intent.name and rec.detail["qty"] == "6"


def test_a_second_claim_of_the_same_intent_returns_the_first_without_writing(store: ClaimStore) -> None:
    intent = make_intent("retry-me")
    first = store.claim(intent, make_spec(6), owner="w1").claim
    again = store.claim(intent, make_spec("6.0"), owner="w2")  # 6 == 6.0: the same order
    assert not again.created
    assert again.claim == first
    assert len(records_of(store, first.client_order_id)) == 1


def test_same_key_with_a_different_order_raises_intent_mismatch(store: ClaimStore) -> None:
    intent = make_intent("mismatch")
    store.claim(intent, make_spec(6), owner="w1")
    with pytest.raises(IntentMismatch, match="qty: '6' != '7'"):
        store.claim(intent, make_spec(7), owner="w1")
    assert store.get(intent.key).spec.qty == 6  # type: ignore[union-attr]


def test_a_client_order_id_cannot_name_two_decisions(store: ClaimStore) -> None:
    store.claim(make_intent("a"), make_spec(), owner="w", client_order_id="mine-1")
    with pytest.raises(StoreError, match="already belongs to another claim"):
        store.claim(make_intent("b"), make_spec(), owner="w", client_order_id="mine-1")
    assert store.get(make_intent("b").key) is None


def test_claim_audit_is_in_the_claims_transaction(store: ClaimStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("audit write failed")

    monkeypatch.setattr("tradeguard.store.claims.write_audit", broken)
    with pytest.raises(RuntimeError):
        store.claim(make_intent("half"), make_spec(), owner="w")
    assert store.get(make_intent("half").key) is None  # no claim without its record


def test_transition_audit_and_fill_are_in_one_transaction(
    store: ClaimStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = store.claim(make_intent("fill"), make_spec(5), owner="w").claim
    real = audit_module.write_audit

    def fail_on_transition(tx: Any, **fields: Any) -> None:
        if fields["action"] is AuditAction.TRANSITION:
            raise RuntimeError("audit write failed")
        real(tx, **fields)

    monkeypatch.setattr("tradeguard.store.claims.write_audit", fail_on_transition)
    with pytest.raises(RuntimeError):
        store.transition(claim, ClaimState.FILLED, reason="filled", filled_qty=Decimal(5))
    assert store.get(claim.key) == claim
    assert store.position("bot", "QQQ").is_flat  # the ledger change rolled back too


def test_transition_moves_state_records_broker_fields_and_audits(
    store: ClaimStore, clock: ManualClock
) -> None:
    claim = store.claim(make_intent("t"), make_spec(5), owner="w").claim
    clock.advance(1)
    sent = store.transition(claim, ClaimState.SUBMITTED, reason="accepted", broker_order_id="b-1")
    assert (sent.state, sent.broker_order_id, sent.updated_at, sent.epoch) == (
        ClaimState.SUBMITTED, "b-1", clock.now(), 1,
    )  # fmt: skip
    done = store.transition(
        sent, ClaimState.FILLED, reason="filled", filled_qty=Decimal(5), filled_avg_price=Decimal("512.25")
    )
    assert (done.filled_qty, done.filled_avg_price, done.broker_order_id) == (
        Decimal(5),
        Decimal("512.25"),
        "b-1",
    )
    assert done.turn_id is not None
    assert store.get(claim.key) == done
    assert records_of(store, claim.client_order_id) == [
        ("claim", None, "PENDING"),
        ("transition", "PENDING", "SUBMITTED"),
        ("transition", "SUBMITTED", "FILLED"),
    ]


def test_a_stale_snapshot_cannot_move_the_claim(store: ClaimStore) -> None:
    claim = store.claim(make_intent("stale"), make_spec(), owner="w").claim
    store.transition(claim, ClaimState.SUBMITTED, reason="accepted")
    with pytest.raises(LeaseLost, match="re-read it"):
        store.transition(claim, ClaimState.UNKNOWN, reason="timeout")
    assert store.get(claim.key).state is ClaimState.SUBMITTED  # type: ignore[union-attr]


def test_a_stale_partial_fill_is_not_applied_twice(store: ClaimStore) -> None:
    claim = store.claim(make_intent("pf"), make_spec(10), owner="w").claim
    part = store.transition(claim, ClaimState.PARTIALLY_FILLED, reason="fill", filled_qty=Decimal(4))
    store.transition(part, ClaimState.PARTIALLY_FILLED, reason="fill", filled_qty=Decimal(7))
    # Same state and epoch as the row, but it has not seen the fill to 7: applying it would
    # count shares 4..7 a second time.
    with pytest.raises(LeaseLost):
        store.transition(part, ClaimState.PARTIALLY_FILLED, reason="fill", filled_qty=Decimal(7))
    assert store.position("bot", "QQQ").qty == 7


def test_a_resend_cannot_be_moved_by_the_previous_attempts_snapshot(store: ClaimStore) -> None:
    first = store.claim(make_intent("resend"), make_spec(), owner="w").claim
    store.transition(first, ClaimState.NOT_SENT, reason="connection refused")
    unsent = store.get(first.key)
    assert unsent is not None
    again = store.transition(unsent, ClaimState.PENDING, reason="send again", owner="w2")
    assert (again.attempts, again.owner, again.state) == (2, "w2", ClaimState.PENDING)
    with pytest.raises(LeaseLost):  # PENDING/epoch 1 again, but attempt 2
        store.transition(first, ClaimState.SUBMITTED, reason="late answer to attempt 1")


def test_filled_quantity_cannot_shrink(store: ClaimStore) -> None:
    claim = store.claim(make_intent("shrink"), make_spec(5), owner="w").claim
    part = store.transition(claim, ClaimState.PARTIALLY_FILLED, reason="fill", filled_qty=Decimal(3))
    with pytest.raises(StoreError, match="cannot shrink"):
        store.transition(part, ClaimState.FILLED, reason="fill", filled_qty=Decimal(2))


def test_list_claims_filters_and_orders_oldest_first(store: ClaimStore, clock: ManualClock) -> None:
    a = store.claim(make_intent("a"), make_spec(), owner="w").claim
    clock.advance(1)
    b = store.claim(make_intent("b", symbol="SQQQ"), make_spec(), owner="w").claim
    clock.advance(1)
    c = store.claim(
        make_intent("c", agent="other", kind=Kind.EXIT, side=Side.SELL), make_spec(), owner="w"
    ).claim
    store.transition(b, ClaimState.UNKNOWN, reason="timeout")
    assert [x.key for x in store.list_claims()] == [a.key, b.key, c.key]
    assert [x.key for x in store.list_claims(agent_id="bot")] == [a.key, b.key]
    assert [x.key for x in store.list_claims(symbol="SQQQ")] == [b.key]
    assert [x.key for x in store.list_claims(kind=Kind.EXIT)] == [c.key]
    assert store.list_claims(states=[ClaimState.UNKNOWN]) == [store.get(b.key)]  # both decoders agree
    assert [x.key for x in store.list_claims(updated_before=c.created_at)] == [a.key]
    assert [x.key for x in store.list_claims(limit=1)] == [a.key]
    assert store.agents() == ["bot", "other"]


def test_exits_in_flight_counts_unfilled_pending_and_unknown_exits(store: ClaimStore) -> None:
    def exit_(name: str, qty: int) -> object:
        intent = make_intent(name, kind=Kind.EXIT, side=Side.SELL)
        return store.claim(intent, make_spec(qty), owner="w", order_qty=Decimal(qty)).claim

    exit_("pending", 3)
    unknown = exit_("unknown", 4)
    store.transition(unknown, ClaimState.UNKNOWN, reason="timeout")  # type: ignore[arg-type]
    acked = exit_("acked", 5)
    store.transition(acked, ClaimState.SUBMITTED, reason="accepted")  # type: ignore[arg-type]
    store.claim(make_intent("entry"), make_spec(9), owner="w", order_qty=Decimal(9))
    assert store.exits_in_flight("bot", "QQQ") == 7
    assert store.exits_in_flight("bot", "SQQQ") == 0


def test_claim_window_is_held_by_the_first_claim_until_it_expires(
    store: ClaimStore, clock: ManualClock
) -> None:
    assert store.claim_window("buy QQQ 6", window_secs=60, claim_key="k1") == "k1"
    clock.advance(59)
    assert store.claim_window("buy QQQ 6", window_secs=60, claim_key="k2") == "k1"
    assert store.claim_window("buy QQQ 7", window_secs=60, claim_key="k3") == "k3"
    clock.advance(1)
    assert store.claim_window("buy QQQ 6", window_secs=60, claim_key="k4") == "k4"  # expired: a new decision
    assert store.claim_window("buy QQQ 6", window_secs=60, claim_key="k5") == "k4"


def test_threads_sharing_a_store_create_each_claim_once(store: ClaimStore) -> None:
    created: list[bool] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for n in range(10):
            created.append(store.claim(make_intent(f"thread-{n}"), make_spec(), owner="t").created)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert created.count(True) == 10 and len(created) == 80


def test_a_closed_store_refuses_work(store_url: str) -> None:
    store = ClaimStore(store_url)
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.claim(make_intent("late"), make_spec(), owner="w")


def test_only_sends_wait_for_the_disk(sqlite_url: str) -> None:
    """G5 wiring: the claim and a re-send commit with synchronous=FULL, broker evidence NORMAL."""
    with ClaimStore(sqlite_url) as store:
        log: list[str] = []
        event.listen(store._engine, "checkout", lambda dbapi, *_: dbapi.set_trace_callback(log.append))

        def sync_before(prefix: str) -> str:
            at = next(i for i, s in enumerate(log) if s.startswith(prefix))
            return next(s for s in reversed(log[:at]) if s.startswith("PRAGMA synchronous")).split()[-1]

        claim = store.claim(make_intent("g5"), make_spec(), owner="w").claim
        assert sync_before("INSERT INTO tg_claims") == "FULL"
        log.clear()
        store.transition(claim, ClaimState.NOT_SENT, reason="refused")
        assert sync_before("UPDATE tg_claims") == "NORMAL"
        log.clear()
        store.transition(store.get(claim.key), ClaimState.PENDING, reason="again")  # type: ignore[arg-type]
        assert sync_before("UPDATE tg_claims") == "FULL"


def test_fsync_every_commit_makes_transitions_durable(sqlite_url: str) -> None:
    with ClaimStore(sqlite_url, fsync_every_commit=True) as store:
        log: list[str] = []
        event.listen(store._engine, "checkout", lambda dbapi, *_: dbapi.set_trace_callback(log.append))
        claim = store.claim(make_intent("all"), make_spec(), owner="w").claim
        store.transition(claim, ClaimState.SUBMITTED, reason="accepted")
        assert [s for s in log if s.startswith("PRAGMA synchronous")] == ["PRAGMA synchronous = FULL"]


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 5, 21, 13, 30, tzinfo=UTC),
        datetime(2026, 5, 21, 13, 30, 0, 7, tzinfo=UTC),
        datetime(2026, 5, 21, 9, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-4))),
    ],
)
def test_sqlite_timestamps_are_written_as_sqlalchemy_writes_them(when: datetime) -> None:
    # Core-built queries compare these as text (lease expiry, time ranges): one format only.
    dialect = sqlite.dialect()
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    assert _sqlite_ts(when) == bind(when)
    assert _sqlite_dt(_sqlite_ts(when)) == when
