"""The ledger: turns opened, added to, closed at zero and split when fills cross zero."""

from __future__ import annotations

from decimal import Decimal

from tests.mothers import make_intent, make_spec
from tradeguard.domain import Claim, Side
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import AuditQuery, ClaimStore


def fill(store: ClaimStore, name: str, side: Side, qty: int, *, symbol: str = "QQQ") -> Claim:
    kind = Kind.ENTRY if side is Side.BUY else Kind.EXIT
    claim = store.claim(
        make_intent(name, kind=kind, side=side, symbol=symbol), make_spec(qty), owner="w"
    ).claim
    return store.transition(claim, ClaimState.FILLED, reason="filled", filled_qty=Decimal(qty))


def ledger_notes(store: ClaimStore) -> list[str]:
    return [r.reason.split(":")[0] for r in store.audit_records(AuditQuery(actions=("ledger",)))]


def test_a_fill_from_flat_opens_a_turn_and_more_fills_add_to_it(store: ClaimStore) -> None:
    first = fill(store, "buy-1", Side.BUY, 5)
    assert first.turn_id is not None
    second = fill(store, "buy-2", Side.BUY, 3)
    assert second.turn_id == first.turn_id
    held = store.position("bot", "QQQ")
    assert (held.qty, held.turn_id, held.is_flat) == (Decimal(8), first.turn_id, False)
    assert ledger_notes(store) == [f"turn {first.turn_id} opened"]


def test_selling_everything_closes_the_turn(store: ClaimStore) -> None:
    opened = fill(store, "buy", Side.BUY, 5)
    fill(store, "sell", Side.SELL, 5)
    assert store.position("bot", "QQQ").is_flat
    assert store.position("bot", "QQQ").turn_id is None
    assert store.latest_turn_id("bot", "QQQ") == opened.turn_id
    assert ledger_notes(store) == [f"turn {opened.turn_id} opened", f"turn {opened.turn_id} closed"]


def test_a_fill_crossing_zero_closes_the_turn_and_opens_the_remainder(store: ClaimStore) -> None:
    long = fill(store, "buy", Side.BUY, 5)
    fill(store, "sell", Side.SELL, 8)
    held = store.position("bot", "QQQ")
    assert held.qty == -3 and held.turn_id not in (None, long.turn_id)
    assert store.latest_turn_id("bot", "QQQ") == held.turn_id
    assert ledger_notes(store) == [
        f"turn {long.turn_id} opened", f"turn {long.turn_id} closed", f"turn {held.turn_id} opened",
    ]  # fmt: skip


def test_partial_fills_add_only_what_is_new(store: ClaimStore) -> None:
    claim = store.claim(make_intent("parts"), make_spec(10), owner="w").claim
    for filled in (2, 2, 6):  # the repeated 2 adds nothing
        claim = store.transition(
            claim, ClaimState.PARTIALLY_FILLED, reason="fill", filled_qty=Decimal(filled)
        )
    claim = store.transition(claim, ClaimState.FILLED, reason="fill", filled_qty=Decimal(10))
    assert store.position("bot", "QQQ").qty == 10


def test_positions_are_per_agent_and_symbol(store: ClaimStore) -> None:
    fill(store, "q", Side.BUY, 5)
    fill(store, "s", Side.BUY, 2, symbol="SQQQ")
    store.adjust_position("other", "QQQ", Decimal(1), reason="orphan adopted")
    assert [(p.symbol, p.qty) for p in store.positions("bot")] == [("QQQ", Decimal(5)), ("SQQQ", Decimal(2))]
    assert [(p.symbol, p.qty) for p in store.positions("other")] == [("QQQ", Decimal(1))]
    assert store.position("bot", "TQQQ").is_flat and store.latest_turn_id("bot", "TQQQ") is None


def test_close_turn_clears_a_phantom_and_audits_it(store: ClaimStore) -> None:
    opened = fill(store, "buy", Side.BUY, 5)
    assert (
        store.close_turn("bot", "QQQ", reason="broker flat twice", detail={"broker_qty": "0"})
        == opened.turn_id
    )
    assert store.position("bot", "QQQ").is_flat
    assert store.close_turn("bot", "QQQ", reason="again") is None
    [note] = store.audit_records(AuditQuery(actions=("reconcile",)))
    assert note.detail == {"turn_id": opened.turn_id, "broker_qty": "0"}


def test_adjust_position_opens_and_closes_turns(store: ClaimStore) -> None:
    turn = store.adjust_position("bot", "QQQ", Decimal(4), reason="orphan")
    assert turn is not None and store.position("bot", "QQQ").qty == 4
    assert store.adjust_position("bot", "QQQ", Decimal(-4), reason="drift") is None
    assert store.position("bot", "QQQ").is_flat
