"""A duplicate retry's cheaper store path reads and writes what the general path does, on both stores.

A claim call that finds its key answers with the claim as stored (the payload the caller asked
for, unparsed, when the stored text is that payload's; parsed and compared otherwise), and the
skip record of a duplicate is the row the general audit path writes, written as one statement
that waits for the write lock like any other write.
"""

from __future__ import annotations

import hashlib
import threading
from decimal import Decimal

import pytest

from tests.mothers import make_intent, make_spec
from tests.store_blocker import blocked_writes
from tradeguard.config import Settings
from tradeguard.domain import AuditAction
from tradeguard.domain.intents import Intent, Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.domain.orders import OrderType, Side
from tradeguard.errors import IntentMismatch
from tradeguard.store import AuditQuery, ClaimStore


def test_a_duplicate_claim_is_the_claim_as_stored_with_a_payload_of_its_own(store: ClaimStore) -> None:
    spec = make_spec(3, limit_price=Decimal("10.50"), order_type=OrderType.LIMIT)
    first = store.claim(make_intent("dup"), spec, owner="w").claim
    again = store.claim(make_intent("dup"), spec, owner="other")
    assert not again.created
    assert again.claim == store.get(first.key) == first
    assert again.claim.payload == first.payload == spec.as_payload()
    again.claim.payload["qty"] = "999"  # a caller's change to its answer reaches nothing else
    assert store.claim(make_intent("dup"), spec, owner="w").claim.payload == spec.as_payload()
    with pytest.raises(IntentMismatch):
        store.claim(make_intent("dup"), make_spec(4), owner="w")


def test_a_retry_of_terms_a_replacement_changed_is_still_the_same_order(store: ClaimStore) -> None:
    spec = make_spec(2, limit_price=Decimal(10), order_type=OrderType.LIMIT)
    claim = store.claim(make_intent("replaced"), spec, owner="w").claim
    asked = spec.as_payload()
    now = {**asked, "limit_price": "11", "first": asked}  # what a replacement stores
    moved = store.transition(claim, ClaimState.SUBMITTED, reason="replaced", payload=now)
    again = store.claim(make_intent("replaced"), spec, owner="w")
    assert not again.created and again.claim == store.get(claim.key) == moved
    assert again.claim.payload == now


def test_a_skip_record_of_a_claim_is_the_row_of_the_general_path(store: ClaimStore) -> None:
    claim = store.claim(make_intent("skip", kind=Kind.EXIT, side=Side.SELL), make_spec(), owner="w").claim
    store.record_skip(claim, agent_id="bot", reason="duplicate of it")  # the retry's path
    store.record_skip(claim, agent_id="bot", reason="with fields", qty=Decimal(5), detail={"a": 1})
    store.record_skip(None, agent_id="bot", reason="nothing to sell", symbol="QQQ", kind="exit")
    skips = list(store.audit_records(AuditQuery(actions=("skip",))))
    assert [r.reason for r in skips] == ["duplicate of it", "with fields", "nothing to sell"]
    fields = ("agent_id", "kind", "symbol", "side", "state", "prev_state", "client_order_id", "claim_key")
    claimed = ("bot", "exit", "QQQ", "sell", "PENDING", None, claim.client_order_id, claim.key)
    for record in skips[:2]:
        assert record.action is AuditAction.SKIP and record.at == store.clock.now()
        assert tuple(getattr(record, f) for f in fields) == claimed
    assert (skips[0].qty, skips[0].detail) == (None, {})
    assert (skips[1].qty, skips[1].detail) == ("5", {"a": 1})
    assert (skips[2].kind, skips[2].symbol, skips[2].client_order_id) == ("exit", "QQQ", None)


def test_a_skip_waits_for_the_write_lock_another_process_holds(store_url: str) -> None:
    with ClaimStore(store_url, settings=Settings(sqlite_busy_timeout_ms=60_000)) as store:
        claim = store.claim(make_intent("locked"), make_spec(), owner="w").claim
        failures: list[BaseException] = []

        def skip() -> None:
            try:
                store.record_skip(claim, agent_id="bot", reason="duplicate while locked")
            except BaseException as exc:  # reported by the asserts below
                failures.append(exc)

        with blocked_writes(store_url):
            writer = threading.Thread(target=skip)
            writer.start()
        writer.join(60)
        assert not writer.is_alive() and failures == []
        assert [r.reason for r in store.audit_records(AuditQuery(actions=("skip",)))] == [
            "duplicate while locked"
        ]


def test_an_intent_key_is_the_hash_of_its_canonical_form_however_often_it_is_made() -> None:
    class Name(str):
        pass

    for _ in range(2):  # the second time from the key cache
        for intent in (
            Intent("bot", Kind.ENTRY, "QQQ", Side.BUY, "09:42 base"),
            Intent("bot", Kind.EXIT, "QQQ", Side.SELL, "09:42 base"),
            Intent("bot", Kind.ENTRY, "BTCUSD", Side.BUY, Name("09:42 base")),
        ):
            assert intent.key == hashlib.sha256(intent.canonical().encode("ascii")).hexdigest()
    sell, buy = (Intent("bot", Kind.EXIT, "QQQ", side, "x") for side in (Side.SELL, Side.BUY))
    assert sell.key == buy.key  # an exit's key names no side
