"""The public test kit: its exports, object mothers and helpers do what they say."""

from __future__ import annotations

from decimal import Decimal

import pytest

import tradeguard.testing as kit
from tradeguard.domain import BrokerOrder, BrokerPosition, OrderRequest, OrderStatus, Side
from tradeguard.errors import OrderRejected


def test_make_request_defaults_to_a_ten_share_market_buy() -> None:
    request = kit.make_request()
    assert request == OrderRequest("TQQQ", Side.BUY, "tg-test-1", qty=Decimal(10))
    assert kit.make_request("sqqq", "sell", "2.5").qty == Decimal("2.5")


def test_make_order_fills_only_when_filled() -> None:
    filled = kit.make_order(qty=6, price="75.33")
    assert isinstance(filled, BrokerOrder)
    assert (filled.status, filled.filled_qty, filled.filled_avg_price) == (
        OrderStatus.FILLED,
        6,
        Decimal("75.33"),
    )
    new = kit.make_order(status="new", client_order_id="x")
    assert (new.filled_qty, new.filled_avg_price, new.id) == (0, None, "order-x")
    assert kit.make_order(symbol="QQQ", limit_price=Decimal(1)).limit_price == 1


def test_make_position_values_shares_at_the_given_price() -> None:
    position = kit.make_position("TQQQ", -12, price="80")
    assert isinstance(position, BrokerPosition)
    assert (position.qty, position.qty_available, position.market_value, position.side) == (
        -12,
        -12,
        -960,
        "short",
    )
    assert kit.make_position(qty=10, qty_available=4).qty_available == 4


def test_paper_server_helper_takes_a_broker_or_options_not_both() -> None:
    with pytest.raises(TypeError), kit.paper_server(kit.PaperBroker(), cash=5):
        pass


def test_alpaca_client_and_orders_of_read_back_what_the_bot_sent() -> None:
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    with kit.paper_server() as server, kit.alpaca_client(server.url, timeout_secs=5) as client:
        for symbol, side in [("TQQQ", OrderSide.BUY), ("SQQQ", OrderSide.BUY), ("TQQQ", OrderSide.SELL)]:
            client.submit_order(
                MarketOrderRequest(symbol=symbol, qty=1, side=side, time_in_force=TimeInForce.DAY)
            )
        assert [o.side for o in kit.orders_of(server.broker, symbol="tqqq")] == [Side.BUY, Side.SELL]
        assert len(kit.orders_of(server.broker, side="buy")) == 2
        assert server.fired_faults() == []


def test_recording_broker_records_every_call_and_every_order_asked_refused_ones_too() -> None:
    paper = kit.PaperBroker(prices=kit.FixedPrices({"TQQQ": "75.33"}), cash=1000)
    broker = kit.RecordingBroker(paper)
    broker.submit_order(kit.make_request("TQQQ", "buy", 10, client_order_id="a"))
    with pytest.raises(OrderRejected):
        broker.submit_order(kit.make_request("TQQQ", "buy", 10, client_order_id="b"))  # no cash left
    broker.get_position("TQQQ")
    assert broker.submitted("a") == broker.submitted("b") == 1
    assert [r.client_order_id for r in broker.asked(symbol="tqqq", side="buy")] == ["a", "b"]
    assert broker.asked(side=Side.SELL) == []
    assert [tuple(c) for c in broker.calls] == [
        ("submit_order", "a"),
        ("submit_order", "b"),
        ("get_position", "TQQQ"),
    ]
    assert len(kit.orders_of(paper)) == 1
