"""The paper server's answers to what an ordinary alpaca-py bot calls beyond simple orders.

Bracket, OTO and OCO orders, stops, trailing stops and `replace_order_by_id`, through the real
alpaca-py `TradingClient` over HTTP on 127.0.0.1: Alpaca's JSON must parse into alpaca-py's
models, and refusals must be Alpaca's bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, OrderType, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from tradeguard.clock import ManualClock
from tradeguard.paper.prices import FixedPrices
from tradeguard.paper.server import PaperServer
from tradeguard.testing import alpaca_client, paper_server

AUTH = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}


@pytest.fixture
def server() -> Iterator[PaperServer]:
    with paper_server(clock=ManualClock(), prices=FixedPrices({"SPY": 100})) as running:
        yield running


@pytest.fixture
def client(server: PaperServer) -> Iterator[TradingClient]:
    with alpaca_client(server.url) as trading:
        yield trading


def bracket(**changes: Any) -> MarketOrderRequest:
    fields: dict[str, Any] = {
        "symbol": "SPY",
        "qty": 10,
        "side": OrderSide.BUY,
        "time_in_force": TimeInForce.GTC,
        "order_class": OrderClass.BRACKET,
        "take_profit": TakeProfitRequest(limit_price=110),
        "stop_loss": StopLossRequest(stop_price=95),
        "client_order_id": "entry",
    }
    fields.update(changes)
    return MarketOrderRequest(**fields)


def test_a_bracket_answer_carries_its_legs_and_they_are_orders_of_their_own(client: TradingClient) -> None:
    entry = client.submit_order(bracket())
    assert (entry.order_class, entry.status) == (OrderClass.BRACKET, OrderStatus.FILLED)
    assert entry.legs is not None
    profit, loss = entry.legs
    assert (profit.type, profit.status, profit.limit_price, profit.side) == (
        OrderType.LIMIT,
        OrderStatus.NEW,
        "110",
        OrderSide.SELL,
    )
    assert (loss.type, loss.status, loss.stop_price, loss.order_class) == (
        OrderType.STOP,
        OrderStatus.HELD,
        "95",
        OrderClass.BRACKET,
    )
    assert client.get_order_by_id(loss.id).status is OrderStatus.HELD
    assert client.get_order_by_client_id(loss.client_order_id).id == loss.id
    assert client.get_order_by_id(entry.id).legs is None  # legs are nested only when asked
    nested = client.get_order_by_id(entry.id, GetOrderByIdRequest(nested=True))
    assert [leg.id for leg in nested.legs or []] == [profit.id, loss.id]
    assert client.get_open_position("SPY").qty_available == "0"


def test_listing_nests_legs_only_when_asked_and_open_leaves_held_legs_out(client: TradingClient) -> None:
    entry = client.submit_order(bracket())
    assert entry.legs is not None
    profit, loss = entry.legs
    flat = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, direction="asc"))  # type: ignore[arg-type]
    assert [o.id for o in flat] == [entry.id, profit.id, loss.id]
    assert [o.id for o in client.get_orders()] == [profit.id]
    [parent] = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED, nested=True))
    assert [leg.id for leg in parent.legs or []] == [profit.id, loss.id]


def test_the_stop_loss_sells_and_cancels_the_take_profit(server: PaperServer, client: TradingClient) -> None:
    entry = client.submit_order(bracket())
    assert entry.legs is not None
    server.broker.set_price("SPY", "94")
    assert client.get_order_by_id(entry.legs[1].id).status is OrderStatus.FILLED
    assert client.get_order_by_id(entry.legs[0].id).status is OrderStatus.CANCELED
    assert client.get_all_positions() == []


def test_an_oco_and_an_oto(server: PaperServer, client: TradingClient) -> None:
    client.submit_order(
        MarketOrderRequest(symbol="SPY", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    exits = client.submit_order(
        LimitOrderRequest(
            symbol="SPY",
            qty=10,
            side=OrderSide.SELL,
            time_in_force=TimeInForce.GTC,
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=110),
            stop_loss=StopLossRequest(stop_price=95, limit_price=94),
        )
    )
    assert (exits.order_class, exits.type, exits.limit_price, exits.status) == (
        OrderClass.OCO,
        OrderType.LIMIT,
        "110",
        OrderStatus.NEW,
    )
    [loss] = exits.legs or []
    assert (loss.type, loss.stop_price, loss.limit_price) == (OrderType.STOP_LIMIT, "95", "94")
    client.cancel_order_by_id(loss.id)
    assert client.get_order_by_id(exits.id).status is OrderStatus.CANCELED
    oto = client.submit_order(
        LimitOrderRequest(
            symbol="SPY",
            qty=1,
            side=OrderSide.BUY,
            limit_price=99,
            time_in_force=TimeInForce.DAY,
            order_class=OrderClass.OTO,
            stop_loss=StopLossRequest(stop_price=90),
        )
    )
    assert (oto.order_class, oto.status, [leg.status for leg in oto.legs or []]) == (
        OrderClass.OTO,
        OrderStatus.NEW,
        [OrderStatus.HELD],
    )


def test_stop_stop_limit_and_trailing_stop_orders_parse(server: PaperServer, client: TradingClient) -> None:
    client.submit_order(
        MarketOrderRequest(symbol="SPY", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    plain = client.submit_order(
        StopOrderRequest(
            symbol="SPY", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, stop_price=95
        )
    )
    limited = client.submit_order(
        StopLimitOrderRequest(
            symbol="SPY",
            qty=1,
            side=OrderSide.SELL,
            time_in_force=TimeInForce.GTC,
            stop_price=94,
            limit_price=93,
        )
    )
    trail = client.submit_order(
        TrailingStopOrderRequest(
            symbol="SPY", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.DAY, trail_percent=5
        )
    )
    assert (plain.type, plain.stop_price, limited.type, limited.limit_price) == (
        OrderType.STOP,
        "95",
        OrderType.STOP_LIMIT,
        "93",
    )
    assert (trail.type, trail.trail_percent, trail.hwm, trail.stop_price) == (
        OrderType.TRAILING_STOP,
        "5",
        "100",
        "95",
    )
    server.broker.set_price("SPY", "120")
    moved = client.get_order_by_id(trail.id)
    assert (moved.hwm, moved.stop_price) == ("120", "114")


def test_replace_order_by_id_answers_with_the_new_order(client: TradingClient) -> None:
    old = client.submit_order(
        LimitOrderRequest(
            symbol="SPY",
            qty=5,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            limit_price=90,
            client_order_id="dip",
        )
    )
    new = client.replace_order_by_id(old.id, ReplaceOrderRequest(limit_price=91, qty=6))
    assert (new.replaces, new.limit_price, new.qty, new.status) == (old.id, "91", "6", OrderStatus.NEW)
    # Alpaca's endpoint answers with the order that carries the id: the replaced one.
    replaced = client.get_order_by_client_id("dip")
    assert (replaced.id, replaced.status, replaced.replaced_by) == (old.id, OrderStatus.REPLACED, new.id)
    with pytest.raises(APIError) as same:
        client.replace_order_by_id(new.id, ReplaceOrderRequest(limit_price=91))
    assert (same.value.status_code, str(same.value)) == (
        403,
        '{"code":40310000,"message":"order parameters are not changed"}',
    )
    with pytest.raises(APIError) as closed:
        client.replace_order_by_id(old.id, ReplaceOrderRequest(limit_price=92))
    assert (closed.value.status_code, str(closed.value)) == (
        422,
        '{"code":40010001,"message":"unable to replace order, order is not open"}',
    )


REFUSALS: list[tuple[str, Any, int, str]] = [
    (
        "take-profit at the base price",
        bracket(take_profit=TakeProfitRequest(limit_price=100)),
        422,
        '{"base_price":"100","code":42210000,'
        '"message":"take_profit.limit_price must be >= base_price + 0.01"}',
    ),
    (
        "stop-loss above the base price",
        bracket(stop_loss=StopLossRequest(stop_price=101)),
        422,
        '{"base_price":"100","code":42210000,"message":"stop_loss.stop_price must be <= base_price - 0.01"}',
    ),
    (
        "ioc bracket",
        bracket(time_in_force=TimeInForce.IOC),
        422,
        '{"code":42210000,"message":"bracket orders must be DAY or GTC orders"}',
    ),
    (
        "buy stop below the market",
        StopOrderRequest(
            symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, stop_price=99
        ),
        422,
        '{"code":42210000,"market_price":"100",'
        '"message":"stop price must be greater than current price","stop_price":"99"}',
    ),
]


@pytest.mark.parametrize(
    ("request_", "status", "body"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_alpacas_refusals_byte_for_byte(client: TradingClient, request_: Any, status: int, body: str) -> None:
    with pytest.raises(APIError) as info:
        client.submit_order(request_)
    assert (info.value.status_code, str(info.value)) == (status, body)
    assert client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL)) == []


def test_a_bracket_exit_is_refused_as_alpaca_refuses_it(client: TradingClient) -> None:
    client.submit_order(
        MarketOrderRequest(symbol="SPY", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    request = bracket(
        side=OrderSide.SELL,
        take_profit=TakeProfitRequest(limit_price=90),
        stop_loss=StopLossRequest(stop_price=105),
    )
    with pytest.raises(APIError) as info:
        client.submit_order(request)
    assert str(info.value) == '{"code":42210000,"message":"bracket orders must be entry orders"}'


@pytest.mark.parametrize("field", ["take_profit", "stop_loss"])
def test_a_leg_that_is_not_an_object_is_a_malformed_body(server: PaperServer, field: str) -> None:
    body = {
        "symbol": "SPY",
        "qty": "1",
        "side": "buy",
        "type": "market",
        "time_in_force": "gtc",
        "order_class": "bracket",
    }
    body[field] = "110"
    response = requests.post(server.url + "/v2/orders", headers=AUTH, data=json.dumps(body), timeout=10)
    assert (response.status_code, response.json()) == (
        400,
        {"code": 40010000, "message": "request body format is invalid"},
    )
