"""OrderGateway against a real store and the in-process paper broker: G1, G3, G5 at the port."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.gateway_kit import broker_qty, make_gateway
from tradeguard.clock import ManualClock, SystemClock
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import ConfigError, IntentMismatch
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import AuditQuery, MemoryClaimStore


def test_entry_is_sent_once_and_retry_returns_the_original_order(store_url: str) -> None:
    gw, spy = make_gateway(store_url)
    first = gw.enter("TQQQ", qty=6, intent="09:42 breakout")
    again = gw.enter("TQQQ", qty=6, intent="09:42 breakout")
    assert first.outcome is Outcome.SUBMITTED
    assert again.outcome is Outcome.DUPLICATE
    assert again.order is not None and first.order is not None
    assert again.order.id == first.order.id
    assert len(spy.requests) == 1 and len(spy.inner.orders()) == 1
    assert gw.position("TQQQ").qty == 6
    skips = gw.store.audit_count(AuditQuery(actions=("skip",), symbol="TQQQ"))
    assert skips == 1
    gw.store.close()


def test_may21_six_duplicate_attempts_are_skipped_without_a_post(store_url: str) -> None:
    gw, spy = make_gateway(store_url)
    # The session's decisions; each is attempted twice (the retry after a timeout).
    steps = [
        ("enter", "TQQQ", 6, "09:42 buy"),
        ("enter", "TQQQ", 6, "09:47 add"),
        ("exit", "TQQQ", 12, "09:49 flip"),
        ("enter", "TQQQ", 6, "10:00 entry"),
        ("enter", "TQQQ", 6, "10:05 add"),
        ("enter", "TQQQ", 6, "10:10 add"),
        ("exit", "TQQQ", 18, "10:14 flip"),
        ("enter", "SQQQ", 2, "11:06 add"),
    ]
    duplicated = {"09:42 buy", "09:47 add", "09:49 flip", "10:00 entry", "10:14 flip", "11:06 add"}
    blocked = 0
    for action, symbol, qty, name in steps:
        call = gw.enter if action == "enter" else gw.exit
        result = call(symbol, qty=qty, intent=name)
        assert result.outcome is Outcome.SUBMITTED, (name, result.reason)
        if name in duplicated:
            posts_before = len(spy.requests)
            dup = call(symbol, qty=qty, intent=name)
            assert dup.outcome is Outcome.DUPLICATE
            assert len(spy.requests) == posts_before
            blocked += 1
    assert blocked == 6
    assert len(spy.requests) == len(steps)
    assert broker_qty(spy, "TQQQ") == 0 and broker_qty(spy, "SQQQ") == 2
    gw.store.close()


def test_two_exits_for_the_same_turn_two_seconds_apart_sell_once_and_never_short(store_url: str) -> None:
    gw, spy = make_gateway(store_url)
    gw.enter("TQQQ", qty=12, intent="11:20 entry")
    first = gw.exit("TQQQ", qty=12, intent="11:26 exit: momentum lost")
    gw.clock.sleep(2)  # type: ignore[attr-defined]
    second = gw.exit("TQQQ", qty=12, intent="11:26 exit: momentum lost")
    assert first.outcome is Outcome.SUBMITTED and second.outcome is Outcome.DUPLICATE
    sells = [r for r in spy.requests if r.side == "sell"]
    assert len(sells) == 1 and sells[0].position_intent == "sell_to_close"
    assert broker_qty(spy, "TQQQ") == 0
    assert gw.position("TQQQ").is_flat
    gw.store.close()


def test_exit_is_cut_to_qty_available_and_exit_on_flat_sends_nothing(store_url: str) -> None:
    gw, spy = make_gateway(store_url)
    gw.enter("TQQQ", qty=18, intent="entry")
    # Someone else's resting order holds 12 shares: Alpaca's qty_available is 6.
    from tradeguard.domain import OrderRequest, OrderType, Side

    spy.inner.submit_order(
        OrderRequest(
            "TQQQ",
            Side.SELL,
            "manual-limit",
            qty=Decimal(12),
            order_type=OrderType.LIMIT,
            limit_price=Decimal(999),
        )
    )
    cut = gw.exit("TQQQ", qty=18, intent="exit all")
    assert cut.outcome is Outcome.SUBMITTED
    assert spy.requests[-1].qty == 6
    flat = gw.exit("QQQ", intent="exit QQQ")
    assert flat.outcome is Outcome.SKIPPED
    assert all(r.symbol != "QQQ" for r in spy.requests)
    gw.store.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"symbol": "TQQQ", "qty": -5}, "qty must be positive"),
        ({"symbol": "TQQQ", "qty": 5, "notional": 100}, "not both"),
        ({"symbol": "TQQQ", "qty": 5, "side": "hold"}, "side must be one of"),
        ({"symbol": "", "qty": 5}, "symbol must be"),
        ({"symbol": "TQQQ", "qty": 5, "intent": "x" * 201}, "at most 200"),
        ({"symbol": "TQQQ", "qty": 5, "order_type": "limit"}, "needs limit_price"),
        ({"symbol": "TQQQ", "qty": "abc"}, "qty must be a number"),
    ],
)
def test_bad_input_is_refused_before_any_claim(
    sqlite_url: str, kwargs: dict[str, object], message: str
) -> None:
    gw, spy = make_gateway(sqlite_url)
    kwargs.setdefault("intent", "decision")
    with pytest.raises(ConfigError, match=message):
        gw.enter(**kwargs)  # type: ignore[arg-type]
    assert gw.store.list_claims() == [] and spy.requests == []
    gw.store.close()


def test_same_intent_with_a_different_order_is_loud(store_url: str) -> None:
    gw, spy = make_gateway(store_url)
    gw.enter("TQQQ", qty=6, intent="09:42 buy")
    with pytest.raises(IntentMismatch, match="qty"):
        gw.enter("TQQQ", qty=7, intent="09:42 buy")
    assert len(spy.requests) == 1
    gw.store.close()


def test_refused_entry_is_sent_again_on_retry_under_its_own_id(store_url: str) -> None:
    # A refused POST placed nothing: Alpaca takes a retry under the same id, and so does the guard.
    gw, spy = make_gateway(store_url)
    first = gw.enter("TQQQ", qty=100_000, intent="too big")  # beyond buying power
    again = gw.enter("TQQQ", qty=100_000, intent="too big")
    assert first.outcome is Outcome.REJECTED and again.outcome is Outcome.REJECTED
    assert first.claim is not None and first.claim.state is ClaimState.REJECTED
    assert again.claim is not None and again.claim.attempts == first.claim.attempts + 1
    assert [r.client_order_id for r in spy.requests] == [first.claim.client_order_id] * 2
    gw.store.close()


def test_a_store_keeping_another_clock_than_the_gateways_is_refused() -> None:
    """Audit 24: `MemoryClaimStore()` (the system clock) beside a gateway on a manual clock read
    the store's stamps against the other clock: a resting exit counted twice, 120 s taken for
    inside a 60 s window. Two clocks are refused at once, with the fix in the message."""
    manual = ManualClock()
    with pytest.raises(ConfigError, match="same clock"):
        OrderGateway(PaperBroker(clock=manual), MemoryClaimStore(), agent_id="bot", clock=manual)
    OrderGateway(PaperBroker(clock=manual), MemoryClaimStore(clock=manual), agent_id="bot", clock=manual)
    OrderGateway(PaperBroker(clock=manual), MemoryClaimStore(clock=manual), agent_id="bot")  # the store's
    OrderGateway(PaperBroker(), MemoryClaimStore(), agent_id="bot", clock=SystemClock())  # both the wall's
