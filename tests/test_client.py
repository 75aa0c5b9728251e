"""GuardedTradingClient and the gateway over the real alpaca-py TradingClient and requests-mock (G1, G3).

Only the network edge is mocked: `FakeAlpaca` answers Alpaca's routes with real bodies.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import requests_mock
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tests.alpaca_bodies import BY_CLIENT_ID_URL, DUPLICATE_CLIENT_ORDER_ID, HTML_504, ORDERS_URL, FakeAlpaca
from tradeguard import AlpacaBroker, GuardedTradingClient, ManualClock, OrderGateway, Outcome, Settings

SETTINGS = Settings(recent_activity_secs=0)


def guarded(store_url: str, clock: ManualClock) -> GuardedTradingClient:
    return GuardedTradingClient(
        "key", "secret", paper=True, store=store_url, agent_id="may21-bot", settings=SETTINGS, clock=clock
    )


def alpaca_gateway(store_url: str, clock: ManualClock) -> OrderGateway:
    """A gateway over AlpacaBroker and the real TradingClient (requests-mock answers it)."""
    broker = AlpacaBroker(TradingClient("key", "secret"))
    return OrderGateway(broker, store_url, agent_id="bot", settings=SETTINGS, clock=clock)


def posts(mocker: requests_mock.Mocker) -> int:
    return sum(1 for r in mocker.request_history if r.method == "POST" and r.url == ORDERS_URL)


def buy(qty: int, symbol: str = "TQQQ", **extra: object) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, **extra
    )


def sell(qty: int, symbol: str = "TQQQ") -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)


def fill_everything(fake: FakeAlpaca) -> None:
    """Fill every open order at the fake and book the positions, as Alpaca would."""
    held: dict[str, Decimal] = {}
    for order in fake.orders.values():
        if order["status"] not in ("filled", "canceled"):
            order.update(status="filled", filled_qty=order["qty"], filled_avg_price="75.33")
        sign = 1 if order["side"] == "buy" else -1
        held[order["symbol"]] = held.get(order["symbol"], Decimal(0)) + sign * Decimal(order["filled_qty"])
    fake.positions.clear()
    for symbol, qty in held.items():
        if qty:
            fake.add_position(symbol, str(qty))


def test_lost_response_then_retry_gives_one_order_and_both_calls_return_it(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    client = guarded(store_url, clock)
    fake.raise_on_next_post(requests.exceptions.ReadTimeout("read timed out"), accept=True)
    first = client.submit_order(buy(6))
    retry = client.submit_order(buy(6))
    assert len(fake.orders) == 1 and posts(mocker) == 1
    assert str(first.id) == str(retry.id) == next(iter(fake.orders.values()))["id"]
    client.gateway.store.close()


def test_504_after_accept_is_adopted_without_a_second_post_or_an_error(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    # alpaca-py itself would POST again after this 504 and get 422 "client_order_id must be
    # unique" although the order exists; the guard looks it up instead.
    client = guarded(store_url, clock)
    fake.lose_next_answer(504, HTML_504)
    order = client.submit_order(buy(6, client_order_id="bot-0942-buy"))
    assert posts(mocker) == 1 and list(fake.orders) == ["bot-0942-buy"]
    assert order.client_order_id == "bot-0942-buy"
    client.gateway.store.close()


def test_unguarded_alpaca_py_turns_the_same_504_into_an_error_for_an_order_that_exists(
    mocker: requests_mock.Mocker, fake: FakeAlpaca
) -> None:
    plain = TradingClient("key", "secret", paper=True)
    plain._retry_wait = 0  # the hidden retry waits 3 s; the path is the same without the wait
    fake.lose_next_answer(504, HTML_504)
    with pytest.raises(APIError) as err:
        plain.submit_order(buy(6, client_order_id="bot-0942-buy"))
    assert err.value.status_code == 422 and json.loads(str(err.value)) == json.loads(
        DUPLICATE_CLIENT_ORDER_ID[1]
    )
    assert posts(mocker) == 2 and len(fake.orders) == 1


def test_a_resend_answered_422_duplicate_is_adopted(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    gateway = alpaca_gateway(store_url, clock)
    # The POST times out and the order is not visible to lookups yet (Alpaca lags a few seconds).
    fake.raise_on_next_post(requests.exceptions.ReadTimeout("read timed out"), accept=False)
    first = gateway.enter("TQQQ", qty=6, intent="09:42 buy")
    assert first.outcome is Outcome.UNKNOWN
    assert first.claim is not None
    fake.add_order(client_order_id=first.claim.client_order_id)  # ...then it lands
    fake.orders[first.claim.client_order_id].update(status="filled", qty="6", filled_qty="6")
    clock.advance(60)
    mocker.get(
        BY_CLIENT_ID_URL,
        [{"status_code": 404, "text": '{"code":40410000,"message":"order not found"}'}] * 2
        + [{"text": fake._get_by_client_id}],
    )
    retry = gateway.enter("TQQQ", qty=6, intent="09:42 buy")
    # Two probes missed it, so the guard resent the SAME client_order_id; Alpaca refused the
    # copy with 422 and the adapter adopted the existing order.
    assert retry.outcome is Outcome.SUBMITTED, retry.reason
    assert retry.order is not None and retry.order.client_order_id == first.claim.client_order_id
    assert len(fake.orders) == 1
    assert gateway.store.position("bot", "TQQQ").qty == 6
    gateway.store.close()


MAY21_DUPLICATES = [
    ("09:42 duplicate buy", buy(6)),
    ("09:47 duplicate add", buy(6)),
    ("09:49 duplicate sell on flip", sell(12)),
    ("10:00 duplicate entry", buy(6)),
    ("10:14 duplicate sell on flip", sell(18)),
    ("11:06 duplicate add", buy(2, "SQQQ")),
]


def test_each_may21_duplicate_is_skipped_with_no_post(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    client = guarded(store_url, clock)
    for label, request in MAY21_DUPLICATES:
        original = client.submit_order(request)
        before = posts(mocker)
        clock.advance(1)  # the retry comes a second later, inside the 60 s window
        duplicate = client.submit_order(request)
        assert posts(mocker) == before, label
        assert duplicate.id == original.id, label
        clock.advance(120)  # the next decision comes minutes later
    assert posts(mocker) == 6 and len(fake.orders) == 6
    client.gateway.store.close()


def test_1126_two_closes_two_seconds_apart_sell_once_and_leave_no_short(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    client = guarded(store_url, clock)
    client.submit_order(buy(12, client_order_id="bot-1120-entry"))
    fill_everything(fake)
    first = client.close_position("TQQQ")
    clock.advance(2)
    second = client.close_position("TQQQ")
    sells = [o for o in fake.orders.values() if o["side"] == "sell"]
    assert len(sells) == 1 and first.id == second.id
    assert sells[0]["qty"] == "12" and sells[0]["position_intent"] == "sell_to_close"
    fill_everything(fake)
    assert "TQQQ" not in fake.positions
    assert client.gateway.position("TQQQ").is_flat
    client.gateway.store.close()


def test_exit_is_cut_to_qty_available_and_flat_exit_sends_nothing(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    gateway = alpaca_gateway(store_url, clock)
    gateway.enter("TQQQ", qty=18, intent="10:05 entry")
    fill_everything(fake)
    fake.positions["TQQQ"]["qty_available"] = "6"  # 12 held for an open order elsewhere
    cut = gateway.exit("TQQQ", qty=18, intent="10:14 flip")
    assert cut.outcome is Outcome.SUBMITTED
    assert [o["qty"] for o in fake.orders.values() if o["side"] == "sell"] == ["6"]
    before = posts(mocker)
    flat = gateway.exit("SQQQ", intent="exit SQQQ")
    assert flat.outcome is Outcome.SKIPPED and posts(mocker) == before
    gateway.store.close()


def test_everything_else_passes_through_to_alpaca_py(
    tmp_path: Path, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    client = guarded(f"sqlite:///{tmp_path / 'c.db'}", clock)
    fake.add_position("QQQ", "3")
    assert isinstance(client, TradingClient)
    positions = client.get_all_positions()
    assert [p.symbol for p in positions] == ["QQQ"]  # type: ignore[union-attr]
    client.gateway.store.close()


def test_a_plain_sell_of_a_long_held_before_the_guard_goes_to_alpaca_as_a_sized_sell_to_close(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    # The bot bought 4 DIA before it switched to the guard; it sells them with a plain order.
    fake.add_position("DIA", "4")
    client = guarded(store_url, clock)
    order = client.submit_order(sell(4, "DIA"))
    sent = [r.json() for r in mocker.request_history if r.method == "POST" and r.url == ORDERS_URL]
    assert [(b["side"], b["qty"], b["position_intent"]) for b in sent] == [("sell", "4", "sell_to_close")]
    assert order.position_intent is not None and order.position_intent.value == "sell_to_close"
    claims = client.gateway.store.list_claims(agent_id="may21-bot", symbol="DIA")
    assert [c.kind.value for c in claims] == ["exit"]
    client.gateway.store.close()


def test_a_plain_buy_on_a_flat_symbol_is_sent_as_buy_to_open(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    """Said out loud: left to Alpaca's inference, an order the guard took for an opening one would
    close another agent's opposite position on the account (found by an adversarial run)."""
    client = guarded(store_url, clock)
    client.submit_order(buy(6))
    sent = [r.json() for r in mocker.request_history if r.method == "POST" and r.url == ORDERS_URL]
    assert len(sent) == 1 and sent[0]["position_intent"] == "buy_to_open"
    client.gateway.store.close()
