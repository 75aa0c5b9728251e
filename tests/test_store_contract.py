"""The `ClaimLedger` contract, held by every implementation: SQLite, PostgreSQL and memory.

Each test runs once per store (the `ledger` fixture); the end-to-end tests at the bottom run the
gateway over a `MemoryClaimStore` and over SQLite and require the same outcomes and audit trail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.mothers import make_intent, make_spec
from tradeguard import ActionKind, MemoryClaimStore, OrderGateway, Outcome, PaperBroker
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import AuditAction, Claim, Side
from tradeguard.domain.intents import Kind, OrderSpec
from tradeguard.domain.lifecycle import TRANSITIONS, ClaimState
from tradeguard.errors import ClaimInProgress, IllegalTransition, IntentMismatch, LeaseLost, StoreError
from tradeguard.ports import ClaimLedger
from tradeguard.store import AuditQuery, ClaimStore, RemoteClaimLedger

Store = ClaimStore | MemoryClaimStore | RemoteClaimLedger


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        "memory",
        "remote-sqlite",
        pytest.param("remote-postgresql", marks=pytest.mark.postgres),
    ]
)
def ledger(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Store]:
    """Every contract test runs on a SQLite file, on real PostgreSQL, in memory, and through the
    claim service over real HTTP (`RemoteClaimLedger` against the native routes, served by
    uvicorn on loopback over a SQLite file and over PostgreSQL, on the test's clock)."""
    store: Store
    if request.param == "memory":
        store = MemoryClaimStore(clock=clock)
    elif request.param.startswith("remote-"):
        yield from _remote(request, clock)
        return
    else:
        url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
        store = ClaimStore(url, clock=clock)
    with store:
        yield store


def _remote(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Store]:
    """A remote ledger with an admin key (the contract is account-wide) on a served ClaimStore."""
    from tests.native_kit import serve_native

    url = request.getfixturevalue("sqlite_url" if request.param == "remote-sqlite" else "pg_url")
    with ClaimStore(url, clock=clock) as served, serve_native(served, url) as service:
        key = service.key("ops", admin=True)
        with RemoteClaimLedger(service.base_url, api_key=key, clock=clock) as remote:
            yield remote


def claim(store: Store, name: str, qty: int = 5, **fields: Any) -> Claim:
    return store.claim(make_intent(name, **fields), make_spec(qty), owner="w").claim


def trail(store: Store, claim: Claim) -> list[tuple[str, str | None, str | None]]:
    records = store.audit_records(AuditQuery(client_order_id=claim.client_order_id))
    return [(r.action.value, r.prev_state, r.state) for r in records]


def notes(store: Store, action: AuditAction) -> list[str]:
    return [r.reason for r in store.audit_records(AuditQuery(actions=(action.value,)))]


def fill(store: Store, name: str, side: Side, qty: int, *, agent: str = "bot") -> Claim:
    kind = Kind.ENTRY if side is Side.BUY else Kind.EXIT
    c = claim(store, name, qty, kind=kind, side=side, agent=agent)
    return store.transition(c, ClaimState.FILLED, reason="filled", filled_qty=Decimal(qty))


def whole() -> OrderSpec:
    """An exit spec for the whole held position."""
    return replace(make_spec(), qty=None)


def test_both_stores_keep_the_port(ledger: Store) -> None:
    assert isinstance(ledger, ClaimLedger)


# -- claiming ---------------------------------------------------------------------------------


def test_a_claim_is_pending_audited_and_found_by_key_and_client_order_id(ledger: Store) -> None:
    out = ledger.claim(make_intent("a"), make_spec(6), owner="w1", reason="signal")
    c = out.claim
    assert out.created and c.state is ClaimState.PENDING and (c.epoch, c.attempts) == (1, 1)
    assert ledger.get(c.key) == c == ledger.get_by_client_order_id(c.client_order_id)
    [rec] = ledger.audit_records(AuditQuery(client_order_id=c.client_order_id))
    assert (rec.action, rec.state, rec.qty, rec.reason, rec.detail["qty"]) == (
        AuditAction.CLAIM, "PENDING", "6", "signal", "6",
    )  # fmt: skip


def test_a_duplicate_claim_returns_the_first_and_writes_nothing(ledger: Store) -> None:
    first = claim(ledger, "dup", 6)
    again = ledger.claim(make_intent("dup"), make_spec("6.0"), owner="other")
    assert not again.created and again.claim == first
    assert trail(ledger, first) == [("claim", None, "PENDING")]


def test_the_same_key_with_another_order_is_an_intent_mismatch(ledger: Store) -> None:
    claim(ledger, "m", 6)
    with pytest.raises(IntentMismatch):
        ledger.claim(make_intent("m"), make_spec(7), owner="w")


def test_a_client_order_id_names_one_claim_only(ledger: Store) -> None:
    ledger.claim(make_intent("a"), make_spec(), owner="w", client_order_id="mine")
    with pytest.raises(StoreError, match="already belongs to another claim"):
        ledger.claim(make_intent("b"), make_spec(), owner="w", client_order_id="mine")
    assert ledger.get(make_intent("b").key) is None


# -- the lifecycle ----------------------------------------------------------------------------

_REACH = {  # how a test brings a fresh PENDING claim to each state: (state, filled qty)
    ClaimState.PENDING: [],
    ClaimState.SUBMITTED: [(ClaimState.SUBMITTED, None)],
    ClaimState.PARTIALLY_FILLED: [(ClaimState.PARTIALLY_FILLED, 1)],
    ClaimState.UNKNOWN: [(ClaimState.UNKNOWN, None)],
    ClaimState.REJECTED: [(ClaimState.REJECTED, None)],
    ClaimState.NOT_SENT: [(ClaimState.NOT_SENT, None)],
    ClaimState.FILLED: [(ClaimState.FILLED, 5)],
}
_FILLED_ON = {ClaimState.PARTIALLY_FILLED: 2, ClaimState.FILLED: 5}
LEGAL = [(src, dst) for src, targets in TRANSITIONS.items() if src in _REACH for dst in sorted(targets)]


def reach(store: Store, state: ClaimState, name: str) -> Claim:
    c = claim(store, name)
    for to, filled in _REACH[state]:
        c = store.transition(c, to, reason="setup", filled_qty=None if filled is None else Decimal(filled))
    return c


@pytest.mark.parametrize(("src", "dst"), LEGAL, ids=[f"{s}->{d}" for s, d in LEGAL])
def test_every_legal_transition_moves_and_audits(ledger: Store, src: ClaimState, dst: ClaimState) -> None:
    c = reach(ledger, src, "legal")
    filled = _FILLED_ON.get(dst)
    moved = ledger.transition(
        c, dst, reason="move", filled_qty=None if filled is None else Decimal(filled), owner="w"
    )
    assert moved.state is dst and ledger.get(c.key) == moved
    assert moved.attempts == c.attempts + (1 if dst is ClaimState.PENDING else 0)
    assert trail(ledger, c)[-1] == ("transition", src.value, dst.value)


@pytest.mark.parametrize(
    ("src", "dst"), [(ClaimState.FILLED, ClaimState.PENDING), (ClaimState.SUBMITTED, ClaimState.PENDING)]
)
def test_an_illegal_transition_raises_and_changes_nothing(
    ledger: Store, src: ClaimState, dst: ClaimState
) -> None:
    c = reach(ledger, src, "illegal")
    before = trail(ledger, c)
    with pytest.raises(IllegalTransition):
        ledger.transition(c, dst, reason="no")
    assert ledger.get(c.key) == c and trail(ledger, c) == before


def test_a_stale_snapshot_loses_the_compare_and_set(ledger: Store) -> None:
    c = claim(ledger, "cas")
    ledger.transition(c, ClaimState.SUBMITTED, reason="ack")
    with pytest.raises(LeaseLost):
        ledger.transition(c, ClaimState.UNKNOWN, reason="stale")
    assert ledger.get(c.key).state is ClaimState.SUBMITTED  # type: ignore[union-attr]


def test_a_stale_partial_fill_is_never_applied_twice(ledger: Store) -> None:
    c = ledger.transition(claim(ledger, "pf"), ClaimState.PARTIALLY_FILLED, reason="p", filled_qty=Decimal(2))
    ledger.transition(c, ClaimState.PARTIALLY_FILLED, reason="p", filled_qty=Decimal(3))
    with pytest.raises(LeaseLost):  # same state and epoch, older filled_qty
        ledger.transition(c, ClaimState.PARTIALLY_FILLED, reason="p", filled_qty=Decimal(3))
    assert ledger.position("bot", "QQQ").qty == 3


def test_a_replacement_records_new_terms_and_the_first_ones_still_match(ledger: Store) -> None:
    first = claim(ledger, "replaced", 5)
    sent = ledger.transition(first, ClaimState.SUBMITTED, reason="acked", broker_order_id="o-1")
    terms = replace(make_spec(7), limit_price=Decimal("455"))
    payload = {**terms.as_payload(), "first": first.payload}
    moved = ledger.transition(
        sent,
        ClaimState.SUBMITTED,
        reason="replaced",
        broker_order_id="o-2",
        order_qty=Decimal(7),
        payload=payload,
    )
    again = ledger.get(first.key)
    assert again is not None and again == moved
    assert (again.broker_order_id, again.order_qty, again.spec.qty) == ("o-2", Decimal(7), Decimal(7))
    assert again.spec.limit_price == Decimal("455")
    # A late retry of the original call, and one of the new terms, are the same decision.
    for asked in (make_spec(5), terms):
        outcome = ledger.claim(make_intent("replaced"), asked, owner="w")
        assert not outcome.created and outcome.claim.key == first.key
    with pytest.raises(IntentMismatch):
        ledger.claim(make_intent("replaced"), make_spec(6), owner="w")


def test_take_over_waits_for_the_lease_then_fences_out_the_old_owner(
    ledger: Store, clock: ManualClock
) -> None:
    c = claim(ledger, "lease")
    with pytest.raises(ClaimInProgress):
        ledger.take_over(c, "w2")
    clock.advance(ledger.settings.lease_secs + 1)
    taken = ledger.take_over(c, "w2")
    assert (taken.state, taken.epoch, taken.owner) == (ClaimState.UNKNOWN, 2, "w2")
    with pytest.raises(LeaseLost):
        ledger.transition(c, ClaimState.SUBMITTED, reason="old owner")
    with pytest.raises(ClaimInProgress):
        ledger.take_over(c, "w3")  # the old snapshot cannot be taken over again
    assert trail(ledger, c)[-1] == ("takeover", "PENDING", "UNKNOWN")


def test_a_lease_is_renewed_before_a_late_send_and_fences_stale_readers(
    ledger: Store, clock: ManualClock
) -> None:
    c = claim(ledger, "renew")
    assert ledger.fence_before_send(c) is c  # a fresh lease: no write
    clock.advance(ledger.settings.lease_secs - 1)
    renewed = ledger.fence_before_send(c)
    assert renewed.epoch == 2 and renewed.lease_expires_at == clock.now() + timedelta(
        seconds=ledger.settings.lease_secs
    )
    with pytest.raises(LeaseLost):
        ledger.transition(c, ClaimState.NOT_SENT, reason="stale reader")
    with pytest.raises(LeaseLost):
        ledger.renew_lease(renewed, "someone-else")


# -- the ledger -------------------------------------------------------------------------------


def test_fills_open_add_to_close_and_cross_a_turn(ledger: Store) -> None:
    first = fill(ledger, "b1", Side.BUY, 5)
    assert fill(ledger, "b2", Side.BUY, 3).turn_id == first.turn_id
    assert ledger.position("bot", "QQQ").qty == 8
    fill(ledger, "s1", Side.SELL, 8)
    assert ledger.position("bot", "QQQ").is_flat and ledger.latest_turn_id("bot", "QQQ") == first.turn_id
    fill(ledger, "b3", Side.BUY, 2)
    fill(ledger, "s2", Side.SELL, 5)
    short = ledger.position("bot", "QQQ")
    assert short.qty == -3 and ledger.latest_turn_id("bot", "QQQ") == short.turn_id
    assert [n.split(":")[0] for n in notes(ledger, AuditAction.LEDGER)] == [
        f"turn {first.turn_id} opened", f"turn {first.turn_id} closed",
        f"turn {short.turn_id - 1} opened", f"turn {short.turn_id - 1} closed",  # type: ignore[operator]
        f"turn {short.turn_id} opened",
    ]  # fmt: skip
    assert ledger.positions("bot") == [short] == ledger.all_positions()


def test_claim_exit_sizes_from_held_minus_open_exits(ledger: Store) -> None:
    fill(ledger, "buy", Side.BUY, 10)
    out, room = ledger.claim_exit(
        make_intent("x1", kind=Kind.EXIT, side=Side.SELL), make_spec(4), owner="w",
        broker_available=Decimal(10), reason="x1",
    )  # fmt: skip
    assert out is not None and out.claim.order_qty == 4 and room.qty == 4
    ledger.transition(out.claim, ClaimState.SUBMITTED, reason="ack")  # acknowledged: out of qty_available
    out2, room2 = ledger.claim_exit(
        make_intent("x2", kind=Kind.EXIT, side=Side.SELL), whole(), owner="w",
        broker_available=Decimal(6), reason="x2",
    )  # fmt: skip
    assert (room2.held, room2.open_exits, room2.unacknowledged_exits, room2.qty) == (10, 4, 0, 6)
    assert out2 is not None and out2.claim.order_qty == 6
    assert ledger.exits_in_flight("bot", "QQQ") == 6


def test_claim_exit_subtracts_unacknowledged_exits_and_other_agents_shares(ledger: Store) -> None:
    fill(ledger, "a-buy", Side.BUY, 5, agent="a")
    fill(ledger, "b-buy", Side.BUY, 5, agent="b")
    first, _ = ledger.claim_exit(
        make_intent("x", agent="a", kind=Kind.EXIT, side=Side.SELL), make_spec(2), owner="w",
        broker_available=Decimal(10), reason="x",
    )  # fmt: skip
    assert first is not None
    _, room = ledger.claim_exit(
        make_intent("y", agent="a", kind=Kind.EXIT, side=Side.SELL), whole(), owner="w",
        broker_available=Decimal(9), reason="y",
    )  # fmt: skip
    # held 5 - open 2 = 3; broker 9 - unacknowledged 2 - b's 5 = 2
    assert (room.unacknowledged_exits, room.reserved_by_others, room.qty) == (2, 5, 2)


def test_registered_accounts_are_upserted_and_a_change_is_audited(ledger: Store) -> None:
    assert ledger.agent_accounts() == {}
    ledger.register_account("a", "acct-1")
    ledger.register_account("a", "acct-1")  # unchanged: nothing written
    ledger.register_account("b", "")
    assert ledger.agent_accounts() == {"a": "acct-1", "b": ""}
    assert notes(ledger, AuditAction.LEDGER) == []  # a first registration is not a change
    ledger.register_account("a", "acct-2")
    assert ledger.agent_accounts() == {"a": "acct-2", "b": ""}
    assert notes(ledger, AuditAction.LEDGER) == ["broker account changed from acct-1 to acct-2"]


def test_adopt_position_books_only_the_orphan_on_the_agents_account(
    ledger: Store, clock: ManualClock
) -> None:
    for agent, account in (("a", "acct-1"), ("b", "acct-1"), ("c", "acct-2")):
        ledger.register_account(agent, account)
    fill(ledger, "b-buy", Side.BUY, 3, agent="b")
    fill(ledger, "c-buy", Side.BUY, 50, agent="c")
    # b's ledger just moved: a positions read may not show its fill yet, so nothing is an orphan.
    assert ledger.adopt_position("a", "QQQ", Decimal(10), why="too soon").is_flat
    clock.advance(ledger.settings.position_settle_secs + 1)
    # Account 1 holds 10: b's 3 and 7 nobody's ledger holds (c's 50 are on account 2).
    adopted = ledger.adopt_position("a", "QQQ", Decimal(10), why="first close")
    assert adopted.qty == 7 and ledger.position("a", "QQQ") == adopted
    [note] = [r for r in ledger.audit_records(AuditQuery(actions=("reconcile",)))]
    assert note.detail == {"action": "adopt_broker_position", "broker_qty": "10", "other_agents_qty": "3"}
    assert ledger.adopt_position("a", "QQQ", Decimal(20), why="again") == adopted  # holds: unchanged
    assert ledger.adopt_position("b", "QQQ", Decimal(10), why="b").qty == 3  # b holds: unchanged
    ledger.register_account("d", "acct-1")
    assert ledger.adopt_position("d", "QQQ", Decimal(10), why="d").is_flat  # every share is held


def _sell_room(ledger: Store, agent: str, name: str, available: int) -> Any:
    return ledger.claim_exit(
        make_intent(name, agent=agent, kind=Kind.EXIT, side=Side.SELL), whole(), owner="w",
        broker_available=Decimal(available), reason=name,
    )  # fmt: skip


def test_claim_exit_leaves_out_agents_registered_on_another_account(ledger: Store) -> None:
    # a and b trade account 1, c trades account 2, d never registered (a store from before 0005).
    for agent, account in (("a", "acct-1"), ("b", "acct-1"), ("c", "acct-2")):
        ledger.register_account(agent, account)
    for agent, qty in (("a", 5), ("b", 3), ("c", 50), ("d", 2)):
        fill(ledger, f"{agent}-buy", Side.BUY, qty, agent=agent)
    # a: account 1 shows a's 5 + b's 3 + maybe d's 2 = 10; c's 50 are on account 2.
    out, room = _sell_room(ledger, "a", "a-out", 10)
    assert out is not None and (room.reserved_by_others, room.qty) == (5, 5)
    # c: account 2 shows its own 50 (and maybe d's 2); a's and b's shares are elsewhere.
    out, room = _sell_room(ledger, "c", "c-out", 50)
    assert out is not None and (room.reserved_by_others, room.qty) == (2, 48)
    # d knows no account: every agent's shares may be on its account (the old sizing).
    _, room = _sell_room(ledger, "d", "d-out", 60)
    assert (room.reserved_by_others, room.qty) == (5 + 3 + 50, 2)


def test_an_unknown_account_key_counts_as_shared(ledger: Store) -> None:
    ledger.register_account("a", "acct-1")
    ledger.register_account("b", "")  # a broker with no account key
    fill(ledger, "a-buy", Side.BUY, 5, agent="a")
    fill(ledger, "b-buy", Side.BUY, 4, agent="b")
    _, room = _sell_room(ledger, "a", "a-out", 9)
    assert (room.reserved_by_others, room.qty) == (4, 5)
    _, room = _sell_room(ledger, "b", "b-out", 9)
    assert room.reserved_by_others == 5


def test_claim_exit_with_nothing_to_sell_claims_nothing(ledger: Store) -> None:
    fill(ledger, "buy", Side.BUY, 3)
    intent = make_intent("none", kind=Kind.EXIT, side=Side.SELL)
    out, room = ledger.claim_exit(intent, whole(), owner="w", broker_available=Decimal(0), reason="x")
    assert out is None and room.qty == 0 and ledger.get(intent.key) is None


def test_resend_exit_resizes_a_refused_exit_back_to_pending(ledger: Store) -> None:
    fill(ledger, "buy", Side.BUY, 6)
    out, _ = ledger.claim_exit(
        make_intent("x", kind=Kind.EXIT, side=Side.SELL), whole(), owner="w",
        broker_available=Decimal(6), reason="x",
    )  # fmt: skip
    assert out is not None
    refused = ledger.transition(out.claim, ClaimState.REJECTED, reason="403")
    none, _ = ledger.resend_exit(refused, owner="w2", broker_available=Decimal(0), reason="r", detail={})
    assert none is None and ledger.get(refused.key) == refused
    again, room = ledger.resend_exit(refused, owner="w2", broker_available=Decimal(4), reason="r", detail={})
    assert again is not None and (again.state, again.order_qty, again.attempts, again.owner) == (
        ClaimState.PENDING, 4, 2, "w2",
    )  # fmt: skip
    assert room.qty == 4
    with pytest.raises(LeaseLost):  # room is left (6 held, 4 in flight), but the snapshot is stale
        ledger.resend_exit(refused, owner="w3", broker_available=Decimal(8), reason="r", detail={})


def test_close_turn_and_correct_position_are_compare_and_sets(ledger: Store, clock: ManualClock) -> None:
    fill(ledger, "buy", Side.BUY, 5)
    seen = ledger.position("bot", "QQQ")
    fill(ledger, "buy-more", Side.BUY, 1)
    assert ledger.close_turn("bot", "QQQ", reason="phantom", detail={"a": 1}, expect=seen) is None
    assert not ledger.correct_position(seen, Decimal(-5), reason="trim", detail={})
    now = ledger.position("bot", "QQQ")
    assert ledger.correct_position(now, Decimal(-2), reason="trim", detail={"why": "drift"})
    trimmed = ledger.position("bot", "QQQ")
    assert trimmed.qty == 4
    assert (
        ledger.close_turn("bot", "QQQ", reason="phantom", detail={"a": 1}, expect=trimmed) == trimmed.turn_id
    )
    assert ledger.position("bot", "QQQ").is_flat
    [cleared] = ledger.cleared_turns(since=clock.now())
    assert (cleared.turn_id, cleared.qty) == (trimmed.turn_id, 4)
    assert notes(ledger, AuditAction.RECONCILE) == ["trim", "phantom"]


def test_moved_turns_lists_every_turn_a_fill_moved_since_open_or_closed(
    ledger: Store, clock: ManualClock
) -> None:
    """Audit D6: the reconciler puts a symbol off while any turn in it moved recently, another
    agent's just-closed one included (a lagging positions read may still show its shares)."""
    fill(ledger, "a-buy", Side.BUY, 10, agent="a")
    fill(ledger, "b-buy", Side.BUY, 5, agent="b")
    clock.advance(60)
    since = clock.now()
    assert ledger.moved_turns(since=since) == []
    clock.advance(1)
    fill(ledger, "b-sell", Side.SELL, 5, agent="b")
    [moved] = ledger.moved_turns(since=since)
    assert (moved.agent_id, moved.symbol, moved.qty, moved.updated_at) == ("b", "QQQ", 0, clock.now())
    assert moved.turn_id == ledger.latest_turn_id("b", "QQQ")
    clock.advance(1)
    fill(ledger, "a-buy-more", Side.BUY, 2, agent="a")
    assert [(p.agent_id, p.qty) for p in ledger.moved_turns(since=since)] == [("b", 0), ("a", 12)]
    assert [p.agent_id for p in ledger.moved_turns(since=clock.now())] == []


def test_settle_position_sets_the_ledger_with_who_and_why(ledger: Store) -> None:
    fill(ledger, "buy", Side.BUY, 5)
    assert ledger.settle_position("bot", "QQQ", Decimal(2), reason="broker says 2", actor="ops") == 5
    assert ledger.position("bot", "QQQ").qty == 2
    [rec] = ledger.audit_records(AuditQuery(actions=("reconcile",)))
    assert rec.detail == {"action": "settle_position", "actor": "ops", "before": "5", "after": "2"}
    with pytest.raises(ValueError, match="needs a reason"):
        ledger.settle_position("bot", "QQQ", Decimal(0), reason=" ", actor="ops")


# -- dedup windows, listings, audit -----------------------------------------------------------


def test_a_dedup_window_is_held_while_its_claim_is_pending_or_unknown(
    ledger: Store, clock: ManualClock
) -> None:
    holder = claim(ledger, "content-1")
    assert ledger.claim_window("ck", window_secs=60, claim_key=holder.key) == holder.key
    assert ledger.claim_window("ck", window_secs=60, claim_key="other") == holder.key
    clock.advance(61)
    assert ledger.claim_window("ck", window_secs=60, claim_key="other") == holder.key  # still PENDING
    unknown = ledger.transition(holder, ClaimState.UNKNOWN, reason="timeout")
    assert ledger.claim_window("ck", window_secs=60, claim_key="other") == holder.key
    ledger.transition(unknown, ClaimState.FILLED, reason="found", filled_qty=Decimal(5))
    assert ledger.claim_window("ck", window_secs=60, claim_key="next") == "next"


def test_window_holder_reads_the_live_window_and_opens_none(ledger: Store, clock: ManualClock) -> None:
    assert ledger.window_holder("ck") is None
    assert ledger.claim_window("ck", window_secs=60, claim_key="first") == "first"  # read opened nothing
    assert ledger.window_holder("ck") == "first"
    assert ledger.window_holder("other-content") is None
    clock.advance(61)
    assert ledger.window_holder("ck") is None  # expired (its claim was never written)
    assert ledger.window_holder("ck") is None
    assert ledger.claim_window("ck", window_secs=60, claim_key="second") == "second"
    assert ledger.window_holder("ck") == "second"


def test_listings_filter_and_order_oldest_first(ledger: Store, clock: ManualClock) -> None:
    a = claim(ledger, "a")
    clock.advance(1)
    b = claim(ledger, "b", symbol="TQQQ")
    clock.advance(1)
    c = claim(ledger, "c", agent="other")
    b = ledger.transition(b, ClaimState.SUBMITTED, reason="ack")
    assert ledger.list_claims() == [a, b, c]
    assert ledger.list_claims(states=[ClaimState.PENDING], agent_id="bot") == [a]
    assert ledger.list_claims(states=[ClaimState.SUBMITTED], agent_id="bot", symbol="TQQQ") == [b]
    assert ledger.list_claims(agent_id="bot", kind=Kind.ENTRY, limit=1) == [a]
    assert ledger.list_claims(updated_since=clock.now()) == [b, c]
    assert ledger.agents() == ["bot", "other"]


def test_audit_queries_filter_and_page(ledger: Store, clock: ManualClock) -> None:
    a = claim(ledger, "a")
    clock.advance(1)
    ledger.record_skip(a, agent_id="bot", reason="duplicate")
    ledger.audit(AuditAction.ERROR, agent_id="*", reason="read failed", detail={"n": Decimal(1)})
    assert [r.action.value for r in ledger.audit_records(AuditQuery(since=clock.now()))] == ["skip", "error"]
    assert ledger.audit_count(AuditQuery(agent_id="bot")) == 2
    page = ledger.audit_page(after_id=1, limit=1)
    assert [r.reason for r in page] == ["duplicate"]
    [error] = ledger.audit_records(AuditQuery(actions=("error",)))
    assert error.detail == {"n": "1"}  # detail reads back as JSON, whatever the store


# -- end to end: the gateway over memory and over SQLite -------------------------------------


def run_session(store: Store, clock: ManualClock) -> tuple[list[Any], list[Any]]:
    """Enter, retry, exit, retry, reconcile a phantom away; return outcomes and the audit trail."""
    broker = PaperBroker(clock=clock)
    gw = OrderGateway(broker, store, agent_id="bot", owner="gw", clock=clock)
    results = [
        gw.enter("TQQQ", qty=6, intent="09:42 buy"),
        gw.enter("TQQQ", qty=6, intent="09:42 buy"),
        gw.exit("TQQQ", intent="stop"),
        gw.exit("TQQQ", intent="stop"),
    ]
    store.adjust_position("bot", "SQQQ", Decimal(12), reason="phantom")
    report = gw.reconcile()
    outcomes = [(r.outcome, r.claim and r.claim.state, r.claim and r.claim.order_qty) for r in results]
    outcomes += [[a.kind for a in report.applied], gw.position("TQQQ").qty, gw.position("SQQQ").qty]
    outcomes += [sum(1 for o in broker.list_orders(status="all") if o.client_order_id) or 0]
    records = [
        (r.action, r.agent_id, r.kind, r.symbol, r.side, r.qty, r.state, r.prev_state, r.at)
        for r in store.audit_records()
    ]
    return outcomes, records


def test_the_gateway_gives_the_same_outcomes_and_audit_on_memory_and_sqlite(tmp_path: Path) -> None:
    settings = Settings(recent_activity_secs=0, position_settle_secs=0)
    clock_a, clock_b = ManualClock(), ManualClock()
    with ClaimStore(f"sqlite:///{tmp_path / 'e2e.db'}", clock=clock_a, settings=settings) as sql:
        on_sqlite = run_session(sql, clock_a)
    on_memory = run_session(MemoryClaimStore(clock=clock_b, settings=settings), clock_b)
    assert on_memory == on_sqlite
    outcomes, _ = on_memory
    assert [o[0] for o in outcomes[:4]] == [
        Outcome.SUBMITTED,
        Outcome.DUPLICATE,
        Outcome.SUBMITTED,
        Outcome.DUPLICATE,
    ]
    assert outcomes[4] == [ActionKind.CLEAR_PHANTOM]
    assert outcomes[5:] == [Decimal(0), Decimal(0), 2]  # flat everywhere, two orders in all


def test_symbols_in_motion_are_those_with_active_claims_of_other_agents(ledger: Store) -> None:
    # A one-agent reconcile pass leaves these symbols alone: another agent's order may show there.
    mine = ledger.claim(make_intent("mine", agent="bot-a", symbol="TQQQ"), make_spec(), owner="w").claim
    theirs = ledger.claim(make_intent("theirs", agent="bot-b", symbol="SQQQ"), make_spec(), owner="w").claim
    assert ledger.symbols_in_motion() == {"TQQQ", "SQQQ"}
    assert ledger.symbols_in_motion(excluding_agent="bot-a") == {"SQQQ"}
    ledger.transition(theirs, ClaimState.FILLED, reason="filled", filled_qty=theirs.order_qty)
    assert ledger.symbols_in_motion(excluding_agent="bot-a") == set()
    assert mine.state is ClaimState.PENDING
