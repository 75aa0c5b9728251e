"""The paper server through real HTTP on 127.0.0.1 with the real alpaca-py TradingClient."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    OrderSide,
    OrderStatus,
    PositionIntent,
    PositionSide,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
)

from tradeguard.clock import ManualClock
from tradeguard.paper import PaperBroker
from tradeguard.paper.server import PaperServer
from tradeguard.testing import alpaca_client, orders_of, paper_server

AUTH = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}


@pytest.fixture
def server() -> Iterator[PaperServer]:
    with paper_server(clock=ManualClock()) as running:
        yield running


@pytest.fixture
def client(server: PaperServer) -> Iterator[TradingClient]:
    with alpaca_client(server.url) as trading:
        yield trading


def market(side: OrderSide, qty: float, cid: str | None = None, **kw: Any) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol="TQQQ", qty=qty, side=side, time_in_force=TimeInForce.DAY, client_order_id=cid, **kw
    )


def test_submit_fill_position_and_lookup_by_client_id(server: PaperServer, client: TradingClient) -> None:
    order = client.submit_order(market(OrderSide.BUY, 6, "entry-1"))
    assert (order.status, order.filled_qty, order.filled_avg_price) == (OrderStatus.FILLED, "6", "100")
    assert client.get_order_by_client_id("entry-1").id == order.id
    assert client.get_order_by_id(order.id).client_order_id == "entry-1"
    [position] = client.get_all_positions()
    assert (position.symbol, position.qty, position.qty_available, position.side) == (
        "TQQQ",
        "6",
        "6",
        PositionSide.LONG,
    )
    assert client.get_open_position("TQQQ").market_value == "600"
    assert [o.id for o in client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))] == [order.id]
    assert [o.client_order_id for o in orders_of(server.broker)] == ["entry-1"]


def test_a_resting_limit_sell_holds_shares_and_fills_when_the_price_crosses(
    server: PaperServer, client: TradingClient
) -> None:
    client.submit_order(market(OrderSide.BUY, 10, "entry"))
    exit_order = client.submit_order(
        LimitOrderRequest(
            symbol="TQQQ", qty=4, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, limit_price=105.5
        )
    )
    assert exit_order.status is OrderStatus.NEW
    assert client.get_open_position("TQQQ").qty_available == "6"
    assert [o.id for o in client.get_orders()] == [exit_order.id]
    server.broker.set_price("TQQQ", "106")
    filled = client.get_order_by_id(exit_order.id)
    assert (filled.status, filled.filled_avg_price) == (OrderStatus.FILLED, "106")
    assert client.get_open_position("TQQQ").qty == "6"


def _raw(server: PaperServer, method: str, path: str, **kw: Any) -> requests.Response:
    with requests.Session() as session:
        return session.request(method, server.url + path, timeout=10, **kw)


def _insufficient_qty(client: TradingClient, _: PaperServer) -> None:
    client.submit_order(market(OrderSide.BUY, 6, "buy-6"))
    client.submit_order(market(OrderSide.SELL, 18))


def _duplicate(client: TradingClient, _: PaperServer) -> None:
    client.submit_order(market(OrderSide.BUY, 1, "once"))
    client.submit_order(market(OrderSide.BUY, 1, "once"))


def _wash(client: TradingClient, _: PaperServer) -> None:
    client.submit_order(market(OrderSide.BUY, 5, "b"))
    client.submit_order(
        LimitOrderRequest(
            symbol="TQQQ", qty=5, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, limit_price=120
        )
    )
    client.submit_order(market(OrderSide.BUY, 1))


def _raw_error(method: str, path: str, **kw: Any) -> Callable[[TradingClient, PaperServer], None]:
    def call(_: TradingClient, server: PaperServer) -> None:
        response = _raw(server, method, path, **kw)
        raise APIError(response.text, requests.HTTPError(response=response))

    return call


ALPACA_ERRORS: list[tuple[str, Callable[[TradingClient, PaperServer], None], int, str]] = [
    ("duplicate client id", _duplicate, 422, '{"code":40010001,"message":"client_order_id must be unique"}'),
    (
        "exit on a flat symbol",
        lambda c, _: c.submit_order(market(OrderSide.SELL, 1, position_intent=PositionIntent.SELL_TO_CLOSE)),
        422,
        '{"code":42210000,"message":"position intent mismatch, inferred: sell_to_open"}',
    ),
    (
        "closing a flat symbol",
        lambda c, _: c.close_position("SQQQ"),
        404,
        '{"code":40410000,"message":"position does not exist"}',
    ),
    (
        "reading a flat symbol",
        lambda c, _: c.get_open_position("SQQQ"),
        404,
        '{"code":40410000,"message":"position does not exist"}',
    ),
    (
        "lookup miss",
        lambda c, _: c.get_order_by_client_id("never"),
        404,
        '{"code":40410000,"message":"order not found"}',
    ),
    (
        "oversell",
        _insufficient_qty,
        403,
        '{"available":"6","code":40310000,"existing_qty":"6","held_for_orders":"0",'
        '"message":"insufficient qty available for order (requested: 18, available: 6)","symbol":"TQQQ"}',
    ),
    (
        "buying power",
        lambda c, _: c.submit_order(market(OrderSide.BUY, 5000)),
        403,
        '{"buying_power":"100000","code":40310000,"cost_basis":"500000",'
        '"message":"insufficient buying power"}',
    ),
    (
        "short",
        lambda c, _: c.submit_order(market(OrderSide.SELL, 1)),
        403,
        '{"code":40310000,"message":"account is not allowed to short"}',
    ),
    (
        "wash trade",
        _wash,
        403,
        '{"code":40310000,"message":"potential wash trade detected. use complex orders"}',
    ),
    (
        "sub-penny limit",
        lambda c, _: c.submit_order(
            LimitOrderRequest(
                symbol="TQQQ", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=290.123
            )
        ),
        422,
        '{"code":42210000,"message":"invalid limit_price 290.123. '
        'sub-penny increment does not fulfill minimum pricing criteria"}',
    ),
    (
        "no qty",
        _raw_error(
            "POST",
            "/v2/orders",
            headers=AUTH,
            json={"symbol": "TQQQ", "side": "buy", "type": "market", "time_in_force": "day"},
        ),
        422,
        '{"code":40010001,"message":"qty or notional is required"}',
    ),
    (
        "not json",
        _raw_error("POST", "/v2/orders", headers=AUTH, data=b"{not json"),
        400,
        '{"code":40010000,"message":"request body format is invalid"}',
    ),
    (
        "no key",
        _raw_error("GET", "/v2/account"),
        401,
        '{"code":40110000,"message":"request is not authorized"}',
    ),
]


@pytest.mark.parametrize(
    ("trigger", "status", "body"), [row[1:] for row in ALPACA_ERRORS], ids=[row[0] for row in ALPACA_ERRORS]
)
def test_alpacas_error_bodies_byte_for_byte(
    server: PaperServer,
    client: TradingClient,
    trigger: Callable[[TradingClient, PaperServer], None],
    status: int,
    body: str,
) -> None:
    with pytest.raises(APIError) as info:
        trigger(client, server)
    expected = json.loads(body)
    assert (info.value.status_code, info.value.code, info.value.message) == (
        status,
        expected["code"],
        expected["message"],
    )
    assert str(info.value) == body


def test_close_cancel_account_and_clock_parse_as_alpaca_py_models(
    server: PaperServer, client: TradingClient
) -> None:
    client.submit_order(market(OrderSide.BUY, 10, "b"))
    partial = client.close_position("TQQQ", ClosePositionRequest(qty="4"))
    assert (partial.side, partial.qty, partial.position_intent) == (
        OrderSide.SELL,
        "4",
        PositionIntent.SELL_TO_CLOSE,
    )
    resting = client.submit_order(
        LimitOrderRequest(
            symbol="QQQ", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=50
        )
    )
    [canceled] = client.cancel_orders()
    assert (canceled.id, canceled.status) == (resting.id, 200)
    with pytest.raises(APIError) as info:
        client.cancel_order_by_id(resting.id)
    assert info.value.message == 'order is already in "canceled" state'
    [closed] = client.close_all_positions(cancel_orders=True)
    assert (closed.symbol, closed.status, closed.body.qty) == ("TQQQ", 200, "6")
    assert client.get_all_positions() == []
    account = client.get_account()
    assert (account.cash, account.equity, account.shorting_enabled) == ("100000", "100000", False)
    clock = client.get_clock()
    assert clock.is_open is True  # ManualClock starts 2026-05-21 09:30 US/Eastern
    assert clock.next_close == datetime(2026, 5, 21, 20, 0, tzinfo=UTC)


def test_a_short_position_parses() -> None:
    with paper_server(allow_short=True) as shorting, alpaca_client(shorting.url) as trading:
        trading.submit_order(market(OrderSide.SELL, 12, "short"))
        position = trading.get_open_position("TQQQ")
    assert (position.qty, position.qty_available, position.side) == ("-12", "-12", PositionSide.SHORT)


def test_unknown_routes_get_alpacas_404_json(server: PaperServer) -> None:
    response = _raw(server, "GET", "/v2/watchlists", headers=AUTH)
    assert (response.status_code, response.json()) == (
        404,
        {"code": 40410000, "message": "endpoint not found"},
    )


def test_every_request_is_logged(
    server: PaperServer, client: TradingClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tradeguard.paper_server"):
        client.get_account()
        with pytest.raises(APIError):
            client.get_order_by_client_id("none")
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("GET /v2/account -> 200") for line in lines)
    assert any(
        line.startswith("GET /v2/orders:by_client_order_id?client_order_id=none -> 404") for line in lines
    )


def test_the_account_survives_a_server_restart(tmp_path: Path) -> None:
    state = tmp_path / "paper.json"
    with paper_server(state_path=state) as first, alpaca_client(first.url) as trading:
        placed = trading.submit_order(market(OrderSide.BUY, 3, "kept"))
    with paper_server(state_path=state) as second, alpaca_client(second.url) as trading:
        assert trading.get_order_by_client_id("kept").id == placed.id
        assert trading.get_open_position("TQQQ").qty == "3"


def test_the_server_listens_on_loopback_by_default() -> None:
    with PaperServer(PaperBroker()) as running:
        assert running.url.startswith("http://127.0.0.1:")


def test_a_percentage_close_of_whole_shares_sells_whole_shares(
    server: PaperServer, client: TradingClient
) -> None:
    # Alpaca: a percentage "would only sell fractional if position is originally fractional".
    client.submit_order(market(OrderSide.BUY, 7))
    half = client.close_position("TQQQ", ClosePositionRequest(percentage="50"))
    assert not isinstance(half, dict) and half.qty == "3"
    assert client.get_open_position("TQQQ").qty == "4"
    both = requests.delete(f"{server.url}/v2/positions/TQQQ?qty=1&percentage=10", headers=AUTH, timeout=10)
    assert both.status_code == 422  # "Cannot work with qty": refused, never one of the two taken
